package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
)

var (
	reaperMu sync.Mutex
	// reapers holds, per root, the write end of the pipe its watchdog reads.
	reapers = map[string]*os.File{}
)

// startReaper starts, once per root, a watchdog that kills every process
// whose command line names root as soon as this process ends, however it
// ends (a test timeout's panic runs no deferred cleanup). It holds the read
// end of a pipe whose write end only this process keeps open.
func startReaper(root string) error {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	read, write, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("creating reaper pipe: %w", err)
	}
	defer read.Close()
	// The pattern comes through the environment so that the watchdog's own
	// command line does not match it.
	cmd := exec.Command("/bin/sh", "-c", `cat >/dev/null; pkill -KILL -f -- "$SPIREFED_TESTENV_ROOT"; exit 0`)
	cmd.Env = append(os.Environ(), "SPIREFED_TESTENV_ROOT="+root+"/")
	cmd.Stdin = read
	if err := cmd.Start(); err != nil {
		write.Close()
		return fmt.Errorf("starting reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	// The write end stays open until the environment stops (or the process
	// ends); it is close-on-exec, so no child keeps it open.
	reapers[root] = write
	return nil
}

// stopReaper fires the reaper of root: anything left there is killed.
func stopReaper(root string) {
	reaperMu.Lock()
	defer reaperMu.Unlock()
	if write, ok := reapers[root]; ok {
		_ = write.Close()
		delete(reapers, root)
	}
}
