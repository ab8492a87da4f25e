package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func zone(name string, withBundle bool) Zone {
	z := Zone{
		Name:              name,
		TrustDomain:       name + ".example",
		ClassName:         "spire-server-spire",
		BundleEndpointURL: "https://" + name + ".example:8443",
		Profile:           "https_spiffe",
		EndpointSPIFFEID:  "spiffe://" + name + ".example/spire/server",
	}
	if withBundle {
		z.Bundle = `{"keys":[],"zone":"` + name + `"}`
	}
	return z
}

// observedAll says every zone's SPIRE holds every other zone's bundle.
func observedAll(zones ...Zone) map[string]Observed {
	observed := map[string]Observed{}
	for _, z := range zones {
		peers := map[string]bool{}
		for _, p := range zones {
			peers[p.TrustDomain] = true
		}
		observed[z.Name] = Observed{PeersWithBundle: peers}
	}
	return observed
}

var identity = spirefedv1alpha1.IdentityTemplate{
	Name:             "workloads",
	SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}",
	PodSelector:      &metav1.LabelSelector{MatchLabels: map[string]string{"federated": "true"}},
	TTL:              &metav1.Duration{Duration: 3600e9},
}

// summary renders a plan compactly: zone -> peers of its CFTDs, and
// federatesWith of its ClusterSPIFFEIDs.
func summary(p Plan) map[string]string {
	out := map[string]string{}
	for name, zonePlan := range p.Zones {
		var peers, federates []string
		for _, cftd := range zonePlan.FederatedTrustDomains {
			peers = append(peers, cftd.Spec.TrustDomain)
		}
		for _, id := range zonePlan.SPIFFEIDs {
			federates = append(federates, fmt.Sprint(id.Spec.FederatesWith))
		}
		out[name] = fmt.Sprintf("cftd=%v csid=%v", peers, federates)
		if len(zonePlan.KeepFederatedTrustDomains) > 0 {
			out[name] += fmt.Sprintf(" keep=%v", zonePlan.KeepFederatedTrustDomains)
		}
	}
	return out
}

