// Package spirehelm installs SPIRE in a zone's cluster with the Helm v3 SDK:
// the upstream spire-crds chart, then the spire chart, with values the
// operator computes. Every Helm call of the operator lives here.
//
// Releases are upgraded only when the desired chart version or values
// differ from the deployed ones; a failed install or upgrade is retried
// (or, on request, rolled back), never uninstalled, since an uninstall
// destroys SPIRE's CA and datastore; a release left pending by an
// interrupted action is recovered; objects of the release that were deleted
// or edited by hand are put back; readiness is checked, not waited for.
package spirehelm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Helm actions, as status reports them.
const (
	ActionInstall         = "Install"
	ActionUpgrade         = "Upgrade"
	ActionRollback        = "Rollback"
	ActionDriftCorrection = "DriftCorrection"
	ActionUninstall       = "Uninstall"
)

// maxHistory bounds the revisions Helm keeps per release.
const maxHistory = 10

// Installer runs the Helm actions of zones' SPIRE installs.
type Installer struct {
	// Timeout of one Helm action, hooks included.
	Timeout time.Duration
	// PendingTimeout after which a release still pending is taken to be
	// left by an interrupted action and recovered.
	PendingTimeout time.Duration
	Clock          clock.PassiveClock
}

// Desired is a zone's SPIRE install.
type Desired struct {
	// Namespace of the releases (and of SPIRE).
	Namespace string
	// ReleaseName of the spire release; the CRDs release is
	// CRDsReleaseName(ReleaseName).
	ReleaseName string
	CRDs        LoadedChart
	Spire       LoadedChart
	// Values of the spire release.
	Values      map[string]any
	Remediation spirefedv1alpha1.UpgradeRemediation
}

// State is what the releases are after Reconcile.
type State struct {
	// Spire and CRDs are the releases' latest revisions (nil if none).
	Spire, CRDs *release.Release
	// Deployed is the spire release's deployed revision: what runs (nil if
	// none).
	Deployed *release.Release
	// Action is the Helm action this reconcile took on the spire release, or "".
	Action string
	// Drift lists the spire release's objects found deleted or changed by
	// hand; Action is then DriftCorrection.
	Drift []string
	// NotReady names the first workload of the spire release that is not
	// ready; "" when all are.
	NotReady string
}

// ActionError is a failed Helm action: Helm's error, and the action.
type ActionError struct {
	Release string
	Action  string
	Err     error
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("%s of release %s failed: %v", strings.ToLower(e.Action), e.Release, e.Err)
}

func (e *ActionError) Unwrap() error { return e.Err }

// PendingError says a release is pending (another action runs), too
// recently to be taken as interrupted.
type PendingError struct {
	Release string
	Status  release.Status
	Since   time.Time
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("release %s is %s since %s", e.Release, e.Status, e.Since.UTC().Format(time.RFC3339))
}

// CRDsReleaseName is the name of the spire-crds release beside a spire release.
func CRDsReleaseName(releaseName string) string { return releaseName + "-crds" }

