// Package operator wires the operator: the manager, the zone registry and
// the reconcilers, with every default resolved here, once. main.go runs it
// against a cluster; the local lab and the controller tests run it
// in-process against their management API server.
package operator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/controllers"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/zones"

	"github.com/spirefed/spire-federation-operator/internal/scheme"
)

// FieldManager names the operator in events and writes.
const FieldManager = apply.FieldManager

// Options of the operator. DefaultOptions gives every default; a zero
// field passed to Run or Setup takes its default.
type Options struct {
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS to authorized clients only
	// (see MetricsServerOptions); MetricsCertDir holds tls.crt and tls.key.
	MetricsSecure  bool
	MetricsCertDir string
	EnableHTTP2    bool
	ProbeAddr      string
	// PprofAddr is where Go's profiles (/debug/pprof/) are served;
	// empty or "0": not served.
	PprofAddr   string
	LeaderElect bool
	// Namespace of the zones' kubeconfig Secrets, chart ConfigMaps and the
	// leader election lease.
	Namespace string

	// ZoneProbeInterval between health probes of a connected zone.
	ZoneProbeInterval time.Duration
	// ZoneResyncInterval between reads of a healthy zone.
	ZoneResyncInterval time.Duration
	// ZoneConcurrency: zones reconciled in parallel (Helm actions take seconds).
	ZoneConcurrency int
	// MeshResyncInterval between reconciles of a mesh that nothing triggers.
	MeshResyncInterval time.Duration

	// FetchTimeout of one bundle endpoint fetch.
	FetchTimeout time.Duration
	// DefaultFetchInterval when neither bundle nor zone gives a refresh hint.
	DefaultFetchInterval time.Duration
	// MinFetchInterval and MaxFetchInterval clamp every refresh hint.
	MinFetchInterval time.Duration
	MaxFetchInterval time.Duration
	// FetchRetryInterval after a failed fetch.
	FetchRetryInterval time.Duration

	// SpireRefresh is the least time between two refresh requests to a
	// zone's SPIRE server for the same peer.
	SpireRefresh time.Duration
	// SpireCallTimeout bounds one call to a SPIRE server.
	SpireCallTimeout time.Duration

	// HelmTimeout of one Helm action, hooks included.
	HelmTimeout time.Duration
	// HelmPendingTimeout after which a pending release is recovered.
	HelmPendingTimeout time.Duration
	// HelmRetryInterval after a failed action, doubling up to HelmMaxRetryInterval.
	HelmRetryInterval    time.Duration
	HelmMaxRetryInterval time.Duration
	// HelmProgressInterval: how soon a release whose workloads are not
	// ready is checked again.
	HelmProgressInterval time.Duration

	// WatchLabelSelector restricts the operator to the ZoneTrustDomains and
	// FederationMeshes whose labels match it (empty: all), so that several
	// instances can share a management cluster, each owning a shard (as
	// Flux shards its controllers). A mesh and its zones belong to one
	// shard. Each shard elects its own leader.
	WatchLabelSelector string

	// Clock of every reconciler; the real clock if nil.
	Clock clock.Clock
}

// DefaultOptions are the operator's defaults (main.go's flag defaults).
func DefaultOptions() Options {
	return Options{
		MetricsAddr:          ":8080",
		MetricsSecure:        true,
		ProbeAddr:            ":8081",
		Namespace:            "spirefed-system",
		ZoneProbeInterval:    10 * time.Second,
		ZoneResyncInterval:   time.Minute,
		ZoneConcurrency:      4,
		MeshResyncInterval:   time.Minute,
		FetchTimeout:         10 * time.Second,
		DefaultFetchInterval: 5 * time.Minute,
		MinFetchInterval:     30 * time.Second,
		MaxFetchInterval:     time.Hour,
		FetchRetryInterval:   30 * time.Second,
		SpireRefresh:         5 * time.Second,
		SpireCallTimeout:     10 * time.Second,
		HelmTimeout:          5 * time.Minute,
		HelmPendingTimeout:   10 * time.Minute,
		HelmRetryInterval:    10 * time.Second,
		HelmMaxRetryInterval: 5 * time.Minute,
		HelmProgressInterval: 5 * time.Second,
		Clock:                clock.RealClock{},
	}
}

