package controllers

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// BenchmarkScale measures, on the suite's three zone API servers, a
// FullMesh of N zones with one identity (N from SPIREFED_BENCH_ZONES,
// default 10,50,200): cold convergence (every pair written and current and
// every federatesWith complete), the rotation of one zone's CA until every
// peer's ClusterFederatedTrustDomain carries it (p50, p95 over
// SPIREFED_BENCH_ROTATIONS rotations, default 10), an idle window (writes,
// the mesh's mean reconcile time, the process's CPU), the FederationMesh
// object's size, and memory. By default the operator runs in the test
// process (as in every controller test): CPU and RSS are the test
// process's, which also serves the zones' bundle endpoints. With
// SPIREFED_BENCH_OPERATOR=process the operator is main.go's binary, a
// separate process with its default intervals that reconciles only the
// benchmark's objects: CPU and peak RSS (VmHWM) are its own. With
// SPIREFED_BENCH_TOPOLOGY=HubAndSpoke the mesh is a hub (the rotated zone)
// and spokes instead of a full mesh. Zones fetch at the default 5m hint.
//
//	go test ./controllers -run '^$' -bench Scale -benchtime 1x
func BenchmarkScale(b *testing.B) {
	sizes := []int{10, 50, 200}
	if value := os.Getenv("SPIREFED_BENCH_ZONES"); value != "" {
		sizes = nil
		for _, field := range strings.Split(value, ",") {
			size, err := strconv.Atoi(strings.TrimSpace(field))
			if err != nil {
				b.Fatalf("SPIREFED_BENCH_ZONES: %v", err)
			}
			sizes = append(sizes, size)
		}
	}
	for _, size := range sizes {
		b.Run(fmt.Sprintf("zones=%d", size), func(b *testing.B) {
			// One op is one whole scenario; the timer runs only during
			// rotations.
			for range b.N {
				benchmarkScale(b, size)
			}
		})
	}
}

// scaleTopology is the mesh's topology: FullMesh, or with
// SPIREFED_BENCH_TOPOLOGY=HubAndSpoke a hub and spoke mesh whose hub is
// the first zone (the one rotated: every other zone trusts it).
func scaleTopology(meshName string) spirefedv1alpha1.Topology {
	if os.Getenv("SPIREFED_BENCH_TOPOLOGY") == string(spirefedv1alpha1.TopologyHubAndSpoke) {
		return spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: meshName + "-0"}
	}
	return spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}
}

// scaleRotations is how many rotations each size measures.
func scaleRotations() int {
	if rotations, err := strconv.Atoi(os.Getenv("SPIREFED_BENCH_ROTATIONS")); err == nil && rotations > 0 {
		return rotations
	}
	return 10
}

// scaleQuietWindow is how long the operator's CPU is measured while
// nothing changes at all: one mesh resync interval of the operator's
// defaults (a minute), so that the window holds the passes an idle mesh
// gets. scaleIdleWindow is how long the mesh is then watched while
// something that changes nothing (a label no selector uses) reconciles it
// every 5 s.
const (
	scaleQuietWindow = time.Minute
	scaleIdleWindow  = 30 * time.Second
)

// report records a figure as a benchmark metric and prints it at once
// (the benchmark line comes only after the mesh's deletion, which takes
// minutes at 200 zones).
func report(b *testing.B, size int, value float64, unit string) {
	b.ReportMetric(value, unit)
	fmt.Printf("scale: zones=%d %s=%.4g\n", size, unit, value)
}

