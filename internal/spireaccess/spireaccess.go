// Package spireaccess reaches a zone's SPIRE server API, to read which
// federated bundles the server holds (the ground truth of a federation
// pair) and to ask it to refresh a peer's bundle at once instead of at its
// next poll. Two transports: the server's admin socket, for an operator that
// runs beside the server, and Kubernetes exec into the server's container,
// which runs the spire-server command there.
package spireaccess

import (
	"context"
	"fmt"
	"slices"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
)

// Server is one SPIRE server's API, as far as federation needs it.
type Server interface {
	// TrustDomain returns the trust domain of the server's own bundle, to
	// check that the server reached is the zone's.
	TrustDomain(ctx context.Context) (string, error)
	// FederatedBundles returns the bundles the server holds for other trust
	// domains, by trust domain name.
	FederatedBundles(ctx context.Context) (map[string]HeldBundle, error)
	// RefreshBundle asks the server to fetch a federated trust domain's
	// bundle from its endpoint now.
	RefreshBundle(ctx context.Context, trustDomain string) error
}

// HeldBundle summarises a federated bundle a SPIRE server holds.
type HeldBundle struct {
	// X509Fingerprints are the SHA-256 fingerprints (lowercase hex) of its
	// X.509 authorities, sorted.
	X509Fingerprints []string
	// JWTKeyIDs are the key IDs of its JWT authorities, sorted.
	JWTKeyIDs []string
	// Sequence is the bundle's sequence number, as the server reports it
	// (SPIRE 1.15 reports 0 for federated bundles).
	Sequence uint64
}

// Holds says whether the held bundle has exactly the given X.509
// authorities (fingerprints, any order).
func (h HeldBundle) Holds(fingerprints []string) bool {
	return sameSet(h.X509Fingerprints, fingerprints)
}

// HoldsJWTKeys says whether the held bundle has exactly the given JWT
// authorities (key IDs, any order).
func (h HeldBundle) HoldsJWTKeys(keyIDs []string) bool {
	return sameSet(h.JWTKeyIDs, keyIDs)
}

// sameSet compares a sorted slice with one in any order.
func sameSet(sorted, other []string) bool {
	want := slices.Clone(other)
	slices.Sort(want)
	return slices.Equal(sorted, want)
}

// maxBundles bounds how many federated bundles are read from one server.
const maxBundles = 10000

// heldBundles summarises bundles from the SPIRE API.
func heldBundles(bundles []*types.Bundle, into map[string]HeldBundle) error {
	for _, b := range bundles {
		if len(into) >= maxBundles {
			return fmt.Errorf("the server holds more than %d federated bundles", maxBundles)
		}
		held := HeldBundle{Sequence: b.GetSequenceNumber()}
		for _, authority := range b.GetX509Authorities() {
			held.X509Fingerprints = append(held.X509Fingerprints, bundle.FingerprintDER(authority.GetAsn1()))
		}
		slices.Sort(held.X509Fingerprints)
		for _, authority := range b.GetJwtAuthorities() {
			held.JWTKeyIDs = append(held.JWTKeyIDs, authority.GetKeyId())
		}
		slices.Sort(held.JWTKeyIDs)
		into[b.GetTrustDomain()] = held
	}
	return nil
}

// listRequest asks for the fields the summary needs.
func listRequest(pageToken string) *bundlev1.ListFederatedBundlesRequest {
	return &bundlev1.ListFederatedBundlesRequest{
		OutputMask: &types.BundleMask{X509Authorities: true, JwtAuthorities: true, SequenceNumber: true},
		PageSize:   500,
		PageToken:  pageToken,
	}
}

// Access builds the Server of each zone from its spec. Its zero value is
// ready to use.
type Access struct {
	sockets Sockets
}

// ServerFor returns the SPIRE server of a zone, or nil when the zone names
// no way to reach it. config and clientset reach the zone's cluster (for
// exec).
func (a *Access) ServerFor(zone *spirefedv1alpha1.ZoneTrustDomain, config *rest.Config, clientset kubernetes.Interface) (Server, error) {
	access := zone.Spec.Spire.ServerAccess
	switch {
	case access == nil:
		return nil, nil
	case access.Socket != nil:
		return a.sockets.Server(access.Socket.Path)
	default:
		target := zone.SpireServerExec()
		return NewExecServer(config, clientset, ExecTarget{
			Namespace:  zone.Spec.Spire.Namespace,
			Pod:        target.Pod,
			Container:  target.Container,
			Command:    target.Command,
			SocketPath: target.SocketPath,
		}), nil
	}
}

// Close closes the connections to admin sockets.
func (a *Access) Close() { a.sockets.Close() }
