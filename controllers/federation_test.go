package controllers

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// federationZone is a zone of TestFederation: its cluster, ZoneTrustDomain
// name, trust domain and bundle endpoint.
type federationZone struct {
	name     string
	cluster  *testenv.Cluster
	endpoint *zoneEndpoint
}

func (z *federationZone) trustDomain() string { return z.endpoint.TrustDomain.Name() }

// startFederationZone creates a zone in a cluster, with its bootstrap
// ConfigMap in its own namespace, and waits for it to be Ready.
func startFederationZone(t testing.TB, name, clusterName string) *federationZone {
	t.Helper()
	cluster := env.Zones[clusterName]
	zone := &federationZone{name: name, cluster: cluster, endpoint: startZoneEndpoint(t, name+".fed")}
	namespace := "spire-" + name
	writeBundleConfigMapIn(t, cluster, namespace, zone.endpoint.bootstrapPEM())
	object := newZoneAt(name, zone.trustDomain(), testenv.KubeconfigSecretName(clusterName), zone.endpoint.server.URL)
	object.Spec.Spire.Namespace = namespace
	object.Spec.Spire.ClassName = namespace + "-spire"
	createZone(t, object)
	waitForZoneCondition(t, name, ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	return zone
}

// TestFederation drives one mesh through joins, a rotation, an outage, a
// conflict, topology changes, a departure and deletion, judging by the
// objects in the zones' API servers.
func TestFederation(t *testing.T) {
	a := startFederationZone(t, "fed-a", "alpha")
	b := startFederationZone(t, "fed-b", "beta")
	c := startFederationZone(t, "fed-c", "gamma")
	d := startFederationZone(t, "fed-d", "beta") // a second zone in beta's cluster
	byName := map[string]*federationZone{a.name: a, b.name: b, c.name: c, d.name: d}

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "fed"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{
				Name:             "workloads",
				SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
				PodSelector:      &metav1.LabelSelector{MatchLabels: map[string]string{"spirefed.io/federated": "true"}},
			}},
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

	// expectFederation waits until every zone holds exactly the CFTDs the
	// links demand, with current bundles, and ClusterSPIFFEIDs federating
	// with exactly those peers.
	expectFederation := func(t *testing.T, links map[string][]string) {
		t.Helper()
		deadline := testDeadline(30)
		for {
			problem := federationProblem(byName, links)
			if problem == "" {
				return
			}
			if deadline() {
				current := &spirefedv1alpha1.FederationMesh{}
				_ = env.Management.Client.Get(testCtx, types.NamespacedName{Name: "fed"}, current)
				t.Fatalf("zones do not hold the expected federation: %s\nmesh status: %+v", problem, current.Status)
			}
		}
	}

	t.Run("full mesh of two converges", func(t *testing.T) {
		waitForMeshCondition(t, "fed", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "all 2 pairs are established")
		expectFederation(t, map[string][]string{a.name: {b.name}, b.name: {a.name}})
		got := waitForMeshCondition(t, "fed", spirefedv1alpha1.ConvergedCondition, metav1.ConditionUnknown, spirefedv1alpha1.ReasonSpireNotObserved, "")
		for _, pair := range got.Status.Pairs {
			if pair.State != spirefedv1alpha1.PairPending || pair.Reason != spirefedv1alpha1.ReasonSpireNotObserved || pair.PeerSequence == nil || len(pair.PeerX509Fingerprints) != 1 {
				t.Errorf("pair %+v", pair)
			}
		}
	})

	t.Run("steady state makes no write", func(t *testing.T) {
		before := zoneWrites(t)
		time.Sleep(8 * time.Second) // several fetches, zone status updates and mesh resyncs
		if after := zoneWrites(t); after != before {
			t.Errorf("%d writes in steady state", after-before)
		}
	})

	t.Run("an owned object changed or deleted by hand is put back", func(t *testing.T) {
		// The idle passes before this skipped comparing the zones' objects
		// (apply.Settled); a change in a zone's cache must end that.
		name := types.NamespacedName{Name: plan.FederatedTrustDomainName(a.name, b.trustDomain())}
		changed := &spirev1alpha1.ClusterFederatedTrustDomain{}
		if err := a.cluster.Client.Get(testCtx, name, changed); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(changed.DeepCopy())
		changed.Spec.TrustDomainBundle = ""
		if err := a.cluster.Client.Patch(testCtx, changed, patch, client.FieldOwner("kubectl-edit")); err != nil {
			t.Fatal(err)
		}
		expectFederation(t, map[string][]string{a.name: {b.name}, b.name: {a.name}})
		deleted := &spirev1alpha1.ClusterFederatedTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: name.Name}}
		if err := a.cluster.Client.Delete(testCtx, deleted); err != nil {
			t.Fatal(err)
		}
		expectFederation(t, map[string][]string{a.name: {b.name}, b.name: {a.name}})
	})

	t.Run("a static identity is written, and pruned when it leaves the mesh", func(t *testing.T) {
		// Zones watch ClusterStaticEntries only once a mesh plans some or
		// they hold some (zones.ownedReader.Holds).
		staticEntries := func() map[string][]string {
			held := map[string][]string{}
			for _, zone := range []*federationZone{a, b} {
				var entries spirev1alpha1.ClusterStaticEntryList
				if err := zone.cluster.Client.List(testCtx, &entries, client.MatchingLabels{plan.LabelZone: zone.name, plan.LabelMesh: "fed"}); err != nil {
					t.Fatal(err)
				}
				for _, entry := range entries.Items {
					held[zone.name] = append(held[zone.name], entry.Spec.SPIFFEID)
				}
			}
			return held
		}
		waitFor := func(what string, want func(map[string][]string) bool) {
			t.Helper()
			deadline := testDeadline(30)
			for held := staticEntries(); !want(held); held = staticEntries() {
				if deadline() {
					t.Fatalf("%s: the zones hold %v", what, held)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		updateMesh(t, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.Identities = append(m.Spec.Identities, spirefedv1alpha1.IdentityTemplate{Name: "process", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/process", Static: labStatic()})
		})
		waitFor("written", func(held map[string][]string) bool { return len(held[a.name]) == 1 && len(held[b.name]) == 1 })
		updateMesh(t, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Identities = m.Spec.Identities[:1] })
		waitFor("pruned", func(held map[string][]string) bool { return len(held) == 0 })
	})

	t.Run("a zone added later joins", func(t *testing.T) {
		updateMesh(t, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{a.name, b.name, c.name} })
		expectFederation(t, map[string][]string{a.name: {b.name, c.name}, b.name: {a.name, c.name}, c.name: {a.name, b.name}})
		waitForMeshCondition(t, "fed", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "all 6 pairs are established")
	})

	t.Run("a rotation reaches every peer", func(t *testing.T) {
		rotated, err := testenv.NewSPIFFECA(c.trustDomain())
		if err != nil {
			t.Fatal(err)
		}
		next := spiffebundle.FromX509Authorities(c.endpoint.TrustDomain, []*x509.Certificate{c.endpoint.CA.Cert, rotated.Cert})
		next.SetSequenceNumber(2)
		started := time.Now()
		c.endpoint.server.SetBundle(next)
		writeBundleConfigMapIn(t, c.cluster, "spire-"+c.name, string(testenv.PEM(c.endpoint.CA.Cert, rotated.Cert)))
		expectFederation(t, map[string][]string{a.name: {b.name, c.name}, b.name: {a.name, c.name}, c.name: {a.name, b.name}})
		for _, peer := range []*federationZone{a, b} {
			waitForPeerSequence(t, peer, c, 2)
		}
		t.Logf("rotation reached both peers' ClusterFederatedTrustDomains in %s", time.Since(started).Round(10*time.Millisecond))
	})

	t.Run("an unreachable zone deletes nothing and recovers", func(t *testing.T) {
		inA := federatedTrustDomainsIn(t, a.name, "fed")
		if err := c.cluster.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		restarted := false
		defer func() {
			if !restarted {
				_ = c.cluster.StartAPIServer()
			}
		}()
		got := waitForPair(t, "fed", c.name, a.name, spirefedv1alpha1.PairUnreachable)
		for _, pair := range got.Status.Pairs {
			if pair.From != c.name && pair.State != spirefedv1alpha1.PairPending {
				t.Errorf("pair %s->%s is %s (%s) while only %s is down", pair.From, pair.To, pair.State, pair.Message, c.name)
			}
		}
		if after := federatedTrustDomainsIn(t, a.name, "fed"); !slices.Equal(after, inA) {
			t.Errorf("zone %s lost ClusterFederatedTrustDomains: %v -> %v", a.name, inA, after)
		}
		if err := c.cluster.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		restarted = true
		waitForMeshCondition(t, "fed", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "all 6 pairs are established")
	})

	t.Run("a foreign ClusterFederatedTrustDomain is a conflict and left alone", func(t *testing.T) {
		foreign := &spirev1alpha1.ClusterFederatedTrustDomain{
			ObjectMeta: metav1.ObjectMeta{Name: "hand-made-d"},
			Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
				TrustDomain:           d.trustDomain(),
				BundleEndpointURL:     "https://d.example:8443",
				BundleEndpointProfile: spirev1alpha1.BundleEndpointProfile{Type: spirev1alpha1.HTTPSWebProfileType},
			},
		}
		if err := a.cluster.Client.Create(testCtx, foreign); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = a.cluster.Client.Delete(testCtx, foreign) }()
		resourceVersion := foreign.ResourceVersion
		updateMesh(t, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.Zones.Names = []string{a.name, b.name, d.name}
		})
		got := waitForPair(t, "fed", a.name, d.name, spirefedv1alpha1.PairConflict)
		waitForPair(t, "fed", b.name, d.name, spirefedv1alpha1.PairPending)
		if !meta.IsStatusConditionFalse(got.Status.Conditions, spirefedv1alpha1.ReadyCondition) {
			t.Error("mesh Ready despite a conflict")
		}
		if err := a.cluster.Client.Get(testCtx, client.ObjectKeyFromObject(foreign), foreign); err != nil || foreign.ResourceVersion != resourceVersion {
			t.Errorf("the foreign object was touched: %v, resourceVersion %s -> %s", err, resourceVersion, foreign.ResourceVersion)
		}
	})

	t.Run("a departing zone is offboarded everywhere", func(t *testing.T) {
		// c left with the previous step; everything the mesh wrote about and
		// in c is gone, and federatesWith no longer names it. (The foreign
		// object is gone too, so a now trusts d.)
		expectFederation(t, map[string][]string{a.name: {b.name, d.name}, b.name: {a.name, d.name}, d.name: {a.name, b.name}, c.name: nil})
	})

	t.Run("explicit one-way link", func(t *testing.T) {
		updateMesh(t, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.Zones.Names = []string{a.name, b.name}
			m.Spec.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyExplicit, Links: []spirefedv1alpha1.Link{{From: a.name, To: b.name}}}
		})
		expectFederation(t, map[string][]string{a.name: {b.name}, b.name: nil, "fed-d": nil})
		got := waitForMeshCondition(t, "fed", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "all 1 pairs are established")
		if len(got.Status.Pairs) != 1 || got.Status.Pairs[0].From != a.name || got.Status.Pairs[0].To != b.name {
			t.Errorf("pairs = %+v", got.Status.Pairs)
		}
	})

	t.Run("hub and spoke", func(t *testing.T) {
		updateMesh(t, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.Zones.Names = []string{a.name, b.name, c.name}
			m.Spec.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: a.name}
		})
		expectFederation(t, map[string][]string{a.name: {b.name, c.name}, b.name: {a.name}, c.name: {a.name}})
		waitForMeshCondition(t, "fed", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "all 4 pairs are established")
	})

	t.Run("deleting the mesh removes what it wrote", func(t *testing.T) {
		if err := env.Management.Client.Delete(testCtx, mesh); err != nil {
			t.Fatal(err)
		}
		meshDeleted = true
		deadline := testDeadline(30)
		for {
			err := env.Management.Client.Get(testCtx, types.NamespacedName{Name: "fed"}, &spirefedv1alpha1.FederationMesh{})
			if apierrors.IsNotFound(err) {
				break
			}
			if deadline() {
				t.Fatalf("mesh not deleted: %v", err)
			}
		}
		if problem := federationProblem(byName, map[string][]string{a.name: nil, b.name: nil, c.name: nil, "fed-d": nil}); problem != "" {
			t.Errorf("after deletion: %s", problem)
		}
	})
}

