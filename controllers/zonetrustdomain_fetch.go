package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
)

// reconcileFetch fetches the zone's bundle from its endpoint when a fetch
// is due, authenticated by the zone's latest authorities, and accepts it
// when the bundle package's rules accept it. It returns when to look again.
func (r *ZoneTrustDomainReconciler) reconcileFetch(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, bootstrapAuthorities []*x509.Certificate) (time.Duration, error) {
	interval := r.FetchSchedule.Interval(zone.Spec.BundleEndpoint.RefreshHint, zone.Status.Bundle)
	defer func() {
		// What the bundle now in status asks for, once this pass is done.
		zone.Status.FetchInterval = &metav1.Duration{Duration: r.FetchSchedule.Interval(zone.Spec.BundleEndpoint.RefreshHint, zone.Status.Bundle)}
	}()
	endpoint, err := endpointOf(zone, fetchURL(zone))
	if err != nil {
		r.setFetched(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonBadResponse, err.Error())
		return r.FetchSchedule.AfterFailure(interval), nil
	}
	trust, err := trustSource(zone, endpoint.TrustDomain, bootstrapAuthorities)
	if err != nil {
		return 0, err
	}
	if endpoint.IsSPIFFE() && len(trust.X509Authorities()) == 0 {
		r.setFetched(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonWaitingForBootstrap,
			"The https_spiffe endpoint can be authenticated once the zone's bootstrap authorities are read")
		return r.FetchSchedule.AfterFailure(interval), nil
	}
	inputs := fetchInputs(zone, bootstrapAuthorities)
	now := r.Clock.Now()
	if due, wait := r.fetches.Check(zone.Name, inputs, fetchOutcome(zone), now); !due {
		return wait, nil
	}
	// The endpoint is read again at the zone's resync at the latest: an
	// outage shows within a resync, not only at the next refresh hint.
	// Spread: 200 zones created together would otherwise be fetched in
	// the same second of every minute.
	next := min(r.fetch(ctx, zone, endpoint, trust, interval), bundle.Jitter(r.ResyncInterval))
	r.fetches.Record(zone.Name, inputs, fetchOutcome(zone), now, next)
	return next, nil
}

// fetch fetches and, when acceptable, records the zone's bundle; it
// returns when the next fetch is due.
func (r *ZoneTrustDomainReconciler) fetch(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, endpoint bundle.Endpoint, trust *x509bundle.Bundle, interval time.Duration) time.Duration {
	start := r.Clock.Now()
	reason, message, next := r.fetchAndAccept(ctx, zone, endpoint, trust, interval)
	metrics.RecordFetch(zone.Name, reason, start, r.Clock.Since(start))
	if reason == spirefedv1alpha1.ReasonFetched {
		r.setFetched(zone, metav1.ConditionTrue, reason, message)
	} else {
		r.setFetched(zone, metav1.ConditionFalse, reason, message)
		ctrl.LoggerFrom(ctx).V(1).Info("Bundle not accepted", "url", endpoint.URL, "reason", reason)
	}
	return next
}

// fetchAndAccept fetches the zone's bundle and applies the acceptance rules;
// it returns the BundleFetched reason and message, and when to fetch next.
func (r *ZoneTrustDomainReconciler) fetchAndAccept(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, endpoint bundle.Endpoint, trust *x509bundle.Bundle, interval time.Duration) (string, string, time.Duration) {
	fetched, dropped, err := r.Fetcher.Fetch(ctx, endpoint, trust)
	if err != nil {
		return fetchFailureReason(err), fmt.Sprintf("Fetching %s: %v; peers keep the last good bundle", endpoint.URL, err), r.FetchSchedule.AfterFailure(interval)
	}
	_, reset := zone.Annotations[spirefedv1alpha1.ResetSequenceAnnotation]
	// The sides of an HA trust domain count their sequences apart: a
	// switch of side compares nothing.
	switched := zone.Spec.Spire.Shape == spirefedv1alpha1.ShapeHA && zone.Status.BundleEndpointURL != endpoint.URL
	if rejection := bundle.CheckSequence(zone.Status.Bundle, fetched, reset || switched); rejection != nil {
		return rejection.Reason, rejection.Message, r.FetchSchedule.AfterFailure(interval)
	}
	accepted, err := bundle.Describe(fetched, dropped, spirefedv1alpha1.BundleSourceEndpoint, zone.Status.Bundle, r.Clock.Now())
	if err != nil {
		return spirefedv1alpha1.ReasonBundleRejected, err.Error(), r.FetchSchedule.AfterFailure(interval)
	}
	if reset {
		r.finishReset(ctx, zone, accepted)
	}
	r.warnDropped(zone, zone.Status.Bundle, accepted, endpoint.URL)
	r.recordRotation(zone, zone.Status.Bundle, accepted)
	if previous := zone.Status.Bundle; previous != nil && previous.Source == spirefedv1alpha1.BundleSourceEndpoint && previous.Digest != accepted.Digest {
		metrics.RecordRotation(zone.Name)
	}
	zone.Status.Bundle = accepted
	zone.Status.BundleEndpointURL = endpoint.URL
	return spirefedv1alpha1.ReasonFetched, fmt.Sprintf("Fetched bundle %s from %s", accepted.Digest[:12], endpoint.URL), r.FetchSchedule.AfterSuccess(fetched, interval)
}

