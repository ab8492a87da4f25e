package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// HelmOptions configure the Helm installs of SPIRE.
type HelmOptions struct {
	// Installer runs the Helm actions.
	Installer *spirehelm.Installer
	// Charts fetches and caches the charts.
	Charts *spirehelm.ChartSource
	// RetryInterval is the first retry delay after a failed action; it
	// doubles with every failure up to MaxRetryInterval. 10s and 5m if zero.
	RetryInterval    time.Duration
	MaxRetryInterval time.Duration
	// ProgressInterval is how soon a release whose workloads are not ready
	// is checked again; 5s if zero.
	ProgressInterval time.Duration
}

// reconcileSpire installs or upgrades SPIRE in a Helm zone and reports
// SpireInstalled. It returns how soon to look again (0: at the resync).
func (r *ZoneTrustDomainReconciler) reconcileSpire(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, connected *zones.Zone) (time.Duration, error) {
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
			r.setSpireInstalled(zone, metav1.ConditionUnknown, spirefedv1alpha1.ReasonClusterNotReachable, "SPIRE is installed once the zone's cluster is reachable")
		}
		return 0, nil
	}
	values, err := spirehelm.Values(zone)
	var valuesErr *spirehelm.ValuesError
	if errors.As(err, &valuesErr) {
		// A spec problem: nothing to retry until the spec changes.
		r.setSpireInstalled(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonValuesConflict, valuesErr.Message+"; the running release is left untouched")
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	digest := specDigest(zone, values)
	if wait := r.helmBackoff(zone.Status.Spire, digest); wait > 0 {
		return wait, nil
	}
	desired, err := r.desiredRelease(ctx, zone, values)
	if err != nil {
		return r.spireFailed(zone, digest, "", spirefedv1alpha1.ReasonChartUnavailable, brief(err.Error())+"; the running release is left untouched"), nil
	}
	state, err := r.Helm.Installer.Reconcile(ctx, connected.Config, desired)
	recordReleases(zone.Status.Spire, state)
	if len(state.Drift) > 0 {
		r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "Drifted", spirehelm.ActionDriftCorrection,
			"Objects of release %s were changed by hand and are put back: %s", desired.ReleaseName, strings.Join(state.Drift, ", "))
	}
	var pending *spirehelm.PendingError
	var failed *spirehelm.ActionError
	switch {
	case errors.As(err, &pending):
		r.setSpireInstalled(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonProgressing,
			fmt.Sprintf("%v: another Helm action runs; an interrupted one is recovered after a while", pending))
		return r.progressInterval(), nil
	case errors.As(err, &failed):
		reason := spirefedv1alpha1.ReasonUpgradeFailed
		if failed.Action == spirehelm.ActionInstall {
			reason = spirefedv1alpha1.ReasonInstallFailed
		}
		return r.spireFailed(zone, digest, failed.Action, reason, brief(failed.Error())), nil
	case err != nil:
		return 0, fmt.Errorf("installing SPIRE in zone %s: %w", zone.Name, err)
	case state.Action == spirehelm.ActionRollback:
		// The desired release is not running: retry the upgrade later.
		r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "RolledBack", spirehelm.ActionRollback,
			"Release %s was rolled back to revision %d after a failed upgrade", desired.ReleaseName, zone.Status.Spire.Revision)
		wait := r.spireFailed(zone, digest, spirehelm.ActionRollback, spirefedv1alpha1.ReasonUpgradeFailed,
			fmt.Sprintf("The upgrade of release %s failed and was rolled back to revision %d (upgradeRemediation Rollback); it is retried with backoff", desired.ReleaseName, zone.Status.Spire.Revision))
		zone.Status.Spire.LastActionResult = "Succeeded"
		return wait, nil
	}

	status := zone.Status.Spire
	if state.Action != "" {
		r.recordAction(zone, state.Action, "Succeeded")
		r.EventRecorder.Eventf(zone, nil, corev1.EventTypeNormal, state.Action+"Succeeded", state.Action,
			"Helm %s of release %s succeeded: revision %d", strings.ToLower(state.Action), desired.ReleaseName, status.Revision)
		ctrl.LoggerFrom(ctx).Info("Helm action succeeded", "action", state.Action, "release", desired.ReleaseName, "revision", status.Revision)
	}
	status.Failures = 0
	status.LastAttemptedDigest = digest
	if state.NotReady != "" {
		r.setSpireInstalled(zone, metav1.ConditionFalse, spirefedv1alpha1.ReasonWorkloadsNotReady,
			fmt.Sprintf("Release %s revision %d is deployed; waiting: %s", desired.ReleaseName, status.Revision, state.NotReady))
		return r.progressInterval(), nil
	}
	r.setSpireInstalled(zone, metav1.ConditionTrue, spirefedv1alpha1.ReasonReleaseReady,
		fmt.Sprintf("Release %s revision %d (chart %s, SPIRE %s) and %s revision %d are deployed and ready",
			desired.ReleaseName, status.Revision, status.ChartVersion, status.AppVersion, spirehelm.CRDsReleaseName(desired.ReleaseName), status.CRDsRevision))
	return 0, nil
}

