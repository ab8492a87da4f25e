package promrules

import (
	"encoding/json"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// TestQueriesNameExportedMetrics parses every query of the dashboard and
// of the alerts with Prometheus's parser and checks that each selects a
// metric the operator exports: one of internal/metrics, or one the
// running operator served (controller-runtime's).
func TestQueriesNameExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	for _, s := range snapshot(t) {
		exported[s.labels.Get("__name__")] = true
	}
	file, err := goparser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "internal", "metrics", "metrics.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ast.Inspect(file, func(node ast.Node) bool {
		if field, ok := node.(*ast.KeyValueExpr); ok {
			if key, ok := field.Key.(*ast.Ident); ok && key.Name == "Name" {
				if literal, ok := field.Value.(*ast.BasicLit); ok && literal.Kind == token.STRING {
					name, _ := strconv.Unquote(literal.Value)
					exported[name] = true
					for _, suffix := range []string{"_bucket", "_sum", "_count"} {
						if strings.HasSuffix(name, "_seconds") {
							exported[name+suffix] = true
						}
					}
				}
			}
		}
		return true
	})

	var queries []string
	for _, rule := range rules(t, map[string]any{"authorityExpiryDays": 7, "severity": "warning"}) {
		queries = append(queries, rule.Expr)
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var board struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(data, &board); err != nil {
		t.Fatal(err)
	}
	for _, panel := range board.Panels {
		for _, target := range panel.Targets {
			queries = append(queries, target.Expr)
		}
	}
	// Grafana's label_values(metric, label) selects metric.
	labelValues := regexp.MustCompile(`^label_values\(([^,]+),[^)]*\)$`)
	for _, variable := range board.Templating.List {
		if match := labelValues.FindStringSubmatch(variable.Definition); match != nil {
			queries = append(queries, match[1])
		}
	}

	for _, query := range queries {
		// Grafana's variables, as Grafana substitutes them.
		expr, err := parser.ParseExpr(strings.ReplaceAll(query, "$zone", ".*"))
		if err != nil {
			t.Errorf("%q: %v", query, err)
			continue
		}
		selectors := 0
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			if selector, ok := node.(*parser.VectorSelector); ok {
				selectors++
				if !exported[selector.Name] {
					t.Errorf("%q selects %s, which the operator does not export", query, selector.Name)
				}
			}
			return nil
		})
		if selectors == 0 {
			t.Errorf("%q selects no metric", query)
		}
	}
}
