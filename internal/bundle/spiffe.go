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
	"unicode"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxBundleBytes bounds a bundle document, from the network or elsewhere.
const MaxBundleBytes = 1 << 20

// privateJWKMembers are JWK members that only private or symmetric keys
// carry; they are compared folded (see foldName).
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// Key uses of SPIFFE bundle JWKs that name their key by key ID.
const (
	jwtSVIDUse = "jwt-svid"
	witSVIDUse = "wit-svid"
)

// ParseSPIFFE parses and validates a SPIFFE bundle document of trustDomain:
//   - at most MaxBundleBytes, JSON without duplicate object members at any
//     level, names compared as encoding/json matches them (case-folded);
//   - at most MaxX509Authorities+MaxJWTAuthorities keys; no JWK holds
//     private or symmetric key material; a jwt-svid or wit-svid key has a
//     non-empty key ID that no other key of its use repeats;
//   - it parses with go-spiffe (an unknown key type fails the whole
//     document, so the caller keeps its last good bundle);
//   - every X.509 authority passes the checks of every source of a zone's
//     authorities (see checkX509Authorities): a CA that may sign
//     certificates, URI SANs naming trustDomain, at most
//     MaxX509Authorities; one outside its validity is dropped and reported;
//   - at most MaxJWTAuthorities JWT (and WIT) authorities, public keys only;
//   - something valid remains: a bundle without a valid X.509 authority and
//     without a JWT or WIT authority is refused (an empty bundle would
//     revoke every key of the zone; the operator does not let an endpoint
//     do that).
//
// The bundle returned holds the kept authorities, with the document's
// sequence number and refresh hint. Errors wrap ErrInvalid.
func ParseSPIFFE(trustDomain spiffeid.TrustDomain, document []byte, checks Checks) (*spiffebundle.Bundle, []Dropped, error) {
	if trustDomain.IsZero() {
		return nil, nil, fmt.Errorf("%w: no trust domain", ErrInvalid)
	}
	if len(document) > MaxBundleBytes {
		return nil, nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxBundleBytes)
	}
	if err := checkNoDuplicateMembers(document); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkJWKs(document); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	parsed, err := spiffebundle.Parse(trustDomain, document)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	normalizeRefreshHint(document, parsed)
	if parsed.Empty() {
		return nil, nil, fmt.Errorf("%w: the bundle has no authority", ErrInvalid)
	}
	kept, dropped, err := checkX509Authorities(trustDomain, parsed.X509Authorities(), checks)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkKeyAuthorities("JWT", parsed.JWTAuthorities()); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := checkKeyAuthorities("WIT", parsed.WITAuthorities()); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(kept) == 0 && len(parsed.JWTAuthorities()) == 0 && len(parsed.WITAuthorities()) == 0 {
		return nil, nil, fmt.Errorf("%w: no valid X.509 authority and no JWT authority: %s", ErrInvalid, describeDropped(dropped))
	}
	accepted := spiffebundle.New(trustDomain)
	accepted.SetX509Authorities(kept)
	accepted.SetJWTAuthorities(parsed.JWTAuthorities())
	accepted.SetWITAuthorities(parsed.WITAuthorities())
	if sequence, ok := parsed.SequenceNumber(); ok {
		accepted.SetSequenceNumber(sequence)
	}
	if hint, ok := parsed.RefreshHint(); ok {
		accepted.SetRefreshHint(hint)
	}
	return accepted, dropped, nil
}

// checkNoDuplicateMembers walks the JSON tokens and refuses an object that
// names a member twice: parsers disagree on which one wins. Names are
// compared folded, as encoding/json matches them to fields ("keys",
// "KEYS" and "keyſ" are one member to go-spiffe).
func checkNoDuplicateMembers(document []byte) error {
	decoder := json.NewDecoder(bytes.NewReader(document))
	decoder.UseNumber()
	type frame struct {
		object    bool
		expectKey bool
		seen      map[string]string
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
				stack = append(stack, &frame{object: value == '{', expectKey: value == '{', seen: map[string]string{}})
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.expectKey {
				folded := foldName(value)
				if first, ok := top.seen[folded]; ok {
					return fmt.Errorf("member %q appears twice in one object (as %q and %q)", value, first, value)
				}
				top.seen[folded] = value
				top.expectKey = false
				continue
			}
		}
		if top != nil && top.object {
			top.expectKey = true
		}
	}
}

// foldName maps a member name to the same string as every name that
// encoding/json would match to it: each rune becomes the smallest rune of
// its Unicode simple-folding orbit (the equivalence strings.EqualFold uses).
func foldName(name string) string {
	var folded strings.Builder
	folded.Grow(len(name))
	for _, r := range name {
		smallest := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			smallest = min(smallest, f)
		}
		folded.WriteRune(smallest)
	}
	return folded.String()
}

// checkJWKs looks at the raw JWK set before go-spiffe does: a bounded
// number of keys, none carrying private or symmetric key material (member
// names compared folded), and for jwt-svid and wit-svid keys a non-empty
// key ID that no other key of that use repeats (go-spiffe would keep the
// last one silently).
func checkJWKs(document []byte) error {
	var raw struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(document, &raw); err != nil {
		return fmt.Errorf("not a JWK set: %v", err)
	}
	if limit := MaxX509Authorities + MaxJWTAuthorities; len(raw.Keys) > limit {
		return fmt.Errorf("%d keys, more than %d", len(raw.Keys), limit)
	}
	keyIDs := map[string]bool{}
	for i, key := range raw.Keys {
		for member := range key {
			for _, private := range privateJWKMembers {
				if foldName(member) == foldName(private) {
					return fmt.Errorf("key %d carries private key material (member %q)", i, member)
				}
			}
		}
		var use, keyID string
		_ = json.Unmarshal(key["use"], &use) // go-spiffe reports a use or kid of the wrong type
		if use != jwtSVIDUse && use != witSVIDUse {
			continue
		}
		if _, ok := key["kid"]; ok {
			_ = json.Unmarshal(key["kid"], &keyID)
		}
		if keyID == "" {
			return fmt.Errorf("%s key %d has no key ID", use, i)
		}
		if keyIDs[use+"/"+keyID] {
			return fmt.Errorf("%s key ID %q appears twice", use, keyID)
		}
		keyIDs[use+"/"+keyID] = true
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
