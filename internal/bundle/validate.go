package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Bounds and allowances of validation, whatever the source of a zone's
// authorities (its bundle endpoint or its bootstrap ConfigMap).
const (
	// ClockSkew is how far ahead of the operator's clock an authority's
	// NotBefore may lie and the authority still be kept: the zone's clock
	// may run ahead of the operator's. SPIRE publishes a prepared authority
	// with NotBefore about now, so it is kept and reaches peers before
	// SPIRE activates it.
	ClockSkew = 5 * time.Minute
	// MaxX509Authorities bounds the X.509 authorities of one bundle.
	MaxX509Authorities = 64
	// MaxJWTAuthorities bounds the JWT authorities of one bundle (and,
	// separately, its WIT authorities).
	MaxJWTAuthorities = 64
	// MaxTrustDomainLength is the longest trust domain name admitted.
	MaxTrustDomainLength = 255
)

// Checks are the time-dependent rules of validation.
type Checks struct {
	Now       time.Time     // zero means time.Now()
	ClockSkew time.Duration // zero means ClockSkew
}

func (c Checks) now() time.Time {
	if c.Now.IsZero() {
		return time.Now()
	}
	return c.Now
}

func (c Checks) skew() time.Duration {
	if c.ClockSkew == 0 {
		return ClockSkew
	}
	return c.ClockSkew
}

// Dropped is an authority left out of an accepted bundle, and why.
type Dropped struct {
	SHA256Fingerprint string
	Subject           string
	Reason            string // e.g. "expired at 2026-01-02T03:04:05Z", "not valid before ..."
}

// checkX509Authorities is the one validation path of a zone's X.509
// authorities, from any source. It refuses (an error, the whole bundle
// rejected) more than MaxX509Authorities, a certificate that is not a CA
// allowed to sign certificates, and a URI SAN that does not name
// trustDomain: such a source is wrong or hostile, not stale. It drops
// (reported, the rest kept) an authority outside its validity window:
// expired, or NotBefore further ahead than the skew allowance. The caller
// decides whether what is kept is enough.
func checkX509Authorities(trustDomain spiffeid.TrustDomain, certs []*x509.Certificate, checks Checks) ([]*x509.Certificate, []Dropped, error) {
	if len(certs) > MaxX509Authorities {
		return nil, nil, fmt.Errorf("%d X.509 authorities, more than %d", len(certs), MaxX509Authorities)
	}
	now, skew := checks.now(), checks.skew()
	kept := make([]*x509.Certificate, 0, len(certs))
	var dropped []Dropped
	for _, cert := range certs {
		if err := checkAuthority(cert); err != nil {
			return nil, nil, err
		}
		if err := checkAuthorityTrustDomain(cert, trustDomain); err != nil {
			return nil, nil, err
		}
		if reason := outsideValidity(cert, now, skew); reason != "" {
			dropped = append(dropped, Dropped{SHA256Fingerprint: Fingerprint(cert), Subject: cert.Subject.String(), Reason: reason})
			continue
		}
		kept = append(kept, cert)
	}
	return kept, dropped, nil
}

// outsideValidity says why cert is not valid at now, or "" when it is.
func outsideValidity(cert *x509.Certificate, now time.Time, skew time.Duration) string {
	switch {
	case now.After(cert.NotAfter):
		return "expired at " + cert.NotAfter.UTC().Format(time.RFC3339)
	case cert.NotBefore.After(now.Add(skew)):
		return fmt.Sprintf("not valid before %s, beyond the %s clock-skew allowance", cert.NotBefore.UTC().Format(time.RFC3339), skew)
	}
	return ""
}

func checkAuthority(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q (sha256 %s) is not a CA certificate", cert.Subject, Fingerprint(cert))
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q (sha256 %s) may not sign certificates", cert.Subject, Fingerprint(cert))
	}
	// crypto/x509 parses a certificate whose key algorithm it does not
	// know, leaving PublicKey nil: such an authority can verify nothing
	// and cannot be written back as a JWK.
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Errorf("certificate %q (sha256 %s) has no supported public key (ECDSA, RSA or Ed25519)", cert.Subject, Fingerprint(cert))
	}
	return nil
}

// checkAuthorityTrustDomain requires every URI SAN of an authority, when it
// has any, to be a SPIFFE ID of trustDomain.
func checkAuthorityTrustDomain(cert *x509.Certificate, trustDomain spiffeid.TrustDomain) error {
	for _, uri := range cert.URIs {
		named, err := spiffeid.TrustDomainFromURI(uri)
		if err != nil || named != trustDomain {
			return fmt.Errorf("certificate %q (sha256 %s) names %s, not trust domain %s", cert.Subject, Fingerprint(cert), uri.Redacted(), trustDomain.Name())
		}
	}
	return nil
}

// checkKeyAuthorities checks JWT (or WIT) authorities: at most
// MaxJWTAuthorities, each with a key ID and a public key.
func checkKeyAuthorities(kind string, authorities map[string]crypto.PublicKey) error {
	if len(authorities) > MaxJWTAuthorities {
		return fmt.Errorf("%d %s authorities, more than %d", len(authorities), kind, MaxJWTAuthorities)
	}
	for keyID, key := range authorities {
		if keyID == "" {
			return fmt.Errorf("a %s authority has an empty key ID", kind)
		}
		switch key.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			return fmt.Errorf("%s authority %q is a %T, not a public key", kind, keyID, key)
		}
	}
	return nil
}

// ValidTrustDomain checks a trust domain name as admission does (the CRD
// pattern of spec.trustDomain): 1 to 255 characters among lowercase
// letters, digits, '.', '-' and '_', in labels separated by single dots (no
// empty label: no leading or trailing dot, no "..").
func ValidTrustDomain(name string) error {
	switch {
	case name == "":
		return errors.New("the trust domain is empty")
	case len(name) > MaxTrustDomainLength:
		return fmt.Errorf("the trust domain has %d characters, more than %d", len(name), MaxTrustDomainLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: character %q is not a lowercase letter, digit, '.', '-' or '_'", name, c)
		}
	}
	if strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Errorf("trust domain %q has an empty label", name)
	}
	return nil
}

// trustDomainOf validates name and returns it as a go-spiffe trust domain.
func trustDomainOf(name string) (spiffeid.TrustDomain, error) {
	if err := ValidTrustDomain(name); err != nil {
		return spiffeid.TrustDomain{}, err
	}
	return spiffeid.TrustDomainFromString(name)
}

// describeDropped lists dropped authorities for an error message.
func describeDropped(dropped []Dropped) string {
	parts := make([]string, 0, len(dropped))
	for _, d := range dropped {
		parts = append(parts, fmt.Sprintf("%q (sha256 %s) %s", d.Subject, d.SHA256Fingerprint, d.Reason))
	}
	return strings.Join(parts, "; ")
}
