package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// DefaultMeshResyncInterval is how often a mesh is reconciled when nothing
// triggers it, to repair drift in the zones.
const DefaultMeshResyncInterval = time.Minute

// meshSettleInterval is how soon a mesh is reconciled again while pairs are
// settling (a ClusterFederatedTrustDomain written, federatesWith to follow).
const meshSettleInterval = 2 * time.Second

// FederationMeshReconciler resolves a mesh's member zones, plans the
// objects each zone needs, applies them, and reports every directed pair.
type FederationMeshReconciler struct {
	client.Client
	// Zones gives clients of the zones' clusters.
	Zones *zones.Registry
	// Applier writes the plans.
	Applier *apply.Applier
	// APIReader reads zones uncached right before writing to them, so that
	// a zone being deleted is never written to.
	APIReader client.Reader
	// EventRecorder records condition transitions.
	EventRecorder events.EventRecorder
	// ResyncInterval; DefaultMeshResyncInterval if zero.
	ResyncInterval time.Duration
	// Spire reaches the SPIRE servers of zones that configure
	// spire.serverAccess; nil ignores that setting.
	Spire *spireaccess.Access
	// SpireRefreshInterval is the least time between two refresh requests
	// for the same pair; DefaultSpireRefreshInterval if zero.
	SpireRefreshInterval time.Duration
	// Now returns the time; time.Now if nil.
	Now func() time.Time

	refreshMu   sync.Mutex
	lastRefresh map[refreshKey]time.Time
	refreshes   atomic.Int64
}

// DefaultSpireRefreshInterval is the least time between two requests to a
// SPIRE server to refresh the same peer's bundle.
const DefaultSpireRefreshInterval = 5 * time.Second

// refreshKey names a pair in one mesh: zone From's SPIRE refreshing the
// bundle of trust domain peer.
type refreshKey struct {
	mesh, from, peer string
}

// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes/finalizers,verbs=update

// SetupWithManager registers the reconciler and its watches.
func (r *FederationMeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.EventRecorder == nil || r.Zones == nil || r.Applier == nil || r.APIReader == nil {
		return errors.New("FederationMeshReconciler needs Zones, Applier, APIReader and EventRecorder")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&spirefedv1alpha1.FederationMesh{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&spirefedv1alpha1.ZoneTrustDomain{}, handler.EnqueueRequestsFromMapFunc(r.meshesForZone),
			builder.WithPredicates(predicate.Funcs{UpdateFunc: zoneChangeMatters})).
		Complete(r)
}

// zoneChangeMatters filters zone updates down to what a mesh acts on: the
// spec, labels, deletion, the bundle, and readiness. A fetch that changes
// only its timestamp does not reconcile every mesh.
func zoneChangeMatters(e event.UpdateEvent) bool {
	before, ok1 := e.ObjectOld.(*spirefedv1alpha1.ZoneTrustDomain)
	after, ok2 := e.ObjectNew.(*spirefedv1alpha1.ZoneTrustDomain)
	if !ok1 || !ok2 {
		return true
	}
	digest := func(z *spirefedv1alpha1.ZoneTrustDomain) string {
		if z.Status.Bundle == nil {
			return ""
		}
		return z.Status.Bundle.Digest
	}
	condition := func(z *spirefedv1alpha1.ZoneTrustDomain, conditionType string) string {
		if c := meta.FindStatusCondition(z.Status.Conditions, conditionType); c != nil {
			return string(c.Status) + "/" + c.Reason
		}
		return ""
	}
	return before.Generation != after.Generation ||
		!equality.Semantic.DeepEqual(before.Labels, after.Labels) ||
		!before.DeletionTimestamp.Equal(after.DeletionTimestamp) ||
		digest(before) != digest(after) ||
		condition(before, spirefedv1alpha1.ReadyCondition) != condition(after, spirefedv1alpha1.ReadyCondition) ||
		condition(before, spirefedv1alpha1.BundleFetchedCondition) != condition(after, spirefedv1alpha1.BundleFetchedCondition)
}

// meshesForZone maps a zone to every mesh: meshes are few, and a zone's
// labels or name may have just made it join or leave one.
func (r *FederationMeshReconciler) meshesForZone(ctx context.Context, _ client.Object) []reconcile.Request {
	var meshList spirefedv1alpha1.FederationMeshList
	if err := r.List(ctx, &meshList); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing meshes")
		return nil
	}
	requests := make([]reconcile.Request, 0, len(meshList.Items))
	for _, mesh := range meshList.Items {
		requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Name: mesh.Name}})
	}
	return requests
}

