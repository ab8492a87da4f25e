package spireaccess

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Combine makes the SPIRE servers of one trust domain's clusters (the
// nested servers of a nested trust domain, the sides of an HA one) one
// Server, for federation: a peer's bundle counts as held only when every
// server holds it, a refresh goes to every server. One server is returned
// as is.
func Combine(servers ...Server) Server {
	if len(servers) == 1 {
		return servers[0]
	}
	return combined(slices.Clone(servers))
}

type combined []Server

// TrustDomain is the servers' trust domain; servers of different trust
// domains are an error.
func (c combined) TrustDomain(ctx context.Context) (string, error) {
	trustDomain := ""
	for i, server := range c {
		own, err := server.TrustDomain(ctx)
		if err != nil {
			return "", err
		}
		if i > 0 && own != trustDomain {
			return "", fmt.Errorf("the SPIRE servers of one trust domain report trust domains %q and %q", trustDomain, own)
		}
		trustDomain = own
	}
	return trustDomain, nil
}

// FederatedBundles lists the bundles every server holds. Where the servers
// hold different authorities for a trust domain, the result holds all of
// them, so that it matches no peer's current bundle and the peer is
// refreshed everywhere.
func (c combined) FederatedBundles(ctx context.Context) (map[string]HeldBundle, error) {
	all := make([]map[string]HeldBundle, 0, len(c))
	for _, server := range c {
		held, err := server.FederatedBundles(ctx)
		if err != nil {
			return nil, err
		}
		all = append(all, held)
	}
	return IntersectHeld(all), nil
}

// IntersectHeld merges what several servers hold: the trust domains every
// one holds, with the union of their authorities.
func IntersectHeld(all []map[string]HeldBundle) map[string]HeldBundle {
	out := map[string]HeldBundle{}
	if len(all) == 0 {
		return out
	}
	for trustDomain, first := range all[0] {
		merged := HeldBundle{X509Fingerprints: slices.Clone(first.X509Fingerprints), JWTKeyIDs: slices.Clone(first.JWTKeyIDs), Sequence: first.Sequence}
		heldByAll := true
		for _, other := range all[1:] {
			held, ok := other[trustDomain]
			if !ok {
				heldByAll = false
				break
			}
			merged.X509Fingerprints = union(merged.X509Fingerprints, held.X509Fingerprints)
			merged.JWTKeyIDs = union(merged.JWTKeyIDs, held.JWTKeyIDs)
		}
		if heldByAll {
			out[trustDomain] = merged
		}
	}
	return out
}

// union of two sorted sets, sorted.
func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// RefreshBundle asks every server to refresh the trust domain's bundle.
func (c combined) RefreshBundle(ctx context.Context, trustDomain string) error {
	var errs []error
	for _, server := range c {
		errs = append(errs, server.RefreshBundle(ctx, trustDomain))
	}
	return errors.Join(errs...)
}
