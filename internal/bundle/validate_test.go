package bundle_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"

	clocktesting "k8s.io/utils/clock/testing"
)

// authorities are the CAs the validation tests combine, all of
// zone1.example unless named otherwise, at a fixed now.
type authorities struct {
	now                                                   time.Time
	valid, expired, future, withinSkew, prepared, foreign *testenv.CA
	foreignExpired, noURI                                 *testenv.CA
	leaf, unknownKey                                      *x509.Certificate
}

func newAuthorities(t *testing.T) *authorities {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	must := func(ca *testenv.CA, err error) *testenv.CA {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	a := &authorities{
		now:            now,
		valid:          must(testenv.NewSPIFFECA("zone1.example")),
		expired:        must(testenv.NewSPIFFECAValid("zone1.example", now.Add(-48*time.Hour), now.Add(-time.Hour))),
		future:         must(testenv.NewSPIFFECAValid("zone1.example", now.Add(time.Hour), now.Add(48*time.Hour))),
		withinSkew:     must(testenv.NewSPIFFECAValid("zone1.example", now.Add(bundle.ClockSkew-time.Minute), now.Add(48*time.Hour))),
		prepared:       must(testenv.NewSPIFFECAValid("zone1.example", now, now.Add(48*time.Hour))),
		foreign:        must(testenv.NewSPIFFECA("zone2.example")),
		foreignExpired: must(testenv.NewSPIFFECAValid("zone2.example", now.Add(-48*time.Hour), now.Add(-time.Hour))),
		noURI:          must(testenv.NewSPIFFECAValid("", now.Add(-time.Hour), now.Add(time.Hour))),
	}
	leaf, err := a.valid.NewLeaf("leaf")
	if err != nil {
		t.Fatal(err)
	}
	a.leaf = leaf
	a.unknownKey = withUnknownKeyAlgorithm(t, a.valid.Cert)
	return a
}

// withUnknownKeyAlgorithm re-encodes cert with its id-ecPublicKey algorithm
// identifier changed to an unassigned one: crypto/x509 still parses it,
// with a nil PublicKey (a fuzzing find).
func withUnknownKeyAlgorithm(t *testing.T, cert *x509.Certificate) *x509.Certificate {
	t.Helper()
	ecPublicKey := []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}
	unassigned := []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x09}
	if !bytes.Contains(cert.Raw, ecPublicKey) {
		t.Fatal("the test CA has no EC public key")
	}
	changed, err := x509.ParseCertificate(bytes.Replace(cert.Raw, ecPublicKey, unassigned, 1))
	if err != nil {
		t.Fatal(err)
	}
	if changed.PublicKey != nil {
		t.Fatalf("crypto/x509 now parses the unassigned algorithm to a %T", changed.PublicKey)
	}
	return changed
}

func certs(cas ...*testenv.CA) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(cas))
	for _, ca := range cas {
		out = append(out, ca.Cert)
	}
	return out
}

// manyCAs creates n distinct CAs of zone1.example.
func manyCAs(t *testing.T, n int) []*x509.Certificate {
	t.Helper()
	out := make([]*x509.Certificate, 0, n)
	for range n {
		ca, err := testenv.NewSPIFFECA("zone1.example")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ca.Cert)
	}
	return out
}

// validationCase is a case of either parser; wantKept and wantDropped list
// the authorities' fingerprints.
type validationCase struct {
	name        string
	input       []byte
	checks      *bundle.Checks // nil: at the authorities' now
	wantErr     string
	wantKept    []*x509.Certificate
	wantDropped map[*x509.Certificate]string // certificate -> reason prefix
}

