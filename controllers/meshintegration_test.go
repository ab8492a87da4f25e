package controllers

import (
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// installMeshCRDs installs the upstream mesh CRD fixtures of one mesh
// ("istio" or "kuma") into a zone's API server until the test ends.
func installMeshCRDs(t *testing.T, cluster *testenv.Cluster, mesh string) {
	t.Helper()
	options := envtest.CRDInstallOptions{Paths: []string{filepath.Join("..", "test", "testdata", "meshcrds", mesh)}, ErrorIfPathMissing: true}
	if _, err := envtest.InstallCRDs(cluster.Config, options); err != nil {
		t.Fatalf("installing the %s CRDs in %s: %v", mesh, cluster.Name, err)
	}
	t.Cleanup(func() {
		if err := envtest.UninstallCRDs(cluster.Config, options); err != nil {
			t.Errorf("removing the %s CRDs from %s: %v", mesh, cluster.Name, err)
		}
	})
}

// ensureNamespace creates a namespace in a zone's cluster; it is not
// deleted (envtest runs no namespace controller to finish a deletion).
func ensureNamespace(t *testing.T, cluster *testenv.Cluster, name string) {
	t.Helper()
	if err := cluster.Client.Create(testCtx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s in %s: %v", name, cluster.Name, err)
	}
}

// createInZone creates an object in a zone's cluster until owner (the
// test, or a parent of the subtest t) ends.
func createInZone(t, owner *testing.T, cluster *testenv.Cluster, object client.Object) {
	t.Helper()
	if err := cluster.Client.Create(testCtx, object); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating %T %s in %s: %v", object, object.GetName(), cluster.Name, err)
	}
	owner.Cleanup(func() { _ = cluster.Client.Delete(testCtx, object) })
}

func updateInZone(t *testing.T, cluster *testenv.Cluster, object client.Object, change func()) {
	t.Helper()
	for {
		if err := cluster.Client.Get(testCtx, client.ObjectKeyFromObject(object), object); err != nil {
			t.Fatal(err)
		}
		change()
		err := cluster.Client.Update(testCtx, object)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

// istiod is a Deployment as istiod's chart renders it (the parts the
// operator reads).
func istiod(image string, env ...corev1.EnvVar) *appsv1.Deployment {
	labels := map[string]string{"app": "istiod"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: image, Env: env}}},
			},
		},
	}
}

// zoneMeshIntegration is a zone's status.zones[].meshIntegration.
func zoneMeshIntegration(mesh *spirefedv1alpha1.FederationMesh, zone string) *spirefedv1alpha1.ZoneMeshIntegration {
	for _, member := range mesh.Status.Zones {
		if member.Name == zone {
			return member.MeshIntegration
		}
	}
	return nil
}

// sharedMeshConfig reads the operator's mesh config in a zone, parsed
// strictly as Istio's MeshConfig: trust domain -> PEM.
func sharedMeshConfig(t *testing.T, cluster *testenv.Cluster) (map[string]string, error) {
	t.Helper()
	configMap := &corev1.ConfigMap{}
	if err := cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "istio-system", Name: meshintegration.IstioMeshConfigName}, configMap); err != nil {
		return nil, err
	}
	config, err := meshintegration.ParseMeshConfig(configMap.Data[meshintegration.IstioMeshConfigKey])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, entry := range config.GetCaCertificates() {
		if len(entry.GetTrustDomains()) != 1 {
			t.Fatalf("caCertificates entry with trust domains %v", entry.GetTrustDomains())
		}
		out[entry.GetTrustDomains()[0]] = entry.GetPem()
	}
	return out, nil
}

// waitForSharedMeshConfig waits until a zone's shared mesh config trusts
// exactly the peers (trust domain -> PEM).
func waitForSharedMeshConfig(t *testing.T, cluster *testenv.Cluster, want map[string]string) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		got, err := sharedMeshConfig(t, cluster)
		if err == nil && len(got) == len(want) {
			same := true
			for trustDomain, pem := range want {
				same = same && samePEM(got[trustDomain], pem)
			}
			if same {
				return
			}
		}
		if deadline() {
			t.Fatalf("the shared mesh config of %s holds %v (%v), want %v", cluster.Name, slices.Sorted(func(yield func(string) bool) {
				for td := range got {
					yield(td)
				}
			}), err, want)
		}
	}
}

