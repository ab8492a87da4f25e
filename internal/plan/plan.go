// Package plan computes, without side effects, what a FederationMesh wants
// in each member zone's cluster: one ClusterFederatedTrustDomain per peer
// the zone trusts, and one ClusterSPIFFEID per identity whose federatesWith
// lists only the peers whose bundle the zone already holds.
package plan

import (
	"regexp"
	"slices"
	"strings"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Labels on every object the operator writes in a zone.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "spire-federation-operator"
	LabelMesh      = "spirefed.io/mesh"
	LabelZone      = "spirefed.io/zone"
	LabelPeer      = "spirefed.io/peer"
)

// Zone is a member zone as the planner needs it.
type Zone struct {
	// Name of the ZoneTrustDomain.
	Name              string
	TrustDomain       string
	ClassName         string
	BundleEndpointURL string
	// Profile is https_spiffe or https_web.
	Profile          string
	EndpointSPIFFEID string
	// Bundle is the zone's latest validated bundle, canonical SPIFFE JSON;
	// empty while unknown.
	Bundle string
}

// Observed is what the operator saw in one zone's cluster.
type Observed struct {
	// PeersWithBundle are the trust domains whose bundle the zone's SPIRE
	// is known to hold.
	PeersWithBundle map[string]bool
}

// Input of the planner.
type Input struct {
	Mesh       string
	Topology   spirefedv1alpha1.Topology
	Identities []spirefedv1alpha1.IdentityTemplate
	// Zones are the members found.
	Zones []Zone
	// Observed by zone name.
	Observed map[string]Observed
	// Previous is an earlier plan of the mesh, or nil. Its
	// ClusterFederatedTrustDomains that equal the ones planned now are
	// reused instead of built again: a pass plans one per pair (39,800 at
	// 200 zones), and between two passes few change (a rotation changes
	// those of one zone). Plans are never modified, so sharing is safe.
	Previous *Plan
}

// Link is a directed pair: zone From trusts zone To.
type Link struct {
	From string
	To   string
}

// ZonePlan is what one zone's cluster should hold for the mesh.
type ZonePlan struct {
	Zone                  string
	FederatedTrustDomains []*spirev1alpha1.ClusterFederatedTrustDomain
	SPIFFEIDs             []*spirev1alpha1.ClusterSPIFFEID
	StaticEntries         []*spirev1alpha1.ClusterStaticEntry
	// KeepFederatedTrustDomains names ClusterFederatedTrustDomains of gated
	// links that the zone already holds: the peer's bundle is unknown to
	// the operator now (e.g. its status was reset), so nothing is written,
	// but what the zone holds is kept, not pruned.
	KeepFederatedTrustDomains []string
}

// WaitingIdentities counts the identities whose federatesWith does not list
// every peer the zone federates with yet: they wait for the zone's SPIRE
// to hold those peers' bundles.
func (p *ZonePlan) WaitingIdentities() int {
	waiting := 0
	for _, id := range p.SPIFFEIDs {
		if len(id.Spec.FederatesWith) < len(p.FederatedTrustDomains) {
			waiting++
		}
	}
	for _, entry := range p.StaticEntries {
		if len(entry.Spec.FederatesWith) < len(p.FederatedTrustDomains) {
			waiting++
		}
	}
	return waiting
}

// Plan is the planner's output.
type Plan struct {
	// Links the topology demands between members, sorted.
	Links []Link
	// Gated links: To's bundle is unknown, so nothing is written for them.
	Gated []Link
	// Zones by name; every member has one.
	Zones map[string]*ZonePlan
}

// Compute plans a mesh. Its output depends only on its input, and not on
// the order of Zones.
func Compute(in Input) Plan {
	p := newPlanner(in)
	for links := p.out.Links; len(links) > 0; {
		// Links are sorted: those of one zone follow each other.
		n := 1
		for n < len(links) && links[n].From == links[0].From {
			n++
		}
		p.planLinks(p.members[links[0].From], links[:n])
		links = links[n:]
	}
	for i, name := range p.names {
		again := i > 0 && p.names[i-1] == name // a zone listed twice in Zones
		p.planIdentities(p.members[name], again)
	}
	return p.out
}

// Links lists the directed pairs a topology demands among members (sorted
// names); links naming a non-member are left out.
func Links(topology spirefedv1alpha1.Topology, members []string) []Link {
	isMember := make(map[string]bool, len(members))
	for _, name := range members {
		isMember[name] = true
	}
	var links []Link
	switch topology.Type {
	case spirefedv1alpha1.TopologyFullMesh:
		links = make([]Link, 0, len(members)*(len(members)-1))
		for _, from := range members {
			for _, to := range members {
				if from != to {
					links = append(links, Link{From: from, To: to})
				}
			}
		}
	case spirefedv1alpha1.TopologyHubAndSpoke:
		if !isMember[topology.Hub] {
			return nil
		}
		for _, spoke := range members {
			if spoke != topology.Hub {
				links = append(links, Link{From: topology.Hub, To: spoke}, Link{From: spoke, To: topology.Hub})
			}
		}
	case spirefedv1alpha1.TopologyExplicit:
		for _, link := range topology.Links {
			if isMember[link.From] && isMember[link.To] && link.From != link.To {
				links = append(links, Link{From: link.From, To: link.To})
			}
		}
	}
	slices.SortFunc(links, func(a, b Link) int {
		if c := strings.Compare(a.From, b.From); c != 0 {
			return c
		}
		return strings.Compare(a.To, b.To)
	})
	return slices.Compact(links)
}