func benchmarkScale(b *testing.B, size int) {
	b.StopTimer()
	memory := startMemorySampler()
	defer memory.stop()
	var operator scaleOperator = inProcessOperator{}
	objectLabels := map[string]string{}
	if benchSeparateOperator() {
		operator = startOperatorProcess(b)
		objectLabels[benchOperatorLabel] = "process"
	}
	meshName := fmt.Sprintf("scale-%d", size)
	members := createScaleZones(b, meshName, size, objectLabels)

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: meshName, Labels: objectLabels},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:      spirefedv1alpha1.ZoneSelection{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench": meshName}}},
			Topology:   scaleTopology(meshName),
			Identities: []spirefedv1alpha1.IdentityTemplate{{Name: "web", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"}},
		},
	}
	created := time.Now()
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { waitForScaleDeletion(b, mesh) })
	stopProfile := startScaleProfile(b, operator, size, "cold")
	ready, federated := waitForScaleConvergence(b, meshName, size, created)
	stopProfile()
	report(b, size, ready.Seconds(), "cold-ready-s")
	report(b, size, federated.Seconds(), "cold-federatesWith-s")

	stopProfile = startScaleProfile(b, operator, size, "rotation")
	latencies := measureRotations(b, members, scaleRotations())
	stopProfile()
	report(b, size, float64(percentile(latencies, 50).Milliseconds()), "rotation-p50-ms")
	report(b, size, float64(percentile(latencies, 95).Milliseconds()), "rotation-p95-ms")

	idle := measureIdle(b, size, meshName, operator)
	writeScaleHeapProfile(b, operator, size)
	report(b, size, float64(idle.writes), "idle-writes")
	report(b, size, float64(idle.statusWrites), "idle-status-writes")
	report(b, size, idle.meanReconcile.Seconds()*1000, "idle-reconcile-ms")
	report(b, size, idle.quietCPUPercent, "idle-cpu-%")
	report(b, size, idle.cpuPercent, "touched-cpu-%")

	current := &spirefedv1alpha1.FederationMesh{}
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: meshName}, current); err != nil {
		b.Fatal(err)
	}
	document, err := json.Marshal(current)
	if err != nil {
		b.Fatal(err)
	}
	report(b, size, float64(len(document))/1024, "mesh-KiB")
	if _, separate := operator.(*operatorProcess); !separate {
		report(b, size, float64(memory.stop())/(1<<20), "heap-peak-MiB")
	}
	report(b, size, float64(operator.peakRSS())/(1<<20), operator.kind()+"-rss-peak-MiB")
}

// scaleZone is one zone of the scale benchmark.
type scaleZone struct {
	name     string
	cluster  *testenv.Cluster
	endpoint *testenv.ZoneEndpoint
}

// createScaleZones creates size zones spread over the suite's zone
// clusters, labelled for the mesh, and waits until all are Ready.
func createScaleZones(b *testing.B, meshName string, size int, extraLabels map[string]string) []*scaleZone {
	members := make([]*scaleZone, size)
	for i := range members {
		name := fmt.Sprintf("%s-%d", meshName, i)
		cluster := zoneNames[i%len(zoneNames)]
		zone := &scaleZone{name: name, cluster: env.Zones[cluster], endpoint: testenv.StartZoneEndpoint(b, name+".fed")}
		namespace := "spire-" + name
		writeBundleConfigMapIn(b, zone.cluster, namespace, string(testenv.PEM(zone.endpoint.CA.Cert)))
		object := newZoneAt(name, zone.endpoint.TrustDomain.Name(), testenv.KubeconfigSecretName(cluster), zone.endpoint.Server.URL)
		object.Labels = map[string]string{"bench": meshName}
		maps.Copy(object.Labels, extraLabels)
		object.Spec.Spire.Namespace = namespace
		object.Spec.Spire.ClassName = namespace + "-spire"
		object.Spec.BundleEndpoint.RefreshHint = &metav1.Duration{Duration: 5 * time.Minute}
		createZone(b, object)
		members[i] = zone
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var zoneList spirefedv1alpha1.ZoneTrustDomainList
		if err := env.Management.Client.List(testCtx, &zoneList, client.MatchingLabels{"bench": meshName}); err != nil {
			b.Fatal(err)
		}
		readyZones := 0
		for _, zone := range zoneList.Items {
			if meta.IsStatusConditionTrue(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition) {
				readyZones++
			}
		}
		if readyZones == size {
			return members
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d zones Ready", readyZones, size)
		}
		time.Sleep(time.Second)
	}
}

