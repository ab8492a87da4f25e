package mesh

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// The reference functions below are SetPairs, PairStatus and HoldsCurrent
// as they were before SetPairs worked out each zone's facts once per pass:
// straightforward, one pair at a time. The tests pin that the faster path
// says exactly what they said.

func referenceSetPairs(mesh *spirefedv1alpha1.FederationMesh, members Members, zonePlan plan.Plan, observed *Observation, now time.Time) {
	previous := map[plan.Link]spirefedv1alpha1.PairStatus{}
	for _, pair := range mesh.Status.Pairs {
		previous[plan.Link{From: pair.From, To: pair.To}] = pair
	}
	gated := map[plan.Link]bool{}
	for _, link := range zonePlan.Gated {
		gated[link] = true
	}
	mesh.Status.Pairs = make([]spirefedv1alpha1.PairStatus, 0, len(zonePlan.Links))
	totals := map[spirefedv1alpha1.PairState]int32{}
	for _, link := range zonePlan.Links {
		pair := referencePairStatus(members, observed, link, gated[link])
		if old, ok := previous[link]; ok && old.State == pair.State {
			pair.LastTransitionTime = old.LastTransitionTime
		} else {
			pair.LastTransitionTime = metav1.NewTime(now)
		}
		totals[pair.State]++
		mesh.Status.Pairs = append(mesh.Status.Pairs, pair)
	}
	mesh.Status.PairTotals = totals
	mesh.Status.OmittedPairs = 0
	summarizeZones(mesh)
}

func referencePairStatus(members Members, observed *Observation, link plan.Link, gated bool) spirefedv1alpha1.PairStatus {
	pair := spirefedv1alpha1.PairStatus{From: link.From, To: link.To}
	peer := members[link.To]
	peerTrustDomain := peer.Spec.TrustDomain
	set := func(state spirefedv1alpha1.PairState, reason, message string) spirefedv1alpha1.PairStatus {
		pair.State, pair.Reason, pair.Message = state, reason, message
		return pair
	}
	if why, ok := observed.Unreachable[link.From]; ok {
		return set(spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.ReasonUnreachable, fmt.Sprintf("Zone %s cannot be reached: %s", link.From, status.Brief(why)))
	}
	if gated {
		return set(spirefedv1alpha1.PairGated, spirefedv1alpha1.ReasonPeerBundleUnknown, fmt.Sprintf("The bundle of %s is not known yet; nothing is written", peerTrustDomain))
	}
	if message, ok := observed.Applied[link.From].Conflicts[peerTrustDomain]; ok {
		return set(spirefedv1alpha1.PairConflict, spirefedv1alpha1.ReasonConflict, message)
	}
	if err, failed := observed.ApplyErrors[link.From]; failed && !observed.Applied[link.From].Current[peerTrustDomain] {
		return set(spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonApplyFailed, status.Brief(err.Error()))
	}
	if peer.Status.Bundle != nil {
		pair.PeerSequence = peer.Status.Bundle.Sequence
		for _, authority := range peer.Status.Bundle.X509Authorities {
			pair.PeerX509Fingerprints = append(pair.PeerX509Fingerprints, authority.SHA256Fingerprint)
		}
	}
	if fetched := meta.FindStatusCondition(peer.Status.Conditions, spirefedv1alpha1.BundleFetchedCondition); fetched == nil || fetched.Status != metav1.ConditionTrue {
		reason := "not fetched yet"
		if fetched != nil {
			reason = fetched.Reason + ": " + status.Brief(fetched.Message)
		}
		return set(spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonPeerBundleNotRefreshed,
			fmt.Sprintf("%s holds the last good bundle of %s, which cannot be refreshed (%s)", link.From, peerTrustDomain, reason))
	}
	if why, failed := observed.SpireErrors[link.From]; failed {
		return set(spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.ReasonSpireUnreachable,
			fmt.Sprintf("The ClusterFederatedTrustDomain for %s in %s is current, but the zone's SPIRE server cannot be read: %s", peerTrustDomain, link.From, status.Brief(why)))
	}
	held, read := observed.SpireHeld[link.From]
	if !read {
		return set(spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonSpireNotObserved,
			fmt.Sprintf("The ClusterFederatedTrustDomain for %s in %s is current; SPIRE is not observed (set spire.serverAccess on zone %s)", peerTrustDomain, link.From, link.From))
	}
	bundle, holds := held[peerTrustDomain]
	switch {
	case !holds:
		return set(spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonWaitingForSpire,
			fmt.Sprintf("The SPIRE server of %s holds no bundle of %s yet", link.From, peerTrustDomain))
	case !referenceHoldsCurrent(held, peer):
		return set(spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonSpireBundleOutdated,
			fmt.Sprintf("The SPIRE server of %s holds other authorities of %s than the current ones (%d X.509, %d JWT); the operator asks it to refresh", link.From, peerTrustDomain, len(bundle.X509Fingerprints), len(bundle.JWTKeyIDs)))
	}
	return set(spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld,
		fmt.Sprintf("The SPIRE server of %s holds the current bundle of %s", link.From, peerTrustDomain))
}

