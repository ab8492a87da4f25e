package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
)

const ready = spirefedv1alpha1.ReadyCondition

func condition(conditionType string, status metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: conditionType, Status: status, Reason: reason, Message: reason + " message"}
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
		members    Members
		wantReason string
		wantReady  int32
	}{
		{"all ready", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Members{"a": readyZone("a.example", metav1.ConditionTrue), "b": readyZone("b.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonSucceeded, 2},
		{"one not ready", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Members{"a": readyZone("a.example", metav1.ConditionTrue), "b": readyZone("b.example", metav1.ConditionFalse)},
			spirefedv1alpha1.ReasonZonesNotReady, 1},
		{"missing zone", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Members{"a": readyZone("a.example", metav1.ConditionTrue), "b": nil},
			spirefedv1alpha1.ReasonZoneNotFound, 1},
		{"hub not a member", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: "h"},
			Members{"a": readyZone("a.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonHubNotMember, 1},
		{"link to a non-member", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyExplicit, Links: []spirefedv1alpha1.Link{{From: "a", To: "z"}}},
			Members{"a": readyZone("a.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonLinkNotMember, 1},
		{"selector selects nothing", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Members{},
			spirefedv1alpha1.ReasonZoneNotFound, 0},
		{"duplicate trust domain", spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Members{"a": readyZone("a.example", metav1.ConditionTrue), "b": readyZone("a.example", metav1.ConditionTrue)},
			spirefedv1alpha1.ReasonDuplicateTrustDomain, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh := &spirefedv1alpha1.FederationMesh{Spec: spirefedv1alpha1.FederationMeshSpec{Topology: tc.topology}}
			SetMembers(mesh, tc.members)
			Summarize(mesh, WriteBlocker(mesh, tc.members))
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

func TestWriteBlocker(t *testing.T) {
	t.Parallel()
	zone := func(trustDomain string) *spirefedv1alpha1.ZoneTrustDomain {
		return &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: trustDomain}}
	}
	cases := []struct {
		name     string
		selector bool
		members  Members
		want     string
	}{
		{"resolved", false, Members{"a": zone("a.example")}, ""},
		{"duplicate trust domain", false, Members{"a": zone("x.example"), "b": zone("x.example")}, spirefedv1alpha1.ReasonDuplicateTrustDomain},
		{"selector matches nothing", true, Members{}, spirefedv1alpha1.ReasonZoneNotFound},
		{"named zone missing still writes the others", false, Members{"a": zone("a.example"), "b": nil}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh := &spirefedv1alpha1.FederationMesh{Spec: spirefedv1alpha1.FederationMeshSpec{Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}}}
			if tc.selector {
				mesh.Spec.Zones.Selector = &metav1.LabelSelector{}
			}
			SetMembers(mesh, tc.members)
			if got := WriteBlocker(mesh, tc.members); got != tc.want {
				t.Errorf("WriteBlocker = %q, want %q", got, tc.want)
			}
			if tc.want != "" {
				Summarize(mesh, tc.want)
				converged := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ConvergedCondition)
				if converged.Status != metav1.ConditionFalse || !strings.Contains(converged.Message, "nothing is written") {
					t.Errorf("Converged = %s %q", converged.Status, converged.Message)
				}
			}
		})
	}
}

// pairFixture is a two-zone mesh, a trusts b, as one reconcile saw it.
type pairFixture struct {
	members  Members
	observed *Observation
	gated    bool
}

func newPairFixture() *pairFixture {
	peer := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: "b.example"}}
	sequence := int64(3)
	peer.Status.Bundle = &spirefedv1alpha1.BundleStatus{
		Source:             spirefedv1alpha1.BundleSourceEndpoint,
		Sequence:           &sequence,
		X509Authorities:    []spirefedv1alpha1.X509Authority{{SHA256Fingerprint: "f1"}},
		JWTAuthorityKeyIDs: []string{"k1"},
	}
	peer.Status.Conditions = []metav1.Condition{condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched)}
	trusting := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: "a.example"}}
	observed := NewObservation()
	observed.Applied["a"] = apply.Result{Current: map[string]bool{"b.example": true}, Conflicts: map[string]string{}}
	observed.SpireHeld["a"] = map[string]spireaccess.HeldBundle{"b.example": {X509Fingerprints: []string{"f1"}, JWTKeyIDs: []string{"k1"}}}
	return &pairFixture{members: Members{"a": trusting, "b": peer}, observed: observed}
}

func TestPairStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		edit       func(*pairFixture)
		wantState  spirefedv1alpha1.PairState
		wantReason string
	}{
		{"converged", func(*pairFixture) {}, spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld},
		{"trusting zone unreachable", func(f *pairFixture) { f.observed.Unreachable["a"] = "connection refused" },
			spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.ReasonUnreachable},
		{"peer bundle unknown", func(f *pairFixture) { f.gated = true }, spirefedv1alpha1.PairGated, spirefedv1alpha1.ReasonPeerBundleUnknown},
		{"conflict", func(f *pairFixture) { f.observed.Applied["a"].Conflicts["b.example"] = "taken" },
			spirefedv1alpha1.PairConflict, spirefedv1alpha1.ReasonConflict},
		{"apply failed before the pair was written", func(f *pairFixture) {
			f.observed.Applied["a"] = apply.Result{Current: map[string]bool{}}
			f.observed.ApplyErrors["a"] = errors.New("forbidden")
		}, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonApplyFailed},
		{"apply failed after the pair was written", func(f *pairFixture) { f.observed.ApplyErrors["a"] = errors.New("later object failed") },
			spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld},
		{"peer endpoint failing", func(f *pairFixture) {
			f.members["b"].Status.Conditions = []metav1.Condition{condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonEndpointUnreachable)}
		}, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonPeerBundleNotRefreshed},
		{"peer never fetched", func(f *pairFixture) { f.members["b"].Status.Conditions = nil },
			spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonPeerBundleNotRefreshed},
		{"SPIRE cannot be read", func(f *pairFixture) {
			delete(f.observed.SpireHeld, "a")
			f.observed.SpireErrors["a"] = "socket gone"
		}, spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.ReasonSpireUnreachable},
		{"SPIRE not observed", func(f *pairFixture) { delete(f.observed.SpireHeld, "a") },
			spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonSpireNotObserved},
		{"SPIRE holds no bundle yet", func(f *pairFixture) { f.observed.SpireHeld["a"] = map[string]spireaccess.HeldBundle{} },
			spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonWaitingForSpire},
		{"SPIRE holds old X.509 authorities", func(f *pairFixture) {
			f.observed.SpireHeld["a"]["b.example"] = spireaccess.HeldBundle{X509Fingerprints: []string{"f0"}, JWTKeyIDs: []string{"k1"}}
		}, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonSpireBundleOutdated},
		{"SPIRE holds old JWT authorities", func(f *pairFixture) {
			f.observed.SpireHeld["a"]["b.example"] = spireaccess.HeldBundle{X509Fingerprints: []string{"f1"}, JWTKeyIDs: []string{"k0"}}
		}, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonSpireBundleOutdated},
		{"JWT keys not compared while the bundle came from the ConfigMap", func(f *pairFixture) {
			f.members["b"].Status.Bundle.Source = spirefedv1alpha1.BundleSourceConfigMap
			f.observed.SpireHeld["a"]["b.example"] = spireaccess.HeldBundle{X509Fingerprints: []string{"f1"}}
		}, spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newPairFixture()
			tc.edit(f)
			got := PairStatus(f.members, f.observed, plan.Link{From: "a", To: "b"}, f.gated)
			if got.State != tc.wantState || got.Reason != tc.wantReason {
				t.Errorf("pair = %s/%s (%s), want %s/%s", got.State, got.Reason, got.Message, tc.wantState, tc.wantReason)
			}
			if got.Message == "" {
				t.Error("pair has no message")
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	pair := func(state spirefedv1alpha1.PairState, reason string) spirefedv1alpha1.PairStatus {
		return spirefedv1alpha1.PairStatus{From: "a", To: "b", State: state, Reason: reason}
	}
	readyMember := spirefedv1alpha1.MemberZone{Name: "a", Ready: metav1.ConditionTrue}
	cases := []struct {
		name                     string
		zones                    []spirefedv1alpha1.MemberZone
		pairs                    []spirefedv1alpha1.PairStatus
		deleting                 bool
		wantReady, wantConverged metav1.ConditionStatus
		wantReadyReason          string
		wantConvergedReason      string
	}{
		{"all converged", []spirefedv1alpha1.MemberZone{readyMember}, []spirefedv1alpha1.PairStatus{pair(spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld)},
			false, metav1.ConditionTrue, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, spirefedv1alpha1.ReasonSucceeded},
		{"written but SPIRE not observed", []spirefedv1alpha1.MemberZone{readyMember}, []spirefedv1alpha1.PairStatus{pair(spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonSpireNotObserved)},
			false, metav1.ConditionTrue, metav1.ConditionUnknown, spirefedv1alpha1.ReasonSucceeded, spirefedv1alpha1.ReasonSpireNotObserved},
		{"a pair stale", []spirefedv1alpha1.MemberZone{readyMember}, []spirefedv1alpha1.PairStatus{pair(spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonSpireBundleOutdated)},
			false, metav1.ConditionFalse, metav1.ConditionFalse, spirefedv1alpha1.ReasonPairsNotEstablished, spirefedv1alpha1.ReasonPairsNotEstablished},
		{"a zone not ready wins over pairs", []spirefedv1alpha1.MemberZone{{Name: "a", Ready: metav1.ConditionFalse}}, []spirefedv1alpha1.PairStatus{pair(spirefedv1alpha1.PairGated, spirefedv1alpha1.ReasonPeerBundleUnknown)},
			false, metav1.ConditionFalse, metav1.ConditionFalse, spirefedv1alpha1.ReasonZonesNotReady, spirefedv1alpha1.ReasonPairsNotEstablished},
		{"deleting", []spirefedv1alpha1.MemberZone{readyMember}, nil,
			true, metav1.ConditionFalse, "", spirefedv1alpha1.ReasonDeleting, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh := &spirefedv1alpha1.FederationMesh{ObjectMeta: metav1.ObjectMeta{Generation: 4}}
			mesh.Status.Conditions = []metav1.Condition{condition(spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonResolved)}
			mesh.Status.Zones, mesh.Status.Pairs = tc.zones, tc.pairs
			if tc.deleting {
				now := metav1.NewTime(time.Now())
				mesh.DeletionTimestamp = &now
			}
			Summarize(mesh, "")
			gotReady := meta.FindStatusCondition(mesh.Status.Conditions, ready)
			if gotReady.Status != tc.wantReady || gotReady.Reason != tc.wantReadyReason || gotReady.ObservedGeneration != 4 {
				t.Errorf("Ready = %s/%s (generation %d), want %s/%s", gotReady.Status, gotReady.Reason, gotReady.ObservedGeneration, tc.wantReady, tc.wantReadyReason)
			}
			gotConverged := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ConvergedCondition)
			switch {
			case tc.wantConverged == "" && gotConverged != nil:
				t.Errorf("Converged set while deleting: %v", gotConverged)
			case tc.wantConverged != "" && (gotConverged == nil || gotConverged.Status != tc.wantConverged || gotConverged.Reason != tc.wantConvergedReason):
				t.Errorf("Converged = %v, want %s/%s", gotConverged, tc.wantConverged, tc.wantConvergedReason)
			}
		})
	}
}

