package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
)

// The mesh integration phase: after the federation objects are applied,
// write (or prune) the mesh's Istio or Kuma objects in every reachable
// member zone, read what the zone's mesh install holds, and report it in
// status.zones[].meshIntegration and the MeshIntegrationReady condition.
// The mesh workloads' ClusterSPIFFEID is planned with the other identities
// (meshintegration.WithIdentity), so its federatesWith follows the same
// gate. A mesh problem never changes Ready.

// reconcileMeshIntegration runs the phase for every member zone.
func (r *FederationMeshReconciler) reconcileMeshIntegration(ctx context.Context, scope *meshScope) {
	mesh := scope.mesh
	conflicts := r.sdsConflicts(ctx, mesh)
	reports := map[string]spirefedv1alpha1.ZoneMeshIntegration{}
	for i := range mesh.Status.Zones {
		member := &mesh.Status.Zones[i]
		zone := scope.members[member.Name]
		if zone == nil {
			continue
		}
		member.MeshIntegration = r.reconcileZoneMeshIntegration(ctx, scope, zone, member.MeshIntegration, conflicts[member.Name])
		if mesh.Spec.MeshIntegration != nil && member.MeshIntegration != nil {
			reports[member.Name] = *member.MeshIntegration
		}
	}
	if mesh.Spec.MeshIntegration == nil {
		meta.RemoveStatusCondition(&mesh.Status.Conditions, spirefedv1alpha1.MeshIntegrationReadyCondition)
		return
	}
	meta.SetStatusCondition(&mesh.Status.Conditions, meshintegration.Summarize(reports, mesh.Generation))
}

// reconcileZoneMeshIntegration writes, prunes and judges one member zone,
// and returns its new status.zones[].meshIntegration (nil: nothing to
// report). previous is what status said before this pass.
func (r *FederationMeshReconciler) reconcileZoneMeshIntegration(ctx context.Context, scope *meshScope, zone *spirefedv1alpha1.ZoneTrustDomain,
	previous *spirefedv1alpha1.ZoneMeshIntegration, sdsConflicts []string) *spirefedv1alpha1.ZoneMeshIntegration {
	integration := scope.mesh.Spec.MeshIntegration
	if integration == nil && previous == nil {
		// No integration, and nothing written in the zone to remove.
		return nil
	}
	connected := scope.connected[zone.Name]
	if connected == nil || !slices.Contains(scope.mesh.Status.AppliedZones, zone.Name) {
		// Nothing is written or removed: what was written is remembered.
		if integration == nil {
			return previous
		}
		why := scope.observed.Unreachable[zone.Name]
		if err := scope.observed.ApplyErrors[zone.Name]; why == "" && err != nil {
			why = err.Error()
		}
		report := meshintegration.Unreachable(why)
		if previous != nil {
			report.Objects, report.PeerTrustDomains = previous.Objects, previous.PeerTrustDomains
		}
		return &report
	}
	input := meshintegration.ZoneOf(scope.mesh.Name, zone, scope.plan.Zones[zone.Name], scope.linksFrom(zone.Name), scope.members, scope.peerPEM, sdsConflicts)
	var written []string
	if previous != nil {
		written = previous.Objects
	}
	outcome := r.syncMeshObjects(ctx, connected.Client, scope.mesh, input, written)
	if outcome.Err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Cannot write the mesh integration's objects", "zone", zone.Name, "error", outcome.Err.Error())
	}
	if integration == nil {
		if len(outcome.Objects) == 0 {
			return nil
		}
		// Not all removed yet: keep the record for the next pass.
		scope.pending++
		return &spirefedv1alpha1.ZoneMeshIntegration{Ready: metav1.ConditionUnknown, Reason: spirefedv1alpha1.ReasonDeleting,
			Message: fmt.Sprintf("removing the mesh objects: %v", outcome.Err), Objects: outcome.Objects}
	}
	install, err := r.readMeshInstall(ctx, connected.Client, integration)
	outcome.Err = errors.Join(outcome.Err, err)
	report := meshintegration.Judge(integration, input, install, outcome)
	return &report
}

// keepMeshIntegrationStatus carries status.zones[].meshIntegration over
// from before the members were resolved again, so that what was written
// in a zone is remembered on every path.
func keepMeshIntegrationStatus(mesh *spirefedv1alpha1.FederationMesh, previous []spirefedv1alpha1.MemberZone) {
	for i := range mesh.Status.Zones {
		for _, old := range previous {
			if old.Name == mesh.Status.Zones[i].Name {
				mesh.Status.Zones[i].MeshIntegration = old.MeshIntegration
			}
		}
	}
}