func referenceHoldsCurrent(held map[string]spireaccess.HeldBundle, peer *spirefedv1alpha1.ZoneTrustDomain) bool {
	bundle, ok := held[peer.Spec.TrustDomain]
	current := peer.Status.Bundle
	if !ok || current == nil {
		return false
	}
	fingerprints := make([]string, 0, len(current.X509Authorities))
	for _, authority := range current.X509Authorities {
		fingerprints = append(fingerprints, authority.SHA256Fingerprint)
	}
	dropped := map[string]bool{}
	for _, authority := range current.DroppedX509Authorities {
		dropped[authority.SHA256Fingerprint] = true
	}
	bundle.X509Fingerprints = slices.DeleteFunc(slices.Clone(bundle.X509Fingerprints), func(fingerprint string) bool { return dropped[fingerprint] })
	if !bundle.Holds(fingerprints) {
		return false
	}
	return current.Source != spirefedv1alpha1.BundleSourceEndpoint || bundle.HoldsJWTKeys(current.JWTAuthorityKeyIDs)
}

// variedMesh is a full mesh of 14 zones in which every way a pair can stand
// occurs: trusting zones unreachable, failing to apply (before or after
// writing some pairs), with conflicts, with SPIRE unreadable, unobserved or
// holding current, outdated, partly dropped or no bundles; peers without a
// bundle, without X.509 authorities, with authorities out of order, whose
// endpoint fails, never fetched, or bootstrapped from a ConfigMap.
func variedMesh() (Members, *Observation, plan.Plan) {
	const zones = 14
	long := strings.Repeat("a long explanation ", 40)
	members := Members{}
	var names []string
	for i := range zones {
		name := fmt.Sprintf("z%02d", i)
		names = append(names, name)
		zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: name + ".example.org"}}
		sequence := int64(10 + i)
		bundle := &spirefedv1alpha1.BundleStatus{
			Source:             spirefedv1alpha1.BundleSourceEndpoint,
			Sequence:           &sequence,
			X509Authorities:    []spirefedv1alpha1.X509Authority{{SHA256Fingerprint: name + "-x2"}, {SHA256Fingerprint: name + "-x1"}},
			JWTAuthorityKeyIDs: []string{name + "-k2", name + "-k1"},
		}
		fetched := condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched)
		switch i {
		case 1: // no bundle known yet
			bundle = nil
		case 2: // no X.509 authorities
			bundle.X509Authorities = nil
		case 3: // endpoint failing, with a long message
			fetched = condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonEndpointUnreachable)
			fetched.Message = long
		case 4: // never fetched
			fetched.Type = spirefedv1alpha1.ReadyCondition
		case 5: // bootstrapped: JWT keys are not compared
			bundle.Source = spirefedv1alpha1.BundleSourceConfigMap
			bundle.JWTAuthorityKeyIDs = nil
		case 6: // an authority dropped as outside its validity
			bundle.DroppedX509Authorities = []spirefedv1alpha1.DroppedAuthority{{SHA256Fingerprint: name + "-x0", Reason: "expired"}}
		case 7: // a single authority, listed twice
			bundle.X509Authorities = []spirefedv1alpha1.X509Authority{{SHA256Fingerprint: name + "-x1"}, {SHA256Fingerprint: name + "-x1"}}
		}
		zone.Status.Bundle = bundle
		zone.Status.Conditions = []metav1.Condition{condition(spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded), fetched}
		members[name] = zone
	}
	observed := NewObservation()
	for i, name := range names {
		current := map[string]bool{}
		conflicts := map[string]string{}
		held := map[string]spireaccess.HeldBundle{}
		for j, peer := range names {
			if i == j {
				continue
			}
			trustDomain := members[peer].Spec.TrustDomain
			current[trustDomain] = (i+j)%4 != 0 || i < 8
			if i == 4 && j%3 == 0 {
				conflicts[trustDomain] = "a ClusterFederatedTrustDomain not owned by the mesh federates with " + trustDomain
			}
			// What the SPIRE server of zone i holds of peer j.
			bundle := members[peer].Status.Bundle
			var x509, jwt []string
			if bundle != nil {
				for _, authority := range bundle.X509Authorities {
					x509 = append(x509, authority.SHA256Fingerprint)
				}
				jwt = slices.Clone(bundle.JWTAuthorityKeyIDs)
			}
			switch (i*3 + j) % 6 {
			case 0: // nothing held
				continue
			case 1: // an old X.509 authority
				x509 = append(x509, peer+"-x9")
			case 2: // old JWT keys
				jwt = []string{peer + "-k0"}
			case 3: // also the dropped authority, fetched by the server itself
				x509 = append(x509, peer+"-x0")
			}
			slices.Sort(x509)
			slices.Sort(jwt)
			held[trustDomain] = spireaccess.HeldBundle{X509Fingerprints: x509, JWTKeyIDs: jwt}
		}
		observed.Applied[name] = apply.Result{Current: current, Conflicts: conflicts}
		observed.Live[name] = &apply.Live{}
		switch i % 8 {
		case 0:
			observed.Unreachable[name] = "dial tcp: " + long
			delete(observed.Applied, name)
		case 1:
			observed.ApplyErrors[name] = errors.New("forbidden: " + long)
		case 2:
			observed.SpireErrors[name] = "socket gone: " + long
		case 3:
			// SPIRE is not observed.
		default:
			observed.SpireHeld[name] = held
		}
	}
	zonePlan := plan.Plan{Links: plan.Links(spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, names)}
	for _, link := range zonePlan.Links {
		// Gated on the peer without a bundle, and on a few others.
		if link.To == "z01" || link.From == "z09" && link.To == "z10" {
			zonePlan.Gated = append(zonePlan.Gated, link)
		}
	}
	return members, observed, zonePlan
}