func TestSetPairsKeepsTransitionTimes(t *testing.T) {
	t.Parallel()
	f := newPairFixture()
	mesh := &spirefedv1alpha1.FederationMesh{}
	zonePlan := plan.Plan{Links: []plan.Link{{From: "a", To: "b"}}}
	first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	SetPairs(mesh, f.members, zonePlan, f.observed, first)
	SetPairs(mesh, f.members, zonePlan, f.observed, first.Add(time.Hour))
	if got := mesh.Status.Pairs[0].LastTransitionTime.Time; !got.Equal(first) {
		t.Errorf("lastTransitionTime moved to %s while the state held", got)
	}
	delete(f.observed.SpireHeld, "a")
	SetPairs(mesh, f.members, zonePlan, f.observed, first.Add(2*time.Hour))
	if got := mesh.Status.Pairs[0]; got.State != spirefedv1alpha1.PairPending || !got.LastTransitionTime.Time.Equal(first.Add(2*time.Hour)) {
		t.Errorf("pair after a change = %s at %s", got.State, got.LastTransitionTime)
	}
	if mesh.Status.PairTotals[spirefedv1alpha1.PairPending] != 1 {
		t.Errorf("totals = %v", mesh.Status.PairTotals)
	}
}

func TestPlanInputEvidence(t *testing.T) {
	t.Parallel()
	f := newPairFixture()
	mesh := &spirefedv1alpha1.FederationMesh{ObjectMeta: metav1.ObjectMeta{Name: "m"}}
	// SPIRE read: its word counts.
	in := PlanInput(mesh, f.members, f.observed)
	if !in.Observed["a"].PeersWithBundle["b.example"] {
		t.Errorf("evidence from SPIRE = %v", in.Observed["a"])
	}
	// SPIRE configured but unreadable, nothing federated yet: no peer.
	delete(f.observed.SpireHeld, "a")
	f.observed.SpireErrors["a"] = "down"
	f.observed.Live["a"] = &apply.Live{}
	in = PlanInput(mesh, f.members, f.observed)
	if len(in.Observed["a"].PeersWithBundle) != 0 {
		t.Errorf("evidence while SPIRE is unreadable = %v", in.Observed["a"])
	}
	if len(in.Zones) != 2 || in.Mesh != "m" {
		t.Errorf("zones = %v", in.Zones)
	}
}

