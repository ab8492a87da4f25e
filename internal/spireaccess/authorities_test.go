package spireaccess

import (
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
)

func TestMissingAuthorities(t *testing.T) {
	t.Parallel()
	x := func(der string) *types.X509Certificate { return &types.X509Certificate{Asn1: []byte(der)} }
	j := func(id, key string) *types.JWTKey { return &types.JWTKey{KeyId: id, PublicKey: []byte(key)} }
	sideA := &types.Bundle{TrustDomain: "ha.example", X509Authorities: []*types.X509Certificate{x("a1")}, JwtAuthorities: []*types.JWTKey{j("ka", "A")}}
	sideB := &types.Bundle{TrustDomain: "ha.example", X509Authorities: []*types.X509Certificate{x("b1"), x("a1")}, JwtAuthorities: []*types.JWTKey{j("kb", "B"), j("ka", "other key")}}

	missing := MissingAuthorities(sideA, sideB)
	if missing == nil || len(missing.X509Authorities) != 1 || string(missing.X509Authorities[0].Asn1) != "b1" {
		t.Fatalf("X.509 missing from A = %+v, want b1 only", missing)
	}
	if len(missing.JwtAuthorities) != 2 {
		t.Errorf("JWT missing from A = %+v, want kb and the other ka key", missing.JwtAuthorities)
	}
	if got := MissingAuthorities(sideB, sideA); got == nil || len(got.X509Authorities) != 0 || len(got.JwtAuthorities) != 1 || got.JwtAuthorities[0].KeyId != "ka" {
		t.Errorf("missing from B = %+v, want the JWT key ka of A only", got)
	}
	if got := MissingAuthorities(sideB, &types.Bundle{X509Authorities: []*types.X509Certificate{x("b1")}}); got != nil {
		t.Errorf("nothing missing: got %+v", got)
	}
	if !HoldsX509(sideB, []string{bundle.FingerprintDER([]byte("a1"))}) || HoldsX509(sideA, []string{bundle.FingerprintDER([]byte("b1"))}) {
		t.Error("HoldsX509 is wrong")
	}
}
