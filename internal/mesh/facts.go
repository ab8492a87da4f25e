package mesh

import (
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// The facts below are what judging a pair reads from its two zones.
// SetPairs works them out once per zone and pass rather than once per
// pair: a full mesh of 200 zones has 39,800 pairs, 199 for each zone as
// the trusting one and 199 for each as the peer, and working them out per
// pair (a copy of the peer's fingerprints, sorted copies of its
// authorities, lookups of its conditions) made most of a pass's garbage.

// peerFacts are what every pair that trusts one peer reads from that peer.
type peerFacts struct {
	trustDomain string
	// bundle is the peer's current bundle, or nil while it is unknown.
	bundle *spirefedv1alpha1.BundleStatus
	// fingerprints are those of the bundle's X.509 authorities, nil without
	// any. The pairs that trust the peer all share this one slice: their
	// readers (status, Events, metrics) do not modify it, and its capacity
	// is its length, so that an append to one pair's copies instead of
	// writing into the others'.
	fingerprints []string
	// refreshed says whether the peer's BundleFetched is True; otherwise
	// notRefreshed says why not, for the pair's message.
	refreshed    bool
	notRefreshed string
	// gatedMessage is the message of a pair gated on the peer's bundle.
	gatedMessage string
	authorities  currentAuthorities
}

func newPeerFacts(peer *spirefedv1alpha1.ZoneTrustDomain) *peerFacts {
	facts := &peerFacts{
		trustDomain:  peer.Spec.TrustDomain,
		bundle:       peer.Status.Bundle,
		gatedMessage: "The bundle of " + peer.Spec.TrustDomain + " is not known yet; nothing is written",
		authorities:  newCurrentAuthorities(peer.Status.Bundle),
	}
	if bundle := peer.Status.Bundle; bundle != nil && len(bundle.X509Authorities) > 0 {
		facts.fingerprints = make([]string, len(bundle.X509Authorities))
		for i, authority := range bundle.X509Authorities {
			facts.fingerprints[i] = authority.SHA256Fingerprint
		}
	}
	fetched := meta.FindStatusCondition(peer.Status.Conditions, spirefedv1alpha1.BundleFetchedCondition)
	switch {
	case fetched == nil:
		facts.notRefreshed = "not fetched yet"
	case fetched.Status != metav1.ConditionTrue:
		facts.notRefreshed = fetched.Reason + ": " + status.Brief(fetched.Message)
	default:
		facts.refreshed = true
	}
	return facts
}

// peerFactsOf works out the facts of every member that exists.
func peerFactsOf(members Members) map[string]*peerFacts {
	facts := make(map[string]*peerFacts, len(members))
	for name, zone := range members {
		if zone != nil {
			facts[name] = newPeerFacts(zone)
		}
	}
	return facts
}

// trustingFacts are what every pair in which one zone trusts a peer reads
// from what the pass observed in that zone.
type trustingFacts struct {
	name string
	// unreachable says whether the zone could not be reached; then
	// unreachableMessage is the message of all its pairs.
	unreachable        bool
	unreachableMessage string
	applied            apply.Result
	// applyFailed says whether applying the zone's plan failed, and
	// applyError why.
	applyFailed bool
	applyError  error
	// spireFailed says whether the zone's SPIRE server could not be read,
	// and spireError why (briefly).
	spireFailed bool
	spireError  string
	// held is what the zone's SPIRE server holds, when spireRead.
	held      map[string]spireaccess.HeldBundle
	spireRead bool
}

func newTrustingFacts(observed *Observation, name string) trustingFacts {
	facts := trustingFacts{name: name, applied: observed.Applied[name]}
	if why, ok := observed.Unreachable[name]; ok {
		facts.unreachable = true
		facts.unreachableMessage = "Zone " + name + " cannot be reached: " + status.Brief(why)
	}
	facts.applyError, facts.applyFailed = observed.ApplyErrors[name]
	if why, ok := observed.SpireErrors[name]; ok {
		facts.spireFailed = true
		facts.spireError = status.Brief(why)
	}
	facts.held, facts.spireRead = observed.SpireHeld[name]
	return facts
}

// currentAuthorities are a peer's current authorities as HoldsCurrent
// compares them with those a SPIRE server holds: sorted once, like the
// held ones (see spireaccess.HeldBundle), so that comparing them is what
// HeldBundle.Holds and HoldsJWTKeys do, without their copy per call.
type currentAuthorities struct {
	// known says whether the peer has a bundle.
	known bool
	x509  []string
	// dropped are the authorities the operator dropped as outside their
	// validity: one the server fetched itself does not count against it.
	dropped map[string]bool
	// compareJWT says whether jwt is compared: once the peer's bundle came
	// from its endpoint (the bootstrap ConfigMap has no JWT keys).
	compareJWT bool
	jwt        []string
}

func newCurrentAuthorities(bundle *spirefedv1alpha1.BundleStatus) currentAuthorities {
	if bundle == nil {
		return currentAuthorities{}
	}
	current := currentAuthorities{known: true, x509: make([]string, 0, len(bundle.X509Authorities))}
	for _, authority := range bundle.X509Authorities {
		current.x509 = append(current.x509, authority.SHA256Fingerprint)
	}
	slices.Sort(current.x509)
	for _, authority := range bundle.DroppedX509Authorities {
		if current.dropped == nil {
			current.dropped = map[string]bool{}
		}
		current.dropped[authority.SHA256Fingerprint] = true
	}
	if bundle.Source == spirefedv1alpha1.BundleSourceEndpoint {
		current.compareJWT = true
		current.jwt = slices.Clone(bundle.JWTAuthorityKeyIDs)
		slices.Sort(current.jwt)
	}
	return current
}

// heldBy says whether bundle, a SPIRE server's federated bundle of the
// peer, has the current authorities.
func (c currentAuthorities) heldBy(bundle spireaccess.HeldBundle) bool {
	if !c.known {
		return false
	}
	// The held fingerprints, less the dropped ones, must equal the current.
	matched := 0
	for _, fingerprint := range bundle.X509Fingerprints {
		if c.dropped[fingerprint] {
			continue
		}
		if matched == len(c.x509) || c.x509[matched] != fingerprint {
			return false
		}
		matched++
	}
	if matched != len(c.x509) {
		return false
	}
	return !c.compareJWT || slices.Equal(bundle.JWTKeyIDs, c.jwt)
}
