package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
)

// FetchSchedule bounds how often bundle endpoints are fetched.
type FetchSchedule struct {
	// DefaultInterval applies when neither the bundle nor the zone gives a
	// refresh hint; 5m (SPIRE's default) if zero.
	DefaultInterval time.Duration
	// MinInterval and MaxInterval clamp the refresh hint; 30s and 1h if zero.
	MinInterval time.Duration
	MaxInterval time.Duration
	// RetryInterval after a failed fetch, at most the refresh interval; 30s if zero.
	RetryInterval time.Duration
}

func (s FetchSchedule) withDefaults() FetchSchedule {
	if s.DefaultInterval <= 0 {
		s.DefaultInterval = 5 * time.Minute
	}
	if s.MinInterval <= 0 {
		s.MinInterval = 30 * time.Second
	}
	if s.MaxInterval <= 0 {
		s.MaxInterval = time.Hour
	}
	if s.RetryInterval <= 0 {
		s.RetryInterval = 30 * time.Second
	}
	return s
}

// reconcileFetch fetches the zone's bundle from its endpoint, authenticated
// by the zone's latest authorities, and accepts it when it is valid and its
// sequence does not go back. It returns when to fetch next.
func (r *ZoneTrustDomainReconciler) reconcileFetch(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, bootstrapAuthorities []*x509.Certificate) (time.Duration, error) {
	schedule := r.FetchSchedule.withDefaults()
	fallback := schedule.DefaultInterval
	if hint := zone.Spec.BundleEndpoint.RefreshHint; hint != nil && hint.Duration > 0 {
		fallback = hint.Duration
	}
	interval := min(max(fallback, schedule.MinInterval), schedule.MaxInterval)
	if current := zone.Status.Bundle; current != nil && current.Source == spirefedv1alpha1.BundleSourceEndpoint && current.RefreshHint != nil {
		interval = min(max(current.RefreshHint.Duration, schedule.MinInterval), schedule.MaxInterval)
	}
	retry := min(interval, schedule.RetryInterval)

	endpoint, err := endpointOf(zone)
	if err != nil {
		r.setFetched(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonBadResponse, err.Error())
		return retry, nil
	}
	trust, err := r.trustSource(zone, endpoint.TrustDomain, bootstrapAuthorities)
	if err != nil {
		return 0, err
	}
	if endpoint.IsSPIFFE() && len(trust.X509Authorities()) == 0 {
		r.setFetched(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonWaitingForBootstrap,
			"The https_spiffe endpoint can be authenticated once the zone's bootstrap authorities are read")
		return retry, nil
	}

	fetched, _, err := r.Fetcher.Fetch(ctx, endpoint, trust)
	if err != nil {
		reason := fetchFailureReason(err)
		r.setFetched(zone, metav1.ConditionFalse, reason, fmt.Sprintf("Fetching %s: %v; peers keep the last good bundle", endpoint.URL, err))
		ctrl.LoggerFrom(ctx).V(1).Info("Bundle fetch failed", "url", endpoint.URL, "reason", reason)
		return jitter(retry), nil
	}
	if current := zone.Status.Bundle; current != nil && current.Source == spirefedv1alpha1.BundleSourceEndpoint && current.Sequence != nil {
		if sequence, ok := fetched.SequenceNumber(); ok && sequence < uint64(*current.Sequence) {
			r.setFetched(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonSequenceRegressed,
				fmt.Sprintf("The endpoint served sequence %d, lower than the accepted %d; the accepted bundle is kept", sequence, *current.Sequence))
			return jitter(retry), nil
		}
	}
	if err := r.acceptBundle(zone, fetched, spirefedv1alpha1.BundleSourceEndpoint); err != nil {
		r.setFetched(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleRejected, err.Error())
		return jitter(retry), nil
	}
	r.setFetched(zone, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched,
		fmt.Sprintf("Fetched bundle %s from %s", zone.Status.Bundle.Digest[:12], endpoint.URL))
	return jitter(bundle.ClampRefreshHint(fetched, interval, schedule.MinInterval, schedule.MaxInterval)), nil
}

func (r *ZoneTrustDomainReconciler) setFetched(zone *spirefedv1alpha1.ZoneTrustDomain, status metav1.ConditionStatus, reason, message string) {
	setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.BundleFetchedCondition, status, reason, message)
	zone.Status.LastFetch = &spirefedv1alpha1.FetchStatus{Time: metav1.NewTime(r.now()), Result: reason}
}