func checkOutcome(t *testing.T, tc validationCase, kept []*x509.Certificate, dropped []bundle.Dropped, err error) {
	t.Helper()
	if tc.wantErr != "" {
		if err == nil || !errors.Is(err, bundle.ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Fatalf("error %v, want ErrInvalid containing %q", err, tc.wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fingerprints(kept), fingerprints(tc.wantKept); got != want {
		t.Errorf("kept %s, want %s", got, want)
	}
	if len(dropped) != len(tc.wantDropped) {
		t.Fatalf("dropped %+v, want %d", dropped, len(tc.wantDropped))
	}
	for cert, reason := range tc.wantDropped {
		found := false
		for _, d := range dropped {
			if d.SHA256Fingerprint == bundle.Fingerprint(cert) {
				found = true
				if !strings.HasPrefix(d.Reason, reason) || d.Subject != cert.Subject.String() {
					t.Errorf("dropped %+v, want reason %q and subject %q", d, reason, cert.Subject)
				}
			}
		}
		if !found {
			t.Errorf("%s not dropped: %+v", cert.Subject, dropped)
		}
	}
}

func fingerprints(certs []*x509.Certificate) string {
	described := bundle.DescribeX509Authorities(certs)
	parts := make([]string, 0, len(described))
	for _, d := range described {
		parts = append(parts, d.SHA256Fingerprint[:8])
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func expiredAt(cert *x509.Certificate) string {
	return "expired at " + cert.NotAfter.UTC().Format(time.RFC3339)
}

// TestParseX509AuthoritiesValidation covers the bootstrap ConfigMap
// (finding 3) and validity (finding 1) on the PEM path.
func TestParseX509AuthoritiesValidation(t *testing.T) {
	t.Parallel()
	a := newAuthorities(t)
	key := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	many := manyCAs(t, 2)
	tooMany := []*x509.Certificate{}
	for range bundle.MaxX509Authorities + 1 {
		tooMany = append(tooMany, many[0]) // blocks are counted before duplicates are
	}
	largerSkew := bundle.Checks{Now: a.now, ClockSkew: 2 * time.Hour}
	cases := []validationCase{
		{name: "valid CA", input: testenv.PEM(a.valid.Cert), wantKept: certs(a.valid)},
		{name: "CA without URI SAN", input: testenv.PEM(a.noURI.Cert), wantKept: certs(a.noURI)},
		{name: "the same CA twice counts once", input: testenv.PEM(a.valid.Cert, a.valid.Cert), wantKept: certs(a.valid)},
		{name: "only an expired CA", input: testenv.PEM(a.expired.Cert), wantErr: "no valid X.509 authority: " + fmt.Sprintf("%q", a.expired.Cert.Subject.String())},
		{name: "expired beside valid: expired dropped", input: testenv.PEM(a.expired.Cert, a.valid.Cert), wantKept: certs(a.valid),
			wantDropped: map[*x509.Certificate]string{a.expired.Cert: expiredAt(a.expired.Cert)}},
		{name: "not yet valid beyond the skew: dropped", input: testenv.PEM(a.valid.Cert, a.future.Cert), wantKept: certs(a.valid),
			wantDropped: map[*x509.Certificate]string{a.future.Cert: "not valid before " + a.future.Cert.NotBefore.UTC().Format(time.RFC3339)}},
		{name: "only not yet valid", input: testenv.PEM(a.future.Cert), wantErr: "not valid before"},
		{name: "not yet valid within the skew: kept", input: testenv.PEM(a.withinSkew.Cert), wantKept: certs(a.withinSkew)},
		{name: "a larger skew keeps the future CA", input: testenv.PEM(a.future.Cert), checks: &largerSkew, wantKept: certs(a.future)},
		{name: "prepared, not yet active, travels with the active one", input: testenv.PEM(a.valid.Cert, a.prepared.Cert), wantKept: certs(a.valid, a.prepared)},
		{name: "another zone's CA", input: testenv.PEM(a.foreign.Cert), wantErr: "names spiffe://zone2.example, not trust domain zone1.example"},
		{name: "the zone's CA and a foreign one", input: testenv.PEM(a.valid.Cert, a.foreign.Cert), wantErr: "not trust domain zone1.example"},
		{name: "an expired foreign CA is still foreign", input: testenv.PEM(a.valid.Cert, a.foreignExpired.Cert), wantErr: "not trust domain zone1.example"},
		{name: "leaf certificate", input: testenv.PEM(a.valid.Cert, a.leaf), wantErr: "is not a CA certificate"},
		{name: "unknown public key algorithm", input: testenv.PEM(a.valid.Cert, a.unknownKey), wantErr: "has no supported public key"},
		{name: "private key block", input: append(testenv.PEM(a.valid.Cert), key...), wantErr: "PEM block 2 is a private key"},
		{name: "PKCS#8 private key block", input: append(pkcs8, testenv.PEM(a.valid.Cert)...), wantErr: "PEM block 1 is a private key"},
		{name: "other block type", input: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1}}), wantErr: "not a CERTIFICATE"},
		{name: "too many certificates", input: testenv.PEM(tooMany...), wantErr: fmt.Sprintf("more than %d certificates", bundle.MaxX509Authorities)},
		{name: "at the limit", input: testenv.PEM(tooMany[:bundle.MaxX509Authorities]...), wantKept: many[:1]},
		{name: "larger than allowed", input: make([]byte, bundle.MaxBundleBytes+1), wantErr: "larger than"},
		{name: "empty", wantErr: "no X.509 authority"},
		{name: "garbage in a CERTIFICATE block", input: []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"), wantErr: "cannot parse certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checks := bundle.Checks{Now: a.now}
			if tc.checks != nil {
				checks = *tc.checks
			}
			parsed, dropped, err := bundle.ParseX509Authorities("zone1.example", tc.input, checks)
			var kept []*x509.Certificate
			if parsed != nil {
				kept = parsed.X509Authorities()
			}
			checkOutcome(t, tc, kept, dropped, err)
		})
	}
	for _, td := range []string{"a..b", "zone1.example.", "Zone1.example", ""} {
		if _, _, err := bundle.ParseX509Authorities(td, testenv.PEM(a.valid.Cert), bundle.Checks{}); !errors.Is(err, bundle.ErrInvalid) {
			t.Errorf("trust domain %q: error %v, want ErrInvalid", td, err)
		}
	}
}

// spiffeDocument marshals a bundle of zone1.example holding x509 and, under
// key IDs k0, k1, ..., the public keys of jwt.
func spiffeDocument(t *testing.T, x509Authorities []*x509.Certificate, jwt ...*testenv.CA) []byte {
	t.Helper()
	b := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("zone1.example"), x509Authorities)
	b.SetSequenceNumber(42)
	b.SetRefreshHint(90 * time.Second)
	for i, ca := range jwt {
		if err := b.AddJWTAuthority(fmt.Sprintf("k%d", i), ca.Key.Public()); err != nil {
			t.Fatal(err)
		}
	}
	document, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return document
}

