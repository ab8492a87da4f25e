package chart_test

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// renderChart renders the operator's chart as `helm install --dry-run`
// would, without a cluster, as release spire-federation-operator in
// spirefed-system; it returns the objects by "Kind/name".
func renderChart(t *testing.T, values map[string]any) (map[string]*unstructured.Unstructured, error) {
	t.Helper()
	operatorChart, err := testenv.OperatorChart()
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.ReleaseName = "spire-federation-operator"
	install.Namespace = testenv.OperatorNamespace
	install.DryRun, install.ClientOnly, install.IncludeCRDs = true, true, false
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.34.3", Major: "1", Minor: "34"}
	rendered, err := install.Run(operatorChart, values)
	if err != nil {
		return nil, err
	}
	return objectsOf(t, rendered.Manifest), nil
}

func objectsOf(t *testing.T, manifest string) map[string]*unstructured.Unstructured {
	t.Helper()
	objects := map[string]*unstructured.Unstructured{}
	for _, doc := range strings.Split(manifest, "\n---") {
		object := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &object.Object); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if object.GetKind() != "" {
			objects[object.GetKind()+"/"+object.GetName()] = object
		}
	}
	return objects
}

func deploymentOf(t *testing.T, objects map[string]*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	object, ok := objects["Deployment/spire-federation-operator"]
	if !ok {
		t.Fatalf("no Deployment among %v", slices.Sorted(maps.Keys(objects)))
	}
	deployment := &appsv1.Deployment{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(object.Object, deployment); err != nil {
		t.Fatal(err)
	}
	return deployment
}

// TestChartValuesSchema checks that values.schema.json makes `helm
// install` fail on a wrong type or an unknown top-level key, and accepts
// the defaults and every documented option.
func TestChartValuesSchema(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"wrong type":                {"replicaCount": "two"},
		"unknown top-level key":     {"replicas": 2},
		"wrong nested type":         {"metrics": map[string]any{"secure": "yes"}},
		"unknown nested key":        {"metrics": map[string]any{"insecure": true}},
		"not a duration":            {"helmTimeout": "five minutes"},
		"unknown log encoder":       {"logging": map[string]any{"encoder": "xml"}},
		"digest that is not sha256": {"image": map[string]any{"digest": "latest"}},
	} {
		if _, err := renderChart(t, values); err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("%s: install not refused by the schema: %v", name, err)
		}
	}
	for name, values := range map[string]map[string]any{
		"defaults":                nil,
		"metrics off":             {"metrics": map[string]any{"enabled": false}, "networkPolicy": map[string]any{"enabled": true}},
		"plain HTTP metrics":      {"metrics": map[string]any{"secure": false, "service": map[string]any{"enabled": false}}},
		"existing ServiceAccount": {"serviceAccount": map[string]any{"create": false, "name": "mine"}},
		"no PodDisruptionBudget":  {"podDisruptionBudget": map[string]any{"enabled": false}, "leaderElection": map[string]any{"enabled": false}},
	} {
		objects, err := renderChart(t, values)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if deployment := deploymentOf(t, objects); name == "existing ServiceAccount" && deployment.Spec.Template.Spec.ServiceAccountName != "mine" {
			t.Errorf("%s: the pod runs as %q", name, deployment.Spec.Template.Spec.ServiceAccountName)
		}
	}
}

