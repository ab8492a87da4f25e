package meshintegration

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FuzzJudgeIstioInstall feeds what a zone's Istio install holds (outside
// input: its mesh config, injector config and istiod image) to Judge: it
// never panics and always reports one of the documented reasons.
func FuzzJudgeIstioInstall(f *testing.F) {
	f.Add("trustDomain: default.zone1\n", "templates:\n  spire: x\n  spire-gateway: x\n", "docker.io/istio/pilot:1.30.3")
	f.Add("caCertificates: [{pem: x}]\n", "templates: [", "pilot:1.2.3-rc.1@sha256:00")
	f.Add("{", "templates: {spire: 1}", "istio/pilot:99999999999999999999.1.1")
	f.Fuzz(func(t *testing.T, meshConfig, injectorConfig, image string) {
		install := IstioInstall{
			MeshConfig: &corev1.ConfigMap{Data: map[string]string{IstioMeshConfigKey: meshConfig}},
			Istiod: &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "discovery", Image: image}}}}}},
			Injector: &corev1.ConfigMap{Data: map[string]string{"config": injectorConfig}},
		}
		report := Judge(istio(false), zone1(), Install{Istio: install}, Outcome{})
		if report.Reason != "MeshIntegrated" && !slices.Contains(precedence, report.Reason) {
			t.Fatalf("undocumented reason %q", report.Reason)
		}
		if (report.Ready == metav1.ConditionTrue) != (report.Reason == "MeshIntegrated") {
			t.Fatalf("ready %s with reason %s", report.Ready, report.Reason)
		}
	})
}
