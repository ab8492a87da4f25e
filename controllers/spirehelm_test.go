package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// helmInstallSeconds bounds how long a Helm install or upgrade on a KWOK
// cluster may take to become ready in these tests.
const helmInstallSeconds = 120

// helmZone is a zone whose SPIRE the operator installs with Helm in a KWOK
// cluster, from the shared charts served on loopback.
type helmZone struct {
	name    string
	cluster *testenv.Cluster
}

func newHelmZone(name, clusterName, repository string) (*helmZone, *spirefedv1alpha1.ZoneTrustDomain) {
	zone := newZoneAt(name, name+".helm.test", testenv.KubeconfigSecretName(clusterName), "https://spire-bundle."+name+".helm.test:8443")
	zone.Spec.Spire = spirefedv1alpha1.SpireInstallation{
		Install:     spirefedv1alpha1.SpireInstallHelm,
		Namespace:   "spire-server",
		ReleaseName: "spire",
		Charts:      &spirefedv1alpha1.SpireCharts{Repository: repository},
	}
	return &helmZone{name: name, cluster: env.Zones[clusterName]}, zone
}

// history returns the spire release's revisions, oldest first.
func (z *helmZone) history(t testing.TB, releaseName string) []*release.Release {
	t.Helper()
	helm, err := spirehelm.ActionConfig(z.cluster.Config, "spire-server")
	if err != nil {
		t.Fatal(err)
	}
	revisions, err := action.NewHistory(helm).Run(releaseName)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return revisions
}

// waitSpireReady waits until the zone's SPIRE release is ready at revision.
func (z *helmZone) waitSpireReady(t testing.TB, revision int) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	deadline := testDeadline(helmInstallSeconds)
	for {
		zone := getZone(t, z.name)
		installed := meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.SpireInstalledCondition)
		if installed != nil && installed.Status == metav1.ConditionTrue && installed.ObservedGeneration == zone.Generation &&
			zone.Status.Spire != nil && zone.Status.Spire.Revision == revision {
			return zone
		}
		if deadline() {
			t.Fatalf("zone %s: SPIRE not ready at revision %d: %+v, status %+v", z.name, revision, installed, zone.Status.Spire)
		}
	}
}

func (z *helmZone) configMapData(t testing.TB, name, key string) string {
	t.Helper()
	configMap := &corev1.ConfigMap{}
	if err := z.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "spire-server", Name: name}, configMap); err != nil {
		t.Fatal(err)
	}
	data, ok := configMap.Data[key]
	if !ok {
		t.Errorf("ConfigMap %s has no key %s; it has %v", name, key, slices.Sorted(maps.Keys(configMap.Data)))
	}
	return data
}

func setSpireValues(t testing.TB, name, values string) {
	t.Helper()
	updateZone(t, name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
		zone.Spec.Spire.Values = nil
		if values != "" {
			zone.Spec.Spire.Values = &apiextensionsv1.JSON{Raw: []byte(values)}
		}
	})
}

