package bundle_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"sigs.k8s.io/yaml"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// The fuzz targets below run their seeds (f.Add and testdata/fuzz/<name>/)
// under `go test`; `make fuzz` explores each for FUZZTIME. Every accepted
// input is re-checked independently of the parser.

var fuzzTrustDomain = spiffeid.RequireTrustDomainFromString("zone1.example")

// fuzzChecks is one instant for a whole fuzz run. The committed corpus
// holds CAs valid from 2026 to 2046.
var fuzzChecks = bundle.Checks{Now: time.Now()}

// requireValidAuthorities re-checks what a parser kept: every rule of
// validation, without the parser's code.
func requireValidAuthorities(t *testing.T, kept []*x509.Certificate, dropped []bundle.Dropped) {
	t.Helper()
	if len(kept) > bundle.MaxX509Authorities || len(kept)+len(dropped) > bundle.MaxX509Authorities {
		t.Fatalf("accepted %d X.509 authorities (%d dropped)", len(kept), len(dropped))
	}
	for _, cert := range kept {
		if !cert.BasicConstraintsValid || !cert.IsCA || (cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0) {
			t.Fatalf("accepted %s, which is not a CA that signs certificates", cert.Subject)
		}
		switch cert.PublicKey.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			t.Fatalf("accepted %s with a %T public key", cert.Subject, cert.PublicKey)
		}
		if fuzzChecks.Now.After(cert.NotAfter) || cert.NotBefore.After(fuzzChecks.Now.Add(bundle.ClockSkew)) {
			t.Fatalf("accepted %s outside its validity %s..%s", cert.Subject, cert.NotBefore, cert.NotAfter)
		}
		for _, uri := range cert.URIs {
			if uri.Scheme != "spiffe" || uri.Host != fuzzTrustDomain.Name() || uri.User != nil || uri.Opaque != "" {
				t.Fatalf("accepted %s naming %s", cert.Subject, uri)
			}
		}
	}
	for _, d := range dropped {
		if d.Reason == "" || len(d.SHA256Fingerprint) != 64 {
			t.Fatalf("dropped without a reason or fingerprint: %+v", d)
		}
	}
}

func requirePublicKeys(t *testing.T, kind string, keys map[string]crypto.PublicKey) {
	t.Helper()
	if len(keys) > bundle.MaxJWTAuthorities {
		t.Fatalf("accepted %d %s authorities", len(keys), kind)
	}
	for id, key := range keys {
		switch key.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			t.Fatalf("accepted %s authority %q of type %T", kind, id, key)
		}
		if id == "" {
			t.Fatalf("accepted a %s authority without key ID", kind)
		}
	}
}

// reordered re-encodes a JSON document with every object's members in
// reverse lexical order and the top-level "keys" array reversed.
func reordered(t *testing.T, document []byte) []byte {
	t.Helper()
	decoder := json.NewDecoder(bytes.NewReader(document))
	decoder.UseNumber()
	var value any
	if err := decoder.Decode(&value); err != nil {
		t.Fatalf("accepted document does not decode: %v", err)
	}
	var out bytes.Buffer
	var encode func(value any, top bool)
	encode = func(value any, top bool) {
		switch v := value.(type) {
		case map[string]any:
			names := make([]string, 0, len(v))
			for name := range v {
				names = append(names, name)
			}
			slices.Sort(names)
			slices.Reverse(names)
			out.WriteByte('{')
			for i, name := range names {
				if i > 0 {
					out.WriteByte(',')
				}
				encoded, _ := json.Marshal(name)
				out.Write(encoded)
				out.WriteByte(':')
				member := v[name]
				if keys, ok := member.([]any); ok && top && name == "keys" {
					member = slices.Clone(keys)
					slices.Reverse(member.([]any))
				}
				encode(member, false)
			}
			out.WriteByte('}')
		case []any:
			out.WriteByte('[')
			for i, item := range v {
				if i > 0 {
					out.WriteByte(',')
				}
				encode(item, false)
			}
			out.WriteByte(']')
		default:
			encoded, err := json.Marshal(v)
			if err != nil {
				t.Fatalf("re-encoding %v: %v", v, err)
			}
			out.Write(encoded)
		}
	}
	encode(value, true)
	return out.Bytes()
}

