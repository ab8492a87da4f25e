// Package operator wires the operator: the manager, the zone registry and
// the reconcilers. main.go runs it against a cluster; the local lab runs it
// in-process against its management API server.
package operator

import (
	"context"
	"fmt"
	"time"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
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
)

// Options of the operator; zero durations take the reconcilers' defaults.
type Options struct {
	MetricsAddr        string
	ProbeAddr          string
	LeaderElect        bool
	Namespace          string
	ZoneProbeInterval  time.Duration
	ZoneResyncInterval time.Duration
	MeshResyncInterval time.Duration
	FetchTimeout       time.Duration
	MinFetchInterval   time.Duration
	SpireRefresh       time.Duration
	HelmTimeout        time.Duration

	// MetricsSecure serves metrics over HTTPS to authorized clients only
	// (see MetricsServerOptions); MetricsCertDir holds tls.crt and tls.key.
	MetricsSecure  bool
	MetricsCertDir string
	EnableHTTP2    bool
}

// NewScheme knows core types, the operator's API and spire-controller-manager's.
func NewScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(spirefedv1alpha1.AddToScheme(scheme))
	utilruntime.Must(spirev1alpha1.AddToScheme(scheme))
	return scheme
}

// Run runs the operator against the management cluster config reaches,
// until ctx ends.
func Run(ctx context.Context, config *rest.Config, opts Options) error {
	scheme := NewScheme()
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 MetricsServerOptions(opts),
		HealthProbeBindAddress:  opts.ProbeAddr,
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        "spire-federation-operator.spirefed.io",
		LeaderElectionNamespace: opts.Namespace,
		Cache: cache.Options{
			// Kubeconfig Secrets live in the operator's namespace: cache
			// (and be allowed to read) no other Secret.
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Namespaces: map[string]cache.Config{opts.Namespace: {}}},
			},
		},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	zoneRegistry := zones.NewRegistry(zones.Options{
		Namespace:     opts.Namespace,
		SecretReader:  mgr.GetClient(),
		LocalConfig:   config,
		Scheme:        scheme,
		ProbeInterval: opts.ZoneProbeInterval,
		Log:           ctrl.Log.WithName("zones"),
	})
	if err := mgr.Add(zoneRegistry); err != nil {
		return fmt.Errorf("adding zone registry: %w", err)
	}
	applier := &apply.Applier{}
	fetchTimeout := opts.FetchTimeout
	if fetchTimeout <= 0 {
		fetchTimeout = 10 * time.Second
	}
	if err := (&controllers.ZoneTrustDomainReconciler{
		Client:         mgr.GetClient(),
		Zones:          zoneRegistry,
		EventRecorder:  mgr.GetEventRecorder("spire-federation-operator"),
		ResyncInterval: opts.ZoneResyncInterval,
		Applier:        applier,
		Helm: &controllers.HelmOptions{
			Installer: &spirehelm.Installer{Timeout: opts.HelmTimeout},
			Charts:    &spirehelm.ChartSource{},
		},
		APIReader:     mgr.GetAPIReader(),
		Namespace:     opts.Namespace,
		Fetcher:       bundle.Fetcher{Timeout: fetchTimeout},
		FetchSchedule: controllers.FetchSchedule{MinInterval: opts.MinFetchInterval},
	}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up ZoneTrustDomain controller: %w", err)
	}
	spireServers := &spireaccess.Access{}
	defer spireServers.Close()
	if err := (&controllers.FederationMeshReconciler{
		Client:               mgr.GetClient(),
		APIReader:            mgr.GetAPIReader(),
		Zones:                zoneRegistry,
		Applier:              applier,
		EventRecorder:        mgr.GetEventRecorder("spire-federation-operator"),
		ResyncInterval:       opts.MeshResyncInterval,
		Spire:                spireServers,
		SpireRefreshInterval: opts.SpireRefresh,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up FederationMesh controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding readiness check: %w", err)
	}
	ctrl.Log.Info("Starting operator", "namespace", opts.Namespace)
	return mgr.Start(ctx)
}
