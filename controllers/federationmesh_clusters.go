package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// zoneCluster is one cluster of a member zone that receives the mesh's
// objects (the zone's own cluster, or a nested child, or an HA side), as
// observed in this reconcile.
type zoneCluster struct {
	target    zones.FederationTarget
	connected *zones.Zone
	live      *apply.Live
}

// observeClusters connects to every cluster of a zone that receives
// federation objects and reads what the mesh owns there. It returns the
// reachable ones and why the others are not.
func (r *FederationMeshReconciler) observeClusters(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, zone *spirefedv1alpha1.ZoneTrustDomain) ([]*zoneCluster, []string) {
	var reachable []*zoneCluster
	var problems []string
	staticEntries := plansStaticEntries(mesh, zone.Name)
	for _, target := range zones.FederationTargets(zone) {
		connected, live, err := r.observeCluster(ctx, target.Cluster.View, mesh.Name, zone.Name, staticEntries)
		if err != nil {
			problems = append(problems, clusterProblem(target.Cluster, err))
			continue
		}
		reachable = append(reachable, &zoneCluster{target: target, connected: connected, live: live})
	}
	return reachable, problems
}

// observeCluster connects to one cluster of a zone and reads the mesh's
// objects there from the cluster's cache. The cache would serve what it
// last saw: a cluster whose API server does not answer, or refuses the
// credentials, is unreachable. (A probe that is Forbidden got an answer:
// the cache is current.)
func (r *FederationMeshReconciler) observeCluster(ctx context.Context, view *spirefedv1alpha1.ZoneTrustDomain, meshName, zoneName string, staticEntries bool) (*zones.Zone, *apply.Live, error) {
	connected, err := r.Zones.Connect(ctx, view)
	if err != nil {
		return nil, nil, err
	}
	if reason, message := connected.Health(); reason == spirefedv1alpha1.ReasonUnreachable || reason == spirefedv1alpha1.ReasonUnauthorized {
		return nil, nil, errors.New(message)
	}
	live, err := apply.Observe(ctx, connected.Owned(), meshName, zoneName, staticEntries)
	if err != nil {
		return nil, nil, err
	}
	live.Resume(r.settled.get(settledKey{mesh: meshName, zone: zoneName, cluster: view.Name}))
	return connected, live, nil
}

// plansStaticEntries says whether the mesh has an identity rendered as a
// ClusterStaticEntry in the zone.
func plansStaticEntries(mesh *spirefedv1alpha1.FederationMesh, zone string) bool {
	for _, identity := range mesh.Spec.Identities {
		if identity.Static != nil && (len(identity.Zones) == 0 || slices.Contains(identity.Zones, zone)) {
			return true
		}
	}
	return false
}

// clusterProblem says which cluster of a zone failed, and how.
func clusterProblem(cluster zones.Cluster, err error) string {
	if cluster.Name == "" {
		return err.Error()
	}
	return fmt.Sprintf("cluster %s: %v", cluster.Name, err)
}

// spireServersOf returns the SPIRE servers of a zone's reachable clusters
// as one server, or nil when none is configured.
func (r *FederationMeshReconciler) spireServersOf(clusters []*zoneCluster) (spireaccess.Server, error) {
	var servers []spireaccess.Server
	for _, cluster := range clusters {
		for _, view := range cluster.target.Servers {
			server, err := r.Spire.ServerFor(view, cluster.connected.Config, cluster.connected.Clientset)
			if err != nil {
				return nil, clusterError(cluster.target.Cluster, err)
			}
			if server != nil {
				servers = append(servers, server)
			}
		}
	}
	if len(servers) == 0 {
		return nil, nil
	}
	return spireaccess.Combine(servers...), nil
}

func clusterError(cluster zones.Cluster, err error) error {
	if cluster.Name == "" {
		return err
	}
	return fmt.Errorf("cluster %s: %w", cluster.Name, err)
}

// writeClusters applies a zone's plan in every reachable cluster of the
// zone, as that cluster needs it (plan.ForCluster), and merges the
// results: a peer's object is current only where it is current in every
// cluster.
func (r *FederationMeshReconciler) writeClusters(ctx context.Context, meshName, name string, clusters []*zoneCluster, zonePlan *plan.ZonePlan) (apply.Result, error) {
	var merged apply.Result
	for i, cluster := range clusters {
		view := cluster.target.Cluster.View
		clusterPlan := plan.ForCluster(zonePlan, view.SpireClassName(), cluster.target.Cluster.IDPath)
		result, err := r.writeZone(ctx, name, cluster.connected, cluster.live, clusterPlan)
		r.settled.set(settledKey{mesh: meshName, zone: name, cluster: view.Name}, apply.Settle(cluster.live, clusterPlan, result, err))
		merged = mergeResults(merged, result, i == 0)
		if err != nil {
			return merged, clusterError(cluster.target.Cluster, err)
		}
	}
	return merged, nil
}

// mergeResults adds one cluster's apply result to a zone's.
func mergeResults(zone, cluster apply.Result, first bool) apply.Result {
	if first {
		return cluster
	}
	zone.Writes += cluster.Writes
	zone.Deletes += cluster.Deletes
	zone.Deferred += cluster.Deferred
	if len(cluster.Conflicts) > 0 {
		conflicts := maps.Clone(zone.Conflicts)
		if conflicts == nil {
			conflicts = map[string]string{}
		}
		maps.Copy(conflicts, cluster.Conflicts)
		zone.Conflicts = conflicts
	}
	current := map[string]bool{}
	for peer, ok := range zone.Current {
		if ok && cluster.Current[peer] {
			current[peer] = true
		}
	}
	zone.Current = current
	return zone
}

// unreachableClusters is the error of a zone some of whose clusters could
// not be reached: the others were written.
func unreachableClusters(problems []string) error {
	return fmt.Errorf("not written to %s", strings.Join(problems, "; "))
}
