package apply

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// bundleA is a SPIFFE bundle of b.example with one self-signed CA.
var bundleA = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	template := &x509.Certificate{SerialNumber: big.NewInt(1), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	document, err := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("b.example"), []*x509.Certificate{cert}).Marshal()
	if err != nil {
		panic(err)
	}
	return string(document)
}()

func owned(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Labels: map[string]string{plan.LabelManagedBy: plan.ManagedBy, plan.LabelMesh: "m", plan.LabelZone: "a"}}
}

func cftd(name, trustDomain, bundle string, meta metav1.ObjectMeta) *spirev1alpha1.ClusterFederatedTrustDomain {
	meta.Name = name
	return &spirev1alpha1.ClusterFederatedTrustDomain{ObjectMeta: meta, Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
		TrustDomain: trustDomain, BundleEndpointURL: "https://" + trustDomain, TrustDomainBundle: bundle, ClassName: "c",
	}}
}

func spiffeID(name string, federatesWith ...string) *spirev1alpha1.ClusterSPIFFEID {
	return &spirev1alpha1.ClusterSPIFFEID{ObjectMeta: owned(name), Spec: spirev1alpha1.ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "t", FederatesWith: federatesWith}}
}

func names(objects []client.Object) []string {
	out := []string{}
	for _, obj := range objects {
		out = append(out, obj.GetName())
	}
	return out
}

func TestComputeDiff(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		live          Live
		plan          plan.ZonePlan
		wantWrites    []string
		wantDeletes   []string
		wantConflicts []string
		wantCurrent   []string
		wantDeferred  int
	}{
		{
			name:        "nothing live: everything written, in order",
			plan:        plan.ZonePlan{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}, FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			wantWrites:  []string{"id", "f-b"},
			wantDeletes: []string{}, wantCurrent: []string{},
		},
		{
			name:       "steady: nothing written",
			live:       Live{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}, FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			plan:       plan.ZonePlan{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}, FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			wantWrites: []string{}, wantDeletes: []string{}, wantCurrent: []string{"b.example"},
		},
		{
			name:       "bundle differing only in whitespace is current",
			live:       Live{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", " "+bundleA+"\n", owned(""))}},
			plan:       plan.ZonePlan{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			wantWrites: []string{}, wantDeletes: []string{}, wantCurrent: []string{"b.example"},
		},
		{
			name:       "changed federatesWith is written",
			live:       Live{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}},
			plan:       plan.ZonePlan{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id", "b.example")}},
			wantWrites: []string{"id"}, wantDeletes: []string{}, wantCurrent: []string{},
		},
		{
			name:       "a CFTD the mesh does not own for the same peer is a conflict",
			live:       Live{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("hand-made", "b.example", bundleA, metav1.ObjectMeta{})}},
			plan:       plan.ZonePlan{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			wantWrites: []string{}, wantDeletes: []string{}, wantCurrent: []string{},
			wantConflicts: []string{"b.example"},
		},
		{
			name:       "departed peer: out of federatesWith first, CFTD deferred",
			live:       Live{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id", "b.example")}, FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			plan:       plan.ZonePlan{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}},
			wantWrites: []string{"id"}, wantDeletes: []string{}, wantCurrent: []string{},
			wantDeferred: 1,
		},
		{
			name:       "departed peer, no longer federated: CFTD deleted; unowned one kept",
			live:       Live{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}, FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned("")), cftd("other", "c.example", bundleA, metav1.ObjectMeta{})}},
			plan:       plan.ZonePlan{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}},
			wantWrites: []string{}, wantDeletes: []string{"f-b"}, wantCurrent: []string{},
		},
		{
			name:       "gated peer kept",
			live:       Live{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			plan:       plan.ZonePlan{KeepFederatedTrustDomains: []string{"f-b"}},
			wantWrites: []string{}, wantDeletes: []string{}, wantCurrent: []string{},
		},
		{
			name:       "identity removed: deleted before CFTDs",
			live:       Live{SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("old")}, FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}},
			plan:       plan.ZonePlan{},
			wantWrites: []string{}, wantDeletes: []string{"old", "f-b"}, wantCurrent: []string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			live := tc.live
			live.mesh, live.zone = "m", "a"
			diff := ComputeDiff(&live, &tc.plan)
			if got := names(diff.Writes); !slices.Equal(got, tc.wantWrites) {
				t.Errorf("writes = %v, want %v", got, tc.wantWrites)
			}
			if got := names(diff.Deletes); !slices.Equal(got, tc.wantDeletes) {
				t.Errorf("deletes = %v, want %v", got, tc.wantDeletes)
			}
			conflicts := []string{}
			for peer := range diff.Conflicts {
				conflicts = append(conflicts, peer)
			}
			if tc.wantConflicts == nil {
				tc.wantConflicts = []string{}
			}
			if !slices.Equal(conflicts, tc.wantConflicts) {
				t.Errorf("conflicts = %v, want %v", conflicts, tc.wantConflicts)
			}
			current := []string{}
			for peer := range diff.Current {
				current = append(current, peer)
			}
			slices.Sort(current)
			if !slices.Equal(current, tc.wantCurrent) {
				t.Errorf("current = %v, want %v", current, tc.wantCurrent)
			}
			if diff.Deferred != tc.wantDeferred {
				t.Errorf("deferred = %d, want %d", diff.Deferred, tc.wantDeferred)
			}
		})
	}
}

func TestNeedsForeign(t *testing.T) {
	t.Parallel()
	desired := plan.ZonePlan{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, owned(""))}}
	otherMesh := owned("")
	otherMesh.Labels = map[string]string{plan.LabelManagedBy: plan.ManagedBy, plan.LabelMesh: "other", plan.LabelZone: "a"}
	cases := []struct {
		name string
		live Live
		want bool
	}{
		{"a creation reads the cluster's other objects", Live{}, true},
		{"an update of an owned object does not", Live{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", "", owned(""))}}, false},
		{"an object of another mesh is not owned", Live{FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{cftd("f-b", "b.example", bundleA, otherMesh)}}, true},
		{"read once per pass", Live{ForeignRead: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			live := tc.live
			live.mesh, live.zone = "m", "a"
			if got := NeedsForeign(&live, &desired); got != tc.want {
				t.Errorf("NeedsForeign = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRecordWritten(t *testing.T) {
	t.Parallel()
	live := Live{mesh: "m", zone: "a", SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{spiffeID("id")}}
	written := []client.Object{cftd("f-b", "b.example", bundleA, owned("")), spiffeID("id", "b.example"), cftd("f-c", "c.example", bundleA, owned(""))}
	live.record(written, true)
	if got := live.PeersWithBundle(); len(got) != 1 || !got["b.example"] {
		t.Errorf("peers with bundle = %v, want b.example only (the failed write is not recorded)", got)
	}
	if got := live.FederatedWith(); !got["b.example"] || len(live.SPIFFEIDs) != 1 {
		t.Errorf("federatesWith = %v over %d identities", got, len(live.SPIFFEIDs))
	}
}
