package controllers

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// haTrustDomain is the trust domain of TestHATrustDomainWithSPIRE's sides.
const haTrustDomain = "ha.spire.test"

// startHASide starts one side of an HA trust domain in a cluster: a real
// SPIRE server of haTrustDomain with its own CA and datastore, its
// spire-controller-manager and an agent. No ZoneTrustDomain: the sides
// belong to one.
func startHASide(t *testing.T, name, clusterName string) *spireZone {
	t.Helper()
	cluster := env.Zones[clusterName]
	namespace := "spire-" + name
	server, err := env.StartSpireServer(testCtx, testenv.SpireServerOptions{
		Name: name, TrustDomain: haTrustDomain, Cluster: cluster, Namespace: namespace, ConfigMap: "spire-bundle",
	})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := env.StartSpireControllerManager(cluster, server, name, namespace+"-spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, stop := range []func() error{manager.Stop, server.Stop} {
			if err := stop(); err != nil {
				t.Error(err)
			}
		}
	})
	agent, err := env.StartSpireAgent(testCtx, server, "lab")
	if err != nil {
		t.Fatal(err)
	}
	return &spireZone{name: name, cluster: cluster, server: server, agent: agent}
}

// haSide is the spec of one side started by startHASide.
func haSide(side *spireZone, cluster *spirefedv1alpha1.ClusterAccess) spirefedv1alpha1.HASide {
	return spirefedv1alpha1.HASide{
		Cluster:           cluster,
		BundleEndpointURL: side.server.BundleEndpointURL,
		Spire: spirefedv1alpha1.ClusterSpire{
			Namespace:    "spire-" + side.name,
			ClassName:    "spire-" + side.name + "-spire",
			ServerAccess: &spirefedv1alpha1.SpireServerAccess{Socket: &spirefedv1alpha1.SocketAccess{Path: side.server.SocketPath}},
		},
	}
}

// waitForClusters waits until a zone's status.clusters match.
func waitForClusters(t *testing.T, zoneName string, match func([]spirefedv1alpha1.TrustDomainClusterStatus) bool) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	deadline := testDeadline(60)
	for {
		zone := getZone(t, zoneName)
		if match(zone.Status.Clusters) {
			return zone
		}
		if deadline() {
			t.Fatalf("zone %s: clusters %+v; Ready: %+v", zoneName, zone.Status.Clusters, conditionOf(zone, ready))
		}
	}
}

func clusterReasons(clusters []spirefedv1alpha1.TrustDomainClusterStatus) string {
	var reasons []string
	for _, cluster := range clusters {
		reasons = append(reasons, cluster.Name+"="+cluster.Reason+"/"+string(cluster.Attested))
	}
	return strings.Join(reasons, ",")
}