// chartSelection is where a zone's charts come from: repository (or
// ConfigMap) and versions, defaults applied.
func chartSelection(zone *spirefedv1alpha1.ZoneTrustDomain) (repository, configMap, spireVersion, crdsVersion string) {
	repository, spireVersion, crdsVersion = spirehelm.DefaultRepository, spirehelm.DefaultSpireVersion, spirehelm.DefaultCRDsVersion
	if charts := zone.Spec.Spire.Charts; charts != nil {
		if charts.SpireVersion != "" {
			spireVersion = charts.SpireVersion
		}
		if charts.CRDsVersion != "" {
			crdsVersion = charts.CRDsVersion
		}
		if charts.Repository != "" {
			repository = charts.Repository
		}
		configMap = charts.ConfigMap
	}
	return repository, configMap, spireVersion, crdsVersion
}

// specDigest identifies the desired install: chart source, versions, values.
func specDigest(zone *spirefedv1alpha1.ZoneTrustDomain, values map[string]any) string {
	repository, configMap, spireVersion, crdsVersion := chartSelection(zone)
	return spirehelm.SpecDigest(repository+"|"+configMap, spireVersion, crdsVersion, values)
}

// desiredRelease loads the charts and returns the desired install.
func (r *ZoneTrustDomainReconciler) desiredRelease(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, values map[string]any) (spirehelm.Desired, error) {
	repository, configMap, spireVersion, crdsVersion := chartSelection(zone)
	spireRef := spirehelm.ChartRef{Repository: repository, Name: "spire", Version: spireVersion}
	crdsRef := spirehelm.ChartRef{Repository: repository, Name: "spire-crds", Version: crdsVersion}
	if configMap != "" {
		packages, err := r.chartPackages(ctx, configMap)
		if err != nil {
			return spirehelm.Desired{}, err
		}
		spireRef = spirehelm.ChartRef{Name: "spire", Version: spireVersion, Package: packages["spire-"+spireVersion+".tgz"]}
		crdsRef = spirehelm.ChartRef{Name: "spire-crds", Version: crdsVersion, Package: packages["spire-crds-"+crdsVersion+".tgz"]}
		for _, ref := range []spirehelm.ChartRef{spireRef, crdsRef} {
			if ref.Package == nil {
				return spirehelm.Desired{}, fmt.Errorf("ConfigMap %s/%s has no binaryData key %s-%s.tgz", r.Namespace, configMap, ref.Name, ref.Version)
			}
		}
	}
	spire, err := r.Helm.Charts.Load(ctx, spireRef)
	if err != nil {
		return spirehelm.Desired{}, err
	}
	crds, err := r.Helm.Charts.Load(ctx, crdsRef)
	if err != nil {
		return spirehelm.Desired{}, err
	}
	return spirehelm.Desired{
		Namespace:   zone.Spec.Spire.Namespace,
		ReleaseName: zone.Spec.Spire.ReleaseName,
		CRDs:        crds,
		Spire:       spire,
		Values:      values,
		Remediation: zone.Spec.Spire.UpgradeRemediation,
	}, nil
}

