package bundle

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"k8s.io/utils/clock"
)

// Endpoint is a SPIFFE bundle endpoint to fetch from. The trust domain comes
// from configuration, never from the URL or the response.
type Endpoint struct {
	TrustDomain spiffeid.TrustDomain
	URL         string
	// EndpointID is set for https_spiffe: the SPIFFE ID the server must present.
	EndpointID spiffeid.ID
	// WebRoots are the roots of https_web; nil means the system roots.
	WebRoots *x509.CertPool
}

// IsSPIFFE says whether the endpoint uses the https_spiffe profile.
func (e Endpoint) IsSPIFFE() bool { return !e.EndpointID.IsZero() }

// Failure kinds of a fetch, for status reasons.
var (
	// ErrUnreachable: no HTTP response (connection, timeout, TLS transport).
	ErrUnreachable = errors.New("endpoint unreachable")
	// ErrAuthentication: the server's certificate failed authentication.
	ErrAuthentication = errors.New("endpoint authentication failed")
	// ErrResponse: the server answered, but not with a usable document.
	ErrResponse = errors.New("unusable response")
)

// Fetcher fetches bundles over HTTPS with bounds: https only, at most
// MaxRedirects redirects and only to https (the same TLS configuration, so
// the same SPIFFE ID, applies to every hop, and the target is never
// remembered), a status 200, at most MaxBundleBytes, and a deadline.
type Fetcher struct {
	// Timeout of a whole fetch; 10s if zero.
	Timeout time.Duration
	// MaxRedirects; 3 if zero.
	MaxRedirects int
	// Clock that validity is checked against; nil means the real clock.
	Clock clock.PassiveClock
}

// Fetch GETs the endpoint's bundle and validates it with ParseSPIFFE at
// f.Clock; it returns the accepted bundle and the authorities left out of it.
// For https_spiffe, trust authenticates the server: pass the zone's latest
// authorities. Errors wrap ErrUnreachable, ErrAuthentication, ErrResponse
// or ErrInvalid.
func (f Fetcher) Fetch(ctx context.Context, endpoint Endpoint, trust x509bundle.Source) (*spiffebundle.Bundle, []Dropped, error) {
	target, err := url.Parse(endpoint.URL)
	if err == nil {
		err = checkBundleURL(target)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: endpoint URL: %v", ErrResponse, err)
	}
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	client := f.httpClient(endpoint, trust, timeout)
	defer client.CloseIdleConnections()
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrResponse, err)
	}
	request.Header.Set("Accept", "application/json")
	response, err := client.Do(request)
	if err != nil {
		return nil, nil, classifyTransportError(err)
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%w: HTTP status %d", ErrResponse, response.StatusCode)
	}
	document, err := io.ReadAll(io.LimitReader(response.Body, MaxBundleBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reading body: %v", ErrUnreachable, err)
	}
	if len(document) > MaxBundleBytes {
		return nil, nil, fmt.Errorf("%w: body larger than %d bytes", ErrResponse, MaxBundleBytes)
	}
	var now time.Time // zero: Checks uses the real time
	if f.Clock != nil {
		now = f.Clock.Now()
	}
	return ParseSPIFFE(endpoint.TrustDomain, document, Checks{Now: now})
}

func (f Fetcher) httpClient(endpoint Endpoint, trust x509bundle.Source, timeout time.Duration) *http.Client {
	var tlsConfig *tls.Config
	if endpoint.IsSPIFFE() {
		// go-spiffe verifies the chain against trust and the exact SPIFFE ID
		// in VerifyPeerCertificate, in place of Web PKI hostname checks.
		tlsConfig = tlsconfig.TLSClientConfig(trust, tlsconfig.AuthorizeID(endpoint.EndpointID))
	} else {
		tlsConfig = &tls.Config{RootCAs: endpoint.WebRoots, MinVersion: tls.VersionTLS12}
	}
	maxRedirects := f.MaxRedirects
	if maxRedirects <= 0 {
		maxRedirects = 3
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			TLSClientConfig:        tlsConfig,
			TLSHandshakeTimeout:    timeout,
			ResponseHeaderTimeout:  timeout,
			MaxResponseHeaderBytes: 64 << 10,
			DisableKeepAlives:      true,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			return checkRedirect(next, via, maxRedirects)
		},
	}
}

// checkRedirect is the redirect policy of a fetch: at most maxRedirects
// hops, each to an https URL with a host and no user information (the same
// TLS configuration, so the same authentication, applies to every hop).
func checkRedirect(next *http.Request, via []*http.Request, maxRedirects int) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: more than %d redirects", ErrResponse, maxRedirects)
	}
	if next == nil || next.URL == nil {
		return fmt.Errorf("%w: redirect without a URL", ErrResponse)
	}
	if err := checkBundleURL(next.URL); err != nil {
		return fmt.Errorf("%w: redirect to %s: %v", ErrResponse, next.URL.Redacted(), err)
	}
	return nil
}

// checkBundleURL requires an https URL with a host and no user information,
// for the endpoint and every redirect target alike.
func checkBundleURL(target *url.URL) error {
	switch {
	case target.Scheme != "https":
		return errors.New("not https")
	case target.Host == "" || target.Hostname() == "":
		return errors.New("no host")
	case target.User != nil:
		return errors.New("carries user information")
	}
	return nil
}

// classifyTransportError tells authentication failures from others.
func classifyTransportError(err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) && errors.Is(urlErr.Err, ErrResponse) {
		return urlErr.Err
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostnameError    x509.HostnameError
		invalidCert      x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostnameError), errors.As(err, &invalidCert), errors.As(err, &verification):
		return fmt.Errorf("%w: %v", ErrAuthentication, err)
	case isSPIFFEAuthError(err):
		return fmt.Errorf("%w: %v", ErrAuthentication, err)
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}
