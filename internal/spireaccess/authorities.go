package spireaccess

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
)

// Authorities reads and extends a SPIRE server's own trust bundle: what
// the clusters of a nested or HA trust domain need besides federation.
// The servers ServerFor returns implement it.
type Authorities interface {
	// OwnBundle returns the server's own trust bundle (public keys and
	// certificates only).
	OwnBundle(ctx context.Context) (*types.Bundle, error)
	// AppendAuthorities adds authorities to the server's own trust bundle
	// (SPIRE's Bundle API AppendBundle; it only ever adds).
	AppendAuthorities(ctx context.Context, authorities *types.Bundle) error
}

// ErrAppendUnsupported: the spire-server command has no way to append to
// the server's own bundle, so a server reached by exec cannot be extended.
var ErrAppendUnsupported = errors.New("appending to a SPIRE server's own bundle needs its admin socket (spire.serverAccess.socket); the spire-server command cannot do it")

func (s *socketServer) OwnBundle(ctx context.Context) (*types.Bundle, error) {
	own, err := bundlev1.NewBundleClient(s.conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, fmt.Errorf("reading the server's own bundle through %s: %w", s.path, err)
	}
	return own, nil
}

func (s *socketServer) AppendAuthorities(ctx context.Context, authorities *types.Bundle) error {
	_, err := bundlev1.NewBundleClient(s.conn).AppendBundle(ctx, &bundlev1.AppendBundleRequest{
		X509Authorities: authorities.GetX509Authorities(),
		JwtAuthorities:  authorities.GetJwtAuthorities(),
	})
	if err != nil {
		return fmt.Errorf("appending to the server's own bundle through %s: %w", s.path, err)
	}
	return nil
}

func (s *execServer) OwnBundle(ctx context.Context) (*types.Bundle, error) {
	out, err := s.run(ctx, "bundle", "show", "-output", "json")
	if err != nil {
		return nil, fmt.Errorf("reading the server's own bundle in %s: %w", s.where(), err)
	}
	var own types.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out, &own); err != nil {
		return nil, fmt.Errorf("reading the output of spire-server bundle show: %w", err)
	}
	return &own, nil
}

func (s *execServer) AppendAuthorities(context.Context, *types.Bundle) error {
	return ErrAppendUnsupported
}

// MissingAuthorities returns the authorities of from that have does not
// hold (X.509 by certificate, JWT by key ID and key), or nil when have
// holds them all. It has no side effects.
func MissingAuthorities(have, from *types.Bundle) *types.Bundle {
	missing := &types.Bundle{TrustDomain: have.GetTrustDomain()}
	for _, authority := range from.GetX509Authorities() {
		held := false
		for _, own := range have.GetX509Authorities() {
			if bytes.Equal(own.GetAsn1(), authority.GetAsn1()) {
				held = true
				break
			}
		}
		if !held {
			missing.X509Authorities = append(missing.X509Authorities, &types.X509Certificate{Asn1: authority.GetAsn1()})
		}
	}
	for _, authority := range from.GetJwtAuthorities() {
		held := false
		for _, own := range have.GetJwtAuthorities() {
			if own.GetKeyId() == authority.GetKeyId() && bytes.Equal(own.GetPublicKey(), authority.GetPublicKey()) {
				held = true
				break
			}
		}
		if !held {
			missing.JwtAuthorities = append(missing.JwtAuthorities, &types.JWTKey{KeyId: authority.GetKeyId(), PublicKey: authority.GetPublicKey(), ExpiresAt: authority.GetExpiresAt()})
		}
	}
	if len(missing.X509Authorities) == 0 && len(missing.JwtAuthorities) == 0 {
		return nil
	}
	return missing
}

// HoldsX509 says whether a bundle holds every one of the given X.509
// authorities (SHA-256 fingerprints): a nested server holds its root's.
func HoldsX509(have *types.Bundle, fingerprints []string) bool {
	held := map[string]bool{}
	for _, authority := range have.GetX509Authorities() {
		held[bundle.FingerprintDER(authority.GetAsn1())] = true
	}
	for _, fingerprint := range fingerprints {
		if !held[fingerprint] {
			return false
		}
	}
	return true
}
