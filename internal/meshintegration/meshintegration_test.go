package meshintegration

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const (
	pemZone2 = "-----BEGIN CERTIFICATE-----\nMIIBzone2\n-----END CERTIFICATE-----\n"
	pemZone3 = "-----BEGIN CERTIFICATE-----\nMIIBzone3a\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nMIIBzone3b\n-----END CERTIFICATE-----\n"
)

func istio(strict bool) *spirefedv1alpha1.MeshIntegration {
	return &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio,
		Istio: &spirefedv1alpha1.IstioIntegration{Namespace: "istio-system", StrictMTLS: strict}}
}

func kuma() *spirefedv1alpha1.MeshIntegration {
	return &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshKuma}
}

func zone1() Zone {
	return Zone{Name: "zone1", TrustDomain: "default.zone1", SpireHelm: true, Peers: []Peer{
		{Zone: "zone3", TrustDomain: "default.zone3", X509PEM: pemZone3, Federated: true},
		{Zone: "zone2", TrustDomain: "default.zone2", X509PEM: pemZone2, Federated: true},
	}}
}

func golden(t *testing.T, name string, objects []*unstructured.Unstructured) {
	t.Helper()
	var documents []string
	for _, object := range objects {
		out, err := yaml.Marshal(object.Object)
		if err != nil {
			t.Fatal(err)
		}
		documents = append(documents, string(out))
	}
	got := []byte(strings.Join(documents, "---\n"))
	path := filepath.Join("testdata", name+".golden.yaml")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to write it): %v", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestDesiredGolden(t *testing.T) {
	for _, tc := range []struct {
		name        string
		integration *spirefedv1alpha1.MeshIntegration
		zone        Zone
	}{
		{"istio-zone1", istio(false), zone1()},
		{"istio-zone1-strict", istio(true), zone1()},
		{"istio-revision", &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio,
			Istio: &spirefedv1alpha1.IstioIntegration{Namespace: "istio-canary", Revision: "1-30"}}, zone1()},
		{"istio-no-known-peer", istio(false), Zone{Name: "zone1", TrustDomain: "default.zone1",
			Peers: []Peer{{Zone: "zone2", TrustDomain: "default.zone2"}}}},
		{"kuma-zone1", kuma(), zone1()},
		{"kuma-named-mesh", &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshKuma,
			Kuma: &spirefedv1alpha1.KumaIntegration{Mesh: "payments", Namespace: "kong-mesh-system"}}, zone1()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objects, err := Desired("fed", tc.integration, tc.zone)
			if err != nil {
				t.Fatal(err)
			}
			for _, object := range objects {
				labels := object.GetLabels()
				if labels[plan.LabelManagedBy] != plan.ManagedBy || labels[plan.LabelMesh] != "fed" || labels[plan.LabelZone] != tc.zone.Name {
					t.Errorf("%s %s lacks the ownership labels: %v", object.GetKind(), object.GetName(), labels)
				}
			}
			golden(t, tc.name, objects)
		})
	}
}

func TestDesiredWithoutIntegration(t *testing.T) {
	objects, err := Desired("fed", nil, zone1())
	if err != nil || len(objects) != 0 {
		t.Fatalf("Desired(nil) = %v, %v; want nothing", objects, err)
	}
}

// The rendered mesh config is an Istio MeshConfig, parsed strictly, with
// one caCertificates entry per known peer and nothing else.
func TestRenderMeshConfigParsesStrictly(t *testing.T) {
	text, err := RenderMeshConfig(zone1().Peers)
	if err != nil {
		t.Fatal(err)
	}
	config, err := ParseMeshConfig(text)
	if err != nil {
		t.Fatal(err)
	}
	entries := config.GetCaCertificates()
	if len(entries) != 2 {
		t.Fatalf("caCertificates has %d entries, want 2", len(entries))
	}
	for i, want := range []struct{ td, pem string }{{"default.zone2", pemZone2}, {"default.zone3", pemZone3}} {
		if got := entries[i].GetTrustDomains(); len(got) != 1 || got[0] != want.td {
			t.Errorf("entry %d trustDomains = %v, want [%s]", i, got, want.td)
		}
		if entries[i].GetPem() != want.pem || entries[i].GetSpiffeBundleUrl() != "" {
			t.Errorf("entry %d: pem %q url %q", i, entries[i].GetPem(), entries[i].GetSpiffeBundleUrl())
		}
	}
	if len(config.GetTrustDomainAliases()) != 0 || config.GetTrustDomain() != "" {
		t.Errorf("the shared mesh config sets trustDomain or trustDomainAliases: %s", text)
	}
}

