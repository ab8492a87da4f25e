package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestKstatus drives both kinds through progressing, stalled, ready and
// deleting on real API servers, and checks at each step what kstatus (the
// library of Flux's health checks, kpt and kubectl-style waiting) computes
// and what the Argo CD health checks say of the live object.
func TestKstatus(t *testing.T) {
	gamma := env.Zones["gamma"]
	endpoint := startZoneEndpoint(t, "kstatus.example")
	secret := &corev1.Secret{}
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Namespace: testenv.OperatorNamespace, Name: testenv.KubeconfigSecretName("gamma")}, secret); err != nil {
		t.Fatal(err)
	}
	zone := newZoneAt("kstatus", "kstatus.example", "kstatus-kubeconfig", endpoint.server.URL)
	zone.Spec.Spire.Namespace = "spire-kstatus"
	createZone(t, zone)
	t.Cleanup(func() { deleteZone(t, "kstatus") })

	// Its kubeconfig Secret does not exist: only a human can fix that.
	waitForZoneCondition(t, "kstatus", spirefedv1alpha1.StalledCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSecretNotFound)
	waitForKstatus(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", status.FailedStatus)
	checkArgoCDHealth(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", "Degraded")

	// Reachable, but no bootstrap bundle yet: the operator works on it.
	copied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: "kstatus-kubeconfig"}, Data: secret.Data}
	if err := env.Management.Client.Create(testCtx, copied); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Management.Client.Delete(testCtx, copied) })
	waitForZoneCondition(t, "kstatus", spirefedv1alpha1.ReconcilingCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonBundleNotFound)
	waitForKstatus(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", status.InProgressStatus)
	checkArgoCDHealth(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", "Degraded") // BundleNotFound: a failure, retried

	// Ready.
	writeBundleConfigMapIn(t, gamma, "spire-kstatus", endpoint.bootstrapPEM())
	waitForZoneCondition(t, "kstatus", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	waitForKstatus(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", status.CurrentStatus)
	checkArgoCDHealth(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", "Healthy")

	// A mesh naming a zone that does not exist: stalled; once it exists: ready.
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "kstatusmesh"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{"kstatus", "kstatus-later"}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	waitForMeshCondition(t, "kstatusmesh", spirefedv1alpha1.StalledCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonZoneNotFound, "kstatus-later")
	waitForKstatus(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", status.FailedStatus)
	checkArgoCDHealth(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", "Degraded")
	updateMeshNamed(t, "kstatusmesh", func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{"kstatus"} })
	waitForMeshCondition(t, "kstatusmesh", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
	waitForKstatus(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", status.CurrentStatus)
	checkArgoCDHealth(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", "Healthy")

	// A member zone that is not Ready (its endpoint does not answer): the
	// mesh is in progress.
	later := newZone("kstatus-later", "kstatus-later.example", "kstatus-kubeconfig")
	later.Spec.Spire.Namespace = "spire-kstatus"
	createZone(t, later)
	t.Cleanup(func() { deleteZone(t, "kstatus-later") })
	updateMeshNamed(t, "kstatusmesh", func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{"kstatus", "kstatus-later"} })
	waitForMeshCondition(t, "kstatusmesh", spirefedv1alpha1.ReconcilingCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonZonesNotReady, "kstatus-later")
	waitForKstatus(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", status.InProgressStatus)
	checkArgoCDHealth(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", "Progressing")

	// Deleting.
	if err := env.Management.Client.Delete(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	waitForKstatus(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", status.TerminatingStatus, status.NotFoundStatus)
	waitForDeletion(t, mesh)
	if err := env.Management.Client.Delete(testCtx, zone); err != nil {
		t.Fatal(err)
	}
	waitForKstatus(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", status.TerminatingStatus, status.NotFoundStatus)
}

// waitForKstatus waits until kstatus computes one of want for the object.
func waitForKstatus(t *testing.T, obj client.Object, name string, want ...status.Status) {
	t.Helper()
	deadline := testDeadline(30)
	var last string
	for {
		err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: name}, obj)
		var got status.Status
		switch {
		case client.IgnoreNotFound(err) != nil:
			t.Fatal(err)
		case err != nil:
			got, last = status.NotFoundStatus, "not found"
		default:
			fields, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
			if err != nil {
				t.Fatal(err)
			}
			result, err := status.Compute(&unstructured.Unstructured{Object: fields})
			if err != nil {
				t.Fatal(err)
			}
			got, last = result.Status, string(result.Status)+": "+result.Message
		}
		for _, w := range want {
			if got == w {
				return
			}
		}
		if deadline() {
			t.Fatalf("%s: kstatus %s, want %v", name, last, want)
		}
	}
}

// checkArgoCDHealth runs the kind's Argo CD health check on the live
// object and wants the given health status.
func checkArgoCDHealth(t *testing.T, obj client.Object, name, want string) {
	t.Helper()
	if err := env.Management.Client.Get(testCtx, client.ObjectKey{Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	kind := "ZoneTrustDomain"
	if _, mesh := obj.(*spirefedv1alpha1.FederationMesh); mesh {
		kind = "FederationMesh"
	}
	script, err := testenv.ArgoCDHealthScript(kind)
	if err != nil {
		t.Fatal(err)
	}
	got, message, err := testenv.ArgoCDHealth(script, obj)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Argo CD health of %s %s: %s %q, want %s", kind, name, got, message, want)
	}
}
