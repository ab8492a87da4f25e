package bundle

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Rejection says why a validated bundle is not accepted as a zone's
// latest. Reason is a BundleFetched reason of the API.
type Rejection struct {
	Reason  string
	Message string
}

func (r *Rejection) Error() string { return r.Message }

// CheckSequence applies the sequence rules to an endpoint bundle, against
// the bundle accepted from the endpoint before. Once a zone has published a
// sequence: a bundle without one is refused, a lower sequence is refused,
// and the same sequence is refused when it brings an authority the
// accepted bundle does not hold (authorities may only drop out, as they
// expire, without a new sequence). reset (the zone's reset annotation)
// accepts any sequence once.
func CheckSequence(current *spirefedv1alpha1.BundleStatus, fetched *spiffebundle.Bundle, reset bool) *Rejection {
	if reset || current == nil || current.Source != spirefedv1alpha1.BundleSourceEndpoint || current.Sequence == nil {
		return nil
	}
	accepted := *current.Sequence
	sequence, ok := fetched.SequenceNumber()
	switch {
	case !ok:
		return &Rejection{Reason: spirefedv1alpha1.ReasonSequenceMissing,
			Message: fmt.Sprintf("The endpoint served a bundle without a sequence after sequence %d; the accepted bundle is kept", accepted)}
	case sequence > math.MaxInt64:
		return nil // Describe refuses it: status cannot hold it
	case int64(sequence) < accepted:
		return &Rejection{Reason: spirefedv1alpha1.ReasonSequenceRegressed,
			Message: fmt.Sprintf("The endpoint served sequence %d, lower than the accepted %d; the accepted bundle is kept", sequence, accepted)}
	case int64(sequence) == accepted:
		if added := newAuthorities(current, fetched); len(added) > 0 {
			return &Rejection{Reason: spirefedv1alpha1.ReasonSequenceReused,
				Message: fmt.Sprintf("The endpoint served sequence %d again with authorities the accepted bundle does not hold (%s); the accepted bundle is kept", sequence, strings.Join(added, ", "))}
		}
	}
	return nil
}

// newAuthorities lists the authorities of fetched (X.509 fingerprints
// shortened, JWT key IDs) that current does not hold.
func newAuthorities(current *spirefedv1alpha1.BundleStatus, fetched *spiffebundle.Bundle) []string {
	held := map[string]bool{}
	for _, authority := range current.X509Authorities {
		held[authority.SHA256Fingerprint] = true
	}
	for _, keyID := range current.JWTAuthorityKeyIDs {
		held["jwt:"+keyID] = true
	}
	var added []string
	for _, cert := range fetched.X509Authorities() {
		if fingerprint := Fingerprint(cert); !held[fingerprint] {
			added = append(added, "x509 "+fingerprint[:12])
		}
	}
	for _, keyID := range JWTKeyIDs(fetched) {
		if !held["jwt:"+keyID] {
			added = append(added, "jwt "+keyID)
		}
	}
	return added
}

// NewlyDropped lists the dropped authorities of next that current did not
// drop already: what deserves a warning now.
func NewlyDropped(current, next *spirefedv1alpha1.BundleStatus) []spirefedv1alpha1.DroppedAuthority {
	known := map[string]bool{}
	if current != nil {
		for _, authority := range current.DroppedX509Authorities {
			known[authority.SHA256Fingerprint] = true
		}
	}
	var fresh []spirefedv1alpha1.DroppedAuthority
	for _, authority := range next.DroppedX509Authorities {
		if !known[authority.SHA256Fingerprint] {
			fresh = append(fresh, authority)
		}
	}
	return fresh
}

// Describe builds the status of an accepted bundle: canonical SPIFFE JSON,
// digest, sequence, hint and authorities. The last change time carries
// over from current when the content and source are the same.
func Describe(accepted *spiffebundle.Bundle, dropped []Dropped, source spirefedv1alpha1.BundleSource, current *spirefedv1alpha1.BundleStatus, now time.Time) (*spirefedv1alpha1.BundleStatus, error) {
	canonical, err := Canonical(accepted)
	if err != nil {
		return nil, err
	}
	next := &spirefedv1alpha1.BundleStatus{
		Source:             source,
		SPIFFEBundle:       string(canonical),
		Digest:             Digest(canonical),
		X509Authorities:    DescribeX509Authorities(accepted.X509Authorities()),
		JWTAuthorityKeyIDs: JWTKeyIDs(accepted),
	}
	for _, authority := range dropped {
		next.DroppedX509Authorities = append(next.DroppedX509Authorities, spirefedv1alpha1.DroppedAuthority{
			SHA256Fingerprint: authority.SHA256Fingerprint, Subject: authority.Subject, Reason: authority.Reason})
	}
	slices.SortFunc(next.DroppedX509Authorities, func(a, b spirefedv1alpha1.DroppedAuthority) int {
		return strings.Compare(a.SHA256Fingerprint, b.SHA256Fingerprint)
	})
	if sequence, ok := accepted.SequenceNumber(); ok {
		if sequence > math.MaxInt64 {
			return nil, fmt.Errorf("bundle sequence %d is out of range", sequence)
		}
		value := int64(sequence)
		next.Sequence = &value
	}
	if hint, ok := accepted.RefreshHint(); ok {
		next.RefreshHint = &metav1.Duration{Duration: hint}
	}
	if current != nil && current.Digest == next.Digest && current.Source == next.Source {
		next.LastChangeTime = current.LastChangeTime
	} else {
		changed := metav1.NewTime(now)
		next.LastChangeTime = &changed
	}
	return next, nil
}

// MaxRefreshHint bounds the refresh hint kept from a bundle document. A
// larger hint (up to the overflow of time.Duration, which go-spiffe does
// not guard against) is stored as MaxRefreshHint; the fetch schedule then
// clamps it further to the operator's bounds.
const MaxRefreshHint = 365 * 24 * time.Hour

// normalizeRefreshHint replaces the refresh hint that go-spiffe parsed from
// document with one read from the document itself, bounded: a hint past
// MaxRefreshHint (or past time.Duration's range) becomes MaxRefreshHint,
// and a negative or zero one is dropped.
func normalizeRefreshHint(document []byte, parsed *spiffebundle.Bundle) {
	var raw struct {
		RefreshHint *json.Number `json:"spiffe_refresh_hint"`
	}
	if err := json.Unmarshal(document, &raw); err != nil || raw.RefreshHint == nil {
		return
	}
	seconds, ok := new(big.Int).SetString(raw.RefreshHint.String(), 10)
	switch {
	case !ok || seconds.Sign() <= 0:
		parsed.ClearRefreshHint()
	case seconds.Cmp(big.NewInt(int64(MaxRefreshHint/time.Second))) > 0:
		parsed.SetRefreshHint(MaxRefreshHint)
	default:
		parsed.SetRefreshHint(time.Duration(seconds.Int64()) * time.Second)
	}
}
