package controllers

import (
	"context"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// The zone controller watches FederationMeshes so that a change of a
// mesh's SPIRE agent SDS profile (MeshSDSValues: its integration type, its
// members, its deletion) reaches the Helm releases of the zones concerned
// at once, not at their next resync.

// meshSDSKey is what of a mesh decides the SDS profile it asks of its
// member zones: "" for none (no integration, or being deleted), else the
// integration type and the member zones.
func meshSDSKey(mesh *spirefedv1alpha1.FederationMesh) string {
	if mesh == nil || mesh.Spec.MeshIntegration == nil || !mesh.DeletionTimestamp.IsZero() {
		return ""
	}
	members := make([]string, 0, len(mesh.Status.Zones))
	for _, member := range mesh.Status.Zones {
		members = append(members, member.Name)
	}
	slices.Sort(members)
	return string(mesh.Spec.MeshIntegration.Type) + ":" + strings.Join(members, ",")
}

// meshSDSChanged passes the mesh events that can change a member zone's
// SDS profile; the many status writes of a mesh pass do not.
var meshSDSChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return meshSDSKey(asMesh(e.Object)) != "" },
	DeleteFunc: func(e event.DeleteEvent) bool { return meshSDSKey(asMesh(e.Object)) != "" },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return meshSDSKey(asMesh(e.ObjectOld)) != meshSDSKey(asMesh(e.ObjectNew))
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}

func asMesh(object client.Object) *spirefedv1alpha1.FederationMesh {
	mesh, _ := object.(*spirefedv1alpha1.FederationMesh)
	return mesh
}

// zonesForMesh maps a mesh to its member zones whose SPIRE the operator
// installs with Helm (the only ones with an SDS profile in their values).
// On an update the handler maps the old and the new mesh, so a zone that
// left is reconciled too.
func (r *ZoneTrustDomainReconciler) zonesForMesh(ctx context.Context, object client.Object) []reconcile.Request {
	mesh := asMesh(object)
	if mesh == nil || mesh.Spec.MeshIntegration == nil {
		return nil
	}
	var requests []reconcile.Request
	for _, member := range mesh.Status.Zones {
		zone := &spirefedv1alpha1.ZoneTrustDomain{}
		if err := r.Get(ctx, types.NamespacedName{Name: member.Name}, zone); err != nil {
			if !apierrors.IsNotFound(err) {
				ctrl.LoggerFrom(ctx).Error(err, "Reading a mesh member zone for its SDS profile", "mesh", mesh.Name, "zone", member.Name)
			}
			continue
		}
		if zone.Spec.Spire.Install == spirefedv1alpha1.SpireInstallHelm {
			requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Name: zone.Name}})
		}
	}
	return requests
}
