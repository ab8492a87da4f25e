package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// kubeconfigSecretIndex indexes ZoneTrustDomains by the name of their
// kubeconfig Secret.
const kubeconfigSecretIndex = ".spec.cluster.kubeconfigSecretRef.name"

// DefaultZoneResyncInterval is how often a healthy zone is read again.
const DefaultZoneResyncInterval = time.Minute

// ZoneTrustDomainReconciler connects to each zone's cluster, probes it,
// reads its bootstrap bundle and reports both in status.
type ZoneTrustDomainReconciler struct {
	client.Client
	// Zones gives clients of the zones' clusters.
	Zones *zones.Registry
	// EventRecorder records condition transitions.
	EventRecorder events.EventRecorder
	// ResyncInterval between reads of a zone; DefaultZoneResyncInterval if zero.
	ResyncInterval time.Duration
	// Applier removes what the operator wrote in a deleted zone's cluster.
	Applier *apply.Applier
	// Helm installs SPIRE in zones with spire.install Helm.
	Helm *HelmOptions
	// APIReader reads, uncached, chart ConfigMaps in Namespace.
	APIReader client.Reader
	// Namespace of the operator (kubeconfig Secrets, chart ConfigMaps).
	Namespace string
	// MaxConcurrentReconciles; zones are reconciled in parallel (Helm
	// actions take seconds). 4 if zero.
	MaxConcurrentReconciles int
	// Fetcher fetches bundles from bundle endpoints.
	Fetcher bundle.Fetcher
	// FetchSchedule bounds how often they are fetched.
	FetchSchedule FetchSchedule
	// Now returns the time; time.Now if nil.
	Now func() time.Time
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
	if r.Zones == nil || r.EventRecorder == nil || r.Applier == nil || r.Helm == nil || r.APIReader == nil {
		return errors.New("ZoneTrustDomainReconciler needs Zones, Applier, Helm, APIReader and EventRecorder")
	}
	concurrency := r.MaxConcurrentReconciles
	if concurrency <= 0 {
		concurrency = 4
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &spirefedv1alpha1.ZoneTrustDomain{}, kubeconfigSecretIndex, indexKubeconfigSecret); err != nil {
		return fmt.Errorf("indexing zones by kubeconfig Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&spirefedv1alpha1.ZoneTrustDomain{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.zonesForSecret)).
		WatchesRawSource(r.Zones.Source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency}).
		Complete(r)
}

func indexKubeconfigSecret(obj client.Object) []string {
	zone := obj.(*spirefedv1alpha1.ZoneTrustDomain)
	if ref := zone.Spec.Cluster.KubeconfigSecretRef; ref != nil {
		return []string{ref.Name}
	}
	return nil
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

// Reconcile runs the phases of one zone and writes its status once.
func (r *ZoneTrustDomainReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := r.Get(ctx, req.NamespacedName, zone); err != nil {
		if apierrors.IsNotFound(err) {
			r.Zones.Forget(req.Name)
			metrics.ForgetZone(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading zone %s: %w", req.Name, err)
	}
	if !zone.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, zone)
	}
	if controllerutil.AddFinalizer(zone, spirefedv1alpha1.ZoneFinalizer) {
		if err := r.Update(ctx, zone); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to zone %s: %w", zone.Name, err)
		}
	}

	before := zone.DeepCopy()
	defer func() {
		if err := r.writeStatus(ctx, before, zone); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	zone.Status.ObservedGeneration = zone.Generation
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
	var bootstrapAuthorities []*x509.Certificate
	if connected != nil {
		if bootstrapAuthorities, err = r.reconcileBootstrap(ctx, zone, connected); err != nil {
			return ctrl.Result{}, err
		}
	} else if zone.Status.Bootstrap == nil {
		setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse,
			spirefedv1alpha1.ReasonClusterNotReachable, "The bootstrap bundle cannot be read until the zone's cluster is reachable")
	}
	nextFetch, err := r.reconcileFetch(ctx, zone, bootstrapAuthorities)
	if err != nil {
		return ctrl.Result{}, err
	}
	summarizeZoneReady(zone)
	log.V(1).Info("Reconciled zone", "ready", meta.IsStatusConditionTrue(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition), "nextFetch", nextFetch)
	next := min(nextFetch, r.resyncInterval())
	if nextSpire > 0 {
		next = min(next, nextSpire)
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// reconcileDelete removes what the operator wrote in the zone's cluster,
// then lets the zone go. While the cluster cannot be reached the finalizer
// stays and Ready says why; remove the finalizer by hand to abandon a
// cluster that will never come back.
func (r *ZoneTrustDomainReconciler) reconcileDelete(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(zone, spirefedv1alpha1.ZoneFinalizer) {
		r.Zones.Forget(zone.Name)
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
	connected, err := r.Zones.Connect(ctx, zone)
	if err == nil {
		var deleted int
		deleted, err = r.Applier.RemoveZone(ctx, connected.Client, zone.Name)
		ctrl.LoggerFrom(ctx).Info("Removed the zone's federation objects", "deleted", deleted)
	}
	if err != nil {
		return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting to remove the operator's objects from the zone's cluster: %v", err), r.resyncInterval())
	}
	if zone.Spec.Spire.Install == spirefedv1alpha1.SpireInstallHelm && zone.Spec.Spire.DeletionPolicy == spirefedv1alpha1.DeletionDelete {
		if err := r.Helm.Installer.Uninstall(connected.Config, zone.Spec.Spire.Namespace, zone.Spec.Spire.ReleaseName); err != nil {
			return r.waitDeleting(ctx, zone, fmt.Sprintf("Waiting to uninstall SPIRE (deletionPolicy Delete): %v", err), r.resyncInterval())
		}
		ctrl.LoggerFrom(ctx).Info("Uninstalled SPIRE", "release", zone.Spec.Spire.ReleaseName)
	}
	r.Zones.Forget(zone.Name)
	controllerutil.RemoveFinalizer(zone, spirefedv1alpha1.ZoneFinalizer)
	if err := r.Update(ctx, zone); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// zoneDeleteWaitInterval is how soon a deleted zone looks again whether its
// meshes have left it (their reconciles also enqueue it).
const zoneDeleteWaitInterval = 2 * time.Second

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
	setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonDeleting, message)
	if err := r.writeStatus(ctx, before, zone); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: interval}, nil
}

// reconcileAccess connects to the zone's cluster and probes it. It returns
// nil and no error when the zone cannot be reached: the Secret watch and the
// registry's health probe enqueue the zone when that changes, so there is
// nothing to gain from an error backoff.
func (r *ZoneTrustDomainReconciler) reconcileAccess(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (*zones.Zone, error) {
	connected, err := r.Zones.Connect(ctx, zone)
	if err == nil {
		err = connected.Probe(ctx)
	}
	var accessErr *zones.AccessError
	switch {
	case errors.As(err, &accessErr):
		setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ClusterReachableCondition, metav1.ConditionFalse,
			accessErr.Reason, accessErr.Message)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("connecting to zone %s: %w", zone.Name, err)
	}
	setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ClusterReachableCondition, metav1.ConditionTrue,
		spirefedv1alpha1.ReasonConnected, "The operator reaches the zone's API server")
	return connected, nil
}

// reconcileBootstrap reads the zone's bootstrap X.509 authorities through
// the zone's API and returns them. On any failure the last good ones stay
// in status and nil is returned.
func (r *ZoneTrustDomainReconciler) reconcileBootstrap(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, connected *zones.Zone) ([]*x509.Certificate, error) {
	selector := zone.BootstrapConfigMap()
	configMap := &corev1.ConfigMap{}
	err := connected.Client.Get(ctx, types.NamespacedName{Namespace: selector.Namespace, Name: selector.Name}, configMap)
	switch {
	case apierrors.IsNotFound(err):
		setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse,
			spirefedv1alpha1.ReasonBundleNotFound, fmt.Sprintf("ConfigMap %s/%s does not exist in the zone's cluster", selector.Namespace, selector.Name))
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading bootstrap bundle of zone %s from ConfigMap %s/%s: %w", zone.Name, selector.Namespace, selector.Name, err)
	}
	pemData, ok := configMap.Data[selector.Key]
	if !ok {
		setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse,
			spirefedv1alpha1.ReasonBundleNotFound, fmt.Sprintf("ConfigMap %s/%s has no key %q", selector.Namespace, selector.Name, selector.Key))
		return nil, nil
	}
	parsed, _, err := bundle.ParseX509Authorities(zone.Spec.TrustDomain, []byte(pemData), bundle.Checks{})
	if err != nil {
		setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse,
			spirefedv1alpha1.ReasonBundleInvalid, fmt.Sprintf("ConfigMap %s/%s key %q: %v; the last good authorities are kept", selector.Namespace, selector.Name, selector.Key, err))
		return nil, nil
	}

	authorities := bundle.DescribeX509Authorities(parsed.X509Authorities())
	if zone.Status.Bootstrap == nil || !equality.Semantic.DeepEqual(zone.Status.Bootstrap.X509Authorities, authorities) {
		now := metav1.NewTime(r.now())
		zone.Status.Bootstrap = &spirefedv1alpha1.BootstrapStatus{X509Authorities: authorities, LastChangeTime: &now}
	}
	setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionTrue,
		spirefedv1alpha1.ReasonBundleRead, fmt.Sprintf("Read %d X.509 authorities from ConfigMap %s/%s", len(authorities), selector.Namespace, selector.Name))
	if zone.Status.Bundle == nil || zone.Status.Bundle.Source == spirefedv1alpha1.BundleSourceConfigMap {
		// Until the endpoint answers, peers get the bootstrap authorities:
		// enough for their SPIRE to authenticate the endpoint itself.
		if err := r.acceptBundle(zone, bundle.FromX509(parsed.TrustDomain(), parsed.X509Authorities()), spirefedv1alpha1.BundleSourceConfigMap); err != nil {
			return nil, err
		}
	}
	return parsed.X509Authorities(), nil
}