// chartPackages reads the packaged charts of a ConfigMap in the operator's
// namespace (uncached: the operator watches no ConfigMap there).
func (r *ZoneTrustDomainReconciler) chartPackages(ctx context.Context, name string) (map[string][]byte, error) {
	configMap := &corev1.ConfigMap{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: name}, configMap); err != nil {
		return nil, fmt.Errorf("reading chart ConfigMap %s/%s: %w", r.Namespace, name, err)
	}
	return configMap.BinaryData, nil
}

// helmBackoff says how long to wait before retrying the same desired
// release after failures (0: go ahead). A changed spec goes ahead at once.
func (r *ZoneTrustDomainReconciler) helmBackoff(status *spirefedv1alpha1.SpireReleaseStatus, digest string) time.Duration {
	if status.Failures == 0 || status.LastAttemptedDigest != digest || status.LastActionTime == nil {
		return 0
	}
	first, limit := r.Helm.RetryInterval, r.Helm.MaxRetryInterval
	if first <= 0 {
		first = 10 * time.Second
	}
	if limit <= 0 {
		limit = 5 * time.Minute
	}
	delay := first
	for n := int32(1); n < status.Failures && delay < limit; n++ {
		delay *= 2
	}
	delay = min(delay, limit)
	return status.LastActionTime.Add(delay).Sub(r.now())
}

// spireFailed records a failure and returns when to retry.
func (r *ZoneTrustDomainReconciler) spireFailed(zone *spirefedv1alpha1.ZoneTrustDomain, digest, action, reason, message string) time.Duration {
	status := zone.Status.Spire
	if status.LastAttemptedDigest != digest {
		status.Failures = 0
	}
	status.Failures++
	status.LastAttemptedDigest = digest
	if action != "" {
		r.recordAction(zone, action, "Failed")
	} else {
		now := metav1.NewTime(r.now())
		status.LastActionTime = &now
	}
	r.setSpireInstalled(zone, metav1.ConditionFalse, reason, message)
	wait := r.helmBackoff(status, digest)
	return max(wait, time.Second)
}

func (r *ZoneTrustDomainReconciler) recordAction(zone *spirefedv1alpha1.ZoneTrustDomain, action, result string) {
	now := metav1.NewTime(r.now())
	zone.Status.Spire.LastAction = action
	zone.Status.Spire.LastActionResult = result
	zone.Status.Spire.LastActionTime = &now
}

func (r *ZoneTrustDomainReconciler) setSpireInstalled(zone *spirefedv1alpha1.ZoneTrustDomain, status metav1.ConditionStatus, reason, message string) {
	setCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.SpireInstalledCondition, status, reason, message)
}

// recordReleases copies what Helm reports of the releases into status:
// the deployed revision of spire (what runs), not a failed attempt.
func recordReleases(status *spirefedv1alpha1.SpireReleaseStatus, state spirehelm.State) {
	if rel := state.Deployed; rel != nil {
		status.Revision = rel.Version
		if rel.Chart != nil && rel.Chart.Metadata != nil {
			status.ChartVersion = rel.Chart.Metadata.Version
			status.AppVersion = rel.Chart.Metadata.AppVersion
			config := rel.Config
			if config == nil {
				config = map[string]any{}
			}
			status.ValuesDigest = spirehelm.Digest(rel.Chart.Metadata.Version, config)
		}
	}
	if rel := state.CRDs; rel != nil {
		status.CRDsRevision = rel.Version
		if rel.Chart != nil && rel.Chart.Metadata != nil {
			status.CRDsChartVersion = rel.Chart.Metadata.Version
		}
	}
}

func (r *ZoneTrustDomainReconciler) progressInterval() time.Duration {
	if r.Helm.ProgressInterval > 0 {
		return r.Helm.ProgressInterval
	}
	return 5 * time.Second
}