// Reconcile brings the releases to desired: spire-crds first, then spire;
// then it checks the spire release's objects for drift (corrected by an
// upgrade with the same chart and values) and its workloads for readiness.
func (i *Installer) Reconcile(ctx context.Context, config *rest.Config, desired Desired) (state State, err error) {
	helm, err := ActionConfig(config, desired.Namespace)
	if err != nil {
		return state, err
	}
	defer func() { state.Deployed = deployedRelease(helm, desired.ReleaseName) }()
	// A release of a shape's later part has no CRDs of its own: the
	// cluster's first release installs them.
	if desired.CRDs.Chart != nil {
		crdsName := CRDsReleaseName(desired.ReleaseName)
		if state.CRDs, _, err = i.ensure(ctx, helm, desired.Namespace, crdsName, desired.CRDs, map[string]any{}, spirefedv1alpha1.RemediationRetry); err != nil {
			state.CRDs = lastRelease(helm, crdsName)
			state.Spire = lastRelease(helm, desired.ReleaseName)
			return state, err
		}
		// The spire chart creates custom resources: its CRDs must be
		// established first.
		crdsResources, err := buildManifest(helm, state.CRDs)
		if err != nil {
			return state, err
		}
		if state.NotReady, err = notReady(ctx, helm, crdsResources); err != nil || state.NotReady != "" {
			state.Spire = lastRelease(helm, desired.ReleaseName)
			return state, err
		}
	}
	state.Spire, state.Action, err = i.ensure(ctx, helm, desired.Namespace, desired.ReleaseName, desired.Spire, desired.Values, desired.Remediation)
	if err != nil {
		state.Spire = lastRelease(helm, desired.ReleaseName)
		return state, err
	}
	resources, err := buildManifest(helm, state.Spire)
	if err != nil {
		return state, err
	}
	if state.Action == "" {
		if state.Drift, err = drift(resources); err != nil {
			return state, err
		}
		if len(state.Drift) > 0 {
			state.Action = ActionDriftCorrection
			if state.Spire, err = i.upgrade(ctx, helm, desired.Namespace, desired.ReleaseName, desired.Spire, desired.Values); err != nil {
				state.Spire = lastRelease(helm, desired.ReleaseName)
				return state, &ActionError{Release: desired.ReleaseName, Action: ActionDriftCorrection, Err: err}
			}
		}
	}
	// The same manifest: a drift correction re-applies the same chart and
	// values.
	state.NotReady, err = notReady(ctx, helm, resources)
	return state, err
}

// ensure brings one release to a chart and values, and says which action
// it took ("" when the release was already as desired).
func (i *Installer) ensure(ctx context.Context, helm *action.Configuration, namespace, name string, loaded LoadedChart, values map[string]any,
	remediation spirefedv1alpha1.UpgradeRemediation) (*release.Release, string, error) {
	last, err := helm.Releases.Last(name)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		rel, err := i.install(ctx, helm, namespace, name, loaded, values, false)
		return rel, ActionInstall, wrapAction(name, ActionInstall, err)
	case err != nil:
		return nil, "", fmt.Errorf("reading the history of release %s: %w", name, err)
	}
	if last.Info.Status.IsPending() {
		if err := i.recoverPending(helm, last); err != nil {
			return last, "", err
		}
	}
	switch last.Info.Status {
	case release.StatusDeployed:
		if upToDate(last, loaded, values) {
			return last, "", nil
		}
		rel, err := i.upgrade(ctx, helm, namespace, name, loaded, values)
		return rel, ActionUpgrade, wrapAction(name, ActionUpgrade, err)
	case release.StatusFailed:
		deployed := deployedRelease(helm, name)
		if deployed == nil {
			// The install failed: install again in its place.
			rel, err := i.install(ctx, helm, namespace, name, loaded, values, true)
			return rel, ActionInstall, wrapAction(name, ActionInstall, err)
		}
		if remediation == spirefedv1alpha1.RemediationRollback {
			rel, err := i.rollback(helm, name, deployed.Version)
			return rel, ActionRollback, wrapAction(name, ActionRollback, err)
		}
		rel, err := i.upgrade(ctx, helm, namespace, name, loaded, values)
		return rel, ActionUpgrade, wrapAction(name, ActionUpgrade, err)
	case release.StatusUninstalled:
		rel, err := i.install(ctx, helm, namespace, name, loaded, values, true)
		return rel, ActionInstall, wrapAction(name, ActionInstall, err)
	default:
		// Superseded or unknown as the latest revision: Helm upgrades from
		// the deployed one.
		rel, err := i.upgrade(ctx, helm, namespace, name, loaded, values)
		return rel, ActionUpgrade, wrapAction(name, ActionUpgrade, err)
	}
}

