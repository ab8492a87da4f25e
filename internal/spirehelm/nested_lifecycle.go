package spirehelm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// ClusterConfig returns the REST config of one cluster of a zone's trust
// domain, by zones.Cluster name ("" and "root": the zone's own cluster).
type ClusterConfig func(ctx context.Context, cluster string) (*rest.Config, error)

// shapeRun is what one pass did to the releases of a Nested or HA zone.
type shapeRun struct {
	statuses []spirefedv1alpha1.ClusterReleaseStatus
	// failed is the first failed Helm action (nil: none).
	failed *ActionError
	// acted is the last action that succeeded.
	acted string
	// unavailable is the first chart that could not be loaded (nil: none);
	// like a failed action, it is retried with backoff.
	unavailable error
}

// ReconcileShape brings the spire-nested releases of a Nested or HA zone
// to its spec, cluster by cluster in PlanReleases' order: a release waits
// until the releases it comes after are ready (a child after the root).
// Each release has the guarantees of a Single zone's: upgraded only when
// its chart or values change, never uninstalled on failure, drift put
// back, readiness checked. rootKubeconfigs maps each nested child to the
// kubeconfig the root's SPIRE uses there. Failures count once per pass
// for the backoff.
func (l *Lifecycle) ReconcileShape(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, configFor ClusterConfig, rootKubeconfigs map[string][]byte) (Outcome, error) {
	out := Outcome{Release: spirefedv1alpha1.SpireReleaseStatus{ReleaseName: zone.Spec.Spire.ReleaseName}}
	if current := zone.Status.Spire; current != nil && current.ReleaseName == zone.Spec.Spire.ReleaseName {
		out.Release = *current.DeepCopy()
	}
	if missing := missingRootKubeconfigs(zone, rootKubeconfigs); missing != "" {
		out.installed(metav1.ConditionFalse, spirefedv1alpha1.ReasonSecretNotFound, missing+"; the running releases are left untouched")
		return out, nil
	}
	planned, err := PlanReleases(zone, rootKubeconfigs)
	if err == nil && l.MeshValues != nil {
		var meshValues map[string]any
		if meshValues, err = l.MeshValues(ctx, zone); err != nil {
			return out, fmt.Errorf("computing the service mesh values of zone %s: %w", zone.Name, err)
		}
		planned = WithMeshValues(planned, meshValues)
	}
	var values []map[string]any
	if err == nil {
		values, err = PlannedValues(zone, planned)
	}
	var valuesErr *ValuesError
	if errors.As(err, &valuesErr) {
		out.installed(metav1.ConditionFalse, spirefedv1alpha1.ReasonValuesConflict, valuesErr.Message+"; the running releases are left untouched")
		return out, nil
	}
	if err != nil {
		return out, err
	}
	digest := shapeDigest(zone, planned, values)
	if wait := l.backoff(&out.Release, digest); wait > 0 {
		out.Requeue = wait // SpireInstalled unchanged
		return out, nil
	}
	run := l.runShape(ctx, zone, configFor, planned, values, &out)
	out.Release.Releases = run.statuses
	if run.failed != nil {
		reason := spirefedv1alpha1.ReasonUpgradeFailed
		if run.failed.Action == ActionInstall {
			reason = spirefedv1alpha1.ReasonInstallFailed
		}
		l.failed(&out, digest, run.failed.Action, reason, status.Brief(run.failed.Error()))
		return out, nil
	}
	if run.unavailable != nil {
		l.failed(&out, digest, "", spirefedv1alpha1.ReasonChartUnavailable, status.Brief(run.unavailable.Error())+"; the running releases are left untouched")
		return out, nil
	}
	if run.acted != "" {
		l.recordAction(&out, run.acted, "Succeeded")
	}
	out.Release.Failures = 0
	out.Release.LastAttemptedDigest = digest
	for _, release := range run.statuses {
		if release.Ready != metav1.ConditionTrue {
			out.installed(metav1.ConditionFalse, release.Reason, fmt.Sprintf("Release %s in cluster %s: %s", release.ReleaseName, clusterLabel(release.Cluster), release.Message))
			out.Requeue = l.ProgressInterval
			return out, nil
		}
	}
	names := make([]string, 0, len(run.statuses))
	for _, release := range run.statuses {
		names = append(names, fmt.Sprintf("%s (%s, revision %d)", release.ReleaseName, clusterLabel(release.Cluster), release.Revision))
	}
	out.installed(metav1.ConditionTrue, spirefedv1alpha1.ReasonReleaseReady, "The spire-nested releases are deployed and ready: "+strings.Join(names, ", "))
	return out, nil
}