func TestPairStatusMatchesReference(t *testing.T) {
	t.Parallel()
	members, observed, zonePlan := variedMesh()
	states := map[string]bool{}
	for _, link := range zonePlan.Links {
		for _, gated := range []bool{false, true} {
			want := referencePairStatus(members, observed, link, gated)
			got := PairStatus(members, observed, link, gated)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("pair %v (gated %t):\n got %+v\nwant %+v", link, gated, got, want)
			}
			states[string(want.State)+"/"+want.Reason] = true
		}
		if got, want := HoldsCurrent(observed.SpireHeld[link.From], members[link.To]), referenceHoldsCurrent(observed.SpireHeld[link.From], members[link.To]); got != want {
			t.Errorf("HoldsCurrent(%v) = %t, want %t", link, got, want)
		}
	}
	// The fixture must keep covering every way a pair can stand.
	for _, want := range []string{
		"Unreachable/" + spirefedv1alpha1.ReasonUnreachable, "Gated/" + spirefedv1alpha1.ReasonPeerBundleUnknown,
		"Conflict/" + spirefedv1alpha1.ReasonConflict, "Stale/" + spirefedv1alpha1.ReasonApplyFailed,
		"Stale/" + spirefedv1alpha1.ReasonPeerBundleNotRefreshed, "Unreachable/" + spirefedv1alpha1.ReasonSpireUnreachable,
		"Pending/" + spirefedv1alpha1.ReasonSpireNotObserved, "Pending/" + spirefedv1alpha1.ReasonWaitingForSpire,
		"Stale/" + spirefedv1alpha1.ReasonSpireBundleOutdated, "Converged/" + spirefedv1alpha1.ReasonBundleHeld,
	} {
		if !states[want] {
			t.Errorf("no pair is %s", want)
		}
	}
}

func TestSetPairsMatchesReference(t *testing.T) {
	t.Parallel()
	members, observed, zonePlan := variedMesh()
	shuffled := zonePlan
	shuffled.Links = slices.Clone(zonePlan.Links)
	for i := range shuffled.Links {
		// A fixed interleaving: the trusting zone changes at every link.
		j := (i * 7919) % len(shuffled.Links)
		shuffled.Links[i], shuffled.Links[j] = shuffled.Links[j], shuffled.Links[i]
	}
	cases := []struct {
		name string
		plan plan.Plan
	}{
		{"sorted links", zonePlan},
		{"links out of order", shuffled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			first := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			got := &spirefedv1alpha1.FederationMesh{}
			SetMembers(got, members)
			// The pass before saw other SPIRE servers: some pairs keep
			// their state, some change, and its status lists only some.
			before := NewObservation()
			*before = *observed
			before.SpireHeld = map[string]map[string]spireaccess.HeldBundle{}
			SetPairs(got, members, tc.plan, before, first)
			got.Status.Pairs = got.Status.Pairs[:len(got.Status.Pairs)/2]
			want := got.DeepCopy()

			second := first.Add(time.Hour)
			SetPairs(got, members, tc.plan, observed, second)
			referenceSetPairs(want, members, tc.plan, observed, second)
			comparePairs(t, "SetPairs", got, want)

			Summarize(got, "")
			Summarize(want, "")
			gotAll, wantAll := BoundPairs(got), BoundPairs(want)
			comparePairs(t, "Summarize and BoundPairs", got, want)
			if !reflect.DeepEqual(gotAll, wantAll) {
				t.Error("BoundPairs returned other pairs")
			}
		})
	}
}

