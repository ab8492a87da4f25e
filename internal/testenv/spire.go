package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
)

// SpireServerOptions describe a real SPIRE server to run as a local process.
type SpireServerOptions struct {
	// Name of the server: its folder and log file.
	Name string
	// TrustDomain of the server.
	TrustDomain string
	// Cluster receives the server's X.509 authorities, as the Helm chart
	// sets it up: SPIRE's k8sbundle notifier keeps key bundle.crt of
	// ConfigMap Namespace/ConfigMap there (both created if missing).
	Cluster   *Cluster
	Namespace string
	ConfigMap string
	// RefreshHint the bundle endpoint advertises; 5m (SPIRE's default) if zero.
	RefreshHint time.Duration
	// Upstream makes the server a nested one: its CA is signed by the
	// upstream server (UpstreamAuthority "spire"), through the Workload
	// API of an agent of that server whose downstream entry matches this
	// process.
	Upstream *UpstreamSpire
}

// UpstreamSpire is the root of a nested SPIRE server.
type UpstreamSpire struct {
	Server *SpireServer
	// WorkloadAPISocket of an agent of Server.
	WorkloadAPISocket string
}

// SpireServer is a spire-server process: sqlite datastore, disk key
// manager (its CA survives a restart), join-token node attestation, and a
// federation bundle endpoint (https_spiffe) on loopback.
type SpireServer struct {
	// TrustDomain of the server.
	TrustDomain string
	// SocketPath of its admin API.
	SocketPath string
	// BundleEndpointURL is where it serves its bundle.
	BundleEndpointURL string
	// Dir holds its configuration, data and log.
	Dir string

	opts       SpireServerOptions
	binary     string
	configPath string
	port       int

	mu   sync.Mutex
	proc *process
}

// StartSpireServer writes a SPIRE server's configuration and starts it.
// It is stopped with the environment.
func (e *Env) StartSpireServer(ctx context.Context, opts SpireServerOptions) (*SpireServer, error) {
	binary, err := Tool("spire-server")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.root, "spire", opts.Name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("creating folder of SPIRE server %s: %w", opts.Name, err)
	}
	serverPort, err := freePort()
	if err != nil {
		return nil, err
	}
	bundlePort, err := freePort()
	if err != nil {
		return nil, err
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := writeClusterKubeconfig(opts.Cluster, "spire-server-"+opts.Name, kubeconfigPath); err != nil {
		return nil, err
	}
	if err := ensureConfigMap(ctx, opts.Cluster.Client, opts.Namespace, opts.ConfigMap); err != nil {
		return nil, err
	}
	hint := opts.RefreshHint
	if hint <= 0 {
		hint = 5 * time.Minute
	}
	server := &SpireServer{
		TrustDomain:       opts.TrustDomain,
		SocketPath:        filepath.Join(dir, "api.sock"),
		BundleEndpointURL: "https://127.0.0.1:" + strconv.Itoa(bundlePort),
		Dir:               dir,
		opts:              opts,
		binary:            binary,
		configPath:        filepath.Join(dir, "server.conf"),
		port:              serverPort,
	}
	config := fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = %q
    data_dir = %q
    log_level = "DEBUG"
    ca_ttl = "24h"
    default_x509_svid_ttl = "1h"
    federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = %d
            refresh_hint = %q
        }
    }
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = %q
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
%s    Notifier "k8sbundle" {
        plugin_data {
            namespace = %q
            config_map = %q
            config_map_key = "bundle.crt"
            kube_config_file_path = %q
        }
    }
}
`, serverPort, server.SocketPath, opts.TrustDomain, filepath.Join(dir, "data"), bundlePort, hint.String(),
		filepath.Join(dir, "data", "datastore.sqlite3"), filepath.Join(dir, "data", "keys.json"),
		upstreamAuthority(opts.Upstream), opts.Namespace, opts.ConfigMap, kubeconfigPath)
	if err := os.WriteFile(server.configPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("writing configuration of SPIRE server %s: %w", opts.Name, err)
	}
	e.addStopper(server.Stop)
	if err := server.Start(ctx); err != nil {
		return nil, err
	}
	return server, nil
}

// upstreamAuthority is the UpstreamAuthority "spire" plugin of a nested
// server, or nothing.
func upstreamAuthority(upstream *UpstreamSpire) string {
	if upstream == nil {
		return ""
	}
	return fmt.Sprintf(`    UpstreamAuthority "spire" {
        plugin_data {
            server_address = "127.0.0.1"
            server_port = "%d"
            workload_api_socket = %q
        }
    }
