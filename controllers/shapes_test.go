package controllers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// childKubeconfigSecret writes a kubeconfig Secret of its own for a child
// cluster, so that a test can take it away without touching other zones.
func childKubeconfigSecret(t *testing.T, name, clusterName string) {
	t.Helper()
	kubeconfig, err := env.Zones[clusterName].Kubeconfig("nested-"+name, "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.WriteKubeconfigSecret(testCtx, name, kubeconfig); err != nil {
		t.Fatal(err)
	}
}

// clusterObjects describes what a mesh owns for a zone in one cluster:
// "cftd <trust domain> <className>" and "id <template> <className>
// <federatesWith>" lines, sorted.
func clusterObjects(t *testing.T, cluster *testenv.Cluster, mesh, zone string) []string {
	t.Helper()
	owned := client.MatchingLabels{plan.LabelMesh: mesh, plan.LabelZone: zone}
	var cftds spirev1alpha1.ClusterFederatedTrustDomainList
	if err := cluster.Client.List(testCtx, &cftds, owned); err != nil {
		t.Fatal(err)
	}
	var ids spirev1alpha1.ClusterSPIFFEIDList
	if err := cluster.Client.List(testCtx, &ids, owned); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, cftd := range cftds.Items {
		out = append(out, fmt.Sprintf("cftd %s %s", cftd.Spec.TrustDomain, cftd.Spec.ClassName))
	}
	for _, id := range ids.Items {
		out = append(out, fmt.Sprintf("id %s %s %v", id.Spec.SPIFFEIDTemplate, id.Spec.ClassName, id.Spec.FederatesWith))
	}
	slices.Sort(out)
	return out
}

// waitForObjects waits until each cluster holds exactly the described
// objects of a mesh's zone.
func waitForObjects(t *testing.T, mesh, zone string, want map[string][]string) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		problem := ""
		for clusterName, objects := range want {
			if got := clusterObjects(t, env.Zones[clusterName], mesh, zone); !slices.Equal(got, objects) {
				problem = fmt.Sprintf("cluster %s holds %q for zone %s, want %q", clusterName, got, zone, objects)
				break
			}
		}
		if problem == "" {
			return
		}
		if deadline() {
			t.Fatal(problem)
		}
	}
}

