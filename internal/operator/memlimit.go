package operator

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
)

// cgroupMemoryMax is where cgroup v2 shows the container's memory limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimitShare is the part of the container's memory limit given to
// the Go runtime as its soft limit: the rest is for what the runtime does
// not count (stacks of cgo, the binary's text) and for headroom.
const memoryLimitShare = 0.9

// SetMemoryLimit gives the Go runtime a soft memory limit of 90 % of the
// container's memory limit (cgroup v2), unless GOMEMLIMIT is set: the
// garbage collector then works harder as the heap nears the limit,
// instead of the kernel killing the operator during a large mesh's cold
// start (the heap peaks while every pair is first written).
func SetMemoryLimit(log logr.Logger) {
	limit, ok := memoryLimit(cgroupMemoryMax, os.Getenv("GOMEMLIMIT"))
	if !ok {
		return
	}
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit set from the container's memory limit", "bytes", limit)
}

// memoryLimit reads the cgroup memory limit at path and returns the
// runtime's share of it; false when GOMEMLIMIT (env) is set, or there is
// no limit to read.
func memoryLimit(path, env string) (int64, bool) {
	if env != "" {
		return 0, false
	}
	content, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(content)), 10, 64)
	if err != nil || limit <= 0 {
		// "max": no limit.
		return 0, false
	}
	return int64(float64(limit) * memoryLimitShare), true
}
