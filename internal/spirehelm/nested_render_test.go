package spirehelm

import (
	"bytes"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// renderNested renders the upstream spire-nested chart as Helm installs
// it (tags and conditions applied) and returns its manifests by template.
func renderNested(t *testing.T, release PlannedRelease, values map[string]any) map[string]string {
	t.Helper()
	chart, err := loader.LoadArchive(bytes.NewReader(sharedChart(t, NestedChart+"-"+DefaultSpireVersion+".tgz")))
	if err != nil {
		t.Fatal(err)
	}
	if err := chartutil.ProcessDependenciesWithMerge(chart, values); err != nil {
		t.Fatal(err)
	}
	renderValues, err := chartutil.ToRenderValues(chart, values, chartutil.ReleaseOptions{Name: release.Name, Namespace: release.Namespace, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := engine.Render(chart, renderValues)
	if err != nil {
		t.Fatalf("release %s: %v", release.Key(), err)
	}
	return rendered
}

// manifestHolding returns the rendered manifests (joined) whose template
// path contains part.
func manifestHolding(rendered map[string]string, part string) string {
	var out []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for name := range rendered {
			if !yield(name) {
				return
			}
		}
	}) {
		if strings.Contains(name, part) {
			out = append(out, rendered[name])
		}
	}
	return strings.Join(out, "\n---\n")
}

// TestPlannedReleasesRender renders every planned release of a nested and
// an HA trust domain with the upstream spire-nested chart: the values the
// operator computes reach the SPIRE configurations the chart writes.
func TestPlannedReleasesRender(t *testing.T) {
	t.Parallel()
	type check struct{ template, want string }
	cases := []struct {
		name   string
		zone   func() ([]PlannedRelease, error)
		checks map[int][]check
	}{
		{
			name: "nested",
			zone: func() ([]PlannedRelease, error) { return PlanReleases(nestedZone(nil), rootKubeconfigs) },
			checks: map[int][]check{
				0: {
					{"root-spire-server/templates/configmap.yaml", `"trust_domain": "broker.example"`},
					{"root-spire-server/templates/configmap.yaml", `"port": 9443`},
					{"root-spire-server/templates/configmap.yaml", `"configmap_name": "spire-bundle"`},
					{"internal-spire-server/templates/controller-manager-configmap.yaml", `className: "spire-server-spire"`},
					{"external-spire-server/templates/kubeconfig-secret.yaml", "east: " + base64.StdEncoding.EncodeToString([]byte("east-kubeconfig"))},
					{"external-spire-server/templates/kubeconfig-secret.yaml", "west: " + base64.StdEncoding.EncodeToString([]byte("west-kubeconfig"))},
				},
				1: {
					{"internal-spire-server/templates/configmap.yaml", `"server_address": "spire-root.broker.example"`},
					{"internal-spire-server/templates/configmap.yaml", `"east": {`},
					{"internal-spire-server/templates/controller-manager-configmap.yaml", `className: "spire-server-spire"`},
				},
				2: {
					{"internal-spire-server/templates/controller-manager-configmap.yaml", `className: "spire-west-spire"`},
				},
			},
		},
		{
			name: "HA",
			zone: func() ([]PlannedRelease, error) { return PlanReleases(haZone(nil), nil) },
			checks: map[int][]check{
				0: {{"spire-ha-agent/templates", "spire-ha-agent"}},
				1: {
					{"internal-spire-server-bottom-turtle-ha-a/templates/configmap.yaml", `"trust_domain": "broker.example"`},
					{"internal-spire-server-bottom-turtle-ha-a/templates/configmap.yaml", `"port": 8443`},
					{"internal-spire-server-bottom-turtle-ha-a/templates/controller-manager-configmap.yaml", `className: "spire-server-spire"`},
				},
				2: {
					{"internal-spire-server-bottom-turtle-ha-b/templates/configmap.yaml", `"port": 9443`},
					{"internal-spire-server-bottom-turtle-ha-b/templates/controller-manager-configmap.yaml", `className: "spire-server-spire"`},
				},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			planned, err := tc.zone()
			if err != nil {
				t.Fatal(err)
			}
			for i, release := range planned {
				rendered := renderNested(t, release, release.Values)
				for _, check := range tc.checks[i] {
					manifest := manifestHolding(rendered, check.template)
					if manifest == "" {
						t.Errorf("release %s renders no %s", release.Key(), check.template)
						continue
					}
					if !strings.Contains(manifest, check.want) {
						t.Errorf("release %s: %s lacks %s:\n%.3000s", release.Key(), check.template, check.want, manifest)
					}
				}
			}
		})
	}
}