// samePEM says whether two PEM texts hold the same certificates, in any
// order.
func samePEM(a, b string) bool {
	blocks := func(text string) []string {
		var out []string
		for rest := []byte(text); ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			out = append(out, string(block.Bytes))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(blocks(a), blocks(b)) && len(blocks(a)) > 0
}

func waitForGone(t *testing.T, cluster *testenv.Cluster, object client.Object) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		err := cluster.Client.Get(testCtx, client.ObjectKeyFromObject(object), object)
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return
		}
		if deadline() {
			t.Fatalf("%T %s is still in %s: %v", object, object.GetName(), cluster.Name, err)
		}
	}
}

// TestMeshIntegrationIstio drives an Istio integration over two zones,
// then three, with the install objects a real Istio install creates made
// by the test: every reason appears and clears, the operator's objects are
// accepted by the real schemas, and only they are removed.
func TestMeshIntegrationIstio(t *testing.T) {
	a := startFederationZone(t, "mi-a", "alpha")
	b := startFederationZone(t, "mi-b", "beta")
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "mi-istio"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	meshDeleted := false
	t.Cleanup(func() {
		if !meshDeleted {
			waitForDeletion(t, mesh)
		}
	})
	const name = "mi-istio"
	condition := spirefedv1alpha1.MeshIntegrationReadyCondition

	t.Run("no Istio in the zones", func(t *testing.T) {
		got := waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshNotInstalled, "istio-system/istio not found")
		if report := zoneMeshIntegration(got, a.name); report == nil || report.Reason != spirefedv1alpha1.ReasonMeshNotInstalled {
			t.Errorf("zone %s: %+v", a.name, report)
		}
		// A mesh problem never turns Ready false.
		waitForMeshCondition(t, name, ready, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")
	})

	// Istio's install in both zones, as a chart with the wrong values
	// renders it; then the values are fixed one at a time.
	primary := map[string]*corev1.ConfigMap{}
	deployments := map[string]*appsv1.Deployment{}
	injectors := map[string]*corev1.ConfigMap{}
	for _, zone := range []*federationZone{a, b} {
		ensureNamespace(t, zone.cluster, "istio-system")
		primary[zone.name] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
			Data: map[string]string{"mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n"}}
		createInZone(t, t, zone.cluster, primary[zone.name])
		deployments[zone.name] = istiod("docker.io/istio/pilot:1.28.0")
		createInZone(t, t, zone.cluster, deployments[zone.name])
		injectors[zone.name] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: "istio-system"},
			Data: map[string]string{"config": "defaultTemplates: [sidecar]\ntemplates:\n  sidecar: |\n    spec: {}\n"}}
		createInZone(t, t, zone.cluster, injectors[zone.name])
	}

	t.Run("trust domain mismatch", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonTrustDomainMismatch, `is "cluster.local"`)
		for _, zone := range []*federationZone{a, b} {
			updateInZone(t, zone.cluster, primary[zone.name], func() {
				primary[zone.name].Data["mesh"] += "trustDomain: " + zone.trustDomain() + "\n"
			})
		}
	})

	t.Run("istio too old", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonIstioTooOld, "1.28.0")
		for _, zone := range []*federationZone{a, b} {
			updateInZone(t, zone.cluster, deployments[zone.name], func() {
				deployments[zone.name].Spec.Template.Spec.Containers[0].Image = "docker.io/istio/pilot:1.30.3-distroless"
			})
		}
	})

	t.Run("shared mesh config not wired", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonSharedMeshConfigNotWired, "pilot.env.SHARED_MESH_CONFIG=spirefed-mesh")
		for _, zone := range []*federationZone{a, b} {
			updateInZone(t, zone.cluster, deployments[zone.name], func() {
				deployments[zone.name].Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: meshintegration.SharedMeshConfigEnv, Value: meshintegration.IstioMeshConfigName}}
			})
		}
	})

	t.Run("injection template missing", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonInjectionTemplateMissing, "no template spire, spire-gateway")
		for _, zone := range []*federationZone{a, b} {
			updateInZone(t, zone.cluster, injectors[zone.name], func() {
				injectors[zone.name].Data["config"] += "  spire: |\n    spec: {}\n  spire-gateway: |\n    spec: {}\n"
			})
		}
	})

	t.Run("ready: every peer trusted", func(t *testing.T) {
		got := waitForMeshCondition(t, name, condition, metav1.ConditionTrue, spirefedv1alpha1.ReasonMeshIntegrated, "all 2 member zones")
		report := zoneMeshIntegration(got, a.name)
		if report == nil || strings.Join(report.PeerTrustDomains, ",") != b.trustDomain() ||
			strings.Join(report.Objects, ",") != "ConfigMap istio-system/spirefed-mesh" {
			t.Errorf("zone %s: %+v", a.name, report)
		}
		waitForSharedMeshConfig(t, a.cluster, map[string]string{b.trustDomain(): b.endpoint.bootstrapPEM()})
		waitForSharedMeshConfig(t, b.cluster, map[string]string{a.trustDomain(): a.endpoint.bootstrapPEM()})
		// Each transition of the condition is an Event.
		for _, reason := range []string{spirefedv1alpha1.ReasonMeshNotInstalled, spirefedv1alpha1.ReasonTrustDomainMismatch, spirefedv1alpha1.ReasonMeshIntegrated} {
			waitForMeshEvent(t, name, condition, reason)
		}
		// The mesh workloads' identity, in the form Istio requires, for
		// sidecars and gateways, federating with the peer.
		identity := &spirev1alpha1.ClusterSPIFFEID{}
		if err := a.cluster.Client.Get(testCtx, types.NamespacedName{Name: plan.SPIFFEIDName(name, a.name, meshintegration.IdentityName)}, identity); err != nil {
			t.Fatal(err)
		}
		if identity.Spec.SPIFFEIDTemplate != meshintegration.SPIFFEIDTemplate || identity.Spec.PodSelector == nil ||
			identity.Spec.PodSelector.MatchExpressions[0].Key != meshintegration.IstioWorkloadLabel ||
			strings.Join(identity.Spec.FederatesWith, ",") != b.trustDomain() || identity.Spec.ClassName != "spire-"+a.name+"-spire" {
			t.Errorf("mesh workloads' ClusterSPIFFEID: %+v", identity.Spec)
		}
	})

	t.Run("steady state makes no write", func(t *testing.T) {
		configMap := &corev1.ConfigMap{}
		key := types.NamespacedName{Namespace: "istio-system", Name: meshintegration.IstioMeshConfigName}
		if err := a.cluster.Client.Get(testCtx, key, configMap); err != nil {
			t.Fatal(err)
		}
		before := zoneWrites(t)
		waitForMeshResync(t, name)
		after := &corev1.ConfigMap{}
		if err := a.cluster.Client.Get(testCtx, key, after); err != nil {
			t.Fatal(err)
		}
		if writes := zoneWrites(t); writes != before || after.ResourceVersion != configMap.ResourceVersion {
			t.Errorf("%d zone writes in steady state; resourceVersion %s -> %s", writes-before, configMap.ResourceVersion, after.ResourceVersion)
		}
	})

	rotatedPEM := b.endpoint.bootstrapPEM()
	t.Run("a rotation reaches the mesh config", func(t *testing.T) {
		rotated, err := testenv.NewSPIFFECA(b.trustDomain())
		if err != nil {
			t.Fatal(err)
		}
		next := spiffebundle.FromX509Authorities(b.endpoint.TrustDomain, []*x509.Certificate{b.endpoint.CA.Cert, rotated.Cert})
		next.SetSequenceNumber(2)
		b.endpoint.server.SetBundle(next)
		rotatedPEM = string(testenv.PEM(b.endpoint.CA.Cert, rotated.Cert))
		writeBundleConfigMapIn(t, b.cluster, "spire-"+b.name, rotatedPEM)
		waitForSharedMeshConfig(t, a.cluster, map[string]string{b.trustDomain(): rotatedPEM})
	})

	c := startFederationZone(t, "mi-c", "gamma")
	t.Run("a zone joining is trusted, and leaving is not", func(t *testing.T) {
		updateMeshNamed(t, name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{a.name, b.name, c.name} })
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshNotInstalled, "zone "+c.name)
		waitForSharedMeshConfig(t, a.cluster, map[string]string{
			b.trustDomain(): rotatedPEM, c.trustDomain(): c.endpoint.bootstrapPEM()})
		updateMeshNamed(t, name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{a.name, b.name} })
		waitForMeshCondition(t, name, condition, metav1.ConditionTrue, spirefedv1alpha1.ReasonMeshIntegrated, "")
		waitForSharedMeshConfig(t, a.cluster, map[string]string{b.trustDomain(): rotatedPEM})
	})

	t.Run("strict mTLS on opt-in, a user's object is left alone", func(t *testing.T) {
		installMeshCRDs(t, a.cluster, "istio")
		installMeshCRDs(t, b.cluster, "istio")
		users := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
			"metadata": map[string]any{"name": "default", "namespace": "istio-system"},
			"spec":     map[string]any{"mtls": map[string]any{"mode": "PERMISSIVE"}},
		}}
		createInZone(t, t, b.cluster, users)
		updateMeshNamed(t, name, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.MeshIntegration.Istio = &spirefedv1alpha1.IstioIntegration{Namespace: "istio-system", StrictMTLS: true}
		})
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonConflict, "PeerAuthentication istio-system/default exists and is not the operator's")
		strict := &unstructured.Unstructured{}
		strict.SetAPIVersion("security.istio.io/v1")
		strict.SetKind("PeerAuthentication")
		if err := a.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "istio-system", Name: "default"}, strict); err != nil {
			t.Fatal(err)
		}
		if mode, _, _ := unstructured.NestedString(strict.Object, "spec", "mtls", "mode"); mode != "STRICT" {
			t.Errorf("zone %s PeerAuthentication mode %q", a.name, mode)
		}
		if err := b.cluster.Client.Get(testCtx, client.ObjectKeyFromObject(users), users); err != nil {
			t.Fatal(err)
		}
		if mode, _, _ := unstructured.NestedString(users.Object, "spec", "mtls", "mode"); mode != "PERMISSIVE" || users.GetLabels()[plan.LabelManagedBy] != "" {
			t.Errorf("the user's PeerAuthentication was modified: %v", users.Object)
		}
		updateMeshNamed(t, name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.MeshIntegration.Istio.StrictMTLS = false })
		waitForGone(t, a.cluster, strict)
		waitForMeshCondition(t, name, condition, metav1.ConditionTrue, spirefedv1alpha1.ReasonMeshIntegrated, "")
	})

	t.Run("SDS profile conflict with a Kuma mesh on a shared zone", func(t *testing.T) {
		kuma := &spirefedv1alpha1.FederationMesh{
			ObjectMeta: metav1.ObjectMeta{Name: "mi-kuma-clash"},
			Spec: spirefedv1alpha1.FederationMeshSpec{
				Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{a.name}},
				Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
				MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshKuma},
			},
		}
		if err := env.Management.Client.Create(testCtx, kuma); err != nil {
			t.Fatal(err)
		}
		waitForMeshCondition(t, "mi-kuma-clash", condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshNotInstalled, "")
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonSDSProfileConflict, "mi-kuma-clash")
		waitForDeletion(t, kuma)
		waitForMeshCondition(t, name, condition, metav1.ConditionTrue, spirefedv1alpha1.ReasonMeshIntegrated, "")
	})

	t.Run("removing the integration removes only the operator's objects", func(t *testing.T) {
		updateMeshNamed(t, name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.MeshIntegration = nil })
		for _, zone := range []*federationZone{a, b} {
			waitForGone(t, zone.cluster, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: meshintegration.IstioMeshConfigName}})
			waitForGone(t, zone.cluster, &spirev1alpha1.ClusterSPIFFEID{ObjectMeta: metav1.ObjectMeta{Name: plan.SPIFFEIDName(name, zone.name, meshintegration.IdentityName)}})
			for _, key := range []types.NamespacedName{{Namespace: "istio-system", Name: "istio"}, {Namespace: "istio-system", Name: "istio-sidecar-injector"}} {
				if err := zone.cluster.Client.Get(testCtx, key, &corev1.ConfigMap{}); err != nil {
					t.Errorf("Istio's own %s in %s: %v", key, zone.name, err)
				}
			}
		}
		// The status is written at the end of the pass that removed them.
		deadline := testDeadline(30)
		for got := getMesh(t, name); meta.FindStatusCondition(got.Status.Conditions, condition) != nil || zoneMeshIntegration(got, a.name) != nil; got = getMesh(t, name) {
			if deadline() {
				t.Fatalf("status still reports the integration: %+v", got.Status)
			}
		}
	})

	t.Run("deleting the mesh removes the mesh config", func(t *testing.T) {
		updateMeshNamed(t, name, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.MeshIntegration = &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio}
		})
		waitForMeshCondition(t, name, condition, metav1.ConditionTrue, spirefedv1alpha1.ReasonMeshIntegrated, "")
		waitForDeletion(t, mesh)
		meshDeleted = true
		for _, zone := range []*federationZone{a, b} {
			waitForGone(t, zone.cluster, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: meshintegration.IstioMeshConfigName}})
			if err := zone.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "istio-system", Name: "istio"}, &corev1.ConfigMap{}); err != nil {
				t.Errorf("Istio's own ConfigMap in %s: %v", zone.name, err)
			}
		}
	})
}

