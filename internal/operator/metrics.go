package operator

import (
	"crypto/tls"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// MetricsServerOptions are the metrics endpoint's options, from the flags.
// Secure (the default of the command) serves HTTPS and lets through only
// requests whose bearer token the management API server authenticates
// (TokenReview) and authorizes for GET on the /metrics URL
// (SubjectAccessReview), as kubebuilder scaffolds do. The certificate is
// tls.crt and tls.key in MetricsCertDir, reloaded when they change, or a
// self-signed one made in memory. HTTP/2 is off unless enabled (HTTP/2
// Rapid Reset and Stream Cancellation, CVE-2023-44487 and CVE-2023-39325).
func MetricsServerOptions(opts Options) metricsserver.Options {
	options := metricsserver.Options{BindAddress: opts.MetricsAddr}
	if !opts.MetricsSecure {
		return options
	}
	options.SecureServing = true
	options.FilterProvider = filters.WithAuthenticationAndAuthorization
	options.CertDir = opts.MetricsCertDir
	if !opts.EnableHTTP2 {
		options.TLSOpts = append(options.TLSOpts, func(config *tls.Config) {
			config.NextProtos = []string{"http/1.1"}
		})
	}
	return options
}
