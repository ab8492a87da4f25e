package plan

import (
	"cmp"
	"slices"
	"strings"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
)

// planner holds what Compute works with while it plans. It lives for one
// call: Compute keeps nothing between calls.
type planner struct {
	in Input
	// names of the members, sorted.
	names []string
	// members by name. A zone is looked up once per link (39,800 at 200
	// zones), so they are held by pointer, not copied.
	members map[string]*member
	// byTrustDomain are the members sorted by trust domain (member.rank).
	byTrustDomain []*member
	// federated, slots and ranks are room for planning the links of one
	// zone, reused from zone to zone; slots, one per rank, are left empty.
	federated, slots []peerObject
	ranks            []int
	out              Plan
}

// member is a zone of the mesh while it is planned.
type member struct {
	zone Zone
	plan *ZonePlan
	// rank is the zone's position among the members sorted by trust
	// domain: sorting peers by rank sorts their trust domains, comparing
	// ints instead of strings.
	rank int
	// dnsName and dnsTrustDomain tell whether the zone's name and trust
	// domain are dot-separated DNS labels: what, with its length, makes a
	// name "spirefed.<zone>.<td>" valid (see pairName). trustDomainHash
	// stands for the trust domain in the names that cannot hold it; it is
	// computed when first needed.
	dnsName, dnsTrustDomain bool
	trustDomainHash         string
	// federatesWith is what the zone's identities federate with, set when
	// its links are planned; nil if it has none.
	federatesWith []string
	// previous is Input.Previous's ClusterFederatedTrustDomain of the link
	// previousFrom -> this zone, found equal to what federatedTrustDomain
	// would build now (see markPrevious).
	previous     *spirev1alpha1.ClusterFederatedTrustDomain
	previousFrom *member
}

// peerObject is the ClusterFederatedTrustDomain of a zone for a peer.
type peerObject struct {
	peer *member
	// object is nil until it is built, unless Input.Previous has it.
	object *spirev1alpha1.ClusterFederatedTrustDomain
	// position of the link among the zone's links with an object.
	position int
}

func newPlanner(in Input) *planner {
	p := &planner{in: in, members: make(map[string]*member, len(in.Zones)), names: make([]string, 0, len(in.Zones))}
	all := make([]member, len(in.Zones))
	p.byTrustDomain = make([]*member, len(in.Zones))
	for i, zone := range in.Zones {
		all[i] = member{
			zone:           zone,
			dnsName:        isDNSLabels(zone.Name),
			dnsTrustDomain: isDNSLabels(zone.TrustDomain),
		}
		p.members[zone.Name] = &all[i]
		p.names = append(p.names, zone.Name)
		p.byTrustDomain[i] = &all[i]
	}
	slices.Sort(p.names)
	slices.SortFunc(p.byTrustDomain, func(a, b *member) int { return strings.Compare(a.zone.TrustDomain, b.zone.TrustDomain) })
	for rank, m := range p.byTrustDomain {
		m.rank = rank
	}
	p.out = Plan{Links: Links(in.Topology, p.names), Zones: make(map[string]*ZonePlan, len(p.names))}
	for _, name := range p.names {
		zonePlan := &ZonePlan{Zone: name}
		p.out.Zones[name] = zonePlan
		p.members[name].plan = zonePlan
	}
	return p
}

