package chart_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestChartMonitoring renders the ServiceMonitor, the PrometheusRule and the
// dashboard ConfigMap when enabled, checks that they are absent by
// default, and that their queries name only metrics the operator exports.
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

	if got := metricNames(`sum by (zone, le) (rate(a_seconds_bucket{zone=~"$zone"}[5m])) and on (zone) b_total - time()`); !slices.Equal(got, []string{"a_seconds_bucket", "b_total"}) {
		t.Errorf("metricNames = %v", got)
	}
	exported := exportedMetrics(t)
	var exprs []string
	groups, _, _ := unstructured.NestedSlice(objects[rule].Object, "spec", "groups")
	var alerts []string
	for _, group := range groups {
		rules, _, _ := unstructured.NestedSlice(group.(map[string]any), "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			alerts = append(alerts, r["alert"].(string))
			exprs = append(exprs, r["expr"].(string))
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
		Templating struct {
			List []struct{ Definition string }
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
			exprs = append(exprs, target.Expr)
		}
	}
	// Grafana's label_values(metric, label) names a metric, then a label.
	labelValues := regexp.MustCompile(`label_values\(([^,]+),[^)]*\)`)
	for _, variable := range board.Templating.List {
		exprs = append(exprs, labelValues.ReplaceAllString(variable.Definition, "$1"))
	}

	for _, expr := range exprs {
		names := metricNames(expr)
		if len(names) == 0 && expr != "" {
			t.Errorf("query %q names no metric", expr)
		}
		for _, name := range names {
			if !exported[name] {
				t.Errorf("query %q names %s, which the operator does not export", expr, name)
			}
		}
	}
}

var (
	// Strings, label matchers, ranges and grouping clauses hold no metric name.
	nonMetric  = regexp.MustCompile(`"[^"]*"|\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true}
)

// metricNames returns the metric names a PromQL query selects (functions
// and keywords left out), histogram series by their metric's name.
func metricNames(expr string) []string {
	var names []string
	for _, match := range identifier.FindAllString(nonMetric.ReplaceAllString(expr, " "), -1) {
		if strings.HasSuffix(match, "(") || keywords[match] {
			continue
		}
		name := strings.TrimSpace(match)
		if keywords[name] {
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasPrefix(name, "spirefed_") && strings.HasSuffix(name, suffix) && strings.HasSuffix(strings.TrimSuffix(name, suffix), "_seconds") {
				name = strings.TrimSuffix(name, suffix)
			}
		}
		names = append(names, name)
	}
	return names
}

// exportedMetrics returns the operator's metric names (internal/metrics)
// and the controller-runtime metrics the chart's queries may use.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "internal", "metrics", "metrics.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{
		// controller-runtime's, registered by its controllers.
		"controller_runtime_reconcile_errors_total": true,
		"controller_runtime_reconcile_total":        true,
	}
	ast.Inspect(file, func(node ast.Node) bool {
		if field, ok := node.(*ast.KeyValueExpr); ok {
			if key, ok := field.Key.(*ast.Ident); ok && key.Name == "Name" {
				if literal, ok := field.Value.(*ast.BasicLit); ok && literal.Kind == token.STRING {
					name, _ := strconv.Unquote(literal.Value)
					names[name] = true
				}
			}
		}
		return true
	})
	return names
}
