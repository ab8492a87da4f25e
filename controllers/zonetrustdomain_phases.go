package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/status"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// reconcileAccess connects to the zone's cluster and probes it. It returns
// nil and no error when the zone cannot be reached: the Secret watch and the
// registry's health probe enqueue the zone when that changes, so there is
// nothing to gain from an error backoff.
func (r *ZoneTrustDomainReconciler) reconcileAccess(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (*zones.Zone, error) {
	connected, err := r.Zones.Connect(ctx, zone)
	if err == nil {
		err = connected.RecentProbe(ctx)
	}
	var accessErr *zones.AccessError
	switch {
	case errors.As(err, &accessErr):
		r.setCondition(zone, spirefedv1alpha1.ClusterReachableCondition, metav1.ConditionFalse, accessErr.Reason, accessErr.Message)
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("connecting to zone %s: %w", zone.Name, err)
	}
	r.setCondition(zone, spirefedv1alpha1.ClusterReachableCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected, "The operator reaches the zone's API server")
	return connected, nil
}

// reconcileSpire installs or upgrades SPIRE in a Helm zone and reports
// SpireInstalled. It returns how soon to look again (0: at the resync).
func (r *ZoneTrustDomainReconciler) reconcileSpire(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, connected *zones.Zone) (requeue time.Duration, err error) {
	if zone.Spec.Spire.Install != spirefedv1alpha1.SpireInstallHelm {
		meta.RemoveStatusCondition(&zone.Status.Conditions, spirefedv1alpha1.SpireInstalledCondition)
		zone.Status.Spire = nil
		return 0, nil
	}
	if zone.Status.Spire == nil || zone.Status.Spire.ReleaseName != zone.Spec.Spire.ReleaseName {
		zone.Status.Spire = &spirefedv1alpha1.SpireReleaseStatus{ReleaseName: zone.Spec.Spire.ReleaseName}
	}
	if connected == nil {
		if meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.SpireInstalledCondition) == nil {
			r.setCondition(zone, spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionUnknown, spirefedv1alpha1.ReasonClusterNotReachable,
				"SPIRE is installed once the zone's cluster is reachable")
		}
		return 0, nil
	}
	outcome, err := r.reconcileReleases(ctx, zone, connected)
	if outcome.Acted {
		metrics.RecordHelmAction(zone.Name, outcome.Release.LastAction, outcome.Release.LastActionResult)
	}
	zone.Status.Spire = &outcome.Release
	if err != nil {
		return 0, err
	}
	if installed := outcome.Installed; installed.Type != "" {
		r.setCondition(zone, installed.Type, installed.Status, installed.Reason, installed.Message)
	}
	for _, event := range outcome.Events {
		r.EventRecorder.Eventf(zone, nil, event.Type, event.Reason, event.Action, "%s", event.Message)
		ctrl.LoggerFrom(ctx).Info("Helm release", "reason", event.Reason, "message", event.Message)
	}
	return outcome.Requeue, nil
}

// readBootstrap returns the zone's bootstrap ConfigMap as its watch last
// saw it, or, while the watch has not read it (yet, or again), as the
// zone's API server answers now. A missing ConfigMap is a NotFound error.
func readBootstrap(ctx context.Context, connected *zones.Zone, view *bundle.ConfigMapView, selector spirefedv1alpha1.ConfigMapKeySelector) (*corev1.ConfigMap, error) {
	if watched, synced := view.Latest(); synced {
		if watched == nil {
			return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), selector.Name)
		}
		return watched, nil
	}
	configMap := &corev1.ConfigMap{}
	if err := connected.Client.Get(ctx, types.NamespacedName{Namespace: selector.Namespace, Name: selector.Name}, configMap); err != nil {
		return nil, err
	}
	return configMap, nil
}

