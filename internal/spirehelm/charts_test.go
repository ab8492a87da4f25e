package spirehelm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"helm.sh/helm/v3/pkg/registry"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func sharedChart(t *testing.T, file string) []byte {
	t.Helper()
	dir, err := testenv.SharedChartsDir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// TestChartSourceHTTP loads the upstream charts from a Helm repository on
// loopback: checked against the index's digest, then served from the cache.
func TestChartSourceHTTP(t *testing.T) {
	t.Parallel()
	dir, err := testenv.SharedChartsDir()
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	files := http.FileServer(http.Dir(dir))
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		files.ServeHTTP(w, r)
	}))
	defer server.Close()

	source := &ChartSource{}
	ref := ChartRef{Repository: server.URL, Name: "spire", Version: "0.30.0"}
	loaded, err := source.Load(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Chart.Metadata.Name != "spire" || loaded.Chart.Metadata.AppVersion != "1.15.3" || loaded.Digest != sha(sharedChart(t, "spire-0.30.0.tgz")) {
		t.Errorf("loaded %s %s digest %s", loaded.Chart.Metadata.Name, loaded.Chart.Metadata.AppVersion, loaded.Digest)
	}
	before := requests.Load()
	if _, err := source.Load(context.Background(), ref); err != nil || requests.Load() != before {
		t.Errorf("second load: %v, %d more requests", err, requests.Load()-before)
	}
	if _, err := source.Load(context.Background(), ChartRef{Repository: server.URL, Name: "spire", Version: "9.9.9"}); err == nil || !strings.Contains(err.Error(), "9.9.9") {
		t.Errorf("a missing version: %v", err)
	}
}

// TestChartSourceRefusesBadAnswers: a package whose digest differs from the
// index's, a non-200 answer and an endless body are refused.
func TestChartSourceRefusesBadAnswers(t *testing.T) {
	t.Parallel()
	index := strings.ReplaceAll(string(sharedChart(t, "index.yaml")), sha(sharedChart(t, "spire-crds-0.6.0.tgz")), strings.Repeat("0", 64))
	tampered := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "index.yaml") {
			_, _ = w.Write([]byte(index))
			return
		}
		_, _ = w.Write(sharedChart(t, "spire-crds-0.6.0.tgz"))
	}))
	defer tampered.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer failing.Close()
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 1<<20)
		for range maxIndexBytes/len(chunk) + 2 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer endless.Close()

	for name, c := range map[string]struct{ url, want string }{
		"digest mismatch": {tampered.URL, "differs from the index"},
		"HTTP 500":        {failing.URL, "500"},
		"endless body":    {endless.URL, "larger than"},
	} {
		_, err := (&ChartSource{}).Load(context.Background(), ChartRef{Repository: c.url, Name: "spire-crds", Version: "0.6.0"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, c.want)
		}
	}
}

// TestChartSourceOCI pushes the spire-crds chart to an OCI registry on
// loopback with Helm's client and loads it from an oci:// reference.
func TestChartSourceOCI(t *testing.T) {
	t.Parallel()
	server := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer server.Close()
	client, err := registry.NewClient(registry.ClientOptPlainHTTP(), registry.ClientOptEnableCache(false))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(server.URL, "http://")
	data := sharedChart(t, "spire-crds-0.6.0.tgz")
	if _, err := client.Push(data, host+"/charts/spire-crds:0.6.0"); err != nil {
		t.Fatal(err)
	}
	source := &ChartSource{Registry: client}
	loaded, err := source.Load(context.Background(), ChartRef{Repository: "oci://" + host + "/charts", Name: "spire-crds", Version: "0.6.0"})
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Chart.Metadata.Name != "spire-crds" || loaded.Digest != sha(data) {
		t.Errorf("loaded %s, digest %s", loaded.Chart.Metadata.Name, loaded.Digest)
	}
}

// TestChartSourcePackage loads a chart shipped as bytes (from a ConfigMap).
func TestChartSourcePackage(t *testing.T) {
	t.Parallel()
	data := sharedChart(t, "spire-crds-0.6.0.tgz")
	loaded, err := (&ChartSource{}).Load(context.Background(), ChartRef{Name: "spire-crds", Version: "0.6.0", Package: data})
	if err != nil || loaded.Digest != sha(data) || loaded.Chart.Metadata.Version != "0.6.0" {
		t.Errorf("loaded %+v, %v", loaded, err)
	}
	if _, err := (&ChartSource{}).Load(context.Background(), ChartRef{Name: "spire-crds", Version: "0.6.0", Package: []byte("not a chart")}); err == nil {
		t.Error("garbage loaded as a chart")
	}
}
