package controllers

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// The suite's clusters: a management cluster and three zone clusters, with
// the operator's reconcilers running in this process against them.
var (
	env     *testenv.Env
	testCtx context.Context
)

// zoneNames of the suite's plain zone clusters (API servers only), and
// kwokZoneNames of its KWOK clusters, where Pods run (simulated).
var (
	zoneNames     = []string{"alpha", "beta", "gamma"}
	kwokZoneNames = []string{"kwok1", "kwok2"}
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	level := zapcore.ErrorLevel
	if os.Getenv("SPIREFED_TEST_VERBOSE") != "" {
		level = zapcore.DebugLevel
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(level)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	testCtx = ctx

	specs := make([]testenv.ZoneSpec, 0, len(zoneNames))
	for _, name := range zoneNames {
		specs = append(specs, testenv.ZoneSpec{Name: name})
	}
	for _, name := range kwokZoneNames {
		specs = append(specs, testenv.ZoneSpec{Name: name, KWOK: true, WithoutSpireCRDs: true})
	}
	var err error
	env, err = testenv.Start(ctx, testenv.Options{Zones: specs})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting clusters: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping clusters: %v\n", err)
		}
	}()
	operatorCtx, stopOperator := context.WithCancel(ctx)
	operatorDone, err := startOperator(operatorCtx)
	if err != nil {
		stopOperator()
		fmt.Fprintf(os.Stderr, "starting operator: %v\n", err)
		return 1
	}
	code := m.Run()
	// Stop the operator's watches before the API servers, which otherwise
	// wait for them to end.
	stopOperator()
	<-operatorDone
	return code
}

// registry is the operator's zone registry, for tests that check what it
// holds.
var registry *zones.Registry

// suiteIntervals are the operator's probe and resync intervals: short, so
// that tests see changes within seconds, or, with
// SPIREFED_BENCH_DEFAULT_INTERVALS set (make bench), the operator's
// defaults, so that benchmarks measure the operator as deployed.
var suiteIntervals = func() (intervals struct{ probe, zoneResync, meshResync time.Duration }) {
	if os.Getenv("SPIREFED_BENCH_DEFAULT_INTERVALS") != "" {
		// operator.DefaultOptions' (that package imports this one).
		intervals.probe, intervals.zoneResync, intervals.meshResync = 10*time.Second, time.Minute, time.Minute
		return intervals
	}
	intervals.probe, intervals.zoneResync, intervals.meshResync = 500*time.Millisecond, time.Second, 5*time.Second
	return intervals
}()