func TestCompute(t *testing.T) {
	t.Parallel()
	a, b, c, hub := zone("a", true), zone("b", true), zone("c", true), zone("hub", true)
	noBundle := zone("c", false)
	cases := []struct {
		name      string
		input     Input
		wantLinks []Link
		wantGated []Link
		want      map[string]string
	}{
		{
			name:      "full mesh of three",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b, c}, Observed: observedAll(a, b, c)},
			wantLinks: []Link{{"a", "b"}, {"a", "c"}, {"b", "a"}, {"b", "c"}, {"c", "a"}, {"c", "b"}},
			want: map[string]string{
				"a": "cftd=[b.example c.example] csid=[[b.example c.example]]",
				"b": "cftd=[a.example c.example] csid=[[a.example c.example]]",
				"c": "cftd=[a.example b.example] csid=[[a.example b.example]]",
			},
		},
		{
			name:      "hub and spoke: spokes trust only the hub",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: "hub"}, Zones: []Zone{a, b, hub}, Observed: observedAll(a, b, hub)},
			wantLinks: []Link{{"a", "hub"}, {"b", "hub"}, {"hub", "a"}, {"hub", "b"}},
			want: map[string]string{
				"a":   "cftd=[hub.example] csid=[]",
				"b":   "cftd=[hub.example] csid=[]",
				"hub": "cftd=[a.example b.example] csid=[]",
			},
		},
		{
			name:      "hub down (not a member): nothing",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: "hub"}, Zones: []Zone{a, b}},
			wantLinks: nil,
			want:      map[string]string{"a": "cftd=[] csid=[]", "b": "cftd=[] csid=[]"},
		},
		{
			name: "explicit one-way link",
			input: Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyExplicit, Links: []spirefedv1alpha1.Link{{From: "a", To: "b"}, {From: "a", To: "missing"}}},
				Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b}, Observed: observedAll(a, b)},
			wantLinks: []Link{{"a", "b"}},
			want:      map[string]string{"a": "cftd=[b.example] csid=[[b.example]]", "b": "cftd=[] csid=[[]]"},
		},
		{
			name:      "peer without a bundle is gated everywhere",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b, noBundle}, Observed: observedAll(a, b)},
			wantLinks: []Link{{"a", "b"}, {"a", "c"}, {"b", "a"}, {"b", "c"}, {"c", "a"}, {"c", "b"}},
			wantGated: []Link{{"a", "c"}, {"b", "c"}},
			want: map[string]string{
				"a": "cftd=[b.example] csid=[[b.example]]",
				"b": "cftd=[a.example] csid=[[a.example]]",
				"c": "cftd=[a.example b.example] csid=[[]]",
			},
		},
		{
			name:      "a peer whose bundle the operator lost is kept where it is held, not pruned",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b, noBundle}, Observed: observedAll(a, b, noBundle)},
			wantLinks: []Link{{"a", "b"}, {"a", "c"}, {"b", "a"}, {"b", "c"}, {"c", "a"}, {"c", "b"}},
			wantGated: []Link{{"a", "c"}, {"b", "c"}},
			want: map[string]string{
				"a": "cftd=[b.example] csid=[[b.example c.example]] keep=[spirefed.a.c.example]",
				"b": "cftd=[a.example] csid=[[a.example c.example]] keep=[spirefed.b.c.example]",
				"c": "cftd=[a.example b.example] csid=[[a.example b.example]]",
			},
		},
		{
			name:      "federatesWith waits until the zone holds the peer's bundle",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b, c}, Observed: map[string]Observed{"a": {PeersWithBundle: map[string]bool{"c.example": true}}}},
			wantLinks: []Link{{"a", "b"}, {"a", "c"}, {"b", "a"}, {"b", "c"}, {"c", "a"}, {"c", "b"}},
			want: map[string]string{
				"a": "cftd=[b.example c.example] csid=[[c.example]]",
				"b": "cftd=[a.example c.example] csid=[[]]",
				"c": "cftd=[a.example b.example] csid=[[]]",
			},
		},
		{
			name:      "zone removed: its peers stop trusting it",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Zones: []Zone{a, b}, Observed: observedAll(a, b, c)},
			wantLinks: []Link{{"a", "b"}, {"b", "a"}},
			want:      map[string]string{"a": "cftd=[b.example] csid=[]", "b": "cftd=[a.example] csid=[]"},
		},
		{
			name:      "single zone",
			input:     Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Zones: []Zone{a}},
			wantLinks: []Link{},
			want:      map[string]string{"a": "cftd=[] csid=[]"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := Compute(tc.input)
			if len(got.Links) != 0 || len(tc.wantLinks) != 0 {
				if !reflect.DeepEqual(got.Links, tc.wantLinks) {
					t.Errorf("links = %v, want %v", got.Links, tc.wantLinks)
				}
			}
			if !reflect.DeepEqual(got.Gated, tc.wantGated) {
				t.Errorf("gated = %v, want %v", got.Gated, tc.wantGated)
			}
			if s := summary(got); !reflect.DeepEqual(s, tc.want) {
				t.Errorf("plan = %v, want %v", s, tc.want)
			}
		})
	}
}

func TestComputeObjects(t *testing.T) {
	t.Parallel()
	a, b := zone("a", true), zone("b", true)
	b.Profile, b.EndpointSPIFFEID = "https_web", ""
	got := Compute(Input{Mesh: "trading", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b}, Observed: observedAll(a, b)})
	cftd := got.Zones["a"].FederatedTrustDomains[0]
	if cftd.Name != "spirefed.a.b.example" || cftd.Spec.BundleEndpointURL != b.BundleEndpointURL || cftd.Spec.BundleEndpointProfile.Type != "https_web" ||
		cftd.Spec.BundleEndpointProfile.EndpointSPIFFEID != "" || cftd.Spec.TrustDomainBundle != b.Bundle || cftd.Spec.ClassName != a.ClassName {
		t.Errorf("CFTD in a for b = %+v", cftd)
	}
	wantLabels := map[string]string{LabelManagedBy: ManagedBy, LabelMesh: "trading", LabelZone: "a", LabelPeer: "b"}
	if !reflect.DeepEqual(cftd.Labels, wantLabels) {
		t.Errorf("labels = %v", cftd.Labels)
	}
	if cftd.APIVersion != "spire.spiffe.io/v1alpha1" || cftd.Kind != "ClusterFederatedTrustDomain" {
		t.Errorf("type meta = %v", cftd.TypeMeta)
	}
	spiffeCFTD := got.Zones["b"].FederatedTrustDomains[0]
	if spiffeCFTD.Spec.BundleEndpointProfile.EndpointSPIFFEID != a.EndpointSPIFFEID {
		t.Errorf("https_spiffe endpoint ID = %q", spiffeCFTD.Spec.BundleEndpointProfile.EndpointSPIFFEID)
	}
	csid := got.Zones["a"].SPIFFEIDs[0]
	if csid.Name != "spirefed.trading.a.workloads" || csid.Spec.ClassName != a.ClassName || csid.Spec.TTL.Duration != identity.TTL.Duration ||
		csid.Spec.SPIFFEIDTemplate != identity.SPIFFEIDTemplate || csid.Spec.PodSelector != identity.PodSelector {
		t.Errorf("ClusterSPIFFEID = %+v", csid)
	}
}

