package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
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

// isShaped says whether a zone is a Nested or HA trust domain.
func isShaped(zone *spirefedv1alpha1.ZoneTrustDomain) bool {
	return zone.Spec.Spire.Shape == spirefedv1alpha1.ShapeNested || zone.Spec.Spire.Shape == spirefedv1alpha1.ShapeHA
}

// reconcileReleases runs a Helm zone's releases: the spire chart for a
// Single zone, the spire-nested releases in every cluster of a Nested or
// HA trust domain.
func (r *ZoneTrustDomainReconciler) reconcileReleases(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, connected *zones.Zone) (spirehelm.Outcome, error) {
	if !isShaped(zone) {
		return r.Releases.Reconcile(ctx, connected.Config, zone)
	}
	rootKubeconfigs, err := r.rootKubeconfigs(ctx, zone)
	if err != nil {
		return spirehelm.Outcome{Release: *zone.Status.Spire}, err
	}
	return r.Releases.ReconcileShape(ctx, zone, r.clusterConfig(zone), rootKubeconfigs)
}

// rootKubeconfigs reads, for every nested child, the kubeconfig with
// which the root's SPIRE reaches it. A missing Secret leaves the child out
// (ReconcileShape reports it); other errors are returned.
func (r *ZoneTrustDomainReconciler) rootKubeconfigs(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (map[string][]byte, error) {
	out := map[string][]byte{}
	if zone.Spec.Spire.Shape != spirefedv1alpha1.ShapeNested || zone.Spec.Spire.Nested == nil {
		return out, nil
	}
	for _, child := range zone.Spec.Spire.Nested.Children {
		if child.RootKubeconfigSecretRef == nil {
			continue
		}
		data, err := r.Zones.SecretData(ctx, *child.RootKubeconfigSecretRef)
		if secretGone(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the root's kubeconfig of child %s: %w", child.Name, err)
		}
		out[child.Name] = data
	}
	return out, nil
}

// clusterConfig reaches the clusters of a zone's trust domain by name
// ("" and "root": the zone's own cluster).
func (r *ZoneTrustDomainReconciler) clusterConfig(zone *spirefedv1alpha1.ZoneTrustDomain) spirehelm.ClusterConfig {
	return func(ctx context.Context, name string) (*rest.Config, error) {
		view := zone
		if name != "" && name != "root" {
			view = nil
			for _, cluster := range zones.Clusters(zone) {
				if cluster.Name == name {
					view = cluster.View
				}
			}
			if view == nil {
				return nil, fmt.Errorf("zone %s has no cluster %s", zone.Name, name)
			}
		}
		connected, err := r.Zones.Connect(ctx, view)
		if err != nil {
			return nil, err
		}
		return connected.Config, nil
	}
}

// rootKubeconfigSecrets names the Secrets of a nested zone's root
// kubeconfigs that are not in names yet.
func rootKubeconfigSecrets(zone *spirefedv1alpha1.ZoneTrustDomain, names []string) []string {
	var out []string
	if zone.Spec.Spire.Nested == nil {
		return nil
	}
	for _, child := range zone.Spec.Spire.Nested.Children {
		if ref := child.RootKubeconfigSecretRef; ref != nil && !slices.Contains(names, ref.Name) && !slices.Contains(out, ref.Name) {
			out = append(out, ref.Name)
		}
	}
	return out
}

// releasesLeftBehind lets a deleted zone's uninstall skip a cluster whose
// kubeconfig Secret is gone, with an Event saying what stays there.
func (r *ZoneTrustDomainReconciler) releasesLeftBehind(zone *spirefedv1alpha1.ZoneTrustDomain) func(error) bool {
	return func(err error) bool {
		if !secretGone(err) {
			return false
		}
		r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "ObjectsLeftBehind", "Delete",
			"%s; the spire-nested releases of zone %s in that cluster are left behind (deletionPolicy Delete): uninstall them with helm there", err.Error(), zone.Name)
		return true
	}
}
