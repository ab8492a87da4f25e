package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
)

// scaleProfileDir is where the scale benchmark writes the test process's
// CPU profiles of its phases (zones-N-cold, -rotation, -quiet) and a heap
// profile after the idle window (zones-N-heap), when
// SPIREFED_BENCH_PROFILE_DIR is set: with the in-process operator, the
// hot spots of each phase apart (go tool pprof -top <file>).
func scaleProfileDir() string { return os.Getenv("SPIREFED_BENCH_PROFILE_DIR") }

// startScaleProfile starts a CPU profile of one phase and returns what
// stops it.
func startScaleProfile(b *testing.B, size int, phase string) func() {
	dir := scaleProfileDir()
	if dir == "" || benchSeparateOperator() {
		return func() {}
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
func writeScaleHeapProfile(b *testing.B, size int) {
	dir := scaleProfileDir()
	if dir == "" || benchSeparateOperator() {
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
