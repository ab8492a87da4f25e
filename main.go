// Command spire-federation-operator runs SPIRE federation across many
// Kubernetes clusters ("zones") from one management cluster.
package main

import (
	"flag"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/spirefed/spire-federation-operator/controllers"
	"github.com/spirefed/spire-federation-operator/internal/operator"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

func main() {
	var opts operator.Options
	var zapOptions zap.Options
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "Address the Prometheus metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&opts.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, only to clients whose token the API server authenticates and authorizes for GET /metrics; false serves plain HTTP to anyone.")
	flag.StringVar(&opts.MetricsCertDir, "metrics-cert-path", "", "Folder holding the metrics endpoint's tls.crt and tls.key (reloaded when they change); empty uses a self-signed certificate.")
	flag.BoolVar(&opts.EnableHTTP2, "enable-http2", false, "Allow HTTP/2 on the metrics endpoint (off: HTTP/2 Rapid Reset and Stream Cancellation).")
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&opts.LeaderElect, "leader-elect", false, "Elect a leader, so that only one replica reconciles at a time.")
	flag.StringVar(&opts.Namespace, "namespace", "spirefed-system", "Namespace of the zones' kubeconfig Secrets (and of the leader election lease).")
	flag.DurationVar(&opts.ZoneProbeInterval, "zone-probe-interval", zones.DefaultProbeInterval, "How often each zone's API server is probed.")
	flag.DurationVar(&opts.ZoneResyncInterval, "zone-resync-interval", controllers.DefaultZoneResyncInterval, "How often each healthy zone is read again.")
	flag.DurationVar(&opts.MeshResyncInterval, "mesh-resync-interval", controllers.DefaultMeshResyncInterval, "How often each mesh is reconciled to repair drift in the zones.")
	flag.DurationVar(&opts.FetchTimeout, "bundle-fetch-timeout", 10*time.Second, "Timeout of one bundle endpoint fetch.")
	flag.DurationVar(&opts.MinFetchInterval, "min-bundle-fetch-interval", 30*time.Second, "Lower bound on the interval between fetches of one bundle endpoint, whatever its refresh hint.")
	flag.DurationVar(&opts.SpireRefresh, "spire-refresh-interval", controllers.DefaultSpireRefreshInterval, "Least time between two requests to a zone's SPIRE server to refresh the same peer's bundle.")
	flag.DurationVar(&opts.HelmTimeout, "helm-timeout", 5*time.Minute, "Time limit of one Helm action on a zone, its hooks included.")
	zapOptions.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOptions)))

	if err := operator.Run(ctrl.SetupSignalHandler(), ctrl.GetConfigOrDie(), opts); err != nil {
		ctrl.Log.Error(err, "Operator failed")
		os.Exit(1)
	}
}
