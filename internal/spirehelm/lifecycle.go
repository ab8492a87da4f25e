package spirehelm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// Lifecycle decides, for one zone, what to do with its SPIRE releases and
// how to report it: it computes the values, loads the charts, backs off
// after failures (exponentially, per desired spec), counts failures, and
// turns what the Installer did into plain data for status.
type Lifecycle struct {
	Installer *Installer
	Charts    *ChartSource
	// ConfigMapPackages reads the packaged charts of a ConfigMap chart
	// source (spire.charts.configMap) by name.
	ConfigMapPackages func(ctx context.Context, name string) (map[string][]byte, error)
	// RetryInterval is the first retry delay after a failed action; it
	// doubles with every failure up to MaxRetryInterval.
	RetryInterval    time.Duration
	MaxRetryInterval time.Duration
	// ProgressInterval is how soon a release whose workloads are not ready
	// is checked again.
	ProgressInterval time.Duration
	Clock            clock.PassiveClock
	// MeshValues returns the chart values the zone's service mesh
	// integrations need (the SPIRE agent's SDS profile); the operator owns
	// them like its other values. Nil: none.
	MeshValues func(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (map[string]any, error)
}

// Outcome of one reconcile of a zone's SPIRE releases.
type Outcome struct {
	// Release is the zone's new status.spire.
	Release spirefedv1alpha1.SpireReleaseStatus
	// Installed is the SpireInstalled condition (Type is set).
	Installed metav1.Condition
	// Requeue is how soon to look again; 0: at the next resync.
	Requeue time.Duration
	// Events to record on the zone.
	Events []Event
	// Acted says whether this pass ran a Helm action (Release.LastAction
	// and LastActionResult describe it); a chart that could not be read,
	// a backoff or an up-to-date release run none.
	Acted bool
}

// Event is an Event to record on the zone.
type Event struct {
	Type, Reason, Action, Message string
}

// Reconcile brings a Helm zone's releases to its spec through config and
// says what happened. An error is a transient problem to retry with the
// controller's backoff; Helm and chart failures are reported in the
// outcome instead.
func (l *Lifecycle) Reconcile(ctx context.Context, config *rest.Config, zone *spirefedv1alpha1.ZoneTrustDomain) (Outcome, error) {
	out := Outcome{Release: spirefedv1alpha1.SpireReleaseStatus{ReleaseName: zone.Spec.Spire.ReleaseName}}
	if current := zone.Status.Spire; current != nil && current.ReleaseName == zone.Spec.Spire.ReleaseName {
		out.Release = *current.DeepCopy()
	}
	var extra map[string]any
	if l.MeshValues != nil {
		var err error
		if extra, err = l.MeshValues(ctx, zone); err != nil {
			return out, fmt.Errorf("computing the service mesh values of zone %s: %w", zone.Name, err)
		}
	}
	values, err := ValuesWith(zone, extra)
	var valuesErr *ValuesError
	if errors.As(err, &valuesErr) {
		// A spec problem: nothing to retry until the spec changes.
		out.installed(metav1.ConditionFalse, spirefedv1alpha1.ReasonValuesConflict, valuesErr.Message+"; the running release is left untouched")
		return out, nil
	}
	if err != nil {
		return out, err
	}
	digest := specDigest(zone, values)
	if wait := l.backoff(&out.Release, digest); wait > 0 {
		out.Requeue = wait // SpireInstalled unchanged
		return out, nil
	}
	desired, err := l.desiredRelease(ctx, zone, values)
	if err != nil {
		l.failed(&out, digest, "", spirefedv1alpha1.ReasonChartUnavailable, status.Brief(err.Error())+"; the running release is left untouched")
		return out, nil
	}
	state, err := l.Installer.Reconcile(ctx, config, desired)
	recordReleases(&out.Release, state)
	if len(state.Drift) > 0 {
		out.Events = append(out.Events, Event{corev1.EventTypeWarning, "Drifted", ActionDriftCorrection,
			fmt.Sprintf("Objects of release %s were changed by hand and are put back: %s", desired.ReleaseName, strings.Join(state.Drift, ", "))})
	}
	var pending *PendingError
	var failed *ActionError
	switch {
	case errors.As(err, &pending):
		out.installed(metav1.ConditionFalse, spirefedv1alpha1.ReasonProgressing,
			fmt.Sprintf("%v: another Helm action runs; an interrupted one is recovered after a while", pending))
		out.Requeue = l.ProgressInterval
		return out, nil
	case errors.As(err, &failed):
		reason := spirefedv1alpha1.ReasonUpgradeFailed
		if failed.Action == ActionInstall {
			reason = spirefedv1alpha1.ReasonInstallFailed
		}
		l.failed(&out, digest, failed.Action, reason, status.Brief(failed.Error()))
		return out, nil
	case err != nil:
		return out, fmt.Errorf("installing SPIRE in zone %s: %w", zone.Name, err)
	case state.Action == ActionRollback:
		// The desired release is not running: retry the upgrade later.
		out.Events = append(out.Events, Event{corev1.EventTypeWarning, "RolledBack", ActionRollback,
			fmt.Sprintf("Release %s was rolled back to revision %d after a failed upgrade", desired.ReleaseName, out.Release.Revision)})
		l.failed(&out, digest, ActionRollback, spirefedv1alpha1.ReasonUpgradeFailed,
			fmt.Sprintf("The upgrade of release %s failed and was rolled back to revision %d (upgradeRemediation Rollback); it is retried with backoff", desired.ReleaseName, out.Release.Revision))
		out.Release.LastActionResult = "Succeeded"
		return out, nil
	}

	release := &out.Release
	if state.Action != "" {
		l.recordAction(&out, state.Action, "Succeeded")
		out.Events = append(out.Events, Event{corev1.EventTypeNormal, state.Action + "Succeeded", state.Action,
			fmt.Sprintf("Helm %s of release %s succeeded: revision %d", strings.ToLower(state.Action), desired.ReleaseName, release.Revision)})
	}
	release.Failures = 0
	release.LastAttemptedDigest = digest
	if state.NotReady != "" {
		out.installed(metav1.ConditionFalse, spirefedv1alpha1.ReasonWorkloadsNotReady,
			fmt.Sprintf("Release %s revision %d is deployed; waiting: %s", desired.ReleaseName, release.Revision, state.NotReady))
		out.Requeue = l.ProgressInterval
		return out, nil
	}
	out.installed(metav1.ConditionTrue, spirefedv1alpha1.ReasonReleaseReady,
		fmt.Sprintf("Release %s revision %d (chart %s, SPIRE %s) and %s revision %d are deployed and ready",
			desired.ReleaseName, release.Revision, release.ChartVersion, release.AppVersion, CRDsReleaseName(desired.ReleaseName), release.CRDsRevision))
	return out, nil
}

func (o *Outcome) installed(conditionStatus metav1.ConditionStatus, reason, message string) {
	o.Installed = metav1.Condition{Type: spirefedv1alpha1.SpireInstalledCondition, Status: conditionStatus, Reason: reason, Message: message}
}

// Uninstall removes both releases of a zone.
func (l *Lifecycle) Uninstall(config *rest.Config, namespace, releaseName string) error {
	return l.Installer.Uninstall(config, namespace, releaseName)
}

// ChartSelection is where a zone's charts come from: repository (or
// ConfigMap) and versions, defaults applied.
func ChartSelection(zone *spirefedv1alpha1.ZoneTrustDomain) (repository, configMap, spireVersion, crdsVersion string) {
	repository, spireVersion, crdsVersion = DefaultRepository, DefaultSpireVersion, DefaultCRDsVersion
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
	repository, configMap, spireVersion, crdsVersion := ChartSelection(zone)
	return SpecDigest(repository+"|"+configMap, spireVersion, crdsVersion, values)
}

// desiredRelease loads the charts and returns the desired install.
func (l *Lifecycle) desiredRelease(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, values map[string]any) (Desired, error) {
	repository, configMap, spireVersion, crdsVersion := ChartSelection(zone)
	spireRef := ChartRef{Repository: repository, Name: "spire", Version: spireVersion}
	crdsRef := ChartRef{Repository: repository, Name: "spire-crds", Version: crdsVersion}
	if configMap != "" {
		packages, err := l.ConfigMapPackages(ctx, configMap)
		if err != nil {
			return Desired{}, err
		}
		spireRef = ChartRef{Name: "spire", Version: spireVersion, Package: packages["spire-"+spireVersion+".tgz"]}
		crdsRef = ChartRef{Name: "spire-crds", Version: crdsVersion, Package: packages["spire-crds-"+crdsVersion+".tgz"]}
		for _, ref := range []ChartRef{spireRef, crdsRef} {
			if ref.Package == nil {
				return Desired{}, fmt.Errorf("chart ConfigMap %s has no binaryData key %s-%s.tgz", configMap, ref.Name, ref.Version)
			}
		}
	}
	spire, err := l.Charts.Load(ctx, spireRef)
	if err != nil {
		return Desired{}, err
	}
	crds, err := l.Charts.Load(ctx, crdsRef)
	if err != nil {
		return Desired{}, err
	}
	return Desired{
		Namespace:   zone.Spec.Spire.Namespace,
		ReleaseName: zone.Spec.Spire.ReleaseName,
		CRDs:        crds,
		Spire:       spire,
		Values:      values,
		Remediation: zone.Spec.Spire.UpgradeRemediation,
	}, nil
}

// backoff says how long to wait before retrying the same desired release
// after failures (0: go ahead). A changed spec goes ahead at once.
func (l *Lifecycle) backoff(release *spirefedv1alpha1.SpireReleaseStatus, digest string) time.Duration {
	if release.Failures == 0 || release.LastAttemptedDigest != digest || release.LastActionTime == nil {
		return 0
	}
	return release.LastActionTime.Add(RetryDelay(release.Failures, l.RetryInterval, l.MaxRetryInterval)).Sub(l.Clock.Now())
}

// RetryDelay is the delay after the given number of consecutive failures:
// first, doubling with every further failure, at most limit.
func RetryDelay(failures int32, first, limit time.Duration) time.Duration {
	delay := first
	for n := int32(1); n < failures && delay < limit; n++ {
		delay *= 2
	}
	return min(delay, limit)
}

// failed records a failure in the outcome and sets when to retry.
func (l *Lifecycle) failed(out *Outcome, digest, action, reason, message string) {
	release := &out.Release
	if release.LastAttemptedDigest != digest {
		release.Failures = 0
	}
	release.Failures++
	release.LastAttemptedDigest = digest
	if action != "" {
		l.recordAction(out, action, "Failed")
	} else {
		now := metav1.NewTime(l.Clock.Now())
		release.LastActionTime = &now
	}
	out.installed(metav1.ConditionFalse, reason, message)
	out.Requeue = max(l.backoff(release, digest), time.Second)
}

func (l *Lifecycle) recordAction(out *Outcome, action, result string) {
	now := metav1.NewTime(l.Clock.Now())
	out.Acted = true
	release := &out.Release
	release.LastAction = action
	release.LastActionResult = result
	release.LastActionTime = &now
}

// recordReleases copies what Helm reports of the releases into status:
// the deployed revision of spire (what runs), not a failed attempt.
func recordReleases(release *spirefedv1alpha1.SpireReleaseStatus, state State) {
	if rel := state.Deployed; rel != nil {
		release.Revision = rel.Version
		if rel.Chart != nil && rel.Chart.Metadata != nil {
			release.ChartVersion = rel.Chart.Metadata.Version
			release.AppVersion = rel.Chart.Metadata.AppVersion
			config := rel.Config
			if config == nil {
				config = map[string]any{}
			}
			release.ValuesDigest = Digest(rel.Chart.Metadata.Version, config)
		}
	}
	if rel := state.CRDs; rel != nil {
		release.CRDsRevision = rel.Version
		if rel.Chart != nil && rel.Chart.Metadata != nil {
			release.CRDsChartVersion = rel.Chart.Metadata.Version
		}
	}
}
