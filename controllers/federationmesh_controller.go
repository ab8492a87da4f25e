package controllers

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	meshstatus "github.com/spirefed/spire-federation-operator/internal/mesh"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/status"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// meshSettleInterval is how soon a mesh is reconciled again while pairs are
// settling (a ClusterFederatedTrustDomain written, federatesWith to follow).
const meshSettleInterval = 2 * time.Second

// FederationMeshReconciler resolves a mesh's member zones, plans the
// objects each zone needs, applies them, and reports every directed pair.
// Every field is required, except Spire (nil: SPIRE servers are not read).
type FederationMeshReconciler struct {
	client.Client
	Zones         ZoneConnector
	Applier       ZoneWriter
	EventRecorder events.EventRecorder
	Spire         SpireAccess
	// ResyncInterval: how often a mesh is reconciled when nothing
	// triggers it, to repair drift in the zones.
	ResyncInterval time.Duration
	// SpireRefreshInterval is the least time between two refresh requests
	// for the same pair.
	SpireRefreshInterval time.Duration
	// SpireCallTimeout bounds one call to a SPIRE server.
	SpireCallTimeout time.Duration
	Clock            clock.Clock

	refreshes refreshLimiter
	plans     lastPlans
	settled   settledApplies
}

// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes/finalizers,verbs=update

// SetupWithManager registers the reconciler and its watches.
func (r *FederationMeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.EventRecorder == nil || r.Zones == nil || r.Applier == nil || r.Clock == nil {
		return errors.New("FederationMeshReconciler needs Zones, Applier, EventRecorder and Clock")
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
	mesh    *spirefedv1alpha1.FederationMesh
	members meshstatus.Members
	// observed is filled by observeZones and applyPlan.
	observed *meshstatus.Observation
	// connected zones (filled by observeZones).
	connected map[string]*zones.Zone
	// clusters of each reachable zone that receive its objects, and why
	// its other clusters could not be reached (filled by observeZones).
	clusters        map[string][]*zoneCluster
	clusterProblems map[string][]string
	// spireServers of the zones whose SPIRE server was read.
	spireServers map[string]spireaccess.Server
	plan         plan.Plan
	// pending counts identities whose federatesWith waits for bundles, and
	// objects whose removal waits for a later pass.
	pending int
	// passCache holds what the mesh integration phase derives once per
	// pass instead of once per zone (see federationmesh_passcache.go).
	passCache passCache
}

// Reconcile runs the phases of one mesh and writes its status once:
// resolve the members, observe every zone (cluster and SPIRE), plan, apply,
// push rotations to SPIRE, clean up zones that left, report.
func (r *FederationMeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	mesh := &spirefedv1alpha1.FederationMesh{}
	if err := r.Get(ctx, req.NamespacedName, mesh); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.ForgetMesh(req.Name)
			r.plans.forget(req.Name)
			r.settled.forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mesh.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, mesh)
	}
	if err := addFinalizer(ctx, r.Client, mesh, spirefedv1alpha1.MeshFinalizer); err != nil {
		return ctrl.Result{}, err
	}
	before := mesh.DeepCopy()
	// allPairs are every pair, for the metrics; status lists a bounded
	// selection.
	var allPairs []spirefedv1alpha1.PairStatus
	defer func() { retErr = errors.Join(retErr, r.writeStatus(ctx, before, mesh, allPairs)) }()

	members, err := r.resolveMembers(ctx, mesh)
	if err != nil {
		return ctrl.Result{}, err
	}
	meshstatus.SetMembers(mesh, members)
	keepMeshIntegrationStatus(mesh, before.Status.Zones)
	if blocker := meshstatus.WriteBlocker(mesh, members); blocker != "" {
		// Writing now could flip objects between zones or prune the whole
		// federation on a typo: keep what the zones hold until it is fixed.
		meshstatus.ClearPairs(mesh)
		meshstatus.Summarize(mesh, blocker)
		mesh.Status.ObservedGeneration = mesh.Generation
		return ctrl.Result{RequeueAfter: r.ResyncInterval}, nil
	}
	scope := &meshScope{mesh: mesh, members: members}
	timeline := newPhaseTimeline(r.Clock)
	r.observeZones(ctx, scope)
	timeline.mark("observe")
	input := r.planInput(scope)
	input.Previous = r.plans.get(mesh.Name)
	scope.plan = plan.Compute(input)
	timeline.mark("plan")
	r.applyPlan(ctx, scope, slices.Sorted(maps.Keys(scope.observed.Live)))
	r.completeFederatesWith(ctx, scope)
	countPending(scope)
	r.reconcileMeshIntegration(ctx, scope)
	timeline.mark("apply")
	r.plans.set(mesh.Name, scope.plan)
	r.refreshSpire(ctx, scope)
	timeline.mark("spire")
	if err := r.cleanupFormerZones(ctx, scope); err != nil {
		return ctrl.Result{}, err
	}
	timeline.mark("cleanup")
	defer func() {
		settled := 0
		for _, result := range scope.observed.Applied {
			if result.Settled {
				settled++
			}
		}
		ctrl.LoggerFrom(ctx).V(1).Info("Reconciled mesh", append(timeline.keysAndValues(), "zones", len(members), "settledZones", settled)...)
	}()
	previous := mesh.Status
	meshstatus.SetPairs(mesh, members, scope.plan, scope.observed, r.Clock.Now())
	r.recordPairChanges(mesh, previous)
	meshstatus.Summarize(mesh, "")
	allPairs = meshstatus.BoundPairs(mesh)
	// The pass acted on this generation.
	mesh.Status.ObservedGeneration = mesh.Generation
	applyErrors := slices.Collect(maps.Values(scope.observed.ApplyErrors))
	return ctrl.Result{RequeueAfter: r.requeueAfter(scope)}, errors.Join(applyErrors...)
}