func updateZone(t testing.TB, name string, change func(*spirefedv1alpha1.ZoneTrustDomain)) {
	t.Helper()
	for {
		zone := getZone(t, name)
		change(zone)
		err := env.Management.Client.Update(testCtx, zone)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

// TestSpireHelm installs SPIRE with the upstream charts in two KWOK zone
// clusters at once and drives the releases through upgrades, rejected
// values, an unreachable repository, drift, an interrupted action, a failed
// upgrade with rollback, and both deletion policies.
func TestSpireHelm(t *testing.T) {
	charts, err := testenv.ServeCharts()
	if err != nil {
		t.Fatal(err)
	}
	defer charts.Close()
	a, zoneA := newHelmZone("helm-a", "kwok1", charts.URL)
	b, zoneB := newHelmZone("helm-b", "kwok2", charts.URL)
	for _, z := range []*helmZone{a, b} {
		if err := z.cluster.CreatePersistentVolume(testCtx, z.name+"-pv", "1Gi"); err != nil {
			t.Fatal(err)
		}
	}

	createZone(t, zoneA)
	createZone(t, zoneB)
	t.Run("two zones install from scratch at once", func(t *testing.T) {
		for _, z := range []*helmZone{a, b} {
			zone := z.waitSpireReady(t, 1)
			status := zone.Status.Spire
			if status.ChartVersion != "0.30.0" || status.AppVersion != "1.15.3" || status.CRDsRevision != 1 || status.CRDsChartVersion != "0.6.0" ||
				status.LastAction != spirehelm.ActionInstall || status.LastActionResult != "Succeeded" || len(status.ValuesDigest) != 64 {
				t.Errorf("zone %s: status %+v", z.name, status)
			}
			trustDomain := z.name + ".helm.test"
			values := z.history(t, "spire")[0].Config
			encoded, _ := json.Marshal(values)
			for _, want := range []string{`"trustDomain":"` + trustDomain + `"`, `"clusterName":"` + z.name + `"`, `"className":"spire-server-spire"`, `"federation":{`} {
				if !strings.Contains(string(encoded), want) {
					t.Errorf("zone %s: release values %s lack %s", z.name, encoded, want)
				}
			}
			serverConf := z.configMapData(t, "spire-server", "server.conf")
			for _, want := range []string{`"trust_domain": "` + trustDomain + `"`, `"bundle_endpoint"`, `"port": 8443`,
				`"configmap_key": "bundle.crt"`, `"configmap_name": "spire-bundle"`, `"format": "pem"`} {
				if !strings.Contains(serverConf, want) {
					t.Errorf("zone %s: server.conf lacks %s:\n%s", z.name, want, serverConf)
				}
			}
			if agent := z.configMapData(t, "spire-agent", "agent.conf"); !strings.Contains(agent, `"trust_bundle_format": "pem"`) || !strings.Contains(agent, "bundle.crt") {
				t.Errorf("zone %s: the agent does not read the PEM bundle:\n%s", z.name, agent)
			}
			if manager := z.configMapData(t, "spire-controller-manager", "controller-manager-config.yaml"); !strings.Contains(manager, `className: "spire-server-spire"`) {
				t.Errorf("zone %s: controller manager config lacks the className:\n%s", z.name, manager)
			}
		}
	})

	t.Run("an unchanged spec never upgrades", func(t *testing.T) {
		time.Sleep(5 * time.Second) // several resyncs and readiness checks
		for _, z := range []*helmZone{a, b} {
			if revisions := z.history(t, "spire"); len(revisions) != 1 {
				t.Errorf("zone %s: %d revisions", z.name, len(revisions))
			}
		}
	})

	t.Run("a values change upgrades exactly once", func(t *testing.T) {
		setSpireValues(t, a.name, `{"spire-server": {"logLevel": "debug"}}`)
		a.waitSpireReady(t, 2)
		time.Sleep(4 * time.Second)
		if revisions := a.history(t, "spire"); len(revisions) != 2 {
			t.Errorf("%d revisions after one change", len(revisions))
		}
		if conf := a.configMapData(t, "spire-server", "server.conf"); !strings.Contains(conf, `"log_level": "debug"`) {
			t.Errorf("server.conf does not carry the new log level:\n%s", conf)
		}
		if revisions := b.history(t, "spire"); len(revisions) != 1 {
			t.Errorf("zone %s was upgraded too: %d revisions", b.name, len(revisions))
		}
	})

	t.Run("values the chart rejects leave the running release untouched", func(t *testing.T) {
		setSpireValues(t, a.name, `{"spire-server": {"logLevel": "debug", "dataStore": {"sql": {"databaseType": "oracle"}}}}`)
		waitForZoneMessage(t, a.name, spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonUpgradeFailed, "Unsupported database type")
		revisions := a.history(t, "spire")
		if last := revisions[len(revisions)-1]; len(revisions) != 2 || last.Info.Status != release.StatusDeployed {
			t.Errorf("release after a rejected upgrade: %d revisions, last %s", len(revisions), last.Info.Status)
		}
		setSpireValues(t, a.name, `{"spire-server": {"logLevel": "debug"}}`)
		a.waitSpireReady(t, 2)
	})

	t.Run("a key the operator owns cannot be overridden", func(t *testing.T) {
		setSpireValues(t, a.name, `{"spire-server": {"logLevel": "debug"}, "global": {"spire": {"trustDomain": "other.test"}}}`)
		waitForZoneMessage(t, a.name, spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonValuesConflict, "global.spire.trustDomain")
		setSpireValues(t, a.name, `{"spire-server": {"logLevel": "debug"}}`)
		a.waitSpireReady(t, 2)
	})

	t.Run("an unreachable chart repository leaves the running release untouched", func(t *testing.T) {
		updateZone(t, a.name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
			zone.Spec.Spire.Charts = &spirefedv1alpha1.SpireCharts{Repository: "http://127.0.0.1:1/charts", SpireVersion: "0.30.0"}
		})
		waitForZoneMessage(t, a.name, spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonChartUnavailable, "127.0.0.1:1")
		if revisions := a.history(t, "spire"); len(revisions) != 2 {
			t.Errorf("%d revisions", len(revisions))
		}
		updateZone(t, a.name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
			zone.Spec.Spire.Charts = &spirefedv1alpha1.SpireCharts{Repository: charts.URL}
		})
		a.waitSpireReady(t, 2)
	})

	t.Run("a StatefulSet deleted by hand is restored", func(t *testing.T) {
		statefulSet := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "spire-server", Name: "spire-server"}}
		if err := a.cluster.Client.Delete(testCtx, statefulSet); err != nil {
			t.Fatal(err)
		}
		zone := a.waitSpireReady(t, 3)
		if zone.Status.Spire.LastAction != spirehelm.ActionDriftCorrection {
			t.Errorf("last action %s", zone.Status.Spire.LastAction)
		}
		if err := a.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "spire-server", Name: "spire-server"}, statefulSet); err != nil {
			t.Errorf("StatefulSet not restored: %v", err)
		}
	})

	t.Run("a StatefulSet edited by hand is put back", func(t *testing.T) {
		statefulSet := &appsv1.StatefulSet{}
		key := types.NamespacedName{Namespace: "spire-server", Name: "spire-server"}
		if err := a.cluster.Client.Get(testCtx, key, statefulSet); err != nil {
			t.Fatal(err)
		}
		want := statefulSet.Spec.Template.Spec.Containers[0].Image
		statefulSet.Spec.Template.Spec.Containers[0].Image = "registry.example/tampered:1"
		if err := a.cluster.Client.Update(testCtx, statefulSet); err != nil {
			t.Fatal(err)
		}
		a.waitSpireReady(t, 4)
		if err := a.cluster.Client.Get(testCtx, key, statefulSet); err != nil || statefulSet.Spec.Template.Spec.Containers[0].Image != want {
			t.Errorf("image after correction: %s (%v), want %s", statefulSet.Spec.Template.Spec.Containers[0].Image, err, want)
		}
	})

	t.Run("a release left pending by an interrupted action is recovered", func(t *testing.T) {
		helm, err := spirehelm.ActionConfig(a.cluster.Config, "spire-server")
		if err != nil {
			t.Fatal(err)
		}
		last, err := helm.Releases.Last("spire")
		if err != nil {
			t.Fatal(err)
		}
		last.SetStatus(release.StatusPendingUpgrade, "interrupted by the test")
		if err := helm.Releases.Update(last); err != nil {
			t.Fatal(err)
		}
		a.waitSpireReady(t, 5)
		if revisions := a.history(t, "spire"); revisions[3].Info.Status != release.StatusFailed {
			t.Errorf("the interrupted revision is %s, want failed", revisions[2].Info.Status)
		}
	})

	t.Run("a failed upgrade is rolled back when asked", func(t *testing.T) {
		updateZone(t, a.name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
			zone.Spec.Spire.UpgradeRemediation = spirefedv1alpha1.RemediationRollback
			zone.Spec.Spire.Values = &apiextensionsv1.JSON{Raw: []byte(`{"spire-server": {"logLevel": "debug", "replicaCount": -1}}`)}
		})
		deadline := testDeadline(helmInstallSeconds)
		for {
			var failed, rolledBack bool
			for _, revision := range a.history(t, "spire") {
				failed = failed || revision.Info.Status == release.StatusFailed && revision.Version > 5
				rolledBack = rolledBack || strings.HasPrefix(revision.Info.Description, "Rollback to")
			}
			if failed && rolledBack {
				break
			}
			if deadline() {
				t.Fatalf("no failed upgrade rolled back: %v", describeHistory(a.history(t, "spire")))
			}
		}
		// A rollback is no success: the desired release does not run.
		rolledBack := waitForZoneMessage(t, a.name, spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonUpgradeFailed, "rolled back")
		if rolledBack.Status.Spire.Failures == 0 {
			t.Errorf("no failure counted after a rollback: %+v", rolledBack.Status.Spire)
		}
		statefulSet := &appsv1.StatefulSet{}
		if err := a.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "spire-server", Name: "spire-server"}, statefulSet); err != nil || *statefulSet.Spec.Replicas != 1 {
			t.Errorf("StatefulSet after rollback: %v", err)
		}
		updateZone(t, a.name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
			zone.Spec.Spire.UpgradeRemediation = spirefedv1alpha1.RemediationRetry
			zone.Spec.Spire.Values = &apiextensionsv1.JSON{Raw: []byte(`{"spire-server": {"logLevel": "debug"}}`)}
		})
		deadline = testDeadline(helmInstallSeconds)
		for {
			zone := getZone(t, a.name)
			if meta.IsStatusConditionTrue(zone.Status.Conditions, spirefedv1alpha1.SpireInstalledCondition) &&
				meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.SpireInstalledCondition).ObservedGeneration == zone.Generation {
				break
			}
			if deadline() {
				t.Fatalf("not ready after the values were fixed: %v", describeHistory(a.history(t, "spire")))
			}
		}
	})

	t.Run("deletion: Retain keeps SPIRE, Delete uninstalls it", func(t *testing.T) {
		updateZone(t, b.name, func(zone *spirefedv1alpha1.ZoneTrustDomain) {
			zone.Spec.Spire.DeletionPolicy = spirefedv1alpha1.DeletionDelete
		})
		deleteZone(t, a.name)
		deleteZone(t, b.name)
		if revisions := a.history(t, "spire"); len(revisions) == 0 || revisions[len(revisions)-1].Info.Status != release.StatusDeployed {
			t.Errorf("Retain: the spire release of %s is gone", a.name)
		}
		if revisions := a.history(t, "spire-crds"); len(revisions) == 0 {
			t.Errorf("Retain: the spire-crds release of %s is gone", a.name)
		}
		if revisions := b.history(t, "spire"); len(revisions) != 0 {
			t.Errorf("Delete: the spire release of %s is still there", b.name)
		}
		if revisions := b.history(t, "spire-crds"); len(revisions) != 0 {
			t.Errorf("Delete: the spire-crds release of %s is still there", b.name)
		}
		err := b.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "spire-server", Name: "spire-server"}, &appsv1.StatefulSet{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("Delete: the StatefulSet of %s: %v", b.name, err)
		}
	})
}

