// Package metrics defines the operator's Prometheus metrics, registered with
// controller-runtime's registry and served on the metrics endpoint.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
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

	// SpireRefreshes counts the refresh requests sent to a zone's SPIRE server.
	SpireRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spirefed_spire_bundle_refreshes_total",
		Help: "Requests to a zone's SPIRE server to refresh a peer's bundle at once.",
	}, []string{"zone"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(ZoneCondition, ZoneX509Authorities, ZoneX509AuthorityExpiry, MeshPairs, ZoneWrites, SpireRefreshes)
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
}