// planLinks plans the links of one zone: for each peer with a known
// bundle, a ClusterFederatedTrustDomain (Input.Previous's if it is the
// same); for each other peer, the link is gated, and the name of the
// object the zone already holds, if any, is kept. Then what the zone's
// identities federate with.
func (p *planner) planLinks(from *member, links []Link) {
	peersWithBundle := p.in.Observed[from.zone.Name].PeersWithBundle
	federated := p.federated[:0]
	var kept []*member
	for _, link := range links {
		to := p.members[link.To]
		if to.zone.Bundle == "" {
			p.out.Gated = append(p.out.Gated, link)
			if peersWithBundle[to.zone.TrustDomain] {
				// Already federated: keep it, and keep it in federatesWith.
				from.plan.KeepFederatedTrustDomains = append(from.plan.KeepFederatedTrustDomains, pairName(from, to))
				kept = append(kept, to)
			}
			continue
		}
		federated = append(federated, peerObject{peer: to, position: len(federated)})
	}
	// By rank: mostly the order of their names (see federatedTrustDomains),
	// in which Input.Previous holds them, and in which new ones are built:
	// the next pass reads them in the order they lie in memory.
	p.sortByRank(federated)
	p.reusePrevious(from, federated)
	for i := range federated {
		if federated[i].object == nil {
			federated[i].object = federatedTrustDomain(p.in.Mesh, from, federated[i].peer)
		}
	}
	from.plan.FederatedTrustDomains = federatedTrustDomains(federated)
	from.federatesWith = p.federatesWith(peersWithBundle, federated, kept)
	p.federated = federated
}

// sortByRank sorts a zone's planned objects by their peers' rank. With
// links to many members (a full mesh), it places each in the slot of its
// peer's rank, then gathers them, rather than comparing them. The order
// only saves work: federatedTrustDomains and reusePrevious check it.
func (p *planner) sortByRank(federated []peerObject) {
	if len(federated)*8 < len(p.byTrustDomain) {
		slices.SortFunc(federated, func(a, b peerObject) int { return cmp.Compare(a.peer.rank, b.peer.rank) })
		return
	}
	if p.slots == nil {
		p.slots = make([]peerObject, len(p.byTrustDomain))
	}
	for _, planned := range federated {
		p.slots[planned.peer.rank] = planned
	}
	i := 0
	for rank, planned := range p.slots {
		if planned.peer != nil {
			federated[i] = planned
			p.slots[rank] = peerObject{}
			i++
		}
	}
}

// reusePrevious sets, on each of a zone's planned objects (sorted by
// rank), Input.Previous's ClusterFederatedTrustDomain of that link if it
// is exactly what federatedTrustDomain would build now.
func (p *planner) reusePrevious(from *member, federated []peerObject) {
	if p.in.Previous == nil || p.in.Previous.Zones[from.zone.Name] == nil {
		return
	}
	previous := p.in.Previous.Zones[from.zone.Name].FederatedTrustDomains
	// Previous holds a zone's objects sorted by name: by their peers' rank
	// but for odd trust domains. While the zone's peers are those it had
	// (the steady state, a rotation), previous[i] is then the object of
	// federated[i]'s peer, checked without looking that peer up. From the
	// first object out of step (a zone joined or left, a hashed name), the
	// peer of each object is looked up instead.
	for i := range federated {
		if i == len(previous) {
			// Each object previous has was one of the peers' before: the
			// peers left have none.
			return
		}
		to := federated[i].peer
		if previous[i].Labels[LabelPeer] != to.zone.Name {
			p.markPrevious(from, previous)
			for j := i; j < len(federated); j++ {
				if to := federated[j].peer; to.previousFrom == from {
					federated[j].object = to.previous
				}
			}
			return
		}
		if sameFederatedTrustDomain(previous[i], p.in.Mesh, from, to) {
			federated[i].object = previous[i]
		}
	}
}

// markPrevious marks, on each peer of from, its ClusterFederatedTrustDomain
// among previous when it is exactly what federatedTrustDomain would build
// now. It finds each object's peer by its label, rather than searching the
// objects by name: that would build the name of every pair.
func (p *planner) markPrevious(from *member, previous []*spirev1alpha1.ClusterFederatedTrustDomain) {
	for _, object := range previous {
		to := p.members[object.Labels[LabelPeer]]
		if to != nil && sameFederatedTrustDomain(object, p.in.Mesh, from, to) {
			to.previous, to.previousFrom = object, from
		}
	}
}