func TestComputeIsDeterministic(t *testing.T) {
	t.Parallel()
	zones := make([]Zone, 20)
	for i := range zones {
		zones[i] = zone(fmt.Sprintf("z%02d", i), i%3 != 0)
	}
	input := Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: zones, Observed: observedAll(zones...)}
	want := Compute(input)
	for range 10 {
		shuffled := slices.Clone(zones)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		input.Zones = shuffled
		if got := Compute(input); !reflect.DeepEqual(got, want) {
			t.Fatal("the plan depends on the order of zones")
		}
	}
}

func TestFederatedTrustDomainName(t *testing.T) {
	t.Parallel()
	for td, want := range map[string]string{
		"broker.example": "spirefed.zone1.broker.example",
		"default.zone1":  "spirefed.zone1.default.zone1",
	} {
		if got := FederatedTrustDomainName("zone1", td); got != want {
			t.Errorf("%s -> %s, want %s", td, got, want)
		}
	}
	odd := []string{"with_underscore", "with-underscore", "trailing-.dash", "a..b", strings.Repeat("long.", 60) + "x"}
	seen := map[string]string{}
	for _, td := range odd {
		name := FederatedTrustDomainName("zone1", td)
		if problems := validation.IsDNS1123Subdomain(name); len(problems) > 0 {
			t.Errorf("%s -> invalid name %s: %v", td, name, problems)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("%s and %s map to %s", td, other, name)
		}
		seen[name] = td
	}
}

// TestFederatedTrustDomainNameAtTheLimits checks the name against its
// definition with validation's regular expression, around the longest
// valid name and with odd labels in the zone or the trust domain.
func TestFederatedTrustDomainNameAtTheLimits(t *testing.T) {
	t.Parallel()
	zones := []string{"z", "zone-1", "a.b", "Z", "z-", "-z", "z_1", "z..1", "", strings.Repeat("z", 120)}
	var trustDomains []string
	for _, n := range []int{1, 100, 120, 121, 122, 123, 124, 125, 200, 243, 244, 245} {
		trustDomains = append(trustDomains, strings.Repeat("t", n), strings.Repeat("t", n-1)+".", strings.Repeat("t", n)+"_")
	}
	for _, zone := range zones {
		for _, trustDomain := range append(trustDomains, "", ".", "example.org", "a-.org", "ü.org") {
			want := "spirefed." + zone + "." + trustDomain
			if len(validation.IsDNS1123Subdomain(want)) > 0 {
				sum := sha256.Sum256([]byte(trustDomain))
				want = "spirefed." + zone + "." + hex.EncodeToString(sum[:8])
			}
			if got := FederatedTrustDomainName(zone, trustDomain); got != want {
				t.Errorf("FederatedTrustDomainName(%q, %q) = %q, want %q", zone, trustDomain, got, want)
			}
		}
	}
}

// BenchmarkCompute plans full meshes of 10, 100 and 1000 zones with one
// identity (n*(n-1) ClusterFederatedTrustDomains), and, with
// Input.Previous, of 200 zones (benchmarkComputeWithPrevious).
func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		zones := make([]Zone, n)
		for i := range zones {
			zones[i] = zone(fmt.Sprintf("z%04d", i), true)
		}
		input := Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: zones, Observed: observedAll(zones...)}
		b.Run(fmt.Sprintf("FullMesh/zones=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Compute(input)
			}
		})
		hub := input
		hub.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: zones[0].Name}
		b.Run(fmt.Sprintf("HubAndSpoke/zones=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Compute(hub)
			}
		})
	}
	benchmarkComputeWithPrevious(b, 200)
}