// waitForScaleConvergence returns how long after created the mesh was
// Ready (every pair written and current) and every zone's ClusterSPIFFEID
// federated with all its peers.
func waitForScaleConvergence(b *testing.B, meshName string, size int, created time.Time) (ready, federated time.Duration) {
	deadline := created.Add(15 * time.Minute)
	for ready == 0 || federated == 0 {
		if time.Now().After(deadline) {
			b.Fatalf("mesh %s: not converged after %s (ready after %s, federatesWith after %s)", meshName, time.Since(created), ready, federated)
		}
		time.Sleep(100 * time.Millisecond)
		if ready == 0 {
			mesh := &spirefedv1alpha1.FederationMesh{}
			if err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: meshName}, mesh); err != nil {
				b.Fatal(err)
			}
			condition := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ReadyCondition)
			if condition != nil && condition.Status == metav1.ConditionTrue && condition.ObservedGeneration == mesh.Generation && mesh.Status.TotalZones == int32(size) {
				ready = time.Since(created)
			}
		}
		if federated == 0 && completeFederatesWith(b, meshName, size, scaleTopology(meshName)) {
			federated = time.Since(created)
		}
	}
	return ready, federated
}

// completeFederatesWith says whether every zone of the mesh holds its
// ClusterSPIFFEID federating with all its peers: size-1 in a full mesh;
// in a hub and spoke mesh, size-1 for the hub and 1 for a spoke.
func completeFederatesWith(b *testing.B, meshName string, size int, topology spirefedv1alpha1.Topology) bool {
	peers := func(zone string) int {
		if topology.Type == spirefedv1alpha1.TopologyHubAndSpoke && zone != topology.Hub {
			return 1
		}
		return size - 1
	}
	complete := 0
	for _, name := range zoneNames {
		var ids spirev1alpha1.ClusterSPIFFEIDList
		if err := env.Zones[name].Client.List(testCtx, &ids, client.MatchingLabels{plan.LabelMesh: meshName}); err != nil {
			b.Fatal(err)
		}
		for _, id := range ids.Items {
			if len(id.Spec.FederatesWith) == peers(id.Labels[plan.LabelZone]) {
				complete++
			}
		}
	}
	return complete == size
}

// measureRotations rotates the first zone's CA rotations times and returns
// how long each took from publication until every peer's
// ClusterFederatedTrustDomain carried it, as watched in the zone clusters.
func measureRotations(b *testing.B, members []*scaleZone, rotations int) []time.Duration {
	rotated := members[0]
	watcher := watchPeerSequences(b, rotated)
	peers := len(members) - 1
	var latencies []time.Duration
	for sequence := uint64(2); sequence < uint64(2+rotations); sequence++ {
		// The original CA stays: an authority once published must not
		// go missing while it is valid.
		next, err := testenv.NewSPIFFECA(rotated.endpoint.TrustDomain.Name())
		if err != nil {
			b.Fatal(err)
		}
		published := spiffebundle.FromX509Authorities(rotated.endpoint.TrustDomain, []*x509.Certificate{rotated.endpoint.CA.Cert, next.Cert})
		published.SetSequenceNumber(sequence)
		reached := watcher.expect(sequence, peers)
		b.StartTimer()
		started := time.Now()
		rotated.endpoint.Server.SetBundle(published)
		writeBundleConfigMapIn(b, rotated.cluster, "spire-"+rotated.name, string(testenv.PEM(rotated.endpoint.CA.Cert, next.Cert)))
		select {
		case <-reached:
		case <-time.After(2 * time.Minute):
			b.Fatalf("rotation %d did not reach %d peers", sequence, peers)
		}
		latencies = append(latencies, time.Since(started))
		b.StopTimer()
		// Fetches of one endpoint are at least the suite's minimum
		// interval (1s) apart.
		time.Sleep(1500 * time.Millisecond)
	}
	return latencies
}

// sequenceWatcher watches, in every zone cluster, the
// ClusterFederatedTrustDomains that trust one zone.
type sequenceWatcher struct {
	mu      sync.Mutex
	held    map[string]uint64
	target  uint64
	peers   int
	reached chan struct{}
}