func TestKstatusConditions(t *testing.T) {
	t.Parallel()
	zone := func(trustDomain string, ready metav1.ConditionStatus) *spirefedv1alpha1.ZoneTrustDomain {
		z := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: trustDomain}}
		z.Status.Conditions = []metav1.Condition{condition(spirefedv1alpha1.ReadyCondition, ready, "x")}
		return z
	}
	cases := []struct {
		name                         string
		members                      Members
		wantReconciling, wantStalled bool
		wantReason                   string
	}{
		{"ready: neither", Members{"a": zone("a.example", metav1.ConditionTrue)}, false, false, ""},
		{"a zone not ready: reconciling", Members{"a": zone("a.example", metav1.ConditionFalse)}, true, false, spirefedv1alpha1.ReasonZonesNotReady},
		{"a zone missing: stalled", Members{"a": zone("a.example", metav1.ConditionTrue), "b": nil}, false, true, spirefedv1alpha1.ReasonZoneNotFound},
		{"duplicate trust domain: stalled", Members{"a": zone("x.example", metav1.ConditionTrue), "b": zone("x.example", metav1.ConditionTrue)}, false, true, spirefedv1alpha1.ReasonDuplicateTrustDomain},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh := &spirefedv1alpha1.FederationMesh{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: spirefedv1alpha1.FederationMeshSpec{Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}}}
			// A stale Stalled from an earlier pass must go.
			mesh.Status.Conditions = []metav1.Condition{condition(spirefedv1alpha1.StalledCondition, metav1.ConditionTrue, "Old")}
			SetMembers(mesh, tc.members)
			Summarize(mesh, WriteBlocker(mesh, tc.members))
			reconciling := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ReconcilingCondition)
			stalled := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.StalledCondition)
			if (reconciling != nil) != tc.wantReconciling || (stalled != nil) != tc.wantStalled {
				t.Fatalf("Reconciling %v, Stalled %v", reconciling, stalled)
			}
			for _, c := range []*metav1.Condition{reconciling, stalled} {
				if c != nil && (c.Status != metav1.ConditionTrue || c.Reason != tc.wantReason || c.ObservedGeneration != 2) {
					t.Errorf("condition %+v, want True/%s at generation 2", c, tc.wantReason)
				}
			}
		})
	}
}

