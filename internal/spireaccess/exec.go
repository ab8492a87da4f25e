package spireaccess

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// maxExecOutput bounds what one spire-server command may print.
const maxExecOutput = 16 << 20

// ExecTarget is the container running a SPIRE server, the spire-server
// executable and the admin socket inside it.
type ExecTarget struct {
	Namespace  string
	Pod        string
	Container  string
	Command    string
	SocketPath string
}

// NewExecServer returns a Server that runs the spire-server command in the
// target container through the Kubernetes API (pods/exec) of the cluster
// that config, and the clientset built from it, reach.
func NewExecServer(config *rest.Config, clientset kubernetes.Interface, target ExecTarget) Server {
	return &execServer{config: config, clientset: clientset, target: target}
}

type execServer struct {
	config    *rest.Config
	clientset kubernetes.Interface
	target    ExecTarget
}

func (s *execServer) TrustDomain(ctx context.Context) (string, error) {
	out, err := s.run(ctx, "bundle", "show", "-output", "json")
	if err != nil {
		return "", fmt.Errorf("reading the server's own bundle in %s: %w", s.where(), err)
	}
	var own types.Bundle
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out, &own); err != nil {
		return "", fmt.Errorf("reading the output of spire-server bundle show: %w", err)
	}
	return own.GetTrustDomain(), nil
}

func (s *execServer) FederatedBundles(ctx context.Context) (map[string]HeldBundle, error) {
	out, err := s.run(ctx, "bundle", "list", "-output", "json")
	if err != nil {
		return nil, fmt.Errorf("listing federated bundles in %s: %w", s.where(), err)
	}
	return ParseBundleList(out)
}

func (s *execServer) RefreshBundle(ctx context.Context, trustDomain string) error {
	if _, err := s.run(ctx, "federation", "refresh", "-id", trustDomain); err != nil {
		return fmt.Errorf("refreshing the bundle of %s in %s: %w", trustDomain, s.where(), err)
	}
	return nil
}

// ParseBundleList reads the JSON output of `spire-server bundle list
// -output json`: a ListFederatedBundlesResponse.
func ParseBundleList(out []byte) (map[string]HeldBundle, error) {
	var response bundlev1.ListFederatedBundlesResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(out, &response); err != nil {
		return nil, fmt.Errorf("reading the output of spire-server bundle list: %w", err)
	}
	held := map[string]HeldBundle{}
	if err := heldBundles(response.GetBundles(), held); err != nil {
		return nil, err
	}
	return held, nil
}

func (s *execServer) where() string {
	return fmt.Sprintf("pod %s/%s container %s", s.target.Namespace, s.target.Pod, s.target.Container)
}

// run runs the spire-server command with args and the admin socket, and returns what it
// printed on standard output.
func (s *execServer) run(ctx context.Context, args ...string) ([]byte, error) {
	command := append([]string{s.target.Command}, args...)
	command = append(command, "-socketPath", s.target.SocketPath)
	request := s.clientset.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(s.target.Namespace).Name(s.target.Pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: s.target.Container,
			Command:   command,
			Stdout:    true,
			Stderr:    true,
		}, scheme.ParameterCodec)
	executor, err := remotecommand.NewSPDYExecutor(s.config, "POST", request.URL())
	if err != nil {
		return nil, fmt.Errorf("preparing exec: %w", err)
	}
	// Past a limit the stream is cancelled, so that nothing more is read.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stdout := &limitedBuffer{limit: maxExecOutput, overflow: cancel}
	stderr := &limitedBuffer{limit: 64 << 10, overflow: cancel}
	err = executor.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	if stdout.exceeded || stderr.exceeded {
		return nil, fmt.Errorf("spire-server %s: %w", args[0], errOutputTooLarge)
	}
	if err != nil {
		if message := strings.TrimSpace(stderr.String()); message != "" {
			return nil, fmt.Errorf("%w: %s", err, message)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

var errOutputTooLarge = errors.New("output too large")

// limitedBuffer fails writes past limit bytes, and then calls overflow.
type limitedBuffer struct {
	bytes.Buffer
	limit    int
	overflow func()
	exceeded bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		if !b.exceeded && b.overflow != nil {
			b.overflow()
		}
		b.exceeded = true
		return 0, errOutputTooLarge
	}
	return b.Buffer.Write(p)
}
