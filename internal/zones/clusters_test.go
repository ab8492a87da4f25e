package zones

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func secretAccess(name string) spirefedv1alpha1.ClusterAccess {
	return spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: name, Key: "value"}}
}

func baseZone(edit func(spire *spirefedv1alpha1.SpireInstallation)) *spirefedv1alpha1.ZoneTrustDomain {
	zone := &spirefedv1alpha1.ZoneTrustDomain{
		ObjectMeta: metav1.ObjectMeta{Name: "corp"},
		Spec: spirefedv1alpha1.ZoneTrustDomainSpec{
			TrustDomain: "example.com",
			ClusterName: "mgmt",
			Cluster:     secretAccess("mgmt-kubeconfig"),
			Spire:       spirefedv1alpha1.SpireInstallation{Install: spirefedv1alpha1.SpireInstallHelm, Namespace: "spire-server", ReleaseName: "spire"},
		},
	}
	edit(&zone.Spec.Spire)
	return zone
}

// target summarises a federation target for comparison.
type target struct {
	name, view, secret, namespace, className, idPath string
	servers                                          []string
}

func summarise(targets []FederationTarget) []target {
	out := make([]target, 0, len(targets))
	for _, t := range targets {
		view := t.Cluster.View
		secret := "local"
		if ref := view.Spec.Cluster.KubeconfigSecretRef; ref != nil {
			secret = ref.Name
		}
		servers := make([]string, 0, len(t.Servers))
		for _, server := range t.Servers {
			servers = append(servers, server.Name+"@"+server.Spec.Spire.Namespace)
		}
		out = append(out, target{t.Cluster.Name, view.Name, secret, view.Spec.Spire.Namespace, view.SpireClassName(), t.Cluster.IDPath, servers})
	}
	return out
}

