package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// spireZone is a zone run by a real SPIRE server and a real
// spire-controller-manager against the zone's API server.
type spireZone struct {
	name    string
	cluster *testenv.Cluster
	server  *testenv.SpireServer
	agent   *testenv.SpireAgent
}

// startSpireZone starts SPIRE for a zone in a cluster, with the operator
// reaching the server through its admin socket, and waits for the zone to
// be Ready.
func startSpireZone(t *testing.T, name, clusterName string) *spireZone {
	t.Helper()
	return startSpireZoneWithSDS(t, name, clusterName, nil)
}

// startSpireZoneWithSDS is startSpireZone with an agent that serves SDS
// under the given names (nil: SPIRE's defaults).
func startSpireZoneWithSDS(t *testing.T, name, clusterName string, sds *testenv.AgentSDS) *spireZone {
	t.Helper()
	cluster := env.Zones[clusterName]
	namespace := "spire-" + name
	className := namespace + "-spire"
	server, err := env.StartSpireServer(testCtx, testenv.SpireServerOptions{
		Name:        name,
		TrustDomain: name + ".spire.test",
		Cluster:     cluster,
		Namespace:   namespace,
		ConfigMap:   "spire-bundle",
	})
	if err != nil {
		t.Fatal(err)
	}
	manager, err := env.StartSpireControllerManager(cluster, server, name, className)
	if err != nil {
		t.Fatal(err)
	}
	// Stop SPIRE when the test ends: its watches would hold up the zone's
	// API server in later tests that stop it. The zone goes first.
	t.Cleanup(func() {
		for _, stop := range []func() error{manager.Stop, server.Stop} {
			if err := stop(); err != nil {
				t.Error(err)
			}
		}
	})
	t.Cleanup(func() { deleteZone(t, name) })
	zone := newZoneAt(name, server.TrustDomain, testenv.KubeconfigSecretName(clusterName), server.BundleEndpointURL)
	zone.Spec.Spire.Namespace = namespace
	zone.Spec.Spire.ClassName = className
	zone.Spec.Spire.ServerAccess = &spirefedv1alpha1.SpireServerAccess{Socket: &spirefedv1alpha1.SocketAccess{Path: server.SocketPath}}
	agent, err := env.StartSpireAgentWithSDS(testCtx, server, "lab", sds)
	if err != nil {
		t.Fatal(err)
	}
	createZone(t, zone)
	waitForZoneCondition(t, name, ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	waitForZoneCondition(t, name, spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched)
	return &spireZone{name: name, cluster: cluster, server: server, agent: agent}
}

// workload returns the X.509 source of this test process as a workload of
// the zone: its SVID and the bundles, federated ones included, that the
// zone's agent gives it. The caller closes it.
func (z *spireZone) workload(t testing.TB) *workloadapi.X509Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx, 30*time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+z.agent.SocketPath)))
	if err != nil {
		t.Fatalf("workload of %s: %v", z.name, err)
	}
	return source
}

// handshake runs one mTLS handshake over loopback between a workload of
// the server's zone and one of the client's zone, each authorizing the
// other's SPIFFE ID and trusting only the bundles its agent gave it.
func handshake(server, client *workloadapi.X509Source) error {
	if server == nil || client == nil {
		// An earlier step failed before both workloads had a source.
		return errors.New("a workload has no X509Source")
	}
	serverSVID, err := server.GetX509SVID()
	if err != nil {
		return err
	}
	clientSVID, err := client.GetX509SVID()
	if err != nil {
		return err
	}
	listener, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.MTLSServerConfig(server, server, tlsconfig.AuthorizeID(clientSVID.ID)))
	if err != nil {
		return err
	}
	defer listener.Close()
	accepted := make(chan error, 1)
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		accepted <- conn.(*tls.Conn).Handshake()
	}()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", listener.Addr().String(),
		tlsconfig.MTLSClientConfig(client, client, tlsconfig.AuthorizeID(serverSVID.ID)))
	if err != nil {
		return fmt.Errorf("client: %w (server: %v)", err, <-accepted)
	}
	defer conn.Close()
	if err := <-accepted; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// fingerprintsOf returns the sorted SHA-256 fingerprints of certificates.
