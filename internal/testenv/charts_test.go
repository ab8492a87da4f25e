package testenv

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/repo"
)

// TestChartTestData checks that the SPIRE chart packages kept as test data
// are those the README's table and the index name, with their license, and
// that ServeChartsTLS serves them to a client trusting its CA alone.
func TestChartTestData(t *testing.T) {
	dir, err := SharedChartsDir()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "LICENSE-helm-charts-hardened")); err != nil {
		t.Errorf("the charts' license: %v", err)
	}
	index, err := repo.LoadIndexFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	indexDigests := map[string]string{}
	for _, versions := range index.Entries {
		for _, version := range versions {
			for _, url := range version.URLs {
				indexDigests[url] = version.Digest
			}
		}
	}
	rows := regexp.MustCompile("(?m)^\\| (\\S+\\.tgz) \\|.*\\| `([0-9a-f]{64})` \\|$").FindAllStringSubmatch(string(readme), -1)
	packages, err := filepath.Glob(filepath.Join(dir, "*.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(packages) || len(rows) != 4 {
		t.Fatalf("the README's table lists %d packages, the folder holds %d (expected 4)", len(rows), len(packages))
	}
	for _, row := range rows {
		file, digest := row[1], row[2]
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != digest || indexDigests[file] != digest {
			t.Errorf("%s: sha256 %s, README %s, index %s", file, got, digest, indexDigests[file])
		}
	}

	server, ca, err := ServeChartsTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfigTrusting(roots)}}
	response, err := client.Get(server.URL + "/index.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer response.Body.Close()
	if body, _ := io.ReadAll(response.Body); response.StatusCode != http.StatusOK || len(body) == 0 {
		t.Errorf("GET index.yaml over TLS: %s, %d bytes", response.Status, len(body))
	}
}

func tlsConfigTrusting(roots *x509.CertPool) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
}