// federatedTrustDomains returns the objects of a zone's links, sorted by
// their peers' rank, in the order of their names. Their names are
// "spirefed.<zone>.<peer's trust domain>", but for odd trust domains, so
// that order nearly always is the one by name; if the names do not
// strictly increase in it (a hashed name, two peers with one trust
// domain), the objects are sorted by name from link order, as they
// always were.
func federatedTrustDomains(federated []peerObject) []*spirev1alpha1.ClusterFederatedTrustDomain {
	if len(federated) == 0 {
		return nil
	}
	objects := make([]*spirev1alpha1.ClusterFederatedTrustDomain, len(federated))
	for i, planned := range federated {
		objects[i] = planned.object
	}
	if namesIncrease(objects) {
		return objects
	}
	for _, planned := range federated {
		objects[planned.position] = planned.object
	}
	sortByName(objects)
	return objects
}

// namesIncrease reports whether the objects' names strictly increase:
// then sorting them by name leaves them as they are.
func namesIncrease(objects []*spirev1alpha1.ClusterFederatedTrustDomain) bool {
	for i := 1; i < len(objects); i++ {
		if objects[i-1].Name >= objects[i].Name {
			return false
		}
	}
	return true
}

func sortByName(objects []*spirev1alpha1.ClusterFederatedTrustDomain) {
	slices.SortFunc(objects, func(a, b *spirev1alpha1.ClusterFederatedTrustDomain) int { return strings.Compare(a.Name, b.Name) })
}

// federatesWith lists, sorted, the trust domains of the peers a zone
// trusts (or keeps) whose bundle its SPIRE holds.
func (p *planner) federatesWith(peersWithBundle map[string]bool, federated []peerObject, kept []*member) []string {
	ranks := p.ranks[:0]
	for _, planned := range federated {
		if peersWithBundle[planned.peer.zone.TrustDomain] {
			ranks = append(ranks, planned.peer.rank)
		}
	}
	for _, peer := range kept {
		if peersWithBundle[peer.zone.TrustDomain] {
			ranks = append(ranks, peer.rank)
		}
	}
	slices.Sort(ranks)
	p.ranks = ranks
	federatesWith := make([]string, 0, len(federated)+len(kept))
	for _, rank := range ranks {
		federatesWith = append(federatesWith, p.byTrustDomain[rank].zone.TrustDomain)
	}
	return federatesWith
}

// planIdentities plans a zone's ClusterSPIFFEIDs and ClusterStaticEntries,
// once its links are planned, and sorts its objects by name. A zone listed
// twice in Input.Zones is planned twice, as it always was: again, its
// ClusterFederatedTrustDomains are sorted again.
func (p *planner) planIdentities(m *member, again bool) {
	zonePlan := m.plan
	federatesWith := m.federatesWith
	if federatesWith == nil {
		federatesWith = []string{}
	}
	for _, identity := range p.in.Identities {
		switch {
		case len(identity.Zones) > 0 && !slices.Contains(identity.Zones, m.zone.Name):
		case identity.Static != nil:
			zonePlan.StaticEntries = append(zonePlan.StaticEntries, clusterStaticEntry(p.in.Mesh, m.zone, identity, federatesWith))
		default:
			zonePlan.SPIFFEIDs = append(zonePlan.SPIFFEIDs, clusterSPIFFEID(p.in.Mesh, m.zone, identity, federatesWith))
		}
	}
	if again {
		sortByName(zonePlan.FederatedTrustDomains)
	}
	slices.SortFunc(zonePlan.SPIFFEIDs, func(a, b *spirev1alpha1.ClusterSPIFFEID) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(zonePlan.StaticEntries, func(a, b *spirev1alpha1.ClusterStaticEntry) int { return strings.Compare(a.Name, b.Name) })
	slices.Sort(zonePlan.KeepFederatedTrustDomains)
}
