package zones

import (
	"strings"
	"testing"
	"unsafe"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestOwnedTransform checks that a zone's cache keeps one copy of what its
// objects repeat, and none of their managedFields.
func TestOwnedTransform(t *testing.T) {
	// Decoded objects hold their own copies of equal strings.
	fresh := func(s string) string { return strings.Clone(s) }
	object := func() *spirev1alpha1.ClusterFederatedTrustDomain {
		return &spirev1alpha1.ClusterFederatedTrustDomain{
			ObjectMeta: metav1.ObjectMeta{
				Name:          fresh("zone-a-peer"),
				Labels:        map[string]string{fresh("spirefed.io/mesh"): fresh("mesh"), fresh("spirefed.io/peer"): fresh("zone-b")},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "spire-federation-operator"}},
			},
			Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
				TrustDomain:           fresh("zone-b.example"),
				BundleEndpointURL:     fresh("https://zone-b.example:8443"),
				BundleEndpointProfile: spirev1alpha1.BundleEndpointProfile{Type: spirev1alpha1.BundleEndpointProfileType(fresh("https_spiffe")), EndpointSPIFFEID: fresh("spiffe://zone-b.example/spire/server")},
				TrustDomainBundle:     fresh(`{"keys":[]}`),
				ClassName:             fresh("spire"),
			},
		}
	}
	transform := ownedTransform()
	var cached []*spirev1alpha1.ClusterFederatedTrustDomain
	for range 2 {
		out, err := transform(object())
		if err != nil {
			t.Fatal(err)
		}
		cached = append(cached, out.(*spirev1alpha1.ClusterFederatedTrustDomain))
	}
	first, second := cached[0], cached[1]
	if len(first.ManagedFields) != 0 {
		t.Errorf("managedFields kept: %v", first.ManagedFields)
	}
	same := func(what, a, b string) {
		t.Helper()
		if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
			t.Errorf("%s: %q and %q are two copies", what, a, b)
		}
	}
	same("bundle", first.Spec.TrustDomainBundle, second.Spec.TrustDomainBundle)
	same("trust domain", first.Spec.TrustDomain, second.Spec.TrustDomain)
	same("URL", first.Spec.BundleEndpointURL, second.Spec.BundleEndpointURL)
	same("endpoint ID", first.Spec.BundleEndpointProfile.EndpointSPIFFEID, second.Spec.BundleEndpointProfile.EndpointSPIFFEID)
	same("class", first.Spec.ClassName, second.Spec.ClassName)
	same("peer label", first.Labels["spirefed.io/peer"], second.Labels["spirefed.io/peer"])
	if len(first.Labels) != 2 || first.Labels["spirefed.io/mesh"] != "mesh" {
		t.Errorf("labels %v, want the object's", first.Labels)
	}
}
