package bundle

import (
	"fmt"
	"math"
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

// CheckSequence refuses an endpoint bundle whose sequence goes back from
// the sequence accepted from the endpoint before.
func CheckSequence(current *spirefedv1alpha1.BundleStatus, fetched *spiffebundle.Bundle) *Rejection {
	if current == nil || current.Source != spirefedv1alpha1.BundleSourceEndpoint || current.Sequence == nil {
		return nil
	}
	if sequence, ok := fetched.SequenceNumber(); ok && sequence < uint64(*current.Sequence) {
		return &Rejection{Reason: spirefedv1alpha1.ReasonSequenceRegressed,
			Message: fmt.Sprintf("The endpoint served sequence %d, lower than the accepted %d; the accepted bundle is kept", sequence, *current.Sequence)}
	}
	return nil
}

// Describe builds the status of an accepted bundle: canonical SPIFFE JSON,
// digest, sequence, hint and authorities. The last change time carries
// over from current when the content and source are the same.
func Describe(accepted *spiffebundle.Bundle, source spirefedv1alpha1.BundleSource, current *spirefedv1alpha1.BundleStatus, now time.Time) (*spirefedv1alpha1.BundleStatus, error) {
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