`, upstream.Server.port, upstream.WorkloadAPISocket)
}

// Start starts the server (again) and waits until it is healthy.
func (s *SpireServer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("SPIRE server %s is running", s.opts.Name)
	}
	proc, err := startProcess(s.Dir, "spire-server", s.binary, "run", "-config", s.configPath)
	if err != nil {
		return err
	}
	s.proc = proc
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := s.CLI(ctx, "healthcheck")
		if err == nil {
			return nil
		}
		select {
		case <-proc.done:
			s.proc = nil
			return fmt.Errorf("SPIRE server %s exited; see %s", s.opts.Name, filepath.Join(s.Dir, "spire-server.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("SPIRE server %s not healthy after 60s: %w", s.opts.Name, err)
		}
	}
}

// Stop stops the server; its data stays for a later Start.
func (s *SpireServer) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop()
	s.proc = nil
	return err
}

// CLI runs the spire-server command against the server's admin socket
// and returns its standard output.
func (s *SpireServer) CLI(ctx context.Context, args ...string) ([]byte, error) {
	args = append(args, "-socketPath", s.SocketPath)
	cmd := exec.CommandContext(ctx, s.binary, args...)
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return out, fmt.Errorf("spire-server %v: %w: %s", args, err, exitErr.Stderr)
		}
		return out, fmt.Errorf("spire-server %v: %w", args, err)
	}
	return out, nil
}

// SpireAgent is a spire-agent process attested to a server by join token,
// with the unix workload attestor: a process of this machine gets the
// identities whose selectors match it (unix:uid:<its uid>, ...).
type SpireAgent struct {
	// SocketPath of its Workload API.
	SocketPath string
	// AliasID is the SPIFFE ID the agent is known by besides its own,
	// spiffe://<trust domain>/agent/<name>: the parent of workload entries.
	AliasID string
}

// AgentSDS are the names under which an agent serves Envoy SDS (its
// configuration's sds block), e.g. Istio's profile: default, "null",
// ROOTCA. Empty fields keep SPIRE's defaults (default, ROOTCA, ALL).
type AgentSDS struct {
	DefaultSVIDName       string
	DefaultBundleName     string
	DefaultAllBundlesName string
}

func (s *AgentSDS) hcl() string {
	if s == nil {
		return ""
	}
	block := "    sds {\n"
	for _, setting := range [][2]string{{"default_svid_name", s.DefaultSVIDName}, {"default_bundle_name", s.DefaultBundleName}, {"default_all_bundles_name", s.DefaultAllBundlesName}} {
		if setting[1] != "" {
			block += fmt.Sprintf("        %s = %q\n", setting[0], setting[1])
		}
	}
	return block + "    }\n"
}

// StartSpireAgent starts an agent of a server. It is stopped with the
// environment.
func (e *Env) StartSpireAgent(ctx context.Context, server *SpireServer, name string) (*SpireAgent, error) {
	return e.StartSpireAgentWithSDS(ctx, server, name, nil)
}

// StartSpireAgentWithSDS starts an agent of a server that serves SDS under
// the given names.
func (e *Env) StartSpireAgentWithSDS(ctx context.Context, server *SpireServer, name string, sds *AgentSDS) (*SpireAgent, error) {
	binary, err := Tool("spire-agent")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(server.Dir, "agent-"+name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("creating folder of SPIRE agent %s: %w", name, err)
	}
	agent := &SpireAgent{SocketPath: filepath.Join(dir, "agent.sock"), AliasID: "spiffe://" + server.TrustDomain + "/agent/" + name}
	out, err := server.CLI(ctx, "token", "generate", "-spiffeID", agent.AliasID, "-ttl", "3600")
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "Token:"))
	// The agent's bootstrap bundle comes from the server's own API, as an
	// operator would hand it over: no insecure bootstrap.
	bootstrap, err := server.CLI(ctx, "bundle", "show")
	if err != nil {
		return nil, err
	}
	bootstrapPath := filepath.Join(dir, "bootstrap.crt")
	if err := os.WriteFile(bootstrapPath, bootstrap, 0o600); err != nil {
		return nil, fmt.Errorf("writing bootstrap bundle of agent %s: %w", name, err)
	}
	config := fmt.Sprintf(`agent {
    data_dir = %q
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = %q
    trust_bundle_path = %q
    trust_domain = %q
    join_token = %q
%s}

plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
`, filepath.Join(dir, "data"), server.port, agent.SocketPath, bootstrapPath, server.TrustDomain, token, sds.hcl())
	configPath := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("writing configuration of agent %s: %w", name, err)
	}
	proc, err := startProcess(dir, "spire-agent", binary, "run", "-config", configPath)
	if err != nil {
		return nil, err
	}
	e.addStopper(proc.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		health := exec.CommandContext(ctx, binary, "healthcheck", "-socketPath", agent.SocketPath)
		if health.Run() == nil {
			return agent, nil
		}
		select {
		case <-proc.done:
			return nil, fmt.Errorf("SPIRE agent %s exited; see %s", name, filepath.Join(dir, "spire-agent.log"))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("SPIRE agent %s not healthy after 60s", name)
		}
	}
}

// OwnX509Fingerprints reads, with `spire-server bundle show`, the SHA-256
// fingerprints (sorted, lowercase hex) of the server's own X.509 authorities.
func (s *SpireServer) OwnX509Fingerprints(ctx context.Context) ([]string, error) {
	out, err := s.CLI(ctx, "bundle", "show", "-output", "json")
	if err != nil {
		return nil, err
	}
	var own types.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out, &own); err != nil {
		return nil, fmt.Errorf("reading the output of spire-server bundle show: %w", err)
	}
	var fingerprints []string
	for _, authority := range own.GetX509Authorities() {
		fingerprints = append(fingerprints, bundle.FingerprintDER(authority.GetAsn1()))
	}
	slices.Sort(fingerprints)
	return fingerprints, nil
}

// StartSpireControllerManager runs spire-controller-manager as a local
// process against a cluster's API server and a SPIRE server's admin socket,
// handling the custom resources of className (webhooks off: they need
// in-cluster configuration). It is stopped with the environment.
func (e *Env) StartSpireControllerManager(cluster *Cluster, server *SpireServer, clusterName, className string) (*SpireControllerManager, error) {
	binary, err := Tool("spire-controller-manager")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(server.Dir, "controller-manager")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating folder of spire-controller-manager: %w", err)
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := writeClusterKubeconfig(cluster, "spire-controller-manager-"+server.opts.Name, kubeconfigPath); err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "config.yaml")
	config := fmt.Sprintf(`apiVersion: spire.spiffe.io/v1alpha1
kind: ControllerManagerConfig
metrics:
  bindAddress: "0"
health:
  healthProbeBindAddress: "0"
leaderElection:
  leaderElect: false
clusterName: %q
trustDomain: %q
spireServerSocketPath: %q
className: %q
validatingWebhookConfigurationName: spire-controller-manager-webhook
ignoreNamespaces: [kube-system, kube-public]
`, clusterName, server.TrustDomain, server.SocketPath, className)
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("writing spire-controller-manager configuration: %w", err)
	}
	proc, err := startProcessWithEnv(dir, "spire-controller-manager", binary,
		[]string{"ENABLE_WEBHOOKS=false", "KUBECONFIG=" + kubeconfigPath}, "-config", configPath)
	if err != nil {
		return nil, err
	}
	manager := &SpireControllerManager{proc: proc}
	e.addStopper(manager.Stop)
	return manager, nil
}

// SpireControllerManager is a spire-controller-manager process.
type SpireControllerManager struct {
	once sync.Once
	proc *process
	err  error
}

// Stop stops the process (once; later calls return the first result). Its
// watches would otherwise hold up the API server's shutdown.
func (m *SpireControllerManager) Stop() error {
	m.once.Do(func() { m.err = m.proc.stop() })
	return m.err
}

// addStopper registers what Stop must stop before the clusters.
func (e *Env) addStopper(stop func() error) {
	e.stoppersMu.Lock()
	defer e.stoppersMu.Unlock()
	e.stoppers = append(e.stoppers, stop)
}

// runStoppers stops, last started first, what addStopper registered.
func (e *Env) runStoppers() error {
	e.stoppersMu.Lock()
	stoppers := e.stoppers
	e.stoppers = nil
	e.stoppersMu.Unlock()
	var errs []error
	for i := len(stoppers) - 1; i >= 0; i-- {
		errs = append(errs, stoppers[i]())
	}
	return errors.Join(errs...)
}

func writeClusterKubeconfig(cluster *Cluster, user, path string) error {
	kubeconfig, err := cluster.Kubeconfig(user, "system:masters")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// ensureConfigMap creates a namespace and an empty ConfigMap in it, as the
// SPIRE chart does for the k8sbundle notifier, unless they exist.
func ensureConfigMap(ctx context.Context, c client.Client, namespace, name string) error {
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
	} {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", obj, name, err)
		}
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}
