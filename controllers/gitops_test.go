package controllers

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestGitOpsNoDiff applies every sample and the README's examples with
// server-side apply, as Argo CD or Flux would, lets the operator take them
// up, and checks with kubectl that `kubectl diff --server-side` is empty
// and that applying again changes no resourceVersion: the operator never
// rewrites a user's spec.
func TestGitOpsNoDiff(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := testenv.Tool("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := env.Management.Kubeconfig("gitops", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readmeObjects := filepath.Join(dir, "readme.yaml")
	if err := os.WriteFile(readmeObjects, []byte(strings.Join(readmeManifests(t, string(readme)), "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, source := range []struct {
		name string
		args []string
	}{
		{"config/samples", []string{"-k", filepath.Join(root, "config", "samples")}},
		{"README.md", []string{"-f", readmeObjects}},
	} {
		t.Run(source.name, func(t *testing.T) {
			run := func(args ...string) (string, error) {
				ctx, cancel := context.WithTimeout(testCtx, time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, kubectl, append(append([]string{"--kubeconfig", kubeconfigPath}, args...), source.args...)...)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				return out.String(), err
			}
			if out, err := run("apply", "--server-side", "--field-manager", "argocd-controller"); err != nil {
				t.Fatalf("apply: %v\n%s", err, out)
			}
			objects := appliedObjects(t, run)
			t.Cleanup(func() {
				if out, err := run("delete", "--wait=true", "--timeout=60s"); err != nil {
					t.Errorf("delete: %v\n%s", err, out)
				}
			})
			versions := waitTakenUp(t, objects)
			if out, err := run("diff", "--server-side", "--field-manager", "argocd-controller"); err != nil || out != "" {
				t.Errorf("kubectl diff --server-side after the operator took the objects up: %v\n%s", err, out)
			}
			if out, err := run("apply", "--server-side", "--field-manager", "argocd-controller"); err != nil {
				t.Fatalf("apply again: %v\n%s", err, out)
			}
			for _, obj := range objects {
				if err := env.Management.Client.Get(testCtx, client.ObjectKeyFromObject(obj), obj); err != nil {
					t.Fatal(err)
				}
				if got := obj.GetResourceVersion(); got != versions[obj.GetKind()+"/"+obj.GetName()] {
					t.Errorf("%s %s: applying the same manifest again changed it (resourceVersion %s -> %s)", obj.GetKind(), obj.GetName(), versions[obj.GetKind()+"/"+obj.GetName()], got)
				}
			}
		})
	}
}

// readmeManifests returns the README's YAML examples that are whole
// objects of the operator's API.
func readmeManifests(t *testing.T, readme string) []string {
	t.Helper()
	var manifests []string
	for _, match := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(readme, -1) {
		if strings.HasPrefix(match[1], "apiVersion: spirefed.io/") {
			manifests = append(manifests, match[1])
		}
	}
	if len(manifests) < 2 {
		t.Fatalf("the README has %d whole examples, want a ZoneTrustDomain and a FederationMesh", len(manifests))
	}
	return manifests
}

// appliedObjects lists the objects of a source as kubectl resolves them.
func appliedObjects(t *testing.T, run func(...string) (string, error)) []*unstructured.Unstructured {
	t.Helper()
	out, err := run("get", "-o", "yaml")
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := yaml.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	var objects []*unstructured.Unstructured
	for _, item := range list.Items {
		obj := &unstructured.Unstructured{Object: item}
		obj.SetGroupVersionKind(schema.FromAPIVersionAndKind(obj.GetAPIVersion(), obj.GetKind()))
		objects = append(objects, obj)
	}
	return objects
}

// waitTakenUp waits until the operator holds each object (finalizer set,
// status at its generation) and its status stays still, and returns the
// resourceVersions.
func waitTakenUp(t *testing.T, objects []*unstructured.Unstructured) map[string]string {
	t.Helper()
	deadline := testDeadline(60)
	var versions, previous map[string]string
	for {
		versions = map[string]string{}
		takenUp := true
		for _, obj := range objects {
			if err := env.Management.Client.Get(testCtx, client.ObjectKeyFromObject(obj), obj); err != nil {
				t.Fatal(err)
			}
			generation, _, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
			finalizers := obj.GetFinalizers()
			if generation != obj.GetGeneration() || !(slices.Contains(finalizers, spirefedv1alpha1.ZoneFinalizer) || slices.Contains(finalizers, spirefedv1alpha1.MeshFinalizer)) {
				takenUp = false
			}
			versions[obj.GetKind()+"/"+obj.GetName()] = obj.GetResourceVersion()
		}
		// Settled: taken up, and nothing changed for a couple of polls.
		if takenUp && previous != nil && equalVersions(previous, versions) {
			return versions
		}
		if takenUp {
			previous = versions
			time.Sleep(2 * time.Second)
		}
		if deadline() {
			t.Fatalf("the operator did not take up the objects: %v", versions)
		}
	}
}

func equalVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for key, value := range a {
		if b[key] != value {
			return false
		}
	}
	return true
}
