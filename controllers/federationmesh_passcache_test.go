package controllers

import (
	"crypto/x509"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	meshstatus "github.com/spirefed/spire-federation-operator/internal/mesh"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func TestMeshPassCache(t *testing.T) {
	ca, err := testenv.NewSPIFFECA("b.example")
	if err != nil {
		t.Fatal(err)
	}
	document, err := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString("b.example"), []*x509.Certificate{ca.Cert}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	zone := func(name, trustDomain, bundle string) *spirefedv1alpha1.ZoneTrustDomain {
		z := &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: trustDomain}}
		if bundle != "" {
			z.Status.Bundle = &spirefedv1alpha1.BundleStatus{SPIFFEBundle: bundle}
		}
		return z
	}
	a, b, c := zone("a", "a.example", ""), zone("b", "b.example", string(document)), zone("c", "c.example", "")
	links := []plan.Link{{From: "a", To: "b"}, {From: "b", To: "a"}, {From: "a", To: "c"}, {From: "c", To: "b"}}
	scope := &meshScope{members: meshstatus.Members{"a": a, "b": b, "c": c}, plan: plan.Plan{Links: links}}

	if got, want := scope.linksFrom("a"), []plan.Link{{From: "a", To: "b"}, {From: "a", To: "c"}}; !slices.Equal(got, want) {
		t.Errorf("linksFrom(a) = %v, want %v", got, want)
	}
	if got := scope.linksFrom("d"); len(got) != 0 {
		t.Errorf("linksFrom(d) = %v, want none", got)
	}

	pem := scope.peerPEM(b)
	if pem == "" || pem != meshintegration.CurrentPEM(b) || !strings.Contains(pem, "BEGIN CERTIFICATE") {
		t.Fatalf("peerPEM(b) = %q, want the PEM of its authority", pem)
	}
	// Within a pass the members do not change: the first answer stays.
	b.Status.Bundle = nil
	if scope.peerPEM(b) != pem {
		t.Error("peerPEM parsed the bundle again")
	}
	if scope.peerPEM(a) != "" {
		t.Error("a zone without a bundle has authorities")
	}
}
