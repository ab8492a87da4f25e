package zones

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Client limits applied to every zone client.
const (
	zoneQPS     = 20
	zoneBurst   = 50
	zoneTimeout = 15 * time.Second
)

// restConfigFromKubeconfig turns kubeconfig bytes from a Secret into a REST
// config. It refuses what would let a Secret make the operator run a program
// or read its own files, and TLS verification being switched off.
func restConfigFromKubeconfig(data []byte) (*rest.Config, error) {
	if len(data) == 0 {
		return nil, errors.New("the kubeconfig is empty")
	}
	kubeconfig, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("parsing kubeconfig: %w", err)
	}
	if err := checkKubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	config, err := clientcmd.NewDefaultClientConfig(*kubeconfig, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("building client config from kubeconfig: %w", err)
	}
	return config, nil
}

func checkKubeconfig(kubeconfig *clientcmdapi.Config) error {
	contextName := kubeconfig.CurrentContext
	kubeContext, ok := kubeconfig.Contexts[contextName]
	if !ok {
		return fmt.Errorf("the kubeconfig's current context %q does not exist", contextName)
	}
	cluster, ok := kubeconfig.Clusters[kubeContext.Cluster]
	if !ok {
		return fmt.Errorf("the kubeconfig's cluster %q does not exist", kubeContext.Cluster)
	}
	if cluster.InsecureSkipTLSVerify {
		return fmt.Errorf("cluster %q sets insecure-skip-tls-verify, which is not supported", kubeContext.Cluster)
	}
	if cluster.CertificateAuthority != "" {
		return fmt.Errorf("cluster %q names a certificate-authority file; inline it as certificate-authority-data", kubeContext.Cluster)
	}
	user, ok := kubeconfig.AuthInfos[kubeContext.AuthInfo]
	if !ok {
		return fmt.Errorf("the kubeconfig's user %q does not exist", kubeContext.AuthInfo)
	}
	switch {
	case user.Exec != nil:
		return fmt.Errorf("user %q uses an exec plugin, which is not supported", kubeContext.AuthInfo)
	case user.AuthProvider != nil:
		return fmt.Errorf("user %q uses an auth-provider plugin, which is not supported", kubeContext.AuthInfo)
	case user.ClientCertificate != "" || user.ClientKey != "" || user.TokenFile != "":
		return fmt.Errorf("user %q names files; inline them as client-certificate-data, client-key-data or token", kubeContext.AuthInfo)
	}
	return nil
}

// withClientLimits sets rate limits, timeout and user agent on a copy of config.
func withClientLimits(config *rest.Config, zoneName string) *rest.Config {
	config = rest.CopyConfig(config)
	config.QPS = zoneQPS
	config.Burst = zoneBurst
	config.Timeout = zoneTimeout
	config.UserAgent = "spire-federation-operator/zone=" + zoneName
	return config
}
