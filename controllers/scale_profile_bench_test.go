package controllers

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// scaleProfileDir is where the scale benchmark writes the operator's CPU
// profiles of its phases (zones-N-cold, -rotation, -quiet) and a heap
// profile after the idle window (zones-N-heap), when
// SPIREFED_BENCH_PROFILE_DIR is set: the hot spots of each phase apart
// (go tool pprof -top <file>). With the in-process operator they are the
// test process's; with the operator process they come from its
// /debug/pprof/ (--pprof-bind-address), a CPU profile per 10 s of a phase
// (zones-N-cold-000.pprof, ...: go tool pprof -top merges the files
// given) and, during the cold start, a heap profile every 10 s
// (zones-N-cold-heap-000.pprof, ...: the peak is among them).
func scaleProfileDir() string { return os.Getenv("SPIREFED_BENCH_PROFILE_DIR") }

// startScaleProfile starts a CPU profile of one phase and returns what
// stops it.
func startScaleProfile(b *testing.B, operator scaleOperator, size int, phase string) func() {
	dir := scaleProfileDir()
	if dir == "" {
		return func() {}
	}
	if process, ok := operator.(*operatorProcess); ok {
		return process.profile(b, dir, size, phase)
	}
	file, err := os.Create(filepath.Join(dir, fmt.Sprintf("zones-%d-%s.pprof", size, phase)))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		file.Close()
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := file.Close(); err != nil {
			b.Error(err)
		}
	}
}

// writeScaleHeapProfile writes the live heap, after a collection.
func writeScaleHeapProfile(b *testing.B, operator scaleOperator, size int) {
	dir := scaleProfileDir()
	if dir == "" {
		return
	}
	if process, ok := operator.(*operatorProcess); ok {
		process.fetchProfile(b, "heap?gc=1", filepath.Join(dir, fmt.Sprintf("zones-%d-heap.pprof", size)))
		return
	}
	runtime.GC()
	file, err := os.Create(filepath.Join(dir, fmt.Sprintf("zones-%d-heap.pprof", size)))
	if err != nil {
		b.Fatal(err)
	}
	defer file.Close()
	if err := pprof.Lookup("heap").WriteTo(file, 0); err != nil {
		b.Error(err)
	}
}

// profileSlice is the length of one CPU profile of the operator process.
const profileSlice = 10 * time.Second

// profile fetches the operator process's CPU profiles, one per
// profileSlice, until the returned function is called (which waits for
// the slice under way), and during the cold start its heap as well.
func (p *operatorProcess) profile(b *testing.B, dir string, size int, phase string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if phase == "cold" {
				p.fetchProfile(b, "heap", filepath.Join(dir, fmt.Sprintf("zones-%d-%s-heap-%03d.pprof", size, phase, i)))
			}
			p.fetchProfile(b, fmt.Sprintf("profile?seconds=%d", int(profileSlice.Seconds())),
				filepath.Join(dir, fmt.Sprintf("zones-%d-%s-%03d.pprof", size, phase, i)))
		}
	}()
	return func() { close(stop); <-done }
}

// fetchProfile writes one of the operator process's /debug/pprof/ answers
// to path; a failure is logged, not fatal (figures matter more).
func (p *operatorProcess) fetchProfile(b *testing.B, query, path string) {
	response, err := http.Get(p.pprofURL + query)
	if err != nil {
		b.Logf("fetching profile %s: %v", query, err)
		return
	}
	defer response.Body.Close()
	file, err := os.Create(path)
	if err != nil {
		b.Logf("writing profile %s: %v", path, err)
		return
	}
	defer file.Close()
	if _, err := io.Copy(file, response.Body); err != nil {
		b.Logf("writing profile %s: %v", path, err)
	}
}
