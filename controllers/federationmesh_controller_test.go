package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestFederationMeshMembers resolves a mesh's zones against real zones.
func TestFederationMeshMembers(t *testing.T) {
	beta := env.Zones["beta"]
	endpoint := startZoneEndpoint(t, "beta.example")
	writeBundleConfigMap(t, beta, endpoint.bootstrapPEM())
	member := newZoneAt("mesh-beta", "beta.example", testenv.KubeconfigSecretName("beta"), endpoint.server.URL)
	member.Labels = map[string]string{"mesh": "trading"}
	createZone(t, member)

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "trading"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{"mesh-beta", "mesh-later"}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Management.Client.Delete(testCtx, mesh) })

	got := waitForMeshCondition(t, "trading", spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonZoneNotFound, "mesh-later")
	if got.Status.TotalZones != 2 || got.Status.Zones[1].Name != "mesh-later" || got.Status.Zones[1].TrustDomain != "" {
		t.Errorf("zones in status = %+v", got.Status.Zones)
	}

	// Another trust domain in the same cluster: its own endpoint, bootstrap
	// ConfigMap in its own namespace.
	laterEndpoint := startZoneEndpoint(t, "later.example")
	writeBundleConfigMapIn(t, beta, "spire-later", laterEndpoint.bootstrapPEM())
	later := newZoneAt("mesh-later", "later.example", testenv.KubeconfigSecretName("beta"), laterEndpoint.server.URL)
	later.Spec.Spire.Namespace = "spire-later"
	createZone(t, later)
	got = waitForMeshCondition(t, "trading", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "All 2 member zones are Ready")
	if got.Status.ReadyZones != 2 || got.Status.ObservedGeneration != got.Generation {
		t.Errorf("status = %+v", got.Status)
	}

	// By label, with a hub that the selector does not select.
	got.Spec.Zones = spirefedv1alpha1.ZoneSelection{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"mesh": "trading"}}}
	got.Spec.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: "mesh-later"}
	if err := env.Management.Client.Update(testCtx, got); err != nil {
		t.Fatal(err)
	}
	waitForMeshCondition(t, "trading", spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonHubNotMember, `"mesh-later"`)
}

func waitForMeshCondition(t testing.TB, name, conditionType string, status metav1.ConditionStatus, reason, messagePart string) *spirefedv1alpha1.FederationMesh {
	t.Helper()
	return waitForCondition(t, &spirefedv1alpha1.FederationMesh{}, name, conditionType, status, reason, messagePart)
}
