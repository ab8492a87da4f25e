package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func condition(conditionType string, status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: conditionType, Status: status, Reason: reason, Message: reason + " message"}
}

func TestSummarizeZoneReady(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		conditions []metav1.Condition
		wantStatus metav1.ConditionStatus
		wantReason string
	}{
		{"nothing known", nil, metav1.ConditionUnknown, spirefedv1alpha1.ReasonProgressing},
		{"all true", []metav1.Condition{
			condition(reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected),
			condition(available, metav1.ConditionTrue, spirefedv1alpha1.ReasonBundleRead),
			condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched),
		}, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded},
		{"endpoint failing", []metav1.Condition{
			condition(reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected),
			condition(available, metav1.ConditionTrue, spirefedv1alpha1.ReasonBundleRead),
			condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonAuthenticationFailed),
		}, metav1.ConditionFalse, spirefedv1alpha1.ReasonAuthenticationFailed},
		{"unreachable wins over bundle", []metav1.Condition{
			condition(reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonUnreachable),
			condition(available, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleInvalid),
		}, metav1.ConditionFalse, spirefedv1alpha1.ReasonUnreachable},
		{"bundle invalid", []metav1.Condition{
			condition(reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected),
			condition(available, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleInvalid),
		}, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleInvalid},
		{"bundle not read yet", []metav1.Condition{
			condition(reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected),
		}, metav1.ConditionUnknown, spirefedv1alpha1.ReasonProgressing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			zone := &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
			zone.Status.Conditions = tc.conditions
			summarizeZoneReady(zone)
			got := meta.FindStatusCondition(zone.Status.Conditions, ready)
			if got.Status != tc.wantStatus || got.Reason != tc.wantReason || got.ObservedGeneration != 3 {
				t.Errorf("Ready = %s/%s (generation %d), want %s/%s", got.Status, got.Reason, got.ObservedGeneration, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestSetMeshMembers(t *testing.T) {
	t.Parallel()
	readyZone := func(trustDomain string, status metav1.ConditionStatus) *spirefedv1alpha1.ZoneTrustDomain {
		zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: trustDomain}}
		zone.Status.Conditions = []metav1.Condition{condition(ready, status, "x")}
		return zone
	}
	cases := []struct {
		name       string
		topology   spirefedv1alpha1.Topology
		members    map[string]*spirefedv1alpha1.ZoneTrustDomain
		wantReason string
		wantReady  int32
	}{
		{"all ready", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			map[string]*spirefedv1alpha1.ZoneTrustDomain{"a": readyZone("a.example", metav1.ConditionTrue), "b": readyZone("b.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonSucceeded, 2},
		{"one not ready", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			map[string]*spirefedv1alpha1.ZoneTrustDomain{"a": readyZone("a.example", metav1.ConditionTrue), "b": readyZone("b.example", metav1.ConditionFalse)},
			spirefedv1alpha1.ReasonZonesNotReady, 1},
		{"missing zone", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			map[string]*spirefedv1alpha1.ZoneTrustDomain{"a": readyZone("a.example", metav1.ConditionTrue), "b": nil},
			spirefedv1alpha1.ReasonZoneNotFound, 1},
		{"hub not a member", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: "h"},
			map[string]*spirefedv1alpha1.ZoneTrustDomain{"a": readyZone("a.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonHubNotMember, 1},
		{"link to a non-member", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyExplicit, Links: []spirefedv1alpha1.Link{{From: "a", To: "z"}}},
			map[string]*spirefedv1alpha1.ZoneTrustDomain{"a": readyZone("a.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonLinkNotMember, 1},
		{"selector selects nothing", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			map[string]*spirefedv1alpha1.ZoneTrustDomain{},
			spirefedv1alpha1.ReasonZoneNotFound, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh := &spirefedv1alpha1.FederationMesh{Spec: spirefedv1alpha1.FederationMeshSpec{Topology: tc.topology}}
			setMeshMembers(mesh, tc.members)
			got := meta.FindStatusCondition(mesh.Status.Conditions, ready)
			if got.Reason != tc.wantReason || mesh.Status.ReadyZones != tc.wantReady || mesh.Status.TotalZones != int32(len(tc.members)) {
				t.Errorf("Ready reason %s, ready %d/%d; want %s, %d/%d", got.Reason, mesh.Status.ReadyZones, mesh.Status.TotalZones, tc.wantReason, tc.wantReady, len(tc.members))
			}
			if (got.Status == metav1.ConditionTrue) != (tc.wantReason == spirefedv1alpha1.ReasonSucceeded) {
				t.Errorf("Ready status %s with reason %s", got.Status, got.Reason)
			}
		})
	}
}