// benchmarkComputeWithPrevious plans a full mesh of n zones as a pass does
// in production: with Input.Previous set to the previous pass's plan.
// "steady" plans the same input again (every ClusterFederatedTrustDomain
// is reused); "rotated" plans it after one zone's bundle changed (the n-1
// objects trusting that zone are built again); "steady-shuffled" is
// "steady" with trust domains whose order is not that of the zones' names.
func benchmarkComputeWithPrevious(b *testing.B, n int) {
	zones := make([]Zone, n)
	for i := range zones {
		zones[i] = zone(fmt.Sprintf("z%04d", i), true)
	}
	input := Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: zones, Observed: observedAll(zones...)}
	rotated := input
	rotated.Zones = slices.Clone(zones)
	rotated.Zones[n/2].Bundle = strings.Replace(rotated.Zones[n/2].Bundle, "}", `,"spiffe_sequence":2}`, 1)
	shuffled := input
	shuffled.Zones = slices.Clone(zones)
	for i, j := range rand.New(rand.NewPCG(1, 2)).Perm(n) {
		shuffled.Zones[i].TrustDomain = zones[j].TrustDomain
	}
	shuffled.Observed = observedAll(shuffled.Zones...)
	for _, bench := range []struct {
		name           string
		previous, next Input
	}{
		{"steady", input, input},
		{"rotated", input, rotated},
		{"steady-shuffled", shuffled, shuffled},
	} {
		previous := Compute(bench.previous)
		next := bench.next
		next.Previous = &previous
		b.Run(fmt.Sprintf("FullMesh/zones=%d/previous=%s", n, bench.name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Compute(next)
			}
		})
	}
}

func TestComputeStaticAndZonedIdentities(t *testing.T) {
	t.Parallel()
	a, b := zone("a", true), zone("b", true)
	webapp := spirefedv1alpha1.IdentityTemplate{
		Name:             "webapp",
		SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/webapp",
		Zones:            []string{"a"},
		Static: &spirefedv1alpha1.StaticEntryTemplate{
			ParentIDTemplate: "spiffe://{{.TrustDomain}}/spire/agent/join_token/lab",
			Selectors:        []string{"unix:uid:1000"},
		},
		TTL: &metav1.Duration{Duration: time.Hour},
	}
	got := Compute(Input{Mesh: "m", Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		Identities: []spirefedv1alpha1.IdentityTemplate{webapp, identity}, Zones: []Zone{a, b}, Observed: observedAll(a, b)})
	inA, inB := got.Zones["a"], got.Zones["b"]
	if len(inA.StaticEntries) != 1 || len(inB.StaticEntries) != 0 || len(inA.SPIFFEIDs) != 1 || len(inB.SPIFFEIDs) != 1 {
		t.Fatalf("a: %d static, %d ids; b: %d static, %d ids", len(inA.StaticEntries), len(inA.SPIFFEIDs), len(inB.StaticEntries), len(inB.SPIFFEIDs))
	}
	entry := inA.StaticEntries[0]
	if entry.Name != "spirefed.m.a.webapp" || entry.Spec.SPIFFEID != "spiffe://a.example/webapp" || entry.Spec.ParentID != "spiffe://a.example/spire/agent/join_token/lab" ||
		!reflect.DeepEqual(entry.Spec.Selectors, []string{"unix:uid:1000"}) || !reflect.DeepEqual(entry.Spec.FederatesWith, []string{"b.example"}) ||
		entry.Spec.ClassName != a.ClassName || entry.Spec.X509SVIDTTL.Duration != time.Hour || entry.Labels[LabelZone] != "a" {
		t.Errorf("static entry = %+v", entry)
	}
}

func TestIsDNS1123Subdomain(t *testing.T) {
	names := []string{
		"", "a", "spirefed.z1.example.org", "spirefed.z1.Example.org", "spirefed.z1..org", "spirefed.z1.-a.org",
		"spirefed.z1.a-.org", "spirefed.z1.a_b.org", "spirefed.z1.a-b.org", ".a", "a.", "0.9", "spirefed.z1.a/b",
		strings.Repeat("a", 253), strings.Repeat("a", 254), strings.Repeat("a.", 126) + "a", "a..b", "ü.example",
	}
	for _, name := range names {
		want := len(validation.IsDNS1123Subdomain(name)) == 0
		if got := isDNS1123Subdomain(name); got != want {
			t.Errorf("isDNS1123Subdomain(%q) = %v, validation says %v", name, got, want)
		}
	}
}

