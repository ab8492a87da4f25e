package bundle_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func mustPKI(t *testing.T, trustDomain string, sequence uint64) *testenv.TestZonePKI {
	t.Helper()
	pki, err := testenv.NewTestZonePKI(trustDomain, sequence)
	if err != nil {
		t.Fatal(err)
	}
	return pki
}

func spiffeEndpoint(pki *testenv.TestZonePKI, url string) bundle.Endpoint {
	return bundle.Endpoint{
		TrustDomain: pki.TrustDomain,
		URL:         url,
		EndpointID:  spiffeid.RequireFromPath(pki.TrustDomain, "/spire/server"),
	}
}

func serveDocument(status int, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	})
}

// TestFetchSPIFFE fetches over loopback TLS from go-spiffe's federation
// handler, authenticated with real X.509 CAs, and refuses every unsafe answer.
func TestFetchSPIFFE(t *testing.T) {
	t.Parallel()
	zone := mustPKI(t, "zone1.example", 7)
	server := testenv.StartBundleServer(zone.Bundle, zone.Serving)
	defer server.Close()
	fetcher := bundle.Fetcher{Timeout: 2 * time.Second}
	trust := x509bundle.FromX509Authorities(zone.TrustDomain, zone.CA.Chain())
	ctx := context.Background()

	t.Run("authenticated fetch", func(t *testing.T) {
		got, _, err := fetcher.Fetch(ctx, spiffeEndpoint(zone, server.URL), trust)
		if err != nil {
			t.Fatal(err)
		}
		if sequence, _ := got.SequenceNumber(); sequence != 7 || !bundle.SameAuthorities(got, zone.Bundle) {
			t.Errorf("fetched sequence %d, authorities equal %v", sequence, bundle.SameAuthorities(got, zone.Bundle))
		}
	})

	other := mustPKI(t, "other.example", 1)
	impostor := mustPKI(t, "zone1.example", 1) // same trust domain name, another CA
	wrongID, err := zone.CA.NewServingCertificate("spiffe://zone1.example/not/the/server")
	if err != nil {
		t.Fatal(err)
	}
	good := zone.Bundle
	twoTrustDomainCA, err := testenv.NewSPIFFECA("other.example")
	if err != nil {
		t.Fatal(err)
	}
	foreignRoots := spiffebundle.FromX509Authorities(zone.TrustDomain, twoTrustDomainCA.Chain())
	foreignRoots.SetSequenceNumber(9)
	foreignDocument, _ := foreignRoots.Marshal()
	goodDocument, _ := good.Marshal()
	plainHTTP := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/bundle", http.StatusTemporaryRedirect)
	})
	otherServer := testenv.StartBundleServer(other.Bundle, other.Serving)
	defer otherServer.Close()
	toOtherIdentity := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherServer.URL, http.StatusTemporaryRedirect)
	})
	oversized := `{"keys":[],"padding":"` + strings.Repeat("x", bundle.MaxBundleBytes) + `"}`
	hanging := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})

	cases := []struct {
		name        string
		certificate *[]byte
		serve       func()
		want        error
		wantMessage string
	}{
		{"wrong SPIFFE ID", nil, func() { server.SetCertificate(wrongID) }, bundle.ErrAuthentication, "unexpected ID"},
		{"impostor CA for the same trust domain", nil, func() { server.SetCertificate(impostor.Serving) }, bundle.ErrAuthentication, ""},
		{"redirect to http", nil, func() { server.Override(plainHTTP) }, bundle.ErrResponse, "not https"},
		{"redirect to another identity", nil, func() { server.Override(toOtherIdentity) }, bundle.ErrAuthentication, ""},
		{"HTTP 500 with a valid bundle", nil, func() { server.Override(serveDocument(http.StatusInternalServerError, string(goodDocument))) }, bundle.ErrResponse, "HTTP status 500"},
		{"oversized body", nil, func() { server.Override(serveDocument(http.StatusOK, oversized)) }, bundle.ErrResponse, "larger than"},
		{"empty bundle", nil, func() { server.Override(serveDocument(http.StatusOK, `{"keys":[]}`)) }, bundle.ErrInvalid, "no authority"},
		{"duplicate keys member", nil, func() {
			server.Override(serveDocument(http.StatusOK, strings.Replace(string(goodDocument), `{`, `{"keys":[],`, 1)))
		}, bundle.ErrInvalid, "appears twice"},
		{"private key in a JWK", nil, func() {
			server.Override(serveDocument(http.StatusOK, `{"keys":[{"kty":"EC","use":"jwt-svid","kid":"k","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cLyBgBXc5H1jcGhFm5Pjwk"}]}`))
		}, bundle.ErrInvalid, "private key material"},
		{"CA of another trust domain", nil, func() { server.Override(serveDocument(http.StatusOK, string(foreignDocument))) }, bundle.ErrInvalid, "not trust domain zone1.example"},
		{"not JSON", nil, func() { server.Override(serveDocument(http.StatusOK, `<html>`)) }, bundle.ErrInvalid, ""},
		{"hanging server", nil, func() { server.Override(hanging) }, bundle.ErrUnreachable, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			server.SetCertificate(zone.Serving)
			server.SetBundle(zone.Bundle)
			tc.serve()
			defer func() {
				server.SetCertificate(zone.Serving)
				server.SetBundle(zone.Bundle)
			}()
			started := time.Now()
			got, _, err := fetcher.Fetch(ctx, spiffeEndpoint(zone, server.URL), trust)
			if err == nil {
				t.Fatalf("accepted %v", got)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMessage) {
				t.Errorf("error %v, want %v containing %q", err, tc.want, tc.wantMessage)
			}
			if elapsed := time.Since(started); elapsed > 5*time.Second {
				t.Errorf("fetch took %s despite a 2s timeout", elapsed)
			}
		})
	}

	t.Run("plain http URL", func(t *testing.T) {
		_, _, err := fetcher.Fetch(ctx, spiffeEndpoint(zone, strings.Replace(server.URL, "https", "http", 1)), trust)
		if !errors.Is(err, bundle.ErrResponse) {
			t.Errorf("error %v, want ErrResponse", err)
		}
	})

	t.Run("rotated serving CA: the latest authorities authenticate", func(t *testing.T) {
		rotated, err := testenv.NewSPIFFECA("zone1.example")
		if err != nil {
			t.Fatal(err)
		}
		serving, err := rotated.NewServingCertificate("spiffe://zone1.example/spire/server")
		if err != nil {
			t.Fatal(err)
		}
		next := spiffebundle.FromX509Authorities(zone.TrustDomain, []*x509.Certificate{zone.CA.Cert, rotated.Cert})
		next.SetSequenceNumber(8)
		server.SetBundle(next)
		server.SetCertificate(serving)
		defer server.SetCertificate(zone.Serving)
		if _, _, err := fetcher.Fetch(ctx, spiffeEndpoint(zone, server.URL), trust); !errors.Is(err, bundle.ErrAuthentication) {
			t.Fatalf("old authorities accepted the rotated SVID: %v", err)
		}
		latest := x509bundle.FromX509Authorities(zone.TrustDomain, next.X509Authorities())
		if _, _, err := fetcher.Fetch(ctx, spiffeEndpoint(zone, server.URL), latest); err != nil {
			t.Fatalf("latest authorities: %v", err)
		}
	})
}

