package controllers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// releaseHistory returns a release's revisions in a KWOK cluster, oldest
// first (none when it does not exist).
func releaseHistory(t testing.TB, clusterName, namespace, name string) []*release.Release {
	t.Helper()
	helm, err := spirehelm.ActionConfig(env.Zones[clusterName].Config, namespace)
	if err != nil {
		t.Fatal(err)
	}
	revisions, err := action.NewHistory(helm).Run(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return revisions
}

// waitShapeReady waits until a Nested or HA zone's SpireInstalled is True
// for its generation and its releases are at the given revisions
// ("cluster/name" to revision), and returns the zone.
func waitShapeReady(t testing.TB, name string, revisions map[string]int) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	deadline := testDeadline(2 * helmInstallSeconds)
	for {
		zone := getZone(t, name)
		installed := meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.SpireInstalledCondition)
		if installed != nil && installed.Status == metav1.ConditionTrue && installed.ObservedGeneration == zone.Generation && zone.Status.Spire != nil &&
			releasesAt(zone.Status.Spire.Releases, revisions) {
			return zone
		}
		if deadline() {
			t.Fatalf("zone %s: releases not ready at %v: %+v, releases %+v", name, revisions, installed, zone.Status.Spire)
		}
	}
}

func releasesAt(releases []spirefedv1alpha1.ClusterReleaseStatus, revisions map[string]int) bool {
	if len(releases) != len(revisions) {
		return false
	}
	for _, release := range releases {
		if release.Ready != metav1.ConditionTrue || revisions[release.Cluster+"/"+release.ReleaseName] != release.Revision {
			return false
		}
	}
	return true
}

// releaseValues returns a deployed revision's values as JSON.
func releaseValues(t testing.TB, rel *release.Release) string {
	t.Helper()
	encoded, err := json.Marshal(rel.Config)
	if err != nil {
		t.Fatal(err)
	}
	return string(encoded)
}