// TestComputeReusesOnlyEqualObjects plans a mesh again with the first
// plan as Input.Previous after a change: the plan equals one made without
// Previous, and the objects of the pairs the change touches are new, the
// others reused.
func TestComputeReusesOnlyEqualObjects(t *testing.T) {
	t.Parallel()
	a, b, c, d := zone("a", true), zone("b", true), zone("c", true), zone("d", true)
	full := spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}
	first := Compute(Input{Mesh: "m", Topology: full, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: []Zone{a, b, c, d}, Observed: observedAll(a, b, c, d)})

	renamed := b
	renamed.TrustDomain = "b.elsewhere"
	otherClass := a
	otherClass.ClassName = "other"
	web := c
	web.Profile, web.EndpointSPIFFEID = "https_web", ""
	ab := zone("ab", true) // sorts between a and b
	noBundle := zone("b", false)
	// tamper replaces, in a copy of the first plan, a's object for b.
	tamper := func(change func(*spirev1alpha1.ClusterFederatedTrustDomain)) *Plan {
		previous := Plan{Links: first.Links, Zones: maps.Clone(first.Zones)}
		inA := *first.Zones["a"]
		inA.FederatedTrustDomains = slices.Clone(inA.FederatedTrustDomains)
		for i, object := range inA.FederatedTrustDomains {
			if object.Labels[LabelPeer] == "b" {
				inA.FederatedTrustDomains[i] = object.DeepCopy()
				change(inA.FederatedTrustDomains[i])
			}
		}
		previous.Zones["a"] = &inA
		return &previous
	}
	nothing := func(zone, peer string) bool { return false }
	for _, tc := range []struct {
		name     string
		mesh     string
		zones    []Zone
		previous *Plan
		// isNew tells the pairs whose object must be new.
		isNew func(zone, peer string) bool
	}{
		{name: "nothing changed", zones: []Zone{a, b, c, d}, isNew: nothing},
		{name: "a zone joined, sorting first", zones: []Zone{zone("0", true), a, b, c, d}, isNew: func(zone, peer string) bool { return zone == "0" || peer == "0" }},
		{name: "a zone joined, sorting between", zones: []Zone{a, ab, b, c, d}, isNew: func(zone, peer string) bool { return zone == "ab" || peer == "ab" }},
		{name: "a zone joined, sorting last", zones: []Zone{a, b, c, d, zone("e", true)}, isNew: func(zone, peer string) bool { return zone == "e" || peer == "e" }},
		{name: "a zone left", zones: []Zone{a, c, d}, isNew: nothing},
		{name: "a zone's bundle is unknown: its links are gated", zones: []Zone{a, noBundle, c, d}, isNew: nothing},
		{name: "a zone's trust domain renamed", zones: []Zone{a, renamed, c, d}, isNew: func(zone, peer string) bool { return peer == "b" }},
		{name: "a zone's className changed", zones: []Zone{otherClass, b, c, d}, isNew: func(zone, peer string) bool { return zone == "a" }},
		{name: "a zone's endpoint profile changed", zones: []Zone{a, b, web, d}, isNew: func(zone, peer string) bool { return peer == "c" }},
		{name: "another mesh", mesh: "other", zones: []Zone{a, b, c, d}, isNew: func(zone, peer string) bool { return true }},
		{
			name: "a previous object with one more label", zones: []Zone{a, b, c, d},
			previous: tamper(func(object *spirev1alpha1.ClusterFederatedTrustDomain) { object.Labels["extra"] = "x" }),
			isNew:    func(zone, peer string) bool { return zone == "a" && peer == "b" },
		},
		{
			name: "a previous object with another zone label", zones: []Zone{a, b, c, d},
			previous: tamper(func(object *spirev1alpha1.ClusterFederatedTrustDomain) { object.Labels[LabelZone] = "c" }),
			isNew:    func(zone, peer string) bool { return zone == "a" && peer == "b" },
		},
		{
			name: "a previous object without the managed-by label", zones: []Zone{a, b, c, d},
			previous: tamper(func(object *spirev1alpha1.ClusterFederatedTrustDomain) {
				delete(object.Labels, LabelManagedBy)
				object.Labels["other"] = ManagedBy
			}),
			isNew: func(zone, peer string) bool { return zone == "a" && peer == "b" },
		},
		{
			name: "a previous object with another name", zones: []Zone{a, b, c, d},
			previous: tamper(func(object *spirev1alpha1.ClusterFederatedTrustDomain) { object.Name += "x" }),
			isNew:    func(zone, peer string) bool { return zone == "a" && peer == "b" },
		},
		{
			name: "a previous object with another endpoint SPIFFE ID", zones: []Zone{a, b, c, d},
			previous: tamper(func(object *spirev1alpha1.ClusterFederatedTrustDomain) {
				object.Spec.BundleEndpointProfile.EndpointSPIFFEID = "spiffe://b.example/other"
			}),
			isNew: func(zone, peer string) bool { return zone == "a" && peer == "b" },
		},
		{
			name: "a previous object for another peer", zones: []Zone{a, b, c, d},
			previous: tamper(func(object *spirev1alpha1.ClusterFederatedTrustDomain) { object.Labels[LabelPeer] = "c" }),
			isNew:    func(zone, peer string) bool { return zone == "a" && peer == "b" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mesh, previous := cmp.Or(tc.mesh, "m"), cmp.Or(tc.previous, &first)
			now := Input{Mesh: mesh, Topology: full, Identities: []spirefedv1alpha1.IdentityTemplate{identity}, Zones: tc.zones, Observed: observedAll(a, b, c, d)}
			fresh := Compute(now)
			now.Previous = previous
			reused := Compute(now)
			if !reflect.DeepEqual(fresh, reused) {
				t.Fatalf("a plan with Previous differs from one without:\n%+v\n%+v", fresh, reused)
			}
			shared := previousObjects(previous)
			for name, zonePlan := range reused.Zones {
				for _, object := range zonePlan.FederatedTrustDomains {
					peer := object.Labels[LabelPeer]
					if shared[object] == tc.isNew(name, peer) {
						t.Errorf("zone %s, object %s (peer %s): reused %v", name, object.Name, peer, shared[object])
					}
				}
			}
		})
	}
}

