package controllers

import (
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// TestMeshSDSChanged: only the mesh changes that can change a member
// zone's SDS profile wake the zone controller.
func TestMeshSDSChanged(t *testing.T) {
	mesh := func(meshType spirefedv1alpha1.MeshIntegrationType, members ...string) *spirefedv1alpha1.FederationMesh {
		out := &spirefedv1alpha1.FederationMesh{ObjectMeta: metav1.ObjectMeta{Name: "m"}}
		if meshType != "" {
			out.Spec.MeshIntegration = &spirefedv1alpha1.MeshIntegration{Type: meshType}
		}
		for _, member := range members {
			out.Status.Zones = append(out.Status.Zones, spirefedv1alpha1.MemberZone{Name: member})
		}
		return out
	}
	deleting := mesh(spirefedv1alpha1.MeshIstio, "a")
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	statusOnly := mesh(spirefedv1alpha1.MeshIstio, "b", "a")
	statusOnly.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}
	for _, tc := range []struct {
		name     string
		old, new *spirefedv1alpha1.FederationMesh
		want     bool
	}{
		{"status write", mesh(spirefedv1alpha1.MeshIstio, "a", "b"), statusOnly, false},
		{"no integration, members change", mesh("", "a"), mesh("", "a", "b"), false},
		{"integration set", mesh("", "a"), mesh(spirefedv1alpha1.MeshIstio, "a"), true},
		{"integration removed", mesh(spirefedv1alpha1.MeshKuma, "a"), mesh("", "a"), true},
		{"type changed", mesh(spirefedv1alpha1.MeshKuma, "a"), mesh(spirefedv1alpha1.MeshIstio, "a"), true},
		{"a zone joins", mesh(spirefedv1alpha1.MeshIstio, "a"), mesh(spirefedv1alpha1.MeshIstio, "a", "b"), true},
		{"a zone leaves", mesh(spirefedv1alpha1.MeshIstio, "a", "b"), mesh(spirefedv1alpha1.MeshIstio, "b"), true},
		{"deletion starts", mesh(spirefedv1alpha1.MeshIstio, "a"), deleting, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := meshSDSChanged.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
				t.Errorf("update passes: %v, want %v", got, tc.want)
			}
		})
	}
	if meshSDSChanged.Create(event.CreateEvent{Object: mesh("", "a")}) || !meshSDSChanged.Create(event.CreateEvent{Object: mesh(spirefedv1alpha1.MeshIstio, "a")}) {
		t.Error("create: only a mesh with an integration passes")
	}
	if meshSDSChanged.Delete(event.DeleteEvent{Object: mesh("", "a")}) || !meshSDSChanged.Delete(event.DeleteEvent{Object: mesh(spirefedv1alpha1.MeshKuma, "a")}) {
		t.Error("delete: only a mesh with an integration passes")
	}
}

// TestZonesForMesh: on the management API server, a mesh with an
// integration maps to its member zones installed with Helm, not to its
// external ones.
func TestZonesForMesh(t *testing.T) {
	helm := newZone("zfm-helm", "zfm-helm.test", "zfm-missing-kubeconfig")
	helm.Spec.Spire = spirefedv1alpha1.SpireInstallation{
		Install:     spirefedv1alpha1.SpireInstallHelm,
		Namespace:   "spire-server",
		ReleaseName: "spire",
		Charts:      &spirefedv1alpha1.SpireCharts{Repository: "oci://127.0.0.1:1/charts"},
	}
	createZone(t, helm)
	external := newZone("zfm-external", "zfm-external.test", "zfm-missing-kubeconfig")
	createZone(t, external)
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "zfm"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{helm.Name, external.Name, "zfm-absent"}},
			Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitForDeletion(t, mesh) })
	// The mesh lists its members, the absent one too.
	deadline := testDeadline(30)
	for got := getMesh(t, mesh.Name); len(got.Status.Zones) != 3; got = getMesh(t, mesh.Name) {
		if deadline() {
			t.Fatalf("mesh members: %+v", got.Status.Zones)
		}
	}
	mapper := &ZoneTrustDomainReconciler{Client: env.Management.Client}
	var names []string
	for _, request := range mapper.zonesForMesh(testCtx, getMesh(t, mesh.Name)) {
		names = append(names, request.Name)
	}
	if !slices.Equal(names, []string{helm.Name}) {
		t.Errorf("zones to reconcile: %v, want [%s]", names, helm.Name)
	}
	withoutIntegration := getMesh(t, mesh.Name)
	withoutIntegration.Spec.MeshIntegration = nil
	if requests := mapper.zonesForMesh(testCtx, withoutIntegration); len(requests) != 0 {
		t.Errorf("a mesh without integration maps to %v", requests)
	}
}
