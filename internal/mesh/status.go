package mesh

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
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
	previous := make(map[plan.Link]spirefedv1alpha1.PairStatus, len(mesh.Status.Pairs))
	for _, pair := range mesh.Status.Pairs {
		previous[plan.Link{From: pair.From, To: pair.To}] = pair
	}
	gated := make(map[plan.Link]bool, len(zonePlan.Gated))
	for _, link := range zonePlan.Gated {
		gated[link] = true
	}
	peers := peerFactsOf(members)
	var trusting trustingFacts
	mesh.Status.Pairs = make([]spirefedv1alpha1.PairStatus, 0, len(zonePlan.Links))
	for i, link := range zonePlan.Links {
		// The links come sorted by trusting zone, so its facts are worked
		// out once per zone (and anew at every change, were they not).
		if i == 0 || link.From != trusting.name {
			trusting = newTrustingFacts(observed, link.From)
		}
		pair := judgePair(&trusting, peers[link.To], link, gated[link])
		if old, ok := previous[link]; ok && old.State == pair.State {
			pair.LastTransitionTime = old.LastTransitionTime
		} else {
			pair.LastTransitionTime = metav1.NewTime(now)
		}
		mesh.Status.Pairs = append(mesh.Status.Pairs, pair)
	}
	mesh.Status.PairTotals = countStates(mesh.Status.Pairs)
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

// countStates counts pairs by state. Neighbouring pairs mostly share their
// state, so it adds up each run of one state and updates the map once per
// run rather than once per pair (a pass judges tens of thousands).
func countStates(pairs []spirefedv1alpha1.PairStatus) map[spirefedv1alpha1.PairState]int32 {
	totals := map[spirefedv1alpha1.PairState]int32{}
	for i := 0; i < len(pairs); {
		state, run := pairs[i].State, int32(0)
		for ; i < len(pairs) && pairs[i].State == state; i++ {
			run++
		}
		totals[state] += run
	}
	return totals
}

// summarizeZones counts, for every member zone, the pairs in which it
// trusts a peer and how many of them are established. The pairs of one
// trusting zone are neighbours, so it adds up each run of them and updates
// the maps once per run rather than once per pair.
func summarizeZones(mesh *spirefedv1alpha1.FederationMesh) {
	peers := map[string]int32{}
	established := map[string]int32{}
	pairs := mesh.Status.Pairs
	for i := 0; i < len(pairs); {
		from, run, runEstablished := pairs[i].From, int32(0), int32(0)
		for ; i < len(pairs) && pairs[i].From == from; i++ {
			run++
			if Established(pairs[i]) {
				runEstablished++
			}
		}
		peers[from] += run
		established[from] += runEstablished
	}
	for i := range mesh.Status.Zones {
		name := mesh.Status.Zones[i].Name
		mesh.Status.Zones[i].Peers, mesh.Status.Zones[i].EstablishedPeers = peers[name], established[name]
	}
}

// PairStatus says where one directed pair stands.
func PairStatus(members Members, observed *Observation, link plan.Link, gated bool) spirefedv1alpha1.PairStatus {
	trusting := newTrustingFacts(observed, link.From)
	return judgePair(&trusting, newPeerFacts(members[link.To]), link, gated)
}

// judgePair says where the pair link stands, from the facts of its
// trusting zone and its peer.
func judgePair(trusting *trustingFacts, peer *peerFacts, link plan.Link, gated bool) spirefedv1alpha1.PairStatus {
	pair := spirefedv1alpha1.PairStatus{From: link.From, To: link.To}
	if trusting.unreachable {
		return judged(pair, spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.ReasonUnreachable, trusting.unreachableMessage)
	}
	if gated {
		return judged(pair, spirefedv1alpha1.PairGated, spirefedv1alpha1.ReasonPeerBundleUnknown, peer.gatedMessage)
	}
	if message, ok := trusting.applied.Conflicts[peer.trustDomain]; ok {
		return judged(pair, spirefedv1alpha1.PairConflict, spirefedv1alpha1.ReasonConflict, message)
	}
	if trusting.applyFailed && !trusting.applied.Current[peer.trustDomain] {
		return judged(pair, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonApplyFailed, status.Brief(trusting.applyError.Error()))
	}
	if peer.bundle != nil {
		pair.PeerSequence = peer.bundle.Sequence
		pair.PeerX509Fingerprints = peer.fingerprints
	}
	if !peer.refreshed {
		return judged(pair, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonPeerBundleNotRefreshed,
			link.From+" holds the last good bundle of "+peer.trustDomain+", which cannot be refreshed ("+peer.notRefreshed+")")
	}
	return spirePairState(trusting, peer, pair)
}

// judged sets a pair's state, reason and message. The messages are built
// by concatenation rather than fmt.Sprintf: SetPairs builds one per pair.
func judged(pair spirefedv1alpha1.PairStatus, state spirefedv1alpha1.PairState, reason, message string) spirefedv1alpha1.PairStatus {
	pair.State, pair.Reason, pair.Message = state, reason, message
	return pair
}

// spirePairState judges a pair whose ClusterFederatedTrustDomain is written
// and current by what the trusting zone's SPIRE server holds.
func spirePairState(trusting *trustingFacts, peer *peerFacts, pair spirefedv1alpha1.PairStatus) spirefedv1alpha1.PairStatus {
	from, peerTrustDomain := trusting.name, peer.trustDomain
	if trusting.spireFailed {
		return judged(pair, spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.ReasonSpireUnreachable,
			"The ClusterFederatedTrustDomain for "+peerTrustDomain+" in "+from+" is current, but the zone's SPIRE server cannot be read: "+trusting.spireError)
	}
	if !trusting.spireRead {
		return judged(pair, spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonSpireNotObserved,
			"The ClusterFederatedTrustDomain for "+peerTrustDomain+" in "+from+" is current; SPIRE is not observed (set spire.serverAccess on zone "+from+")")
	}
	bundle, holds := trusting.held[peerTrustDomain]
	switch {
	case !holds:
		return judged(pair, spirefedv1alpha1.PairPending, spirefedv1alpha1.ReasonWaitingForSpire,
			"The SPIRE server of "+from+" holds no bundle of "+peerTrustDomain+" yet")
	case !peer.authorities.heldBy(bundle):
		return judged(pair, spirefedv1alpha1.PairStale, spirefedv1alpha1.ReasonSpireBundleOutdated,
			"The SPIRE server of "+from+" holds other authorities of "+peerTrustDomain+" than the current ones ("+
				strconv.Itoa(len(bundle.X509Fingerprints))+" X.509, "+strconv.Itoa(len(bundle.JWTKeyIDs))+" JWT); the operator asks it to refresh")
	}
	return judged(pair, spirefedv1alpha1.PairConverged, spirefedv1alpha1.ReasonBundleHeld,
		"The SPIRE server of "+from+" holds the current bundle of "+peerTrustDomain)
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

// describeProblemPairs names the first five pairs that are not
// established (sorted), and counts the others. Only those five are
// formatted: while a large mesh comes up, tens of thousands are not
// established.
func describeProblemPairs(pairs []spirefedv1alpha1.PairStatus) string {
	const named = 5
	var problems []string
	count := 0
	for _, pair := range pairs {
		if Established(pair) {
			continue
		}
		count++
		if len(problems) < named {
			problems = append(problems, fmt.Sprintf("%s->%s %s (%s)", pair.From, pair.To, pair.State, pair.Reason))
		}
	}
	more := ""
	if count > named {
		more = fmt.Sprintf(" and %d more", count-named)
	}
	slices.Sort(problems)
	return strings.Join(problems, ", ") + more
}