// startOperator runs the reconcilers as main.go wires them, with short
// intervals so that tests see changes within seconds.
func startOperator(ctx context.Context) (<-chan struct{}, error) {
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Namespaces: map[string]cache.Config{testenv.OperatorNamespace: {}}},
	}
	if selector := benchOperatorSelector(); selector != "" {
		// The scale benchmark's objects belong to a separate operator.
		parsed, err := labels.Parse(selector)
		if err != nil {
			return nil, err
		}
		byObject[&spirefedv1alpha1.ZoneTrustDomain{}] = cache.ByObject{Label: parsed}
		byObject[&spirefedv1alpha1.FederationMesh{}] = cache.ByObject{Label: parsed}
	}
	mgr, err := ctrl.NewManager(env.Management.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: byObject},
	})
	if err != nil {
		return nil, err
	}
	registry = zones.NewRegistry(zones.Options{
		Namespace:     testenv.OperatorNamespace,
		SecretReader:  mgr.GetClient(),
		LocalConfig:   env.Management.Config,
		Scheme:        env.Scheme,
		ProbeInterval: suiteIntervals.probe,
		Log:           ctrl.Log.WithName("zones"),
		OwnedLabels:   apply.OwnedLabels,
		OwnedKinds:    apply.WatchedKinds(),
	})
	if err := mgr.Add(registry); err != nil {
		return nil, err
	}
	realClock := clock.RealClock{}
	releases := &spirehelm.Lifecycle{
		Installer: &spirehelm.Installer{Timeout: time.Minute, PendingTimeout: 2 * time.Second, Clock: realClock},
		Charts:    &spirehelm.ChartSource{},
		ConfigMapPackages: func(ctx context.Context, name string) (map[string][]byte, error) {
			configMap := &corev1.ConfigMap{}
			if err := mgr.GetAPIReader().Get(ctx, types.NamespacedName{Namespace: testenv.OperatorNamespace, Name: name}, configMap); err != nil {
				return nil, fmt.Errorf("reading chart ConfigMap %s/%s: %w", testenv.OperatorNamespace, name, err)
			}
			return configMap.BinaryData, nil
		},
		RetryInterval:    time.Second,
		MaxRetryInterval: 4 * time.Second,
		ProgressInterval: time.Second,
		Clock:            realClock,
		MeshValues:       MeshSDSValues(mgr.GetClient()),
	}
	applier := &apply.Applier{}
	spireServers := &spireaccess.Access{}
	if err := (&ZoneTrustDomainReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Zones:                   registry,
		EventRecorder:           mgr.GetEventRecorder("spire-federation-operator"),
		Applier:                 applier,
		Releases:                releases,
		Spire:                   spireServers,
		Fetcher:                 bundle.Fetcher{Timeout: 2 * time.Second, Clock: realClock},
		FetchSchedule:           bundle.Schedule{DefaultInterval: 2 * time.Second, MinInterval: time.Second, MaxInterval: time.Hour, RetryInterval: time.Second},
		ResyncInterval:          suiteIntervals.zoneResync,
		MaxConcurrentReconciles: 4,
		Clock:                   realClock,
	}).SetupWithManager(ctx, mgr); err != nil {
		return nil, err
	}
	if err := (&FederationMeshReconciler{
		Client:               mgr.GetClient(),
		Zones:                registry,
		Applier:              applier,
		EventRecorder:        mgr.GetEventRecorder("spire-federation-operator"),
		Spire:                spireServers,
		ResyncInterval:       suiteIntervals.meshResync,
		SpireRefreshInterval: time.Second,
		SpireCallTimeout:     10 * time.Second,
		Clock:                realClock,
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "operator stopped: %v\n", err)
		}
	}()
	return done, nil
}

// waitForZoneCondition waits until the zone's condition has the status and
// reason, and returns the zone.
func waitForZoneCondition(t testing.TB, name, conditionType string, status metav1.ConditionStatus, reason string) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	return waitForZoneMessage(t, name, conditionType, status, reason, "")
}

// waitForZoneMessage waits until the zone's condition has the status and
// reason and its message contains messagePart, and returns the zone.
func waitForZoneMessage(t testing.TB, name, conditionType string, status metav1.ConditionStatus, reason, messagePart string) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	return waitForCondition(t, &spirefedv1alpha1.ZoneTrustDomain{}, name, conditionType, status, reason, messagePart)
}