// expect arms the watcher: the channel closes once peers objects carry sequence.
func (w *sequenceWatcher) expect(sequence uint64, peers int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target, w.peers, w.reached = sequence, peers, make(chan struct{})
	return w.reached
}

func (w *sequenceWatcher) observe(obj any) {
	cftd, ok := obj.(*spirev1alpha1.ClusterFederatedTrustDomain)
	if !ok {
		return
	}
	trustDomain, err := spiffeid.TrustDomainFromString(cftd.Spec.TrustDomain)
	if err != nil {
		return
	}
	held, err := spiffebundle.Parse(trustDomain, []byte(cftd.Spec.TrustDomainBundle))
	if err != nil {
		return
	}
	sequence, _ := held.SequenceNumber()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held[cftd.Labels[plan.LabelZone]+"/"+cftd.Name] = sequence
	if w.reached == nil || w.target == 0 {
		return
	}
	count := 0
	for _, got := range w.held {
		if got == w.target {
			count++
		}
	}
	if count >= w.peers {
		close(w.reached)
		w.reached = nil
	}
}

// watchPeerSequences starts informers, in every zone cluster, on the
// ClusterFederatedTrustDomains whose peer is the rotated zone.
func watchPeerSequences(b *testing.B, rotated *scaleZone) *sequenceWatcher {
	watcher := &sequenceWatcher{held: map[string]uint64{}}
	ctx, cancel := context.WithCancel(testCtx)
	b.Cleanup(cancel)
	for _, name := range zoneNames {
		zoneCache, err := cache.New(env.Zones[name].Config, cache.Options{
			Scheme:               env.Scheme,
			DefaultLabelSelector: labels.SelectorFromSet(labels.Set{plan.LabelPeer: rotated.name}),
		})
		if err != nil {
			b.Fatal(err)
		}
		informer, err := zoneCache.GetInformer(ctx, &spirev1alpha1.ClusterFederatedTrustDomain{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    watcher.observe,
			UpdateFunc: func(_, obj any) { watcher.observe(obj) },
		}); err != nil {
			b.Fatal(err)
		}
		go func() { _ = zoneCache.Start(ctx) }()
		if !zoneCache.WaitForCacheSync(ctx) {
			b.Fatal("zone cache did not sync")
		}
	}
	return watcher
}

// idleFigures are what the operator did while nothing changed.
type idleFigures struct {
	writes, statusWrites int64
	meanReconcile        time.Duration
	// quietCPUPercent is the CPU while nothing changes; cpuPercent while
	// a member's unused label changes every 5 s.
	quietCPUPercent, cpuPercent float64
}

// measureIdle watches a converged mesh, first for scaleQuietWindow while
// nothing changes (the operator's CPU), then for scaleIdleWindow: the
// operator's writes in zones, the mesh's status writes, the mean time of
// the mesh reconciles (triggered every 5s by a label change on a member,
// besides the resync) and the operator's CPU.
func measureIdle(b *testing.B, size int, meshName string, operator scaleOperator) idleFigures {
	before := &spirefedv1alpha1.FederationMesh{}
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: meshName}, before); err != nil {
		b.Fatal(err)
	}
	// A status write that is still on its way is not idle.
	time.Sleep(3 * time.Second)
	quietCPU, quietStarted := operator.cpu(), time.Now()
	stopProfile := startScaleProfile(b, operator, size, "quiet")
	time.Sleep(scaleQuietWindow)
	stopProfile()
	quietCPUPercent := 100 * (operator.cpu() - quietCPU).Seconds() / time.Since(quietStarted).Seconds()
	writes := operator.counter(b, "spirefed_zone_writes_total")
	sum, count := operator.reconcileTime(b, "federationmesh")
	cpu := operator.cpu()
	rv := meshResourceVersion(b, meshName)
	started := time.Now()
	statusWrites := int64(0)
	touched := started
	for time.Since(started) < scaleIdleWindow {
		time.Sleep(500 * time.Millisecond)
		if time.Since(touched) > 5*time.Second {
			// A label change on a member reconciles the mesh, which has
			// nothing to change: an idle reconcile to time.
			touchZoneLabel(b, meshName+"-1")
			touched = time.Now()
		}
		if current := meshResourceVersion(b, meshName); current != rv {
			statusWrites++
			rv = current
		}
	}
	elapsed := time.Since(started)
	sumAfter, countAfter := operator.reconcileTime(b, "federationmesh")
	figures := idleFigures{
		writes:          operator.counter(b, "spirefed_zone_writes_total") - writes,
		statusWrites:    statusWrites,
		quietCPUPercent: quietCPUPercent,
		cpuPercent:      100 * (operator.cpu() - cpu).Seconds() / elapsed.Seconds(),
	}
	if countAfter > count {
		figures.meanReconcile = time.Duration((sumAfter - sum) / float64(countAfter-count) * float64(time.Second))
	}
	return figures
}