// spireAPIVersion is the apiVersion of the objects the planner writes,
// built once (a plan holds one object per pair).
var spireAPIVersion = spirev1alpha1.SchemeGroupVersion.String()

func labels(mesh, zone string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelMesh: mesh, LabelZone: zone}
}

func federatedTrustDomain(mesh string, from, to *member) *spirev1alpha1.ClusterFederatedTrustDomain {
	objectLabels := labels(mesh, from.zone.Name)
	objectLabels[LabelPeer] = to.zone.Name
	return &spirev1alpha1.ClusterFederatedTrustDomain{
		TypeMeta:   metav1.TypeMeta{APIVersion: spireAPIVersion, Kind: "ClusterFederatedTrustDomain"},
		ObjectMeta: metav1.ObjectMeta{Name: pairName(from, to), Labels: objectLabels},
		Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
			TrustDomain:           to.zone.TrustDomain,
			BundleEndpointURL:     to.zone.BundleEndpointURL,
			BundleEndpointProfile: bundleEndpointProfile(&to.zone),
			TrustDomainBundle:     to.zone.Bundle,
			ClassName:             from.zone.ClassName,
		},
	}
}

// sameFederatedTrustDomain reports whether object, whose peer label names
// to (the caller found it so), is exactly what federatedTrustDomain(mesh,
// from, to) would build: the same name, labels and spec (its type meta is
// that of every object the planner builds).
func sameFederatedTrustDomain(object *spirev1alpha1.ClusterFederatedTrustDomain, mesh string, from, to *member) bool {
	spec, objectLabels := &object.Spec, object.Labels
	return spec.TrustDomain == to.zone.TrustDomain && spec.BundleEndpointURL == to.zone.BundleEndpointURL &&
		spec.BundleEndpointProfile == bundleEndpointProfile(&to.zone) && spec.TrustDomainBundle == to.zone.Bundle && spec.ClassName == from.zone.ClassName &&
		len(objectLabels) == 4 && objectLabels[LabelManagedBy] == ManagedBy && objectLabels[LabelMesh] == mesh &&
		objectLabels[LabelZone] == from.zone.Name &&
		hasPairName(object.Name, from, to)
}

// bundleEndpointProfile is how a peer's bundle endpoint is authenticated.
func bundleEndpointProfile(to *Zone) spirev1alpha1.BundleEndpointProfile {
	profile := spirev1alpha1.BundleEndpointProfile{Type: spirev1alpha1.BundleEndpointProfileType(to.Profile)}
	if to.Profile == string(spirefedv1alpha1.ProfileHTTPSSPIFFE) {
		profile.EndpointSPIFFEID = to.EndpointSPIFFEID
	}
	return profile
}

func clusterSPIFFEID(mesh string, zone Zone, identity spirefedv1alpha1.IdentityTemplate, federatesWith []string) *spirev1alpha1.ClusterSPIFFEID {
	spec := spirev1alpha1.ClusterSPIFFEIDSpec{
		SPIFFEIDTemplate:          identity.SPIFFEIDTemplate,
		PodSelector:               identity.PodSelector,
		NamespaceSelector:         identity.NamespaceSelector,
		WorkloadSelectorTemplates: identity.WorkloadSelectorTemplates,
		DNSNameTemplates:          identity.DNSNameTemplates,
		FederatesWith:             federatesWith,
		ClassName:                 zone.ClassName,
	}
	if identity.TTL != nil {
		spec.TTL = *identity.TTL
	}
	return &spirev1alpha1.ClusterSPIFFEID{
		TypeMeta:   metav1.TypeMeta{APIVersion: spireAPIVersion, Kind: "ClusterSPIFFEID"},
		ObjectMeta: metav1.ObjectMeta{Name: SPIFFEIDName(mesh, zone.Name, identity.Name), Labels: labels(mesh, zone.Name)},
		Spec:       spec,
	}
}

func clusterStaticEntry(mesh string, zone Zone, identity spirefedv1alpha1.IdentityTemplate, federatesWith []string) *spirev1alpha1.ClusterStaticEntry {
	spec := spirev1alpha1.ClusterStaticEntrySpec{
		SPIFFEID:      renderTrustDomain(identity.SPIFFEIDTemplate, zone.TrustDomain),
		ParentID:      renderTrustDomain(identity.Static.ParentIDTemplate, zone.TrustDomain),
		Selectors:     identity.Static.Selectors,
		FederatesWith: federatesWith,
		ClassName:     zone.ClassName,
	}
	if identity.TTL != nil {
		spec.X509SVIDTTL = *identity.TTL
	}
	return &spirev1alpha1.ClusterStaticEntry{
		TypeMeta:   metav1.TypeMeta{APIVersion: spireAPIVersion, Kind: "ClusterStaticEntry"},
		ObjectMeta: metav1.ObjectMeta{Name: SPIFFEIDName(mesh, zone.Name, identity.Name), Labels: labels(mesh, zone.Name)},
		Spec:       spec,
	}
}

// renderTrustDomain substitutes the zone's trust domain for
// {{ .TrustDomain }}, the only placeholder of static identities.
func renderTrustDomain(template, trustDomain string) string {
	return trustDomainPlaceholder.ReplaceAllLiteralString(template, trustDomain)
}

var trustDomainPlaceholder = regexp.MustCompile(`\{\{\s*\.TrustDomain\s*\}\}`)

// SPIFFEIDName is the name of the ClusterSPIFFEID (or ClusterStaticEntry)
// of a mesh's identity in a zone.
func SPIFFEIDName(mesh, zone, identity string) string {
	return "spirefed." + mesh + "." + zone + "." + identity
}
