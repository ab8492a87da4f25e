package chart_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestChartMonitoring renders the ServiceMonitor, the PrometheusRule and the
// dashboard ConfigMap when enabled and checks that they are absent by
// default.
func TestChartMonitoring(t *testing.T) {
	const (
		serviceMonitor = "ServiceMonitor/spire-federation-operator"
		rule           = "PrometheusRule/spire-federation-operator"
		dashboard      = "ConfigMap/spire-federation-operator-dashboard"
	)
	defaults, err := renderChart(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{serviceMonitor, rule, dashboard} {
		if defaults[name] != nil {
			t.Errorf("%s is rendered by default", name)
		}
	}

	objects, err := renderChart(t, map[string]any{
		"serviceMonitor":   map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"prometheusRule":   map[string]any{"enabled": true, "authorityExpiryDays": 3, "severity": "critical"},
		"grafanaDashboard": map[string]any{"enabled": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{serviceMonitor, rule, dashboard} {
		if objects[name] == nil {
			t.Fatalf("no %s when enabled", name)
		}
	}

	monitor := objects[serviceMonitor]
	if monitor.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v", monitor.GetLabels())
	}
	endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("ServiceMonitor endpoints %v", endpoints)
	}
	endpoint := endpoints[0].(map[string]any)
	if endpoint["port"] != "https-metrics" || endpoint["scheme"] != "https" || endpoint["bearerTokenFile"] == nil {
		t.Errorf("ServiceMonitor endpoint %v", endpoint)
	}
	selector, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
	service := objects["Service/spire-federation-operator-metrics"]
	for key, value := range selector {
		if service.GetLabels()[key] != value {
			t.Errorf("ServiceMonitor selector %v does not select the metrics Service %v", selector, service.GetLabels())
		}
	}
	plain, err := renderChart(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "metrics": map[string]any{"secure": false}})
	if err != nil {
		t.Fatal(err)
	}
	plainEndpoints, _, _ := unstructured.NestedSlice(plain[serviceMonitor].Object, "spec", "endpoints")
	if endpoint := plainEndpoints[0].(map[string]any); endpoint["port"] != "http-metrics" || endpoint["scheme"] != "http" {
		t.Errorf("ServiceMonitor endpoint without metrics.secure %v", endpoint)
	}
	if _, err := renderChart(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true}, "metrics": map[string]any{"enabled": false}}); err == nil {
		t.Error("a ServiceMonitor renders without a metrics endpoint")
	}

	groups, _, _ := unstructured.NestedSlice(objects[rule].Object, "spec", "groups")
	var alerts []string
	for _, group := range groups {
		rules, _, _ := unstructured.NestedSlice(group.(map[string]any), "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			alerts = append(alerts, r["alert"].(string))
			if labels, _ := r["labels"].(map[string]any); labels["severity"] != "critical" {
				t.Errorf("alert %s labels %v", r["alert"], labels)
			}
			if r["alert"] == "SpirefedAuthorityExpiringSoon" && !strings.Contains(r["expr"].(string), "< 3 * 86400") {
				t.Errorf("authorityExpiryDays is not in %q", r["expr"])
			}
		}
	}
	want := []string{"SpirefedAuthorityExpiringSoon", "SpirefedMeshPairNotConverged", "SpirefedBundleFetchFailing",
		"SpirefedSpireInstallFailing", "SpirefedZoneUnreachable"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}

	configMap := objects[dashboard]
	if configMap.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v", configMap.GetLabels())
	}
	data, _, _ := unstructured.NestedStringMap(configMap.Object, "data")
	var board struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(data["spire-federation-operator.json"]), &board); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if len(board.Panels) == 0 {
		t.Fatal("the dashboard has no panel")
	}
	for _, panel := range board.Panels {
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, target := range panel.Targets {
			if strings.TrimSpace(target.Expr) == "" {
				t.Errorf("panel %q has an empty query", panel.Title)
			}
		}
	}
	// hack/promrules parses the queries with Prometheus's parser and checks
	// the metrics they select.

}
