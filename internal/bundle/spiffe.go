package bundle

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxBundleBytes bounds a bundle document, from the network or elsewhere.
const MaxBundleBytes = 1 << 20

// privateJWKMembers are JWK members that only private or symmetric keys carry.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// ParseSPIFFE parses and validates a SPIFFE bundle document of trustDomain:
//   - at most MaxBundleBytes, JSON without duplicate object members;
//   - no JWK holds private or symmetric key material;
//   - it parses with go-spiffe (an unknown key type fails the whole
//     document, so the caller keeps its last good bundle);
//   - it is not empty (an empty bundle would revoke every key of the zone;
//     the operator does not let an endpoint do that);
//   - every X.509 authority is a CA certificate that may sign certificates
//     and, when it names a SPIFFE ID, names trustDomain.
func ParseSPIFFE(trustDomain spiffeid.TrustDomain, document []byte) (*spiffebundle.Bundle, error) {
	if len(document) > MaxBundleBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxBundleBytes)
	}
	if err := checkNoDuplicateMembers(document); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkNoPrivateKeys(document); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	parsed, err := spiffebundle.Parse(trustDomain, document)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	normalizeRefreshHint(document, parsed)
	if parsed.Empty() {
		return nil, fmt.Errorf("%w: the bundle has no authority", ErrInvalid)
	}
	for _, cert := range parsed.X509Authorities() {
		if err := checkAuthority(cert); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if err := checkAuthorityTrustDomain(cert, trustDomain); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	return parsed, nil
}

func checkAuthorityTrustDomain(cert *x509.Certificate, trustDomain spiffeid.TrustDomain) error {
	for _, uri := range cert.URIs {
		if uri.Scheme != "spiffe" {
			continue
		}
		if uri.Host != trustDomain.Name() {
			return fmt.Errorf("certificate %q (sha256 %s) names %s, not trust domain %s", cert.Subject, Fingerprint(cert), uri, trustDomain.Name())
		}
	}
	return nil
}

// checkNoDuplicateMembers walks the JSON tokens and refuses an object that
// names a member twice: parsers disagree on which one wins.
func checkNoDuplicateMembers(document []byte) error {
	decoder := json.NewDecoder(bytes.NewReader(document))
	decoder.UseNumber()
	type frame struct {
		object    bool
		expectKey bool
		seen      map[string]bool
	}
	var stack []*frame
	for {
		token, err := decoder.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("not JSON: %v", err)
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch value := token.(type) {
		case json.Delim:
			switch value {
			case '{', '[':
				if top != nil && top.object {
					top.expectKey = true
				}
				stack = append(stack, &frame{object: value == '{', expectKey: value == '{', seen: map[string]bool{}})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.expectKey {
				if top.seen[value] {
					return fmt.Errorf("member %q appears twice in one object", value)
				}
				top.seen[value] = true
				top.expectKey = false
				continue
			}
		}
		if top != nil && top.object {
			top.expectKey = true
		}
	}
}

// checkNoPrivateKeys refuses JWKs carrying private or symmetric key material.
func checkNoPrivateKeys(document []byte) error {
	var raw struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(document, &raw); err != nil {
		return fmt.Errorf("not a JWK set: %v", err)
	}
	for i, key := range raw.Keys {
		for _, member := range privateJWKMembers {
			if _, ok := key[member]; ok {
				return fmt.Errorf("key %d carries private key material (member %q)", i, member)
			}
		}
	}
	return nil
}

// Canonical marshals a bundle deterministically: keys sorted, members in
// lexical order. go-spiffe's Marshal is not stable across calls, so bundles
// are compared and stored in this form.
func Canonical(b *spiffebundle.Bundle) ([]byte, error) {
	marshalled, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshalling bundle of %s: %w", b.TrustDomain(), err)
	}
	var document map[string]any
	if err := json.Unmarshal(marshalled, &document); err != nil {
		return nil, fmt.Errorf("re-reading bundle of %s: %w", b.TrustDomain(), err)
	}
	keys, _ := document["keys"].([]any)
	encodedKeys := make([]string, 0, len(keys))
	for _, key := range keys {
		encoded, err := json.Marshal(key) // maps marshal with sorted members
		if err != nil {
			return nil, err
		}
		encodedKeys = append(encodedKeys, string(encoded))
	}
	slices.Sort(encodedKeys)
	sortedKeys := make([]json.RawMessage, 0, len(encodedKeys))
	for _, encoded := range encodedKeys {
		sortedKeys = append(sortedKeys, json.RawMessage(encoded))
	}
	document["keys"] = sortedKeys
	return json.Marshal(document)
}

// Digest is the lowercase hex SHA-256 of a canonical bundle.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// JWTKeyIDs lists the key IDs of a bundle's JWT authorities, sorted.
func JWTKeyIDs(b *spiffebundle.Bundle) []string {
	ids := make([]string, 0, len(b.JWTAuthorities()))
	for id := range b.JWTAuthorities() {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// ClampRefreshHint bounds a bundle's refresh hint; fallback is used when the
// bundle has none.
func ClampRefreshHint(b *spiffebundle.Bundle, fallback, minimum, maximum time.Duration) time.Duration {
	hint, ok := b.RefreshHint()
	if !ok || hint <= 0 {
		hint = fallback
	}
	return min(max(hint, minimum), maximum)
}

// FromX509 is a bundle holding only X.509 authorities, as read from a
// bootstrap ConfigMap.
func FromX509(trustDomain spiffeid.TrustDomain, authorities []*x509.Certificate) *spiffebundle.Bundle {
	return spiffebundle.FromX509Authorities(trustDomain, authorities)
}

// SameAuthorities says whether two bundles hold the same X.509 and JWT
// authorities, whatever their order, sequence or hint.
func SameAuthorities(a, b *spiffebundle.Bundle) bool {
	fingerprints := func(b *spiffebundle.Bundle) string {
		var parts []string
		for _, cert := range b.X509Authorities() {
			parts = append(parts, Fingerprint(cert))
		}
		slices.Sort(parts)
		return strings.Join(parts, ",") + "|" + strings.Join(JWTKeyIDs(b), ",")
	}
	return fingerprints(a) == fingerprints(b)
}
