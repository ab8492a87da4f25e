package spireaccess

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"
)

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func TestParseBundleList(t *testing.T) {
	t.Parallel()
	response := &bundlev1.ListFederatedBundlesResponse{Bundles: []*types.Bundle{
		{TrustDomain: "b.example", SequenceNumber: 3, X509Authorities: []*types.X509Certificate{{Asn1: []byte("second")}, {Asn1: []byte("first")}}},
		{TrustDomain: "c.example"},
	}}
	// The spire-server command prints protojson; field names as the
	// proto declares them (trust_domain), as it does.
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(response)
	if err != nil {
		t.Fatal(err)
	}
	held, err := ParseBundleList(append(out, '\n'))
	if err != nil {
		t.Fatal(err)
	}
	b := held["b.example"]
	if b.Sequence != 3 || len(b.X509Fingerprints) != 2 || !b.Holds([]string{fingerprint([]byte("first")), fingerprint([]byte("second"))}) {
		t.Errorf("b.example = %+v", b)
	}
	if b.Holds([]string{fingerprint([]byte("first"))}) {
		t.Error("a bundle with two authorities holds one")
	}
	if c, ok := held["c.example"]; !ok || len(c.X509Fingerprints) != 0 {
		t.Errorf("c.example = %+v, %v", c, ok)
	}
	if _, err := ParseBundleList([]byte("Error: connection refused")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestLimitedBuffer(t *testing.T) {
	t.Parallel()
	buffer := &limitedBuffer{limit: 8}
	if _, err := buffer.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	if _, err := buffer.Write([]byte("6789")); !errors.Is(err, errOutputTooLarge) {
		t.Errorf("write past the limit: %v", err)
	}
	if !strings.HasPrefix(buffer.String(), "12345") || buffer.Len() != 5 {
		t.Errorf("buffer = %q", buffer.String())
	}
}