// recoverPending marks a release failed when it has been pending for longer
// than PendingTimeout (an interrupted action), so that it can be retried.
func (i *Installer) recoverPending(helm *action.Configuration, last *release.Release) error {
	since := last.Info.LastDeployed.Time
	if since.IsZero() {
		since = last.Info.FirstDeployed.Time
	}
	if i.Clock.Now().Sub(since) < i.PendingTimeout {
		return &PendingError{Release: last.Name, Status: last.Info.Status, Since: since}
	}
	last.SetStatus(release.StatusFailed, fmt.Sprintf("marked failed by spire-federation-operator: %s since %s", last.Info.Status, since.UTC().Format(time.RFC3339)))
	if err := helm.Releases.Update(last); err != nil {
		return fmt.Errorf("marking the pending release %s failed: %w", last.Name, err)
	}
	return nil
}

func (i *Installer) install(ctx context.Context, helm *action.Configuration, namespace, name string, loaded LoadedChart, values map[string]any, replace bool) (*release.Release, error) {
	install := action.NewInstall(helm)
	install.ReleaseName = name
	install.Namespace = namespace
	install.CreateNamespace = true
	install.Replace = replace
	install.Timeout = i.Timeout
	return install.RunWithContext(ctx, loaded.Chart, values)
}

func (i *Installer) upgrade(ctx context.Context, helm *action.Configuration, namespace, name string, loaded LoadedChart, values map[string]any) (*release.Release, error) {
	upgrade := action.NewUpgrade(helm)
	upgrade.Namespace = namespace
	upgrade.MaxHistory = maxHistory
	upgrade.ResetValues = true
	upgrade.Timeout = i.Timeout
	return upgrade.RunWithContext(ctx, name, loaded.Chart, values)
}

// rollback goes back to the deployed revision (not merely the previous
// one, which may have failed too).
func (i *Installer) rollback(helm *action.Configuration, name string, version int) (*release.Release, error) {
	rollback := action.NewRollback(helm)
	rollback.Version = version
	rollback.MaxHistory = maxHistory
	rollback.Timeout = i.Timeout
	if err := rollback.Run(name); err != nil {
		return nil, err
	}
	return helm.Releases.Last(name)
}

// Uninstall removes the spire release, then the spire-crds release. A
// release that does not exist is fine.
func (i *Installer) Uninstall(config *rest.Config, namespace, releaseName string) error {
	helm, err := ActionConfig(config, namespace)
	if err != nil {
		return err
	}
	for _, name := range []string{releaseName, CRDsReleaseName(releaseName)} {
		uninstall := action.NewUninstall(helm)
		uninstall.Timeout = i.Timeout
		if _, err := uninstall.Run(name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
			return &ActionError{Release: name, Action: ActionUninstall, Err: err}
		}
	}
	return nil
}

// upToDate says whether a deployed release has the desired chart version
// and values (compared by content, not by their JSON spelling).
func upToDate(rel *release.Release, loaded LoadedChart, values map[string]any) bool {
	if rel.Chart == nil || rel.Chart.Metadata == nil || rel.Chart.Metadata.Version != loaded.Chart.Metadata.Version {
		return false
	}
	deployed := rel.Config
	if deployed == nil {
		deployed = map[string]any{}
	}
	return Digest(rel.Chart.Metadata.Version, deployed) == Digest(loaded.Chart.Metadata.Version, values)
}

func deployedRelease(helm *action.Configuration, name string) *release.Release {
	deployed, err := helm.Releases.Deployed(name)
	if err != nil {
		return nil
	}
	return deployed
}

func lastRelease(helm *action.Configuration, name string) *release.Release {
	rel, err := helm.Releases.Last(name)
	if err != nil {
		return nil
	}
	return rel
}

