package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// FederationMeshReconciler resolves a mesh's member zones and reports
// whether they are all present and Ready.
type FederationMeshReconciler struct {
	client.Client
	// EventRecorder records condition transitions.
	EventRecorder events.EventRecorder
}

// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes,verbs=get;list;watch
// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes/status,verbs=get;update;patch

// SetupWithManager registers the reconciler and its watches.
func (r *FederationMeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.EventRecorder == nil {
		return errors.New("FederationMeshReconciler needs an EventRecorder")
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&spirefedv1alpha1.FederationMesh{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&spirefedv1alpha1.ZoneTrustDomain{}, handler.EnqueueRequestsFromMapFunc(r.meshesForZone)).
		Complete(r)
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

// Reconcile resolves the members of one mesh and writes its status once.
func (r *FederationMeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	mesh := &spirefedv1alpha1.FederationMesh{}
	if err := r.Get(ctx, req.NamespacedName, mesh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := mesh.DeepCopy()
	defer func() {
		if err := r.writeStatus(ctx, before, mesh); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	members, err := r.resolveMembers(ctx, mesh)
	if err != nil {
		return ctrl.Result{}, err
	}
	mesh.Status.ObservedGeneration = mesh.Generation
	setMeshMembers(mesh, members)
	return ctrl.Result{}, nil
}

// resolveMembers returns the member zones by name; a named zone that does
// not exist maps to nil.
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
			members[zoneList.Items[i].Name] = &zoneList.Items[i]
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
		default:
			members[name] = zone
		}
	}
	return members, nil
}

// setMeshMembers fills the mesh's member list, counts and conditions from
// the resolved members.
func setMeshMembers(mesh *spirefedv1alpha1.FederationMesh, members map[string]*spirefedv1alpha1.ZoneTrustDomain) {
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)

	var missing, notReady []string
	mesh.Status.Zones = make([]spirefedv1alpha1.MemberZone, 0, len(names))
	mesh.Status.ReadyZones = 0
	for _, name := range names {
		member := spirefedv1alpha1.MemberZone{Name: name, Ready: metav1.ConditionUnknown}
		zone := members[name]
		switch {
		case zone == nil:
			missing = append(missing, name)
		default:
			member.TrustDomain = zone.Spec.TrustDomain
			if ready := meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition); ready != nil {
				member.Ready = ready.Status
			}
			if member.Ready == metav1.ConditionTrue {
				mesh.Status.ReadyZones++
			} else {
				notReady = append(notReady, name)
			}
		}
		mesh.Status.Zones = append(mesh.Status.Zones, member)
	}
	mesh.Status.TotalZones = int32(len(names))

	reason, message := resolveProblem(mesh, members, missing)
	if reason != "" {
		setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionFalse, reason, message)
		setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, reason, message)
		return
	}
	setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionTrue,
		spirefedv1alpha1.ReasonResolved, fmt.Sprintf("All %d member zones exist", len(names)))
	if len(notReady) > 0 {
		setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse,
			spirefedv1alpha1.ReasonZonesNotReady, fmt.Sprintf("%d of %d zones are Ready; not Ready: %s", mesh.Status.ReadyZones, len(names), strings.Join(notReady, ", ")))
		return
	}
	setCondition(&mesh.Status.Conditions, mesh.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue,
		spirefedv1alpha1.ReasonSucceeded, fmt.Sprintf("All %d member zones are Ready", len(names)))
}

// resolveProblem returns why the members do not fit the spec, or "" when
// they do: a named zone is missing, or the topology names a non-member
// (possible with a label selector, which admission cannot check).
func resolveProblem(mesh *spirefedv1alpha1.FederationMesh, members map[string]*spirefedv1alpha1.ZoneTrustDomain, missing []string) (string, string) {
	if len(missing) > 0 {
		return spirefedv1alpha1.ReasonZoneNotFound, fmt.Sprintf("ZoneTrustDomains %s do not exist", strings.Join(missing, ", "))
	}
	topology := mesh.Spec.Topology
	if topology.Type == spirefedv1alpha1.TopologyHubAndSpoke {
		if _, ok := members[topology.Hub]; !ok {
			return spirefedv1alpha1.ReasonHubNotMember, fmt.Sprintf("The hub %q is not a member zone", topology.Hub)
		}
	}
	for _, link := range topology.Links {
		for _, end := range []string{link.From, link.To} {
			if _, ok := members[end]; !ok {
				return spirefedv1alpha1.ReasonLinkNotMember, fmt.Sprintf("Link %s -> %s names %q, which is not a member zone", link.From, link.To, end)
			}
		}
	}
	if len(members) == 0 {
		return spirefedv1alpha1.ReasonZoneNotFound, "No ZoneTrustDomain matches zones.selector"
	}
	return "", ""
}

func (r *FederationMeshReconciler) writeStatus(ctx context.Context, before, mesh *spirefedv1alpha1.FederationMesh) error {
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
