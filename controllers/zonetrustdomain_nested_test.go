package controllers

import (
	"slices"
	"testing"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// TestNestedChildRemovedIsForgotten removes a child from a nested trust
// domain: the registry drops that cluster's client, probe and cache, and
// keeps the other child's.
func TestNestedChildRemovedIsForgotten(t *testing.T) {
	childKubeconfigSecret(t, "forget-c1-kubeconfig", "beta")
	childKubeconfigSecret(t, "forget-c2-kubeconfig", "gamma")
	zone := newZoneAt("forget-nested", "forget.nested.test", testenv.KubeconfigSecretName("alpha"), "https://spire-bundle.forget.nested.test:8443")
	zone.Spec.Spire.ClassName = "root"
	zone.Spec.Spire.Shape = spirefedv1alpha1.ShapeNested
	zone.Spec.Spire.Nested = &spirefedv1alpha1.NestedSpire{Children: []spirefedv1alpha1.NestedChild{
		{Name: "c1", Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "forget-c1-kubeconfig"}},
			Spire: spirefedv1alpha1.ClusterSpire{ClassName: "forget-c1"}},
		{Name: "c2", Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "forget-c2-kubeconfig"}},
			Spire: spirefedv1alpha1.ClusterSpire{ClassName: "forget-c2"}},
	}}
	createZone(t, zone)
	c1 := zones.Key{Name: zone.Name + zones.ClusterSeparator + "c1"}
	c2 := zones.Key{Name: zone.Name + zones.ClusterSeparator + "c2"}
	waitForClusterNames(t, zone.Name, []string{"c1", "c2", "root"})
	if !registry.Connected(c1) || !registry.Connected(c2) {
		t.Fatalf("the registry does not hold both children: c1 %v, c2 %v", registry.Connected(c1), registry.Connected(c2))
	}

	updateZone(t, zone.Name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
		zone.Spec.Spire.Nested.Children = zone.Spec.Spire.Nested.Children[:1]
	})
	waitForClusterNames(t, zone.Name, []string{"c1", "root"})
	if registry.Connected(c2) {
		t.Error("the registry still holds the removed child c2")
	}
	if !registry.Connected(c1) {
		t.Error("the registry dropped the remaining child c1")
	}
	deleteZone(t, zone.Name)
}

// waitForClusterNames waits until the zone's status.clusters names exactly
// these clusters (sorted).
func waitForClusterNames(t *testing.T, name string, want []string) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		zone := getZone(t, name)
		var got []string
		for _, cluster := range zone.Status.Clusters {
			got = append(got, cluster.Name)
		}
		slices.Sort(got)
		if slices.Equal(got, want) && zone.Status.ObservedGeneration == zone.Generation {
			return
		}
		if deadline() {
			t.Fatalf("zone %s: status.clusters %v, want %v", name, got, want)
		}
	}
}

func TestRemovedClusters(t *testing.T) {
	t.Parallel()
	status := func(names ...string) []spirefedv1alpha1.TrustDomainClusterStatus {
		var out []spirefedv1alpha1.TrustDomainClusterStatus
		for _, name := range names {
			role := spirefedv1alpha1.RoleChild
			if name == "root" {
				role = spirefedv1alpha1.RoleRoot
			}
			out = append(out, spirefedv1alpha1.TrustDomainClusterStatus{Name: name, Role: role})
		}
		return out
	}
	clusters := func(names ...string) []zones.Cluster {
		var out []zones.Cluster
		for _, name := range names {
			out = append(out, zones.Cluster{Name: name})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		previous []spirefedv1alpha1.TrustDomainClusterStatus
		current  []zones.Cluster
		want     []string
	}{
		{"nothing observed yet", nil, clusters("root", "c1"), nil},
		{"unchanged", status("root", "c1", "c2"), clusters("root", "c1", "c2"), nil},
		{"a child removed", status("root", "c1", "c2"), clusters("root", "c1"), []string{"c2"}},
		{"every child removed, the root kept", status("root", "c1"), clusters("root"), []string{"c1"}},
		{"a child added", status("root", "c1"), clusters("root", "c1", "c2"), nil},
	} {
		if got := removedClusters(tc.previous, tc.current); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