// TestHATrustDomainWithSPIRE runs an HA trust domain as two independent
// real SPIRE servers (sides A in alpha and B in beta, one trust domain,
// two CAs) federated with a peer zone. The operator cross-links the sides
// (each side's own bundle holds the other's authorities), so the peer's
// SPIRE holds both sides' authorities whichever side it fetches. With A's
// server stopped the peer keeps B's authorities and completes mTLS with a
// workload holding a B-issued SVID; the zone switches to B's endpoint;
// nothing is deleted; A back, everything converges.
func TestHATrustDomainWithSPIRE(t *testing.T) {
	peer := startSpireZone(t, "hapeer", "gamma")
	a := startHASide(t, "ha-a", "alpha")
	b := startHASide(t, "ha-b", "beta")
	aOwn, bOwn := a.ownFingerprints(t), b.ownFingerprints(t)
	union := slices.Concat(aOwn, bOwn)
	slices.Sort(union)
	if len(aOwn) == 0 || len(bOwn) == 0 || slices.Equal(aOwn, bOwn) {
		t.Fatalf("the sides must have CAs of their own: A %v, B %v", aOwn, bOwn)
	}

	zone := newZoneAt("ha", haTrustDomain, testenv.KubeconfigSecretName("alpha"), a.server.BundleEndpointURL)
	zone.Spec.Spire.Namespace = "spire-ha-a"
	zone.Spec.Spire.ClassName = "spire-ha-a-spire"
	zone.Spec.Spire.Shape = spirefedv1alpha1.ShapeHA
	zone.Spec.Spire.HA = &spirefedv1alpha1.HASpire{
		A: haSide(a, nil),
		B: haSide(b, &spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: testenv.KubeconfigSecretName("beta")}}),
	}
	createZone(t, zone)
	t.Cleanup(func() { deleteZone(t, zone.Name) })

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "ha"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{zone.Name, peer.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{
				Name:             "process",
				SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/process",
				Static:           labStatic(),
			}},
		},
	}
	createMesh(t, mesh)

	// peerHoldsBoth waits until the peer's SPIRE server holds exactly both
	// sides' authorities for the HA trust domain.
	peerHoldsBoth := func(t *testing.T) {
		t.Helper()
		deadline := testDeadline(60)
		for {
			held := peer.heldBundles(t)[haTrustDomain]
			if slices.Equal(held.X509Fingerprints, union) {
				return
			}
			if deadline() {
				t.Fatalf("the peer's SPIRE holds %v for %s, want both sides' %v", held.X509Fingerprints, haTrustDomain, union)
			}
		}
	}

	t.Run("the sides are cross-linked and the peer trusts both", func(t *testing.T) {
		waitForClusters(t, zone.Name, func(clusters []spirefedv1alpha1.TrustDomainClusterStatus) bool {
			return clusterReasons(clusters) == "a=Healthy/True,b=Healthy/True"
		})
		if got := a.ownFingerprints(t); !slices.Equal(got, union) {
			t.Errorf("side A holds %v, want both sides' %v", got, union)
		}
		if got := b.ownFingerprints(t); !slices.Equal(got, union) {
			t.Errorf("side B holds %v, want both sides' %v", got, union)
		}
		waitForMeshCondition(t, mesh.Name, spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		peerHoldsBoth(t)
		workloadA, workloadB, workloadPeer := a.workload(t), b.workload(t), peer.workload(t)
		defer workloadA.Close()
		defer workloadB.Close()
		defer workloadPeer.Close()
		waitForHandshakes(t, map[string]*workloadapi.X509Source{"a": workloadA, "b": workloadB, "peer": workloadPeer},
			map[string][]string{"a": {"peer"}, "b": {"peer"}, "peer": {"a", "b"}})
	})

	t.Run("side A down: the peer keeps B's authorities, mTLS with B goes on, nothing is deleted", func(t *testing.T) {
		if err := a.server.Stop(); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		got := waitForClusters(t, zone.Name, func(clusters []spirefedv1alpha1.TrustDomainClusterStatus) bool {
			return clusterReasons(clusters) == "a=SpireUnreachable/Unknown,b=Healthy/Unknown"
		})
		if readyCondition := conditionOf(got, ready); readyCondition.Status != metav1.ConditionTrue || !strings.Contains(readyCondition.Message, "degraded: a (SpireUnreachable)") {
			t.Errorf("Ready = %+v, want True naming side a degraded", readyCondition)
		}
		waitForZoneCondition(t, zone.Name, spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched)
		if current := getZone(t, zone.Name); current.Status.BundleEndpointURL != b.server.BundleEndpointURL {
			t.Errorf("the zone is fetched from %q, want side B's %q", current.Status.BundleEndpointURL, b.server.BundleEndpointURL)
		}
		peerHoldsBoth(t)
		workloadB, workloadPeer := b.workload(t), peer.workload(t)
		defer workloadB.Close()
		defer workloadPeer.Close()
		waitForHandshakes(t, map[string]*workloadapi.X509Source{"b": workloadB, "peer": workloadPeer}, map[string][]string{"b": {"peer"}, "peer": {"b"}})
		// The peer is given side B's endpoint; every object stays.
		var cftds spirev1alpha1.ClusterFederatedTrustDomainList
		if err := peer.cluster.Client.List(testCtx, &cftds, client.MatchingLabels{plan.LabelMesh: mesh.Name, plan.LabelZone: peer.name}); err != nil {
			t.Fatal(err)
		}
		if len(cftds.Items) != 1 || cftds.Items[0].Spec.TrustDomain != haTrustDomain {
			t.Fatalf("the peer holds %d ClusterFederatedTrustDomains, want one for %s", len(cftds.Items), haTrustDomain)
		}
		deadline := testDeadline(30)
		for peerCFTD := cftds.Items[0]; peerCFTD.Spec.BundleEndpointURL != b.server.BundleEndpointURL; {
			if deadline() {
				t.Fatalf("the peer's ClusterFederatedTrustDomain points at %s, want side B's %s", peerCFTD.Spec.BundleEndpointURL, b.server.BundleEndpointURL)
			}
			if err := peer.cluster.Client.Get(testCtx, client.ObjectKeyFromObject(&peerCFTD), &peerCFTD); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("side A stopped -> the peer is given side B's endpoint after %s", time.Since(stopped).Round(10*time.Millisecond))
		for _, side := range []*spireZone{a, b} {
			if objects := clusterObjects(t, side.cluster, mesh.Name, zone.Name); len(objects) != 1 || !strings.HasPrefix(objects[0], "cftd "+peer.server.TrustDomain) {
				t.Errorf("side %s's cluster holds %v, want the peer's ClusterFederatedTrustDomain", side.name, objects)
			}
		}
		peerHoldsBoth(t)
	})

	t.Run("side A back: everything converges", func(t *testing.T) {
		if err := a.server.Start(testCtx); err != nil {
			t.Fatal(err)
		}
		waitForClusters(t, zone.Name, func(clusters []spirefedv1alpha1.TrustDomainClusterStatus) bool {
			return clusterReasons(clusters) == "a=Healthy/True,b=Healthy/True"
		})
		waitForZoneMessage(t, zone.Name, ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "is current")
		waitForMeshCondition(t, mesh.Name, spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		peerHoldsBoth(t)
		workloadA, workloadPeer := a.workload(t), peer.workload(t)
		defer workloadA.Close()
		defer workloadPeer.Close()
		waitForHandshakes(t, map[string]*workloadapi.X509Source{"a": workloadA, "peer": workloadPeer}, map[string][]string{"a": {"peer"}, "peer": {"a"}})
	})
}

// nestedTrustDomain is the trust domain of TestNestedTrustDomainWithSPIRE.
const nestedTrustDomain = "nested.spire.test"

// startNestedRoot starts the root SPIRE server of a nested trust domain in
// a cluster, an agent of it on this machine, and the downstream entry that
// lets nested servers run here get their CA from the root; it waits until
// the agent serves that identity.
func startNestedRoot(t *testing.T, clusterName string) (*spireZone, *testenv.UpstreamSpire) {
	t.Helper()
	server, err := env.StartSpireServer(testCtx, testenv.SpireServerOptions{
		Name: "nroot", TrustDomain: nestedTrustDomain, Cluster: env.Zones[clusterName], Namespace: "spire-nroot", ConfigMap: "spire-bundle",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := server.Stop(); err != nil {
			t.Error(err)
		}
	})
	agent, err := env.StartSpireAgent(testCtx, server, "upstream")
	if err != nil {
		t.Fatal(err)
	}
	downstream := "spiffe://" + nestedTrustDomain + "/nested-server"
	if _, err := server.CLI(testCtx, "entry", "create", "-spiffeID", downstream, "-parentID", agent.AliasID,
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()), "-downstream"); err != nil {
		t.Fatal(err)
	}
	deadline := testDeadline(60)
	for {
		svids, err := workloadapi.FetchX509SVIDs(testCtx, workloadapi.WithAddr("unix://"+agent.SocketPath))
		if err == nil && slices.ContainsFunc(svids, func(svid *x509svid.SVID) bool { return svid.ID.String() == downstream }) {
			break
		}
		if deadline() {
			t.Fatalf("the root's agent does not serve the nested servers' identity %s: %v", downstream, err)
		}
	}
	root := &spireZone{name: "nroot", cluster: env.Zones[clusterName], server: server, agent: agent}
	return root, &testenv.UpstreamSpire{Server: server, WorkloadAPISocket: agent.SocketPath}
}

// startNestedChild starts a nested SPIRE server of the nested trust domain
// in a cluster (its CA from the root), its spire-controller-manager and
// an agent.
func startNestedChild(t *testing.T, name, clusterName string, upstream *testenv.UpstreamSpire) *spireZone {
	t.Helper()
	cluster := env.Zones[clusterName]
	namespace := "spire-" + name
	server, err := env.StartSpireServer(testCtx, testenv.SpireServerOptions{
		Name: name, TrustDomain: nestedTrustDomain, Cluster: cluster, Namespace: namespace, ConfigMap: "spire-bundle", Upstream: upstream,
	})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := env.StartSpireControllerManager(cluster, server, name, namespace+"-spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, stop := range []func() error{manager.Stop, server.Stop} {
			if err := stop(); err != nil {
				t.Error(err)
			}
		}
	})
	agent, err := env.StartSpireAgent(testCtx, server, "lab")
	if err != nil {
		t.Fatal(err)
	}
	return &spireZone{name: name, cluster: cluster, server: server, agent: agent}
}

