// Package promrules checks the chart's alerts (charts/.../files/alerts.yaml)
// with Prometheus's own rule parser and evaluates each alert's expression
// with Prometheus's PromQL engine over series a running operator served
// (testdata/metrics.txt, written by go test ./test/metrics -update in the
// main module). It is a module of its own so that Prometheus's
// dependencies stay out of the operator's.
package promrules

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"text/template"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/teststorage"
)

const chartDir = "../../charts/spire-federation-operator"

// rules renders files/alerts.yaml as the chart's tpl does with the given
// values, and parses it with Prometheus's rule file parser.
func rules(t *testing.T, values map[string]any) map[string]rulefmt.Rule {
	t.Helper()
	source, err := os.ReadFile(filepath.Join(chartDir, "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("alerts").Option("missingkey=error").Parse(string(source))
	if err != nil {
		t.Fatal(err)
	}
	var rendered bytes.Buffer
	if err := tmpl.Execute(&rendered, map[string]any{"Values": map[string]any{"prometheusRule": values}}); err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(rendered.Bytes(), false)
	if len(errs) > 0 {
		t.Fatalf("rulefmt: %v\n%s", errs, rendered.String())
	}
	out := map[string]rulefmt.Rule{}
	for _, group := range groups.Groups {
		for _, rule := range group.Rules {
			if rule.Alert == "" {
				t.Errorf("rule %q is not an alert", rule.Record)
				continue
			}
			// rulefmt.Parse has parsed the annotations' templates as the
			// rule manager expands them ($labels, $value, humanizeDuration).
			out[rule.Alert] = rule
		}
	}
	return out
}

// series are the samples of the snapshot, one per series.
type series struct {
	labels labels.Labels
	value  float64
}

// snapshot reads testdata/metrics.txt, histograms as their _bucket, _sum
// and _count series.
func snapshot(t *testing.T) []series {
	t.Helper()
	file, err := os.Open(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var parser expfmt.TextParser
	families, err := parser.TextToMetricFamilies(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for name, family := range families {
		for _, metric := range family.GetMetric() {
			base := map[string]string{}
			for _, pair := range metric.GetLabel() {
				base[pair.GetName()] = pair.GetValue()
			}
			add := func(name string, value float64, extra ...string) {
				set := map[string]string{"__name__": name}
				for k, v := range base {
					set[k] = v
				}
				for i := 0; i+1 < len(extra); i += 2 {
					set[extra[i]] = extra[i+1]
				}
				out = append(out, series{labels.FromMap(set), value})
			}
			switch family.GetType() {
			case dto.MetricType_COUNTER:
				add(name, metric.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, metric.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				histogram := metric.GetHistogram()
				for _, bucket := range histogram.GetBucket() {
					add(name+"_bucket", float64(bucket.GetCumulativeCount()), "le", fmt.Sprint(bucket.GetUpperBound()))
				}
				add(name+"_bucket", float64(histogram.GetSampleCount()), "le", "+Inf")
				add(name+"_sum", histogram.GetSampleSum())
				add(name+"_count", float64(histogram.GetSampleCount()))
			default:
				add(name, metric.GetUntyped().GetValue())
			}
		}
	}
	return out
}

// scrapeTime is when the snapshot was taken: its latest bundle fetch.
func scrapeTime(t *testing.T, all []series) time.Time {
	t.Helper()
	latest := 0.0
	for _, s := range all {
		if s.labels.Get("__name__") == "spirefed_bundle_last_fetch_timestamp_seconds" {
			latest = math.Max(latest, s.value)
		}
	}
	if latest == 0 {
		t.Fatal("the snapshot has no spirefed_bundle_last_fetch_timestamp_seconds")
	}
	return time.Unix(int64(latest), 0)
}

// firing evaluates an alert as Prometheus's rule manager would at time at,
// the series having held their snapshot values, scraped every 30s, for
// the past `held`: it returns the label sets for which the expression
// returned a sample at every evaluation of the last `for`.
func firing(t *testing.T, rule rulefmt.Rule, all []series, at time.Time, held time.Duration) []labels.Labels {
	t.Helper()
	if _, err := parser.ParseExpr(rule.Expr); err != nil {
		t.Fatalf("alert %s: %v", rule.Alert, err)
	}
	storage := teststorage.New(t)
	t.Cleanup(func() { storage.Close() })
	appender := storage.Appender(context.Background())
	for ts := at.Add(-held); !ts.After(at); ts = ts.Add(30 * time.Second) {
		for _, s := range all {
			if _, err := appender.Append(0, s.labels, ts.UnixMilli(), s.value); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := appender.Commit(); err != nil {
		t.Fatal(err)
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	hold := time.Duration(rule.For)
	query, err := engine.NewRangeQuery(context.Background(), storage, nil, rule.Expr, at.Add(-hold), at, time.Minute)
	if err != nil {
		t.Fatalf("alert %s: %v", rule.Alert, err)
	}
	defer query.Close()
	result := query.Exec(context.Background())
	if result.Err != nil {
		t.Fatalf("alert %s: %v", rule.Alert, result.Err)
	}
	matrix, err := result.Matrix()
	if err != nil {
		t.Fatal(err)
	}
	steps := int(hold/time.Minute) + 1
	var out []labels.Labels
	for _, s := range matrix {
		if len(s.Floats) == steps {
			out = append(out, s.Metric)
		}
	}
	return out
}

// names lists the values of a label of the firing series, sorted.
func names(sets []labels.Labels, label string) []string {
	var out []string
	for _, set := range sets {
		out = append(out, set.Get(label))
	}
	slices.Sort(out)
	return out
}

func TestAlerts(t *testing.T) {
	all := snapshot(t)
	now := scrapeTime(t, all)
	alerts := rules(t, map[string]any{"authorityExpiryDays": 7, "severity": "warning"})
	want := []string{"SpirefedAuthorityExpiringSoon", "SpirefedBundleFetchFailing", "SpirefedMeshPairNotConverged",
		"SpirefedSpireInstallFailing", "SpirefedZoneUnreachable"}
	var got []string
	for name, rule := range alerts {
		got = append(got, name)
		if rule.Labels["severity"] != "warning" || rule.For == 0 {
			t.Errorf("alert %s: severity %q, for %s", name, rule.Labels["severity"], rule.For)
		}
	}
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v", got, want)
	}

	long := 2 * time.Hour
	for _, tc := range []struct {
		alert, label string
		want         []string
	}{
		// down's API server refuses connections; helm's SPIRE install
		// fails and its endpoint refuses connections; ok is healthy.
		{"SpirefedZoneUnreachable", "zone", []string{"down"}},
		{"SpirefedBundleFetchFailing", "zone", []string{"down", "helm"}},
		{"SpirefedSpireInstallFailing", "zone", []string{"helm"}},
		// Neither pair of ok and down converges.
		{"SpirefedMeshPairNotConverged", "zone", []string{"down", "ok"}},
	} {
		t.Run(tc.alert, func(t *testing.T) {
			rule := alerts[tc.alert]
			if got := names(firing(t, rule, all, now, long), tc.label); !slices.Equal(got, tc.want) {
				t.Errorf("fires for %v, want %v", got, tc.want)
			}
			// Not yet: the condition has held for less than the rule's for.
			if got := firing(t, rule, all, now, time.Duration(rule.For)/2); len(got) != 0 {
				t.Errorf("fires after %s for %v, want nothing before %s", time.Duration(rule.For)/2, got, time.Duration(rule.For))
			}
		})
	}

	t.Run("SpirefedAuthorityExpiringSoon", func(t *testing.T) {
		rule := alerts["SpirefedAuthorityExpiringSoon"]
		var expiry float64
		for _, s := range all {
			if s.labels.Get("__name__") == "spirefed_zone_x509_authority_expiry_timestamp_seconds" && s.labels.Get("zone") == "ok" {
				expiry = s.value
			}
		}
		if expiry == 0 {
			t.Fatal("no authority expiry of zone ok in the snapshot")
		}
		expires := time.Unix(int64(expiry), 0)
		if got := names(firing(t, rule, all, expires.Add(-24*time.Hour), long), "zone"); !slices.Equal(got, []string{"ok"}) {
			t.Errorf("a day before the expiry: fires for %v, want [ok]", got)
		}
		if got := firing(t, rule, all, expires.Add(-8*24*time.Hour), long); len(got) != 0 {
			t.Errorf("8 days before the expiry: fires for %v, want nothing", got)
		}
		// The threshold is the chart's value.
		three := rules(t, map[string]any{"authorityExpiryDays": 3, "severity": "warning"})["SpirefedAuthorityExpiringSoon"]
		if got := firing(t, three, all, expires.Add(-4*24*time.Hour), long); len(got) != 0 {
			t.Errorf("authorityExpiryDays 3, 4 days before the expiry: fires for %v", got)
		}
	})

	t.Run("healthy series fire nothing", func(t *testing.T) {
		// Every condition True, every pair Converged, authorities far from expiry.
		var healthy []series
		for _, s := range all {
			switch s.labels.Get("__name__") {
			case "spirefed_zone_condition":
				s.value = 1
			case "spirefed_mesh_zone_pairs_not_converged":
				s.value = 0
			}
			healthy = append(healthy, s)
		}
		for name, rule := range alerts {
			if got := firing(t, rule, healthy, now.Add(-30*24*time.Hour), long); len(got) != 0 {
				t.Errorf("%s fires for %v", name, got)
			}
		}
	})
}
