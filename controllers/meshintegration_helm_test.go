package controllers

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestMeshIntegrationHelmSDS: a zone whose SPIRE the operator installs
// with the upstream charts (in a KWOK cluster) carries its mesh's SPIRE
// agent SDS profile in the release: Istio's ROOTCA, Kuma's ALL once the
// mesh's type changes, none once the integration is removed; the agent's
// rendered configuration follows. It runs before TestSpireHelm on kwok2
// and uninstalls what it installed (deletionPolicy Delete).
func TestMeshIntegrationHelmSDS(t *testing.T) {
	charts, err := testenv.ServeCharts()
	if err != nil {
		t.Fatal(err)
	}
	defer charts.Close()
	z, zone := newHelmZone("mesh-helm", "kwok2", charts.URL)
	zone.Spec.Spire.DeletionPolicy = spirefedv1alpha1.DeletionDelete
	if err := z.cluster.CreatePersistentVolume(testCtx, z.name+"-pv", "1Gi"); err != nil {
		t.Fatal(err)
	}
	createZone(t, zone)
	t.Cleanup(func() { deleteZone(t, z.name) })
	z.waitSpireReady(t, 1)
	if sds := z.releaseSDS(t); sds != nil {
		t.Errorf("before any mesh: release values spire-agent.sds %v", sds)
	}

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "mesh-helm"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{z.name}},
			Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitForDeletion(t, mesh) })

	t.Run("Istio: all bundles under ROOTCA", func(t *testing.T) {
		z.waitForReleaseSDS(t, meshintegration.SDSAllBundlesIstio)
		z.waitForAgentConf(t, `"default_all_bundles_name": "ROOTCA"`, `"default_bundle_name": "null"`)
	})

	t.Run("Kuma: all bundles under ALL", func(t *testing.T) {
		updateMeshNamed(t, mesh.Name, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.MeshIntegration = &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshKuma}
		})
		z.waitForReleaseSDS(t, meshintegration.SDSAllBundlesKuma)
		z.waitForAgentConf(t, `"default_all_bundles_name": "ALL"`, `"default_bundle_name": "ROOTCA"`)
	})

	t.Run("no integration: no SDS profile", func(t *testing.T) {
		updateMeshNamed(t, mesh.Name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.MeshIntegration = nil })
		z.waitForReleaseSDS(t, "")
	})
}

// releaseSDS is spire-agent.sds of the values of the zone's last spire
// release revision; nil when unset.
func (z *helmZone) releaseSDS(t testing.TB) map[string]any {
	t.Helper()
	revisions := z.history(t, "spire")
	if len(revisions) == 0 {
		t.Fatalf("zone %s has no spire release", z.name)
	}
	agent, _ := revisions[len(revisions)-1].Config["spire-agent"].(map[string]any)
	sds, _ := agent["sds"].(map[string]any)
	return sds
}

// waitForReleaseSDS waits until the zone's spire release is deployed with
// the SDS profile whose all-bundles name is allBundles ("": none), and
// SpireInstalled says so.
func (z *helmZone) waitForReleaseSDS(t testing.TB, allBundles string) {
	t.Helper()
	deadline := testDeadline(helmInstallSeconds)
	for {
		revisions := z.history(t, "spire")
		last := revisions[len(revisions)-1]
		sds := z.releaseSDS(t)
		got := ""
		if sds != nil {
			got = fmt.Sprint(sds["defaultAllBundlesName"])
		}
		if got == allBundles && last.Info.Status == "deployed" {
			z.waitSpireReady(t, last.Version)
			return
		}
		if deadline() {
			t.Fatalf("zone %s: release revision %d (%s) has spire-agent.sds %v, want defaultAllBundlesName %q",
				z.name, last.Version, last.Info.Status, sds, allBundles)
		}
	}
}

// waitForAgentConf waits until the SPIRE agent's rendered configuration
// holds every part.
func (z *helmZone) waitForAgentConf(t testing.TB, parts ...string) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		agent := z.configMapData(t, "spire-agent", "agent.conf")
		missing := ""
		for _, part := range parts {
			if !strings.Contains(agent, part) {
				missing = part
			}
		}
		if missing == "" {
			return
		}
		if deadline() {
			var manifests []string
			for _, revision := range z.history(t, "spire") {
				manifests = append(manifests, fmt.Sprintf("%d:%s:%v", revision.Version, revision.Info.Status, strings.Contains(revision.Manifest, strings.ReplaceAll(missing, `"`, ""))))
			}
			t.Fatalf("the agent's configuration lacks %s (revisions, manifest has it: %v):\n%s", missing, manifests, agent)
		}
	}
}
