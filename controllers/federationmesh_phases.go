package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// zoneConcurrency bounds the zones a mesh reads or writes at once.
const zoneConcurrency = 64

// forEachZone calls fn for every name, at most zoneConcurrency at a time,
// and returns when all calls have.
func forEachZone(names []string, fn func(name string)) {
	limit := make(chan struct{}, zoneConcurrency)
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		limit <- struct{}{}
		go func() {
			defer func() { <-limit; wg.Done() }()
			fn(name)
		}()
	}
	wg.Wait()
}

// zoneObservation is what observing one zone found: the clusters of the
// zone that were reached (one, or those of a nested or HA trust domain),
// why the others were not, and what its SPIRE servers hold.
type zoneObservation struct {
	clusters    []*zoneCluster
	problems    []string
	unreachable string
	server      spireaccess.Server
	held        map[string]spireaccess.HeldBundle
	spireError  string
}

// observeZones connects to every cluster of every member zone and reads
// what it holds, zones in parallel: the operator's own objects from each
// cluster's cache, and the SPIRE servers where they are configured. A zone
// none of whose clusters can be reached or read is recorded as
// unreachable: nothing is applied or pruned there.
func (r *FederationMeshReconciler) observeZones(ctx context.Context, scope *meshScope) {
	scope.observed = meshstatus.NewObservation()
	scope.spireServers = map[string]spireaccess.Server{}
	scope.connected = map[string]*zones.Zone{}
	scope.clusters = map[string][]*zoneCluster{}
	scope.clusterProblems = map[string][]string{}
	var names []string
	for name, zone := range scope.members {
		if zone != nil {
			names = append(names, name)
		}
	}
	found := make([]zoneObservation, len(names))
	indexes := make(map[string]int, len(names))
	for i, name := range names {
		indexes[name] = i
	}
	forEachZone(names, func(name string) {
		found[indexes[name]] = r.observeZone(ctx, scope.mesh, scope.members[name])
	})
	for i, name := range names {
		zone := found[i]
		switch {
		case zone.unreachable != "":
			scope.observed.Unreachable[name] = zone.unreachable
			continue
		case zone.spireError != "":
			scope.observed.SpireErrors[name] = zone.spireError
		case zone.held != nil:
			scope.observed.SpireHeld[name] = zone.held
		}
		if zone.server != nil {
			scope.spireServers[name] = zone.server
		}
		scope.observed.Live[name] = zone.clusters[0].live
		scope.connected[name] = zone.clusters[0].connected
		scope.clusters[name] = zone.clusters
		scope.clusterProblems[name] = zone.problems
	}
}

// observeZone connects to the clusters of one zone and reads what they
// hold for the mesh.
func (r *FederationMeshReconciler) observeZone(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, zone *spirefedv1alpha1.ZoneTrustDomain) zoneObservation {
	clusters, problems := r.observeClusters(ctx, mesh, zone)
	if len(clusters) == 0 {
		return zoneObservation{unreachable: strings.Join(problems, "; ")}
	}
	observation := zoneObservation{clusters: clusters, problems: problems}
	r.observeSpire(ctx, &observation, zone)
	return observation
}

// observeSpire reads which federated bundles a zone's SPIRE servers hold,
// when the zone names a way to reach them.
func (r *FederationMeshReconciler) observeSpire(ctx context.Context, observation *zoneObservation, zone *spirefedv1alpha1.ZoneTrustDomain) {
	if r.Spire == nil {
		return
	}
	server, err := r.spireServersOf(observation.clusters)
	if server == nil && err == nil {
		return
	}
	if err == nil {
		observation.server = server
		var held map[string]spireaccess.HeldBundle
		if held, err = r.readSpire(ctx, server, zone.Spec.TrustDomain); err == nil {
			observation.held = held
			return
		}
	}
	observation.spireError = err.Error()
	ctrl.LoggerFrom(ctx).V(1).Info("Cannot read the zone's SPIRE server", "zone", zone.Name, "error", err.Error())
}