// runShape reconciles every planned release in order and records each.
func (l *Lifecycle) runShape(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, configFor ClusterConfig, planned []PlannedRelease, values []map[string]any, out *Outcome) shapeRun {
	var run shapeRun
	ready := map[string]bool{}
	previous := map[string]spirefedv1alpha1.ClusterReleaseStatus{}
	for _, release := range out.Release.Releases {
		previous[release.Cluster+"/"+release.ReleaseName] = release
	}
	for i, planned := range planned {
		release := spirefedv1alpha1.ClusterReleaseStatus{Cluster: planned.Cluster, Namespace: planned.Namespace, ReleaseName: planned.Name, Tag: planned.Tag}
		if before, ok := previous[planned.Key()]; ok {
			release.Revision, release.ValuesDigest = before.Revision, before.ValuesDigest
		}
		if waiting := notReadyYet(planned.After, ready); waiting != "" {
			release.Ready, release.Reason = metav1.ConditionFalse, spirefedv1alpha1.ReasonProgressing
			release.Message = "Waits for release " + waiting + " to be ready"
			run.statuses = append(run.statuses, release)
			continue
		}
		config, err := configFor(ctx, planned.Cluster)
		if err != nil {
			release.Ready, release.Reason = metav1.ConditionUnknown, spirefedv1alpha1.ReasonClusterNotReachable
			release.Message = status.Brief(err.Error())
			run.statuses = append(run.statuses, release)
			continue
		}
		desired, err := l.desiredShapeRelease(ctx, zone, planned, values[i])
		if err != nil {
			release.Ready, release.Reason = metav1.ConditionFalse, spirefedv1alpha1.ReasonChartUnavailable
			release.Message = status.Brief(err.Error()) + "; the running release is left untouched"
			if run.unavailable == nil {
				run.unavailable = err
			}
			run.statuses = append(run.statuses, release)
			continue
		}
		state, err := l.Installer.Reconcile(ctx, config, desired)
		if rel := state.Deployed; rel != nil {
			release.Revision = rel.Version
			if rel.Chart != nil && rel.Chart.Metadata != nil {
				config := rel.Config
				if config == nil {
					config = map[string]any{}
				}
				release.ValuesDigest = Digest(rel.Chart.Metadata.Version, config)
			}
		}
		if i == 0 {
			recordReleases(&out.Release, state)
		}
		if len(state.Drift) > 0 {
			out.Events = append(out.Events, Event{corev1.EventTypeWarning, "Drifted", ActionDriftCorrection,
				fmt.Sprintf("Objects of release %s in cluster %s were changed by hand and are put back: %s", planned.Name, clusterLabel(planned.Cluster), strings.Join(state.Drift, ", "))})
		}
		var pending *PendingError
		var failed *ActionError
		switch {
		case errors.As(err, &pending):
			release.Ready, release.Reason = metav1.ConditionFalse, spirefedv1alpha1.ReasonProgressing
			release.Message = fmt.Sprintf("%v: another Helm action runs; an interrupted one is recovered after a while", pending)
		case errors.As(err, &failed):
			release.Ready, release.Reason = metav1.ConditionFalse, spirefedv1alpha1.ReasonUpgradeFailed
			if failed.Action == ActionInstall {
				release.Reason = spirefedv1alpha1.ReasonInstallFailed
			}
			release.Message = status.Brief(failed.Error())
			if run.failed == nil {
				run.failed = failed
			}
		case err != nil:
			// Helm could not read or reach the cluster: the other
			// clusters go on.
			release.Ready, release.Reason = metav1.ConditionUnknown, spirefedv1alpha1.ReasonClusterNotReachable
			release.Message = "Helm cannot reach the cluster: " + status.Brief(err.Error())
		case state.Action == ActionRollback:
			// The desired release does not run: retried with backoff.
			release.Ready, release.Reason = metav1.ConditionFalse, spirefedv1alpha1.ReasonUpgradeFailed
			release.Message = fmt.Sprintf("The upgrade failed and was rolled back to revision %d (upgradeRemediation Rollback); it is retried with backoff", release.Revision)
			if run.failed == nil {
				run.failed = &ActionError{Release: planned.Name, Action: ActionRollback, Err: errors.New("the upgrade failed and was rolled back")}
			}
		case state.NotReady != "":
			release.Ready, release.Reason = metav1.ConditionFalse, spirefedv1alpha1.ReasonWorkloadsNotReady
			release.Message = fmt.Sprintf("Revision %d is deployed; waiting: %s", release.Revision, state.NotReady)
		default:
			release.Ready, release.Reason, release.Message = metav1.ConditionTrue, spirefedv1alpha1.ReasonReleaseReady, fmt.Sprintf("Revision %d is deployed and ready", release.Revision)
			ready[planned.Key()] = true
		}
		if state.Action != "" && err == nil {
			run.acted = state.Action
			out.Events = append(out.Events, Event{corev1.EventTypeNormal, state.Action + "Succeeded", state.Action,
				fmt.Sprintf("Helm %s of release %s in cluster %s succeeded: revision %d", strings.ToLower(state.Action), planned.Name, clusterLabel(planned.Cluster), release.Revision)})
		}
		run.statuses = append(run.statuses, release)
	}
	return run
}