// federationProblem says how the zones differ from links (zone -> trusted
// zones; a nil entry means the mesh owns nothing there), or "".
func federationProblem(zones map[string]*federationZone, links map[string][]string) string {
	for name, peers := range links {
		zone := zones[name]
		var cftds spirev1alpha1.ClusterFederatedTrustDomainList
		if err := zone.cluster.Client.List(testCtx, &cftds, client.MatchingLabels{plan.LabelMesh: "fed", plan.LabelZone: name}); err != nil {
			return err.Error()
		}
		var got, wantTrustDomains []string
		for _, cftd := range cftds.Items {
			got = append(got, cftd.Spec.TrustDomain)
			peer := zones[cftd.Labels[plan.LabelPeer]]
			if peer == nil {
				return fmt.Sprintf("%s: CFTD %s names unknown peer", name, cftd.Name)
			}
			current := &spirefedv1alpha1.ZoneTrustDomain{}
			if err := env.Management.Client.Get(testCtx, types.NamespacedName{Name: peer.name}, current); err != nil {
				return err.Error()
			}
			if current.Status.Bundle == nil || cftd.Spec.TrustDomainBundle != current.Status.Bundle.SPIFFEBundle {
				return fmt.Sprintf("%s: the bundle of %s is not current", name, cftd.Spec.TrustDomain)
			}
			if cftd.Spec.ClassName != "spire-"+name+"-spire" || cftd.Name != plan.FederatedTrustDomainName(name, cftd.Spec.TrustDomain) {
				return fmt.Sprintf("%s: CFTD %s has className %q", name, cftd.Name, cftd.Spec.ClassName)
			}
		}
		for _, peer := range peers {
			wantTrustDomains = append(wantTrustDomains, zones[peer].trustDomain())
		}
		slices.Sort(got)
		slices.Sort(wantTrustDomains)
		if !slices.Equal(got, wantTrustDomains) {
			return fmt.Sprintf("%s holds CFTDs for %v, want %v", name, got, wantTrustDomains)
		}
		var ids spirev1alpha1.ClusterSPIFFEIDList
		if err := zone.cluster.Client.List(testCtx, &ids, client.MatchingLabels{plan.LabelMesh: "fed", plan.LabelZone: name}); err != nil {
			return err.Error()
		}
		if peers == nil {
			if len(ids.Items) > 0 && len(links[name]) == 0 && ids.Items[0].Spec.FederatesWith != nil {
				return fmt.Sprintf("%s: ClusterSPIFFEID federates with %v", name, ids.Items[0].Spec.FederatesWith)
			}
			continue
		}
		if len(ids.Items) != 1 || !slices.Equal(ids.Items[0].Spec.FederatesWith, wantTrustDomains) {
			return fmt.Sprintf("%s: ClusterSPIFFEIDs %v, want one federating with %v", name, describeIDs(ids.Items), wantTrustDomains)
		}
	}
	return ""
}

