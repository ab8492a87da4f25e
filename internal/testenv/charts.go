package testenv

import (
	"net/http"
	"net/http/httptest"
)

// ServeCharts serves the SPIRE charts of the test data (SharedChartsDir)
// as a Helm repository over loopback HTTP; its URL is the repository URL.
// Close it when done.
func ServeCharts() (*httptest.Server, error) {
	dir, err := SharedChartsDir()
	if err != nil {
		return nil, err
	}
	return httptest.NewServer(http.FileServer(http.Dir(dir))), nil
}
