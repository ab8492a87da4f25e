package spireaccess_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestExecServer reaches a real SPIRE server the way the operator does in
// real clusters: Kubernetes exec into the server's container, through a
// real API server and a KWOK node whose exec runs spire-server on this
// machine.
func TestExecServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env := testenv.StartForTest(ctx, t, testenv.Options{Zones: []testenv.ZoneSpec{{Name: "exec", KWOK: true}}})
	cluster := env.Zones["exec"]
	if err := cluster.ExposeToExec("spire-server"); err != nil {
		t.Fatal(err)
	}
	a, err := env.StartSpireServer(ctx, testenv.SpireServerOptions{Name: "a", TrustDomain: "a.exec.test", Cluster: cluster, Namespace: "spire-server", ConfigMap: "spire-bundle"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.StartSpireServer(ctx, testenv.SpireServerOptions{Name: "b", TrustDomain: "b.exec.test", Cluster: cluster, Namespace: "spire-b", ConfigMap: "spire-bundle"})
	if err != nil {
		t.Fatal(err)
	}
	// a federates with b, bootstrapped with b's bundle as an operator would.
	bundlePath := filepath.Join(t.TempDir(), "b.json")
	bundleOfB, err := b.CLI(ctx, "bundle", "show", "-format", "spiffe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundlePath, bundleOfB, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CLI(ctx, "federation", "create", "-trustDomain", b.TrustDomain, "-bundleEndpointURL", b.BundleEndpointURL,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://"+b.TrustDomain+"/spire/server",
		"-trustDomainBundlePath", bundlePath, "-trustDomainBundleFormat", "spiffe"); err != nil {
		t.Fatal(err)
	}
	runServerPod(ctx, t, cluster.Client, "spire-server", "spire-server-0")

	clientset, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	server := spireaccess.NewExecServer(cluster.Config, clientset, spireaccess.ExecTarget{
		Namespace: "spire-server", Pod: "spire-server-0", Container: "spire-server", SocketPath: a.SocketPath,
		Command: filepath.Join(cluster.ExecBinDir(), "spire-server"),
	})

	t.Run("reads the federated bundles", func(t *testing.T) {
		held, err := server.FederatedBundles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := held[b.TrustDomain].X509Fingerprints, ownFingerprints(ctx, t, b); len(held) != 1 || !slices.Equal(got, want) {
			t.Errorf("held = %+v, want %s with %v", held, b.TrustDomain, want)
		}
	})

	t.Run("a refresh fetches a rotated bundle at once", func(t *testing.T) {
		if _, err := b.CLI(ctx, "localauthority", "x509", "prepare"); err != nil {
			t.Fatal(err)
		}
		want := ownFingerprints(ctx, t, b)
		if err := server.RefreshBundle(ctx, b.TrustDomain); err != nil {
			t.Fatal(err)
		}
		held, err := server.FederatedBundles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := held[b.TrustDomain].X509Fingerprints; len(want) != 2 || !slices.Equal(got, want) {
			t.Errorf("after refresh a holds %v, want %v", got, want)
		}
	})

	t.Run("errors name the target and SPIRE's reason", func(t *testing.T) {
		err := server.RefreshBundle(ctx, "unknown.exec.test")
		if err == nil || !strings.Contains(err.Error(), "spire-server/spire-server-0") {
			t.Errorf("refresh of an unknown trust domain: %v", err)
		}
		missing := spireaccess.NewExecServer(cluster.Config, clientset, spireaccess.ExecTarget{
			Namespace: "spire-server", Pod: "no-such-pod", Container: "spire-server", SocketPath: a.SocketPath,
			Command: filepath.Join(cluster.ExecBinDir(), "spire-server"),
		})
		if _, err := missing.FederatedBundles(ctx); err == nil || !strings.Contains(err.Error(), "no-such-pod") {
			t.Errorf("exec into a missing pod: %v", err)
		}
	})
}

// runServerPod creates a Pod with a spire-server container and waits
// until KWOK reports it Running.
func runServerPod(ctx context.Context, t *testing.T, c client.Client, namespace, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			Containers:                   []corev1.Container{{Name: "spire-server", Image: "ghcr.io/spiffe/spire-server:1.15.3"}},
			AutomountServiceAccountToken: new(bool),
		},
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// The service account admission refuses Pods until
		// kube-controller-manager has created the namespace's default
		// service account.
		err := c.Create(ctx, pod)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating pod: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			t.Fatal(err)
		}
		if pod.Status.Phase == corev1.PodRunning {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s/%s is %s", namespace, name, pod.Status.Phase)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ownFingerprints reads a server's own X.509 authorities with the CLI.
func ownFingerprints(ctx context.Context, t *testing.T, server *testenv.SpireServer) []string {
	t.Helper()
	fingerprints, err := server.OwnX509Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return fingerprints
}