// touchZoneLabel changes a label of a zone that no selector uses.
func touchZoneLabel(b *testing.B, name string) {
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: name}, zone); err != nil {
		b.Fatal(err)
	}
	patch := client.MergeFrom(zone.DeepCopy())
	zone.Labels["bench-touched"] = strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := env.Management.Client.Patch(testCtx, zone, patch); err != nil {
		b.Fatal(err)
	}
}

func meshResourceVersion(b *testing.B, meshName string) string {
	mesh := &spirefedv1alpha1.FederationMesh{}
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: meshName}, mesh); err != nil {
		b.Fatal(err)
	}
	return mesh.ResourceVersion
}

// reconcileTime sums controller-runtime's reconcile time histogram of a
// controller: total seconds and count.
func reconcileTime(b *testing.B, controller string) (float64, uint64) {
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() != "controller_runtime_reconcile_time_seconds" {
			continue
		}
		for _, metric := range family.GetMetric() {
			for _, label := range metric.GetLabel() {
				if label.GetName() == "controller" && label.GetValue() == controller {
					return metric.GetHistogram().GetSampleSum(), metric.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0, 0
}

// processCPU is the CPU time this process used so far.
func processCPU() time.Duration {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano())
}

// maxRSS is this process's peak resident set size, in bytes.
func maxRSS() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return usage.Maxrss * 1024
}

// memorySampler records the peak of the Go heap's live objects.
type memorySampler struct {
	done chan struct{}
	peak chan uint64
}

func startMemorySampler() *memorySampler {
	sampler := &memorySampler{done: make(chan struct{}), peak: make(chan uint64, 1)}
	go func() {
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		var peak uint64
		ticker := time.NewTicker(100 * time.Millisecond)
		defer ticker.Stop()
		for {
			metrics.Read(samples)
			peak = max(peak, samples[0].Value.Uint64())
			select {
			case <-sampler.done:
				sampler.peak <- peak
				return
			case <-ticker.C:
			}
		}
	}()
	return sampler
}

// stop ends the sampling and returns the peak (once; later calls return 0).
func (s *memorySampler) stop() uint64 {
	select {
	case <-s.done:
		return 0
	default:
	}
	close(s.done)
	return <-s.peak
}

func percentile(latencies []time.Duration, p int) time.Duration {
	sorted := slices.Clone(latencies)
	slices.Sort(sorted)
	index := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(index, len(sorted))-1)]
}

// waitForScaleDeletion deletes the mesh and waits until it has left every
// zone (that takes a while with many zones).
func waitForScaleDeletion(b *testing.B, mesh *spirefedv1alpha1.FederationMesh) {
	if err := env.Management.Client.Delete(testCtx, mesh); client.IgnoreNotFound(err) != nil {
		b.Error(err)
		return
	}
	deadline := time.Now().Add(15 * time.Minute)
	for time.Now().Before(deadline) {
		if err := env.Management.Client.Get(testCtx, client.ObjectKeyFromObject(mesh), &spirefedv1alpha1.FederationMesh{}); client.IgnoreNotFound(err) == nil && err != nil {
			return
		}
		time.Sleep(time.Second)
	}
	b.Errorf("mesh %s still exists", mesh.Name)
}
