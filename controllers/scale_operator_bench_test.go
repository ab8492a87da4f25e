package controllers

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// benchOperatorLabel marks the zones and mesh of the scale benchmark when
// the operator under test is a separate process
// (SPIREFED_BENCH_OPERATOR=process): the suite's in-process operator
// ignores them, the process watches only them (--watch-label-selector).
const benchOperatorLabel = "spirefed.io/bench-operator"

// benchSeparateOperator says whether the scale benchmark measures the
// operator as a separate process, built from main.go with its default
// intervals, instead of the suite's in-process operator.
func benchSeparateOperator() bool { return os.Getenv("SPIREFED_BENCH_OPERATOR") == "process" }

// scaleOperator is what the scale benchmark reads of the operator under
// test: its counters, its mesh reconcile time, its CPU time and its peak
// resident memory.
type scaleOperator interface {
	// counter sums a counter's series.
	counter(b *testing.B, name string) int64
	// reconcileTime sums a controller's reconcile time histogram: total
	// seconds and count.
	reconcileTime(b *testing.B, controller string) (float64, uint64)
	// cpu is the CPU time used so far.
	cpu() time.Duration
	// peakRSS is the peak resident set size, in bytes.
	peakRSS() int64
	// kind names what is measured in the printed figures.
	kind() string
}

// inProcessOperator is the suite's operator: the figures are the test
// process's (operator, bundle endpoints, the benchmark's own watches).
type inProcessOperator struct{}

func (inProcessOperator) counter(b *testing.B, name string) int64 { return metricTotal(b, name) }
func (inProcessOperator) reconcileTime(b *testing.B, controller string) (float64, uint64) {
	return reconcileTime(b, controller)
}
func (inProcessOperator) cpu() time.Duration { return processCPU() }
func (inProcessOperator) peakRSS() int64     { return maxRSS() }
func (inProcessOperator) kind() string       { return "process" }

// operatorProcess is the operator binary (main.go) running against the
// suite's management API server, watching only the benchmark's objects.
type operatorProcess struct {
	cmd        *exec.Cmd
	metricsURL string
	// pprofURL is the base URL of its /debug/pprof/ (with a profile dir).
	pprofURL string
	log      *bytes.Buffer
}

// startOperatorProcess builds main.go and starts it with its default
// intervals (the suite's minimum fetch interval, so that rotations a
// second and a half apart are fetched), plain HTTP metrics on loopback,
// and the benchmark's label selector. It is stopped when the benchmark
// ends.
func startOperatorProcess(b *testing.B) *operatorProcess {
	dir := b.TempDir()
	binary := filepath.Join(dir, "spire-federation-operator")
	build := exec.Command("go", "build", "-o", binary, "github.com/spirefed/spire-federation-operator")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the operator: %v: %s", err, out)
	}
	kubeconfig, err := env.Management.Kubeconfig("bench-operator", "system:masters")
	if err != nil {
		b.Fatal(err)
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		b.Fatal(err)
	}
	address := "127.0.0.1:" + strconv.Itoa(port)
	process := &operatorProcess{metricsURL: "http://" + address + "/metrics", log: &bytes.Buffer{}}
	pprofAddress := "0"
	if scaleProfileDir() != "" {
		pprofPort, err := freeLoopbackPort()
		if err != nil {
			b.Fatal(err)
		}
		pprofAddress = "127.0.0.1:" + strconv.Itoa(pprofPort)
		process.pprofURL = "http://" + pprofAddress + "/debug/pprof/"
	}
	process.cmd = exec.Command(binary,
		"--kubeconfig="+kubeconfigPath,
		"--pprof-bind-address="+pprofAddress,
		"--namespace="+testenv.OperatorNamespace,
		"--metrics-bind-address="+address, "--metrics-secure=false",
		"--health-probe-bind-address=0",
		"--min-bundle-fetch-interval=1s",
		"--watch-label-selector="+benchOperatorLabel+"=process",
		"--zap-log-level="+benchOperatorLogLevel())
	process.cmd.Stdout = process.log
	process.cmd.Stderr = process.log
	if path := os.Getenv("SPIREFED_BENCH_OPERATOR_LOG"); path != "" {
		logFile, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { logFile.Close() })
		process.cmd.Stdout, process.cmd.Stderr = logFile, logFile
	}
	process.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := process.cmd.Start(); err != nil {
		b.Fatalf("starting the operator: %v", err)
	}
	b.Cleanup(func() {
		_ = process.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = process.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = process.cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			b.Logf("operator log:\n%s", process.log.String())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := process.scrape(); err == nil {
			return process
		}
		if time.Now().After(deadline) {
			b.Fatalf("the operator's metrics did not answer in a minute; log:\n%s", process.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// benchOperatorLogLevel is the operator process's log level: error, or
// debug when SPIREFED_BENCH_OPERATOR_LOG names a file for its log (each
// pass's phase timeline, for finding where a rotation's time goes).
func benchOperatorLogLevel() string {
	if os.Getenv("SPIREFED_BENCH_OPERATOR_LOG") != "" {
		return "debug"
	}
	return "error"
}

func freeLoopbackPort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// scrape reads the operator's metrics as "name{labels} value" lines.
func (p *operatorProcess) scrape() ([]string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	response, err := client.Get(p.metricsURL)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", p.metricsURL, response.Status)
	}
	var lines []string
	scanner := bufio.NewScanner(io.LimitReader(response.Body, 64<<20))
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		if line := scanner.Text(); line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return lines, scanner.Err()
}

// sum adds the values of the series of name whose labels contain every
// one of labels (`key="value"`).
func (p *operatorProcess) sum(b *testing.B, name string, labels ...string) float64 {
	lines, err := p.scrape()
	if err != nil {
		b.Fatalf("reading the operator's metrics: %v", err)
	}
	total := 0.0
	for _, line := range lines {
		series, value, found := strings.Cut(line, " ")
		if !found || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		matches := true
		for _, label := range labels {
			matches = matches && strings.Contains(series, label)
		}
		if !matches {
			continue
		}
		number, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			b.Fatalf("metric %s: %v", line, err)
		}
		total += number
	}
	return total
}

func (p *operatorProcess) counter(b *testing.B, name string) int64 { return int64(p.sum(b, name)) }

func (p *operatorProcess) reconcileTime(b *testing.B, controller string) (float64, uint64) {
	label := `controller="` + controller + `"`
	return p.sum(b, "controller_runtime_reconcile_time_seconds_sum", label),
		uint64(p.sum(b, "controller_runtime_reconcile_time_seconds_count", label))
}

// cpu is the process's user and system time, from /proc/<pid>/stat (in
// clock ticks of 1/100 s, Linux's USER_HZ).
func (p *operatorProcess) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it. utime and stime are fields 14 and 15.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// peakRSS is the process's VmHWM.
func (p *operatorProcess) peakRSS() int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if value, found := strings.CutPrefix(line, "VmHWM:"); found {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
			return kib * 1024
		}
	}
	return 0
}

func (p *operatorProcess) kind() string { return "operator" }

// benchOperatorSelector is the label selector of the objects the suite's
// in-process operator reconciles: all but the scale benchmark's when a
// separate operator process measures them.
func benchOperatorSelector() string {
	if benchSeparateOperator() {
		return "!" + benchOperatorLabel
	}
	return ""
}
