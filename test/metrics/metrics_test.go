// Package metrics_test runs the operator in-process against a management
// cluster and one zone, with a healthy zone, an unreachable one, one whose
// SPIRE install fails and a mesh of the first two, and keeps a snapshot of what its /metrics endpoint serves in
// hack/promrules/testdata/metrics.txt: the series on which hack/promrules
// evaluates the chart's alerts. go test ./test/metrics -update rewrites it;
// otherwise every metric family of the snapshot must still be served.
package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/operator"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite hack/promrules/testdata/metrics.txt from the running operator")

// kept are the metric families the snapshot holds: the operator's own and
// controller-runtime's reconcile counters, which the alerts and the
// dashboard use.
func kept(name string) bool {
	return strings.HasPrefix(name, "spirefed_") || strings.HasPrefix(name, "controller_runtime_reconcile_")
}

func TestMetricsSnapshot(t *testing.T) {
	ctrl.SetLogger(zap.New(zap.Level(zapLevel())))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartForTest(ctx, t, testenv.Options{Zones: []testenv.ZoneSpec{{Name: "alpha"}}})
	c := env.Management.Client

	address := freeAddress(t)
	operatorCtx, stopOperator := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- operator.Run(operatorCtx, env.Management.Config, operator.Options{
			Namespace: testenv.OperatorNamespace, MetricsAddr: address, MetricsSecure: false, ProbeAddr: "0",
			ZoneProbeInterval: time.Second, ZoneResyncInterval: 2 * time.Second, MeshResyncInterval: 2 * time.Second,
			MinFetchInterval: time.Second, FetchRetryInterval: time.Second, SpireRefresh: time.Second,
		})
	}()
	// The operator's watches end before the API servers stop.
	t.Cleanup(func() {
		stopOperator()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("operator: %v", err)
		}
	})

	// ok: reachable, its bundle fetched from a loopback endpoint, SPIRE external.
	endpoint := testenv.StartZoneEndpoint(t, "ok.example")
	writeBundleConfigMap(ctx, t, env.Zones["alpha"].Client, string(testenv.PEM(endpoint.CA.Cert)))
	create(ctx, t, c, zone("ok", "ok.example", testenv.KubeconfigSecretName("alpha"), endpoint.Server.URL))

	// down: its API server and bundle endpoint refuse connections.
	admin, err := clientcmd.Load(mustKubeconfig(t, env.Zones["alpha"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, cluster := range admin.Clusters {
		cluster.Server = "https://127.0.0.1:1"
	}
	unreachable, err := clientcmd.Write(*admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.WriteKubeconfigSecret(ctx, "down-kubeconfig", unreachable); err != nil {
		t.Fatal(err)
	}
	create(ctx, t, c, zone("down", "down.example", "down-kubeconfig", "https://127.0.0.1:1"))
	// helm: the operator installs SPIRE, which cannot succeed here.
	helm := zone("helm", "helm.example", testenv.KubeconfigSecretName("alpha"), "https://127.0.0.1:1")
	helm.Spec.Spire = spirefedv1alpha1.SpireInstallation{Install: spirefedv1alpha1.SpireInstallHelm, Namespace: "spire-helm", ReleaseName: "spire"}
	create(ctx, t, c, helm)
	create(ctx, t, c, &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "pair"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{"ok", "down"}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	})

	waitFor(ctx, t, "zone ok Ready", func() bool {
		return conditionIs(ctx, c, "ok", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue)
	})
	waitFor(ctx, t, "zone down unreachable", func() bool {
		return conditionIs(ctx, c, "down", spirefedv1alpha1.ClusterReachableCondition, metav1.ConditionFalse)
	})
	waitFor(ctx, t, "zone helm's SPIRE not installed", func() bool {
		return conditionIs(ctx, c, "helm", spirefedv1alpha1.SpireInstalledCondition, metav1.ConditionFalse)
	})
	waitFor(ctx, t, "the mesh's pairs in status", func() bool {
		mesh := &spirefedv1alpha1.FederationMesh{}
		return c.Get(ctx, client.ObjectKey{Name: "pair"}, mesh) == nil && len(mesh.Status.Pairs) == 2
	})

	var snapshot string
	waitFor(ctx, t, "series of both zones and of the pairs", func() bool {
		snapshot = scrape(t, "http://"+address+"/metrics")
		return strings.Contains(snapshot, `spirefed_zone_condition{type="ClusterReachable",zone="down"} 0`) &&
			strings.Contains(snapshot, `spirefed_zone_condition{type="Ready",zone="ok"} 1`) &&
			strings.Contains(snapshot, `spirefed_zone_condition{type="SpireInstalled",zone="helm"} 0`) &&
			strings.Contains(snapshot, `spirefed_zone_x509_authority_expiry_timestamp_seconds{zone="ok"}`) &&
			strings.Contains(snapshot, `spirefed_mesh_zone_pairs_not_converged{mesh="pair",zone="ok"} 1`) &&
			strings.Contains(snapshot, `spirefed_zone_writes_total{zone="ok"}`) &&
			strings.Contains(snapshot, `spirefed_bundle_fetches_total{result="Fetched",zone="ok"}`)
	})

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "hack", "promrules", "testdata", "metrics.txt")
	if *update {
		if err := os.WriteFile(path, []byte(snapshot), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./test/metrics -update writes it)", err)
	}
	live := families(snapshot)
	for _, name := range families(string(committed)) {
		if !slices.Contains(live, name) {
			t.Errorf("the snapshot's metric %s is no longer served: run go test ./test/metrics -update", name)
		}
	}
}

// scrape returns the kept families of the text exposition at url.
func scrape(t *testing.T, url string) string {
	t.Helper()
	response, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	if err != nil || response.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, response.StatusCode, err)
	}
	var out strings.Builder
	scanner := bufio.NewScanner(strings.NewReader(string(body)))
	for scanner.Scan() {
		line := scanner.Text()
		name := line
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			if fields := strings.Fields(rest); len(fields) > 1 {
				name = fields[1]
			}
		}
		if kept(strings.FieldsFunc(name, func(r rune) bool { return r == '{' || r == ' ' })[0]) {
			out.WriteString(line + "\n")
		}
	}
	return out.String()
}

