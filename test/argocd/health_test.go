// Package argocd tests the Argo CD health checks of the operator's kinds
// (config/argocd/resource_customizations, laid out as Argo CD's own
// resource_customizations so that they can be sent upstream) with
// gopher-lua, the Lua interpreter Argo CD embeds, the way Argo CD runs
// them: the object as the global obj, a table {status, message} returned.
package argocd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/mesh"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// healthTests is Argo CD's health_test.yaml.
type healthTests struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

func customizations(t *testing.T) string {
	t.Helper()
	dir, err := testenv.ArgoCDCustomizations()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestHealthChecks runs every case of each kind's health_test.yaml.
func TestHealthChecks(t *testing.T) {
	for _, kind := range []string{"ZoneTrustDomain", "FederationMesh"} {
		dir := filepath.Join(customizations(t), kind)
		data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var cases healthTests
		if err := yaml.UnmarshalStrict(data, &cases); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", kind, err)
		}
		if len(cases.Tests) == 0 {
			t.Fatalf("%s/health_test.yaml has no test", kind)
		}
		for _, tc := range cases.Tests {
			t.Run(kind+"/"+tc.InputPath, func(t *testing.T) {
				input, err := os.ReadFile(filepath.Join(dir, tc.InputPath))
				if err != nil {
					t.Fatal(err)
				}
				var obj map[string]any
				if err := yaml.Unmarshal(input, &obj); err != nil {
					t.Fatal(err)
				}
				status, message := health(t, filepath.Join(dir, "health.lua"), obj)
				if status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
					t.Errorf("health = %s %q, want %s %q", status, message, tc.HealthStatus.Status, tc.HealthStatus.Message)
				}
			})
		}
	}
}

// TestMeshHealthFromOperatorStatus judges meshes whose status the
// operator's own status code computed.
func TestMeshHealthFromOperatorStatus(t *testing.T) {
	ready := func(trustDomain string, status metav1.ConditionStatus) *spirefedv1alpha1.ZoneTrustDomain {
		zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: trustDomain}}
		zone.Status.Conditions = []metav1.Condition{{Type: spirefedv1alpha1.ReadyCondition, Status: status, Reason: "x"}}
		return zone
	}
	for _, tc := range []struct {
		name    string
		members mesh.Members
		want    string
	}{
		{"every zone ready, no pair", mesh.Members{"a": ready("a.example", metav1.ConditionTrue)}, "Healthy"},
		{"a zone not ready", mesh.Members{"a": ready("a.example", metav1.ConditionFalse)}, "Progressing"},
		{"a named zone missing", mesh.Members{"a": ready("a.example", metav1.ConditionTrue), "b": nil}, "Degraded"},
		{"a duplicate trust domain", mesh.Members{"a": ready("x.example", metav1.ConditionTrue), "b": ready("x.example", metav1.ConditionTrue)}, "Degraded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			object := &spirefedv1alpha1.FederationMesh{
				TypeMeta:   metav1.TypeMeta{APIVersion: spirefedv1alpha1.GroupVersion.String(), Kind: "FederationMesh"},
				ObjectMeta: metav1.ObjectMeta{Name: "m", Generation: 1},
				Spec:       spirefedv1alpha1.FederationMeshSpec{Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}},
			}
			mesh.SetMembers(object, tc.members)
			mesh.Summarize(object, mesh.WriteBlocker(object, tc.members))
			object.Status.ObservedGeneration = object.Generation
			unstructured, err := runtime.DefaultUnstructuredConverter.ToUnstructured(object)
			if err != nil {
				t.Fatal(err)
			}
			status, message := health(t, filepath.Join(customizations(t), "FederationMesh", "health.lua"), unstructured)
			if status != tc.want {
				t.Errorf("health = %s %q, want %s", status, message, tc.want)
			}
		})
	}
}

// health runs a health script on obj as Argo CD does.
func health(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	status, message, err := testenv.ArgoCDHealth(script, obj)
	if err != nil {
		t.Fatal(err)
	}
	return status, message
}

// TestDocsSnippet keeps the argocd-cm snippet of docs/gitops.md equal to
// the health scripts.
func TestDocsSnippet(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "gitops.md"))
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(doc, []byte("```yaml\n"))
	end := bytes.Index(doc[start+8:], []byte("```"))
	if start < 0 || end < 0 {
		t.Fatal("docs/gitops.md has no yaml snippet")
	}
	var configMap corev1.ConfigMap
	if err := yaml.UnmarshalStrict(doc[start+8:start+8+end], &configMap); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"ZoneTrustDomain", "FederationMesh"} {
		script, err := os.ReadFile(filepath.Join(customizations(t), kind, "health.lua"))
		if err != nil {
			t.Fatal(err)
		}
		if got := configMap.Data["resource.customizations.health.spirefed.io_"+kind]; got != string(script) {
			t.Errorf("docs/gitops.md's script for %s differs from config/argocd", kind)
		}
	}
}