// previousObjects is the set of a plan's ClusterFederatedTrustDomains.
func previousObjects(previous *Plan) map[*spirev1alpha1.ClusterFederatedTrustDomain]bool {
	objects := map[*spirev1alpha1.ClusterFederatedTrustDomain]bool{}
	for _, zonePlan := range previous.Zones {
		for _, object := range zonePlan.FederatedTrustDomains {
			objects[object] = true
		}
	}
	return objects
}

// TestComputeMatchesReference compares Compute with referenceCompute, the
// plain planner it replaced, on random small meshes: odd and shared trust
// domains, gated links, zones listed twice, previous plans of other
// inputs. They plan the same, and reuse the same objects of Previous
// (when no two zones share a trust domain: then the reference could miss
// an equal object).
func TestComputeMatchesReference(t *testing.T) {
	t.Parallel()
	random := rand.New(rand.NewPCG(7, 11))
	for i := range 3000 {
		in := randomInput(random)
		if random.IntN(4) > 0 {
			previousInput := randomInput(random)
			if random.IntN(2) == 0 {
				// Most like a pass: the same mesh a little changed.
				previousInput = in
				previousInput.Zones = slices.Clone(in.Zones)
				changed := &previousInput.Zones[random.IntN(len(in.Zones))]
				changed.Bundle += "-old"
			}
			previous := Compute(previousInput)
			in.Previous = &previous
		}
		got, want := Compute(in), referenceCompute(in)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: %+v\nplans\n%+v\nnot\n%+v", i, in, summary(got), summary(want))
		}
		if in.Previous == nil || sharedTrustDomains(in.Zones) {
			continue
		}
		for name, zonePlan := range got.Zones {
			for j, object := range zonePlan.FederatedTrustDomains {
				if wantObject := want.Zones[name].FederatedTrustDomains[j]; previousObjects(in.Previous)[wantObject] != (object == wantObject) {
					t.Fatalf("case %d: zone %s, object %s: reused %v, the reference %v", i, name, object.Name, object == wantObject, previousObjects(in.Previous)[wantObject])
				}
			}
		}
	}
}

func sharedTrustDomains(zones []Zone) bool {
	seen := map[string]string{}
	for _, zone := range zones {
		if name, ok := seen[zone.TrustDomain]; ok && name != zone.Name {
			return true
		}
		seen[zone.TrustDomain] = zone.Name
	}
	return false
}

