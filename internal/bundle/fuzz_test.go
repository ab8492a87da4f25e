package bundle_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// FuzzParseSPIFFE checks that no document panics the parser and that every
// accepted bundle survives the canonical round trip. `go test` runs the
// seeds; `go test -fuzz FuzzParseSPIFFE ./internal/bundle` explores.
func FuzzParseSPIFFE(f *testing.F) {
	zone, err := testenv.NewTestZonePKI("zone1.example", 1)
	if err != nil {
		f.Fatal(err)
	}
	valid, _ := zone.Bundle.Marshal()
	for _, seed := range []string{string(valid), `{"keys":[]}`, `{"keys":null}`, `{}`, `[]`, `{"keys":[{"kty":"EC"}]}`, `{"a":1,"a":2}`} {
		f.Add([]byte(seed))
	}
	td := spiffeid.RequireTrustDomainFromString("zone1.example")
	f.Fuzz(func(t *testing.T, document []byte) {
		parsed, err := bundle.ParseSPIFFE(td, document)
		if err != nil {
			return
		}
		canonical, err := bundle.Canonical(parsed)
		if err != nil {
			t.Fatalf("accepted bundle does not marshal: %v", err)
		}
		again, err := bundle.ParseSPIFFE(td, canonical)
		if err != nil || !bundle.SameAuthorities(parsed, again) {
			t.Fatalf("canonical form does not parse back: %v", err)
		}
	})
}