// withX5C replaces the certificate of the document's first key: the JWK's
// own members still describe the original key.
func withX5C(t *testing.T, document []byte, cert *x509.Certificate) []byte {
	t.Helper()
	return editKeys(t, document, func(keys []any) []any {
		keys[0].(map[string]any)["x5c"] = []any{base64.StdEncoding.EncodeToString(cert.Raw)}
		return keys
	})
}

// editKeys applies edit to the document's keys array.
func editKeys(t *testing.T, document []byte, edit func(keys []any) []any) []byte {
	t.Helper()
	var decoded map[string]any
	if err := json.Unmarshal(document, &decoded); err != nil {
		t.Fatal(err)
	}
	decoded["keys"] = edit(decoded["keys"].([]any))
	edited, err := json.Marshal(decoded)
	if err != nil {
		t.Fatal(err)
	}
	return edited
}

// TestParseSPIFFEValidation covers validity (finding 1) and case-folded
// duplicate members (finding 5) on the endpoint's SPIFFE bundle path.
func TestParseSPIFFEValidation(t *testing.T) {
	t.Parallel()
	a := newAuthorities(t)
	td := spiffeid.RequireTrustDomainFromString("zone1.example")
	valid := spiffeDocument(t, certs(a.valid))
	withJWT := spiffeDocument(t, certs(a.valid), a.foreign)
	jwtKeys := make([]*testenv.CA, 0, bundle.MaxJWTAuthorities+1)
	for range bundle.MaxJWTAuthorities + 1 {
		jwtKeys = append(jwtKeys, a.noURI) // one key under many key IDs
	}
	duplicateKeyID := editKeys(t, withJWT, func(keys []any) []any {
		for _, key := range keys {
			if key.(map[string]any)["use"] == "jwt-svid" {
				return append(keys, key)
			}
		}
		t.Fatal("no JWT key")
		return nil
	})
	emptyKeyID := editKeys(t, withJWT, func(keys []any) []any {
		for _, key := range keys {
			if key := key.(map[string]any); key["use"] == "jwt-svid" {
				key["kid"] = ""
			}
		}
		return keys
	})
	tooManyKeys := editKeys(t, valid, func(keys []any) []any {
		for len(keys) <= bundle.MaxX509Authorities+bundle.MaxJWTAuthorities {
			keys = append(keys, map[string]any{"kty": "EC", "use": "unknown"})
		}
		return keys
	})
	cases := []validationCase{
		{name: "valid", input: valid, wantKept: certs(a.valid)},
		{name: "only an expired CA", input: spiffeDocument(t, certs(a.expired)), wantErr: "no valid X.509 authority and no JWT authority"},
		{name: "expired beside valid: expired dropped", input: spiffeDocument(t, certs(a.valid, a.expired)), wantKept: certs(a.valid),
			wantDropped: map[*x509.Certificate]string{a.expired.Cert: expiredAt(a.expired.Cert)}},
		{name: "expired beside a JWT authority: accepted with the JWT authority", input: spiffeDocument(t, certs(a.expired), a.foreign),
			wantDropped: map[*x509.Certificate]string{a.expired.Cert: expiredAt(a.expired.Cert)}},
		{name: "not yet valid beyond the skew: dropped", input: spiffeDocument(t, certs(a.valid, a.future)), wantKept: certs(a.valid),
			wantDropped: map[*x509.Certificate]string{a.future.Cert: "not valid before "}},
		{name: "not yet valid within the skew: kept", input: spiffeDocument(t, certs(a.withinSkew)), wantKept: certs(a.withinSkew)},
		{name: "prepared, not yet active, travels with the active one", input: spiffeDocument(t, certs(a.valid, a.prepared)), wantKept: certs(a.valid, a.prepared)},
		{name: "another zone's CA", input: spiffeDocument(t, certs(a.valid, a.foreign)), wantErr: "not trust domain zone1.example"},
		{name: "leaf", input: spiffeDocument(t, []*x509.Certificate{a.leaf}), wantErr: "is not a CA certificate"},
		{name: "unknown public key algorithm", input: withX5C(t, valid, a.unknownKey), wantErr: "has no supported public key"},
		{name: "too many X.509 authorities", input: spiffeDocument(t, manyCAs(t, bundle.MaxX509Authorities+1)), wantErr: fmt.Sprintf("65 X.509 authorities, more than %d", bundle.MaxX509Authorities)},
		{name: "too many JWT authorities", input: spiffeDocument(t, certs(a.valid), jwtKeys...), wantErr: fmt.Sprintf("65 JWT authorities, more than %d", bundle.MaxJWTAuthorities)},
		{name: "too many keys", input: tooManyKeys, wantErr: "keys, more than"},
		{name: "duplicate JWT key ID", input: duplicateKeyID, wantErr: `jwt-svid key ID "k0" appears twice`},
		{name: "empty JWT key ID", input: emptyKeyID, wantErr: "has no key ID"},
		{name: `"keys" then "KEYS"`, input: []byte(strings.Replace(string(valid), "{", `{"KEYS":[],`, 1)), wantErr: "appears twice"},
		{name: `"keys" then "keyſ" (encoding/json folds ſ to s)`, input: []byte(strings.Replace(string(valid), "{", `{"keyſ":[],`, 1)), wantErr: "appears twice"},
		{name: `"spiffe_sequence" twice in two cases`, input: []byte(strings.Replace(string(valid), "{", `{"SPIFFE_Sequence":1,`, 1)), wantErr: "appears twice"},
		{name: `"kty" and "KTY" in one key`, input: []byte(strings.Replace(string(valid), `"kty":`, `"KTY":"EC","kty":`, 1)), wantErr: "appears twice"},
		{name: `private member "D" in a JWK`, input: []byte(strings.Replace(string(withJWT), `"kid":`, `"D":"AAAA","kid":`, 1)), wantErr: "private key material"},
		{name: "empty", input: []byte(`{"keys":[]}`), wantErr: "no authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parsed, dropped, err := bundle.ParseSPIFFE(td, tc.input, bundle.Checks{Now: a.now})
			var kept []*x509.Certificate
			if parsed != nil {
				kept = parsed.X509Authorities()
				sequence, _ := parsed.SequenceNumber()
				hint, _ := parsed.RefreshHint()
				if sequence != 42 || hint != 90*time.Second {
					t.Errorf("sequence %d and hint %s, want 42 and 1m30s", sequence, hint)
				}
			}
			checkOutcome(t, tc, kept, dropped, err)
		})
	}
}