// phaseTimeline records how long each phase of a pass took, for the
// debug log.
type phaseTimeline struct {
	clock  clock.Clock
	last   time.Time
	phases []any
}

func newPhaseTimeline(c clock.Clock) *phaseTimeline {
	return &phaseTimeline{clock: c, last: c.Now()}
}

// mark ends a phase.
func (t *phaseTimeline) mark(phase string) {
	now := t.clock.Now()
	t.phases = append(t.phases, phase, now.Sub(t.last).String())
	t.last = now
}

func (t *phaseTimeline) keysAndValues() []any { return t.phases }

// requeueAfter is soon while something settles without a watch event, the
// resync interval otherwise.
func (r *FederationMeshReconciler) requeueAfter(scope *meshScope) time.Duration {
	observed := scope.observed
	if scope.pending > 0 || len(observed.Unreachable) > 0 || len(observed.SpireErrors) > 0 || len(observed.ApplyErrors) > 0 || meshstatus.Settling(scope.mesh) {
		return meshSettleInterval
	}
	return r.ResyncInterval
}

// writeStatus records the mesh's metrics (pairs: every pair; nil: those
// status lists) and patches its status when it changed.
func (r *FederationMeshReconciler) writeStatus(ctx context.Context, before, mesh *spirefedv1alpha1.FederationMesh, pairs []spirefedv1alpha1.PairStatus) error {
	var total int32
	for _, count := range mesh.Status.PairTotals {
		total += count
	}
	switch {
	case pairs != nil:
		metrics.RecordMesh(mesh.Name, mesh.Status.PairTotals, pairs)
	case int(total) == len(mesh.Status.Pairs):
		metrics.RecordMesh(mesh.Name, mesh.Status.PairTotals, mesh.Status.Pairs)
	}
	// Otherwise the pass judged no pair: the metrics keep the last judgement.
	return status.Patch(ctx, r.Client, r.EventRecorder, before, mesh, func(m *spirefedv1alpha1.FederationMesh) any { return m.Status })
}

// maxPairEvents bounds the pair Events of one pass: a mesh of many zones
// coming up must not flood the API server.
const maxPairEvents = 10

// recordPairChanges records an Event for every pair whose state changed
// (Normal when it became Converged, Warning otherwise), at most
// maxPairEvents, then one that counts the rest. A pair that the previous
// status left out of its bounded list was established.
func (r *FederationMeshReconciler) recordPairChanges(mesh *spirefedv1alpha1.FederationMesh, previous spirefedv1alpha1.FederationMeshStatus) {
	before := make(map[[2]string]spirefedv1alpha1.PairState, len(previous.Pairs))
	for _, pair := range previous.Pairs {
		before[[2]string{pair.From, pair.To}] = pair.State
	}
	var previousTotal int32
	for _, count := range previous.PairTotals {
		previousTotal += count
	}
	bounded := int(previousTotal) > len(previous.Pairs)
	recorded, more := 0, 0
	for _, pair := range mesh.Status.Pairs {
		old, known := before[[2]string{pair.From, pair.To}]
		if known && old == pair.State || !known && bounded && meshstatus.Established(pair) {
			continue
		}
		if recorded == maxPairEvents {
			more++
			continue
		}
		recorded++
		eventType := corev1.EventTypeWarning
		if pair.State == spirefedv1alpha1.PairConverged {
			eventType = corev1.EventTypeNormal
		}
		from := string(old)
		if !known {
			from = "new"
		}
		r.EventRecorder.Eventf(mesh, nil, eventType, "Pair"+string(pair.State), "Judge", "Pair %s->%s: %s -> %s (%s): %s", pair.From, pair.To, from, pair.State, pair.Reason, pair.Message)
	}
	if more > 0 {
		r.EventRecorder.Eventf(mesh, nil, corev1.EventTypeNormal, "PairsChanged", "Judge", "%d more pairs changed state; see status.pairTotals and status.zones, or the metric spirefed_mesh_zone_pairs_not_converged", more)
	}
}

// planInput is what the planner needs from one pass: the mesh, its members,
// what was observed, and the identity of the mesh's workloads when a mesh
// integration is set.
func (r *FederationMeshReconciler) planInput(scope *meshScope) plan.Input {
	input := meshstatus.PlanInput(scope.mesh, scope.members, scope.observed)
	input.Identities = meshintegration.WithIdentity(input.Identities, scope.mesh.Spec.MeshIntegration)
	return input
}