// applyPlan applies each reachable zone's plan, zones in parallel. A
// failure in one zone does not stop the others. Zones are claimed first
// (one status write for all new ones), so that no zone is written to
// before the mesh records that it may own objects there.
func (r *FederationMeshReconciler) applyPlan(ctx context.Context, scope *meshScope, names []string) {
	if err := r.claimZones(ctx, scope.mesh, names); err != nil {
		for _, name := range names {
			scope.observed.ApplyErrors[name] = err
		}
		return
	}
	type outcome struct {
		result apply.Result
		err    error
	}
	outcomes := make([]outcome, len(names))
	forEachZone(names, func(name string) {
		i := slices.Index(names, name)
		if err := r.checkZone(ctx, scope.mesh, name); err != nil {
			outcomes[i].err = err
			return
		}
		result, err := r.writeClusters(ctx, scope.mesh.Name, name, scope.clusters[name], scope.plan.Zones[name])
		if problems := scope.clusterProblems[name]; len(problems) > 0 && err == nil {
			// What the clusters not reached hold is not known to be current.
			result.Current, err = nil, unreachableClusters(problems)
		}
		if err != nil {
			err = fmt.Errorf("applying mesh %s in zone %s: %w", scope.mesh.Name, name, err)
		}
		outcomes[i] = outcome{result: result, err: err}
	})
	for i, name := range names {
		scope.observed.Applied[name] = outcomes[i].result
		if outcomes[i].err != nil {
			scope.observed.ApplyErrors[name] = outcomes[i].err
		}
	}
}

// completeFederatesWith plans again from what the zones hold after the
// first writes, and writes a second time in the zones where identities can
// now federate with more peers: without SPIRE access, the evidence that a
// zone holds a peer's bundle is the ClusterFederatedTrustDomain the pass
// just wrote, so a new mesh's federatesWith is complete after one pass
// instead of waiting for the next one.
func (r *FederationMeshReconciler) completeFederatesWith(ctx context.Context, scope *meshScope) {
	wrote, waiting := false, false
	for name, result := range scope.observed.Applied {
		wrote = wrote || result.Writes > 0
		waiting = waiting || scope.plan.Zones[name].WaitingIdentities() > 0
	}
	if !wrote || !waiting {
		// Nothing changed in any zone, or no identity waits for a peer
		// (a rotation): planning again gives no more federatesWith.
		return
	}
	first := scope.plan
	input := r.planInput(scope)
	input.Previous = &first
	replanned := plan.Compute(input)
	var names []string
	for name := range scope.observed.Applied {
		if _, failed := scope.observed.ApplyErrors[name]; failed {
			continue
		}
		if replanned.Zones[name].WaitingIdentities() < first.Zones[name].WaitingIdentities() {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	slices.Sort(names)
	scope.plan = replanned
	r.applyPlan(ctx, scope, names)
}

// countPending adds to scope.pending the identities whose federatesWith
// waits for bundles and the objects whose removal waits for a later pass.
func countPending(scope *meshScope) {
	for name, result := range scope.observed.Applied {
		if _, failed := scope.observed.ApplyErrors[name]; !failed {
			scope.pending += scope.plan.Zones[name].WaitingIdentities() + result.Deferred
		}
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

// claimZones records, before the mesh first writes to zones, that it may
// own objects there (so that a zone's deletion waits for the mesh to clean
// up): one status patch for every zone not claimed yet.
func (r *FederationMeshReconciler) claimZones(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, names []string) error {
	var unclaimed []string
	for _, name := range names {
		if !slices.Contains(mesh.Status.AppliedZones, name) {
			unclaimed = append(unclaimed, name)
		}
	}
	if len(unclaimed) == 0 {
		return nil
	}
	// Patch a copy: the answer must not overwrite the status this
	// reconcile is building.
	before := mesh.DeepCopy()
	claimed := mesh.DeepCopy()
	for _, name := range unclaimed {
		addAppliedZone(claimed, name)
	}
	if err := r.Status().Patch(ctx, claimed, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("recording zones %v in mesh %s: %w", unclaimed, mesh.Name, err)
	}
	for _, name := range unclaimed {
		addAppliedZone(mesh, name)
	}
	return nil
}

// checkZone makes sure a claimed zone is not being deleted, from the
// cache: the zone is in status.appliedZones, so its deletion waits for the
// mesh to clean up whatever a write based on a slightly stale read adds.
func (r *FederationMeshReconciler) checkZone(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh, name string) error {
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := r.Get(ctx, types.NamespacedName{Name: name}, zone); err != nil {
		return fmt.Errorf("reading zone %s: %w", name, err)
	}
	if !zone.DeletionTimestamp.IsZero() {
		return fmt.Errorf("writing mesh %s to zone %s: %w", mesh.Name, name, errZoneDeleting)
	}
	return nil
}
