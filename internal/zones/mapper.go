package zones

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// builtinKinds are the built-in kinds the operator reads or writes in
// zones' clusters, with their resource and scope: every API server serves
// them, so they are mapped without discovery.
var builtinKinds = []struct {
	kind       schema.GroupVersionKind
	resource   string
	namespaced bool
}{
	{schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, "configmaps", true},
	{schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, "secrets", true},
	{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "pods", true},
	{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, "namespaces", false},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, "deployments", true},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}, "statefulsets", true},
	{schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}, "daemonsets", true},
	{schema.GroupVersionKind{Group: "authorization.k8s.io", Version: "v1", Kind: "SelfSubjectAccessReview"}, "selfsubjectaccessreviews", false},
}

// newZoneClient builds a zone's client, with the zone mapper, and the
// HTTP client of its watches (caches and clientset). Both HTTP clients
// share one transport, so one set of connections per zone. Only the
// client's carries the config's timeout: net/http's timeout covers
// reading the whole answer, so it would end every watch after that time
// (15 s), and the watches would restart all the time.
func newZoneClient(config *rest.Config, scheme *runtime.Scheme) (client.Client, *http.Client, error) {
	transport, err := rest.TransportFor(config)
	if err != nil {
		return nil, nil, fmt.Errorf("building the zone's HTTP transport: %w", err)
	}
	requests := &http.Client{Transport: transport, Timeout: config.Timeout}
	watches := &http.Client{Transport: transport}
	mapper, err := newZoneMapper(config, requests)
	if err != nil {
		return nil, nil, err
	}
	zoneClient, err := client.New(config, client.Options{Scheme: scheme, HTTPClient: requests, Mapper: mapper})
	return zoneClient, watches, err
}

// newZoneMapper maps kinds to resources in a zone's cluster in three steps:
// the built-in kinds the operator uses, without discovery; the SPIRE
// controller manager's kinds, from the discovery of that one group
// version; any other kind (a service mesh's), from controller-runtime's
// lazy discovery mapper, which only zones of a mesh integration reach.
// controller-runtime's mapper alone reads the discovery of every group of
// the cluster (aggregated discovery): about 200 KB held per zone, 40 MB at
// 200 zones, for the handful of kinds the operator uses everywhere.
func newZoneMapper(config *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	builtin := builtinMapper()
	discoveryClient, err := discovery.NewDiscoveryClientForConfigAndClient(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("building the zone's discovery client: %w", err)
	}
	dynamic, err := apiutil.NewDynamicRESTMapper(config, httpClient)
	if err != nil {
		return nil, fmt.Errorf("building the zone's REST mapper: %w", err)
	}
	spire := &groupVersionMapper{groupVersion: spirev1alpha1.SchemeGroupVersion, discovery: discoveryClient}
	return meta.FirstHitRESTMapper{MultiRESTMapper: meta.MultiRESTMapper{builtin, spire, dynamic}}, nil
}

// builtinMapper maps builtinKinds.
func builtinMapper() *meta.DefaultRESTMapper {
	var groupVersions []schema.GroupVersion
	for _, kind := range builtinKinds {
		if !slices.Contains(groupVersions, kind.kind.GroupVersion()) {
			groupVersions = append(groupVersions, kind.kind.GroupVersion())
		}
	}
	builtin := meta.NewDefaultRESTMapper(groupVersions)
	for _, kind := range builtinKinds {
		addKind(builtin, kind.kind, kind.resource, kind.namespaced)
	}
	return builtin
}

func addKind(mapper *meta.DefaultRESTMapper, kind schema.GroupVersionKind, resource string, namespaced bool) {
	scope := meta.RESTScopeRoot
	if namespaced {
		scope = meta.RESTScopeNamespace
	}
	plural := kind.GroupVersion().WithResource(resource)
	singular := kind.GroupVersion().WithResource(kind.Kind)
	mapper.AddSpecific(kind, plural, singular, scope)
}

// groupVersionMapper maps the kinds of one group version, read from the
// discovery of that group version alone (once it answers; until then
// every call asks again, as a CRD may be installed at any time). Kinds of
// other groups are no match.
type groupVersionMapper struct {
	groupVersion schema.GroupVersion
	discovery    discovery.DiscoveryInterface

	mu     sync.Mutex
	loaded *meta.DefaultRESTMapper
}

// mapper returns the group version's mapper, or a NoKindMatchError-like
// error when the cluster does not serve it.
func (m *groupVersionMapper) mapper(group string) (meta.RESTMapper, error) {
	if group != m.groupVersion.Group {
		return nil, &meta.NoResourceMatchError{PartialResource: m.groupVersion.WithResource("")}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loaded != nil {
		return m.loaded, nil
	}
	resources, err := m.discovery.ServerResourcesForGroupVersion(m.groupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		return nil, &meta.NoResourceMatchError{PartialResource: m.groupVersion.WithResource("")}
	case err != nil:
		return nil, fmt.Errorf("reading the discovery of %s: %w", m.groupVersion, err)
	}
	loaded := meta.NewDefaultRESTMapper([]schema.GroupVersion{m.groupVersion})
	for _, resource := range resources.APIResources {
		if resource.Kind == "" || strings.Contains(resource.Name, "/") {
			continue
		}
		addKind(loaded, m.groupVersion.WithKind(resource.Kind), resource.Name, resource.Namespaced)
	}
	m.loaded = loaded
	return loaded, nil
}

func (m *groupVersionMapper) KindFor(resource schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	mapper, err := m.mapper(resource.Group)
	if err != nil {
		return schema.GroupVersionKind{}, err
	}
	return mapper.KindFor(resource)
}

func (m *groupVersionMapper) KindsFor(resource schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	mapper, err := m.mapper(resource.Group)
	if err != nil {
		return nil, err
	}
	return mapper.KindsFor(resource)
}

func (m *groupVersionMapper) ResourceFor(input schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	mapper, err := m.mapper(input.Group)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return mapper.ResourceFor(input)
}

func (m *groupVersionMapper) ResourcesFor(input schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	mapper, err := m.mapper(input.Group)
	if err != nil {
		return nil, err
	}
	return mapper.ResourcesFor(input)
}

func (m *groupVersionMapper) RESTMapping(kind schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	mapper, err := m.mapper(kind.Group)
	if err != nil {
		return nil, noKindMatch(kind, versions, err)
	}
	return mapper.RESTMapping(kind, versions...)
}

func (m *groupVersionMapper) RESTMappings(kind schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	mapper, err := m.mapper(kind.Group)
	if err != nil {
		return nil, noKindMatch(kind, versions, err)
	}
	return mapper.RESTMappings(kind, versions...)
}

func (m *groupVersionMapper) ResourceSingularizer(resource string) (string, error) {
	m.mu.Lock()
	loaded := m.loaded
	m.mu.Unlock()
	if loaded == nil {
		return resource, nil
	}
	return loaded.ResourceSingularizer(resource)
}

// noKindMatch turns a group version that is not served into the error a
// mapper gives for a kind it does not know; other errors are kept.
func noKindMatch(kind schema.GroupKind, versions []string, err error) error {
	if meta.IsNoMatchError(err) {
		return &meta.NoKindMatchError{GroupKind: kind, SearchedVersions: versions}
	}
	return err
}
