package plan

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// BenchmarkCompute plans full meshes of 10, 100 and 1000 zones with one
// identity (n*(n-1) ClusterFederatedTrustDomains).
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
