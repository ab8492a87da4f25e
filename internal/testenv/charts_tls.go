package testenv

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
)

// ServeChartsTLS serves the SPIRE charts of the test data like ServeCharts,
// over loopback HTTPS with a certificate for 127.0.0.1 issued by a CA of
// its own, which it returns: clients must be given that CA to trust the
// repository, as users give their own CAs to the operator.
func ServeChartsTLS() (*httptest.Server, *CA, error) {
	dir, err := SharedChartsDir()
	if err != nil {
		return nil, nil, err
	}
	ca, err := NewCA("spirefed test chart repository CA")
	if err != nil {
		return nil, nil, err
	}
	serving, err := ca.NewServingCertificate("", "localhost")
	if err != nil {
		return nil, nil, fmt.Errorf("issuing the chart repository's certificate: %w", err)
	}
	server := httptest.NewUnstartedServer(http.FileServer(http.Dir(dir)))
	server.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serving}}
	server.StartTLS()
	return server, ca, nil
}
