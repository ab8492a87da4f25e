package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	meshstatus "github.com/spirefed/spire-federation-operator/internal/mesh"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// resolveMembers returns the member zones by name; a named zone that does
// not exist, or is being deleted, maps to nil.
func (r *FederationMeshReconciler) resolveMembers(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh) (meshstatus.Members, error) {
	members := meshstatus.Members{}
	if selector := mesh.Spec.Zones.Selector; selector != nil {
		labelSelector, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return nil, reconcile.TerminalError(fmt.Errorf("parsing zones.selector of mesh %s: %w", mesh.Name, err))
		}
		var zoneList spirefedv1alpha1.ZoneTrustDomainList
		if err := r.List(ctx, &zoneList, client.MatchingLabelsSelector{Selector: labelSelector}); err != nil {
			return nil, fmt.Errorf("listing zones of mesh %s: %w", mesh.Name, err)
		}
		for i := range zoneList.Items {
			if zoneList.Items[i].DeletionTimestamp.IsZero() {
				members[zoneList.Items[i].Name] = &zoneList.Items[i]
			}
		}
		return members, nil
	}
	for _, name := range mesh.Spec.Zones.Names {
		zone := &spirefedv1alpha1.ZoneTrustDomain{}
		err := r.Get(ctx, types.NamespacedName{Name: name}, zone)
		switch {
		case apierrors.IsNotFound(err):
			members[name] = nil
		case err != nil:
			return nil, fmt.Errorf("reading zone %s of mesh %s: %w", name, mesh.Name, err)
		case !zone.DeletionTimestamp.IsZero():
			// A zone being deleted leaves every mesh first: the mesh
			// removes its objects there, then the zone's finalizer runs.
			members[name] = nil
		default:
			members[name] = zone
		}
	}
	return members, nil
}

// observeZones connects to every cluster of every member zone (one, or
// the clusters of a nested or HA trust domain) and reads what it holds. A
// zone none of whose clusters can be reached or read is recorded as
// unreachable: nothing is applied or pruned there.
func (r *FederationMeshReconciler) observeZones(ctx context.Context, scope *meshScope) {
	scope.observed = meshstatus.NewObservation()
	scope.spireServers = map[string]spireaccess.Server{}
	scope.connected = map[string]*zones.Zone{}
	scope.clusters = map[string][]*zoneCluster{}
	scope.clusterProblems = map[string][]string{}
	for name, zone := range scope.members {
		if zone == nil {
			continue
		}
		clusters, problems := r.observeClusters(ctx, scope.mesh.Name, zone)
		if len(clusters) == 0 {
			scope.observed.Unreachable[name] = strings.Join(problems, "; ")
			continue
		}
		scope.observed.Live[name] = clusters[0].live
		scope.connected[name] = clusters[0].connected
		scope.clusters[name] = clusters
		scope.clusterProblems[name] = problems
		r.observeSpire(ctx, scope, zone, clusters)
	}
}

// observeSpire reads which federated bundles a zone's SPIRE servers hold,
// when the zone names a way to reach them.
func (r *FederationMeshReconciler) observeSpire(ctx context.Context, scope *meshScope, zone *spirefedv1alpha1.ZoneTrustDomain, clusters []*zoneCluster) {
	if r.Spire == nil {
		return
	}
	server, err := r.spireServersOf(clusters)
	if server == nil && err == nil {
		return
	}
	if err == nil {
		scope.spireServers[zone.Name] = server
		var held map[string]spireaccess.HeldBundle
		if held, err = r.readSpire(ctx, server, zone.Spec.TrustDomain); err == nil {
			scope.observed.SpireHeld[zone.Name] = held
			return
		}
	}
	scope.observed.SpireErrors[zone.Name] = err.Error()
	ctrl.LoggerFrom(ctx).V(1).Info("Cannot read the zone's SPIRE server", "zone", zone.Name, "error", err.Error())
}

// applyPlan applies each reachable zone's plan. A failure in one zone does
// not stop the others.
func (r *FederationMeshReconciler) applyPlan(ctx context.Context, scope *meshScope) {
	for name := range scope.observed.Live {
		if err := r.claimZone(ctx, scope.mesh, name); err != nil {
			scope.observed.ApplyErrors[name] = err
			continue
		}
		zonePlan := scope.plan.Zones[name]
		result, err := r.writeClusters(ctx, name, scope.clusters[name], zonePlan)
		if problems := scope.clusterProblems[name]; len(problems) > 0 && err == nil {
			// What the clusters not reached hold is not known to be current.
			result.Current, err = nil, unreachableClusters(problems)
		}
		scope.observed.Applied[name] = result
		if err != nil {
			scope.observed.ApplyErrors[name] = fmt.Errorf("applying mesh %s in zone %s: %w", scope.mesh.Name, name, err)
			continue
		}
		scope.pending += zonePlan.WaitingIdentities() + result.Deferred
	}
}

// writeZone applies a zone plan in the zone's cluster and counts the
// writes.
func (r *FederationMeshReconciler) writeZone(ctx context.Context, name string, connected *zones.Zone, live *apply.Live, zonePlan *plan.ZonePlan) (apply.Result, error) {
	result, err := r.Applier.Apply(ctx, connected.Client, live, zonePlan)
	metrics.ZoneWrites.WithLabelValues(name).Add(float64(result.Writes + result.Deletes))
	return result, err
}

// errZoneDeleting stops writes to a zone that is being deleted.
var errZoneDeleting = errors.New("the zone is being deleted")