// families returns the metric families a text exposition declares.
func families(exposition string) []string {
	var names []string
	for line := range strings.Lines(exposition) {
		if fields := strings.Fields(line); len(fields) >= 3 && fields[0] == "#" && fields[1] == "TYPE" {
			names = append(names, fields[2])
		}
	}
	return names
}

func zone(name, trustDomain, secret, url string) *spirefedv1alpha1.ZoneTrustDomain {
	return testenv.ExternalZone(name, trustDomain, secret, url)
}

func create(ctx context.Context, t *testing.T, c client.Client, object client.Object) {
	t.Helper()
	if err := c.Create(ctx, object); err != nil {
		t.Fatal(err)
	}
}

func conditionIs(ctx context.Context, c client.Client, name, conditionType string, status metav1.ConditionStatus) bool {
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, zone); err != nil {
		return false
	}
	condition := meta.FindStatusCondition(zone.Status.Conditions, conditionType)
	return condition != nil && condition.Status == status
}

func waitFor(ctx context.Context, t *testing.T, what string, done func() bool) {
	t.Helper()
	for !done() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func freeAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().String()
}

func mustKubeconfig(t *testing.T, cluster *testenv.Cluster) []byte {
	t.Helper()
	kubeconfig, err := cluster.Kubeconfig("snapshot-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

func zapLevel() zapcore.Level {
	if os.Getenv("SPIREFED_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// writeBundleConfigMap writes the zone's bootstrap authorities where its
// spec says: spire-bundle in spire-server.
func writeBundleConfigMap(ctx context.Context, t *testing.T, c client.Client, pem string) {
	t.Helper()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spire-server"}}
	if err := c.Create(ctx, namespace); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	configMap := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "spire-server", Name: "spire-bundle"},
		Data:       map[string]string{"bundle.crt": pem},
	}
	if err := c.Create(ctx, configMap); err != nil {
		t.Fatal(err)
	}
}
