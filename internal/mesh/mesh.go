// Package mesh computes, without side effects, what a FederationMesh's
// status says: its member zones, the state of every directed pair (from the
// plan, what was observed in each zone's cluster and SPIRE server, and what
// applying the plan did), and the conditions that summarize them. It is the
// one place where the mesh's Ready, Converged and ZonesResolved are decided.
package mesh

import (
	"unique"

	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Members are a mesh's member zones by name; a zone the mesh names that
// does not exist, or is being deleted, maps to nil.
type Members map[string]*spirefedv1alpha1.ZoneTrustDomain

// Observation is what one reconcile of a mesh saw in its member zones and
// what applying the plan there did.
type Observation struct {
	// Live is what each reachable zone's cluster holds for the mesh.
	Live map[string]*apply.Live
	// Unreachable members, with why: nothing was applied or pruned there.
	Unreachable map[string]string
	// SpireHeld are the federated bundles each zone's SPIRE server holds,
	// for zones whose server was read.
	SpireHeld map[string]map[string]spireaccess.HeldBundle
	// SpireErrors say why a zone's configured SPIRE server could not be read.
	SpireErrors map[string]string
	// Applied is the outcome of applying each zone's plan.
	Applied map[string]apply.Result
	// ApplyErrors by zone.
	ApplyErrors map[string]error
}

// NewObservation returns an empty observation.
func NewObservation() *Observation {
	return &Observation{
		Live:        map[string]*apply.Live{},
		Unreachable: map[string]string{},
		SpireHeld:   map[string]map[string]spireaccess.HeldBundle{},
		SpireErrors: map[string]string{},
		Applied:     map[string]apply.Result{},
		ApplyErrors: map[string]error{},
	}
}

// PlanInput turns the mesh, its members and what was observed into the
// planner's input. The evidence that a zone's SPIRE holds a peer's bundle
// (which gates federatesWith) is, in order: what the zone's SPIRE server
// reports; where that server is configured but cannot be read, only the
// peers federatesWith already lists (nothing new is added); without SPIRE
// access, the ClusterFederatedTrustDomains the mesh wrote with a bundle.
func PlanInput(mesh *spirefedv1alpha1.FederationMesh, members Members, observed *Observation) plan.Input {
	in := plan.Input{
		Mesh:       mesh.Name,
		Topology:   mesh.Spec.Topology,
		Identities: mesh.Spec.Identities,
		Observed:   map[string]plan.Observed{},
	}
	for name, zone := range members {
		if zone == nil {
			continue
		}
		member := plan.Zone{
			Name:              name,
			TrustDomain:       zone.Spec.TrustDomain,
			ClassName:         zone.SpireClassName(),
			BundleEndpointURL: zone.PeerBundleEndpointURL(),
			Profile:           string(zone.Spec.BundleEndpoint.Profile),
			EndpointSPIFFEID:  zone.BundleEndpointSPIFFEID(),
		}
		if zone.Status.Bundle != nil {
			// One copy per bundle, shared with the zones' caches (see
			// zones.ownedTransform): comparing them compares pointers.
			member.Bundle = unique.Make(zone.Status.Bundle.SPIFFEBundle).Value()
		}
		in.Zones = append(in.Zones, member)
		live := observed.Live[name]
		_, spireFailed := observed.SpireErrors[name]
		switch held, spireRead := observed.SpireHeld[name]; {
		case spireFailed && live != nil:
			in.Observed[name] = plan.Observed{PeersWithBundle: live.FederatedWith()}
		case spireRead:
			peers := map[string]bool{}
			for trustDomain, bundle := range held {
				peers[trustDomain] = len(bundle.X509Fingerprints) > 0
			}
			in.Observed[name] = plan.Observed{PeersWithBundle: peers}
		case live != nil:
			in.Observed[name] = plan.Observed{PeersWithBundle: live.PeersWithBundle()}
		}
	}
	return in
}

// HoldsCurrent says whether a SPIRE server holds the peer's current
// authorities: the same X.509 authorities (besides those the operator
// dropped as outside their validity) and, once the peer's bundle came
// from its endpoint (the bootstrap ConfigMap has no JWT keys), the same JWT
// authorities. Sequences are not compared: SPIRE does not report the
// sequence of federated bundles.
func HoldsCurrent(held map[string]spireaccess.HeldBundle, peer *spirefedv1alpha1.ZoneTrustDomain) bool {
	bundle, ok := held[peer.Spec.TrustDomain]
	if !ok || peer.Status.Bundle == nil {
		return false
	}
	return newCurrentAuthorities(peer.Status.Bundle).heldBy(bundle)
}

// Written says whether the trusting zone holds the pair's current
// ClusterFederatedTrustDomain: only then can its SPIRE fetch the peer.
func Written(members Members, observed *Observation, link plan.Link) bool {
	peer := members[link.To]
	if peer == nil {
		return false
	}
	result, applied := observed.Applied[link.From]
	return applied && result.Current[peer.Spec.TrustDomain]
}
