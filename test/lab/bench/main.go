// Command bench measures, on the lab of make demo, how long a CA rotation
// in stockmarket.example takes to reach the SPIRE server of broker.example:
// with the operator asking broker's SPIRE to refresh at once (its
// spire.serverAccess), and with SPIRE's own refresh alone (the same refresh
// hint); and how long a new zone takes to join the running mesh. It prints
// every figure, the medians and maxima, and the ratio.
//
//	go run ./test/lab/bench -rotations 5 -joins 3 -hint 1m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
	"github.com/spirefed/spire-federation-operator/test/lab"
)

func main() {
	rotations := flag.Int("rotations", 5, "rotations measured in each mode")
	joins := flag.Int("joins", 3, "zones joined one after the other")
	hint := flag.Duration("hint", time.Minute, "refresh hint of the bundle endpoints (SPIRE polls every hint/4, hint at least 1m)")
	flag.Parse()
	rotationTimelines := &timelines{}
	// The operator writes only errors; its steps of a rotation are read
	// from its log by a core beside it.
	ctrl.SetLogger(zap.New(zap.Level(zapcore.ErrorLevel), zap.RawZapOpts(uberzap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewTee(core, operatorLog{timelines: rotationTimelines, rotating: "stockmarket"})
	}))))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rotations, *joins, *hint, rotationTimelines); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, rotations, joins int, hint time.Duration, rotationTimelines *timelines) (err error) {
	step := func(format string, args ...any) { fmt.Printf("bench: "+format+"\n", args...) }
	running, err := lab.Start(ctx, lab.Options{RefreshHint: hint}, step)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, running.Stop()) }()
	management := running.Env.Management.Client
	if err := lab.ApplySamples(ctx, management, running.Vars); err != nil {
		return err
	}
	if err := lab.WaitForMesh(ctx, management, step); err != nil {
		return err
	}
	sockets := &spireaccess.Sockets{}
	defer sockets.Close()
	broker, err := sockets.Server(running.Servers["broker"].SocketPath)
	if err != nil {
		return err
	}
	stockmarket := running.Servers["stockmarket"]
	watchCtx, stopWatches := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() {
		watched <- watchRotation(watchCtx, rotationTimelines, running.Env.Scheme, running.Env.Management.Config,
			running.Env.Zones["stockmarket"].Config, running.Env.Zones["broker"].Config,
			"stockmarket", stockmarket.TrustDomain, "spire-server", "spire-bundle")
	}()
	defer func() {
		stopWatches()
		err = errors.Join(err, <-watched)
	}()

	step("rotations with the operator pushing (broker has spire.serverAccess)")
	pushed, err := measureRotations(ctx, rotations, stockmarket, broker, rotationTimelines)
	if err != nil {
		return err
	}
	pushedTimelines := rotationTimelines.take()
	step("rotations with SPIRE's own refresh alone (spire.serverAccess removed from broker)")
	zone := &spirefedv1alpha1.ZoneTrustDomain{}
	if err := management.Get(ctx, types.NamespacedName{Name: "broker"}, zone); err != nil {
		return err
	}
	patched := zone.DeepCopy()
	patched.Spec.Spire.ServerAccess = nil
	if err := management.Patch(ctx, patched, client.MergeFrom(zone)); err != nil {
		return err
	}
	time.Sleep(5 * time.Second) // the mesh reconciles without broker's SPIRE
	alone, err := measureRotations(ctx, rotations, stockmarket, broker, rotationTimelines)
	if err != nil {
		return err
	}
	aloneTimelines := rotationTimelines.take()

	step("zones joining the running mesh (spire.serverAccess restored on broker)")
	if err := management.Get(ctx, types.NamespacedName{Name: "broker"}, patched); err != nil {
		return err
	}
	restored := patched.DeepCopy()
	restored.Spec.Spire.ServerAccess = zone.Spec.Spire.ServerAccess
	if err := management.Patch(ctx, restored, client.MergeFrom(patched)); err != nil {
		return err
	}
	var joined []time.Duration
	for i := range joins {
		latency, err := join(ctx, running, i, hint)
		if err != nil {
			return err
		}
		step("join %d: %s", i+1, latency.Round(10*time.Millisecond))
		joined = append(joined, latency)
	}

	fmt.Printf("\nrotation reaching the peer's SPIRE server, refresh hint %s, %d rotations each:\n", hint, rotations)
	fmt.Printf("  operator pushing:   median %s, max %s\n", median(pushed), slices.Max(pushed).Round(10*time.Millisecond))
	fmt.Printf("  SPIRE's own refresh: median %s, max %s\n", median(alone), slices.Max(alone).Round(10*time.Millisecond))
	fmt.Printf("  ratio (SPIRE alone / operator), medians: %.1fx\n", float64(median(alone))/float64(median(pushed)))
	fmt.Printf("  p95 (nearest rank): operator pushing %s, SPIRE's own refresh %s\n", percentile(pushed, 95), percentile(alone, 95))
	if joins > 0 {
		fmt.Printf("join of a new zone (until every pair is Converged in SPIRE), %d joins: median %s, max %s\n",
			joins, median(joined), slices.Max(joined).Round(10*time.Millisecond))
	}
	printTimelines("operator pushing, hint "+hint.String(), pushedTimelines)
	printTimelines("SPIRE's own refresh, hint "+hint.String(), aloneTimelines)
	return nil
}

