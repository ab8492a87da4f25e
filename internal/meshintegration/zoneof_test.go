package meshintegration

import (
	"reflect"
	"testing"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

func TestZoneOf(t *testing.T) {
	t.Parallel()
	zone := func(name string, install spirefedv1alpha1.SpireInstallMode) *spirefedv1alpha1.ZoneTrustDomain {
		z := &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: name}}
		z.Spec.TrustDomain = name + ".example"
		z.Spec.Spire.Install = install
		return z
	}
	a := zone("a", spirefedv1alpha1.SpireInstallHelm)
	members := map[string]*spirefedv1alpha1.ZoneTrustDomain{"a": a, "b": zone("b", ""), "c": zone("c", "")}
	links := []plan.Link{{From: "a", To: "b"}, {From: "a", To: "c"}, {From: "a", To: "gone"}}
	pem := func(z *spirefedv1alpha1.ZoneTrustDomain) string {
		if z.Name == "c" {
			return ""
		}
		return "pem of " + z.Name
	}
	identity := &spirev1alpha1.ClusterSPIFFEID{ObjectMeta: metav1.ObjectMeta{Name: plan.SPIFFEIDName("m", "a", IdentityName)}}
	identity.Spec.FederatesWith = []string{"b.example"}
	other := &spirev1alpha1.ClusterSPIFFEID{ObjectMeta: metav1.ObjectMeta{Name: plan.SPIFFEIDName("m", "a", "other")}}
	other.Spec.FederatesWith = []string{"c.example"}

	cases := []struct {
		name     string
		zonePlan *plan.ZonePlan
		want     []Peer
	}{
		{"no plan yet: nothing federated", nil, []Peer{
			{Zone: "b", TrustDomain: "b.example", X509PEM: "pem of b"},
			{Zone: "c", TrustDomain: "c.example"},
		}},
		{"federated as the mesh workloads' identity says, not another's", &plan.ZonePlan{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{other, identity}}, []Peer{
			{Zone: "b", TrustDomain: "b.example", X509PEM: "pem of b", Federated: true},
			{Zone: "c", TrustDomain: "c.example"},
		}},
	}
	for _, tc := range cases {
		got := ZoneOf("m", a, tc.zonePlan, links, members, pem, []string{"other-mesh"})
		want := Zone{Name: "a", TrustDomain: "a.example", SpireHelm: true, SDSConflicts: []string{"other-mesh"}, Peers: tc.want}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: ZoneOf = %+v, want %+v", tc.name, got, want)
		}
	}
}