// meshScope carries one reconcile's state between phases.
type meshScope struct {
	mesh *spirefedv1alpha1.FederationMesh
	// members by name; nil for a named zone that does not exist.
	members map[string]*spirefedv1alpha1.ZoneTrustDomain
	// connected zones, and the live state read from them (both filled by
	// observeZones); a member missing here is unreachable.
	connected map[string]*zones.Zone
	live      map[string]*apply.Live
	// unreachable members, with why.
	unreachable map[string]string
	// spireServers of the connected zones that configure server access, the
	// federated bundles each holds, and why a server could not be read.
	spireServers map[string]spireaccess.Server
	spireHeld    map[string]map[string]spireaccess.HeldBundle
	spireErrors  map[string]string
	// plan and the outcome of applying it.
	plan         plan.Plan
	applied      map[string]apply.Result
	applyErrors  map[string]error
	pendingCount int
}

// Reconcile runs the phases of one mesh and writes its status once.
func (r *FederationMeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	mesh := &spirefedv1alpha1.FederationMesh{}
	if err := r.Get(ctx, req.NamespacedName, mesh); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.ForgetMesh(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mesh.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mesh)
	}
	if controllerutil.AddFinalizer(mesh, spirefedv1alpha1.MeshFinalizer) {
		if err := r.Update(ctx, mesh); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to mesh %s: %w", mesh.Name, err)
		}
	}

	before := mesh.DeepCopy()
	defer func() {
		if err := r.writeStatus(ctx, before, mesh); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	scope := &meshScope{mesh: mesh}
	var err error
	if scope.members, err = r.resolveMembers(ctx, mesh); err != nil {
		return ctrl.Result{}, err
	}
	mesh.Status.ObservedGeneration = mesh.Generation
	setMeshMembers(mesh, scope.members)
	if reason := applyBlocker(mesh, scope.members); reason != "" {
		// Writing now could flip objects between zones or prune the whole
		// federation on a typo: keep what the zones hold until it is fixed.
		mesh.Status.Pairs, mesh.Status.PairTotals = nil, nil
		resolved := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ZonesResolvedCondition)
		setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ConvergedCondition, metav1.ConditionFalse, reason,
			resolved.Message+"; nothing is written or removed in the zones until this is fixed")
		return ctrl.Result{RequeueAfter: r.resyncInterval()}, nil
	}
	r.observeZones(ctx, scope)
	scope.plan = plan.Compute(planInput(scope))
	r.applyPlan(ctx, scope)
	r.refreshSpire(ctx, scope)
	if err := r.cleanupFormerZones(ctx, scope); err != nil {
		return ctrl.Result{}, err
	}
	setPairs(mesh, scope, r.now())

	requeue := r.resyncInterval()
	if scope.pendingCount > 0 || len(scope.unreachable) > 0 || len(scope.spireErrors) > 0 || len(scope.applyErrors) > 0 || pairsSettling(mesh) {
		requeue = meshSettleInterval
	}
	return ctrl.Result{RequeueAfter: requeue}, errors.Join(mapValues(scope.applyErrors)...)
}