func TestBoundPairs(t *testing.T) {
	t.Parallel()
	pairs := func(total, problems int) []spirefedv1alpha1.PairStatus {
		var out []spirefedv1alpha1.PairStatus
		for i := range total {
			pair := spirefedv1alpha1.PairStatus{From: fmt.Sprintf("z%04d", i), To: "hub", State: spirefedv1alpha1.PairConverged}
			if i < problems {
				pair.State, pair.Reason = spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonApplyFailed
			}
			out = append(out, pair)
		}
		return out
	}
	cases := []struct {
		name                  string
		total, problems       int
		wantListed, wantOmits int
	}{
		{"a small mesh lists every pair", MaxListedPairs, 3, MaxListedPairs, 0},
		{"a large converged mesh lists none", 2000, 0, 0, 0},
		{"a large mesh lists its problems", 2000, 7, 7, 0},
		{"problems beyond the bound are counted", 2000, 250, MaxListedPairs, 150},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh := &spirefedv1alpha1.FederationMesh{}
			mesh.Status.Pairs = pairs(tc.total, tc.problems)
			all := BoundPairs(mesh)
			if len(all) != tc.total || len(mesh.Status.Pairs) != tc.wantListed || int(mesh.Status.OmittedPairs) != tc.wantOmits {
				t.Errorf("all %d, listed %d, omitted %d; want %d, %d, %d", len(all), len(mesh.Status.Pairs), mesh.Status.OmittedPairs, tc.total, tc.wantListed, tc.wantOmits)
			}
		})
	}
}

func TestSetPairsSummarizesZones(t *testing.T) {
	t.Parallel()
	f := newPairFixture()
	mesh := &spirefedv1alpha1.FederationMesh{}
	SetMembers(mesh, f.members)
	SetPairs(mesh, f.members, plan.Plan{Links: []plan.Link{{From: "a", To: "b"}}}, f.observed, time.Now())
	for _, zone := range mesh.Status.Zones {
		want := int32(0)
		if zone.Name == "a" {
			want = 1
		}
		if zone.Peers != want || zone.EstablishedPeers != want {
			t.Errorf("zone %s: peers %d, established %d; want %d", zone.Name, zone.Peers, zone.EstablishedPeers, want)
		}
	}
}

// TestStatusSizeAtThousandZones checks that the status of a 1,000-zone
// hub-and-spoke mesh whose every pair fails stays far below etcd's 1.5 MB
// object limit.
func TestStatusSizeAtThousandZones(t *testing.T) {
	t.Parallel()
	members := Members{}
	var names []string
	observed := NewObservation()
	for i := range 1000 {
		name := fmt.Sprintf("zone-%04d", i)
		names = append(names, name)
		zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: name + ".example.org"}}
		zone.Status.Conditions = []metav1.Condition{condition(ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)}
		members[name] = zone
		observed.Unreachable[name] = "the zone's API server did not answer: dial tcp 10.0.0.1:6443: connect: connection refused"
	}
	mesh := &spirefedv1alpha1.FederationMesh{ObjectMeta: metav1.ObjectMeta{Name: "big"}}
	mesh.Spec.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: names[0]}
	SetMembers(mesh, members)
	SetPairs(mesh, members, plan.Plan{Links: plan.Links(mesh.Spec.Topology, names)}, observed, time.Now())
	Summarize(mesh, "")
	all := BoundPairs(mesh)
	document, err := json.Marshal(mesh)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1998 || len(mesh.Status.Pairs) != MaxListedPairs || mesh.Status.OmittedPairs != 1898 {
		t.Errorf("pairs: %d in all, %d listed, %d omitted", len(all), len(mesh.Status.Pairs), mesh.Status.OmittedPairs)
	}
	if len(document) > 400_000 {
		t.Errorf("the mesh is %d bytes", len(document))
	}
	t.Logf("1,000-zone mesh status: %d bytes", len(document))
}

func TestDeletingNamesBoundedZones(t *testing.T) {
	mesh := &spirefedv1alpha1.FederationMesh{}
	mesh.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	for i := range 200 {
		mesh.Status.AppliedZones = append(mesh.Status.AppliedZones, fmt.Sprintf("scale-200-%d", i))
	}
	Summarize(mesh, "")
	ready := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ReadyCondition)
	if ready == nil || ready.Reason != spirefedv1alpha1.ReasonDeleting {
		t.Fatalf("Ready = %+v, want reason Deleting", ready)
	}
	if len(ready.Message) > 1024 || !strings.Contains(ready.Message, "200 zones") || !strings.Contains(ready.Message, "and 190 more") {
		t.Errorf("message of %d bytes: %s", len(ready.Message), ready.Message)
	}
}
