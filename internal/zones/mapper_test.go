package zones

import (
	"testing"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

func TestGroupVersionMapper(t *testing.T) {
	discovery := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	mapper := &groupVersionMapper{groupVersion: spirev1alpha1.SchemeGroupVersion, discovery: discovery}
	federated := schema.GroupKind{Group: spirev1alpha1.SchemeGroupVersion.Group, Kind: "ClusterFederatedTrustDomain"}

	// The CRDs are not installed yet: no match, as from a discovery mapper.
	if _, err := mapper.RESTMapping(federated, "v1alpha1"); !meta.IsNoMatchError(err) {
		t.Fatalf("before the CRDs: error %v, want a no-match error", err)
	}

	// Installed (spire-crds): the next call finds them.
	discovery.Resources = []*metav1.APIResourceList{{
		GroupVersion: spirev1alpha1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{
			{Name: "clusterfederatedtrustdomains", Kind: "ClusterFederatedTrustDomain"},
			{Name: "clusterfederatedtrustdomains/status", Kind: "ClusterFederatedTrustDomain"},
			{Name: "clusterspiffeids", Kind: "ClusterSPIFFEID"},
		},
	}}
	mapping, err := mapper.RESTMapping(federated, "v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	if mapping.Resource.Resource != "clusterfederatedtrustdomains" || mapping.Scope.Name() != meta.RESTScopeNameRoot {
		t.Errorf("mapping %s, scope %s; want clusterfederatedtrustdomains, root", mapping.Resource, mapping.Scope.Name())
	}

	// Other groups are left to the next mapper.
	if _, err := mapper.RESTMapping(schema.GroupKind{Group: "security.istio.io", Kind: "PeerAuthentication"}); !meta.IsNoMatchError(err) {
		t.Errorf("another group: error %v, want a no-match error", err)
	}
	// A kind the group does not serve.
	if _, err := mapper.RESTMapping(schema.GroupKind{Group: federated.Group, Kind: "Nothing"}); !meta.IsNoMatchError(err) {
		t.Errorf("unknown kind: error %v, want a no-match error", err)
	}
}

func TestBuiltinKindsMapped(t *testing.T) {
	builtin := builtinMapper()
	for _, tc := range []struct {
		kind       schema.GroupKind
		resource   string
		namespaced bool
	}{
		{schema.GroupKind{Kind: "ConfigMap"}, "configmaps", true},
		{schema.GroupKind{Kind: "Namespace"}, "namespaces", false},
		{schema.GroupKind{Group: "authorization.k8s.io", Kind: "SelfSubjectAccessReview"}, "selfsubjectaccessreviews", false},
		{schema.GroupKind{Group: "apps", Kind: "Deployment"}, "deployments", true},
	} {
		mapping, err := builtin.RESTMapping(tc.kind)
		if err != nil {
			t.Errorf("%s: %v", tc.kind, err)
			continue
		}
		if mapping.Resource.Resource != tc.resource || (mapping.Scope.Name() == meta.RESTScopeNameNamespace) != tc.namespaced {
			t.Errorf("%s: %s, scope %s", tc.kind, mapping.Resource, mapping.Scope.Name())
		}
	}
}