// observeZones connects to every member zone and reads what it holds. A
// zone that cannot be reached or read is recorded as unreachable: nothing
// is applied or pruned there.
func (r *FederationMeshReconciler) observeZones(ctx context.Context, scope *meshScope) {
	scope.connected = map[string]*zones.Zone{}
	scope.live = map[string]*apply.Live{}
	scope.unreachable = map[string]string{}
	scope.spireServers = map[string]spireaccess.Server{}
	scope.spireHeld = map[string]map[string]spireaccess.HeldBundle{}
	scope.spireErrors = map[string]string{}
	for name, zone := range scope.members {
		if zone == nil {
			continue
		}
		connected, err := r.Zones.Connect(ctx, zone)
		if err != nil {
			scope.unreachable[name] = err.Error()
			continue
		}
		live, err := apply.Observe(ctx, connected.Client, scope.mesh.Name, name)
		if err != nil {
			scope.unreachable[name] = err.Error()
			continue
		}
		scope.connected[name] = connected
		scope.live[name] = live
		r.observeSpire(ctx, scope, zone, connected)
	}
}

// observeSpire reads which federated bundles a zone's SPIRE server holds,
// when the zone names a way to reach it.
func (r *FederationMeshReconciler) observeSpire(ctx context.Context, scope *meshScope, zone *spirefedv1alpha1.ZoneTrustDomain, connected *zones.Zone) {
	if r.Spire == nil {
		return
	}
	server, err := r.Spire.ServerFor(zone, connected.Config, connected.Clientset)
	if server == nil && err == nil {
		return
	}
	if err == nil {
		scope.spireServers[zone.Name] = server
		var held map[string]spireaccess.HeldBundle
		if held, err = readSpire(ctx, server, zone.Spec.TrustDomain); err == nil {
			scope.spireHeld[zone.Name] = held
			return
		}
	}
	scope.spireErrors[zone.Name] = err.Error()
	ctrl.LoggerFrom(ctx).V(1).Info("Cannot read the zone's SPIRE server", "zone", zone.Name, "error", err.Error())
}

// planInput turns the scope into the planner's input.
func planInput(scope *meshScope) plan.Input {
	in := plan.Input{
		Mesh:       scope.mesh.Name,
		Topology:   scope.mesh.Spec.Topology,
		Identities: scope.mesh.Spec.Identities,
		Observed:   map[string]plan.Observed{},
	}
	for name, zone := range scope.members {
		if zone == nil {
			continue
		}
		member := plan.Zone{
			Name:              name,
			TrustDomain:       zone.Spec.TrustDomain,
			ClassName:         zone.SpireClassName(),
			BundleEndpointURL: zone.Spec.BundleEndpoint.URL,
			Profile:           string(zone.Spec.BundleEndpoint.Profile),
			EndpointSPIFFEID:  zone.BundleEndpointSPIFFEID(),
		}
		if zone.Status.Bundle != nil {
			member.Bundle = zone.Status.Bundle.SPIFFEBundle
		}
		in.Zones = append(in.Zones, member)
		_, spireFailed := scope.spireErrors[name]
		switch held, observed := scope.spireHeld[name]; {
		case spireFailed && scope.live[name] != nil:
			// The zone's SPIRE cannot be asked: add no peer to
			// federatesWith that is not there already.
			in.Observed[name] = plan.Observed{PeersWithBundle: scope.live[name].FederatedWith()}
		case observed:
			// The SPIRE server itself says which bundles it holds.
			peers := map[string]bool{}
			for trustDomain, bundle := range held {
				peers[trustDomain] = len(bundle.X509Fingerprints) > 0
			}
			in.Observed[name] = plan.Observed{PeersWithBundle: peers}
		case scope.live[name] != nil:
			in.Observed[name] = plan.Observed{PeersWithBundle: scope.live[name].PeersWithBundle()}
		}
	}
	return in
}