// TestNestedTrustDomainFederation federates a nested trust domain (root in
// alpha, nested servers in beta and gamma, SPIRE installed by the user)
// with a peer zone: the peer gets one ClusterFederatedTrustDomain for the
// nested trust domain, and every cluster of the nested trust domain gets
// the objects its own SPIRE server needs, with its className and ID path.
// A child cluster lost is reported and keeps what it holds; the others go
// on.
func TestNestedTrustDomainFederation(t *testing.T) {
	peer := startFederationZone(t, "np-peer", "gamma")
	root := startZoneEndpoint(t, "nested.fed")
	writeBundleConfigMapIn(t, env.Zones["alpha"], "spire-root", root.bootstrapPEM())
	childKubeconfigSecret(t, "np-c1-kubeconfig", "beta")
	childKubeconfigSecret(t, "np-c2-kubeconfig", "gamma")
	nested := newZoneAt("np-corp", "nested.fed", testenv.KubeconfigSecretName("alpha"), root.server.URL)
	nested.Spec.Spire.Namespace = "spire-root"
	nested.Spec.Spire.ClassName = "root"
	nested.Spec.Spire.Shape = spirefedv1alpha1.ShapeNested
	nested.Spec.Spire.Nested = &spirefedv1alpha1.NestedSpire{Children: []spirefedv1alpha1.NestedChild{
		{Name: "c1", IDPath: "/c1", Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "np-c1-kubeconfig"}},
			Spire: spirefedv1alpha1.ClusterSpire{ClassName: "nested-c1"}},
		{Name: "c2", Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "np-c2-kubeconfig"}},
			Spire: spirefedv1alpha1.ClusterSpire{ClassName: "nested-c2", Namespace: "spire-c2"}},
	}}
	createZone(t, nested)
	waitForZoneCondition(t, nested.Name, ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "nested"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:      spirefedv1alpha1.ZoneSelection{Names: []string{peer.name, nested.Name}},
			Topology:   spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{Name: "workloads", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}"}},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	meshDeleted := false
	t.Cleanup(func() {
		if !meshDeleted {
			waitForDeletion(t, mesh)
		}
	})
	peerTD := peer.trustDomain()
	converged := map[string][]string{
		"alpha": {"cftd " + peerTD + " root", "id spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }} root [" + peerTD + "]"},
		"beta":  {"cftd " + peerTD + " nested-c1", "id spiffe://{{ .TrustDomain }}/c1/ns/{{ .PodMeta.Namespace }} nested-c1 [" + peerTD + "]"},
		"gamma": {"cftd " + peerTD + " nested-c2", "id spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }} nested-c2 [" + peerTD + "]"},
	}

	t.Run("every cluster of the nested trust domain, and the peer, hold what they need", func(t *testing.T) {
		waitForMeshCondition(t, mesh.Name, spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		waitForObjects(t, mesh.Name, nested.Name, converged)
		waitForObjects(t, mesh.Name, peer.name, map[string][]string{
			"gamma": {"cftd nested.fed spire-np-peer-spire", "id spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }} spire-np-peer-spire [nested.fed]"},
		})
	})

	t.Run("a lost child cluster is reported and keeps its objects; the others go on", func(t *testing.T) {
		if err := env.Management.Client.Delete(testCtx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: "np-c1-kubeconfig"}}); err != nil {
			t.Fatal(err)
		}
		got := waitForPair(t, mesh.Name, nested.Name, peer.name, spirefedv1alpha1.PairStale)
		for _, pair := range got.Status.Pairs {
			if pair.From == nested.Name && (pair.Reason != spirefedv1alpha1.ReasonApplyFailed || !strings.Contains(pair.Message, "cluster c1")) {
				t.Errorf("pair %+v: want ApplyFailed naming cluster c1", pair)
			}
			if pair.From == peer.name && pair.State == spirefedv1alpha1.PairStale {
				t.Errorf("pair %+v: the peer's side must not suffer", pair)
			}
		}
		waitForObjects(t, mesh.Name, nested.Name, converged)
		childKubeconfigSecret(t, "np-c1-kubeconfig", "beta")
		waitForMeshCondition(t, mesh.Name, spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
	})

	t.Run("deleting the mesh removes its objects from every cluster", func(t *testing.T) {
		waitForDeletion(t, mesh)
		meshDeleted = true
		waitForObjects(t, mesh.Name, nested.Name, map[string][]string{"alpha": nil, "beta": nil, "gamma": nil})
		waitForObjects(t, mesh.Name, peer.name, map[string][]string{"gamma": nil})
	})

	t.Run("deleting the zone sweeps what the operator left in its child clusters", func(t *testing.T) {
		left := &spirev1alpha1.ClusterFederatedTrustDomain{
			ObjectMeta: metav1.ObjectMeta{Name: "spirefed.np-corp.left.example", Labels: map[string]string{
				plan.LabelManagedBy: plan.ManagedBy, plan.LabelZone: nested.Name, plan.LabelMesh: "gone",
			}},
			Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
				TrustDomain: "left.example", BundleEndpointURL: "https://left.example", ClassName: "nested-c1",
				BundleEndpointProfile: spirev1alpha1.BundleEndpointProfile{Type: spirev1alpha1.HTTPSWebProfileType},
			},
		}
		if err := env.Zones["beta"].Client.Create(testCtx, left); err != nil {
			t.Fatal(err)
		}
		deleteZone(t, nested.Name)
		deadline := testDeadline(30)
		for {
			err := env.Zones["beta"].Client.Get(testCtx, client.ObjectKeyFromObject(left), &spirev1alpha1.ClusterFederatedTrustDomain{})
			if apierrors.IsNotFound(err) {
				return
			}
			if deadline() {
				t.Fatalf("the object left in child c1's cluster is still there: %v", err)
			}
		}
	})
}
