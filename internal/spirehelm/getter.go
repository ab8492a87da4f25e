package spirehelm

import (
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	ctrl "sigs.k8s.io/controller-runtime"
)

// ActionConfig configures Helm for a zone's cluster, with releases
// stored as Secrets in namespace (Helm's default).
func ActionConfig(config *rest.Config, namespace string) (*action.Configuration, error) {
	helm := new(action.Configuration)
	getter := &restClientGetter{config: config, namespace: namespace}
	if err := helm.Init(getter, namespace, "secret", helmLog); err != nil {
		return nil, fmt.Errorf("configuring Helm for namespace %s: %w", namespace, err)
	}
	// Every stored revision counts, failed installs included.
	helm.Releases.MaxHistory = maxHistory
	return helm, nil
}

// helmLog writes Helm's own log lines at debug level (V(1)).
func helmLog(format string, args ...any) {
	ctrl.Log.WithName("helm").V(1).Info(fmt.Sprintf(format, args...))
}

// restClientGetter gives Helm the zone's rest config. Helm's kube client
// takes the namespace of objects without one from ToRawKubeConfigLoader.
type restClientGetter struct {
	config    *rest.Config
	namespace string
}

var _ genericclioptions.RESTClientGetter = (*restClientGetter)(nil)

func (g *restClientGetter) ToRESTConfig() (*rest.Config, error) {
	return rest.CopyConfig(g.config), nil
}

func (g *restClientGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	client, err := discovery.NewDiscoveryClientForConfig(g.config)
	if err != nil {
		return nil, err
	}
	return memory.NewMemCacheClient(client), nil
}

func (g *restClientGetter) ToRESTMapper() (meta.RESTMapper, error) {
	client, err := g.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(client)
	return restmapper.NewShortcutExpander(mapper, client, nil), nil
}

func (g *restClientGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return clientcmd.NewDefaultClientConfig(*clientcmdapi.NewConfig(),
		&clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: g.namespace}})
}