// applyPlan applies each reachable zone's plan. A failure in one zone does
// not stop the others.
func (r *FederationMeshReconciler) applyPlan(ctx context.Context, scope *meshScope) {
	scope.applied = map[string]apply.Result{}
	scope.applyErrors = map[string]error{}
	for name, connected := range scope.connected {
		if err := r.claimZone(ctx, scope.mesh, name); err != nil {
			scope.applyErrors[name] = err
			continue
		}
		zonePlan := scope.plan.Zones[name]
		result, err := r.Applier.Apply(ctx, connected.Client, scope.live[name], zonePlan)
		metrics.ZoneWrites.WithLabelValues(name).Add(float64(result.Writes + result.Deletes))
		scope.applied[name] = result
		if err != nil {
			scope.applyErrors[name] = fmt.Errorf("applying mesh %s in zone %s: %w", scope.mesh.Name, name, err)
			continue
		}
		for _, id := range zonePlan.SPIFFEIDs {
			if len(id.Spec.FederatesWith) < len(zonePlan.FederatedTrustDomains) {
				scope.pendingCount++ // federatesWith waits for bundles in the zone
			}
		}
		for _, entry := range zonePlan.StaticEntries {
			if len(entry.Spec.FederatesWith) < len(zonePlan.FederatedTrustDomains) {
				scope.pendingCount++
			}
		}
		scope.pendingCount += result.Deferred // offboarding continues next pass
	}
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
		if _, member := scope.members[name]; member && scope.members[name] != nil {
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
	connected, err := r.Zones.Connect(ctx, zone)
	if err != nil {
		return false, nil
	}
	live, err := apply.Observe(ctx, connected.Client, mesh.Name, name)
	if err != nil {
		return false, nil
	}
	result, err := r.Applier.Apply(ctx, connected.Client, live, &plan.ZonePlan{Zone: name})
	metrics.ZoneWrites.WithLabelValues(name).Add(float64(result.Writes + result.Deletes))
	if err != nil {
		return false, fmt.Errorf("removing mesh %s from zone %s: %w", mesh.Name, name, err)
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
		setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonDeleting,
			fmt.Sprintf("Waiting to remove the mesh's objects from zones %v (unreachable, or offboarding in order)", remaining))
		if err := r.writeStatus(ctx, before, mesh); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return ctrl.Result{}, errors.Join(errs...)
		}
		return ctrl.Result{RequeueAfter: meshSettleInterval}, nil
	}
	controllerutil.RemoveFinalizer(mesh, spirefedv1alpha1.MeshFinalizer)
	if err := r.Update(ctx, mesh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	metrics.ForgetMesh(mesh.Name)
	r.forgetRefreshes(mesh.Name)
	return ctrl.Result{}, nil
}

// resolveMembers returns the member zones by name; a named zone that does
// not exist, or is being deleted, maps to nil.
func (r *FederationMeshReconciler) resolveMembers(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh) (map[string]*spirefedv1alpha1.ZoneTrustDomain, error) {
	members := map[string]*spirefedv1alpha1.ZoneTrustDomain{}
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

func (r *FederationMeshReconciler) writeStatus(ctx context.Context, before, mesh *spirefedv1alpha1.FederationMesh) error {
	recordMeshMetrics(mesh)
	if equality.Semantic.DeepEqual(before.Status, mesh.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, mesh, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing status of mesh %s: %w", mesh.Name, err)
	}
	recordConditionEvents(r.EventRecorder, mesh, before.Status.Conditions, mesh.Status.Conditions)
	return nil
}

func recordMeshMetrics(mesh *spirefedv1alpha1.FederationMesh) {
	for _, state := range []spirefedv1alpha1.PairState{spirefedv1alpha1.PairConverged, spirefedv1alpha1.PairPending, spirefedv1alpha1.PairStale,
		spirefedv1alpha1.PairConflict, spirefedv1alpha1.PairUnreachable, spirefedv1alpha1.PairGated} {
		metrics.MeshPairs.WithLabelValues(mesh.Name, string(state)).Set(float64(mesh.Status.PairTotals[state]))
	}
}

func (r *FederationMeshReconciler) resyncInterval() time.Duration {
	if r.ResyncInterval > 0 {
		return r.ResyncInterval
	}
	return DefaultMeshResyncInterval
}

func (r *FederationMeshReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
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

func mapValues(errs map[string]error) []error {
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		out = append(out, err)
	}
	return out
}