func TestParseMeshConfigRejects(t *testing.T) {
	for name, text := range map[string]string{
		"unknown field": "caCertificates:\n- spiffeBundleURL: https://x\n  trustDomains: [a]\n",
		"oneof clash":   "caCertificates:\n- pem: x\n  spiffeBundleUrl: https://x\n  trustDomains: [a]\n",
		"not yaml":      "caCertificates: [",
	} {
		if _, err := ParseMeshConfig(text); err == nil {
			t.Errorf("%s: ParseMeshConfig accepted %q", name, text)
		}
	}
}

// What Kuma's webhook checks and the CRD schema does not.
func TestMeshIdentityWebhookRules(t *testing.T) {
	objects := KumaObjects("fed", kuma(), zone1())
	if len(objects) != 1 {
		t.Fatalf("got %d objects", len(objects))
	}
	identity := objects[0]
	if identity.GetNamespace() != "kuma-system" {
		t.Errorf("namespace %q, want the system namespace", identity.GetNamespace())
	}
	if identity.GetLabels()[KumaOriginLabel] != "zone" || identity.GetLabels()[KumaMeshLabel] != "default" {
		t.Errorf("labels %v", identity.GetLabels())
	}
	if spire, ok, _ := unstructured.NestedMap(identity.Object, "spec", "provider", "spire"); !ok || len(spire) == 0 {
		t.Errorf("provider.spire must be set for type Spire")
	}
	trustDomain, _, _ := unstructured.NestedString(identity.Object, "spec", "spiffeID", "trustDomain")
	path, _, _ := unstructured.NestedString(identity.Object, "spec", "spiffeID", "path")
	// Kuma predicts spiffe://<trustDomain><path>: the ClusterSPIFFEID's ID.
	predicted := "spiffe://" + trustDomain + strings.NewReplacer("{{ .Namespace }}", "{{ .PodMeta.Namespace }}",
		"{{ .ServiceAccount }}", "{{ .PodSpec.ServiceAccountName }}").Replace(path)
	if want := strings.Replace(SPIFFEIDTemplate, "{{ .TrustDomain }}", "default.zone1", 1); predicted != want {
		t.Errorf("Kuma predicts %s, SPIRE issues %s", predicted, want)
	}
}

func TestIdentity(t *testing.T) {
	if Identity(nil) != nil {
		t.Error("an identity without integration")
	}
	istioIdentity := Identity(istio(false))
	if istioIdentity.Name != IdentityName || istioIdentity.SPIFFEIDTemplate != SPIFFEIDTemplate ||
		istioIdentity.PodSelector == nil || istioIdentity.PodSelector.MatchExpressions[0].Key != IstioWorkloadLabel {
		t.Errorf("Istio identity %+v", istioIdentity)
	}
	kumaIdentity := Identity(kuma())
	if kumaIdentity.NamespaceSelector == nil || kumaIdentity.NamespaceSelector.MatchLabels[KumaInjectionLabel] != KumaInjectionEnabled {
		t.Errorf("Kuma identity %+v", kumaIdentity)
	}
	user := []spirefedv1alpha1.IdentityTemplate{{Name: "web"}}
	with := WithIdentity(user, kuma())
	if len(with) != 2 || len(user) != 1 || with[1].Name != IdentityName {
		t.Errorf("WithIdentity = %v (input %v)", with, user)
	}
	if got := WithIdentity(user, nil); len(got) != 1 {
		t.Errorf("WithIdentity(nil) = %v", got)
	}
}

// A complete Istio install, as istiod's chart renders it for the zone.
func istioInstall(trustDomain string) IstioInstall {
	return IstioInstall{
		MeshConfig: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"},
			Data: map[string]string{"mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\ntrustDomain: " + trustDomain + "\n"}},
		Istiod: &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "istiod", Namespace: "istio-system"},
			Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "discovery", Image: "docker.io/istio/pilot:1.30.3-distroless",
				Env: []corev1.EnvVar{{Name: "PILOT_ENABLE_AMBIENT", Value: "false"}, {Name: SharedMeshConfigEnv, Value: IstioMeshConfigName}},
			}}}}}},
		Injector: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: "istio-system"},
			Data: map[string]string{"config": "defaultTemplates: [sidecar]\ntemplates:\n  sidecar: |\n    x\n  gateway: |\n    x\n  spire: |\n    x\n  spire-gateway: |\n    x\n"}},
	}
}