func TestFederationTargets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		zone *spirefedv1alpha1.ZoneTrustDomain
		want []target
	}{
		{
			name: "single: the zone's own cluster, as today",
			zone: baseZone(func(*spirefedv1alpha1.SpireInstallation) {}),
			want: []target{{"", "corp", "mgmt-kubeconfig", "spire-server", "spire-server-spire", "", []string{"corp@spire-server"}}},
		},
		{
			name: "nested helm: the root's cluster and every child, with derived classNames",
			zone: baseZone(func(spire *spirefedv1alpha1.SpireInstallation) {
				spire.Shape = spirefedv1alpha1.ShapeNested
				spire.Nested = &spirefedv1alpha1.NestedSpire{Children: []spirefedv1alpha1.NestedChild{
					{Name: "cluster-a", Cluster: secretAccess("a-kubeconfig"), IDPath: "/cluster-a"},
					{Name: "cluster-b", Cluster: secretAccess("b-kubeconfig"), Spire: spirefedv1alpha1.ClusterSpire{Namespace: "spire-b"}},
				}}
			}),
			want: []target{
				{"root", "corp", "mgmt-kubeconfig", "spire-server", "spire-server-spire", "", []string{"corp@spire-server"}},
				{"cluster-a", "corp/cluster-a", "a-kubeconfig", "spire-server", "spire-server-spire", "/cluster-a", []string{"corp/cluster-a@spire-server"}},
				{"cluster-b", "corp/cluster-b", "b-kubeconfig", "spire-b", "spire-b-spire", "", []string{"corp/cluster-b@spire-b"}},
			},
		},
		{
			name: "nested external: the classNames given",
			zone: baseZone(func(spire *spirefedv1alpha1.SpireInstallation) {
				spire.Install = spirefedv1alpha1.SpireInstallExternal
				spire.ClassName = "root"
				spire.Shape = spirefedv1alpha1.ShapeNested
				spire.Nested = &spirefedv1alpha1.NestedSpire{Children: []spirefedv1alpha1.NestedChild{
					{Name: "cluster-a", Cluster: secretAccess("a-kubeconfig"), Spire: spirefedv1alpha1.ClusterSpire{ClassName: "nested-a"}},
				}}
			}),
			want: []target{
				{"root", "corp", "mgmt-kubeconfig", "spire-server", "root", "", []string{"corp@spire-server"}},
				{"cluster-a", "corp/cluster-a", "a-kubeconfig", "spire-server", "nested-a", "", []string{"corp/cluster-a@spire-server"}},
			},
		},
		{
			name: "HA in one cluster: one set of objects, both sides' servers",
			zone: baseZone(func(spire *spirefedv1alpha1.SpireInstallation) {
				spire.Shape = spirefedv1alpha1.ShapeHA
				spire.HA = &spirefedv1alpha1.HASpire{
					A: spirefedv1alpha1.HASide{BundleEndpointURL: "https://a.example"},
					B: spirefedv1alpha1.HASide{BundleEndpointURL: "https://b.example"},
				}
			}),
			want: []target{
				{"a", "corp/a", "mgmt-kubeconfig", "spire-server-a", "spire-server-spire", "", []string{"corp/a@spire-server-a", "corp/b@spire-server-b"}},
			},
		},
		{
			name: "HA in two clusters: each side's cluster",
			zone: baseZone(func(spire *spirefedv1alpha1.SpireInstallation) {
				spire.Install = spirefedv1alpha1.SpireInstallExternal
				spire.ClassName = "ha"
				spire.Shape = spirefedv1alpha1.ShapeHA
				b := secretAccess("b-kubeconfig")
				spire.HA = &spirefedv1alpha1.HASpire{
					A: spirefedv1alpha1.HASide{BundleEndpointURL: "https://a.example", Spire: spirefedv1alpha1.ClusterSpire{ClassName: "side-a", Namespace: "spire"}},
					B: spirefedv1alpha1.HASide{BundleEndpointURL: "https://b.example", Cluster: &b, Spire: spirefedv1alpha1.ClusterSpire{ClassName: "side-b", Namespace: "spire"}},
				}
			}),
			want: []target{
				{"a", "corp/a", "mgmt-kubeconfig", "spire", "side-a", "", []string{"corp/a@spire"}},
				{"b", "corp/b", "b-kubeconfig", "spire", "side-b", "", []string{"corp/b@spire"}},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := summarise(FederationTargets(tc.zone))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d targets %+v, want %+v", len(got), got, tc.want)
			}
			for i := range got {
				if got[i].name != tc.want[i].name || got[i].view != tc.want[i].view || got[i].secret != tc.want[i].secret ||
					got[i].namespace != tc.want[i].namespace || got[i].className != tc.want[i].className || got[i].idPath != tc.want[i].idPath ||
					len(got[i].servers) != len(tc.want[i].servers) {
					t.Errorf("target %d = %+v, want %+v", i, got[i], tc.want[i])
					continue
				}
				for j := range got[i].servers {
					if got[i].servers[j] != tc.want[i].servers[j] {
						t.Errorf("target %d servers = %v, want %v", i, got[i].servers, tc.want[i].servers)
					}
				}
			}
		})
	}
}

func TestClusterViewsDoNotChangeTheZone(t *testing.T) {
	t.Parallel()
	zone := baseZone(func(spire *spirefedv1alpha1.SpireInstallation) {
		spire.Shape = spirefedv1alpha1.ShapeNested
		spire.Nested = &spirefedv1alpha1.NestedSpire{Children: []spirefedv1alpha1.NestedChild{{Name: "a", Cluster: secretAccess("a")}}}
	})
	before := zone.DeepCopy()
	clusters := Clusters(zone)
	clusters[1].View.Spec.Spire.Namespace = "changed"
	if zone.Spec.Spire.Namespace != before.Spec.Spire.Namespace || zone.Spec.Cluster.KubeconfigSecretRef.Name != "mgmt-kubeconfig" {
		t.Fatalf("a view changed the zone: %+v", zone.Spec)
	}
	if ZoneOf(clusters[1].View.Name) != "corp" || ZoneOf("corp") != "corp" {
		t.Fatalf("ZoneOf(%q) = %q", clusters[1].View.Name, ZoneOf(clusters[1].View.Name))
	}
}
