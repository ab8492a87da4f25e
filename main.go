// Command spire-federation-operator runs SPIRE federation across many
// Kubernetes clusters ("zones") from one management cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/controllers"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// options are the command-line flags.
type options struct {
	metricsAddr        string
	probeAddr          string
	leaderElect        bool
	namespace          string
	zoneProbeInterval  time.Duration
	zoneResyncInterval time.Duration
	meshResyncInterval time.Duration
	fetchTimeout       time.Duration
	minFetchInterval   time.Duration
	spireRefresh       time.Duration
	helmTimeout        time.Duration
	zap                zap.Options
}

func main() {
	var opts options
	flag.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&opts.leaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	flag.StringVar(&opts.namespace, "namespace", "spirefed-system", "Namespace of the zones' kubeconfig Secrets (and of the leader election lease).")
	flag.DurationVar(&opts.zoneProbeInterval, "zone-probe-interval", zones.DefaultProbeInterval, "How often each zone's API server is probed.")
	flag.DurationVar(&opts.zoneResyncInterval, "zone-resync-interval", controllers.DefaultZoneResyncInterval, "How often each healthy zone is read again.")
	flag.DurationVar(&opts.meshResyncInterval, "mesh-resync-interval", controllers.DefaultMeshResyncInterval, "How often each mesh is reconciled to repair drift in the zones.")
	flag.DurationVar(&opts.fetchTimeout, "bundle-fetch-timeout", 10*time.Second, "Timeout of one bundle endpoint fetch.")
	flag.DurationVar(&opts.minFetchInterval, "min-bundle-fetch-interval", 30*time.Second, "Lower bound on the interval between fetches of one bundle endpoint, whatever its refresh hint.")
	flag.DurationVar(&opts.spireRefresh, "spire-refresh-interval", controllers.DefaultSpireRefreshInterval, "Least time between two requests to a zone's SPIRE server to refresh the same peer's bundle.")
	flag.DurationVar(&opts.helmTimeout, "helm-timeout", 5*time.Minute, "Time limit of one Helm action on a zone, its hooks included.")
	opts.zap.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.zap)))

	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		ctrl.Log.Error(err, "Operator failed")
		os.Exit(1)
	}
}

func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(spirefedv1alpha1.AddToScheme(scheme))
	utilruntime.Must(spirev1alpha1.AddToScheme(scheme))
	return scheme
}

func run(ctx context.Context, opts options) error {
	scheme := newScheme()
	config := ctrl.GetConfigOrDie()
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: opts.metricsAddr},
		HealthProbeBindAddress:  opts.probeAddr,
		LeaderElection:          opts.leaderElect,
		LeaderElectionID:        "spire-federation-operator.spirefed.io",
		LeaderElectionNamespace: opts.namespace,
		Cache: cache.Options{
			// Kubeconfig Secrets live in the operator's namespace: cache
			// (and be allowed to read) no other Secret.
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.namespace: {}}},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	zoneRegistry := zones.NewRegistry(zones.Options{
		Namespace:     opts.namespace,
		SecretReader:  mgr.GetClient(),
		LocalConfig:   config,
		Scheme:        scheme,
		ProbeInterval: opts.zoneProbeInterval,
		Log:           ctrl.Log.WithName("zones"),
	})
	if err := mgr.Add(zoneRegistry); err != nil {
		return fmt.Errorf("adding zone registry: %w", err)
	}
	applier := &apply.Applier{}
	if err := (&controllers.ZoneTrustDomainReconciler{
		Client:         mgr.GetClient(),
		Zones:          zoneRegistry,
		EventRecorder:  mgr.GetEventRecorder("spire-federation-operator"),
		ResyncInterval: opts.zoneResyncInterval,
		Applier:        applier,
		Helm: &controllers.HelmOptions{
			Installer: &spirehelm.Installer{Timeout: opts.helmTimeout},
			Charts:    &spirehelm.ChartSource{},
		},
		APIReader:     mgr.GetAPIReader(),
		Namespace:     opts.namespace,
		Fetcher:       bundle.Fetcher{Timeout: opts.fetchTimeout},
		FetchSchedule: controllers.FetchSchedule{MinInterval: opts.minFetchInterval},
	}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up ZoneTrustDomain controller: %w", err)
	}
	spireServers := &spireaccess.Access{}
	defer spireServers.Close()
	if err := (&controllers.FederationMeshReconciler{
		Client:               mgr.GetClient(),
		Zones:                zoneRegistry,
		Applier:              applier,
		EventRecorder:        mgr.GetEventRecorder("spire-federation-operator"),
		ResyncInterval:       opts.meshResyncInterval,
		Spire:                spireServers,
		SpireRefreshInterval: opts.spireRefresh,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up FederationMesh controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	ctrl.Log.Info("Starting operator", "namespace", opts.namespace)
	return mgr.Start(ctx)
}
