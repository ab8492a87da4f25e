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
// deleting on real API servers, and checks what kstatus (the library of
// Flux's health checks, kpt and kubectl-style waiting) computes at each
// step.
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

	// Reachable, but no bootstrap bundle yet: the operator works on it.
	copied := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testenv.OperatorNamespace, Name: "kstatus-kubeconfig"}, Data: secret.Data}
	if err := env.Management.Client.Create(testCtx, copied); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Management.Client.Delete(testCtx, copied) })
	waitForZoneCondition(t, "kstatus", spirefedv1alpha1.ReconcilingCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonBundleNotFound)
	waitForKstatus(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", status.InProgressStatus)

	// Ready.
	writeBundleConfigMapIn(t, gamma, "spire-kstatus", endpoint.bootstrapPEM())
	waitForZoneCondition(t, "kstatus", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded)
	waitForKstatus(t, &spirefedv1alpha1.ZoneTrustDomain{}, "kstatus", status.CurrentStatus)

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
	updateMeshNamed(t, "kstatusmesh", func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{"kstatus"} })
	waitForMeshCondition(t, "kstatusmesh", ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
	waitForKstatus(t, &spirefedv1alpha1.FederationMesh{}, "kstatusmesh", status.CurrentStatus)

	// Deleting.
	if err := env.Management.Client.Delete(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
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
