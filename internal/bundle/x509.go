// Package bundle reads, validates and describes SPIFFE trust bundles.
package bundle

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// ErrInvalid marks a bundle that is not acceptable; the caller keeps the
// last good one.
var ErrInvalid = errors.New("invalid bundle")

// ParseX509Authorities parses PEM-encoded X.509 authorities of trustDomain,
// as SPIRE's k8sbundle notifier writes them, and checks that every one is a
// CA certificate that can sign certificates. The result is never empty.
func ParseX509Authorities(trustDomain string, pemData []byte) (*x509bundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("%w: trust domain %q: %v", ErrInvalid, trustDomain, err)
	}
	parsed, err := x509bundle.Parse(td, pemData)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	authorities := parsed.X509Authorities()
	if len(authorities) == 0 {
		return nil, fmt.Errorf("%w: no X.509 authority", ErrInvalid)
	}
	for _, cert := range authorities {
		if err := checkAuthority(cert); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return parsed, nil
}

func checkAuthority(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q (sha256 %s) is not a CA certificate", cert.Subject, Fingerprint(cert))
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q (sha256 %s) may not sign certificates", cert.Subject, Fingerprint(cert))
	}
	return nil
}

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER encoding.
func Fingerprint(cert *x509.Certificate) string { return FingerprintDER(cert.Raw) }

// FingerprintDER is the lowercase hex SHA-256 of a DER certificate.
func FingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// DescribeX509Authorities summarises certificates for status, sorted by
// fingerprint so that equal sets describe equally.
func DescribeX509Authorities(certs []*x509.Certificate) []spirefedv1alpha1.X509Authority {
	described := make([]spirefedv1alpha1.X509Authority, 0, len(certs))
	for _, cert := range certs {
		described = append(described, spirefedv1alpha1.X509Authority{
			SHA256Fingerprint: Fingerprint(cert),
			Subject:           cert.Subject.String(),
			NotAfter:          metav1.NewTime(cert.NotAfter.UTC()),
		})
	}
	slices.SortFunc(described, func(a, b spirefedv1alpha1.X509Authority) int {
		return strings.Compare(a.SHA256Fingerprint, b.SHA256Fingerprint)
	})
	return described
}