// comparePairs fails unless two meshes have the same status, but for when
// their conditions last changed (SetCondition reads the clock).
func comparePairs(t *testing.T, after string, got, want *spirefedv1alpha1.FederationMesh) {
	t.Helper()
	if len(got.Status.Pairs) != len(want.Status.Pairs) {
		t.Fatalf("after %s: %d pairs, want %d", after, len(got.Status.Pairs), len(want.Status.Pairs))
	}
	for i := range got.Status.Pairs {
		if !reflect.DeepEqual(got.Status.Pairs[i], want.Status.Pairs[i]) {
			t.Errorf("after %s, pair %d:\n got %+v\nwant %+v", after, i, got.Status.Pairs[i], want.Status.Pairs[i])
		}
	}
	gotStatus, wantStatus := got.Status.DeepCopy(), want.Status.DeepCopy()
	for i := range gotStatus.Conditions {
		gotStatus.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	for i := range wantStatus.Conditions {
		wantStatus.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	gotStatus.Pairs, wantStatus.Pairs = nil, nil
	if !reflect.DeepEqual(gotStatus, wantStatus) {
		t.Errorf("after %s: status\n got %+v\nwant %+v", after, gotStatus, wantStatus)
	}
}

// TestSharedFingerprintsDoNotAlias pins that the pairs trusting one peer,
// which share its fingerprints, cannot change each other's.
func TestSharedFingerprintsDoNotAlias(t *testing.T) {
	t.Parallel()
	members, observed, zonePlan := variedMesh()
	mesh := &spirefedv1alpha1.FederationMesh{}
	SetPairs(mesh, members, zonePlan, observed, time.Now())
	var ofPeer []int
	for i, pair := range mesh.Status.Pairs {
		if pair.To == "z12" && len(pair.PeerX509Fingerprints) > 0 {
			ofPeer = append(ofPeer, i)
		}
	}
	if len(ofPeer) < 2 {
		t.Fatalf("%d pairs carry z12's fingerprints", len(ofPeer))
	}
	first, second := &mesh.Status.Pairs[ofPeer[0]], &mesh.Status.Pairs[ofPeer[1]]
	first.PeerX509Fingerprints = append(first.PeerX509Fingerprints, "first")
	second.PeerX509Fingerprints = append(second.PeerX509Fingerprints, "second")
	if got := first.PeerX509Fingerprints; !slices.Equal(got, []string{"z12-x2", "z12-x1", "first"}) {
		t.Errorf("the first pair's fingerprints = %v", got)
	}
	for _, i := range ofPeer[2:] {
		if got := mesh.Status.Pairs[i].PeerX509Fingerprints; !slices.Equal(got, []string{"z12-x2", "z12-x1"}) {
			t.Fatalf("pair %d's fingerprints = %v", i, got)
		}
	}
	if got := members["z12"].Status.Bundle.X509Authorities; len(got) != 2 {
		t.Errorf("the peer's authorities = %v", got)
	}
}

// referenceDescribeProblemPairs is describeProblemPairs as it was before it
// formatted only the pairs it names.
func referenceDescribeProblemPairs(pairs []spirefedv1alpha1.PairStatus) string {
	var problems []string
	for _, pair := range pairs {
		if !Established(pair) {
			problems = append(problems, fmt.Sprintf("%s->%s %s (%s)", pair.From, pair.To, pair.State, pair.Reason))
		}
	}
	more := ""
	if len(problems) > 5 {
		more = fmt.Sprintf(" and %d more", len(problems)-5)
		problems = problems[:5]
	}
	slices.Sort(problems)
	return strings.Join(problems, ", ") + more
}

func TestDescribeProblemPairsMatchesReference(t *testing.T) {
	t.Parallel()
	members, observed, zonePlan := variedMesh()
	mesh := &spirefedv1alpha1.FederationMesh{}
	SetPairs(mesh, members, zonePlan, observed, time.Now())
	pairs := mesh.Status.Pairs
	// From the end backwards, so that the problems come out of order.
	reversed := slices.Clone(pairs)
	slices.Reverse(reversed)
	for n := range len(pairs) + 1 {
		for _, list := range [][]spirefedv1alpha1.PairStatus{pairs[:n], pairs[len(pairs)-n:], reversed[:n]} {
			if got, want := describeProblemPairs(list), referenceDescribeProblemPairs(list); got != want {
				t.Fatalf("of %d pairs: %q, want %q", n, got, want)
			}
		}
	}
}
