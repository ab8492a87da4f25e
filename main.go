// Command spire-federation-operator runs SPIRE federation across many
// Kubernetes clusters ("zones") from one management cluster.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/spirefed/spire-federation-operator/internal/operator"
)

func main() {
	opts := operator.DefaultOptions()
	var zapOptions zap.Options
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", opts.MetricsAddr, "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&opts.MetricsSecure, "metrics-secure", opts.MetricsSecure, "Serve metrics over HTTPS, only to clients whose token the API server authenticates and authorizes for GET /metrics; false serves plain HTTP to anyone.")
	flag.StringVar(&opts.MetricsCertDir, "metrics-cert-path", opts.MetricsCertDir, "Folder holding the metrics endpoint's tls.crt and tls.key (reloaded when they change); empty uses a self-signed certificate.")
	flag.BoolVar(&opts.EnableHTTP2, "enable-http2", opts.EnableHTTP2, "Allow HTTP/2 on the metrics endpoint (off: HTTP/2 Rapid Reset and Stream Cancellation).")
	flag.StringVar(&opts.PprofAddr, "pprof-bind-address", opts.PprofAddr, "Address Go's profiles (/debug/pprof/) are served on, for performance work; empty or 0 disables them (the default). Bind it to loopback and reach it with kubectl port-forward.")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", opts.ProbeAddr, "Address the health and readiness probes bind to.")
	flag.BoolVar(&opts.LeaderElect, "leader-elect", opts.LeaderElect, "Elect a leader, so that only one replica reconciles at a time.")
	flag.StringVar(&opts.Namespace, "namespace", opts.Namespace, "Namespace of the zones' kubeconfig Secrets (and of the leader election lease).")
	flag.DurationVar(&opts.ZoneProbeInterval, "zone-probe-interval", opts.ZoneProbeInterval, "How often each zone's API server is probed.")
	flag.DurationVar(&opts.ZoneResyncInterval, "zone-resync-interval", opts.ZoneResyncInterval, "How often each healthy zone is read again.")
	flag.DurationVar(&opts.MeshResyncInterval, "mesh-resync-interval", opts.MeshResyncInterval, "How often each mesh is reconciled to repair drift in the zones.")
	flag.DurationVar(&opts.FetchTimeout, "bundle-fetch-timeout", opts.FetchTimeout, "Timeout of one bundle endpoint fetch.")
	flag.DurationVar(&opts.MinFetchInterval, "min-bundle-fetch-interval", opts.MinFetchInterval, "Lower bound on the interval between fetches of one bundle endpoint, whatever its refresh hint.")
	flag.DurationVar(&opts.SpireRefresh, "spire-refresh-interval", opts.SpireRefresh, "Least time between two requests to a zone's SPIRE server to refresh the same bundle of a peer (a peer's new bundle is asked for at once).")
	flag.DurationVar(&opts.HelmTimeout, "helm-timeout", opts.HelmTimeout, "Time limit of one Helm action on a zone, its hooks included.")
	flag.StringVar(&opts.WatchLabelSelector, "watch-label-selector", opts.WatchLabelSelector, "Reconcile only the ZoneTrustDomains and FederationMeshes whose labels match this selector (e.g. spirefed.io/shard=a, or !spirefed.io/shard for the unsharded rest); empty: all. Each shard elects its own leader.")
	zapOptions.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOptions)))
	operator.SetMemoryLimit(ctrl.Log.WithName("setup"))

	if err := operator.Run(ctrl.SetupSignalHandler(), ctrl.GetConfigOrDie(), opts); err != nil {
		ctrl.Log.Error(err, "Operator failed")
		os.Exit(1)
	}
}
