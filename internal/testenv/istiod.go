package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// IstiodOptions says how to run istiod (pilot-discovery) against a
// cluster, as Istio's chart runs it in the cluster but on loopback, with
// no certificates of its own: no CA server, no DNS certificate, plaintext
// xDS on GRPCAddress, no webhooks. Only Kubernetes is a config source.
type IstiodOptions struct {
	// Name of the instance (its folder under the environment's root).
	Name string
	// Cluster is the API server istiod reads.
	Cluster *Cluster
	// Namespace is istiod's own (its mesh-config ConfigMaps are read there).
	Namespace string
	// Env are extra environment variables ("KEY=value"), such as
	// SHARED_MESH_CONFIG.
	Env []string
}

// Istiod is a running pilot-discovery.
type Istiod struct {
	// GRPCAddress serves plaintext xDS (ADS), host:port.
	GRPCAddress string
	// LogPath is the file holding istiod's output.
	LogPath string
	// Dir holds its kubeconfig and log.
	Dir string

	mu   sync.Mutex
	proc *process
}

// StartIstiod writes istiod's kubeconfig, starts pilot-discovery from
// hack/tools.sh and waits until it reports ready (its caches synced). It
// is stopped with the environment.
func (e *Env) StartIstiod(ctx context.Context, opts IstiodOptions) (*Istiod, error) {
	binary, err := Tool("pilot-discovery")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.root, "istiod", opts.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating folder of istiod %s: %w", opts.Name, err)
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := writeClusterKubeconfig(opts.Cluster, "istiod-"+opts.Name, kubeconfigPath); err != nil {
		return nil, err
	}
	ports := map[string]int{}
	for _, name := range []string{"http", "grpc", "monitoring", "ctrlz"} {
		if ports[name], err = freePort(); err != nil {
			return nil, err
		}
	}
	address := func(name string) string { return "127.0.0.1:" + strconv.Itoa(ports[name]) }
	args := []string{"discovery",
		"--kubeconfig", kubeconfigPath,
		// Neither file exists: the mesh config comes from the ConfigMaps
		// istio[-<rev>] and SHARED_MESH_CONFIG, as in a cluster.
		"--meshConfig", filepath.Join(dir, "mesh"),
		"--networksConfig", filepath.Join(dir, "meshNetworks"),
		"--namespace", opts.Namespace,
		"--domain", "cluster.local",
		"--clusterID", "Kubernetes",
		"--httpAddr", address("http"),
		"--httpsAddr", "",
		"--grpcAddr", address("grpc"),
		"--secureGRPCAddr", "",
		"--monitoringAddr", address("monitoring"),
		"--ctrlz_address", "127.0.0.1",
		"--ctrlz_port", strconv.Itoa(ports["ctrlz"]),
		"--log_output_level", "default:info",
	}
	env := append([]string{
		"POD_NAMESPACE=" + opts.Namespace,
		"POD_NAME=istiod-" + opts.Name,
		"REVISION=default",
		// No CA and no DNS certificate: the mesh's identities come from
		// SPIRE, and the test's xDS client connects in plaintext.
		"ENABLE_CA_SERVER=false",
		"PILOT_CERT_PROVIDER=none",
		// No webhook configuration to patch, no Gateway API, no status
		// writes: only the sidecar's configuration is under test.
		"INJECTION_WEBHOOK_CONFIG_NAME=",
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"PILOT_ENABLE_GATEWAY_API=false",
		"PILOT_ENABLE_GATEWAY_API_STATUS=false",
		"PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER=false",
		"PILOT_ENABLE_STATUS=false",
		"PILOT_ENABLE_ANALYSIS=false",
	}, opts.Env...)
	proc, err := startProcessWithEnv(dir, "istiod", binary, env, args...)
	if err != nil {
		return nil, err
	}
	istiod := &Istiod{GRPCAddress: address("grpc"), LogPath: filepath.Join(dir, "istiod.log"), Dir: dir, proc: proc}
	e.addStopper(istiod.Stop)
	if err := istiod.waitReady(ctx, "http://"+address("http")+"/ready", proc); err != nil {
		return nil, err
	}
	return istiod, nil
}

// waitReady polls istiod's readiness endpoint for up to two minutes.
func (i *Istiod) waitReady(ctx context.Context, url string, proc *process) error {
	httpClient := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		response, err := httpClient.Do(request)
		if err == nil {
			response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", response.Status)
		}
		select {
		case <-proc.done:
			return fmt.Errorf("istiod exited; see %s", i.LogPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("istiod not ready after 2m (%v); see %s", err, i.LogPath)
		}
	}
}

// Log returns what istiod has written so far.
func (i *Istiod) Log() (string, error) {
	data, err := os.ReadFile(i.LogPath)
	if err != nil {
		return "", fmt.Errorf("reading istiod's log: %w", err)
	}
	return string(data), nil
}

// Stop stops istiod.
func (i *Istiod) Stop() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc == nil {
		return nil
	}
	err := i.proc.stop()
	i.proc = nil
	return err
}
