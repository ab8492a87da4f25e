// Package metrics defines the operator's Prometheus metrics, registered with
// controller-runtime's registry and served on the metrics endpoint.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

var (
	// ZoneCondition is 1 when a zone's condition is True, 0 otherwise.
	ZoneCondition = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_zone_condition",
		Help: "Whether a ZoneTrustDomain condition is True (1) or not (0), by zone and condition type.",
	}, []string{"zone", "type"})

	// ZoneX509Authorities counts the X.509 authorities known for a zone.
	ZoneX509Authorities = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_zone_x509_authorities",
		Help: "Number of X.509 authorities in the zone's latest validated bundle.",
	}, []string{"zone"})

	// ZoneX509AuthorityExpiry is the earliest notAfter of a zone's X.509 authorities.
	ZoneX509AuthorityExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_zone_x509_authority_earliest_expiry_seconds",
		Help: "Unix time at which the first of the zone's X.509 authorities expires.",
	}, []string{"zone"})

	// MeshPairs counts a mesh's directed pairs by state.
	MeshPairs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_mesh_pairs",
		Help: "Number of directed trust pairs of a FederationMesh, by state.",
	}, []string{"mesh", "state"})

	// ZoneWrites counts the writes (applies and deletes) made in zone clusters.
	ZoneWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spirefed_zone_writes_total",
		Help: "Writes (server-side applies and deletes) the operator made in a zone's cluster.",
	}, []string{"zone"})

	// BundleFetches counts bundle endpoint fetches by result (the
	// BundleFetched reason they produced).
	BundleFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spirefed_bundle_fetches_total",
		Help: "Bundle endpoint fetches of a zone, by result (the reason of the BundleFetched condition they produced).",
	}, []string{"zone", "result"})

	// BundleFetchDuration observes how long fetches take.
	BundleFetchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "spirefed_bundle_fetch_duration_seconds",
		Help:    "Duration of bundle endpoint fetches of a zone.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"zone"})

	// BundleLastFetch is the time of a zone's latest fetch.
	BundleLastFetch = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_bundle_last_fetch_timestamp_seconds",
		Help: "Unix time of the latest bundle endpoint fetch of a zone, whatever its result.",
	}, []string{"zone"})

	// SpireRefreshes counts the refresh requests sent to a zone's SPIRE server.
	SpireRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spirefed_spire_bundle_refreshes_total",
		Help: "Requests to a zone's SPIRE server to refresh a peer's bundle at once.",
	}, []string{"zone"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(ZoneCondition, ZoneX509Authorities, ZoneX509AuthorityExpiry, MeshPairs, ZoneWrites, SpireRefreshes,
		BundleFetches, BundleFetchDuration, BundleLastFetch)
}

// ForgetMesh drops every series of a deleted mesh.
func ForgetMesh(mesh string) {
	MeshPairs.DeletePartialMatch(prometheus.Labels{"mesh": mesh})
}

// ForgetZone drops every series of a deleted zone.
func ForgetZone(zone string) {
	ZoneCondition.DeletePartialMatch(prometheus.Labels{"zone": zone})
	ZoneX509Authorities.DeleteLabelValues(zone)
	ZoneX509AuthorityExpiry.DeleteLabelValues(zone)
	ZoneWrites.DeleteLabelValues(zone)
	SpireRefreshes.DeleteLabelValues(zone)
	BundleFetches.DeletePartialMatch(prometheus.Labels{"zone": zone})
	BundleFetchDuration.DeleteLabelValues(zone)
	BundleLastFetch.DeleteLabelValues(zone)
}

// RecordMesh sets a mesh's pair counts by state.
func RecordMesh(mesh string, totals map[spirefedv1alpha1.PairState]int32) {
	for _, state := range []spirefedv1alpha1.PairState{spirefedv1alpha1.PairConverged, spirefedv1alpha1.PairPending, spirefedv1alpha1.PairStale,
		spirefedv1alpha1.PairConflict, spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.PairGated} {
		MeshPairs.WithLabelValues(mesh, string(state)).Set(float64(totals[state]))
	}
}

// RecordZone sets a zone's condition and authority gauges from its status.
func RecordZone(zone *spirefedv1alpha1.ZoneTrustDomain) {
	for _, condition := range zone.Status.Conditions {
		value := 0.0
		if condition.Status == metav1.ConditionTrue {
			value = 1
		}
		ZoneCondition.WithLabelValues(zone.Name, condition.Type).Set(value)
	}
	if zone.Status.Bundle == nil {
		return
	}
	ZoneX509Authorities.WithLabelValues(zone.Name).Set(float64(len(zone.Status.Bundle.X509Authorities)))
	var earliest time.Time
	for _, authority := range zone.Status.Bundle.X509Authorities {
		if earliest.IsZero() || authority.NotAfter.Time.Before(earliest) {
			earliest = authority.NotAfter.Time
		}
	}
	ZoneX509AuthorityExpiry.WithLabelValues(zone.Name).Set(float64(earliest.Unix()))
}

// RecordFetch counts a bundle endpoint fetch of a zone.
func RecordFetch(zone, result string, at time.Time, took time.Duration) {
	BundleFetches.WithLabelValues(zone, result).Inc()
	BundleFetchDuration.WithLabelValues(zone).Observe(took.Seconds())
	BundleLastFetch.WithLabelValues(zone).Set(float64(at.Unix()))
}
