// Package meshintegration computes, without side effects, what a
// FederationMesh's service mesh integration (Istio or Kuma) wants in each
// member zone, and judges what the zone's own mesh install holds:
//
//   - the SPIRE identity of the mesh's workloads (an identity template the
//     planner turns into a ClusterSPIFFEID whose federatesWith is gated on
//     SPIRE holding each peer's bundle, as for every other identity);
//   - for Istio, the shared mesh-config ConfigMap with one caCertificates
//     entry per trusted peer, and, on opt-in, a STRICT PeerAuthentication;
//   - for Kuma, a zone-origin MeshIdentity with the Spire provider;
//   - the SPIRE agent SDS profile the mesh's proxies need;
//   - a report per zone (ready, reason, message) and the mesh's
//     MeshIntegrationReady condition.
//
// It never describes objects the mesh's own installer owns: those are only
// read (see Install) and reported on.
package meshintegration

import (
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// IdentityName is the name of the identity template of the mesh's
// workloads; the API reserves it when spec.meshIntegration is set.
const IdentityName = "mesh-workloads"

// SPIFFEIDTemplate is the only ID form both meshes accept:
// spiffe://<td>/ns/<ns>/sa/<sa>.
const SPIFFEIDTemplate = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"

// Selectors of the mesh's workloads.
const (
	// IstioWorkloadLabel is set by Istio's injector on every sidecar and
	// gateway pod (istio samples/security/spire-trust-domain-federation).
	IstioWorkloadLabel = "service.istio.io/canonical-name"
	// KumaInjectionLabel is the namespace label that makes Kuma inject its
	// dataplane into every pod of the namespace.
	KumaInjectionLabel = "kuma.io/sidecar-injection"
	// KumaInjectionEnabled is its value.
	KumaInjectionEnabled = "enabled"
)

// Identity is the identity template of the mesh's workloads, or nil
// without an integration.
func Identity(integration *spirefedv1alpha1.MeshIntegration) *spirefedv1alpha1.IdentityTemplate {
	if integration == nil {
		return nil
	}
	identity := &spirefedv1alpha1.IdentityTemplate{Name: IdentityName, SPIFFEIDTemplate: SPIFFEIDTemplate}
	switch integration.Type {
	case spirefedv1alpha1.MeshIstio:
		identity.PodSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: IstioWorkloadLabel, Operator: metav1.LabelSelectorOpExists},
		}}
	case spirefedv1alpha1.MeshKuma:
		identity.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{KumaInjectionLabel: KumaInjectionEnabled}}
	default:
		return nil
	}
	return identity
}

// WithIdentity returns the planner's identities plus the mesh workloads'
// identity when the mesh has an integration. The input is not modified.
func WithIdentity(identities []spirefedv1alpha1.IdentityTemplate, integration *spirefedv1alpha1.MeshIntegration) []spirefedv1alpha1.IdentityTemplate {
	identity := Identity(integration)
	if identity == nil {
		return identities
	}
	out := make([]spirefedv1alpha1.IdentityTemplate, 0, len(identities)+1)
	out = append(out, identities...)
	return append(out, *identity)
}

// Peer is a zone the member trusts, as the integration needs it.
type Peer struct {
	// Zone name.
	Zone        string
	TrustDomain string
	// X509PEM are the peer's current X.509 authorities, PEM; empty while
	// the operator does not know its bundle.
	X509PEM string
	// Federated: the member's SPIRE holds the peer's bundle (the peer is in
	// federatesWith of the mesh workloads' ClusterSPIFFEID).
	Federated bool
}

// Zone is a member zone as the integration needs it.
type Zone struct {
	Name        string
	TrustDomain string
	// Peers the topology makes the zone trust, in any order.
	Peers []Peer
	// SpireHelm: the operator installs the zone's SPIRE (and so sets its
	// agent's SDS profile).
	SpireHelm bool
	// SDSConflicts are the other meshes that want the zone's SPIRE agent
	// with another SDS profile.
	SDSConflicts []string
}

