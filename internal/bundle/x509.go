// Package bundle reads, validates and describes SPIFFE trust bundles.
package bundle

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// ErrInvalid marks a bundle that is not acceptable; the caller keeps the
// last good one.
var ErrInvalid = errors.New("invalid bundle")

// ParseX509Authorities parses PEM-encoded X.509 authorities of trustDomain,
// as SPIRE's k8sbundle notifier writes them into the bootstrap ConfigMap,
// and validates them as every source of a zone's authorities is validated
// (see checkX509Authorities): at most MaxBundleBytes and
// MaxX509Authorities certificates, only CERTIFICATE blocks (a private key
// block fails the whole ConfigMap), each a CA that may sign certificates
// and whose URI SANs, if any, name trustDomain. Authorities outside their
// validity (allowing checks.ClockSkew ahead) are dropped and reported; the
// result holds at least one valid authority or is an error wrapping
// ErrInvalid.
func ParseX509Authorities(trustDomain string, pemData []byte, checks Checks) (*x509bundle.Bundle, []Dropped, error) {
	td, err := trustDomainOf(trustDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	certs, err := parsePEMCertificates(pemData)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: bootstrap authorities of %s: %v", ErrInvalid, td.Name(), err)
	}
	kept, dropped, err := checkX509Authorities(td, certs, checks)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: bootstrap authorities of %s: %v", ErrInvalid, td.Name(), err)
	}
	if len(kept) == 0 {
		return nil, nil, fmt.Errorf("%w: bootstrap authorities of %s: no valid X.509 authority: %s", ErrInvalid, td.Name(), describeDropped(dropped))
	}
	return x509bundle.FromX509Authorities(td, kept), dropped, nil
}

// parsePEMCertificates reads the CERTIFICATE blocks of pemData, refusing
// any other block type (private keys above all) and more than
// MaxX509Authorities blocks. Text around blocks is ignored, as PEM allows.
// Repeated certificates count once.
func parsePEMCertificates(pemData []byte) ([]*x509.Certificate, error) {
	if len(pemData) > MaxBundleBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxBundleBytes)
	}
	var certs []*x509.Certificate
	seen := map[string]bool{}
	for blocks, rest := 0, pemData; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks++
		switch {
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("PEM block %d is a private key (%s); a bundle holds certificates only", blocks, block.Type)
		case block.Type != "CERTIFICATE":
			return nil, fmt.Errorf("PEM block %d is a %q, not a CERTIFICATE", blocks, block.Type)
		case blocks > MaxX509Authorities:
			return nil, fmt.Errorf("more than %d certificates", MaxX509Authorities)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: cannot parse certificate: %v", blocks, err)
		}
		if fingerprint := Fingerprint(cert); !seen[fingerprint] {
			seen[fingerprint] = true
			certs = append(certs, cert)
		}
	}
	if len(certs) == 0 {
		return nil, errors.New("no X.509 authority (no CERTIFICATE PEM block)")
	}
	return certs, nil
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