func kumaInstall(mode string, ready string) KumaInstall {
	mesh := &unstructured.Unstructured{Object: map[string]any{"apiVersion": KumaAPIVersion, "kind": "Mesh",
		"metadata": map[string]any{"name": "default"}, "spec": map[string]any{"meshServices": map[string]any{"mode": mode}}}}
	identity := KumaObjects("fed", kuma(), zone1())[0]
	if ready != "" {
		identity.Object["status"] = map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": ready, "reason": "Whatever", "message": "m"}}}
	}
	return KumaInstall{MeshIdentityServed: true, Mesh: mesh, MeshIdentity: identity}
}

func TestJudge(t *testing.T) {
	pending := zone1()
	pending.Peers[1].Federated = false
	conflicting := zone1()
	conflicting.SDSConflicts = []string{"kuma-mesh"}
	external := zone1()
	external.SpireHelm = false
	tooOld := istioInstall("default.zone1")
	tooOld.Istiod.Spec.Template.Spec.Containers[0].Image = "docker.io/istio/pilot:1.29.1"
	notWired := istioInstall("default.zone1")
	notWired.Istiod.Spec.Template.Spec.Containers[0].Env = nil
	noTemplates := istioInstall("default.zone1")
	noTemplates.Injector.Data["config"] = "templates:\n  sidecar: x\n  spire: x\n"
	noIstiod := istioInstall("default.zone1")
	noIstiod.Istiod = nil
	primaryCAs := istioInstall("default.zone1")
	primaryCAs.MeshConfig.Data["mesh"] += "caCertificates:\n- pem: x\n  trustDomains: [other]\n"
	defaultTrustDomain := istioInstall("default.zone1")
	defaultTrustDomain.MeshConfig.Data["mesh"] = "defaultConfig: {}\n"

	for _, tc := range []struct {
		name        string
		integration *spirefedv1alpha1.MeshIntegration
		zone        Zone
		install     Install
		outcome     Outcome
		reason      string
		contains    string
	}{
		{"istio ready", istio(false), zone1(), Install{Istio: istioInstall("default.zone1")}, Outcome{}, spirefedv1alpha1.ReasonMeshIntegrated, "default.zone2, default.zone3"},
		{"istio external SPIRE says what to set", istio(false), external, Install{Istio: istioInstall("default.zone1")}, Outcome{}, spirefedv1alpha1.ReasonMeshIntegrated, `default_all_bundles_name "ROOTCA"`},
		{"istio not installed", istio(false), zone1(), Install{}, Outcome{}, spirefedv1alpha1.ReasonMeshNotInstalled, "istio-system/istio not found"},
		{"istiod missing", istio(false), zone1(), Install{Istio: noIstiod}, Outcome{}, spirefedv1alpha1.ReasonMeshNotInstalled, "istio-system/istiod not found"},
		{"trust domain mismatch", istio(false), zone1(), Install{Istio: istioInstall("cluster.local")}, Outcome{}, spirefedv1alpha1.ReasonTrustDomainMismatch, "meshConfig.trustDomain=default.zone1"},
		{"Istio's default trust domain", istio(false), zone1(), Install{Istio: defaultTrustDomain}, Outcome{}, spirefedv1alpha1.ReasonTrustDomainMismatch, `"cluster.local"`},
		{"too old", istio(false), zone1(), Install{Istio: tooOld}, Outcome{}, spirefedv1alpha1.ReasonIstioTooOld, "1.29.1"},
		{"not wired", istio(false), zone1(), Install{Istio: notWired}, Outcome{}, spirefedv1alpha1.ReasonSharedMeshConfigNotWired, "pilot.env.SHARED_MESH_CONFIG=spirefed-mesh"},
		{"primary mesh config sets caCertificates", istio(false), zone1(), Install{Istio: primaryCAs}, Outcome{}, spirefedv1alpha1.ReasonSharedMeshConfigNotWired, "remove meshConfig.caCertificates"},
		{"template missing", istio(false), zone1(), Install{Istio: noTemplates}, Outcome{}, spirefedv1alpha1.ReasonInjectionTemplateMissing, "no template spire-gateway"},
		{"peers pending", istio(false), pending, Install{Istio: istioInstall("default.zone1")}, Outcome{}, spirefedv1alpha1.ReasonPeersPending, "default.zone2"},
		{"SDS conflict", istio(false), conflicting, Install{Istio: istioInstall("default.zone1")}, Outcome{}, spirefedv1alpha1.ReasonSDSProfileConflict, "kuma-mesh"},
		{"conflict", istio(false), zone1(), Install{Istio: istioInstall("default.zone1")}, Outcome{Conflicts: []string{"ConfigMap istio-system/spirefed-mesh is not the operator's"}}, spirefedv1alpha1.ReasonConflict, "not the operator's"},
		{"apply failed", istio(false), zone1(), Install{Istio: istioInstall("default.zone1")}, Outcome{Err: errors.New("boom")}, spirefedv1alpha1.ReasonMeshIntegrationApplyFailed, "boom"},
		{"the first reason wins, every finding is told", istio(false), pending, Install{Istio: notWired}, Outcome{}, spirefedv1alpha1.ReasonSharedMeshConfigNotWired, "federatesWith"},
		{"kuma ready", kuma(), zone1(), Install{Kuma: kumaInstall("Exclusive", "True")}, Outcome{}, spirefedv1alpha1.ReasonMeshIntegrated, "Kuma proxies"},
		{"kuma CRDs missing", kuma(), zone1(), Install{}, Outcome{}, spirefedv1alpha1.ReasonMeshNotInstalled, "does not serve"},
		{"kuma mesh missing", kuma(), zone1(), Install{Kuma: KumaInstall{MeshIdentityServed: true}}, Outcome{}, spirefedv1alpha1.ReasonMeshNotInstalled, "Mesh default not found"},
		{"mesh services", kuma(), zone1(), Install{Kuma: kumaInstall("Disabled", "True")}, Outcome{}, spirefedv1alpha1.ReasonMeshServicesNotExclusive, `"Disabled"`},
		{"mesh identity not ready", kuma(), zone1(), Install{Kuma: kumaInstall("Exclusive", "False")}, Outcome{}, spirefedv1alpha1.ReasonMeshIdentityNotReady, "Whatever"},
		{"mesh identity without status", kuma(), zone1(), Install{Kuma: kumaInstall("Exclusive", "")}, Outcome{}, spirefedv1alpha1.ReasonMeshIdentityNotReady, "kuma-cp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			report := Judge(tc.integration, tc.zone, tc.install, tc.outcome)
			if report.Reason != tc.reason || !strings.Contains(report.Message, tc.contains) {
				t.Errorf("Judge = %s: %s; want %s containing %q", report.Reason, report.Message, tc.reason, tc.contains)
			}
			wantReady := metav1.ConditionFalse
			if tc.reason == spirefedv1alpha1.ReasonMeshIntegrated {
				wantReady = metav1.ConditionTrue
			}
			if report.Ready != wantReady {
				t.Errorf("Ready = %s, want %s", report.Ready, wantReady)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	ready := spirefedv1alpha1.ZoneMeshIntegration{Ready: metav1.ConditionTrue, Reason: spirefedv1alpha1.ReasonMeshIntegrated}
	pending := spirefedv1alpha1.ZoneMeshIntegration{Ready: metav1.ConditionFalse, Reason: spirefedv1alpha1.ReasonPeersPending, Message: "p"}
	missing := spirefedv1alpha1.ZoneMeshIntegration{Ready: metav1.ConditionFalse, Reason: spirefedv1alpha1.ReasonMeshNotInstalled, Message: "m"}

	condition := Summarize(map[string]spirefedv1alpha1.ZoneMeshIntegration{"a": ready, "b": ready}, 3)
	if condition.Status != metav1.ConditionTrue || condition.Reason != spirefedv1alpha1.ReasonMeshIntegrated || condition.ObservedGeneration != 3 {
		t.Errorf("all ready: %+v", condition)
	}
	condition = Summarize(map[string]spirefedv1alpha1.ZoneMeshIntegration{"a": pending, "b": missing, "c": ready}, 3)
	if condition.Status != metav1.ConditionFalse || condition.Reason != spirefedv1alpha1.ReasonMeshNotInstalled ||
		!strings.HasPrefix(condition.Message, "zone b: MeshNotInstalled (m); zone a: PeersPending;") {
		t.Errorf("failing: %+v", condition)
	}
	many := map[string]spirefedv1alpha1.ZoneMeshIntegration{}
	long := pending
	long.Message = strings.Repeat("é", 2000)
	for _, name := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		many[name] = long
	}
	condition = Summarize(many, 1)
	if !strings.Contains(condition.Message, "2 more zones") || len(condition.Message) > 1000 || !utf8.ValidString(condition.Message) {
		t.Errorf("many: %d bytes: %s", len(condition.Message), condition.Message)
	}
	// Events repeat the message as their note, which takes 1024 bytes.
	report := Judge(istio(false), zone1(), Install{}, Outcome{Err: errors.New(strings.Repeat("x", 5000))})
	if len(report.Message) > 1024 {
		t.Errorf("a zone's message of %d bytes", len(report.Message))
	}
}

func TestImageVersion(t *testing.T) {
	for image, want := range map[string][3]int{
		"docker.io/istio/pilot:1.30.3":                 {1, 30, 3},
		"gcr.io/istio-release/pilot:1.29.2-distroless": {1, 29, 2},
		"localhost:5000/pilot:1.31.0@sha256:abcd":      {1, 31, 0},
	} {
		if got, ok := ImageVersion(image); !ok || got != want {
			t.Errorf("ImageVersion(%s) = %v, %v", image, got, ok)
		}
	}
	for _, image := range []string{"istio/pilot:latest", "istio/pilot@sha256:abcd", "localhost:5000/pilot"} {
		if _, ok := ImageVersion(image); ok {
			t.Errorf("ImageVersion(%s) found a version", image)
		}
	}
}

func TestSDS(t *testing.T) {
	istioValues := HelmSDSValues(spirefedv1alpha1.MeshIstio)["spire-agent"].(map[string]any)["sds"].(map[string]any)
	if istioValues["defaultAllBundlesName"] != "ROOTCA" || istioValues["defaultBundleName"] != "null" || istioValues["enabled"] != true {
		t.Errorf("Istio SDS values %v", istioValues)
	}
	kumaValues := HelmSDSValues(spirefedv1alpha1.MeshKuma)["spire-agent"].(map[string]any)["sds"].(map[string]any)
	if kumaValues["defaultAllBundlesName"] != "ALL" {
		t.Errorf("Kuma SDS values %v", kumaValues)
	}
	if values, conflict := ZoneSDSProfile(nil); values != nil || conflict {
		t.Error("no mesh: no SDS values")
	}
	if values, conflict := ZoneSDSProfile([]spirefedv1alpha1.MeshIntegrationType{spirefedv1alpha1.MeshIstio, spirefedv1alpha1.MeshIstio}); values == nil || conflict {
		t.Error("two Istio meshes agree")
	}
	if values, conflict := ZoneSDSProfile([]spirefedv1alpha1.MeshIntegrationType{spirefedv1alpha1.MeshIstio, spirefedv1alpha1.MeshKuma}); values != nil || !conflict {
		t.Error("Istio and Kuma conflict, and neither profile is forced")
	}
	conflicts := SDSConflicts(
		Membership{Mesh: "i", Type: spirefedv1alpha1.MeshIstio, Zones: []string{"z1", "z2"}},
		[]Membership{
			{Mesh: "i", Type: spirefedv1alpha1.MeshIstio, Zones: []string{"z1", "z2"}},
			{Mesh: "k2", Type: spirefedv1alpha1.MeshKuma, Zones: []string{"z2", "z3"}},
			{Mesh: "k1", Type: spirefedv1alpha1.MeshKuma, Zones: []string{"z2"}},
			{Mesh: "i2", Type: spirefedv1alpha1.MeshIstio, Zones: []string{"z1"}},
		})
	if len(conflicts) != 1 || strings.Join(conflicts["z2"], ",") != "k1,k2" {
		t.Errorf("SDSConflicts = %v", conflicts)
	}
}