// ZoneOf describes a member zone for the integration: its trusted peers
// (links, the plan's links from the zone, in the plan's order; peers not
// in members are left out), with their current authorities (peerPEM,
// empty while unknown), and whether its SPIRE holds their bundles: the
// federatesWith of the mesh workloads' ClusterSPIFFEID in zonePlan
// (nil: none planned yet). It has no side effects.
func ZoneOf(meshName string, zone *spirefedv1alpha1.ZoneTrustDomain, zonePlan *plan.ZonePlan, links []plan.Link,
	members map[string]*spirefedv1alpha1.ZoneTrustDomain, peerPEM func(*spirefedv1alpha1.ZoneTrustDomain) string, sdsConflicts []string) Zone {
	out := Zone{
		Name:         zone.Name,
		TrustDomain:  zone.Spec.TrustDomain,
		SpireHelm:    zone.Spec.Spire.Install == spirefedv1alpha1.SpireInstallHelm,
		SDSConflicts: sdsConflicts,
	}
	var federatesWith []string
	if zonePlan != nil {
		name := plan.SPIFFEIDName(meshName, zone.Name, IdentityName)
		for _, identity := range zonePlan.SPIFFEIDs {
			if identity.Name == name {
				federatesWith = identity.Spec.FederatesWith
			}
		}
	}
	for _, link := range links {
		peer := members[link.To]
		if peer == nil {
			continue
		}
		out.Peers = append(out.Peers, Peer{
			Zone:        peer.Name,
			TrustDomain: peer.Spec.TrustDomain,
			X509PEM:     peerPEM(peer),
			Federated:   slices.Contains(federatesWith, peer.Spec.TrustDomain),
		})
	}
	return out
}

// CurrentPEM is the zone's current X.509 authorities as PEM, from its
// validated bundle in status; empty while unknown.
func CurrentPEM(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	if zone.Status.Bundle == nil {
		return ""
	}
	pem, err := AuthoritiesPEM(zone.Spec.TrustDomain, zone.Status.Bundle.SPIFFEBundle)
	if err != nil {
		return ""
	}
	return pem
}

// PeerTrustDomains are the sorted trust domains of the peers whose bundle
// the operator knows.
func (z Zone) PeerTrustDomains() []string {
	var out []string
	for _, peer := range z.Peers {
		if peer.X509PEM != "" {
			out = append(out, peer.TrustDomain)
		}
	}
	slices.Sort(out)
	return out
}

// pendingPeers are the sorted trust domains of the peers the zone's SPIRE
// does not hold yet.
func (z Zone) pendingPeers() []string {
	var out []string
	for _, peer := range z.Peers {
		if !peer.Federated {
			out = append(out, peer.TrustDomain)
		}
	}
	slices.Sort(out)
	return out
}

// Labels are the ownership labels of every object the integration writes,
// the same as on the federation objects.
func Labels(mesh, zone string) map[string]string {
	return map[string]string{plan.LabelManagedBy: plan.ManagedBy, plan.LabelMesh: mesh, plan.LabelZone: zone}
}

// ObjectRef names an object for status: "Kind namespace/name".
func ObjectRef(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// suffix is "-<revision>" or "".
func suffix(revision string) string {
	if revision == "" {
		return ""
	}
	return "-" + revision
}

// joinNames joins names for a message.
func joinNames(names []string) string { return strings.Join(names, ", ") }

// AuthoritiesPEM returns the X.509 authorities of a SPIFFE bundle (JSON)
// as PEM, in the bundle's order.
func AuthoritiesPEM(trustDomain, spiffeBundle string) (string, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return "", fmt.Errorf("trust domain %q: %w", trustDomain, err)
	}
	parsed, err := spiffebundle.Parse(td, []byte(spiffeBundle))
	if err != nil {
		return "", fmt.Errorf("bundle of %s: %w", trustDomain, err)
	}
	var out strings.Builder
	for _, authority := range parsed.X509Authorities() {
		out.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: authority.Raw}))
	}
	return out.String(), nil
}