// TestSpireHelmNestedAndHA installs the upstream spire-nested chart the way
// a Helm zone of each shape needs it, on the KWOK clusters: a nested trust
// domain (root in kwok1, one child in kwok2), then an HA trust domain (the
// common part and both sides in kwok1). The releases carry the operator's
// values, become ready in order, are upgraded only on change (a rotated
// kubeconfig of the root's SPIRE upgrades the root's release alone), and
// deletionPolicy Delete uninstalls them all, leaving the clusters as
// TestSpireHelm expects them.
func TestSpireHelmNestedAndHA(t *testing.T) {
	charts, err := testenv.ServeCharts()
	if err != nil {
		t.Fatal(err)
	}
	defer charts.Close()
	// The StatefulSets of the root's three servers and the child's nested
	// server claim volumes.
	for cluster, count := range map[string]int{"kwok1": 3, "kwok2": 1} {
		for i := range count {
			if err := env.Zones[cluster].CreatePersistentVolume(testCtx, fmt.Sprintf("nested-%s-pv-%d", cluster, i), "1Gi"); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("nested: the root's release, then the child's", func(t *testing.T) {
		zone := newZoneAt("helm-nested", "helm-nested.helm.test", testenv.KubeconfigSecretName("kwok1"), "https://spire-bundle.helm-nested.helm.test:8443")
		zone.Spec.Spire = spirefedv1alpha1.SpireInstallation{
			Install:        spirefedv1alpha1.SpireInstallHelm,
			Namespace:      "spire-server",
			ReleaseName:    "spire",
			Charts:         &spirefedv1alpha1.SpireCharts{Repository: charts.URL},
			DeletionPolicy: spirefedv1alpha1.DeletionDelete,
			Shape:          spirefedv1alpha1.ShapeNested,
			Nested: &spirefedv1alpha1.NestedSpire{
				RootServerAddress: "spire-root.helm-nested.helm.test",
				Children: []spirefedv1alpha1.NestedChild{{
					Name:                    "child",
					Cluster:                 spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: testenv.KubeconfigSecretName("kwok2")}},
					RootKubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "helm-nested-root-child"},
				}},
			},
		}
		createZone(t, zone)
		// Without the root's kubeconfig of the child nothing is installed;
		// the Secret's creation starts the installs.
		waitForZoneMessage(t, zone.Name, spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonSecretNotFound, "helm-nested-root-child")
		if root := releaseHistory(t, "kwok1", "spire-server", "spire"); len(root) != 0 {
			t.Fatalf("the root's release was installed without the child's kubeconfig: %d revisions", len(root))
		}
		writeRootKubeconfig(t, "helm-nested-root-child", "spire-root")
		ready := waitShapeReady(t, zone.Name, map[string]int{"root/spire": 1, "child/spire": 1})
		if got := ready.Status.Spire.Releases; got[0].Tag != spirehelm.TagNestedRoot || got[1].Tag != spirehelm.TagNestedChildFull || got[1].Cluster != "child" {
			t.Errorf("status.spire.releases %+v", got)
		}
		root := releaseHistory(t, "kwok1", "spire-server", "spire")
		child := releaseHistory(t, "kwok2", "spire-server", "spire")
		if len(root) != 1 || len(child) != 1 || root[0].Chart.Metadata.Name != spirehelm.NestedChart || child[0].Chart.Metadata.Name != spirehelm.NestedChart {
			t.Fatalf("releases: root %d revisions, child %d", len(root), len(child))
		}
		if child[0].Info.FirstDeployed.Before(root[0].Info.FirstDeployed) {
			t.Errorf("the child's release was installed (%s) before the root's (%s)", child[0].Info.FirstDeployed, root[0].Info.FirstDeployed)
		}
		if crds := releaseHistory(t, "kwok2", "spire-server", "spire-crds"); len(crds) != 1 {
			t.Errorf("the child's cluster has %d spire-crds revisions", len(crds))
		}
		for _, want := range []string{`"nestedRoot":true`, `"kubeConfigs":{"child":{"kubeConfigBase64":`, `"trustDomain":"helm-nested.helm.test"`} {
			if values := releaseValues(t, root[0]); !strings.Contains(values, want) {
				t.Errorf("the root's values lack %s", want)
			}
		}
		for _, want := range []string{`"nestedChildFull":true`, `"upstreamSpireAddress":"spire-root.helm-nested.helm.test"`, `"clusterName":"child"`} {
			if values := releaseValues(t, child[0]); !strings.Contains(values, want) {
				t.Errorf("the child's values %s lack %s", values, want)
			}
		}

		time.Sleep(4 * time.Second) // several resyncs and readiness checks
		if root, child := releaseHistory(t, "kwok1", "spire-server", "spire"), releaseHistory(t, "kwok2", "spire-server", "spire"); len(root) != 1 || len(child) != 1 {
			t.Errorf("an unchanged spec upgraded: root %d revisions, child %d", len(root), len(child))
		}

		// A rotated kubeconfig changes the root's values only.
		writeRootKubeconfig(t, "helm-nested-root-child", "spire-root-rotated")
		waitShapeReady(t, zone.Name, map[string]int{"root/spire": 2, "child/spire": 1})
		if child := releaseHistory(t, "kwok2", "spire-server", "spire"); len(child) != 1 {
			t.Errorf("the child's release was upgraded too: %d revisions", len(child))
		}

		deleteZone(t, zone.Name)
		for cluster, name := range map[string]string{"kwok1": "spire", "kwok2": "spire"} {
			if revisions := releaseHistory(t, cluster, "spire-server", name); len(revisions) != 0 {
				t.Errorf("Delete: release %s is still in %s", name, cluster)
			}
			if revisions := releaseHistory(t, cluster, "spire-server", "spire-crds"); len(revisions) != 0 {
				t.Errorf("Delete: release spire-crds is still in %s", cluster)
			}
		}
	})

	t.Run("HA: the common part, then both sides", func(t *testing.T) {
		zone := newZoneAt("helm-ha", "helm-ha.helm.test", testenv.KubeconfigSecretName("kwok1"), "https://spire-a.helm-ha.helm.test:8443")
		zone.Spec.Spire = spirefedv1alpha1.SpireInstallation{
			Install:        spirefedv1alpha1.SpireInstallHelm,
			Namespace:      "spire-server",
			ReleaseName:    "spire",
			Charts:         &spirefedv1alpha1.SpireCharts{Repository: charts.URL},
			DeletionPolicy: spirefedv1alpha1.DeletionDelete,
			Shape:          spirefedv1alpha1.ShapeHA,
			HA: &spirefedv1alpha1.HASpire{
				A: spirefedv1alpha1.HASide{BundleEndpointURL: "https://spire-a.helm-ha.helm.test:8443"},
				B: spirefedv1alpha1.HASide{BundleEndpointURL: "https://spire-b.helm-ha.helm.test:9443"},
			},
		}
		createZone(t, zone)
		ready := waitShapeReady(t, zone.Name, map[string]int{"/spire": 1, "a/spire-a": 1, "b/spire-b": 1})
		tags := []string{}
		for _, release := range ready.Status.Spire.Releases {
			tags = append(tags, release.Tag)
		}
		if strings.Join(tags, ",") != "haAgentCommon,bottomTurtleHAA,bottomTurtleHAB" {
			t.Errorf("release tags %v", tags)
		}
		sides := map[string]string{"spire-server-a": "spire-a", "spire-server-b": "spire-b"}
		for namespace, name := range sides {
			revisions := releaseHistory(t, "kwok1", namespace, name)
			if len(revisions) != 1 || !strings.Contains(releaseValues(t, revisions[0]), `"className":"spire-server-spire"`) {
				t.Errorf("side release %s/%s: %d revisions", namespace, name, len(revisions))
			}
		}

		time.Sleep(4 * time.Second)
		for namespace, name := range map[string]string{"spire-server": "spire", "spire-server-a": "spire-a", "spire-server-b": "spire-b"} {
			if revisions := releaseHistory(t, "kwok1", namespace, name); len(revisions) != 1 {
				t.Errorf("an unchanged spec upgraded %s: %d revisions", name, len(revisions))
			}
		}

		deleteZone(t, zone.Name)
		for namespace, name := range map[string]string{"spire-server": "spire", "spire-server-a": "spire-a", "spire-server-b": "spire-b"} {
			if revisions := releaseHistory(t, "kwok1", namespace, name); len(revisions) != 0 {
				t.Errorf("Delete: release %s is still there", name)
			}
		}
	})
}

// writeRootKubeconfig writes the kubeconfig with which a nested root's
// SPIRE reaches the kwok2 child, for a user of that name.
func writeRootKubeconfig(t testing.TB, secretName, user string) {
	t.Helper()
	kubeconfig, err := env.Zones["kwok2"].Kubeconfig(user)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.WriteKubeconfigSecret(testCtx, secretName, kubeconfig); err != nil {
		t.Fatal(err)
	}
}
