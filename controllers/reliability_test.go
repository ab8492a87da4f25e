package controllers

import (
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestSequenceRules serves a zone's endpoint bundles that try to sidestep
// the sequence guard: each is refused with the last good bundle kept,
// until an audited reset accepts a lower sequence once.
func TestSequenceRules(t *testing.T) {
	endpoint := startGammaZone(t, "seq", "seq.example")
	waitForSequence(t, "seq", 1)
	accepted := getZone(t, "seq").Status.Bundle.Digest

	foreign, err := testenv.NewSPIFFECA("seq.example")
	if err != nil {
		t.Fatal(err)
	}
	reused := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert, foreign.Cert})
	reused.SetSequenceNumber(1)
	unsequenced := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert, foreign.Cert})
	for _, tc := range []struct {
		name   string
		bundle *spiffebundle.Bundle
		reason string
	}{
		{"same sequence, an authority added", reused, spirefedv1alpha1.ReasonSequenceReused},
		{"no sequence after one", unsequenced, spirefedv1alpha1.ReasonSequenceMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint.server.SetBundle(tc.bundle)
			got := waitForZoneCondition(t, "seq", fetched, metav1.ConditionFalse, tc.reason)
			if got.Status.Bundle.Digest != accepted {
				t.Errorf("the accepted bundle changed")
			}
		})
	}

	t.Run("an audited reset accepts a lower sequence once", func(t *testing.T) {
		ahead := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert})
		ahead.SetSequenceNumber(9)
		endpoint.server.SetBundle(ahead)
		waitForSequence(t, "seq", 9)
		reinstalled := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert})
		reinstalled.SetSequenceNumber(2)
		endpoint.server.SetBundle(reinstalled)
		waitForZoneCondition(t, "seq", fetched, metav1.ConditionFalse, spirefedv1alpha1.ReasonSequenceRegressed)

		annotate(t, "seq", spirefedv1alpha1.ResetSequenceAnnotation, "re-installed SPIRE")
		waitForSequence(t, "seq", 2)
		deadline := testDeadline(20)
		for getZone(t, "seq").Annotations[spirefedv1alpha1.ResetSequenceAnnotation] != "" {
			if deadline() {
				t.Fatal("the reset annotation was not removed")
			}
		}
		waitForEvent(t, "seq", "BundleSequenceReset", "sequence 2 in place of sequence 9")
		// Once only: going back again is refused.
		again := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert})
		again.SetSequenceNumber(1)
		endpoint.server.SetBundle(again)
		waitForZoneCondition(t, "seq", fetched, metav1.ConditionFalse, spirefedv1alpha1.ReasonSequenceRegressed)
	})
}

// TestHugeRefreshHint serves a refresh hint past time.Duration's range:
// status holds a bounded hint and the effective fetch interval, never a
// negative duration.
func TestHugeRefreshHint(t *testing.T) {
	gamma := env.Zones["gamma"]
	endpoint := startZoneEndpoint(t, "hint.example")
	writeBundleConfigMapIn(t, gamma, "spire-hint", endpoint.bootstrapPEM())
	document, err := endpoint.Bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(document, &fields); err != nil {
		t.Fatal(err)
	}
	fields["spiffe_refresh_hint"] = json.Number("99999999999999")
	fields["spiffe_sequence"] = 2
	huge, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	endpoint.server.Override(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(huge) }))
	zone := newZoneAt("hint", "hint.example", testenv.KubeconfigSecretName("gamma"), endpoint.server.URL)
	zone.Spec.Spire.Namespace = "spire-hint"
	createZone(t, zone)
	got := waitForSequence(t, "hint", 2)
	if hint := got.Status.Bundle.RefreshHint; hint == nil || hint.Duration <= 0 || hint.Duration > bundle.MaxRefreshHint {
		t.Errorf("status refresh hint %v, want within (0, %s]", hint, bundle.MaxRefreshHint)
	}
	// The suite's operator clamps hints to at most an hour.
	if interval := got.Status.FetchInterval; interval == nil || interval.Duration != time.Hour {
		t.Errorf("fetch interval %v, want 1h", interval)
	}
}