// nestedChild is the spec of a child started by startNestedChild.
func nestedChild(child *spireZone, idPath string) spirefedv1alpha1.NestedChild {
	return spirefedv1alpha1.NestedChild{
		Name:    child.name,
		Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: testenv.KubeconfigSecretName(child.cluster.Name)}},
		IDPath:  idPath,
		Spire: spirefedv1alpha1.ClusterSpire{
			Namespace:    "spire-" + child.name,
			ClassName:    "spire-" + child.name + "-spire",
			ServerAccess: &spirefedv1alpha1.SpireServerAccess{Socket: &spirefedv1alpha1.SocketAccess{Path: child.server.SocketPath}},
		},
	}
}

// chainsTo checks that a workload's SVID chains, through its nested
// server's CA, to the given root authorities.
func chainsTo(t *testing.T, source *workloadapi.X509Source, roots []*x509.Certificate) {
	t.Helper()
	svid, err := source.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	pool, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, root := range roots {
		pool.AddCert(root)
	}
	for _, intermediate := range svid.Certificates[1:] {
		intermediates.AddCert(intermediate)
	}
	if len(svid.Certificates) < 2 {
		t.Fatalf("the SVID %s carries no intermediate: it was not issued by a nested server", svid.ID)
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the SVID %s does not chain to the root: %v", svid.ID, err)
	}
}