// randomInput is a mesh of 1 to 7 zones, or, one time in ten, of up to 40
// (more than a sort sorts by insertion).
func randomInput(random *rand.Rand) Input {
	names := []string{"a", "b", "c", "d", "e-1", "f", "g_1"}
	trustDomains := []string{"a.example", "b.example", "td_c.example", "d.example", "a-.example", "f", strings.Repeat("long.", 48) + "td", "z.example"}
	size := 7
	if random.IntN(10) == 0 {
		size = 40
		for i := range 30 {
			names = append(names, fmt.Sprintf("z%02d", i))
			trustDomains = append(trustDomains, fmt.Sprintf("z%02d.example", i))
		}
	}
	in := Input{Mesh: "m", Observed: map[string]Observed{}}
	for range 1 + random.IntN(size) {
		z := zone(names[random.IntN(len(names))], random.IntN(5) > 0)
		z.TrustDomain = trustDomains[random.IntN(len(trustDomains))]
		if random.IntN(4) == 0 {
			z.Profile, z.EndpointSPIFFEID = "https_web", ""
		}
		if random.IntN(4) == 0 {
			z.ClassName = "other"
		}
		in.Zones = append(in.Zones, z)
	}
	for _, z := range in.Zones {
		peers := map[string]bool{}
		for _, td := range trustDomains {
			if random.IntN(3) > 0 {
				peers[td] = true
			}
		}
		in.Observed[z.Name] = Observed{PeersWithBundle: peers}
	}
	switch random.IntN(3) {
	case 0:
		in.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}
	case 1:
		in.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: names[random.IntN(len(names))]}
	default:
		in.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyExplicit}
		for range random.IntN(12) {
			in.Topology.Links = append(in.Topology.Links, spirefedv1alpha1.Link{From: names[random.IntN(len(names))], To: names[random.IntN(len(names))]})
		}
	}
	static := spirefedv1alpha1.IdentityTemplate{
		Name: "static", SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/static", Zones: []string{"a", "b"},
		Static: &spirefedv1alpha1.StaticEntryTemplate{ParentIDTemplate: "spiffe://{{ .TrustDomain }}/agent", Selectors: []string{"unix:uid:0"}},
	}
	in.Identities = []spirefedv1alpha1.IdentityTemplate{identity, static}[:random.IntN(3)]
	return in
}