// withDefaults fills every zero field from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	strings := []struct {
		value    *string
		fallback string
	}{{&o.MetricsAddr, d.MetricsAddr}, {&o.ProbeAddr, d.ProbeAddr}, {&o.Namespace, d.Namespace}}
	for _, s := range strings {
		if *s.value == "" {
			*s.value = s.fallback
		}
	}
	durations := []struct {
		value    *time.Duration
		fallback time.Duration
	}{
		{&o.ZoneProbeInterval, d.ZoneProbeInterval}, {&o.ZoneResyncInterval, d.ZoneResyncInterval}, {&o.MeshResyncInterval, d.MeshResyncInterval},
		{&o.FetchTimeout, d.FetchTimeout}, {&o.DefaultFetchInterval, d.DefaultFetchInterval}, {&o.MinFetchInterval, d.MinFetchInterval},
		{&o.MaxFetchInterval, d.MaxFetchInterval}, {&o.FetchRetryInterval, d.FetchRetryInterval},
		{&o.SpireRefresh, d.SpireRefresh}, {&o.SpireCallTimeout, d.SpireCallTimeout},
		{&o.HelmTimeout, d.HelmTimeout}, {&o.HelmPendingTimeout, d.HelmPendingTimeout}, {&o.HelmRetryInterval, d.HelmRetryInterval},
		{&o.HelmMaxRetryInterval, d.HelmMaxRetryInterval}, {&o.HelmProgressInterval, d.HelmProgressInterval},
	}
	for _, duration := range durations {
		if *duration.value <= 0 {
			*duration.value = duration.fallback
		}
	}
	if o.ZoneConcurrency <= 0 {
		o.ZoneConcurrency = d.ZoneConcurrency
	}
	if o.Clock == nil {
		o.Clock = d.Clock
	}
	return o
}

// ManagerOptions are the manager's options for the operator: its scheme,
// metrics and probe addresses, leader election, and a cache that holds
// Secrets of the operator's namespace only and, with a watch label
// selector, only the zones and meshes of the operator's shard.
func ManagerOptions(opts Options) (ctrl.Options, error) {
	opts = opts.withDefaults()
	byObject := map[client.Object]cache.ByObject{
		// Kubeconfig Secrets live in the operator's namespace: cache
		// (and be allowed to read) no other Secret.
		&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
	}
	leaderElectionID := "spire-federation-operator.spirefed.io"
	if opts.WatchLabelSelector != "" {
		selector, err := labels.Parse(opts.WatchLabelSelector)
		if err != nil {
			return ctrl.Options{}, fmt.Errorf("parsing the watch label selector %q: %w", opts.WatchLabelSelector, err)
		}
		byObject[&spirefedv1alpha1.ZoneTrustDomain{}] = cache.ByObject{Label: selector}
		byObject[&spirefedv1alpha1.FederationMesh{}] = cache.ByObject{Label: selector}
		leaderElectionID = ShardLeaderElectionID(opts.WatchLabelSelector)
	}
	return ctrl.Options{
		Scheme:                  scheme.New(),
		Metrics:                 MetricsServerOptions(opts),
		HealthProbeBindAddress:  opts.ProbeAddr,
		PprofBindAddress:        opts.PprofAddr,
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: opts.Namespace,
		// A replica that stops hands over at once instead of after the
		// lease expires.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cache.Options{ByObject: byObject},
	}, nil
}

// ShardLeaderElectionID is the name of the leader election Lease of the
// shard a watch label selector selects: one leader per shard.
func ShardLeaderElectionID(selector string) string {
	sum := sha256.Sum256([]byte(selector))
	return "spire-federation-operator-" + hex.EncodeToString(sum[:])[:10] + ".spirefed.io"
}

