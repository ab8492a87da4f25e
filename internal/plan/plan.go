// Package plan computes, without side effects, what a FederationMesh wants
// in each member zone's cluster: one ClusterFederatedTrustDomain per peer
// the zone trusts, and one ClusterSPIFFEID per identity whose federatesWith
// lists only the peers whose bundle the zone already holds.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

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
	byName := make(map[string]Zone, len(in.Zones))
	names := make([]string, 0, len(in.Zones))
	for _, zone := range in.Zones {
		byName[zone.Name] = zone
		names = append(names, zone.Name)
	}
	slices.Sort(names)

	out := Plan{Links: Links(in.Topology, names), Zones: make(map[string]*ZonePlan, len(names))}
	trusted := make(map[string][]string, len(names)) // zone -> peers it trusts, with a known bundle
	for _, name := range names {
		out.Zones[name] = &ZonePlan{Zone: name}
	}
	for _, link := range out.Links {
		from, to := byName[link.From], byName[link.To]
		if to.Bundle == "" {
			out.Gated = append(out.Gated, link)
			if in.Observed[link.From].PeersWithBundle[to.TrustDomain] {
				// Already federated: keep it, and keep it in federatesWith.
				zonePlan := out.Zones[link.From]
				zonePlan.KeepFederatedTrustDomains = append(zonePlan.KeepFederatedTrustDomains, FederatedTrustDomainName(from.Name, to.TrustDomain))
				trusted[link.From] = append(trusted[link.From], link.To)
			}
			continue
		}
		zonePlan := out.Zones[link.From]
		federated := previousFederatedTrustDomain(in.Previous, in.Mesh, from, to)
		if federated == nil {
			federated = federatedTrustDomain(in.Mesh, from, to)
		}
		zonePlan.FederatedTrustDomains = append(zonePlan.FederatedTrustDomains, federated)
		trusted[link.From] = append(trusted[link.From], link.To)
	}
	for _, name := range names {
		zone := byName[name]
		federatesWith := make([]string, 0, len(trusted[name]))
		for _, peer := range trusted[name] {
			peerTrustDomain := byName[peer].TrustDomain
			if in.Observed[name].PeersWithBundle[peerTrustDomain] {
				federatesWith = append(federatesWith, peerTrustDomain)
			}
		}
		slices.Sort(federatesWith)
		zonePlan := out.Zones[name]
		for _, identity := range in.Identities {
			switch {
			case len(identity.Zones) > 0 && !slices.Contains(identity.Zones, name):
			case identity.Static != nil:
				zonePlan.StaticEntries = append(zonePlan.StaticEntries, clusterStaticEntry(in.Mesh, zone, identity, federatesWith))
			default:
				zonePlan.SPIFFEIDs = append(zonePlan.SPIFFEIDs, clusterSPIFFEID(in.Mesh, zone, identity, federatesWith))
			}
		}
		slices.SortFunc(zonePlan.FederatedTrustDomains, func(a, b *spirev1alpha1.ClusterFederatedTrustDomain) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(zonePlan.SPIFFEIDs, func(a, b *spirev1alpha1.ClusterSPIFFEID) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(zonePlan.StaticEntries, func(a, b *spirev1alpha1.ClusterStaticEntry) int { return strings.Compare(a.Name, b.Name) })
		slices.Sort(zonePlan.KeepFederatedTrustDomains)
	}
	return out
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

func federatedTrustDomain(mesh string, from, to Zone) *spirev1alpha1.ClusterFederatedTrustDomain {
	objectLabels := labels(mesh, from.Name)
	objectLabels[LabelPeer] = to.Name
	return &spirev1alpha1.ClusterFederatedTrustDomain{
		TypeMeta:   metav1.TypeMeta{APIVersion: spireAPIVersion, Kind: "ClusterFederatedTrustDomain"},
		ObjectMeta: metav1.ObjectMeta{Name: FederatedTrustDomainName(from.Name, to.TrustDomain), Labels: objectLabels},
		Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
			TrustDomain:           to.TrustDomain,
			BundleEndpointURL:     to.BundleEndpointURL,
			BundleEndpointProfile: bundleEndpointProfile(to),
			TrustDomainBundle:     to.Bundle,
			ClassName:             from.ClassName,
		},
	}
}

// previousFederatedTrustDomain returns previous's ClusterFederatedTrustDomain
// of the link from -> to if it is exactly what federatedTrustDomain would
// build now, nil otherwise. A zone plan's objects are sorted by name.
func previousFederatedTrustDomain(previous *Plan, mesh string, from, to Zone) *spirev1alpha1.ClusterFederatedTrustDomain {
	if previous == nil || previous.Zones[from.Name] == nil {
		return nil
	}
	objects := previous.Zones[from.Name].FederatedTrustDomains
	name := FederatedTrustDomainName(from.Name, to.TrustDomain)
	i, found := slices.BinarySearchFunc(objects, name, func(object *spirev1alpha1.ClusterFederatedTrustDomain, name string) int {
		return strings.Compare(object.Name, name)
	})
	if !found {
		return nil
	}
	object := objects[i]
	spec, objectLabels := object.Spec, object.Labels
	same := len(objectLabels) == 4 && objectLabels[LabelManagedBy] == ManagedBy && objectLabels[LabelMesh] == mesh &&
		objectLabels[LabelZone] == from.Name && objectLabels[LabelPeer] == to.Name &&
		spec.TrustDomain == to.TrustDomain && spec.BundleEndpointURL == to.BundleEndpointURL && spec.BundleEndpointProfile == bundleEndpointProfile(to) &&
		spec.TrustDomainBundle == to.Bundle && spec.ClassName == from.ClassName
	if !same {
		return nil
	}
	return object
}

// bundleEndpointProfile is how a peer's bundle endpoint is authenticated.
func bundleEndpointProfile(to Zone) spirev1alpha1.BundleEndpointProfile {
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

// FederatedTrustDomainName is the stable name of the
// ClusterFederatedTrustDomain by which zone trusts a peer trust domain:
// "spirefed.<zone>.<td>" (a cluster may host several zones), or, when that
// is not a valid name (an underscore, a label ending in '-', too long),
// "spirefed.<zone>.<hash of td>".
func FederatedTrustDomainName(zone, trustDomain string) string {
	name := "spirefed." + zone + "." + trustDomain
	if isDNS1123Subdomain(name) {
		return name
	}
	sum := sha256.Sum256([]byte(trustDomain))
	return "spirefed." + zone + "." + hex.EncodeToString(sum[:8])
}

// isDNS1123Subdomain is validation.IsDNS1123Subdomain without its regular
// expression: the planner names every pair of a mesh (39,800 at 200
// zones) on every pass.
func isDNS1123Subdomain(name string) bool {
	if len(name) == 0 || len(name) > validation.DNS1123SubdomainMaxLength {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || !alphanumeric(label[0]) || !alphanumeric(label[len(label)-1]) {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !alphanumeric(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

func alphanumeric(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// SPIFFEIDName is the name of the ClusterSPIFFEID (or ClusterStaticEntry)
// of a mesh's identity in a zone.
func SPIFFEIDName(mesh, zone, identity string) string {
	return "spirefed." + mesh + "." + zone + "." + identity
}
