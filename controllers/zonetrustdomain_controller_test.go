package controllers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

const (
	reachable = spirefedv1alpha1.ClusterReachableCondition
	available = spirefedv1alpha1.BundleAvailableCondition
	ready     = spirefedv1alpha1.ReadyCondition
)

func createZone(t testing.TB, zone *spirefedv1alpha1.ZoneTrustDomain) {
	t.Helper()
	if err := env.Management.Client.Create(testCtx, zone); err != nil {
		t.Fatalf("creating zone %s: %v", zone.Name, err)
	}
	t.Cleanup(func() { _ = env.Management.Client.Delete(testCtx, zone) })
}

func writeSecret(t *testing.T, name string, kubeconfig []byte) {
	t.Helper()
	if err := env.WriteKubeconfigSecret(testCtx, name, kubeconfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Management.Client.Delete(testCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: name}})
	})
}

// editKubeconfig parses a kubeconfig, lets edit change it, and serialises it.
func editKubeconfig(t *testing.T, kubeconfig []byte, edit func(*clientcmdapi.Config)) []byte {
	t.Helper()
	config, err := clientcmd.Load(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	edit(config)
	out, err := clientcmd.Write(*config)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func currentUser(config *clientcmdapi.Config) *clientcmdapi.AuthInfo {
	return config.AuthInfos[config.Contexts[config.CurrentContext].AuthInfo]
}

func currentCluster(config *clientcmdapi.Config) *clientcmdapi.Cluster {
	return config.Clusters[config.Contexts[config.CurrentContext].Cluster]
}

// TestZoneConnectivity produces every ClusterReachable failure reason and
// clears it, without restarting the operator.
func TestZoneConnectivity(t *testing.T) {
	beta := env.Zones["beta"]
	adminKubeconfig, err := beta.Kubeconfig("connectivity-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("SecretNotFound, then the Secret appears", func(t *testing.T) {
		createZone(t, newZone("late-secret", "late.example", "late-kubeconfig"))
		zone := waitForZoneCondition(t, "late-secret", reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonSecretNotFound)
		if !strings.Contains(conditionOf(zone, reachable).Message, "late-kubeconfig") {
			t.Errorf("message does not name the Secret: %q", conditionOf(zone, reachable).Message)
		}
		waitForZoneCondition(t, "late-secret", ready, metav1.ConditionFalse, spirefedv1alpha1.ReasonSecretNotFound)
		writeSecret(t, "late-kubeconfig", adminKubeconfig)
		waitForZoneCondition(t, "late-secret", reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected)
	})

	t.Run("KubeconfigInvalid for garbage, plugins, files and disabled TLS checks, then fixed", func(t *testing.T) {
		invalid := map[string][]byte{
			"garbage": []byte("this is: [not a kubeconfig"),
			"exec plugin": editKubeconfig(t, adminKubeconfig, func(c *clientcmdapi.Config) {
				currentUser(c).Exec = &clientcmdapi.ExecConfig{Command: "/bin/true", APIVersion: "client.authentication.k8s.io/v1"}
			}),
			"auth-provider plugin": editKubeconfig(t, adminKubeconfig, func(c *clientcmdapi.Config) {
				currentUser(c).AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "oidc"}
			}),
			"token file": editKubeconfig(t, adminKubeconfig, func(c *clientcmdapi.Config) {
				currentUser(c).TokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
			}),
			"insecure-skip-tls-verify": editKubeconfig(t, adminKubeconfig, func(c *clientcmdapi.Config) {
				currentCluster(c).InsecureSkipTLSVerify = true
				currentCluster(c).CertificateAuthorityData = nil
			}),
		}
		wantInMessage := map[string]string{
			"garbage":                  "parsing kubeconfig",
			"exec plugin":              "exec plugin",
			"auth-provider plugin":     "auth-provider plugin",
			"token file":               "names files",
			"insecure-skip-tls-verify": "insecure-skip-tls-verify",
		}
		createZone(t, newZone("bad-kubeconfig", "bad.example", "bad-kubeconfig"))
		for what, kubeconfig := range invalid {
			writeSecret(t, "bad-kubeconfig", kubeconfig)
			zone := waitForZoneMessage(t, "bad-kubeconfig", reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonKubeconfigInvalid, wantInMessage[what])
			if message := conditionOf(zone, reachable).Message; strings.Contains(message, "PRIVATE KEY") || strings.Contains(message, "LS0t") {
				t.Errorf("%s: message leaks kubeconfig content: %q", what, conditionOf(zone, reachable).Message)
			}
		}
		writeSecret(t, "bad-kubeconfig", adminKubeconfig)
		waitForZoneCondition(t, "bad-kubeconfig", reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected)
	})

	t.Run("Forbidden, then granted", func(t *testing.T) {
		kubeconfig, err := beta.Kubeconfig("powerless")
		if err != nil {
			t.Fatal(err)
		}
		writeSecret(t, "powerless-kubeconfig", kubeconfig)
		createZone(t, newZone("powerless", "powerless.example", "powerless-kubeconfig"))
		zone := waitForZoneCondition(t, "powerless", reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonForbidden)
		if !strings.Contains(conditionOf(zone, reachable).Message, `namespace "spire-server"`) {
			t.Errorf("message does not say what is missing: %q", conditionOf(zone, reachable).Message)
		}
		grantConfigMapRead(t, beta, "powerless")
		// Nothing about the zone or its Secret changes: the health probe notices.
		waitForZoneCondition(t, "powerless", reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected)
	})

	t.Run("Unauthorized", func(t *testing.T) {
		foreign, err := env.Zones["gamma"].Kubeconfig("stranger", "system:masters")
		if err != nil {
			t.Fatal(err)
		}
		betaConfig, err := clientcmd.Load(adminKubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		// gamma's client certificate, presented to beta's API server.
		strangerAtBeta := editKubeconfig(t, foreign, func(c *clientcmdapi.Config) {
			*currentCluster(c) = *currentCluster(betaConfig)
		})
		writeSecret(t, "stranger-kubeconfig", strangerAtBeta)
		createZone(t, newZone("stranger", "stranger.example", "stranger-kubeconfig"))
		waitForZoneCondition(t, "stranger", reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonUnauthorized)
	})

	t.Run("Unreachable while the API server is stopped, Ready again after restart", func(t *testing.T) {
		gamma := env.Zones["gamma"]
		endpoint := startZoneEndpoint(t, "gamma.example")
		writeBundleConfigMap(t, gamma, endpoint.bootstrapPEM())
		createZone(t, newZoneAt("gamma", "gamma.example", testenv.KubeconfigSecretName("gamma"), endpoint.server.URL))
		waitForZoneCondition(t, "gamma", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)

		if err := gamma.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		restarted := false
		defer func() {
			if !restarted {
				_ = gamma.StartAPIServer()
			}
		}()
		zone := waitForZoneCondition(t, "gamma", reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonUnreachable)
		waitForZoneCondition(t, "gamma", ready, metav1.ConditionFalse, spirefedv1alpha1.ReasonUnreachable)
		if zone.Status.Bundle == nil || len(zone.Status.Bundle.X509Authorities) != 1 {
			t.Errorf("the last good bundle was dropped while the zone was unreachable: %+v", zone.Status.Bundle)
		}

		if err := gamma.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		restarted = true
		waitForZoneCondition(t, "gamma", reachable, metav1.ConditionTrue, spirefedv1alpha1.ReasonConnected)
		waitForZoneCondition(t, "gamma", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	})
}

// grantConfigMapRead lets user get ConfigMaps in the zone's spire-server namespace.
func grantConfigMapRead(t *testing.T, zoneCluster *testenv.Cluster, user string) {
	t.Helper()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spire-server"}}
	if err := zoneCluster.Client.Create(testCtx, namespace); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: "spire-server", Name: user + "-read-configmaps"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "spire-server", Name: user + "-read-configmaps"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := zoneCluster.Client.Create(testCtx, obj); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBundleRead reads real CA certificates from the zone's ConfigMap and
// keeps them through invalid contents.
func TestBundleRead(t *testing.T) {
	alpha := env.Zones["alpha"]
	endpoint := startZoneEndpoint(t, "alpha.example")
	first := endpoint.CA
	second, err := testenv.NewSPIFFECA("alpha.example")
	if err != nil {
		t.Fatal(err)
	}
	createZone(t, newZoneAt("alpha", "alpha.example", testenv.KubeconfigSecretName("alpha"), endpoint.server.URL))

	t.Run("missing ConfigMap", func(t *testing.T) {
		zone := waitForZoneCondition(t, "alpha", available, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleNotFound)
		if !strings.Contains(conditionOf(zone, available).Message, "spire-server/spire-bundle") {
			t.Errorf("message does not name the ConfigMap: %q", conditionOf(zone, available).Message)
		}
		waitForZoneCondition(t, "alpha", spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonWaitingForBootstrap)
	})

	want := bundle.DescribeX509Authorities([]*x509Certificate{first.Cert, second.Cert})
	t.Run("real CA certificates are reflected in status", func(t *testing.T) {
		writeBundleConfigMap(t, alpha, string(testenv.PEM(first.Cert, second.Cert)))
		zone := waitForZoneCondition(t, "alpha", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
		assertAuthorities(t, zone.Status.Bootstrap.X509Authorities, want)
		if zone.Status.Bootstrap.LastChangeTime == nil {
			t.Error("no change time for the bootstrap authorities")
		}
		if zone.Status.Bundle == nil || zone.Status.Bundle.Source != spirefedv1alpha1.BundleSourceEndpoint || zone.Status.Bundle.Sequence == nil || *zone.Status.Bundle.Sequence != 1 {
			t.Errorf("bundle status = %+v, want sequence 1 from the endpoint", zone.Status.Bundle)
		}
		if zone.Status.ClassName != "spire-server-spire" || zone.Status.EndpointSPIFFEID != "spiffe://alpha.example/spire/server" {
			t.Errorf("className %q, endpointSPIFFEID %q", zone.Status.ClassName, zone.Status.EndpointSPIFFEID)
		}
	})

	leaf, err := first.NewLeaf("workload")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, data, wantMessage string
	}{
		{"garbage", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", "cannot parse certificate"},
		{"empty", "", "no X.509 authority"},
		{"a leaf certificate", string(testenv.PEM(leaf)), "is not a CA certificate"},
	} {
		t.Run(tc.name+" keeps the last good authorities", func(t *testing.T) {
			before := getZone(t, "alpha").Status.Bundle
			writeBundleConfigMap(t, alpha, tc.data)
			zone := waitForZoneMessage(t, "alpha", available, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleInvalid, tc.wantMessage)
			assertAuthorities(t, zone.Status.Bootstrap.X509Authorities, want)
			if zone.Status.Bundle.Digest != before.Digest {
				t.Errorf("the zone's bundle changed from %s to %s", before.Digest, zone.Status.Bundle.Digest)
			}
			if c := conditionOf(zone, reachable); c.Status != metav1.ConditionTrue {
				t.Errorf("ClusterReachable changed to %s/%s", c.Status, c.Reason)
			}
			if c := conditionOf(zone, ready); c.Status != metav1.ConditionFalse || c.Reason != spirefedv1alpha1.ReasonBundleInvalid {
				t.Errorf("Ready = %s/%s, want False/BundleInvalid", c.Status, c.Reason)
			}
		})
	}

	t.Run("a rotation replaces the authorities", func(t *testing.T) {
		writeBundleConfigMap(t, alpha, string(testenv.PEM(second.Cert)))
		waitForZoneCondition(t, "alpha", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
		deadline := testDeadline(10)
		for {
			zone := getZone(t, "alpha")
			if len(zone.Status.Bootstrap.X509Authorities) == 1 {
				assertAuthorities(t, zone.Status.Bootstrap.X509Authorities, bundle.DescribeX509Authorities([]*x509Certificate{second.Cert}))
				return
			}
			if deadline() {
				t.Fatalf("authorities not rotated: %+v", zone.Status.Bootstrap.X509Authorities)
			}
		}
	})
}

func assertAuthorities(t *testing.T, got, want []spirefedv1alpha1.X509Authority) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d authorities in status, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].SHA256Fingerprint != want[i].SHA256Fingerprint || got[i].Subject != want[i].Subject || !got[i].NotAfter.Equal(&want[i].NotAfter) {
			t.Errorf("authority %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