// sdsConflicts lists, per member zone, the other meshes whose integration
// needs another SPIRE agent SDS profile there.
func (r *FederationMeshReconciler) sdsConflicts(ctx context.Context, mesh *spirefedv1alpha1.FederationMesh) map[string][]string {
	if mesh.Spec.MeshIntegration == nil {
		return nil
	}
	var meshList spirefedv1alpha1.FederationMeshList
	if err := r.List(ctx, &meshList); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing meshes for SDS profile conflicts")
		return nil
	}
	var others []meshintegration.Membership
	for _, other := range meshList.Items {
		if other.Spec.MeshIntegration == nil || other.Name == mesh.Name || !other.DeletionTimestamp.IsZero() {
			continue
		}
		others = append(others, membership(&other))
	}
	return meshintegration.SDSConflicts(membership(mesh), others)
}

func membership(mesh *spirefedv1alpha1.FederationMesh) meshintegration.Membership {
	out := meshintegration.Membership{Mesh: mesh.Name, Type: mesh.Spec.MeshIntegration.Type}
	for _, zone := range mesh.Status.Zones {
		out.Zones = append(out.Zones, zone.Name)
	}
	return out
}

// syncMeshObjects makes the zone hold the integration's objects: writes
// the desired ones that differ (server-side apply, one field manager),
// leaves objects it does not own untouched (Conflicts), and deletes the
// stale ones it owns. Outcome.Objects are those the zone holds for the
// mesh afterwards.
func (r *FederationMeshReconciler) syncMeshObjects(ctx context.Context, c client.Client, mesh *spirefedv1alpha1.FederationMesh, zone meshintegration.Zone, written []string) meshintegration.Outcome {
	var outcome meshintegration.Outcome
	desired, err := meshintegration.Desired(mesh.Name, mesh.Spec.MeshIntegration, zone)
	if err != nil {
		outcome.Err = err
		return outcome
	}
	// Stale objects go first: a Kuma MeshIdentity of another mesh name, a
	// PeerAuthentication no longer wanted.
	for _, key := range meshintegration.Stale(desired, meshintegration.Candidates(mesh.Spec.MeshIntegration), written) {
		if err := r.deleteOwned(ctx, c, key, mesh.Name, zone.Name); err != nil {
			outcome.Err = errors.Join(outcome.Err, err)
			outcome.Objects = append(outcome.Objects, key.Ref())
		}
	}
	for _, object := range desired {
		key := meshintegration.KeyOf(object)
		live := key.Object()
		err := c.Get(ctx, client.ObjectKeyFromObject(live), live)
		switch {
		case meta.IsNoMatchError(err):
			// The mesh's CRDs are not installed: Judge says so.
			continue
		case apierrors.IsNotFound(err):
		case err != nil:
			outcome.Err = errors.Join(outcome.Err, fmt.Errorf("reading %s: %w", key.Ref(), err))
			continue
		default:
			if owner := meshintegration.Owner(live, mesh.Name, zone.Name); owner != "" {
				outcome.Conflicts = append(outcome.Conflicts, fmt.Sprintf("%s exists and is %s: left untouched; delete it or move it aside", key.Ref(), owner))
				continue
			}
			if meshintegration.UpToDate(object, live) {
				outcome.Objects = append(outcome.Objects, key.Ref())
				continue
			}
		}
		metrics.ZoneWrites.WithLabelValues(zone.Name).Inc()
		if err := c.Patch(ctx, object, apply.Patch, client.FieldOwner(apply.FieldManager), client.ForceOwnership); err != nil {
			outcome.Err = errors.Join(outcome.Err, fmt.Errorf("applying %s: %w", key.Ref(), err))
			continue
		}
		outcome.Objects = append(outcome.Objects, key.Ref())
	}
	return outcome
}

// deleteOwned deletes an object when the mesh owns it in the zone.
func (r *FederationMeshReconciler) deleteOwned(ctx context.Context, c client.Client, key meshintegration.ObjectKey, mesh, zone string) error {
	live := key.Object()
	err := c.Get(ctx, client.ObjectKeyFromObject(live), live)
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", key.Ref(), err)
	}
	if meshintegration.Owner(live, mesh, zone) != "" {
		return nil
	}
	// Delete exactly what was read: an object re-created meanwhile by
	// someone else is not deleted.
	metrics.ZoneWrites.WithLabelValues(zone).Inc()
	if err := c.Delete(ctx, live, client.Preconditions{UID: ptrUID(live.GetUID())}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", key.Ref(), err)
	}
	return nil
}

