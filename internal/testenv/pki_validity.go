package testenv

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"
)

// NewSPIFFECAValid creates a CA for a trust domain, as NewSPIFFECA does,
// whose certificate is valid from notBefore to notAfter: an expired
// authority, one SPIRE has prepared but not yet activated, or one whose
// validity starts later. An empty trustDomain gives a CA without URI SAN.
func NewSPIFFECAValid(trustDomain string, notBefore, notAfter time.Time) (*CA, error) {
	var (
		ca  *CA
		err error
	)
	if trustDomain == "" {
		ca, err = NewCA("CA without SPIFFE ID")
	} else {
		ca, err = NewSPIFFECA(trustDomain)
	}
	if err != nil {
		return nil, err
	}
	// Re-sign the same certificate with the key, with the validity changed.
	template := *ca.Cert
	template.NotBefore, template.NotAfter = notBefore, notAfter
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &ca.Key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("re-signing CA certificate valid from %s to %s: %w", notBefore, notAfter, err)
	}
	if ca.Cert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	return ca, nil
}
