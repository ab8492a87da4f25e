package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/status"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// kubeconfigSecretIndex indexes ZoneTrustDomains by the name of their
// kubeconfig Secret.
const kubeconfigSecretIndex = ".spec.cluster.kubeconfigSecretRef.name"

// zoneDeleteWaitInterval is how soon a deleted zone looks again whether its
// meshes have left it (their reconciles also enqueue it).
const zoneDeleteWaitInterval = 2 * time.Second

// ZoneTrustDomainReconciler connects to each zone's cluster, probes it,
// installs SPIRE there (install Helm), reads the zone's bootstrap bundle,
// fetches its bundle endpoint, and reports all of it in status. Every
// field is required.
type ZoneTrustDomainReconciler struct {
	client.Client
	// APIReader lists meshes uncached when a zone is deleted.
	APIReader     client.Reader
	Zones         ZoneConnector
	EventRecorder events.EventRecorder
	// Applier removes what the operator wrote in a deleted zone's cluster.
	Applier ZoneWriter
	// Spire reaches the SPIRE servers of nested and HA trust domains'
	// clusters (optional: without it they are not observed).
	Spire SpireAccess
	// Releases installs SPIRE in zones with spire.install Helm.
	Releases SpireReleases
	// Fetcher fetches bundles from bundle endpoints, as often as
	// FetchSchedule says.
	Fetcher       BundleFetcher
	FetchSchedule bundle.Schedule
	// ResyncInterval between reads of a healthy zone.
	ResyncInterval time.Duration
	// MaxConcurrentReconciles: zones are reconciled in parallel (Helm
	// actions take seconds).
	MaxConcurrentReconciles int
	Clock                   clock.Clock

	// fetches remembers when each zone's endpoint is next due.
	fetches bundle.Due
	// bootstraps are the zones' bootstrap ConfigMaps as their watches
	// last saw them.
	bootstraps bootstrapViews
}

// +kubebuilder:rbac:groups=spirefed.io,resources=zonetrustdomains,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=spirefed.io,resources=zonetrustdomains/finalizers,verbs=update
// +kubebuilder:rbac:groups=spirefed.io,resources=federationmeshes,verbs=get;list;watch
// +kubebuilder:rbac:groups=spirefed.io,resources=zonetrustdomains/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",namespace=spirefed-system,resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=spirefed-system,resources=configmaps,verbs=get