// TestFetchWeb fetches with the https_web profile from a server whose
// certificate chains to configured roots.
func TestFetchWeb(t *testing.T) {
	t.Parallel()
	zone := mustPKI(t, "web.example", 3)
	webCA, err := testenv.NewCA("web PKI")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := webCA.NewServingCertificate("", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	server := testenv.StartBundleServer(zone.Bundle, serving)
	defer server.Close()
	roots := x509.NewCertPool()
	roots.AddCert(webCA.Cert)
	endpoint := bundle.Endpoint{TrustDomain: zone.TrustDomain, URL: server.URL, WebRoots: roots}
	got, _, err := bundle.Fetcher{}.Fetch(context.Background(), endpoint, nil)
	if err != nil || !bundle.SameAuthorities(got, zone.Bundle) {
		t.Fatalf("fetch with configured roots: %v", err)
	}
	endpoint.WebRoots = x509.NewCertPool() // roots that do not include the CA
	if _, _, err := (bundle.Fetcher{}).Fetch(context.Background(), endpoint, nil); !errors.Is(err, bundle.ErrAuthentication) {
		t.Errorf("fetch with foreign roots: %v, want ErrAuthentication", err)
	}
}

func TestCanonicalIsStable(t *testing.T) {
	t.Parallel()
	zone := mustPKI(t, "zone1.example", 4)
	second, _ := testenv.NewSPIFFECA("zone1.example")
	zone.Bundle.AddX509Authority(second.Cert)
	for i, key := range []string{"a", "b", "c", "d", "e", "f"} {
		ca, _ := testenv.NewCA(fmt.Sprint(i))
		if err := zone.Bundle.AddJWTAuthority(key, ca.Key.Public()); err != nil {
			t.Fatal(err)
		}
	}
	first, err := bundle.Canonical(zone.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		again, err := bundle.Canonical(zone.Bundle)
		if err != nil || string(again) != string(first) {
			t.Fatal("canonical form differs between calls")
		}
	}
	parsed, _, err := bundle.ParseSPIFFE(zone.TrustDomain, first, bundle.Checks{})
	if err != nil || !bundle.SameAuthorities(parsed, zone.Bundle) {
		t.Fatalf("canonical form does not parse back: %v", err)
	}
}
