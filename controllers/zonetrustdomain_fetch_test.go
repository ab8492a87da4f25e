package controllers

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

const fetched = spirefedv1alpha1.BundleFetchedCondition

// TestBundleFetch follows a zone's bundle endpoint through a rotation and
// refuses unsafe answers, keeping the last good bundle.
func TestBundleFetch(t *testing.T) {
	gamma := env.Zones["gamma"]
	endpoint := startZoneEndpoint(t, "fetch.example")
	writeBundleConfigMap(t, gamma, endpoint.bootstrapPEM())
	createZone(t, newZoneAt("fetch", "fetch.example", testenv.KubeconfigSecretName("gamma"), endpoint.server.URL))
	zone := waitForZoneCondition(t, "fetch", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	if zone.Status.Bundle.Source != spirefedv1alpha1.BundleSourceEndpoint {
		t.Fatalf("bundle source %s, want Endpoint", zone.Status.Bundle.Source)
	}

	// Rotation, as SPIRE does it: publish the new CA with a new sequence,
	// then serve an SVID from it. The new CA authenticates the endpoint
	// because the accepted bundle holds it.
	rotated, err := testenv.NewSPIFFECA("fetch.example")
	if err != nil {
		t.Fatal(err)
	}
	next := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert, rotated.Cert})
	next.SetSequenceNumber(2)
	endpoint.server.SetBundle(next)
	writeBundleConfigMap(t, gamma, string(testenv.PEM(endpoint.CA.Cert, rotated.Cert)))
	zone = waitForSequence(t, "fetch", 2)
	if len(zone.Status.Bundle.X509Authorities) != 2 {
		t.Fatalf("%d authorities after rotation, want 2", len(zone.Status.Bundle.X509Authorities))
	}
	serving, err := rotated.NewServingCertificate("spiffe://fetch.example/spire/server")
	if err != nil {
		t.Fatal(err)
	}
	endpoint.server.SetCertificate(serving)
	next3 := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{rotated.Cert})
	next3.SetSequenceNumber(3)
	endpoint.server.SetBundle(next3)
	waitForSequence(t, "fetch", 3)
	accepted := getZone(t, "fetch").Status.Bundle.Digest

	// A peer trusts the zone: none of the faults below may write to it.
	peer := startFederationZone(t, "fetch-peer", "alpha")
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "fetchmesh"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{"fetch", peer.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	createMesh(t, mesh)
	waitForMeshCondition(t, "fetchmesh", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")

	wrongID, err := rotated.NewServingCertificate("spiffe://fetch.example/imposter")
	if err != nil {
		t.Fatal(err)
	}
	older := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{rotated.Cert, endpoint.CA.Cert})
	older.SetSequenceNumber(1)
	for _, tc := range []struct {
		name   string
		serve  func()
		reason string
	}{
		{"wrong SPIFFE ID", func() { endpoint.server.SetCertificate(wrongID) }, spirefedv1alpha1.ReasonAuthenticationFailed},
		{"HTTP 500", func() {
			endpoint.server.Override(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
		}, spirefedv1alpha1.ReasonBadResponse},
		{"redirect to http", func() {
			endpoint.server.Override(http.RedirectHandler("http://127.0.0.1:1/", http.StatusFound))
		}, spirefedv1alpha1.ReasonBadResponse},
		{"sequence going back", func() { endpoint.server.SetBundle(older) }, spirefedv1alpha1.ReasonSequenceRegressed},
		{"oversized body", func() {
			endpoint.server.Override(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(`{"keys":[` + strings.Repeat(" ", 2<<20) + `]}`))
			}))
		}, spirefedv1alpha1.ReasonBadResponse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writes := zoneWrites(t)
			tc.serve()
			defer func() {
				endpoint.server.SetCertificate(serving)
				endpoint.server.SetBundle(next3)
			}()
			zone := waitForZoneCondition(t, "fetch", fetched, metav1.ConditionFalse, tc.reason)
			if zone.Status.Bundle.Digest != accepted {
				t.Errorf("the accepted bundle changed")
			}
			if zone.Status.LastFetch == nil || zone.Status.LastFetch.Result != tc.reason {
				t.Errorf("lastFetch = %+v", zone.Status.LastFetch)
			}
			waitForZoneCondition(t, "fetch", ready, metav1.ConditionFalse, tc.reason)
			waitForPair(t, "fetchmesh", peer.name, "fetch", spirefedv1alpha1.PairStale)
			if got := zoneWrites(t) - writes; got != 0 {
				t.Errorf("%d writes to the zones while the endpoint failed", got)
			}
		})
		waitForZoneCondition(t, "fetch", fetched, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched)
	}
}

func waitForSequence(t *testing.T, name string, sequence int64) *spirefedv1alpha1.ZoneTrustDomain {
	t.Helper()
	deadline := testDeadline(20)
	for {
		zone := getZone(t, name)
		if zone.Status.Bundle != nil && zone.Status.Bundle.Sequence != nil && *zone.Status.Bundle.Sequence == sequence {
			return zone
		}
		if deadline() {
			got := "none"
			if zone.Status.Bundle != nil && zone.Status.Bundle.Sequence != nil {
				got = fmt.Sprint(*zone.Status.Bundle.Sequence)
			}
			t.Fatalf("zone %s: sequence %s, want %d; conditions %+v", name, got, sequence, zone.Status.Conditions)
		}
	}
}
