// Package testenv starts real Kubernetes clusters for tests: a management
// API server and any number of zone clusters, in one test process. Plain
// zones are envtest API servers (etcd + kube-apiserver); KWOK zones add
// kube-controller-manager, kube-scheduler and a KWOK controller with a fake
// node, so that Pods are scheduled and reported Running and Ready.
//
// Every binary comes from hack/tools.sh, which builds what is missing.
// Every process runs with its files under one root folder; a watchdog kills
// whatever still runs there when the test process ends in any way.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	toolsMu    sync.Mutex
	toolPaths  = map[string]string{}
	repoRootMu sync.Once
	repoRoot   string
	repoErr    error
)

// RepoRoot is the folder holding the project's go.mod.
func RepoRoot() (string, error) {
	repoRootMu.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			repoErr = err
			return
		}
		for {
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && strings.HasPrefix(string(data), "module github.com/spirefed/spire-federation-operator\n") {
				repoRoot = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				repoErr = errors.New("no go.mod of github.com/spirefed/spire-federation-operator above the working directory")
				return
			}
			dir = parent
		}
	})
	return repoRoot, repoErr
}

// Tool returns the path of a tool built by hack/tools.sh, building it when
// it is missing (which can take minutes; progress goes to stderr).
func Tool(name string) (string, error) {
	toolsMu.Lock()
	defer toolsMu.Unlock()
	if path, ok := toolPaths[name]; ok {
		return path, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(filepath.Join(root, "hack", "tools.sh"), "--path", name)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building tool %s with hack/tools.sh: %w", name, err)
	}
	path := strings.TrimSpace(string(out))
	toolPaths[name] = path
	return path, nil
}

// SharedChartsDir is the folder of the upstream SPIRE chart packages the
// tests use, kept in the repository as test data (test/testdata/charts): a
// Helm repository with its index.yaml.
func SharedChartsDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "test", "testdata", "charts")
	if _, err := os.Stat(filepath.Join(dir, "index.yaml")); err != nil {
		return "", fmt.Errorf("the upstream SPIRE charts are expected in %s: %w", dir, err)
	}
	return dir, nil
}
