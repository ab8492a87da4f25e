// Package metrics defines the operator's Prometheus metrics, registered with
// controller-runtime's registry and served on the metrics endpoint.
package metrics

import (
	"sync"
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
		Name: "spirefed_zone_x509_authority_expiry_timestamp_seconds",
		Help: "Unix time at which the first of the zone's X.509 authorities expires.",
	}, []string{"zone"})

	// MeshPairs counts a mesh's directed pairs by state.
	MeshPairs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_mesh_pairs",
		Help: "Number of directed trust pairs of a FederationMesh, by state.",
	}, []string{"mesh", "state"})

	// MeshZonePairsNotConverged counts, per member zone, the pairs in
	// which the zone trusts a peer and that are not Converged: one series
	// per zone, not per pair (a 200-zone full mesh has 39,800 pairs).
	MeshZonePairsNotConverged = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spirefed_mesh_zone_pairs_not_converged",
		Help: "Number of directed trust pairs of a FederationMesh in which the zone trusts a peer and that are not Converged.",
	}, []string{"mesh", "zone"})

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

	// SpireRefreshDuration observes how long refresh requests take, failed or not.
	SpireRefreshDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "spirefed_spire_bundle_refresh_duration_seconds",
		Help:    "Duration of requests to a zone's SPIRE server to refresh a peer's bundle, whatever their result.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"zone"})

	// HelmActions counts the Helm actions on a zone's SPIRE release.
	HelmActions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spirefed_helm_actions_total",
		Help: "Helm actions (Install, Upgrade, Rollback, Uninstall) on a zone's SPIRE release, by result (Succeeded or Failed).",
	}, []string{"zone", "action", "result"})

	// BundleRotations counts the accepted endpoint bundles whose content changed.
	BundleRotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spirefed_bundle_rotations_total",
		Help: "Bundles accepted from a zone's endpoint whose digest differs from the previous endpoint bundle's (authority rotations and JWT key changes).",
	}, []string{"zone"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(ZoneCondition, ZoneX509Authorities, ZoneX509AuthorityExpiry, MeshPairs, MeshZonePairsNotConverged, ZoneWrites,
		SpireRefreshes, SpireRefreshDuration, HelmActions, BundleFetches, BundleFetchDuration, BundleLastFetch, BundleRotations)
}

// ForgetMesh drops every series of a deleted mesh.
func ForgetMesh(mesh string) {
	MeshPairs.DeletePartialMatch(prometheus.Labels{"mesh": mesh})
	MeshZonePairsNotConverged.DeletePartialMatch(prometheus.Labels{"mesh": mesh})
	zonesMu.Lock()
	delete(meshZones, mesh)
	zonesMu.Unlock()
}

// ForgetZone drops every series of a deleted zone.
func ForgetZone(zone string) {
	ZoneCondition.DeletePartialMatch(prometheus.Labels{"zone": zone})
	ZoneX509Authorities.DeleteLabelValues(zone)
	ZoneX509AuthorityExpiry.DeleteLabelValues(zone)
	ZoneWrites.DeleteLabelValues(zone)
	SpireRefreshes.DeleteLabelValues(zone)
	SpireRefreshDuration.DeleteLabelValues(zone)
	HelmActions.DeletePartialMatch(prometheus.Labels{"zone": zone})
	BundleRotations.DeleteLabelValues(zone)
	BundleFetches.DeletePartialMatch(prometheus.Labels{"zone": zone})
	BundleFetchDuration.DeleteLabelValues(zone)
	BundleLastFetch.DeleteLabelValues(zone)
}

// meshZones holds, by mesh, the zones whose series were last set, so that
// the series of zones that left the mesh are deleted.
var (
	zonesMu   sync.Mutex
	meshZones = map[string]map[string]bool{}
)

// RecordMesh sets a mesh's pair counts by state and, for every zone that
// trusts a peer, how many of its pairs are not Converged; the series of
// zones no longer in the mesh are deleted.
func RecordMesh(mesh string, totals map[spirefedv1alpha1.PairState]int32, current []spirefedv1alpha1.PairStatus) {
	for _, state := range []spirefedv1alpha1.PairState{spirefedv1alpha1.PairConverged, spirefedv1alpha1.PairPending, spirefedv1alpha1.PairStale,
		spirefedv1alpha1.PairConflict, spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.PairGated} {
		MeshPairs.WithLabelValues(mesh, string(state)).Set(float64(totals[state]))
	}
	notConverged := map[string]int{}
	for _, pair := range current {
		count := notConverged[pair.From]
		if pair.State != spirefedv1alpha1.PairConverged {
			count++
		}
		notConverged[pair.From] = count
	}
	seen := make(map[string]bool, len(notConverged))
	for zone, count := range notConverged {
		MeshZonePairsNotConverged.WithLabelValues(mesh, zone).Set(float64(count))
		seen[zone] = true
	}
	zonesMu.Lock()
	defer zonesMu.Unlock()
	for zone := range meshZones[mesh] {
		if !seen[zone] {
			MeshZonePairsNotConverged.DeleteLabelValues(mesh, zone)
		}
	}
	meshZones[mesh] = seen
}

// RecordHelmAction counts a Helm action run on a zone's releases, by its
// result.
func RecordHelmAction(zone, action, result string) {
	HelmActions.WithLabelValues(zone, action, result).Inc()
}

// RecordRotation counts an accepted endpoint bundle of a zone whose digest
// differs from the previous endpoint bundle's.
func RecordRotation(zone string) {
	BundleRotations.WithLabelValues(zone).Inc()
}

// RecordSpireRefresh observes the duration of a refresh request to a
// zone's SPIRE server.
func RecordSpireRefresh(zone string, took time.Duration) {
	SpireRefreshDuration.WithLabelValues(zone).Observe(took.Seconds())
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