// Run runs the operator against the management cluster config reaches,
// until ctx ends.
func Run(ctx context.Context, config *rest.Config, opts Options) error {
	managerOptions, err := ManagerOptions(opts)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(config, managerOptions)
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := Setup(ctx, mgr, config, opts); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	ctrl.Log.Info("Starting operator", "namespace", opts.withDefaults().Namespace)
	return mgr.Start(ctx)
}

// Setup adds the zone registry and both reconcilers to a manager whose
// scheme is NewScheme's.
func Setup(ctx context.Context, mgr ctrl.Manager, config *rest.Config, opts Options) error {
	opts = opts.withDefaults()
	zoneRegistry := zones.NewRegistry(zones.Options{
		Namespace:     opts.Namespace,
		SecretReader:  mgr.GetClient(),
		LocalConfig:   config,
		Scheme:        mgr.GetScheme(),
		ProbeInterval: opts.ZoneProbeInterval,
		Log:           ctrl.Log.WithName("zones"),
		OwnedLabels:   apply.OwnedLabels,
		OwnedKinds:    apply.WatchedKinds(),
	})
	if err := mgr.Add(zoneRegistry); err != nil {
		return fmt.Errorf("adding zone registry: %w", err)
	}
	applier := &apply.Applier{}
	recorder := mgr.GetEventRecorder(FieldManager)
	apiReader := mgr.GetAPIReader()
	releases := &spirehelm.Lifecycle{
		Installer: &spirehelm.Installer{Timeout: opts.HelmTimeout, PendingTimeout: opts.HelmPendingTimeout, Clock: opts.Clock},
		Charts:    &spirehelm.ChartSource{},
		ConfigMapPackages: func(ctx context.Context, name string) (map[string][]byte, error) {
			// Uncached: the operator watches no ConfigMap in its namespace.
			configMap := &corev1.ConfigMap{}
			if err := apiReader.Get(ctx, types.NamespacedName{Namespace: opts.Namespace, Name: name}, configMap); err != nil {
				return nil, fmt.Errorf("reading chart ConfigMap %s/%s: %w", opts.Namespace, name, err)
			}
			return configMap.BinaryData, nil
		},
		RetryInterval:    opts.HelmRetryInterval,
		MaxRetryInterval: opts.HelmMaxRetryInterval,
		ProgressInterval: opts.HelmProgressInterval,
		Clock:            opts.Clock,
		MeshValues:       controllers.MeshSDSValues(mgr.GetClient()),
	}
	spireServers := &spireaccess.Access{}
	go func() {
		<-ctx.Done()
		spireServers.Close()
	}()
	if err := (&controllers.ZoneTrustDomainReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               apiReader,
		Zones:                   zoneRegistry,
		EventRecorder:           recorder,
		Applier:                 applier,
		Releases:                releases,
		Spire:                   spireServers,
		Fetcher:                 bundle.Fetcher{Timeout: opts.FetchTimeout, Clock: opts.Clock},
		FetchSchedule:           bundle.Schedule{DefaultInterval: opts.DefaultFetchInterval, MinInterval: opts.MinFetchInterval, MaxInterval: opts.MaxFetchInterval, RetryInterval: opts.FetchRetryInterval},
		ResyncInterval:          opts.ZoneResyncInterval,
		MaxConcurrentReconciles: opts.ZoneConcurrency,
		Clock:                   opts.Clock,
	}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up ZoneTrustDomain controller: %w", err)
	}
	if err := (&controllers.FederationMeshReconciler{
		Client:               mgr.GetClient(),
		Zones:                zoneRegistry,
		Applier:              applier,
		EventRecorder:        recorder,
		Spire:                spireServers,
		ResyncInterval:       opts.MeshResyncInterval,
		SpireRefreshInterval: opts.SpireRefresh,
		SpireCallTimeout:     opts.SpireCallTimeout,
		Clock:                opts.Clock,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up FederationMesh controller: %w", err)
	}
	return nil
}