// finishReset records the audited sequence reset and removes the
// annotation that asked for it.
func (r *ZoneTrustDomainReconciler) finishReset(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, accepted *spirefedv1alpha1.BundleStatus) {
	sequence := func(b *spirefedv1alpha1.BundleStatus) string {
		if b == nil || b.Sequence == nil {
			return "none"
		}
		return strconv.FormatInt(*b.Sequence, 10)
	}
	r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "BundleSequenceReset", "Reset",
		"Accepted bundle %s with sequence %s in place of sequence %s, as annotation %s asked",
		accepted.Digest[:12], sequence(accepted), sequence(zone.Status.Bundle), spirefedv1alpha1.ResetSequenceAnnotation)
	ctrl.LoggerFrom(ctx).Info("Bundle sequence reset", "from", sequence(zone.Status.Bundle), "to", sequence(accepted))
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, spirefedv1alpha1.ResetSequenceAnnotation)
	if err := r.Patch(ctx, zone.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Removing the reset annotation")
	}
}

// fetchInputs identifies what a fetch depends on besides time: the zone's
// spec and the bootstrap authorities that authenticate its endpoint. A
// change of either makes a fetch due at once.
func fetchInputs(zone *spirefedv1alpha1.ZoneTrustDomain, bootstrapAuthorities []*x509.Certificate) string {
	_, reset := zone.Annotations[spirefedv1alpha1.ResetSequenceAnnotation]
	parts := []string{strconv.FormatInt(zone.Generation, 10), strconv.FormatBool(reset)}
	for _, authority := range bundle.DescribeX509Authorities(bootstrapAuthorities) {
		parts = append(parts, authority.SHA256Fingerprint)
	}
	return strings.Join(parts, ",")
}

// setFetched sets BundleFetched, and lastFetch when the result changed: a
// fetch like the last one writes nothing.
// fetchOutcome is what a zone's status shows of its last fetch: the
// BundleFetched condition and the accepted bundle. A read of the zone that
// does not show the outcome recorded with the last fetch (the cache lags a
// status write, or the write was lost) makes a fetch due again, so that the
// status written is never computed without it.
func fetchOutcome(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	outcome := ""
	if condition := meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.BundleFetchedCondition); condition != nil {
		outcome = string(condition.Status) + "/" + condition.Reason + "/" + condition.Message
	}
	if zone.Status.Bundle != nil {
		outcome += "|" + zone.Status.Bundle.Digest
	}
	return outcome
}

func (r *ZoneTrustDomainReconciler) setFetched(zone *spirefedv1alpha1.ZoneTrustDomain, conditionStatus metav1.ConditionStatus, reason, message string) {
	r.setCondition(zone, spirefedv1alpha1.BundleFetchedCondition, conditionStatus, reason, message)
	if zone.Status.LastFetch == nil || zone.Status.LastFetch.Result != reason {
		zone.Status.LastFetch = &spirefedv1alpha1.FetchStatus{Time: metav1.NewTime(r.Clock.Now()), Result: reason}
	}
}

// trustSource authenticates an https_spiffe endpoint: the bootstrap
// authorities just read plus those of the latest accepted bundle, both
// obtained through authenticated channels.
func trustSource(zone *spirefedv1alpha1.ZoneTrustDomain, trustDomain spiffeid.TrustDomain, bootstrapAuthorities []*x509.Certificate) (*x509bundle.Bundle, error) {
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

// endpointOf builds the endpoint of a zone from its spec, at url.
func endpointOf(zone *spirefedv1alpha1.ZoneTrustDomain, url string) (bundle.Endpoint, error) {
	trustDomain, err := spiffeid.TrustDomainFromString(zone.Spec.TrustDomain)
	if err != nil {
		return bundle.Endpoint{}, fmt.Errorf("trust domain %q: %w", zone.Spec.TrustDomain, err)
	}
	endpoint := bundle.Endpoint{TrustDomain: trustDomain, URL: url}
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