// TestFetchChecksValidityAtFetcherNow: the fetcher validates at its clock.
func TestFetchChecksValidityAtFetcherNow(t *testing.T) {
	t.Parallel()
	zone := mustPKI(t, "zone1.example", 1)
	server := testenv.StartBundleServer(zone.Bundle, zone.Serving)
	defer server.Close()
	trust := x509bundle.FromX509Authorities(zone.TrustDomain, zone.CA.Chain())
	later := clocktesting.NewFakePassiveClock(zone.CA.Cert.NotAfter.Add(time.Minute))
	_, _, err := bundle.Fetcher{Timeout: 2 * time.Second, Clock: later}.Fetch(context.Background(), spiffeEndpoint(zone, server.URL), trust)
	if !errors.Is(err, bundle.ErrInvalid) || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("fetch after the CA expired: %v, want ErrInvalid naming the expiry", err)
	}
}

func TestValidTrustDomain(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"default.zone1": true, "broker.example": true, "a_b-c.d": true, "a": true, "-a": true, strings.Repeat("a", 255): true,
		"a.": false, "..": false, "a..b": false, ".a": false, ".": false, "": false, "Zone1.example": false,
		strings.Repeat("a", 256): false, "spiffe://a": false, "a b": false, "é.example": false,
	} {
		if err := bundle.ValidTrustDomain(name); (err == nil) != want {
			t.Errorf("ValidTrustDomain(%q) = %v, want accepted %v", name, err, want)
		}
	}
}