func fingerprintsOf(certificates []*x509.Certificate) []string {
	var fingerprints []string
	for _, certificate := range certificates {
		fingerprints = append(fingerprints, bundle.Fingerprint(certificate))
	}
	slices.Sort(fingerprints)
	return fingerprints
}

// waitForHandshakes waits until a workload of every zone completes mTLS
// with a workload of every peer zone.
func waitForHandshakes(t *testing.T, sources map[string]*workloadapi.X509Source, links map[string][]string) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		var failures []string
		for server, peers := range links {
			for _, client := range peers {
				if err := handshake(sources[server], sources[client]); err != nil {
					failures = append(failures, fmt.Sprintf("%s<-%s: %v", server, client, err))
				}
			}
		}
		if len(failures) == 0 {
			return
		}
		if deadline() {
			t.Fatalf("cross-zone mTLS fails: %v", failures)
		}
	}
}

// ownFingerprints reads the X.509 authorities of a SPIRE server's own bundle
// with `spire-server bundle show`.
func (z *spireZone) ownFingerprints(t *testing.T) []string {
	t.Helper()
	fingerprints, err := z.server.OwnX509Fingerprints(testCtx)
	if err != nil {
		t.Fatal(err)
	}
	return fingerprints
}

// heldBundles reads the federated bundles a SPIRE server holds with
// `spire-server bundle list`.
func (z *spireZone) heldBundles(t *testing.T) map[string]spireaccess.HeldBundle {
	t.Helper()
	out, err := z.server.CLI(testCtx, "bundle", "list", "-output", "json")
	if err != nil {
		t.Fatal(err)
	}
	held, err := spireaccess.ParseBundleList(out)
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// spireProblem says how the SPIRE servers differ from links (zone ->
// trusted zones), judged by the servers themselves: each holds exactly the
// current bundle of every peer it trusts, or "".
func spireProblem(t *testing.T, zones map[string]*spireZone, links map[string][]string) string {
	t.Helper()
	for name, peers := range links {
		held := zones[name].heldBundles(t)
		var got, want []string
		for trustDomain := range held {
			got = append(got, trustDomain)
		}
		for _, peer := range peers {
			want = append(want, zones[peer].server.TrustDomain)
			if current := zones[peer].ownFingerprints(t); !slices.Equal(held[zones[peer].server.TrustDomain].X509Fingerprints, current) {
				return fmt.Sprintf("the SPIRE server of %s holds %d authorities of %s, not its current %d", name,
					len(held[zones[peer].server.TrustDomain].X509Fingerprints), peer, len(current))
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Sprintf("the SPIRE server of %s holds bundles of %v, want %v", name, got, want)
		}
		if relationships := zones[name].relationships(t); !slices.Equal(relationships, want) {
			return fmt.Sprintf("the SPIRE server of %s has federation relationships with %v, want %v", name, relationships, want)
		}
	}
	return ""
}

// relationships lists, sorted, the trust domains a SPIRE server has a
// federation relationship with (`spire-server federation list`).
func (z *spireZone) relationships(t *testing.T) []string {
	t.Helper()
	out, err := z.server.CLI(testCtx, "federation", "list", "-output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var listed struct {
		FederationRelationships []struct {
			TrustDomain string `json:"trust_domain"`
		} `json:"federation_relationships"`
	}
	if err := json.Unmarshal(out, &listed); err != nil {
		t.Fatalf("reading federation list output: %v", err)
	}
	var trustDomains []string
	for _, relationship := range listed.FederationRelationships {
		trustDomains = append(trustDomains, relationship.TrustDomain)
	}
	slices.Sort(trustDomains)
	return trustDomains
}

func waitForSpire(t *testing.T, zones map[string]*spireZone, links map[string][]string, seconds int) time.Duration {
	t.Helper()
	started := time.Now()
	deadline := testDeadline(seconds)
	for {
		problem := spireProblem(t, zones, links)
		if problem == "" {
			return time.Since(started)
		}
		if deadline() {
			t.Fatalf("SPIRE servers do not hold the expected bundles after %ds: %s", seconds, problem)
		}
	}
}

// TestFederationWithSPIRE federates three zones, each with a real SPIRE
// server and spire-controller-manager, and judges convergence, rotation and
// an outage by what the SPIRE servers hold.
func TestFederationWithSPIRE(t *testing.T) {
	a := startSpireZone(t, "spire-a", "alpha")
	b := startSpireZone(t, "spire-b", "beta")
	c := startSpireZone(t, "spire-c", "gamma")
	zones := map[string]*spireZone{a.name: a, b.name: b, c.name: c}
	pairOfTwo := map[string][]string{a.name: {b.name}, b.name: {a.name}, c.name: nil}
	fullMesh := map[string][]string{a.name: {b.name, c.name}, b.name: {a.name, c.name}, c.name: {a.name, b.name}}

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "spire"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{
				Name:             "workloads",
				SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
			}, {
				// This test process, attested by each zone's agent.
				Name:             "process",
				SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/process",
				Static:           labStatic(),
			}},
		},
	}
	createMesh(t, mesh)

	sources := map[string]*workloadapi.X509Source{}
	t.Run("two zones: each SPIRE server holds the other's current bundle, workloads complete mTLS", func(t *testing.T) {
		waitForMeshCondition(t, "spire", spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "All 2 pairs are converged")
		waitForSpire(t, zones, pairOfTwo, 10)
		sources[a.name], sources[b.name] = a.workload(t), b.workload(t)
		waitForHandshakes(t, sources, map[string][]string{a.name: {b.name}, b.name: {a.name}})
	})

	t.Run("a workload of a zone outside the mesh cannot complete mTLS", func(t *testing.T) {
		// An identity for this process in spire-c, made by hand: c is not
		// a member, so nobody trusts it and it trusts nobody.
		outsider := &spirev1alpha1.ClusterStaticEntry{
			ObjectMeta: metav1.ObjectMeta{Name: "outsider"},
			Spec: spirev1alpha1.ClusterStaticEntrySpec{
				SPIFFEID:  "spiffe://" + c.server.TrustDomain + "/outsider",
				ParentID:  "spiffe://" + c.server.TrustDomain + "/agent/lab",
				Selectors: []string{fmt.Sprintf("unix:uid:%d", os.Getuid())},
				ClassName: "spire-" + c.name + "-spire",
			},
		}
		gamma := env.Zones["gamma"]
		if err := gamma.Client.Create(testCtx, outsider); err != nil {
			t.Fatal(err)
		}
		if sources[a.name] == nil {
			t.Fatalf("no workload of %s: an earlier step failed", a.name)
		}
		source := c.workload(t)
		for _, pair := range [][2]*workloadapi.X509Source{{sources[a.name], source}, {source, sources[a.name]}} {
			if err := handshake(pair[0], pair[1]); err == nil {
				t.Error("mTLS with a zone outside the mesh succeeded")
			}
		}
		_ = source.Close()
		if err := gamma.Client.Delete(testCtx, outsider); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a third zone joins a running mesh with no manual step", func(t *testing.T) {
		started := time.Now()
		updateMeshNamed(t, "spire", func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{a.name, b.name, c.name} })
		got := waitForMeshCondition(t, "spire", spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "All 6 pairs are converged")
		t.Logf("%s joined: every pair Converged in SPIRE after %s", c.name, time.Since(started).Round(10*time.Millisecond))
		for _, pair := range got.Status.Pairs {
			if pair.State != spirefedv1alpha1.PairConverged || pair.Reason != spirefedv1alpha1.ReasonBundleHeld {
				t.Errorf("pair %+v", pair)
			}
		}
		waitForSpire(t, zones, fullMesh, 10)
		waitForMeshCondition(t, "spire", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
	})

	for _, z := range []*spireZone{a, b, c} {
		if sources[z.name] == nil {
			sources[z.name] = z.workload(t)
		}
		t.Cleanup(func() { _ = sources[z.name].Close() })
	}
	t.Run("workloads of every zone complete mTLS with workloads of every peer", func(t *testing.T) {
		waitForHandshakes(t, sources, fullMesh)
	})

	t.Run("steady state makes no write and no refresh", func(t *testing.T) {
		// A converged three-zone mesh, for two minutes: endpoints fetched
		// every second or two, meshes resynced every 5 s, SPIRE read on
		// every pass. Nothing the operator owns or reports on changes.
		writes, refreshes := zoneWrites(t), spireRefreshes(t)
		versions := reportedVersions(t, "spire", a, b, c)
		// Events reach the API server asynchronously, possibly retried
		// after a while: what counts is when the operator recorded them.
		started := time.Now()
		time.Sleep(2 * time.Minute)
		if recorded := eventsRecordedSince(t, started, "spire", a.name, b.name, c.name); len(recorded) > 0 {
			t.Errorf("%d Events in steady state: %s", len(recorded), strings.Join(recorded, "; "))
		}
		if after := reportedVersions(t, "spire", a, b, c); !maps.Equal(after, versions) {
			for name, version := range after {
				if versions[name] != version {
					t.Errorf("%s was written in steady state (resourceVersion %s -> %s)", name, versions[name], version)
				}
			}
		}
		if got := zoneWrites(t) - writes; got != 0 {
			t.Errorf("%d writes in steady state", got)
		}
		if got := spireRefreshes(t) - refreshes; got != 0 {
			t.Errorf("%d SPIRE refreshes in steady state", got)
		}
	})

	t.Run("a CA rotation reaches every peer's SPIRE server within seconds, with no failed handshake", func(t *testing.T) {
		// Handshakes go on across zones during the rotation: none may fail.
		stop := make(chan struct{})
		failed := make(chan []string, 1)
		go func() {
			var failures []string
			for {
				select {
				case <-stop:
					failed <- failures
					return
				default:
				}
				for server, peers := range fullMesh {
					for _, client := range peers {
						if err := handshake(sources[server], sources[client]); err != nil {
							failures = append(failures, fmt.Sprintf("%s<-%s: %v", server, client, err))
						}
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		defer func() {
			close(stop)
			if failures := <-failed; len(failures) > 0 {
				t.Errorf("%d handshakes failed during the rotation, e.g. %s", len(failures), failures[0])
			}
		}()
		before := c.ownFingerprints(t)
		if _, err := c.server.CLI(testCtx, "localauthority", "x509", "prepare"); err != nil {
			t.Fatal(err)
		}
		if after := c.ownFingerprints(t); len(after) != len(before)+1 {
			t.Fatalf("prepare did not add an authority: %d -> %d", len(before), len(after))
		}
		elapsed := waitForSpire(t, zones, fullMesh, 30)
		t.Logf("the prepared authority of %s reached the SPIRE servers of both peers in %s", c.name, elapsed.Round(10*time.Millisecond))
		waitForMeshCondition(t, "spire", spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")

		// SPIRE activates a prepared authority long after it published it
		// (a sixth of the CA's lifetime before expiry): by then the peers'
		// agents have passed it to their workloads. Wait for that here,
		// where time is compressed.
		current := c.ownFingerprints(t)
		trustDomain := spiffeid.RequireTrustDomainFromString(c.server.TrustDomain)
		deadline := testDeadline(60)
		for _, peer := range []string{a.name, b.name} {
			for {
				held, err := sources[peer].GetX509BundleForTrustDomain(trustDomain)
				if err == nil && slices.Equal(fingerprintsOf(held.X509Authorities()), current) {
					break
				}
				if deadline() {
					t.Fatalf("the workload of %s did not get the new authority of %s", peer, c.name)
				}
			}
		}

		// Activate the new authority and taint the old one: the agent of c
		// then issues SVIDs from the new CA, which the peers already trust.
		authorities := func() (active, old string) {
			out, err := c.server.CLI(testCtx, "localauthority", "x509", "show", "-output", "json")
			if err != nil {
				t.Fatal(err)
			}
			var shown struct {
				Active struct {
					AuthorityID string `json:"authority_id"`
				} `json:"active"`
				Prepared struct {
					AuthorityID string `json:"authority_id"`
				} `json:"prepared"`
				Old struct {
					AuthorityID string `json:"authority_id"`
				} `json:"old"`
			}
			if err := json.Unmarshal(out, &shown); err != nil {
				t.Fatal(err)
			}
			if shown.Prepared.AuthorityID != "" {
				if _, err := c.server.CLI(testCtx, "localauthority", "x509", "activate", "-authorityID", shown.Prepared.AuthorityID); err != nil {
					t.Fatal(err)
				}
				return shown.Prepared.AuthorityID, shown.Active.AuthorityID
			}
			return shown.Active.AuthorityID, shown.Old.AuthorityID
		}
		active, old := authorities()
		if _, err := c.server.CLI(testCtx, "localauthority", "x509", "taint", "-authorityID", old); err != nil {
			t.Fatal(err)
		}
		deadline = testDeadline(60)
		for {
			svid, err := sources[c.name].GetX509SVID()
			if err == nil && strings.EqualFold(hex.EncodeToString(svid.Certificates[0].AuthorityKeyId), active) {
				break
			}
			if deadline() {
				t.Fatalf("the workload of %s has no SVID from the new authority %s", c.name, active)
			}
		}
		waitForHandshakes(t, sources, fullMesh)
	})

	t.Run("a stopped SPIRE server: its pairs say so, the others stay converged, nothing is deleted", func(t *testing.T) {
		// Let the rotation settle first: SPIRE may still publish a change
		// of its bundle (the tainted authority), which peers then get.
		waitForMeshCondition(t, "spire", spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		inA := namesOnly(federatedTrustDomainsIn(t, a.name, "spire"))
		if err := c.server.Stop(); err != nil {
			t.Fatal(err)
		}
		restarted := false
		defer func() {
			if !restarted {
				_ = c.server.Start(testCtx)
			}
		}()
		got := waitForPairReason(t, "spire", c.name, a.name, spirefedv1alpha1.ReasonSpireUnreachable)
		waitForPair(t, "spire", a.name, c.name, spirefedv1alpha1.PairStale)
		got = waitForPair(t, "spire", b.name, c.name, spirefedv1alpha1.PairStale)
		for _, pair := range got.Status.Pairs {
			if pair.From != c.name && pair.To != c.name && pair.State != spirefedv1alpha1.PairConverged {
				t.Errorf("pair %s->%s is %s (%s) while only %s's SPIRE is down", pair.From, pair.To, pair.State, pair.Message, c.name)
			}
		}
		if after := namesOnly(federatedTrustDomainsIn(t, a.name, "spire")); !slices.Equal(after, inA) {
			t.Errorf("zone %s lost ClusterFederatedTrustDomains: %v -> %v", a.name, inA, after)
		}
		if err := c.server.Start(testCtx); err != nil {
			t.Fatal(err)
		}
		restarted = true
		waitForMeshCondition(t, "spire", spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
		waitForSpire(t, zones, fullMesh, 30)
	})
}

// deleteZone deletes a zone and waits until its finalizer has run.
func deleteZone(t testing.TB, name string) {
	t.Helper()
	zone := &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Management.Client.Delete(testCtx, zone); client.IgnoreNotFound(err) != nil {
		t.Error(err)
		return
	}
	deadline := testDeadline(30)
	for {
		err := env.Management.Client.Get(testCtx, client.ObjectKeyFromObject(zone), zone)
		if apierrors.IsNotFound(err) {
			return
		}
		if deadline() {
			t.Errorf("zone %s not deleted: %v", name, err)
			return
		}
	}
}

// waitForPairReason waits until a pair of a mesh has a reason.
func waitForPairReason(t *testing.T, meshName, from, to, reason string) *spirefedv1alpha1.FederationMesh {
	t.Helper()
	return waitForPairWhere(t, meshName, from, to, "reason "+reason, func(pair spirefedv1alpha1.PairStatus) bool { return pair.Reason == reason })
}

// reportedVersions maps every object the operator owns or reports on for a
// mesh (the mesh, its zones, and what it wrote in each zone's cluster) to
// its resourceVersion.
func reportedVersions(t *testing.T, meshName string, zones ...*spireZone) map[string]string {
	t.Helper()
	versions := map[string]string{}
	mesh := getMesh(t, meshName)
	versions["FederationMesh/"+meshName] = mesh.ResourceVersion
	for _, z := range zones {
		name, cluster := z.name, z.cluster
		versions["ZoneTrustDomain/"+name] = getZone(t, name).ResourceVersion
		owned := client.MatchingLabels{plan.LabelMesh: meshName, plan.LabelZone: name}
		for _, list := range []client.ObjectList{&spirev1alpha1.ClusterFederatedTrustDomainList{}, &spirev1alpha1.ClusterSPIFFEIDList{}, &spirev1alpha1.ClusterStaticEntryList{}} {
			if err := cluster.Client.List(testCtx, list, owned); err != nil {
				t.Fatal(err)
			}
			if err := meta.EachListItem(list, func(obj runtime.Object) error {
				object := obj.(client.Object)
				versions[fmt.Sprintf("%T/%s", object, object.GetName())] = object.GetResourceVersion()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return versions
}

// eventsRecordedSince describes the Events about the named objects that
// the operator recorded (first, or again in their series) after start.
func eventsRecordedSince(t *testing.T, start time.Time, names ...string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := env.Management.Client.List(testCtx, &list); err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, event := range list.Items {
		if !slices.Contains(names, event.Regarding.Name) {
			continue
		}
		if event.EventTime.After(start) || event.Series != nil && event.Series.LastObservedTime.After(start) {
			recorded = append(recorded, fmt.Sprintf("%s %s/%s %s: %s", event.Type, event.Regarding.Kind, event.Regarding.Name, event.Reason, event.Note))
		}
	}
	return recorded
}

// namesOnly drops the "@resourceVersion" of federatedTrustDomainsIn's
// entries: what exists, whether or not it was updated.
func namesOnly(entries []string) []string {
	names := make([]string, 0, len(entries))
	for _, entry := range entries {
		name, _, _ := strings.Cut(entry, "@")
		names = append(names, name)
	}
	return names
}

// labStatic registers this test process, attested through each zone's
// agent by the unix workload attestor, as a static identity of a mesh.
func labStatic() *spirefedv1alpha1.StaticEntryTemplate {
	return &spirefedv1alpha1.StaticEntryTemplate{
		ParentIDTemplate: "spiffe://{{ .TrustDomain }}/agent/lab",
		Selectors:        []string{fmt.Sprintf("unix:uid:%d", os.Getuid())},
	}
}

// createMesh creates mesh in the management cluster; at the end of the
// test it is deleted and its removal awaited.
func createMesh(t *testing.T, mesh *spirefedv1alpha1.FederationMesh) {
	t.Helper()
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitForDeletion(t, mesh) })
}