// TestSpireHelmChartsFromConfigMap installs SPIRE from charts packaged in a
// ConfigMap of the operator's namespace, as an air-gapped site would.
func TestSpireHelmChartsFromConfigMap(t *testing.T) {
	dir, err := testenv.SharedChartsDir()
	if err != nil {
		t.Fatal(err)
	}
	packages := corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: "spire-charts"},
		BinaryData: map[string][]byte{},
	}
	for _, file := range []string{"spire-0.30.0.tgz", "spire-crds-0.6.0.tgz"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		packages.BinaryData[file] = data
	}
	if err := env.Management.Client.Create(testCtx, &packages); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Management.Client.Delete(testCtx, &packages) })
	// kwok2's releases were uninstalled by TestSpireHelm (deletionPolicy Delete).
	c, zone := newHelmZone("helm-c", "kwok2", "")
	zone.Spec.Spire.Charts = &spirefedv1alpha1.SpireCharts{ConfigMap: "spire-charts"}
	zone.Spec.Spire.DeletionPolicy = spirefedv1alpha1.DeletionDelete
	if err := c.cluster.CreatePersistentVolume(testCtx, c.name+"-pv", "1Gi"); err != nil {
		t.Fatal(err)
	}
	createZone(t, zone)
	ready := c.waitSpireReady(t, 1)
	if ready.Status.Spire.ChartVersion != "0.30.0" || ready.Status.Spire.CRDsChartVersion != "0.6.0" {
		t.Errorf("status %+v", ready.Status.Spire)
	}
	deleteZone(t, c.name)
}

func describeHistory(revisions []*release.Release) string {
	var out []string
	for _, revision := range revisions {
		out = append(out, fmt.Sprintf("%d:%s(%s)", revision.Version, revision.Info.Status, revision.Info.Description))
	}
	return strings.Join(out, " ")
}
