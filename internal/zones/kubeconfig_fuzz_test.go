package zones

import (
	"testing"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// FuzzRestConfigFromKubeconfig: no kubeconfig panics the sanitiser, and an
// accepted one gives a REST config that runs no program, reads no file and
// verifies TLS, checked on the config itself rather than on the kubeconfig.
// `go test` runs the seeds (f.Add and testdata/fuzz/FuzzRestConfigFromKubeconfig).
func FuzzRestConfigFromKubeconfig(f *testing.F) {
	for _, edit := range []func(*clientcmdapi.Cluster, *clientcmdapi.AuthInfo){
		func(*clientcmdapi.Cluster, *clientcmdapi.AuthInfo) {},
		func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			u.Exec = &clientcmdapi.ExecConfig{Command: "aws", APIVersion: "client.authentication.k8s.io/v1"}
		},
		func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) {
			u.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "gcp"}
		},
		func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.ClientCertificate, u.ClientKey = "/c", "/k" },
		func(_ *clientcmdapi.Cluster, u *clientcmdapi.AuthInfo) { u.TokenFile = "/token" },
		func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) { c.CertificateAuthority = "/ca.crt" },
		func(c *clientcmdapi.Cluster, _ *clientcmdapi.AuthInfo) {
			c.InsecureSkipTLSVerify, c.CertificateAuthorityData = true, nil
		},
	} {
		f.Add(kubeconfig(edit))
	}
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		config, err := restConfigFromKubeconfig(data)
		if err != nil {
			return
		}
		switch {
		case config.ExecProvider != nil:
			t.Fatalf("accepted an exec plugin: %+v", config.ExecProvider)
		case config.AuthProvider != nil:
			t.Fatalf("accepted an auth-provider plugin: %+v", config.AuthProvider)
		case config.Insecure:
			t.Fatal("accepted insecure-skip-tls-verify")
		case config.CAFile != "" || config.CertFile != "" || config.KeyFile != "" || config.BearerTokenFile != "":
			t.Fatalf("accepted file references: CA %q, certificate %q, key %q, token %q", config.CAFile, config.CertFile, config.KeyFile, config.BearerTokenFile)
		}
		if limited := withClientLimits(config, "zone"); limited.ExecProvider != nil || limited.Insecure {
			t.Fatal("client limits changed the sanitised config")
		}
	})
}