// TestDeletionWithoutKubeconfig deletes a mesh and a zone whose
// kubeconfig Secret is gone: both go, with Events naming what is left
// behind in the zone's cluster.
func TestDeletionWithoutKubeconfig(t *testing.T) {
	beta := env.Zones["beta"]
	secret := &corev1.Secret{}
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: testenv.KubeconfigSecretName("beta")}, secret); err != nil {
		t.Fatal(err)
	}
	copied := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: "orphan-kubeconfig"},
		Data:       secret.Data,
	}
	if err := env.Management.Client.Create(testCtx, copied); err != nil {
		t.Fatal(err)
	}
	orphanEndpoint := startZoneEndpoint(t, "orphan.fed")
	writeBundleConfigMapIn(t, beta, "spire-orphan", orphanEndpoint.bootstrapPEM())
	orphan := newZoneAt("orphan", "orphan.fed", "orphan-kubeconfig", orphanEndpoint.server.URL)
	orphan.Spec.Spire.Namespace = "spire-orphan"
	orphan.Spec.Spire.ClassName = "spire-orphan-spire"
	createZone(t, orphan)
	waitForZoneCondition(t, "orphan", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	peer := startFederationZone(t, "orphan-peer", "alpha")
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "orphanmesh"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{"orphan", peer.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	waitForMeshCondition(t, "orphanmesh", spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
	left := ownedFederatedTrustDomains(t, beta, "orphan")
	if len(left) != 1 {
		t.Fatalf("ClusterFederatedTrustDomains in the zone: %v", left)
	}

	if err := env.Management.Client.Delete(testCtx, copied); err != nil {
		t.Fatal(err)
	}
	waitForZoneCondition(t, "orphan", reachable, metav1.ConditionFalse, spirefedv1alpha1.ReasonSecretNotFound)
	if err := env.Management.Client.Delete(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	waitForDeletion(t, mesh)
	waitForEvent(t, "orphanmesh", "ObjectsLeftBehind", "Zone orphan")
	deleteZone(t, "orphan")
	waitForEvent(t, "orphan", "ObjectsLeftBehind", "spirefed.io/zone=orphan")
	if got := ownedFederatedTrustDomains(t, beta, "orphan"); !slices.Equal(got, left) {
		t.Errorf("the objects left behind were touched: %v, before %v", got, left)
	}
}

// ownedFederatedTrustDomains lists, with their resourceVersions, the
// ClusterFederatedTrustDomains the operator wrote in a cluster for a zone.
func ownedFederatedTrustDomains(t *testing.T, cluster *testenv.Cluster, zoneName string) []string {
	t.Helper()
	var cftds spirev1alpha1.ClusterFederatedTrustDomainList
	if err := cluster.Client.List(testCtx, &cftds, client.MatchingLabels{plan.LabelZone: zoneName}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cftd := range cftds.Items {
		names = append(names, cftd.Name+"@"+cftd.ResourceVersion)
	}
	slices.Sort(names)
	return names
}

// annotate sets an annotation on a zone.
func annotate(t *testing.T, name, key, value string) {
	t.Helper()
	zone := getZone(t, name)
	patch := client.MergeFrom(zone.DeepCopy())
	if zone.Annotations == nil {
		zone.Annotations = map[string]string{}
	}
	zone.Annotations[key] = value
	if err := env.Management.Client.Patch(testCtx, zone, patch); err != nil {
		t.Fatal(err)
	}
}

// waitForEvent waits for an Event about the named object with the reason
// and a note containing notePart.
func waitForEvent(t *testing.T, name, reason, notePart string) {
	t.Helper()
	deadline := testDeadline(30)
	var seen []string
	for {
		var list eventsv1.EventList
		if err := env.Management.Client.List(testCtx, &list); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, event := range list.Items {
			if event.Regarding.Name == name && event.Reason == reason {
				if strings.Contains(event.Note, notePart) {
					return
				}
				seen = append(seen, event.Note)
			}
		}
		if deadline() {
			t.Fatalf("no %s Event for %s containing %q; seen: %q", reason, name, notePart, seen)
		}
	}
}

// TestPublishedAuthoritiesChecked serves, from a zone's endpoint and its
// bootstrap ConfigMap, authorities that must not reach peers: expired ones
// are dropped (with an Event) while a valid one remains and refused when
// none does; another trust domain's CA and duplicate members differing in
// case are refused; the last good bundle stays with the peers.
func TestPublishedAuthoritiesChecked(t *testing.T) {
	gamma := env.Zones["gamma"]
	endpoint := startGammaZone(t, "checked", "checked.example")
	waitForSequence(t, "checked", 1)
	good := getZone(t, "checked").Status.Bundle.Digest

	expired, err := testenv.NewSPIFFECAValid("checked.example", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := testenv.NewSPIFFECA("other.example")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("an expired authority beside a valid one is dropped", func(t *testing.T) {
		both := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert, expired.Cert})
		both.SetSequenceNumber(2)
		endpoint.server.SetBundle(both)
		got := waitForSequence(t, "checked", 2)
		expiredFingerprint := bundle.Fingerprint(expired.Cert)
		for _, authority := range got.Status.Bundle.X509Authorities {
			if authority.SHA256Fingerprint == expiredFingerprint {
				t.Errorf("the expired authority is in the bundle peers get")
			}
		}
		if dropped := got.Status.Bundle.DroppedX509Authorities; len(dropped) != 1 || dropped[0].SHA256Fingerprint != expiredFingerprint || !strings.Contains(dropped[0].Reason, "expired") {
			t.Errorf("dropped = %+v", dropped)
		}
		waitForEvent(t, "checked", "AuthorityDropped", expiredFingerprint)
		good = got.Status.Bundle.Digest
	})
	for _, tc := range []struct {
		name     string
		document func() []byte
	}{
		{"only an expired authority", func() []byte {
			only := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{expired.Cert})
			only.SetSequenceNumber(3)
			document, _ := only.Marshal()
			return document
		}},
		{"another trust domain's CA", func() []byte {
			mixed := spiffebundle.FromX509Authorities(endpoint.TrustDomain, []*x509.Certificate{endpoint.CA.Cert, foreign.Cert})
			mixed.SetSequenceNumber(3)
			document, _ := mixed.Marshal()
			return document
		}},
		{"duplicate members differing in case", func() []byte {
			document, _ := endpoint.Bundle.Marshal()
			return []byte(strings.Replace(string(document), `{"keys":`, `{"KEYS":[],"keys":`, 1))
		}},
	} {
		t.Run("endpoint: "+tc.name, func(t *testing.T) {
			document := tc.document()
			endpoint.server.Override(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(document) }))
			got := waitForZoneCondition(t, "checked", fetched, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleRejected)
			if got.Status.Bundle.Digest != good {
				t.Errorf("the accepted bundle changed")
			}
		})
	}
	endpoint.server.Override(nil)

	for _, tc := range []struct {
		name string
		pem  string
	}{
		{"bootstrap: another zone's CA", string(testenv.PEM(foreign.Cert))},
		{"bootstrap: the zone's CA and another zone's", string(testenv.PEM(endpoint.CA.Cert, foreign.Cert))},
		{"bootstrap: only an expired CA", string(testenv.PEM(expired.Cert))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := getZone(t, "checked").Status.Bootstrap
			writeBundleConfigMapIn(t, gamma, "spire-checked", tc.pem)
			got := waitForZoneCondition(t, "checked", available, metav1.ConditionFalse, spirefedv1alpha1.ReasonBundleInvalid)
			if !equality.Semantic.DeepEqual(got.Status.Bootstrap, before) {
				t.Errorf("the bootstrap authorities changed: %+v", got.Status.Bootstrap)
			}
		})
	}
	writeBundleConfigMapIn(t, gamma, "spire-checked", endpoint.bootstrapPEM())
	waitForZoneCondition(t, "checked", available, metav1.ConditionTrue, spirefedv1alpha1.ReasonBundleRead)
}

// startGammaZone creates a zone in cluster gamma, with its bootstrap
// ConfigMap in its own SPIRE namespace and its endpoint on loopback.
func startGammaZone(t *testing.T, name, trustDomain string) *zoneEndpoint {
	t.Helper()
	endpoint := startZoneEndpoint(t, trustDomain)
	writeBundleConfigMapIn(t, env.Zones["gamma"], "spire-"+name, endpoint.bootstrapPEM())
	zone := newZoneAt(name, trustDomain, testenv.KubeconfigSecretName("gamma"), endpoint.server.URL)
	zone.Spec.Spire.Namespace = "spire-" + name
	createZone(t, zone)
	return endpoint
}
