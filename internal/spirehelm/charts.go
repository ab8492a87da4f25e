package spirehelm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"
)

// Size bounds of what is read from a chart source.
const (
	maxIndexBytes = 32 << 20
	maxChartBytes = 16 << 20
)

// ChartRef names one chart version in a source: an http(s) repository, an
// oci:// folder, or packaged bytes (from a ConfigMap).
type ChartRef struct {
	// Repository URL (http(s):// or oci://); empty when Package is set.
	Repository string
	Name       string
	Version    string
	// Package is the chart's .tgz, for charts shipped in a ConfigMap.
	Package []byte
}

func (r ChartRef) String() string {
	if r.Package != nil {
		return fmt.Sprintf("%s %s (packaged)", r.Name, r.Version)
	}
	return fmt.Sprintf("%s %s from %s", r.Name, r.Version, r.Repository)
}

// LoadedChart is a chart and the SHA-256 of its package.
type LoadedChart struct {
	Chart  *chart.Chart
	Digest string
}

// ChartSource downloads charts and caches their packages by digest: a
// chart version is fetched once per process. Every Load returns a chart of
// its own, freshly loaded from the package: Helm edits the chart it
// installs (it drops disabled subcharts), so zones must not share one.
type ChartSource struct {
	// HTTPClient fetches from http(s) repositories; a client with a 30s
	// timeout if nil.
	HTTPClient *http.Client
	// Registry pulls from OCI registries; a client with a 60s timeout per
	// request if nil.
	Registry *registry.Client

	mu       sync.Mutex
	byRef    map[string]string // repository|name|version -> digest
	byDigest map[string][]byte
}

// Load returns a chart, from the cache when it was loaded before.
func (s *ChartSource) Load(ctx context.Context, ref ChartRef) (LoadedChart, error) {
	if ref.Package != nil {
		return s.remember("", ref.Package)
	}
	key := ref.Repository + "|" + ref.Name + "|" + ref.Version
	s.mu.Lock()
	if digest, ok := s.byRef[key]; ok {
		data := s.byDigest[digest]
		s.mu.Unlock()
		return load(data, digest)
	}
	s.mu.Unlock()

	var data []byte
	var err error
	if strings.HasPrefix(ref.Repository, "oci://") {
		data, err = s.pullOCI(ref)
	} else {
		data, err = s.downloadHTTP(ctx, ref)
	}
	if err != nil {
		return LoadedChart{}, fmt.Errorf("fetching chart %s: %w", ref, err)
	}
	return s.remember(key, data)
}

// remember caches a package by digest (and by reference key when one is
// given) and returns it loaded.
func (s *ChartSource) remember(key string, data []byte) (LoadedChart, error) {
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	loaded, err := load(data, digest)
	if err != nil {
		return LoadedChart{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byDigest == nil {
		s.byDigest, s.byRef = map[string][]byte{}, map[string]string{}
	}
	s.byDigest[digest] = data
	if key != "" {
		s.byRef[key] = digest
	}
	return loaded, nil
}

func load(data []byte, digest string) (LoadedChart, error) {
	loaded, err := loader.LoadArchive(bytes.NewReader(data))
	if err != nil {
		return LoadedChart{}, fmt.Errorf("loading chart package: %w", err)
	}
	return LoadedChart{Chart: loaded, Digest: digest}, nil
}

// downloadHTTP reads the repository's index, finds the version, downloads
// the package and checks it against the index's digest.
func (s *ChartSource) downloadHTTP(ctx context.Context, ref ChartRef) ([]byte, error) {
	base := strings.TrimSuffix(ref.Repository, "/") + "/"
	indexData, err := s.get(ctx, base+"index.yaml", maxIndexBytes)
	if err != nil {
		return nil, fmt.Errorf("reading the repository index: %w", err)
	}
	index, err := parseIndex(indexData)
	if err != nil {
		return nil, err
	}
	version, err := index.Get(ref.Name, ref.Version)
	if err != nil {
		return nil, fmt.Errorf("finding the chart in the repository index: %w", err)
	}
	if len(version.URLs) == 0 {
		return nil, errors.New("the repository index lists no URL for the chart")
	}
	chartURL, err := repo.ResolveReferenceURL(base, version.URLs[0])
	if err != nil {
		return nil, fmt.Errorf("resolving the chart URL: %w", err)
	}
	data, err := s.get(ctx, chartURL, maxChartBytes)
	if err != nil {
		return nil, fmt.Errorf("downloading the chart: %w", err)
	}
	if version.Digest == "" {
		return nil, errors.New("the repository index gives no digest for the chart")
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != version.Digest {
		return nil, fmt.Errorf("the chart's digest %s differs from the index's %s", got, version.Digest)
	}
	return data, nil
}

// parseIndex parses an index.yaml the way Helm's repo.LoadIndexFile does
// (JSON or strict YAML, invalid entries skipped, versions sorted), from
// memory: Helm parses only from files, and the operator's root file system
// is read-only.
func parseIndex(data []byte) (*repo.IndexFile, error) {
	index := &repo.IndexFile{}
	if len(data) == 0 {
		return nil, fmt.Errorf("parsing the repository index: %w", repo.ErrEmptyIndexYaml)
	}
	var err error
	if json.Valid(data) {
		err = json.Unmarshal(data, index)
	} else {
		err = yaml.UnmarshalStrict(data, index)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the repository index: %w", err)
	}
	for name, versions := range index.Entries {
		valid := versions[:0]
		for _, version := range versions {
			if version == nil {
				continue
			}
			if version.Metadata == nil {
				version.Metadata = &chart.Metadata{}
			}
			if version.APIVersion == "" {
				version.APIVersion = chart.APIVersionV1
			}
			if err := version.Validate(); err != nil && !skippableValidationError(err) {
				continue
			}
			valid = append(valid, version)
		}
		index.Entries[name] = valid
	}
	index.SortEntries()
	if index.APIVersion == "" {
		return nil, fmt.Errorf("parsing the repository index: %w", repo.ErrNoAPIVersion)
	}
	return index, nil
}

// skippableValidationError is Helm's exception when loading an index: some
// repositories strip dependency aliases (helm/helm#12748).
func skippableValidationError(err error) bool {
	var validation chart.ValidationError
	return errors.As(err, &validation) && strings.HasPrefix(validation.Error(), "validation: more than one dependency with name or alias")
}

// get reads a URL's body, refusing non-200 answers and bodies over limit.
func (s *ChartSource) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	client := s.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	response, err := client.Do(request)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, response.Status)
	}
	data, err := io.ReadAll(io.LimitReader(response.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, limit)
	}
	return data, nil
}

// pullOCI pulls <repository>/<name>:<version> from an OCI registry.
func (s *ChartSource) pullOCI(ref ChartRef) ([]byte, error) {
	client := s.Registry
	if client == nil {
		var err error
		if client, err = registry.NewClient(registry.ClientOptEnableCache(false), registry.ClientOptHTTPClient(&http.Client{Timeout: 60 * time.Second})); err != nil {
			return nil, fmt.Errorf("creating the registry client: %w", err)
		}
	}
	reference := strings.TrimPrefix(strings.TrimSuffix(ref.Repository, "/"), "oci://") + "/" + ref.Name + ":" + ref.Version
	result, err := client.Pull(reference, registry.PullOptWithChart(true))
	if err != nil {
		return nil, err
	}
	if int64(len(result.Chart.Data)) > maxChartBytes {
		return nil, fmt.Errorf("the chart is larger than %d bytes", maxChartBytes)
	}
	return result.Chart.Data, nil
}