// referenceCompute is Compute as it was before it was made cheaper for
// large meshes: one pass over the links, a binary search by name for each
// object of Previous.
func referenceCompute(in Input) Plan {
	byName := make(map[string]Zone, len(in.Zones))
	names := make([]string, 0, len(in.Zones))
	for _, zone := range in.Zones {
		byName[zone.Name] = zone
		names = append(names, zone.Name)
	}
	slices.Sort(names)

	out := Plan{Links: Links(in.Topology, names), Zones: make(map[string]*ZonePlan, len(names))}
	trusted := make(map[string][]string, len(names))
	for _, name := range names {
		out.Zones[name] = &ZonePlan{Zone: name}
	}
	for _, link := range out.Links {
		from, to := byName[link.From], byName[link.To]
		if to.Bundle == "" {
			out.Gated = append(out.Gated, link)
			if in.Observed[link.From].PeersWithBundle[to.TrustDomain] {
				zonePlan := out.Zones[link.From]
				zonePlan.KeepFederatedTrustDomains = append(zonePlan.KeepFederatedTrustDomains, FederatedTrustDomainName(from.Name, to.TrustDomain))
				trusted[link.From] = append(trusted[link.From], link.To)
			}
			continue
		}
		zonePlan := out.Zones[link.From]
		federated := referencePrevious(in.Previous, in.Mesh, from, to)
		if federated == nil {
			objectLabels := labels(in.Mesh, from.Name)
			objectLabels[LabelPeer] = to.Name
			federated = &spirev1alpha1.ClusterFederatedTrustDomain{
				TypeMeta:   metav1.TypeMeta{APIVersion: spireAPIVersion, Kind: "ClusterFederatedTrustDomain"},
				ObjectMeta: metav1.ObjectMeta{Name: FederatedTrustDomainName(from.Name, to.TrustDomain), Labels: objectLabels},
				Spec: spirev1alpha1.ClusterFederatedTrustDomainSpec{
					TrustDomain:           to.TrustDomain,
					BundleEndpointURL:     to.BundleEndpointURL,
					BundleEndpointProfile: bundleEndpointProfile(&to),
					TrustDomainBundle:     to.Bundle,
					ClassName:             from.ClassName,
				},
			}
		}
		zonePlan.FederatedTrustDomains = append(zonePlan.FederatedTrustDomains, federated)
		trusted[link.From] = append(trusted[link.From], link.To)
	}
	for _, name := range names {
		zone := byName[name]
		federatesWith := make([]string, 0, len(trusted[name]))
		for _, peer := range trusted[name] {
			peerTrustDomain := byName[peer].TrustDomain
			if in.Observed[name].PeersWithBundle[peerTrustDomain] {
				federatesWith = append(federatesWith, peerTrustDomain)
			}
		}
		slices.Sort(federatesWith)
		zonePlan := out.Zones[name]
		for _, identity := range in.Identities {
			switch {
			case len(identity.Zones) > 0 && !slices.Contains(identity.Zones, name):
			case identity.Static != nil:
				zonePlan.StaticEntries = append(zonePlan.StaticEntries, clusterStaticEntry(in.Mesh, zone, identity, federatesWith))
			default:
				zonePlan.SPIFFEIDs = append(zonePlan.SPIFFEIDs, clusterSPIFFEID(in.Mesh, zone, identity, federatesWith))
			}
		}
		slices.SortFunc(zonePlan.FederatedTrustDomains, func(a, b *spirev1alpha1.ClusterFederatedTrustDomain) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(zonePlan.SPIFFEIDs, func(a, b *spirev1alpha1.ClusterSPIFFEID) int { return strings.Compare(a.Name, b.Name) })
		slices.SortFunc(zonePlan.StaticEntries, func(a, b *spirev1alpha1.ClusterStaticEntry) int { return strings.Compare(a.Name, b.Name) })
		slices.Sort(zonePlan.KeepFederatedTrustDomains)
	}
	return out
}

func referencePrevious(previous *Plan, mesh string, from, to Zone) *spirev1alpha1.ClusterFederatedTrustDomain {
	if previous == nil || previous.Zones[from.Name] == nil {
		return nil
	}
	objects := previous.Zones[from.Name].FederatedTrustDomains
	name := FederatedTrustDomainName(from.Name, to.TrustDomain)
	i, found := slices.BinarySearchFunc(objects, name, func(object *spirev1alpha1.ClusterFederatedTrustDomain, name string) int {
		return strings.Compare(object.Name, name)
	})
	if !found {
		return nil
	}
	object := objects[i]
	spec, objectLabels := object.Spec, object.Labels
	same := len(objectLabels) == 4 && objectLabels[LabelManagedBy] == ManagedBy && objectLabels[LabelMesh] == mesh &&
		objectLabels[LabelZone] == from.Name && objectLabels[LabelPeer] == to.Name &&
		spec.TrustDomain == to.TrustDomain && spec.BundleEndpointURL == to.BundleEndpointURL && spec.BundleEndpointProfile == bundleEndpointProfile(&to) &&
		spec.TrustDomainBundle == to.Bundle && spec.ClassName == from.ClassName
	if !same {
		return nil
	}
	return object
}

func TestComputeReusesPreviousObjects(t *testing.T) {
	a, b, c := zone("a", true), zone("b", true), zone("c", true)
	full := spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}
	in := Input{Mesh: "m", Topology: full, Zones: []Zone{a, b, c}, Observed: observedAll(a, b, c)}
	first := Compute(in)

	rotated := b
	rotated.Bundle = strings.Replace(b.Bundle, "}", ` ,"spiffe_sequence": 9}`, 1)
	moved := c
	moved.BundleEndpointURL = "https://c.elsewhere:8443"
	for _, tc := range []struct {
		name    string
		zones   []Zone
		changed map[string]bool // peers whose objects must be new
	}{
		{"nothing changed: every object is reused", []Zone{a, b, c}, nil},
		{"b rotated: the objects trusting b are new", []Zone{a, rotated, c}, map[string]bool{"b": true}},
		{"c's endpoint moved: the objects trusting c are new", []Zone{a, b, moved}, map[string]bool{"c": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := Input{Mesh: "m", Topology: full, Zones: tc.zones, Observed: observedAll(a, b, c)}
			fresh := Compute(now)
			now.Previous = &first
			reused := Compute(now)
			if !reflect.DeepEqual(fresh, reused) {
				t.Fatalf("a plan with Previous differs from one without:\n%+v\n%+v", fresh, reused)
			}
			for name, zonePlan := range reused.Zones {
				for i, object := range zonePlan.FederatedTrustDomains {
					shared := object == first.Zones[name].FederatedTrustDomains[i]
					if peer := object.Labels[LabelPeer]; shared == tc.changed[peer] {
						t.Errorf("zone %s, object %s (peer %s): shared %v", name, object.Name, peer, shared)
					}
				}
			}
		})
	}
}