// waitForCondition is the one wait for a condition of either kind: it
// waits until obj's condition, observed at obj's generation, has the
// status and reason and a message containing messagePart, and returns obj.
func waitForCondition[T interface {
	client.Object
	GetConditions() []metav1.Condition
}](t testing.TB, obj T, name, conditionType string, status metav1.ConditionStatus, reason, messagePart string) T {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := env.Management.Client.Get(testCtx, types.NamespacedName{Name: name}, obj); err != nil {
			last = err.Error()
		} else if condition := meta.FindStatusCondition(obj.GetConditions(), conditionType); condition == nil {
			last = "no condition"
		} else if condition.Status == status && condition.Reason == reason && condition.ObservedGeneration == obj.GetGeneration() && strings.Contains(condition.Message, messagePart) {
			return obj
		} else {
			last = fmt.Sprintf("%s %s: %s", condition.Status, condition.Reason, condition.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%T %s: condition %s did not become %s/%s (%q); last: %s", obj, name, conditionType, status, reason, messagePart, last)
	return obj
}

// newZone returns a ZoneTrustDomain reaching a zone cluster through
// secretName, with a bundle endpoint that does not answer.
func newZone(name, trustDomain, secretName string) *spirefedv1alpha1.ZoneTrustDomain {
	return newZoneAt(name, trustDomain, secretName, "https://127.0.0.1:1")
}

// newZoneAt is newZone with the bundle endpoint at url.
func newZoneAt(name, trustDomain, secretName, url string) *spirefedv1alpha1.ZoneTrustDomain {
	return testenv.ExternalZone(name, trustDomain, secretName, url)
}

// writeBundleConfigMap writes the spire-bundle ConfigMap of a zone cluster.
func writeBundleConfigMap(t *testing.T, zoneCluster *testenv.Cluster, data string) {
	t.Helper()
	writeBundleConfigMapIn(t, zoneCluster, "spire-server", data)
}

// writeBundleConfigMapIn writes the spire-bundle ConfigMap in a namespace.
func writeBundleConfigMapIn(t testing.TB, zoneCluster *testenv.Cluster, namespaceName, data string) {
	t.Helper()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceName}}
	if err := zoneCluster.Client.Create(testCtx, namespace); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	configMap := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: namespaceName, Name: "spire-bundle"},
		Data:       map[string]string{"bundle.crt": data},
	}
	if err := zoneCluster.Client.Patch(testCtx, configMap, client.Apply, client.FieldOwner("test"), client.ForceOwnership); err != nil {
		t.Fatal(err)
	}
}

// conditionOf returns a condition of a zone, or an empty one.
func conditionOf(zone *spirefedv1alpha1.ZoneTrustDomain, conditionType string) metav1.Condition {
	for _, condition := range zone.Status.Conditions {
		if condition.Type == conditionType {
			return condition
		}
	}
	return metav1.Condition{}
}

func getZone(t testing.TB, name string) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := env.Management.Client.Get(testCtx, types.NamespacedName{Name: name}, zone); err != nil {
		t.Fatal(err)
	}
	return zone
}

// testDeadline returns a function that sleeps a little and says whether
// the given number of seconds has passed.
func testDeadline(seconds int) func() bool {
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	return func() bool {
		time.Sleep(100 * time.Millisecond)
		return time.Now().After(end)
	}
}

type x509Certificate = x509.Certificate

// zoneEndpoint is a zone's PKI and its bundle endpoint on loopback.
type zoneEndpoint struct {
	*testenv.TestZonePKI
	server *testenv.BundleServer
}

// startZoneEndpoint creates a trust domain's CA and serves its bundle
// (sequence 1) with an SVID for spiffe://<trustDomain>/spire/server.
func startZoneEndpoint(t testing.TB, trustDomain string) *zoneEndpoint {
	t.Helper()
	endpoint := testenv.StartZoneEndpoint(t, trustDomain)
	return &zoneEndpoint{TestZonePKI: endpoint.TestZonePKI, server: endpoint.Server}
}

// bootstrapPEM is the zone CA as the bootstrap ConfigMap holds it.
func (z *zoneEndpoint) bootstrapPEM() string { return string(testenv.PEM(z.CA.Cert)) }

// zoneWrites is what the operator has written in zones so far (applies and
// deletes), as its spirefed_zone_writes_total metric counts.
func zoneWrites(t testing.TB) int64 { return metricTotal(t, "spirefed_zone_writes_total") }

// spireRefreshes is how many refresh requests the operator has sent to
// SPIRE servers, as spirefed_spire_bundle_refreshes_total counts.
func spireRefreshes(t testing.TB) int64 {
	return metricTotal(t, "spirefed_spire_bundle_refreshes_total")
}

// metricTotal sums a counter's series in the operator's registry.
func metricTotal(t testing.TB, name string) int64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, family := range families {
		if family.GetName() == name {
			for _, metric := range family.GetMetric() {
				total += metric.GetCounter().GetValue()
			}
		}
	}
	return int64(total)
}
