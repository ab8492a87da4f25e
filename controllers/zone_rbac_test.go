package controllers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestLeastPrivilegeZone federates a zone whose kubeconfig user has only
// what config/zone-rbac/zone-access.yaml grants: the mesh converges there,
// and deleting it removes what it wrote.
func TestLeastPrivilegeZone(t *testing.T) {
	cluster := env.Zones["gamma"]
	const namespace, user = "spire-lp", "spirefed-operator"
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(repo, "config", "zone-rbac", "zone-access.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	endpoint := startZoneEndpoint(t, "lp.fed")
	writeBundleConfigMapIn(t, cluster, namespace, endpoint.bootstrapPEM())
	for _, doc := range strings.Split(string(manifest), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatal(err)
		}
		if obj.GetNamespace() != "" {
			obj.SetNamespace(namespace)
		}
		if err := cluster.Client.Create(testCtx, obj); err != nil {
			t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "spirefed-zone-access"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "spirefed-zone-access"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	if err := cluster.Client.Create(testCtx, binding); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cluster.Kubeconfig(user)
	if err != nil {
		t.Fatal(err)
	}
	writeSecret(t, "lp-kubeconfig", kubeconfig)

	zone := newZoneAt("lp", endpoint.TrustDomain.Name(), "lp-kubeconfig", endpoint.server.URL)
	zone.Spec.Spire.Namespace = namespace
	zone.Spec.Spire.ClassName = namespace + "-spire"
	createZone(t, zone)
	waitForZoneCondition(t, "lp", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	peer := startFederationZone(t, "lp-peer", "alpha")

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "lp"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:      spirefedv1alpha1.ZoneSelection{Names: []string{"lp", peer.name}},
			Topology:   spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{Name: "workloads", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/w"}},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	waitForMeshCondition(t, "lp", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "all 2 pairs are established")
	owned := client.MatchingLabels{plan.LabelMesh: "lp", plan.LabelZone: "lp"}
	var cftds spirev1alpha1.ClusterFederatedTrustDomainList
	if err := cluster.Client.List(testCtx, &cftds, owned); err != nil || len(cftds.Items) != 1 || cftds.Items[0].Spec.TrustDomain != peer.trustDomain() {
		t.Fatalf("ClusterFederatedTrustDomains in the zone: %+v, %v", cftds.Items, err)
	}
	// The mesh integration works with config/zone-rbac/mesh-integration.yaml
	// (which binds the user spirefed-operator), until the mesh is deleted.
	meshIntegrationWithLeastPrivilege(t, cluster)
	waitForDeletion(t, mesh)
	for _, name := range []string{meshintegration.IstioMeshConfigName} {
		if err := cluster.Client.Get(testCtx, client.ObjectKey{Namespace: "istio-system", Name: name}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
			t.Errorf("ConfigMap istio-system/%s after the mesh's deletion: %v", name, err)
		}
	}
	if err := cluster.Client.List(testCtx, &cftds, owned); err != nil || len(cftds.Items) != 0 {
		t.Errorf("left in the zone after the mesh's deletion: %d, %v", len(cftds.Items), err)
	}
	var ids spirev1alpha1.ClusterSPIFFEIDList
	if err := cluster.Client.List(testCtx, &ids, owned); err != nil || len(ids.Items) != 0 {
		t.Errorf("ClusterSPIFFEIDs left in the zone after the mesh's deletion: %d, %v", len(ids.Items), err)
	}
}

// meshIntegrationWithLeastPrivilege grants the zone's user what
// config/zone-rbac/mesh-integration.yaml grants, gives the zone an Istio
// install, and turns the mesh "lp" into an Istio mesh with strict mTLS:
// the zone "lp" reaches MeshIntegrated.
func meshIntegrationWithLeastPrivilege(t *testing.T, cluster *testenv.Cluster) {
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(repo, "config", "zone-rbac", "mesh-integration.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ensureNamespace(t, cluster, "istio-system")
	ensureNamespace(t, cluster, "kuma-system")
	for _, doc := range strings.Split(string(manifest), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			t.Fatal(err)
		}
		createInZone(t, t, cluster, obj)
	}
	installMeshCRDs(t, cluster, "istio")
	istiodDeployment := istiod("docker.io/istio/pilot:1.30.3", corev1.EnvVar{Name: meshintegration.SharedMeshConfigEnv, Value: meshintegration.IstioMeshConfigName})
	for _, obj := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Data: map[string]string{"mesh": "trustDomain: lp.fed\n"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: "istio-system"},
			Data: map[string]string{"config": "templates:\n  spire: x\n  spire-gateway: x\n"}},
		istiodDeployment,
	} {
		createInZone(t, t, cluster, obj)
	}
	updateMeshNamed(t, "lp", func(m *spirefedv1alpha1.FederationMesh) {
		m.Spec.MeshIntegration = &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio,
			Istio: &spirefedv1alpha1.IstioIntegration{Namespace: "istio-system", StrictMTLS: true}}
	})
	deadline := testDeadline(30)
	for {
		report := zoneMeshIntegration(getMesh(t, "lp"), "lp")
		if report != nil && report.Reason == spirefedv1alpha1.ReasonMeshIntegrated &&
			strings.Join(report.Objects, ",") == "ConfigMap istio-system/spirefed-mesh,PeerAuthentication istio-system/default" {
			return
		}
		if deadline() {
			t.Fatalf("zone lp: %+v", report)
		}
	}
}