// FuzzParseSPIFFE: no document panics the parser; an accepted bundle keeps
// only valid authorities, survives the canonical round trip, and is
// accepted alike with its members and keys in another order.
func FuzzParseSPIFFE(f *testing.F) {
	zone, err := testenv.NewTestZonePKI("zone1.example", 1)
	if err != nil {
		f.Fatal(err)
	}
	valid, _ := zone.Bundle.Marshal()
	for _, seed := range []string{string(valid), `{"keys":[]}`, `{"keys":null}`, `{}`, `[]`, `{"keys":[{"kty":"EC"}]}`, `{"a":1,"a":2}`, `{"keys":[],"KEYS":[]}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, document []byte) {
		parsed, dropped, err := bundle.ParseSPIFFE(fuzzTrustDomain, document, fuzzChecks)
		if err != nil {
			return
		}
		requireValidAuthorities(t, parsed.X509Authorities(), dropped)
		requirePublicKeys(t, "JWT", parsed.JWTAuthorities())
		requirePublicKeys(t, "WIT", parsed.WITAuthorities())
		if parsed.Empty() {
			t.Fatal("accepted an empty bundle")
		}
		canonical, err := bundle.Canonical(parsed)
		if err != nil {
			t.Fatalf("accepted bundle does not marshal: %v", err)
		}
		for name, again := range map[string][]byte{"canonical": canonical, "canonical reordered": reordered(t, canonical), "input reordered": reordered(t, document)} {
			reparsed, _, err := bundle.ParseSPIFFE(fuzzTrustDomain, again, fuzzChecks)
			if err != nil || !bundle.SameAuthorities(parsed, reparsed) {
				t.Fatalf("%s form is not accepted alike: %v\n%s", name, err, again)
			}
		}
	})
}

// FuzzParseX509Authorities: no input panics the bootstrap PEM parser; an
// accepted one holds no private key block, keeps only valid authorities
// of the zone, and is accepted alike with its blocks in reverse order.
func FuzzParseX509Authorities(f *testing.F) {
	zone, err := testenv.NewSPIFFECA("zone1.example")
	if err != nil {
		f.Fatal(err)
	}
	other, err := testenv.NewSPIFFECA("zone2.example")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(testenv.PEM(zone.Cert))
	f.Add(testenv.PEM(zone.Cert, other.Cert))
	f.Add(append(testenv.PEM(zone.Cert), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0}})...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parsed, dropped, err := bundle.ParseX509Authorities("zone1.example", data, fuzzChecks)
		if err != nil {
			return
		}
		requireValidAuthorities(t, parsed.X509Authorities(), dropped)
		if len(parsed.X509Authorities()) == 0 {
			t.Fatal("accepted no authority")
		}
		var blocks []*pem.Block
		for rest := data; ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				t.Fatalf("accepted a %s block", block.Type)
			}
			blocks = append(blocks, block)
		}
		if len(blocks) > bundle.MaxX509Authorities {
			t.Fatalf("accepted %d certificates", len(blocks))
		}
		slices.Reverse(blocks)
		var reversed []byte
		for _, block := range blocks {
			reversed = append(reversed, pem.EncodeToMemory(block)...)
		}
		again, _, err := bundle.ParseX509Authorities("zone1.example", reversed, fuzzChecks)
		if err != nil || fingerprints(again.X509Authorities()) != fingerprints(parsed.X509Authorities()) {
			t.Fatalf("blocks in reverse order not accepted alike: %v", err)
		}
	})
}

// FuzzValidTrustDomain: the Go check agrees with admission (the pattern and
// maxLength of spec.trustDomain in the generated CRD), and whatever it
// admits go-spiffe parses to the same name.
func FuzzValidTrustDomain(f *testing.F) {
	data, err := os.ReadFile("../../config/crd/bases/spirefed.io_zonetrustdomains.yaml")
	if err != nil {
		f.Fatal(err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema struct {
						Properties struct {
							Spec struct {
								Properties struct {
									TrustDomain struct {
										Pattern   string `json:"pattern"`
										MaxLength int    `json:"maxLength"`
									} `json:"trustDomain"`
								} `json:"properties"`
							} `json:"spec"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil || len(crd.Spec.Versions) == 0 {
		f.Fatalf("reading the CRD: %v", err)
	}
	admission := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties.Spec.Properties.TrustDomain
	pattern := regexp.MustCompile(admission.Pattern)
	if admission.MaxLength != bundle.MaxTrustDomainLength {
		f.Fatalf("CRD maxLength %d, want %d", admission.MaxLength, bundle.MaxTrustDomainLength)
	}
	for _, seed := range []string{"default.zone1", "broker.example", "a_b-c.d", "a.", "..", "a..b", ".a", "A.b", strings.Repeat("a", 256), "spiffe://a", "a/b"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := bundle.ValidTrustDomain(name)
		admitted := pattern.MatchString(name) && len(name) <= admission.MaxLength
		if (err == nil) != admitted {
			t.Fatalf("ValidTrustDomain(%q) = %v, but admission admits it: %v", name, err, admitted)
		}
		if err != nil {
			return
		}
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil || td.Name() != name {
			t.Fatalf("admitted %q, which go-spiffe reads as %q: %v", name, td.Name(), err)
		}
		if _, err := spiffeid.FromSegments(td, "spire", "server"); err != nil {
			t.Fatalf("admitted %q, which makes no SPIFFE ID: %v", name, err)
		}
	})
}