// ownAuthorities reads a SPIRE server's own X.509 authorities.
func ownAuthorities(t *testing.T, server *testenv.SpireServer) []*x509.Certificate {
	t.Helper()
	out, err := server.CLI(testCtx, "bundle", "show")
	if err != nil {
		t.Fatal(err)
	}
	var certificates []*x509.Certificate
	for rest := out; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		certificate, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certificates = append(certificates, certificate)
	}
	return certificates
}

// TestNestedTrustDomainWithSPIRE runs a nested trust domain with real
// SPIRE: a root spire-server (in alpha) and two nested spire-servers (c1
// in beta, c2 in gamma; UpstreamAuthority "spire" against the root), each
// with its spire-controller-manager against its own cluster's API server
// and an agent, federated with a peer zone. Workloads in both children get
// SVIDs that chain to the root; mTLS works between the children and with
// the peer in both directions; a root CA rotation reaches the peer and
// mTLS goes on through it.
func TestNestedTrustDomainWithSPIRE(t *testing.T) {
	peer := startSpireZone(t, "npeer", "gamma")
	root, upstream := startNestedRoot(t, "alpha")
	c1 := startNestedChild(t, "nc1", "beta", upstream)
	c2 := startNestedChild(t, "nc2", "gamma", upstream)

	zone := newZoneAt("nested", nestedTrustDomain, testenv.KubeconfigSecretName("alpha"), root.server.BundleEndpointURL)
	zone.Spec.Spire.Namespace = "spire-nroot"
	zone.Spec.Spire.ClassName = "spire-nroot-spire"
	zone.Spec.Spire.Shape = spirefedv1alpha1.ShapeNested
	zone.Spec.Spire.Nested = &spirefedv1alpha1.NestedSpire{Children: []spirefedv1alpha1.NestedChild{nestedChild(c1, "/c1"), nestedChild(c2, "")}}
	createZone(t, zone)
	t.Cleanup(func() { deleteZone(t, zone.Name) })

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "nested-spire"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{zone.Name, peer.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{
				Name:             "process",
				SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/process",
				Static:           labStatic(),
			}},
		},
	}
	createMesh(t, mesh)

	peerHoldsRoot := func(t *testing.T) {
		t.Helper()
		deadline := testDeadline(60)
		for {
			want := root.ownFingerprints(t)
			held := peer.heldBundles(t)[nestedTrustDomain]
			if slices.Equal(held.X509Fingerprints, want) {
				return
			}
			if deadline() {
				t.Fatalf("the peer's SPIRE holds %v for %s, want the root's %v", held.X509Fingerprints, nestedTrustDomain, want)
			}
		}
	}

	workloadC1, workloadC2, workloadPeer := c1.workload(t), c2.workload(t), peer.workload(t)
	defer workloadC1.Close()
	defer workloadC2.Close()
	defer workloadPeer.Close()
	sources := map[string]*workloadapi.X509Source{"c1": workloadC1, "c2": workloadC2, "peer": workloadPeer}
	links := map[string][]string{"c1": {"c2", "peer"}, "c2": {"c1", "peer"}, "peer": {"c1", "c2"}}

	t.Run("the children are attested to the root and their workloads' SVIDs chain to it", func(t *testing.T) {
		waitForClusters(t, zone.Name, func(clusters []spirefedv1alpha1.TrustDomainClusterStatus) bool {
			return clusterReasons(clusters) == "root=Healthy/,nc1=Healthy/True,nc2=Healthy/True"
		})
		waitForZoneMessage(t, zone.Name, ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "is current")
		roots := ownAuthorities(t, root.server)
		waitForMeshCondition(t, mesh.Name, spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		waitForHandshakes(t, sources, links)
		chainsTo(t, workloadC1, roots)
		chainsTo(t, workloadC2, roots)
		if svid, err := workloadC1.GetX509SVID(); err != nil || svid.ID.String() != "spiffe://"+nestedTrustDomain+"/c1/process" {
			t.Errorf("c1's workload is %v (%v), want its idPath in its SPIFFE ID", svid, err)
		}
		peerHoldsRoot(t)
	})

	t.Run("a root CA rotation reaches the peer and mTLS goes on", func(t *testing.T) {
		before := root.ownFingerprints(t)
		if _, err := root.server.CLI(testCtx, "localauthority", "x509", "prepare"); err != nil {
			t.Fatal(err)
		}
		if after := root.ownFingerprints(t); len(after) != len(before)+1 {
			t.Fatalf("prepare did not add an authority: %d -> %d", len(before), len(after))
		}
		prepared := time.Now()
		peerHoldsRoot(t)
		t.Logf("the root's prepared authority reached the peer's SPIRE server in %s", time.Since(prepared).Round(10*time.Millisecond))
		waitForMeshCondition(t, mesh.Name, spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		// Every workload gets the new root authority before it is used.
		current := root.ownFingerprints(t)
		trustDomain := spiffeid.RequireTrustDomainFromString(nestedTrustDomain)
		deadline := testDeadline(60)
		for name, source := range sources {
			for {
				held, err := source.GetX509BundleForTrustDomain(trustDomain)
				if err == nil && slices.Equal(fingerprintsOf(held.X509Authorities()), current) {
					break
				}
				if deadline() {
					t.Fatalf("the workload %s did not get the new root authority", name)
				}
			}
		}
		out, err := root.server.CLI(testCtx, "localauthority", "x509", "show", "-output", "json")
		if err != nil {
			t.Fatal(err)
		}
		var shown struct {
			Prepared struct {
				AuthorityID string `json:"authority_id"`
			} `json:"prepared"`
		}
		if err := json.Unmarshal(out, &shown); err != nil || shown.Prepared.AuthorityID == "" {
			t.Fatalf("no prepared authority in %s (%v)", out, err)
		}
		if _, err := root.server.CLI(testCtx, "localauthority", "x509", "activate", "-authorityID", shown.Prepared.AuthorityID); err != nil {
			t.Fatal(err)
		}
		waitForHandshakes(t, sources, links)
		peerHoldsRoot(t)
	})
}
