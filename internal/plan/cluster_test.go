package plan

import (
	"testing"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func TestWithIDPath(t *testing.T) {
	t.Parallel()
	cases := []struct{ id, path, want string }{
		{"spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}", "/cluster-a", "spiffe://{{ .TrustDomain }}/cluster-a/ns/{{ .PodMeta.Namespace }}"},
		{"spiffe://example.com/webapp", "/a/b", "spiffe://example.com/a/b/webapp"},
		{"spiffe://{{ index .PodMeta.Labels \"a/b\" }}/x", "/c", "spiffe://{{ index .PodMeta.Labels \"a/b\" }}/c/x"},
		{"spiffe://example.com", "/c", "spiffe://example.com/c"},
		{"spiffe://example.com/x", "", "spiffe://example.com/x"},
		{"https://example.com/x", "/c", "https://example.com/x"},
	}
	for _, tc := range cases {
		if got := WithIDPath(tc.id, tc.path); got != tc.want {
			t.Errorf("WithIDPath(%q, %q) = %q, want %q", tc.id, tc.path, got, tc.want)
		}
	}
}

func TestForCluster(t *testing.T) {
	t.Parallel()
	p := Compute(Input{
		Mesh:     "m",
		Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		Identities: []spirefedv1alpha1.IdentityTemplate{
			{Name: "w", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/x"},
			{Name: "s", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/vm", Static: &spirefedv1alpha1.StaticEntryTemplate{ParentIDTemplate: "spiffe://{{ .TrustDomain }}/agent", Selectors: []string{"unix:uid:1"}}},
		},
		Zones: []Zone{
			{Name: "a", TrustDomain: "a.example", ClassName: "root", BundleEndpointURL: "https://a", Profile: "https_spiffe", Bundle: "{}"},
			{Name: "b", TrustDomain: "b.example", ClassName: "b", BundleEndpointURL: "https://b", Profile: "https_spiffe", Bundle: "{}"},
		},
	})
	zonePlan := p.Zones["a"]
	if same := ForCluster(zonePlan, "root", ""); same != zonePlan {
		t.Errorf("the zone's own className and no ID path must return the plan as is")
	}
	child := ForCluster(zonePlan, "nested-a", "/cluster-a")
	if len(child.FederatedTrustDomains) != 1 || child.FederatedTrustDomains[0].Spec.ClassName != "nested-a" || child.FederatedTrustDomains[0].Name != zonePlan.FederatedTrustDomains[0].Name {
		t.Errorf("child CFTDs = %+v", child.FederatedTrustDomains)
	}
	if got := child.SPIFFEIDs[0].Spec.SPIFFEIDTemplate; got != "spiffe://{{ .TrustDomain }}/cluster-a/ns/x" || child.SPIFFEIDs[0].Spec.ClassName != "nested-a" {
		t.Errorf("child ClusterSPIFFEID = %q (%s)", got, child.SPIFFEIDs[0].Spec.ClassName)
	}
	if got := child.StaticEntries[0].Spec.SPIFFEID; got != "spiffe://a.example/cluster-a/vm" {
		t.Errorf("child static entry = %q", got)
	}
	if zonePlan.FederatedTrustDomains[0].Spec.ClassName != "root" || zonePlan.SPIFFEIDs[0].Spec.SPIFFEIDTemplate != "spiffe://{{ .TrustDomain }}/ns/x" {
		t.Errorf("ForCluster changed the zone plan")
	}
}
