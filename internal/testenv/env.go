package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/spirefed/spire-federation-operator/internal/scheme"
)

// OperatorNamespace is where the management cluster holds zone kubeconfig Secrets.
const OperatorNamespace = "spirefed-system"

// ZoneSpec describes a zone cluster to start.
type ZoneSpec struct {
	// Name of the zone (and of its kubeconfig Secret, "<name>-kubeconfig").
	Name string
	// KWOK makes Pods run (simulated) in the zone.
	KWOK bool
	// WithoutSpireCRDs leaves out spire-controller-manager's CRDs, for
	// zones whose SPIRE is installed with its charts (spire-crds owns them).
	WithoutSpireCRDs bool
}

// Options of an environment.
type Options struct {
	// Zones to start beside the management cluster.
	Zones []ZoneSpec
}

// Env is a management cluster plus zone clusters.
type Env struct {
	// Management runs the operator's CRDs.
	Management *Cluster
	// Zones by name; each has spire-controller-manager's CRDs.
	Zones map[string]*Cluster
	// Scheme knows core types and the operator's API.
	Scheme *runtime.Scheme

	root string

	stoppersMu sync.Mutex
	stoppers   []func() error
}

// Start starts the management cluster and the zones in parallel, creates
// the operator namespace and writes each zone's admin kubeconfig into the
// Secret "<zone>-kubeconfig" (key "value"). On error everything started is
// stopped.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	root, err := os.MkdirTemp("", "spirefed-testenv-")
	if err != nil {
		return nil, fmt.Errorf("creating environment folder: %w", err)
	}
	if err := startReaper(root); err != nil {
		return nil, err
	}
	env := &Env{Zones: map[string]*Cluster{}, Scheme: scheme.New(), root: root}
	defer func() {
		if err != nil {
			_ = env.Stop()
		}
	}()

	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	spireCRDs, err := SpireControllerManagerCRDs()
	if err != nil {
		return nil, err
	}
	specs := []clusterSpec{{name: "management", crdPaths: []string{filepath.Join(repo, "config", "crd", "bases")}}}
	for _, zone := range opts.Zones {
		crdPaths := []string{spireCRDs}
		if zone.WithoutSpireCRDs {
			crdPaths = nil
		}
		specs = append(specs, clusterSpec{name: zone.Name, kwok: zone.KWOK, crdPaths: crdPaths})
	}
	clusters := make([]*Cluster, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i := range specs {
		specs[i].scheme = env.Scheme
		specs[i].dir = filepath.Join(root, specs[i].name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i], errs[i] = startCluster(ctx, specs[i])
		}()
	}
	wg.Wait()
	for i, cluster := range clusters {
		if cluster == nil {
			continue
		}
		if i == 0 {
			env.Management = cluster
		} else {
			env.Zones[cluster.Name] = cluster
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}
	if err := env.Management.Client.Create(ctx, namespace); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", OperatorNamespace, err)
	}
	for _, zone := range opts.Zones {
		kubeconfig, err := env.Zones[zone.Name].Kubeconfig("spirefed-operator", "system:masters")
		if err != nil {
			return nil, err
		}
		if err := env.WriteKubeconfigSecret(ctx, KubeconfigSecretName(zone.Name), kubeconfig); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// KubeconfigSecretName is the name of a zone's kubeconfig Secret.
func KubeconfigSecretName(zone string) string { return zone + "-kubeconfig" }

// WriteKubeconfigSecret creates or replaces a kubeconfig Secret (key
// "value") in the operator namespace of the management cluster.
func (e *Env) WriteKubeconfigSecret(ctx context.Context, name string, kubeconfig []byte) error {
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: OperatorNamespace, Name: name},
		Data:       map[string][]byte{"value": kubeconfig},
	}
	if err := e.Management.Client.Patch(ctx, secret, applyPatch{}, fieldOwner, forceOwnership); err != nil {
		return fmt.Errorf("writing Secret %s/%s: %w", OperatorNamespace, name, err)
	}
	return nil
}

// Dir is the environment's root folder; processes keep their logs below it.
func (e *Env) Dir() string { return e.root }

// Stop stops every cluster and removes the environment's files (kept when
// SPIREFED_TESTENV_KEEP is set, for reading the processes' logs). Whatever
// does not stop in time is killed.
func (e *Env) Stop() error {
	errs := []error{e.runStoppers()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	all := []*Cluster{e.Management}
	for _, zone := range e.Zones {
		all = append(all, zone)
	}
	for _, cluster := range all {
		if cluster == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cluster.stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	stopReaper(e.root)
	if os.Getenv("SPIREFED_TESTENV_KEEP") != "" {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(e.root); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

var (
	spireCRDsOnce sync.Once
	spireCRDsDir  string
	spireCRDsErr  error
)

// SpireControllerManagerCRDs is the folder of spire-controller-manager's
// CRDs, from the module version go.mod requires.
func SpireControllerManagerCRDs() (string, error) {
	spireCRDsOnce.Do(func() {
		repo, err := RepoRoot()
		if err != nil {
			spireCRDsErr = err
			return
		}
		cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/spiffe/spire-controller-manager")
		cmd.Dir = repo
		cmd.Stderr = nil
		out, err := cmd.Output()
		if err != nil {
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				err = fmt.Errorf("%w: %s", err, exitErr.Stderr)
			}
			spireCRDsErr = fmt.Errorf("locating module github.com/spiffe/spire-controller-manager: %w", err)
			return
		}
		spireCRDsDir = filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases")
	})
	return spireCRDsDir, spireCRDsErr
}

// StartForTest starts an environment for one test and stops it when the
// test ends; a failure to start or stop fails the test.
func StartForTest(ctx context.Context, t testing.TB, opts Options) *Env {
	t.Helper()
	env, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting clusters: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping clusters: %v", err)
		}
	})
	return env
}
