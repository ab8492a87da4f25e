package testenv

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/federation"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// BundleServer is a SPIFFE bundle endpoint on loopback TLS, served by
// go-spiffe's federation handler. Tests change what it serves and which
// certificate it presents while it runs.
type BundleServer struct {
	// URL of the endpoint (https://127.0.0.1:<port>).
	URL string

	server *http.Server

	mu          sync.Mutex
	bundle      *spiffebundle.Bundle
	certificate tls.Certificate
	override    http.Handler
	requests    int
}

// StartBundleServer serves bundle on 127.0.0.1, presenting certificate.
func StartBundleServer(bundle *spiffebundle.Bundle, certificate tls.Certificate) *BundleServer {
	s := &BundleServer{bundle: bundle, certificate: certificate}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("listening on loopback: %v", err))
	}
	tlsListener := tls.NewListener(listener, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			certificate := s.certificate
			return &certificate, nil
		},
	})
	s.server = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = s.server.Serve(tlsListener) }()
	s.URL = "https://" + listener.Addr().String()
	return s
}

func (s *BundleServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	override := s.override
	trustDomain := s.bundle.TrustDomain()
	source := s.bundle
	s.mu.Unlock()
	if override != nil {
		override.ServeHTTP(w, r)
		return
	}
	handler, err := federation.NewHandler(trustDomain, source)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	handler.ServeHTTP(w, r)
}

// SetBundle changes the bundle served.
func (s *BundleServer) SetBundle(bundle *spiffebundle.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle = bundle
	s.override = nil
}

// SetCertificate changes the certificate presented.
func (s *BundleServer) SetCertificate(certificate tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certificate = certificate
}

// Override answers with handler instead of the bundle until SetBundle.
func (s *BundleServer) Override(handler http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.override = handler
}

// Requests counts the requests served.
func (s *BundleServer) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Close stops the server.
func (s *BundleServer) Close() { _ = s.server.Close() }

// TestZonePKI is a trust domain's CA, the SVID of its bundle endpoint and
// the bundle the endpoint serves.
type TestZonePKI struct {
	TrustDomain spiffeid.TrustDomain
	CA          *CA
	Bundle      *spiffebundle.Bundle
	Serving     tls.Certificate
}

// NewTestZonePKI creates a CA for trustDomain, the X509-SVID
// spiffe://<trustDomain>/spire/server signed by it, and a bundle holding
// the CA with the given sequence number.
func NewTestZonePKI(trustDomain string, sequence uint64) (*TestZonePKI, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, err
	}
	ca, err := NewSPIFFECA(trustDomain)
	if err != nil {
		return nil, err
	}
	serving, err := ca.NewServingCertificate(fmt.Sprintf("spiffe://%s/spire/server", trustDomain))
	if err != nil {
		return nil, err
	}
	bundle := spiffebundle.FromX509Authorities(td, ca.Chain())
	bundle.SetSequenceNumber(sequence)
	return &TestZonePKI{TrustDomain: td, CA: ca, Bundle: bundle, Serving: serving}, nil
}

// ZoneEndpoint is a test trust domain's PKI and its bundle endpoint on
// loopback.
type ZoneEndpoint struct {
	*TestZonePKI
	Server *BundleServer
}

// StartZoneEndpoint creates a trust domain's CA and serves its bundle
// (sequence 1) with an SVID for spiffe://<trustDomain>/spire/server, until
// the test ends.
func StartZoneEndpoint(t testing.TB, trustDomain string) *ZoneEndpoint {
	t.Helper()
	pki, err := NewTestZonePKI(trustDomain, 1)
	if err != nil {
		t.Fatal(err)
	}
	server := StartBundleServer(pki.Bundle, pki.Serving)
	t.Cleanup(server.Close)
	return &ZoneEndpoint{TestZonePKI: pki, Server: server}
}
