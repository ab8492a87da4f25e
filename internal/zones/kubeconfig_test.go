package zones

import (
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func kubeconfig(edit func(cluster *clientcmdapi.Cluster, user *clientcmdapi.AuthInfo)) []byte {
	config := clientcmdapi.NewConfig()
	cluster := &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443", CertificateAuthorityData: []byte("ca")}
	user := &clientcmdapi.AuthInfo{Token: "secret-token"}
	edit(cluster, user)
	config.Clusters["zone"] = cluster
	config.AuthInfos["operator"] = user
	config.Contexts["zone"] = &clientcmdapi.Context{Cluster: "zone", AuthInfo: "operator"}
	config.CurrentContext = "zone"
	data, err := clientcmd.Write(*config)
	if err != nil {
		panic(err)
	}
	return data
}

func TestRestConfigFromKubeconfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"inline token", kubeconfig(func(*clientcmdapi.Cluster, *clientcmdapi.AuthInfo) {}), ""},
		{"empty", nil, "empty"},
		{"not YAML", []byte("{{{"), "parsing kubeconfig"},
		{"no current context", func() []byte {
			config := clientcmdapi.NewConfig()
			data, _ := clientcmd.Write(*config)
			return data
		}(), "current context"},
		{"exec plugin", kubeconfig(func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			u.Exec = &clientcmdapi.ExecConfig{Command: "aws", APIVersion: "client.authentication.k8s.io/v1"}
		}), "exec plugin"},
		{"auth provider", kubeconfig(func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			u.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "gcp"}
		}), "auth-provider plugin"},
		{"client certificate file", kubeconfig(func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.ClientCertificate = "/etc/passwd" }), "names files"},
		{"token file", kubeconfig(func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.TokenFile = "/token" }), "names files"},
		{"CA file", kubeconfig(func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) { c.CertificateAuthority = "/ca.crt" }), "certificate-authority file"},
		{"TLS verification off", kubeconfig(func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
			c.InsecureSkipTLSVerify = true
			c.CertificateAuthorityData = nil
		}), "insecure-skip-tls-verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			config, err := restConfigFromKubeconfig(tc.data)
			if tc.wantErr == "" {
				if err != nil || config.Host != "https://127.0.0.1:6443" {
					t.Fatalf("got %v, %v", config, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestWithClientLimits(t *testing.T) {
	t.Parallel()
	config, err := restConfigFromKubeconfig(kubeconfig(func(*clientcmdapi.Cluster, *clientcmdapi.AuthInfo) {}))
	if err != nil {
		t.Fatal(err)
	}
	limited := withClientLimits(config, "zone1")
	if limited.QPS != zoneQPS || limited.Burst != zoneBurst || limited.Timeout != zoneTimeout || !strings.Contains(limited.UserAgent, "zone1") {
		t.Errorf("limits not applied: %+v", limited)
	}
	if config.QPS == zoneQPS {
		t.Error("the original config was modified")
	}
}