// drift lists the release's objects that no longer match its manifest:
// deleted, or workloads whose replicas or container images changed, or
// ConfigMaps whose data changed.
func drift(resources kube.ResourceList) ([]string, error) {
	var drifted []string
	for _, info := range resources {
		desired, err := toUnstructured(info.Object)
		if err != nil {
			return nil, err
		}
		if err := info.Get(); err != nil {
			if apierrors.IsNotFound(err) {
				drifted = append(drifted, describe(info)+" deleted")
				continue
			}
			return nil, fmt.Errorf("reading %s: %w", describe(info), err)
		}
		live, err := toUnstructured(info.Object)
		if err != nil {
			return nil, err
		}
		if field := changedField(desired, live); field != "" {
			drifted = append(drifted, describe(info)+" changed at "+field)
		}
	}
	return drifted, nil
}

// changedField compares the fields the operator watches for hand edits.
func changedField(desired, live *unstructured.Unstructured) string {
	switch desired.GetKind() {
	case "Deployment", "StatefulSet", "DaemonSet":
		if replicas, found, _ := unstructured.NestedFieldNoCopy(desired.Object, "spec", "replicas"); found {
			if current, _, _ := unstructured.NestedFieldNoCopy(live.Object, "spec", "replicas"); fmt.Sprint(current) != fmt.Sprint(replicas) {
				return "spec.replicas"
			}
		}
		want, _, _ := unstructured.NestedSlice(desired.Object, "spec", "template", "spec", "containers")
		got, _, _ := unstructured.NestedSlice(live.Object, "spec", "template", "spec", "containers")
		liveImages := images(got)
		for name, image := range images(want) {
			current, ok := liveImages[name]
			// An admission controller may pin the tag to a digest.
			if !ok || current != image && !strings.HasPrefix(current, image+"@") {
				return "spec.template.spec.containers[" + name + "].image"
			}
		}
	case "ConfigMap":
		want, _, _ := unstructured.NestedStringMap(desired.Object, "data")
		got, _, _ := unstructured.NestedStringMap(live.Object, "data")
		if len(want) != len(got) {
			return "data"
		}
		for key, value := range want {
			if got[key] != value {
				return "data"
			}
		}
	}
	return ""
}

// images maps container names to images.
func images(containers []any) map[string]string {
	out := map[string]string{}
	for _, container := range containers {
		if m, ok := container.(map[string]any); ok {
			out[fmt.Sprint(m["name"])] = fmt.Sprint(m["image"])
		}
	}
	return out
}

// notReady names the first of the release's workloads that is not ready,
// as Helm's --wait judges them, or "".
func notReady(ctx context.Context, helm *action.Configuration, resources kube.ResourceList) (string, error) {
	clientset, err := helm.KubernetesClientSet()
	if err != nil {
		return "", fmt.Errorf("building a client for readiness checks: %w", err)
	}
	checker := kube.NewReadyChecker(clientset, nil, kube.PausedAsReady(true))
	for _, info := range resources {
		ready, err := checker.IsReady(ctx, info)
		if apierrors.IsNotFound(err) {
			return describe(info) + " does not exist", nil
		}
		if err != nil {
			return "", fmt.Errorf("checking %s: %w", describe(info), err)
		}
		if !ready {
			return describe(info) + " is not ready", nil
		}
	}
	return "", nil
}

func buildManifest(helm *action.Configuration, rel *release.Release) (kube.ResourceList, error) {
	if rel == nil {
		return nil, errors.New("no release")
	}
	resources, err := helm.KubeClient.Build(strings.NewReader(rel.Manifest), false)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of release %s: %w", rel.Name, err)
	}
	return resources, nil
}

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	return &unstructured.Unstructured{Object: content}, nil
}

func describe(info *resource.Info) string {
	kind := info.Mapping.GroupVersionKind.Kind
	if info.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", kind, info.Namespace, info.Name)
	}
	return fmt.Sprintf("%s %s", kind, info.Name)
}

func wrapAction(name, actionName string, err error) error {
	if err == nil {
		return nil
	}
	return &ActionError{Release: name, Action: actionName, Err: err}
}