// TestChartOptions renders the chart with every option set and checks
// each reaches the objects: every operator flag, image pull secrets,
// annotations, priority class, topology spread, extra CAs, metrics
// certificates, the PodDisruptionBudget and the NetworkPolicy.
func TestChartOptions(t *testing.T) {
	values := map[string]any{}
	if err := yaml.Unmarshal([]byte(`
image: {digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
imagePullSecrets: [{name: regcred}]
serviceAccount: {annotations: {example.com/role: operator}}
podAnnotations: {example.com/scrape: "true"}
podLabels: {team: identity}
priorityClassName: system-cluster-critical
topologySpreadConstraints:
- {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}
extraCACertificates: {configMap: corporate-cas}
metrics: {certSecret: metrics-tls}
networkPolicy: {enabled: true, metricsFrom: [{namespaceSelector: {matchLabels: {name: monitoring}}}]}
`), &values); err != nil {
		t.Fatal(err)
	}
	objects, err := renderChart(t, values)
	if err != nil {
		t.Fatal(err)
	}
	deployment := deploymentOf(t, objects)
	pod := deployment.Spec.Template.Spec
	container := pod.Containers[0]

	mainFlags, zapFlags, err := testenv.OperatorFlags()
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range append(mainFlags, zapFlags...) {
		if !slices.ContainsFunc(container.Args, func(arg string) bool { return strings.HasPrefix(arg, "--"+flag+"=") }) {
			t.Errorf("flag --%s is not set from values: args %q", flag, container.Args)
		}
	}
	if !strings.HasSuffix(container.Image, "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef") {
		t.Errorf("image %s does not use the digest", container.Image)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("image pull secrets %+v", pod.ImagePullSecrets)
	}
	if deployment.Spec.Template.Annotations["example.com/scrape"] != "true" || deployment.Spec.Template.Labels["team"] != "identity" {
		t.Errorf("pod metadata %+v", deployment.Spec.Template.ObjectMeta)
	}
	if pod.PriorityClassName != "system-cluster-critical" || len(pod.TopologySpreadConstraints) != 1 {
		t.Errorf("priority class %q, topology spread %+v", pod.PriorityClassName, pod.TopologySpreadConstraints)
	}
	if sa := objects["ServiceAccount/spire-federation-operator"]; sa == nil || sa.GetAnnotations()["example.com/role"] != "operator" {
		t.Errorf("ServiceAccount annotations: %v", sa)
	}
	mounts := map[string]string{}
	for _, mount := range container.VolumeMounts {
		mounts[mount.Name] = mount.MountPath
	}
	if mounts["ca-certificates"] != "/etc/spirefed/ca-certificates" || mounts["metrics-certs"] != "/etc/spirefed/metrics-certs" {
		t.Errorf("volume mounts %v", mounts)
	}
	if !slices.ContainsFunc(container.Env, func(env corev1.EnvVar) bool {
		return env.Name == "SSL_CERT_DIR" && env.Value == "/etc/spirefed/ca-certificates"
	}) {
		t.Errorf("SSL_CERT_DIR does not name the extra CAs: %+v", container.Env)
	}
	for _, want := range []string{"PodDisruptionBudget/spire-federation-operator", "NetworkPolicy/spire-federation-operator",
		"Service/spire-federation-operator-metrics", "ClusterRole/spire-federation-operator-metrics-reader", "ClusterRole/spire-federation-operator-metrics-auth"} {
		if objects[want] == nil {
			t.Errorf("no %s among %v", want, slices.Sorted(maps.Keys(objects)))
		}
	}

	defaults, err := renderChart(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if defaults["NetworkPolicy/spire-federation-operator"] != nil {
		t.Error("the NetworkPolicy is on by default")
	}
	defaultPod := deploymentOf(t, defaults).Spec.Template.Spec
	probes := defaultPod.Containers[0]
	if probes.LivenessProbe.HTTPGet.Port.StrVal != "health" || probes.ReadinessProbe.HTTPGet.Port.StrVal != "health" {
		t.Errorf("probes are not on the health port: %+v %+v", probes.LivenessProbe, probes.ReadinessProbe)
	}
}

// TestKustomizeMatchesChart renders config/default with kustomize and
// checks that its Deployment is the one the chart renders with its
// defaults, and that it ships the same supporting objects.
func TestKustomizeMatchesChart(t *testing.T) {
	repo, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(repo, "config", "default"))
	if err != nil {
		t.Fatalf("kustomize build config/default: %v", err)
	}
	manifest, err := resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	kustomized := objectsOf(t, string(manifest))
	charted, err := renderChart(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	fromKustomize, fromChart := deploymentOf(t, kustomized), deploymentOf(t, charted)
	if !equality.Semantic.DeepEqual(fromKustomize.Spec.Template.Spec, fromChart.Spec.Template.Spec) {
		a, _ := yaml.Marshal(fromKustomize.Spec.Template.Spec)
		b, _ := yaml.Marshal(fromChart.Spec.Template.Spec)
		t.Errorf("config/default's pod spec differs from the chart's:\n--- kustomize\n%s\n--- chart\n%s", a, b)
	}
	if *fromKustomize.Spec.Replicas != *fromChart.Spec.Replicas || !equality.Semantic.DeepEqual(fromKustomize.Spec.Selector, fromChart.Spec.Selector) {
		t.Errorf("replicas or selector differ: %d %+v, chart %d %+v", *fromKustomize.Spec.Replicas, fromKustomize.Spec.Selector, *fromChart.Spec.Replicas, fromChart.Spec.Selector)
	}
	for key := range charted {
		if _, ok := kustomized[key]; !ok {
			t.Errorf("the chart renders %s, config/default does not", key)
		}
	}
}
