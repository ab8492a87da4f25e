package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	meshstatus "github.com/spirefed/spire-federation-operator/internal/mesh"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

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
	live, err := apply.Observe(ctx, connected.Owned(), mesh.Name, name, false)
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
		errs = append(errs, r.writeStatus(ctx, before, mesh, nil))
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
	r.plans.forget(mesh.Name)
	r.settled.forget(mesh.Name)
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