func ptrUID(uid types.UID) *types.UID { return &uid }

// cleanupMeshIntegration removes what the mesh's integration wrote in a
// zone that left the mesh, or of a mesh being deleted, before the
// federation objects go.
func (r *FederationMeshReconciler) cleanupMeshIntegration(ctx context.Context, c client.Client, mesh *spirefedv1alpha1.FederationMesh, zone string) error {
	var written []string
	for _, member := range mesh.Status.Zones {
		if member.Name == zone && member.MeshIntegration != nil {
			written = member.MeshIntegration.Objects
		}
	}
	var errs []error
	for _, key := range meshintegration.Stale(nil, meshintegration.Candidates(mesh.Spec.MeshIntegration), written) {
		errs = append(errs, r.deleteOwned(ctx, c, key, mesh.Name, zone))
	}
	return errors.Join(errs...)
}

// readMeshInstall reads what the zone's mesh install holds; objects not
// found stay nil. Only reads: nothing the mesh's installer owns is written.
func (r *FederationMeshReconciler) readMeshInstall(ctx context.Context, c client.Client, integration *spirefedv1alpha1.MeshIntegration) (meshintegration.Install, error) {
	var install meshintegration.Install
	var errs []error
	get := func(key client.ObjectKey, object client.Object) bool {
		err := c.Get(ctx, key, object)
		if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) {
			errs = append(errs, fmt.Errorf("reading %T %s: %w", object, key, err))
		}
		return err == nil
	}
	switch integration.Type {
	case spirefedv1alpha1.MeshIstio:
		settings := meshintegration.IstioSettings(integration)
		namespace, revision := settings.Namespace, settings.Revision
		if configMap := (&corev1.ConfigMap{}); get(client.ObjectKey{Namespace: namespace, Name: meshintegration.IstioMeshConfigMapName(revision)}, configMap) {
			install.Istio.MeshConfig = configMap
		}
		if istiod := (&appsv1.Deployment{}); get(client.ObjectKey{Namespace: namespace, Name: meshintegration.IstiodName(revision)}, istiod) {
			install.Istio.Istiod = istiod
		}
		if injector := (&corev1.ConfigMap{}); get(client.ObjectKey{Namespace: namespace, Name: meshintegration.InjectorConfigMapName(revision)}, injector) {
			install.Istio.Injector = injector
		}
	case spirefedv1alpha1.MeshKuma:
		candidates := meshintegration.Candidates(integration)
		identity := candidates[0].Object()
		err := c.Get(ctx, client.ObjectKeyFromObject(identity), identity)
		install.Kuma.MeshIdentityServed = !meta.IsNoMatchError(err)
		switch {
		case err == nil:
			install.Kuma.MeshIdentity = identity
		case !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err):
			errs = append(errs, fmt.Errorf("reading %s: %w", candidates[0].Ref(), err))
		}
		kumaMesh := &unstructured.Unstructured{}
		kumaMesh.SetAPIVersion(meshintegration.KumaAPIVersion)
		kumaMesh.SetKind("Mesh")
		if get(client.ObjectKey{Name: meshintegration.KumaSettings(integration).Mesh}, kumaMesh) {
			install.Kuma.Mesh = kumaMesh
		}
	}
	return install, errors.Join(errs...)
}

// MeshSDSValues returns the spire chart values of a Helm zone's SPIRE agent
// SDS profile, from the meshes with an integration that count it as a
// member (status.zones): Istio's or Kuma's profile, or none when there is
// no such mesh or they disagree (the meshes report SDSProfileConflict). For
// spirehelm.Lifecycle.MeshValues; a mesh change reaches the zone's release
// at its next resync.
func MeshSDSValues(reader client.Reader) func(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (map[string]any, error) {
	return func(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (map[string]any, error) {
		var meshList spirefedv1alpha1.FederationMeshList
		if err := reader.List(ctx, &meshList); err != nil {
			return nil, fmt.Errorf("listing meshes: %w", err)
		}
		var types []spirefedv1alpha1.MeshIntegrationType
		for _, mesh := range meshList.Items {
			if mesh.Spec.MeshIntegration == nil || !mesh.DeletionTimestamp.IsZero() {
				continue
			}
			if slices.ContainsFunc(mesh.Status.Zones, func(member spirefedv1alpha1.MemberZone) bool { return member.Name == zone.Name }) {
				types = append(types, mesh.Spec.MeshIntegration.Type)
			}
		}
		values, _ := meshintegration.ZoneSDSProfile(types)
		return values, nil
	}
}
