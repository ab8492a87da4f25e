package operator

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// writeLog records the paths of the writes an operator instance sends to
// the management API server.
type writeLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *writeLog) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodGet {
			l.mu.Lock()
			l.paths = append(l.paths, req.Method+" "+req.URL.Path)
			l.mu.Unlock()
		}
		return next.RoundTrip(req)
	})
}

func (l *writeLog) spirefedWrites() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var writes []string
	for _, path := range l.paths {
		if strings.Contains(path, "/apis/spirefed.io/") {
			writes = append(writes, path)
		}
	}
	return writes
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestShardsWriteDisjointObjects runs two operator instances on one
// management API server, each with its own --watch-label-selector: each
// converges the mesh and zones of its shard, and neither writes an object
// of the other's.
func TestShardsWriteDisjointObjects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := testenv.StartForTest(ctx, t, testenv.Options{Zones: []testenv.ZoneSpec{{Name: "zone"}}})
	shards := []string{"a", "b"}
	logs := map[string]*writeLog{}
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()
	for _, shard := range shards {
		logs[shard] = &writeLog{}
		startShard(ctx, t, env, shard, logs[shard], &running)
	}
	for _, shard := range shards {
		createShardMesh(ctx, t, env, shard)
	}
	for _, shard := range shards {
		waitForShardMesh(ctx, t, env, "shard-"+shard)
	}
	for _, shard := range shards {
		other := "shard-" + shards[(slices.Index(shards, shard)+1)%len(shards)]
		writes := logs[shard].spirefedWrites()
		if len(writes) == 0 {
			t.Errorf("instance %s wrote nothing", shard)
		}
		for _, path := range writes {
			if strings.Contains(path, other) {
				t.Errorf("instance %s wrote an object of %s: %s", shard, other, path)
			}
		}
		var federated spirev1alpha1.ClusterFederatedTrustDomainList
		if err := env.Zones["zone"].Client.List(ctx, &federated, client.MatchingLabels{plan.LabelMesh: "shard-" + shard}); err != nil {
			t.Fatal(err)
		}
		if len(federated.Items) != 2 {
			t.Errorf("mesh shard-%s holds %d ClusterFederatedTrustDomains, want 2", shard, len(federated.Items))
		}
	}
	if ShardLeaderElectionID("spirefed.io/shard=a") == ShardLeaderElectionID("spirefed.io/shard=b") {
		t.Error("two shards share a leader election Lease")
	}
}

// startShard runs an operator instance for one shard, in this process.
func startShard(ctx context.Context, t *testing.T, env *testenv.Env, shard string, log *writeLog, running *sync.WaitGroup) {
	t.Helper()
	config := rest.CopyConfig(env.Management.Config)
	config.Wrap(log.wrap)
	opts := Options{
		MetricsAddr: "0", ProbeAddr: "0", Namespace: testenv.OperatorNamespace,
		ZoneProbeInterval: time.Second, ZoneResyncInterval: 2 * time.Second, MeshResyncInterval: 5 * time.Second,
		MinFetchInterval: time.Second, DefaultFetchInterval: 5 * time.Second, FetchRetryInterval: time.Second,
		WatchLabelSelector: "spirefed.io/shard=" + shard,
	}
	managerOptions, err := ManagerOptions(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Two instances in one process register controllers of the same name.
	managerOptions.Controller.SkipNameValidation = ptr.To(true)
	mgr, err := ctrl.NewManager(config, managerOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(ctx, mgr, config, opts); err != nil {
		t.Fatal(err)
	}
	running.Add(1)
	go func() {
		defer running.Done()
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("instance %s: %v", shard, err)
		}
	}()
}

// createShardMesh creates two zones labelled for the shard, in the zone
// cluster, and a FullMesh of them.
func createShardMesh(ctx context.Context, t *testing.T, env *testenv.Env, shard string) {
	t.Helper()
	shardLabels := map[string]string{"spirefed.io/shard": shard}
	for i := range 2 {
		name := fmt.Sprintf("shard-%s-%d", shard, i)
		endpoint := testenv.StartZoneEndpoint(t, name+".example")
		namespace := "spire-" + name
		zoneClient := env.Zones["zone"].Client
		if err := zoneClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
			t.Fatal(err)
		}
		configMap := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "spire-bundle"},
			Data:       map[string]string{"bundle.crt": string(testenv.PEM(endpoint.CA.Cert))},
		}
		if err := zoneClient.Create(ctx, configMap); err != nil {
			t.Fatal(err)
		}
		zone := testenv.ExternalZone(name, endpoint.TrustDomain.Name(), testenv.KubeconfigSecretName("zone"), endpoint.Server.URL)
		zone.Labels = shardLabels
		zone.Spec.Spire.Namespace = namespace
		zone.Spec.Spire.ClassName = namespace + "-spire"
		if err := env.Management.Client.Create(ctx, zone); err != nil {
			t.Fatal(err)
		}
	}
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "shard-" + shard, Labels: shardLabels},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Selector: &metav1.LabelSelector{MatchLabels: shardLabels}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	if err := env.Management.Client.Create(ctx, mesh); err != nil {
		t.Fatal(err)
	}
}

// waitForShardMesh waits until the mesh is Ready at its generation.
func waitForShardMesh(ctx context.Context, t *testing.T, env *testenv.Env, name string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		mesh := &spirefedv1alpha1.FederationMesh{}
		if err := env.Management.Client.Get(ctx, client.ObjectKey{Name: name}, mesh); err != nil {
			t.Fatal(err)
		}
		ready := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ReadyCondition)
		if ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == mesh.Generation {
			return
		}
		last = fmt.Sprintf("%+v", mesh.Status.Conditions)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("mesh %s not Ready: %s", name, last)
}