// SetupWithManager registers the reconciler and its watches.
func (r *ZoneTrustDomainReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.Zones == nil || r.EventRecorder == nil || r.Applier == nil || r.Releases == nil || r.APIReader == nil || r.Fetcher == nil || r.Clock == nil {
		return errors.New("ZoneTrustDomainReconciler needs Zones, Applier, Releases, Fetcher, APIReader, EventRecorder and Clock")
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &spirefedv1alpha1.ZoneTrustDomain{}, kubeconfigSecretIndex, indexKubeconfigSecret); err != nil {
		return fmt.Errorf("indexing zones by kubeconfig Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		// Annotations too: the sequence reset annotation asks for a fetch.
		For(&spirefedv1alpha1.ZoneTrustDomain{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.zonesForSecret)).
		WatchesRawSource(r.Zones.Source()).
		// A mesh's SDS profile reaches its Helm zones' releases at once.
		Watches(&spirefedv1alpha1.FederationMesh{}, handler.EnqueueRequestsFromMapFunc(r.zonesForMesh), builder.WithPredicates(meshSDSChanged)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// indexKubeconfigSecret indexes a zone by the kubeconfig Secrets of every
// cluster of its trust domain (its own, nested children, HA sides).
func indexKubeconfigSecret(obj client.Object) []string {
	zone := obj.(*spirefedv1alpha1.ZoneTrustDomain)
	var names []string
	for _, cluster := range zones.Clusters(zone) {
		if ref := cluster.View.Spec.Cluster.KubeconfigSecretRef; ref != nil && !slices.Contains(names, ref.Name) {
			names = append(names, ref.Name)
		}
	}
	return append(names, rootKubeconfigSecrets(zone, names)...)
}

// zonesForSecret maps a kubeconfig Secret to the zones that use it. The
// manager caches Secrets of the operator's namespace only.
func (r *ZoneTrustDomainReconciler) zonesForSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var zoneList spirefedv1alpha1.ZoneTrustDomainList
	if err := r.List(ctx, &zoneList, client.MatchingFields{kubeconfigSecretIndex: secret.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing zones of a kubeconfig Secret", "secret", secret.GetName())
		return nil
	}
	requests := make([]reconcile.Request, 0, len(zoneList.Items))
	for _, zone := range zoneList.Items {
		requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Name: zone.Name}})
	}
	return requests
}

// Reconcile runs the phases of one zone and writes its status once:
// access, SPIRE install, bootstrap bundle, endpoint fetch, readiness.
func (r *ZoneTrustDomainReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := r.Get(ctx, req.NamespacedName, zone); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading zone %s: %w", req.Name, err)
	}
	if !zone.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, zone)
	}
	if err := addFinalizer(ctx, r.Client, zone, spirefedv1alpha1.ZoneFinalizer); err != nil {
		return ctrl.Result{}, err
	}
	before := zone.DeepCopy()
	defer func() { retErr = errors.Join(retErr, r.writeStatus(ctx, before, zone)) }()

	zone.Status.ClassName = zone.SpireClassName()
	zone.Status.EndpointSPIFFEID = zone.BundleEndpointSPIFFEID()
	connected, err := r.reconcileAccess(ctx, zone)
	if err != nil {
		return ctrl.Result{}, err
	}
	nextSpire, err := r.reconcileSpire(ctx, zone, connected)
	if err != nil {
		return ctrl.Result{}, err
	}
	bootstrapAuthorities, err := r.reconcileBootstrap(ctx, zone, connected)
	if err != nil {
		return ctrl.Result{}, err
	}
	// Before the fetch: an HA trust domain is fetched from a healthy side.
	nextClusters := r.reconcileClusters(ctx, zone)
	nextFetch, err := r.reconcileFetch(ctx, zone, bootstrapAuthorities)
	if err != nil {
		return ctrl.Result{}, err
	}
	summarizeZone(zone)
	// The pass acted on this generation.
	zone.Status.ObservedGeneration = zone.Generation
	ctrl.LoggerFrom(ctx).V(1).Info("Reconciled zone", "ready", meta.IsStatusConditionTrue(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition), "nextFetch", nextFetch)
	next := min(nextFetch, bundle.Jitter(r.ResyncInterval))
	if nextSpire > 0 {
		next = min(next, nextSpire)
	}
	if nextClusters > 0 {
		next = min(next, nextClusters)
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// forget drops what the operator keeps in memory for a deleted zone.
func (r *ZoneTrustDomainReconciler) forget(name string) {
	r.Zones.Forget(zones.Key{Name: name})
	r.fetches.Forget(name)
	r.bootstraps.forget(name)
	metrics.ForgetZone(name)
}

// reconcileDelete removes what the operator wrote in the zone's cluster,
// then lets the zone go. While the cluster cannot be reached the finalizer
// stays and Ready says why; remove the finalizer by hand to abandon a
// cluster that will never come back.
func (r *ZoneTrustDomainReconciler) reconcileDelete(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(zone, spirefedv1alpha1.ZoneFinalizer) {
		r.Zones.Forget(zones.KeyOf(zone))
		return ctrl.Result{}, nil
	}
	// Meshes remove their own objects first (in offboarding order), so
	// that none writes to the zone after the sweep below.
	meshes, err := r.meshesWrittenTo(ctx, zone.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(meshes) > 0 {
		return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting for meshes %s to remove their objects from the zone's cluster", strings.Join(meshes, ", ")), zoneDeleteWaitInterval)
	}
	if err := r.removeFromClusters(ctx, zone); err != nil {
		return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting to remove the operator's objects from the trust domain's clusters: %v", err), r.ResyncInterval)
	}
	connected, err := r.Zones.Connect(ctx, zone)
	if secretGone(err) {
		// The cluster cannot be reached ever again through this zone: let
		// it go, and say what stays behind there (as Flux does for a
		// HelmRelease whose kubeconfig is gone).
		r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "ObjectsLeftBehind", "Delete",
			"%s; the operator's objects in the zone's cluster are left behind: delete the ClusterFederatedTrustDomains, ClusterSPIFFEIDs and ClusterStaticEntries labelled %s=%s,%s=%s there%s",
			err.Error(), plan.LabelManagedBy, plan.ManagedBy, plan.LabelZone, zone.Name, leftReleases(zone))
		return r.release(ctx, zone)
	}
	if err == nil {
		var deleted int
		deleted, err = r.Applier.RemoveZone(ctx, connected.Client, zone.Name)
		ctrl.LoggerFrom(ctx).Info("Removed the zone's federation objects", "deleted", deleted)
	}
	if err != nil {
		return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting to remove the operator's objects from the zone's cluster: %v", err), r.ResyncInterval)
	}
	if zone.Spec.Spire.Install == spirefedv1alpha1.SpireInstallHelm && zone.Spec.Spire.DeletionPolicy == spirefedv1alpha1.DeletionDelete && isShaped(zone) {
		if err := r.Releases.UninstallShape(ctx, zone, r.clusterConfig(zone), r.releasesLeftBehind(zone)); err != nil {
			return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting to uninstall the spire-nested releases (deletionPolicy Delete): %v", err), r.ResyncInterval)
		}
		ctrl.LoggerFrom(ctx).Info("Uninstalled the spire-nested releases", "release", zone.Spec.Spire.ReleaseName)
	} else if zone.Spec.Spire.Install == spirefedv1alpha1.SpireInstallHelm && zone.Spec.Spire.DeletionPolicy == spirefedv1alpha1.DeletionDelete {
		if err := r.Releases.Uninstall(connected.Config, zone.Spec.Spire.Namespace, zone.Spec.Spire.ReleaseName); err != nil {
			return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting to uninstall SPIRE (deletionPolicy Delete): %v", err), r.ResyncInterval)
		}
		ctrl.LoggerFrom(ctx).Info("Uninstalled SPIRE", "release", zone.Spec.Spire.ReleaseName)
	}
	return r.release(ctx, zone)
}

// release removes the zone's finalizer.
func (r *ZoneTrustDomainReconciler) release(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (ctrl.Result, error) {
	r.Zones.Forget(zones.KeyOf(zone))
	return ctrl.Result{}, removeFinalizer(ctx, r.Client, zone, spirefedv1alpha1.ZoneFinalizer)
}

// secretGone says whether a connection failed because the zone's
// kubeconfig Secret (or its key) does not exist: unlike an unreachable
// cluster, nothing will bring that zone back.
func secretGone(err error) bool {
	var accessErr *zones.AccessError
	return errors.As(err, &accessErr) && accessErr.Reason == spirefedv1alpha1.ReasonSecretNotFound
}

// leftReleases names the SPIRE releases a deleted zone leaves behind when
// its kubeconfig Secret is gone, if it asked for them to be uninstalled.
func leftReleases(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	if zone.Spec.Spire.Install != spirefedv1alpha1.SpireInstallHelm || zone.Spec.Spire.DeletionPolicy != spirefedv1alpha1.DeletionDelete {
		return ""
	}
	return fmt.Sprintf(", and uninstall the Helm releases %s and %s in namespace %s (deletionPolicy Delete)",
		zone.Spec.Spire.ReleaseName, zone.Spec.Spire.ReleaseName+"-crds", zone.Spec.Spire.Namespace)
}

// meshesWrittenTo names the meshes that may still own objects in a zone.
func (r *ZoneTrustDomainReconciler) meshesWrittenTo(ctx context.Context, zoneName string) ([]string, error) {
	// Uncached: a mesh records a zone in status right before it first
	// writes there, and the cache may not show that yet.
	var meshList spirefedv1alpha1.FederationMeshList
	if err := r.APIReader.List(ctx, &meshList); err != nil {
		return nil, fmt.Errorf("listing meshes: %w", err)
	}
	var names []string
	for _, mesh := range meshList.Items {
		if slices.Contains(mesh.Status.AppliedZones, zoneName) {
			names = append(names, mesh.Name)
		}
	}
	return names, nil
}

// waitDeleting says in Ready why a deleted zone is still there, and
// looks again after interval.
func (r *ZoneTrustDomainReconciler) waitDeleting(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, message string, interval time.Duration) (ctrl.Result, error) {
	before := zone.DeepCopy()
	status.SetCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonDeleting, message)
	status.Progress(&zone.Status.Conditions, zone.Generation, nil)
	if err := r.writeStatus(ctx, before, zone); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: interval}, nil
}

// writeStatus records the zone's metrics and patches its status when it
// changed.
func (r *ZoneTrustDomainReconciler) writeStatus(ctx context.Context, before, zone *spirefedv1alpha1.ZoneTrustDomain) error {
	metrics.RecordZone(zone)
	return status.Patch(ctx, r.Client, r.EventRecorder, before, zone, func(z *spirefedv1alpha1.ZoneTrustDomain) any { return z.Status })
}