// measureRotations prepares a new X.509 authority in the rotating zone and
// times until the peer's SPIRE server holds it, then activates it.
func measureRotations(ctx context.Context, count int, rotating *testenv.SpireServer, peer spireaccess.Server, rotationTimelines *timelines) ([]time.Duration, error) {
	var latencies []time.Duration
	for i := range count {
		started := rotationTimelines.begin().start
		if _, err := rotating.CLI(ctx, "localauthority", "x509", "prepare"); err != nil {
			return nil, err
		}
		rotationTimelines.mark(stepPrepared, time.Now())
		want, err := rotating.OwnX509Fingerprints(ctx)
		if err != nil {
			return nil, err
		}
		for {
			held, err := peer.FederatedBundles(ctx)
			if err != nil {
				return nil, err
			}
			if held[rotating.TrustDomain].Holds(want) {
				break
			}
			if time.Since(started) > 5*time.Minute {
				return nil, fmt.Errorf("rotation %d did not reach the peer in 5 minutes", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
		latency := time.Since(started)
		rotationTimelines.mark(stepHeld, time.Now())
		rotationTimelines.end()
		fmt.Printf("bench: rotation %d: %s\n", i+1, latency.Round(10*time.Millisecond))
		latencies = append(latencies, latency)
		if err := activatePrepared(ctx, rotating); err != nil {
			return nil, err
		}
	}
	return latencies, nil
}

// activatePrepared activates the prepared X.509 authority, so that the next
// prepare starts from a clean slot.
func activatePrepared(ctx context.Context, server *testenv.SpireServer) error {
	out, err := server.CLI(ctx, "localauthority", "x509", "show", "-output", "json")
	if err != nil {
		return err
	}
	var shown struct {
		Prepared struct {
			AuthorityID string `json:"authority_id"`
		} `json:"prepared"`
	}
	if err := json.Unmarshal(out, &shown); err != nil {
		return err
	}
	_, err = server.CLI(ctx, "localauthority", "x509", "activate", "-authorityID", shown.Prepared.AuthorityID)
	return err
}

// join starts a new zone in broker's cluster, waits until it is Ready, adds
// it to the mesh and times until every pair is Converged.
func join(ctx context.Context, running *lab.Lab, i int, hint time.Duration) (time.Duration, error) {
	name := fmt.Sprintf("join%d", i+1)
	namespace := "spire-" + name
	if err := running.StartZone(ctx, name, name+".example", running.Env.Zones["broker"], namespace, hint); err != nil {
		return 0, err
	}
	server := running.Servers[name]
	management := running.Env.Management.Client
	zone := &spirefedv1alpha1.ZoneTrustDomain{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: spirefedv1alpha1.ZoneTrustDomainSpec{
			TrustDomain: name + ".example",
			ClusterName: name,
			Cluster:     spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: testenv.KubeconfigSecretName("broker")}},
			Spire: spirefedv1alpha1.SpireInstallation{
				Install: spirefedv1alpha1.SpireInstallExternal, Namespace: namespace, ReleaseName: "spire", ClassName: namespace + "-spire",
				ServerAccess: &spirefedv1alpha1.SpireServerAccess{Socket: &spirefedv1alpha1.SocketAccess{Path: server.SocketPath}},
			},
			BundleEndpoint: spirefedv1alpha1.BundleEndpoint{URL: server.BundleEndpointURL},
		},
	}
	if err := management.Create(ctx, zone); err != nil {
		return 0, err
	}
	if err := waitFor(ctx, func() (bool, error) {
		if err := management.Get(ctx, client.ObjectKeyFromObject(zone), zone); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition), nil
	}); err != nil {
		return 0, fmt.Errorf("zone %s not Ready: %w", name, err)
	}
	mesh := &spirefedv1alpha1.FederationMesh{}
	if err := management.Get(ctx, types.NamespacedName{Name: "stock-trading"}, mesh); err != nil {
		return 0, err
	}
	patched := mesh.DeepCopy()
	patched.Spec.Zones.Names = append(patched.Spec.Zones.Names, name)
	started := time.Now()
	if err := management.Patch(ctx, patched, client.MergeFrom(mesh)); err != nil {
		return 0, err
	}
	members := len(patched.Spec.Zones.Names)
	want := fmt.Sprintf("All %d pairs are converged", members*(members-1))
	err := waitFor(ctx, func() (bool, error) {
		if err := management.Get(ctx, types.NamespacedName{Name: "stock-trading"}, mesh); err != nil {
			return false, err
		}
		converged := meta.FindStatusCondition(mesh.Status.Conditions, spirefedv1alpha1.ConvergedCondition)
		return converged != nil && converged.Status == metav1.ConditionTrue && converged.Message == want, nil
	})
	return time.Since(started), err
}

func waitFor(ctx context.Context, done func() (bool, error)) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// percentile is the nearest-rank percentile p of values.
func percentile(values []time.Duration, p int) time.Duration {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1].Round(10 * time.Millisecond)
}

func median(values []time.Duration) time.Duration {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	return sorted[len(sorted)/2].Round(10 * time.Millisecond)
}
