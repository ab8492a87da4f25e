package mesh

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// SetMembers fills the mesh's member list and counts from the resolved
// members, and sets ZonesResolved.
func SetMembers(mesh *spirefedv1alpha1.FederationMesh, members Members) {
	names := slices.Sorted(maps.Keys(members))
	var missing []string
	mesh.Status.Zones = make([]spirefedv1alpha1.MemberZone, 0, len(names))
	mesh.Status.ReadyZones = 0
	for _, name := range names {
		member := spirefedv1alpha1.MemberZone{Name: name, Ready: metav1.ConditionUnknown}
		if zone := members[name]; zone == nil {
			missing = append(missing, name)
		} else {
			member.TrustDomain = zone.Spec.TrustDomain
			if ready := meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition); ready != nil {
				member.Ready = ready.Status
			}
			if member.Ready == metav1.ConditionTrue {
				mesh.Status.ReadyZones++
			}
		}
		mesh.Status.Zones = append(mesh.Status.Zones, member)
	}
	mesh.Status.TotalZones = int32(len(names))

	if reason, message := resolveProblem(mesh, members, missing); reason != "" {
		status.SetCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionFalse, reason, message)
		return
	}
	status.SetCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionTrue,
		spirefedv1alpha1.ReasonResolved, fmt.Sprintf("All %d member zones exist", len(names)))
}

// WriteBlocker returns the ZonesResolved reason that forbids writing to
// the zones, or "": two members with one trust domain (their objects would
// overwrite each other), or a selector that matches no zone (a typo must
// not offboard the whole federation). Call it after SetMembers.
func WriteBlocker(mesh *spirefedv1alpha1.FederationMesh, members Members) string {
	resolved := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ZonesResolvedCondition)
	switch {
	case resolved == nil || resolved.Status == metav1.ConditionTrue:
		return ""
	case resolved.Reason == spirefedv1alpha1.ReasonDuplicateTrustDomain:
		return resolved.Reason
	case mesh.Spec.Zones.Selector != nil && len(members) == 0:
		return resolved.Reason
	}
	return ""
}

// resolveProblem returns why the members do not fit the spec, or "" when
// they do: a named zone is missing, or the topology names a non-member
// (possible with a label selector, which admission cannot check).
func resolveProblem(mesh *spirefedv1alpha1.FederationMesh, members Members, missing []string) (string, string) {
	if len(missing) > 0 {
		return spirefedv1alpha1.ReasonZoneNotFound, fmt.Sprintf("ZoneTrustDomains %s do not exist", strings.Join(missing, ", "))
	}
	byTrustDomain := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		trustDomain := members[name].Spec.TrustDomain
		if other, ok := byTrustDomain[trustDomain]; ok {
			return spirefedv1alpha1.ReasonDuplicateTrustDomain, fmt.Sprintf("Zones %s and %s both have trust domain %s", other, name, trustDomain)
		}
		byTrustDomain[trustDomain] = name
	}
	topology := mesh.Spec.Topology
	if topology.Type == spirefedv1alpha1.TopologyHubAndSpoke {
		if _, ok := members[topology.Hub]; !ok {
			return spirefedv1alpha1.ReasonHubNotMember, fmt.Sprintf("The hub %q is not a member zone", topology.Hub)
		}
	}
	for _, link := range topology.Links {
		for _, end := range []string{link.From, link.To} {
			if _, ok := members[end]; !ok {
				return spirefedv1alpha1.ReasonLinkNotMember, fmt.Sprintf("Link %s -> %s names %q, which is not a member zone", link.From, link.To, end)
			}
		}
	}
	if len(members) == 0 {
		return spirefedv1alpha1.ReasonZoneNotFound, "No ZoneTrustDomain matches zones.selector"
	}
	return "", ""
}

// ClearPairs empties the pairs while nothing may be written.
func ClearPairs(mesh *spirefedv1alpha1.FederationMesh) {
	mesh.Status.Pairs, mesh.Status.PairTotals, mesh.Status.OmittedPairs = nil, nil, 0
}