// desiredShapeRelease loads the charts of one planned release: a chart of
// its own (Helm edits the chart it installs), spire-crds when it goes
// first in its cluster.
func (l *Lifecycle) desiredShapeRelease(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, planned PlannedRelease, values map[string]any) (Desired, error) {
	repository, configMap, version, crdsVersion := ChartSelection(zone)
	refs := []ChartRef{{Repository: repository, Name: NestedChart, Version: version}}
	if planned.CRDs {
		refs = append(refs, ChartRef{Repository: repository, Name: "spire-crds", Version: crdsVersion})
	}
	if configMap != "" {
		packages, err := l.ConfigMapPackages(ctx, configMap)
		if err != nil {
			return Desired{}, err
		}
		for i := range refs {
			refs[i] = ChartRef{Name: refs[i].Name, Version: refs[i].Version, Package: packages[refs[i].Name+"-"+refs[i].Version+".tgz"]}
			if refs[i].Package == nil {
				return Desired{}, fmt.Errorf("chart ConfigMap %s has no binaryData key %s-%s.tgz", configMap, refs[i].Name, refs[i].Version)
			}
		}
	}
	desired := Desired{Namespace: planned.Namespace, ReleaseName: planned.Name, Values: values, Remediation: zone.Spec.Spire.UpgradeRemediation}
	var err error
	if desired.Spire, err = l.Charts.Load(ctx, refs[0]); err != nil {
		return Desired{}, err
	}
	if planned.CRDs {
		if desired.CRDs, err = l.Charts.Load(ctx, refs[1]); err != nil {
			return Desired{}, err
		}
	}
	return desired, nil
}

// UninstallShape removes a Nested or HA zone's releases, last planned
// first (children before the root, sides before the common part), each
// with its spire-crds release. A release that does not exist is fine.
// skip says whether a cluster that cannot be reached is let go (its
// releases left behind) rather than waited for.
func (l *Lifecycle) UninstallShape(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, configFor ClusterConfig, skip func(error) bool) error {
	planned, err := PlanReleases(zone, nil)
	if err != nil {
		return err
	}
	for i := len(planned) - 1; i >= 0; i-- {
		release := planned[i]
		config, err := configFor(ctx, release.Cluster)
		if err != nil && skip(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cluster %s: %w", clusterLabel(release.Cluster), err)
		}
		if err := l.Installer.Uninstall(config, release.Namespace, release.Name); err != nil {
			return fmt.Errorf("cluster %s: %w", clusterLabel(release.Cluster), err)
		}
	}
	return nil
}

// missingRootKubeconfigs names the nested children whose kubeconfig for
// the root's SPIRE is missing, or "".
func missingRootKubeconfigs(zone *spirefedv1alpha1.ZoneTrustDomain, rootKubeconfigs map[string][]byte) string {
	if zone.Spec.Spire.Shape != spirefedv1alpha1.ShapeNested || zone.Spec.Spire.Nested == nil {
		return ""
	}
	var missing []string
	for _, child := range zone.Spec.Spire.Nested.Children {
		if _, ok := rootKubeconfigs[child.Name]; ok {
			continue
		}
		name := "(none)"
		if ref := child.RootKubeconfigSecretRef; ref != nil {
			name = ref.Name
		}
		missing = append(missing, fmt.Sprintf("child %s (Secret %s)", child.Name, name))
	}
	if len(missing) == 0 {
		return ""
	}
	return "The kubeconfig the root's SPIRE uses in " + strings.Join(missing, ", ") + " cannot be read: create it in the operator's namespace"
}

// notReadyYet names the first of keys that is not ready, or "".
func notReadyYet(keys []string, ready map[string]bool) string {
	for _, key := range keys {
		if !ready[key] {
			return key
		}
	}
	return ""
}

// shapeDigest identifies the desired releases: chart source, versions and
// every release's values.
func shapeDigest(zone *spirefedv1alpha1.ZoneTrustDomain, planned []PlannedRelease, values []map[string]any) string {
	repository, configMap, version, crdsVersion := ChartSelection(zone)
	all := make(map[string]any, len(planned))
	for i, release := range planned {
		all[release.Key()] = values[i]
	}
	return SpecDigest(repository+"|"+configMap+"|"+NestedChart, version, crdsVersion, all)
}

func clusterLabel(cluster string) string {
	if cluster == "" {
		return "spec.cluster"
	}
	return cluster
}
