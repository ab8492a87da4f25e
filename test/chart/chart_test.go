// Package chart_test installs the operator's own Helm chart into a real API
// server and checks what it grants against the RBAC that controller-gen
// generates from the code's markers.
package chart_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func TestOperatorChart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testenv.StartForTest(ctx, t, testenv.Options{})
	operatorChart, err := testenv.OperatorChart()
	if err != nil {
		t.Fatal(err)
	}
	helm, err := spirehelm.ActionConfig(env.Management.Config, testenv.OperatorNamespace)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(helm)
	install.ReleaseName = "sfo"
	install.Namespace = testenv.OperatorNamespace
	if _, err := install.RunWithContext(ctx, operatorChart, map[string]any{}); err != nil {
		t.Fatalf("installing the operator's chart: %v", err)
	}

	generated := map[string][]rbacv1.PolicyRule{}
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	roleYAML, err := os.ReadFile(filepath.Join(repo, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(roleYAML), "\n---\n") {
		var role rbacv1.Role // ClusterRole and Role share the fields compared here
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		if role.Kind != "" {
			generated[role.Kind] = role.Rules
		}
	}
	clusterRole := &rbacv1.ClusterRole{}
	if err := env.Management.Client.Get(ctx, types.NamespacedName{Name: "spire-federation-operator"}, clusterRole); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(clusterRole.Rules, generated["ClusterRole"]) {
		t.Errorf("the chart's ClusterRole grants %+v, the code needs %+v", clusterRole.Rules, generated["ClusterRole"])
	}
	role := &rbacv1.Role{}
	if err := env.Management.Client.Get(ctx, types.NamespacedName{Namespace: testenv.OperatorNamespace, Name: "spire-federation-operator"}, role); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(role.Rules, generated["Role"]) {
		t.Errorf("the chart's Role grants %+v, the code needs %+v", role.Rules, generated["Role"])
	}
	deployment := &appsv1.Deployment{}
	if err := env.Management.Client.Get(ctx, types.NamespacedName{Namespace: testenv.OperatorNamespace, Name: "spire-federation-operator"}, deployment); err != nil {
		t.Fatalf("the operator's Deployment: %v", err)
	}
	if got := deployment.Spec.Template.Spec.ServiceAccountName; got != "spire-federation-operator" {
		t.Errorf("the Deployment runs as %q", got)
	}
}