// reconcileBootstrap reads the zone's bootstrap X.509 authorities through
// the zone's API, keeps a watch on their ConfigMap, and returns them. On any
// failure the last good ones stay in status and nil is returned.
func (r *ZoneTrustDomainReconciler) reconcileBootstrap(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, connected *zones.Zone) ([]*x509.Certificate, error) {
	if connected == nil {
		if zone.Status.Bootstrap == nil {
			r.setCondition(zone, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonClusterNotReachable,
				"The bootstrap bundle cannot be read until the zone's cluster is reachable")
		}
		return nil, nil
	}
	selector := zone.BootstrapConfigMap()
	watchID := selector.Namespace + "/" + selector.Name
	view := r.bootstraps.of(zone.Name, watchID)
	r.Zones.EnsureWatch(zones.KeyOf(zone), "bootstrap-configmap", watchID, func(ctx context.Context, z *zones.Zone, notify func()) {
		bundle.WatchConfigMap(ctx, z.Clientset, selector.Namespace, selector.Name, view, notify)
	})
	configMap, err := readBootstrap(ctx, connected, view, selector)
	switch {
	case apierrors.IsNotFound(err):
		r.setCondition(zone, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleNotFound,
			fmt.Sprintf("ConfigMap %s/%s does not exist in the zone's cluster", selector.Namespace, selector.Name))
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading bootstrap bundle of zone %s from ConfigMap %s/%s: %w", zone.Name, selector.Namespace, selector.Name, err)
	}
	pemData, ok := configMap.Data[selector.Key]
	if !ok {
		r.setCondition(zone, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleNotFound,
			fmt.Sprintf("ConfigMap %s/%s has no key %q", selector.Namespace, selector.Name, selector.Key))
		return nil, nil
	}
	parsed, dropped, err := bundle.ParseX509Authorities(zone.Spec.TrustDomain, []byte(pemData), bundle.Checks{Now: r.Clock.Now()})
	if err != nil {
		r.setCondition(zone, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleInvalid,
			fmt.Sprintf("ConfigMap %s/%s key %q: %v; the last good authorities are kept", selector.Namespace, selector.Name, selector.Key, err))
		return nil, nil
	}

	authorities := bundle.DescribeX509Authorities(parsed.X509Authorities())
	if zone.Status.Bootstrap == nil || !equality.Semantic.DeepEqual(zone.Status.Bootstrap.X509Authorities, authorities) {
		now := metav1.NewTime(r.Clock.Now())
		zone.Status.Bootstrap = &spirefedv1alpha1.BootstrapStatus{X509Authorities: authorities, LastChangeTime: &now}
	}
	r.setCondition(zone, spirefedv1alpha1.BundleAvailableCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonBundleRead,
		fmt.Sprintf("Read %d X.509 authorities from ConfigMap %s/%s", len(authorities), selector.Namespace, selector.Name))
	if zone.Status.Bundle == nil || zone.Status.Bundle.Source == spirefedv1alpha1.BundleSourceConfigMap {
		// Until the endpoint answers, peers get the bootstrap authorities:
		// enough for their SPIRE to authenticate the endpoint itself.
		accepted, err := bundle.Describe(bundle.FromX509(parsed.TrustDomain(), parsed.X509Authorities()), dropped, spirefedv1alpha1.BundleSourceConfigMap, zone.Status.Bundle, r.Clock.Now())
		if err != nil {
			return nil, err
		}
		r.warnDropped(zone, zone.Status.Bundle, accepted, "ConfigMap "+selector.Namespace+"/"+selector.Name)
		r.recordRotation(zone, zone.Status.Bundle, accepted)
		zone.Status.Bundle = accepted
	}
	return parsed.X509Authorities(), nil
}

func (r *ZoneTrustDomainReconciler) setCondition(zone *spirefedv1alpha1.ZoneTrustDomain, conditionType string, conditionStatus metav1.ConditionStatus, reason, message string) {
	status.SetCondition(&zone.Status.Conditions, zone.Generation, conditionType, conditionStatus, reason, message)
}

// warnDropped records a warning Event for every authority that the zone
// publishes but the operator newly leaves out of next, as outside its
// validity window.
func (r *ZoneTrustDomainReconciler) warnDropped(zone *spirefedv1alpha1.ZoneTrustDomain, current, next *spirefedv1alpha1.BundleStatus, source string) {
	for _, authority := range bundle.NewlyDropped(current, next) {
		r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "AuthorityDropped", "Validate",
			"%s publishes X.509 authority %s (sha256 %s), which is left out of the bundle peers get: %s",
			source, authority.Subject, authority.SHA256Fingerprint, authority.Reason)
	}
}

// recordRotation records an Event when the zone's accepted bundle changes
// (a CA rotation reaching the operator): old and new sequence and X.509
// fingerprints.
func (r *ZoneTrustDomainReconciler) recordRotation(zone *spirefedv1alpha1.ZoneTrustDomain, current, next *spirefedv1alpha1.BundleStatus) {
	if current == nil || current.Digest == next.Digest {
		return
	}
	describe := func(b *spirefedv1alpha1.BundleStatus) string {
		sequence := "none"
		if b.Sequence != nil {
			sequence = fmt.Sprint(*b.Sequence)
		}
		fingerprints := make([]string, 0, len(b.X509Authorities))
		for _, authority := range b.X509Authorities {
			fingerprints = append(fingerprints, authority.SHA256Fingerprint[:12])
		}
		return fmt.Sprintf("sequence %s, X.509 %s, %d JWT", sequence, strings.Join(fingerprints, " "), len(b.JWTAuthorityKeyIDs))
	}
	r.EventRecorder.Eventf(zone, nil, corev1.EventTypeNormal, "BundleRotated", "Accept",
		"Accepted a new bundle from %s: %s (was %s); peers get it now", next.Source, describe(next), describe(current))
}