// writeStatus patches the status when it changed, records an event for
// every condition that changed status, and updates the zone's metrics.
func (r *ZoneTrustDomainReconciler) writeStatus(ctx context.Context, before, zone *spirefedv1alpha1.ZoneTrustDomain) error {
	recordZoneMetrics(zone)
	if equality.Semantic.DeepEqual(before.Status, zone.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, zone, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing status of zone %s: %w", zone.Name, err)
	}
	recordConditionEvents(r.EventRecorder, zone, before.Status.Conditions, zone.Status.Conditions)
	return nil
}

func recordZoneMetrics(zone *spirefedv1alpha1.ZoneTrustDomain) {
	for _, condition := range zone.Status.Conditions {
		value := 0.0
		if condition.Status == metav1.ConditionTrue {
			value = 1
		}
		metrics.ZoneCondition.WithLabelValues(zone.Name, condition.Type).Set(value)
	}
	if zone.Status.Bundle == nil {
		return
	}
	metrics.ZoneX509Authorities.WithLabelValues(zone.Name).Set(float64(len(zone.Status.Bundle.X509Authorities)))
	var earliest time.Time
	for _, authority := range zone.Status.Bundle.X509Authorities {
		if earliest.IsZero() || authority.NotAfter.Time.Before(earliest) {
			earliest = authority.NotAfter.Time
		}
	}
	metrics.ZoneX509AuthorityExpiry.WithLabelValues(zone.Name).Set(float64(earliest.Unix()))
}

func (r *ZoneTrustDomainReconciler) resyncInterval() time.Duration {
	if r.ResyncInterval > 0 {
		return r.ResyncInterval
	}
	return DefaultZoneResyncInterval
}

func (r *ZoneTrustDomainReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
