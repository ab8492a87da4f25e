package spirehelm

import (
	"bytes"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
)

// agentConfig renders the upstream spire chart with the zone's values and
// returns the SPIRE agent's configuration.
func agentConfig(t *testing.T, values map[string]any) string {
	t.Helper()
	chart, err := loader.LoadArchive(bytes.NewReader(sharedChart(t, "spire-"+DefaultSpireVersion+".tgz")))
	if err != nil {
		t.Fatal(err)
	}
	renderValues, err := chartutil.ToRenderValues(chart, values, chartutil.ReleaseOptions{Name: "spire", Namespace: "spire-server", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := engine.Render(chart, renderValues)
	if err != nil {
		t.Fatal(err)
	}
	for name, manifest := range rendered {
		if strings.HasSuffix(name, "spire-agent/templates/configmap.yaml") {
			return manifest
		}
	}
	t.Fatal("the chart renders no spire-agent ConfigMap")
	return ""
}

// TestMeshSDSValuesRender: the SDS profile a mesh needs reaches the SPIRE
// agent's configuration as the upstream chart renders it, and a user value
// that contradicts it is a ValuesConflict.
func TestMeshSDSValuesRender(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		meshType spirefedv1alpha1.MeshIntegrationType
		want     []string
	}{
		{spirefedv1alpha1.MeshIstio, []string{`"default_svid_name": "default"`, `"default_bundle_name": "null"`, `"default_all_bundles_name": "ROOTCA"`}},
		{spirefedv1alpha1.MeshKuma, []string{`"default_svid_name": "default"`, `"default_bundle_name": "ROOTCA"`, `"default_all_bundles_name": "ALL"`}},
	} {
		values, err := ValuesWith(helmZone(nil), meshintegration.HelmSDSValues(tc.meshType))
		if err != nil {
			t.Fatal(err)
		}
		config := strings.ReplaceAll(agentConfig(t, values), `\"`, `"`)
		for _, want := range tc.want {
			if !strings.Contains(config, want) {
				t.Errorf("%s: the agent configuration lacks %s:\n%s", tc.meshType, want, config)
			}
		}
	}
	// Without a mesh the chart's default (no sds block) is kept.
	values, err := Values(helmZone(nil))
	if err != nil {
		t.Fatal(err)
	}
	if config := agentConfig(t, values); strings.Contains(config, "default_all_bundles_name") {
		t.Errorf("an sds block without a mesh:\n%s", config)
	}
	_, err = ValuesWith(helmZone(withValues(`{"spire-agent":{"sds":{"defaultAllBundlesName":"ALL"}}}`)), meshintegration.HelmSDSValues(spirefedv1alpha1.MeshIstio))
	if err == nil || !strings.Contains(err.Error(), "spire-agent.sds.defaultAllBundlesName") {
		t.Errorf("a user's SDS value against Istio's profile: %v", err)
	}
}

// TestNestedMeshSDSValuesRender: in a nested trust domain, the SDS profile
// a mesh needs reaches the workload agent (downstream-spire-agent-full) of
// the root's and every child's release as the upstream spire-nested chart
// renders them; the agent that serves the nested servers
// (upstream-spire-agent) and HA releases get none.
func TestNestedMeshSDSValuesRender(t *testing.T) {
	t.Parallel()
	istio := meshintegration.HelmSDSValues(spirefedv1alpha1.MeshIstio)
	nested, err := PlanReleases(nestedZone(nil), rootKubeconfigs)
	if err != nil {
		t.Fatal(err)
	}
	withMesh := WithMeshValues(nested, istio)
	if nested[0].Values[nestedWorkloadAgent] != nil {
		t.Fatal("WithMeshValues changed the releases it was given")
	}
	for _, release := range withMesh {
		rendered := renderNested(t, release, release.Values)
		downstream := strings.ReplaceAll(manifestHolding(rendered, "downstream-spire-agent-full/templates/configmap.yaml"), `\"`, `"`)
		if downstream == "" {
			t.Fatalf("release %s renders no workload agent", release.Key())
		}
		for _, want := range []string{`"default_bundle_name": "null"`, `"default_all_bundles_name": "ROOTCA"`} {
			if !strings.Contains(downstream, want) {
				t.Errorf("release %s: the workload agent's configuration lacks %s:\n%.3000s", release.Key(), want, downstream)
			}
		}
		upstream := strings.ReplaceAll(manifestHolding(rendered, "upstream-spire-agent/templates/configmap.yaml"), `\"`, `"`)
		if strings.Contains(upstream, `"default_all_bundles_name": "ROOTCA"`) {
			t.Errorf("release %s: the nested servers' agent got the mesh's SDS profile", release.Key())
		}
	}
	ha, err := PlanReleases(haZone(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, release := range WithMeshValues(ha, istio) {
		if !sameValue(release.Values, ha[i].Values) {
			t.Errorf("HA release %s got mesh values: %v", release.Key(), release.Values)
		}
	}
	if got := WithMeshValues(nested, nil); len(got) != len(nested) || got[0].Values[nestedWorkloadAgent] != nil {
		t.Error("no mesh values changed the releases")
	}
}