// waitForMeshResync waits for two more passes of the mesh's reconcile
// (its resync interval is 5 s in the suite): the status's Ready condition
// is not rewritten, so the wait is on the clock.
func waitForMeshResync(t *testing.T, name string) {
	t.Helper()
	deadline := testDeadline(11)
	for !deadline() {
	}
	_ = getMesh(t, name)
}

// TestMeshIntegrationKuma drives a Kuma integration over two zones with
// the objects Kuma's install and control plane create made by the test.
func TestMeshIntegrationKuma(t *testing.T) {
	a := startFederationZone(t, "mk-a", "alpha")
	b := startFederationZone(t, "mk-b", "gamma")
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "mk-kuma"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshKuma},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	meshDeleted := false
	t.Cleanup(func() {
		if !meshDeleted {
			waitForDeletion(t, mesh)
		}
	})
	const name = "mk-kuma"
	top := t
	condition := spirefedv1alpha1.MeshIntegrationReadyCondition
	zones := []*federationZone{a, b}

	t.Run("no Kuma CRDs", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshNotInstalled, "does not serve kuma.io/v1alpha1 MeshIdentity")
	})

	// Kuma 2.14's CRDs and system namespace, without a Mesh.
	for _, zone := range zones {
		installMeshCRDs(t, zone.cluster, "kuma")
		ensureNamespace(t, zone.cluster, "kuma-system")
	}
	t.Run("no Kuma Mesh", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshNotInstalled, "Kuma Mesh default not found")
	})

	kumaMeshes := map[string]*unstructured.Unstructured{}
	t.Run("mesh services not exclusive", func(t *testing.T) {
		for _, zone := range zones {
			kumaMeshes[zone.name] = &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": meshintegration.KumaAPIVersion, "kind": "Mesh",
				"metadata": map[string]any{"name": "default"},
				"spec":     map[string]any{},
			}}
			createInZone(t, top, zone.cluster, kumaMeshes[zone.name])
		}
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshServicesNotExclusive, "set it to Exclusive")
		for _, zone := range zones {
			updateInZone(t, zone.cluster, kumaMeshes[zone.name], func() {
				kumaMeshes[zone.name].Object["spec"] = map[string]any{"meshServices": map[string]any{"mode": "Exclusive"}}
			})
		}
	})

	identities := map[string]*unstructured.Unstructured{}
	t.Run("mesh identity not ready until Kuma says so", func(t *testing.T) {
		waitForMeshCondition(t, name, condition, metav1.ConditionFalse, spirefedv1alpha1.ReasonMeshIdentityNotReady, "has not reported it Ready")
		for _, zone := range zones {
			identity := &unstructured.Unstructured{}
			identity.SetAPIVersion(meshintegration.KumaAPIVersion)
			identity.SetKind("MeshIdentity")
			if err := zone.cluster.Client.Get(testCtx, types.NamespacedName{Namespace: "kuma-system", Name: "spirefed-default"}, identity); err != nil {
				t.Fatal(err)
			}
			identities[zone.name] = identity
			trustDomain, _, _ := unstructured.NestedString(identity.Object, "spec", "spiffeID", "trustDomain")
			providerType, _, _ := unstructured.NestedString(identity.Object, "spec", "provider", "type")
			if trustDomain != zone.trustDomain() || providerType != "Spire" || identity.GetLabels()[meshintegration.KumaOriginLabel] != "zone" {
				t.Errorf("MeshIdentity in %s: %v", zone.name, identity.Object)
			}
			// Kuma's control plane reports it Ready.
			identity.Object["status"] = map[string]any{"conditions": []any{map[string]any{
				"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}}}
			// The CRD has no status subresource.
			if err := zone.cluster.Client.Update(testCtx, identity); err != nil {
				t.Fatal(err)
			}
		}
		got := waitForMeshCondition(t, name, condition, metav1.ConditionTrue, spirefedv1alpha1.ReasonMeshIntegrated, "all 2 member zones")
		if report := zoneMeshIntegration(got, a.name); report == nil || strings.Join(report.Objects, ",") != "MeshIdentity kuma-system/spirefed-default" ||
			strings.Join(report.PeerTrustDomains, ",") != b.trustDomain() {
			t.Errorf("zone %s: %+v", a.name, report)
		}
		identity := &spirev1alpha1.ClusterSPIFFEID{}
		if err := a.cluster.Client.Get(testCtx, types.NamespacedName{Name: plan.SPIFFEIDName(name, a.name, meshintegration.IdentityName)}, identity); err != nil {
			t.Fatal(err)
		}
		if identity.Spec.NamespaceSelector == nil || identity.Spec.NamespaceSelector.MatchLabels[meshintegration.KumaInjectionLabel] != "enabled" ||
			strings.Join(identity.Spec.FederatesWith, ",") != b.trustDomain() {
			t.Errorf("mesh workloads' ClusterSPIFFEID: %+v", identity.Spec)
		}
	})

	t.Run("deleting the mesh removes the MeshIdentity, not the Mesh", func(t *testing.T) {
		waitForDeletion(t, mesh)
		meshDeleted = true
		for _, zone := range zones {
			waitForGone(t, zone.cluster, identities[zone.name])
			if err := zone.cluster.Client.Get(testCtx, client.ObjectKeyFromObject(kumaMeshes[zone.name]), kumaMeshes[zone.name]); err != nil {
				t.Errorf("Kuma's Mesh in %s: %v", zone.name, err)
			}
		}
	})
}

// TestMeshSDSValues: a Helm zone's SPIRE agent gets the SDS profile of the
// meshes with an integration that count it as a member, and none when an
// Istio mesh and a Kuma mesh disagree.
func TestMeshSDSValues(t *testing.T) {
	meshValues := MeshSDSValues(env.Management.Client)
	zone := &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: "sds-helm"}}
	create := func(name string, meshType spirefedv1alpha1.MeshIntegrationType) {
		mesh := &spirefedv1alpha1.FederationMesh{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: spirefedv1alpha1.FederationMeshSpec{
				Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{zone.Name}},
				Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
				MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: meshType},
			},
		}
		if err := env.Management.Client.Create(testCtx, mesh); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { waitForDeletion(t, mesh) })
		// The zone does not exist: the mesh lists it as a member all the same.
		waitForMeshCondition(t, name, spirefedv1alpha1.ZonesResolvedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonZoneNotFound, zone.Name)
	}
	sds := func() map[string]any {
		t.Helper()
		values, err := meshValues(testCtx, zone)
		if err != nil {
			t.Fatal(err)
		}
		if values == nil {
			return nil
		}
		return values["spire-agent"].(map[string]any)["sds"].(map[string]any)
	}
	if got := sds(); got != nil {
		t.Errorf("no mesh: SDS values %v", got)
	}
	create("sds-istio", spirefedv1alpha1.MeshIstio)
	if got := sds(); got == nil || got["defaultAllBundlesName"] != meshintegration.SDSAllBundlesIstio {
		t.Errorf("an Istio mesh: SDS values %v", got)
	}
	create("sds-kuma", spirefedv1alpha1.MeshKuma)
	if got := sds(); got != nil {
		t.Errorf("an Istio and a Kuma mesh: SDS values %v, want none", got)
	}
}

// waitForMeshEvent waits for an Event of a mesh with the action (the
// condition type) and reason.
func waitForMeshEvent(t *testing.T, mesh, action, reason string) {
	t.Helper()
	deadline := testDeadline(30)
	for {
		var list eventsv1.EventList
		if err := env.Management.Client.List(testCtx, &list); err != nil {
			t.Fatal(err)
		}
		for _, event := range list.Items {
			if event.Regarding.Name == mesh && event.Regarding.Kind == "FederationMesh" && event.Action == action && event.Reason == reason {
				return
			}
		}
		if deadline() {
			var seen []string
			for _, event := range list.Items {
				if event.Regarding.Name == mesh {
					seen = append(seen, event.Action+"/"+event.Reason)
				}
			}
			t.Fatalf("no Event %s %s on mesh %s; its Events: %v", action, reason, mesh, seen)
		}
	}
}