func describeIDs(ids []spirev1alpha1.ClusterSPIFFEID) []string {
	var out []string
	for _, id := range ids {
		out = append(out, fmt.Sprintf("%s%v", id.Name, id.Spec.FederatesWith))
	}
	return out
}

// federatedTrustDomainsIn lists, with their resource versions, the
// ClusterFederatedTrustDomains a mesh owns for a zone.
func federatedTrustDomainsIn(t *testing.T, zoneName, meshName string) []string {
	t.Helper()
	zone := getZone(t, zoneName)
	cluster := env.Zones[strings.TrimSuffix(zone.Spec.Cluster.KubeconfigSecretRef.Name, "-kubeconfig")]
	var cftds spirev1alpha1.ClusterFederatedTrustDomainList
	if err := cluster.Client.List(testCtx, &cftds, client.MatchingLabels{plan.LabelZone: zoneName}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cftd := range cftds.Items {
		if apply.OwnedBy(cftd.Labels, meshName, zoneName) {
			names = append(names, cftd.Name+"@"+cftd.ResourceVersion)
		}
	}
	slices.Sort(names)
	return names
}

func getMesh(t testing.TB, name string) *spirefedv1alpha1.FederationMesh {
	t.Helper()
	mesh := &spirefedv1alpha1.FederationMesh{}
	if err := env.Management.Client.Get(testCtx, types.NamespacedName{Name: name}, mesh); err != nil {
		t.Fatal(err)
	}
	return mesh
}

func updateMesh(t *testing.T, change func(*spirefedv1alpha1.FederationMesh)) {
	t.Helper()
	updateMeshNamed(t, "fed", change)
}

func updateMeshNamed(t *testing.T, name string, change func(*spirefedv1alpha1.FederationMesh)) {
	t.Helper()
	for {
		mesh := &spirefedv1alpha1.FederationMesh{}
		if err := env.Management.Client.Get(testCtx, types.NamespacedName{Name: name}, mesh); err != nil {
			t.Fatal(err)
		}
		change(mesh)
		err := env.Management.Client.Update(testCtx, mesh)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

func waitForPair(t *testing.T, meshName, from, to string, state spirefedv1alpha1.PairState) *spirefedv1alpha1.FederationMesh {
	t.Helper()
	return waitForPairWhere(t, meshName, from, to, "state "+string(state), func(pair spirefedv1alpha1.PairStatus) bool { return pair.State == state })
}

// waitForPairWhere waits until a pair of a mesh satisfies match.
func waitForPairWhere(t *testing.T, meshName, from, to, what string, match func(spirefedv1alpha1.PairStatus) bool) *spirefedv1alpha1.FederationMesh {
	t.Helper()
	deadline := testDeadline(30)
	for {
		mesh := getMesh(t, meshName)
		for _, pair := range mesh.Status.Pairs {
			if pair.From == from && pair.To == to && match(pair) {
				return mesh
			}
		}
		if deadline() {
			t.Fatalf("pair %s->%s has no %s: %+v", from, to, what, mesh.Status.Pairs)
		}
	}
}

// waitForPeerSequence waits until zone's CFTD for peer carries sequence.
func waitForPeerSequence(t testing.TB, zone, peer *federationZone, sequence uint64) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		cftd := &spirev1alpha1.ClusterFederatedTrustDomain{}
		err := zone.cluster.Client.Get(testCtx, types.NamespacedName{Name: plan.FederatedTrustDomainName(zone.name, peer.trustDomain())}, cftd)
		if err == nil {
			held, parseErr := spiffebundle.Parse(peer.endpoint.TrustDomain, []byte(cftd.Spec.TrustDomainBundle))
			if parseErr == nil {
				if got, ok := held.SequenceNumber(); ok && got == sequence {
					return
				}
			}
		}
		if deadline() {
			t.Fatalf("%s does not hold sequence %d of %s: %v", zone.name, sequence, peer.name, err)
		}
	}
}

// TestZoneDeletionCleansItsCluster deletes a zone of a mesh: the operator
// removes what it wrote in the zone's cluster, and its peers stop trusting it.
func TestZoneDeletionCleansItsCluster(t *testing.T) {
	a := startFederationZone(t, "gone-a", "alpha")
	b := startFederationZone(t, "gone-b", "beta")
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "fed"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:      spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology:   spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{Name: "workloads", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/w"}},
		},
	}
	createMesh(t, mesh)
	zones := map[string]*federationZone{a.name: a, b.name: b}
	deadline := testDeadline(30)
	for problem := federationProblem(zones, map[string][]string{a.name: {b.name}, b.name: {a.name}}); problem != ""; problem = federationProblem(zones, map[string][]string{a.name: {b.name}, b.name: {a.name}}) {
		if deadline() {
			t.Fatal(problem)
		}
	}
	if err := env.Management.Client.Delete(testCtx, &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: b.name}}); err != nil {
		t.Fatal(err)
	}
	deadline = testDeadline(30)
	for problem := federationProblem(zones, map[string][]string{a.name: nil, b.name: nil}); problem != ""; problem = federationProblem(zones, map[string][]string{a.name: nil, b.name: nil}) {
		if deadline() {
			t.Fatal(problem)
		}
	}
	waitForMeshCondition(t, "fed", spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonZoneNotFound, b.name)
}

// waitForDeletion deletes a mesh and waits until its finalizer has run, so
// that the next test starts from clean zones.
func waitForDeletion(t testing.TB, mesh *spirefedv1alpha1.FederationMesh) {
	if err := env.Management.Client.Delete(testCtx, mesh); client.IgnoreNotFound(err) != nil {
		t.Error(err)
		return
	}
	deadline := testDeadline(30)
	for {
		err := env.Management.Client.Get(testCtx, client.ObjectKeyFromObject(mesh), &spirefedv1alpha1.FederationMesh{})
		if apierrors.IsNotFound(err) {
			return
		}
		if deadline() {
			t.Errorf("mesh %s not deleted: %v", mesh.Name, err)
			return
		}
	}
}
