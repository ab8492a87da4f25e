package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// forgetRemovedClusters stops the registry's client, probe and cache of
// every cluster that the zone's last status lists but its spec no longer
// has (a nested child removed from spec.spire.nested.children): nothing
// reads that cluster through this zone any more. The zone's own cluster is
// never forgotten here.
func (r *ZoneTrustDomainReconciler) forgetRemovedClusters(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, clusters []zones.Cluster) {
	for _, name := range removedClusters(zone.Status.Clusters, clusters) {
		key := zones.Key{Name: zone.Name + zones.ClusterSeparator + name}
		r.Zones.Forget(key)
		ctrl.LoggerFrom(ctx).Info("Forgot a cluster removed from the trust domain", "cluster", name)
	}
}

// removedClusters names the clusters of previous that current lacks,
// except the root (the zone's own cluster). It has no side effects.
func removedClusters(previous []spirefedv1alpha1.TrustDomainClusterStatus, current []zones.Cluster) []string {
	var removed []string
	for _, old := range previous {
		if old.Role == spirefedv1alpha1.RoleRoot {
			continue
		}
		found := false
		for _, cluster := range current {
			if cluster.Name == old.Name {
				found = true
				break
			}
		}
		if !found {
			removed = append(removed, old.Name)
		}
	}
	return removed
}