// acceptBundle records a validated bundle as the zone's latest.
func (r *ZoneTrustDomainReconciler) acceptBundle(zone *spirefedv1alpha1.ZoneTrustDomain, accepted *spiffebundle.Bundle, source spirefedv1alpha1.BundleSource) error {
	canonical, err := bundle.Canonical(accepted)
	if err != nil {
		return err
	}
	next := &spirefedv1alpha1.BundleStatus{
		Source:             source,
		SPIFFEBundle:       string(canonical),
		Digest:             bundle.Digest(canonical),
		X509Authorities:    bundle.DescribeX509Authorities(accepted.X509Authorities()),
		JWTAuthorityKeyIDs: bundle.JWTKeyIDs(accepted),
	}
	if sequence, ok := accepted.SequenceNumber(); ok {
		if sequence > math.MaxInt64 {
			return fmt.Errorf("bundle sequence %d is out of range", sequence)
		}
		value := int64(sequence)
		next.Sequence = &value
	}
	if hint, ok := accepted.RefreshHint(); ok {
		next.RefreshHint = &metav1.Duration{Duration: hint}
	}
	if current := zone.Status.Bundle; current != nil && current.Digest == next.Digest && current.Source == next.Source {
		next.LastChangeTime = current.LastChangeTime
	} else {
		now := metav1.NewTime(r.now())
		next.LastChangeTime = &now
	}
	zone.Status.Bundle = next
	return nil
}

// trustSource authenticates an https_spiffe endpoint: the bootstrap
// authorities just read plus those of the latest accepted bundle, both
// obtained through authenticated channels.
func (r *ZoneTrustDomainReconciler) trustSource(zone *spirefedv1alpha1.ZoneTrustDomain, trustDomain spiffeid.TrustDomain, bootstrapAuthorities []*x509.Certificate) (*x509bundle.Bundle, error) {
	trust := x509bundle.New(trustDomain)
	for _, cert := range bootstrapAuthorities {
		trust.AddX509Authority(cert)
	}
	if current := zone.Status.Bundle; current != nil {
		accepted, err := spiffebundle.Parse(trustDomain, []byte(current.SPIFFEBundle))
		if err != nil {
			return nil, fmt.Errorf("reading the accepted bundle of zone %s from status: %w", zone.Name, err)
		}
		for _, cert := range accepted.X509Authorities() {
			trust.AddX509Authority(cert)
		}
	}
	return trust, nil
}

// endpointOf builds the endpoint of a zone from its spec.
func endpointOf(zone *spirefedv1alpha1.ZoneTrustDomain) (bundle.Endpoint, error) {
	trustDomain, err := spiffeid.TrustDomainFromString(zone.Spec.TrustDomain)
	if err != nil {
		return bundle.Endpoint{}, fmt.Errorf("trust domain %q: %w", zone.Spec.TrustDomain, err)
	}
	endpoint := bundle.Endpoint{TrustDomain: trustDomain, URL: zone.Spec.BundleEndpoint.URL}
	if id := zone.BundleEndpointSPIFFEID(); id != "" {
		endpoint.EndpointID, err = spiffeid.FromString(id)
		if err != nil {
			return bundle.Endpoint{}, fmt.Errorf("endpoint SPIFFE ID %q: %w", id, err)
		}
		return endpoint, nil
	}
	if caBundle := zone.Spec.BundleEndpoint.CABundle; caBundle != "" {
		endpoint.WebRoots = x509.NewCertPool()
		if !endpoint.WebRoots.AppendCertsFromPEM([]byte(caBundle)) {
			return bundle.Endpoint{}, errors.New("bundleEndpoint.caBundle holds no PEM certificate")
		}
	}
	return endpoint, nil
}

func fetchFailureReason(err error) string {
	switch {
	case errors.Is(err, bundle.ErrAuthentication):
		return spirefedv1alpha1.ReasonAuthenticationFailed
	case errors.Is(err, bundle.ErrResponse):
		return spirefedv1alpha1.ReasonBadResponse
	case errors.Is(err, bundle.ErrInvalid):
		return spirefedv1alpha1.ReasonBundleRejected
	default:
		return spirefedv1alpha1.ReasonEndpointUnreachable
	}
}

// jitter spreads fetches by up to a tenth of the interval, earlier.
func jitter(interval time.Duration) time.Duration {
	if interval <= 0 {
		return interval
	}
	return interval - time.Duration(rand.Int64N(int64(interval)/10+1))
}