// claimZone records, before the mesh first writes to a zone, that it may
// own objects there (so that the zone's deletion waits for the mesh to
// clean up), then reads the zone uncached to make sure it is not being
// deleted.
func (r *FederationMeshReconciler) claimZone(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, name string) error {
	if !slices.Contains(mesh.Status.AppliedZones, name) {
		// Patch a copy: the answer must not overwrite the status this
		// reconcile is building.
		before := mesh.DeepCopy()
		claimed := mesh.DeepCopy()
		addAppliedZone(claimed, name)
		if err := r.Status().Patch(ctx, claimed, client.MergeFrom(before)); err != nil {
			return fmt.Errorf("recording zone %s in mesh %s: %w", name, mesh.Name, err)
		}
		addAppliedZone(mesh, name)
	}
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, zone); err != nil {
		return fmt.Errorf("reading zone %s: %w", name, err)
	}
	if !zone.DeletionTimestamp.IsZero() {
		return fmt.Errorf("writing mesh %s to zone %s: %w", mesh.Name, name, errZoneDeleting)
	}
	return nil
}

// cleanupFormerZones removes what the mesh owns in zones that left it. A
// zone that cannot be reached stays in AppliedZones for a later attempt; a
// zone whose ZoneTrustDomain is gone cannot be reached any more and is
// dropped.
func (r *FederationMeshReconciler) cleanupFormerZones(ctx context.Context, scope *meshScope) error {
	for _, name := range slices.Clone(scope.mesh.Status.AppliedZones) {
		if scope.members[name] != nil {
			continue
		}
		done, err := r.cleanupZone(ctx, scope.mesh, name)
		if err != nil {
			return err
		}
		if done {
			removeAppliedZone(scope.mesh, name)
		}
	}
	return nil
}

// cleanupZone deletes what mesh owns in a zone, in offboarding order. It
// says whether the zone is clean (or gone).
func (r *FederationMeshReconciler) cleanupZone(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, name string) (bool, error) {
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := r.Get(ctx, types.NamespacedName{Name: name}, zone); err != nil {
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, fmt.Errorf("reading zone %s: %w", name, err)
	}
	done := true
	for _, target := range zones.FederationTargets(zone) {
		clusterDone, err := r.cleanupCluster(ctx, mesh, name, target)
		if err != nil {
			return false, err
		}
		done = done && clusterDone
	}
	return done, nil
}

// cleanupCluster deletes what mesh owns for a zone in one of the zone's
// clusters. It says whether that cluster is clean (or gone).
func (r *FederationMeshReconciler) cleanupCluster(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, name string, target zones.FederationTarget) (bool, error) {
	connected, err := r.Zones.Connect(ctx, target.Cluster.View)
	if secretGone(err) {
		r.EventRecorder.Eventf(mesh, nil, corev1.EventTypeWarning, "ObjectsLeftBehind", "Delete",
			"Zone %s: %s; the mesh's objects in its cluster are left behind: delete those labelled %s=%s,%s=%s there",
			name, clusterError(target.Cluster, err).Error(), plan.LabelMesh, mesh.Name, plan.LabelZone, name)
		return true, nil
	}
	if err != nil {
		return false, nil
	}
	// The mesh's own objects go first: proxies stop asking SPIRE before
	// their identities go.
	if err := r.cleanupMeshIntegration(ctx, connected.Client, mesh, name); err != nil {
		return false, fmt.Errorf("removing the mesh integration of mesh %s from zone %s: %w", mesh.Name, name, err)
	}
	live, err := apply.Observe(ctx, connected.Client, mesh.Name, name)
	if err != nil {
		return false, nil
	}
	result, err := r.writeZone(ctx, name, connected, live, &plan.ZonePlan{Zone: name})
	if err != nil {
		return false, fmt.Errorf("removing mesh %s from zone %s: %w", mesh.Name, name, clusterError(target.Cluster, err))
	}
	return result.Deferred == 0, nil
}

// reconcileDelete removes what the mesh owns in every zone it wrote to,
// then lets the mesh go. Unreachable zones keep the finalizer, and are
// named in Ready's message.
func (r *FederationMeshReconciler) reconcileDelete(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(mesh, spirefedv1alpha1.MeshFinalizer) {
		return ctrl.Result{}, nil
	}
	before := mesh.DeepCopy()
	// Every zone is tried: one failing zone does not hold up the others.
	var remaining []string
	var errs []error
	for _, name := range mesh.Status.AppliedZones {
		done, err := r.cleanupZone(ctx, mesh, name)
		if err != nil {
			errs = append(errs, err)
		}
		if !done || err != nil {
			remaining = append(remaining, name)
		}
	}
	if len(remaining) > 0 {
		mesh.Status.AppliedZones = remaining
		meshstatus.Summarize(mesh, "")
		errs = append(errs, r.writeStatus(ctx, before, mesh))
		if err := errors.Join(errs...); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: meshSettleInterval}, nil
	}
	if err := removeFinalizer(ctx, r.Client, mesh, spirefedv1alpha1.MeshFinalizer); err != nil {
		return ctrl.Result{}, err
	}
	metrics.ForgetMesh(mesh.Name)
	r.refreshes.forget(mesh.Name)
	return ctrl.Result{}, nil
}

func addAppliedZone(mesh *spirefedv1alpha1.FederationMesh, name string) {
	if !slices.Contains(mesh.Status.AppliedZones, name) {
		mesh.Status.AppliedZones = append(mesh.Status.AppliedZones, name)
		slices.Sort(mesh.Status.AppliedZones)
	}
}

func removeAppliedZone(mesh *spirefedv1alpha1.FederationMesh, name string) {
	mesh.Status.AppliedZones = slices.DeleteFunc(mesh.Status.AppliedZones, func(n string) bool { return n == name })
}