// SetPairs reports every directed pair the plan demands and counts them by
// state. A pair keeps its lastTransitionTime while its state holds.
func SetPairs(mesh *spirefedv1alpha1.FederationMesh, members Members, zonePlan plan.Plan, observed *Observation, now time.Time) {
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
		pair := PairStatus(members, observed, link, gated[link])
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

// MaxListedPairs bounds status.pairs: a mesh of many zones has far more
// pairs than a FederationMesh object can hold (etcd refuses objects above
// 1.5 MB, about 60 zones of full mesh with every pair listed).
const MaxListedPairs = 100

// BoundPairs keeps status.pairs within MaxListedPairs: a mesh of more
// pairs lists only those that are not established (sorted, problems
// first), at most MaxListedPairs, and counts the rest in omittedPairs. It
// returns every pair, for the per-pair metrics. Call it last: Summarize
// and Settling read every pair.
func BoundPairs(mesh *spirefedv1alpha1.FederationMesh) []spirefedv1alpha1.PairStatus {
	all := mesh.Status.Pairs
	mesh.Status.OmittedPairs = 0
	if len(all) <= MaxListedPairs {
		return all
	}
	listed := make([]spirefedv1alpha1.PairStatus, 0, MaxListedPairs)
	for _, pair := range all {
		if Established(pair) {
			continue
		}
		if len(listed) == MaxListedPairs {
			mesh.Status.OmittedPairs++
			continue
		}
		listed = append(listed, pair)
	}
	mesh.Status.Pairs = listed
	return all
}

// summarizeZones counts, for every member zone, the pairs in which it
// trusts a peer and how many of them are established.
func summarizeZones(mesh *spirefedv1alpha1.FederationMesh) {
	peers := map[string]int32{}
	established := map[string]int32{}
	for _, pair := range mesh.Status.Pairs {
		peers[pair.From]++
		if Established(pair) {
			established[pair.From]++
		}
	}
	for i := range mesh.Status.Zones {
		name := mesh.Status.Zones[i].Name
		mesh.Status.Zones[i].Peers, mesh.Status.Zones[i].EstablishedPeers = peers[name], established[name]
	}
}

// PairStatus says where one directed pair stands.
func PairStatus(members Members, observed *Observation, link plan.Link, gated bool) spirefedv1alpha1.PairStatus {
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
	return spirePairState(members, observed, link, set)
}

// spirePairState judges a pair whose ClusterFederatedTrustDomain is written
// and current by what the trusting zone's SPIRE server holds.
func spirePairState(members Members, observed *Observation, link plan.Link, set func(spirefedv1alpha1.PairState, string, string) spirefedv1alpha1.PairStatus) spirefedv1alpha1.PairStatus {
	peer := members[link.To]
	peerTrustDomain := peer.Spec.TrustDomain
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
	case !HoldsCurrent(held, peer):
		return set(spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonSpireBundleOutdated,
			fmt.Sprintf("The SPIRE server of %s holds other authorities of %s than the current ones (%d X.509, %d JWT); the operator asks it to refresh", link.From, peerTrustDomain, len(bundle.X509Fingerprints), len(bundle.JWTKeyIDs)))
	}
	return set(spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld,
		fmt.Sprintf("The SPIRE server of %s holds the current bundle of %s", link.From, peerTrustDomain))
}

// Settling says whether a pair waits for something that happens without a
// watch event: a SPIRE server fetching a bundle.
func Settling(mesh *spirefedv1alpha1.FederationMesh) bool {
	for _, pair := range mesh.Status.Pairs {
		switch {
		case pair.State == spirefedv1alpha1.PairStale,
			pair.State == spirefedv1alpha1.PairPending && pair.Reason != spirefedv1alpha1.ReasonSpireNotObserved:
			return true
		}
	}
	return false
}

// Established says whether a pair counts for Ready: Converged, or written
// and current where the trusting zone's SPIRE is not observed.
func Established(pair spirefedv1alpha1.PairStatus) bool {
	return pair.State == spirefedv1alpha1.PairConverged || unobserved(pair)
}

func unobserved(pair spirefedv1alpha1.PairStatus) bool {
	return pair.State == spirefedv1alpha1.PairPending && pair.Reason == spirefedv1alpha1.ReasonSpireNotObserved
}

// describeProblemPairs names up to five pairs that are not established.
func describeProblemPairs(pairs []spirefedv1alpha1.PairStatus) string {
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
