package bundle

import "strings"

// isSPIFFEAuthError recognises go-spiffe's peer verification failures,
// which it returns as plain errors prefixed with the package name.
func isSPIFFEAuthError(err error) bool {
	message := err.Error()
	return strings.Contains(message, "x509svid:") || strings.Contains(message, "unexpected ID") || strings.Contains(message, "tlsconfig:")
}
