package meshintegration

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Istio names.
const (
	// IstioMeshConfigName is the operator's shared mesh-config ConfigMap;
	// istiod reads it only when run with SHARED_MESH_CONFIG set to it.
	IstioMeshConfigName = "spirefed-mesh"
	// IstioMeshConfigKey is the ConfigMap key istiod reads.
	IstioMeshConfigKey = "mesh"
	// SharedMeshConfigEnv is istiod's environment variable naming the
	// shared mesh-config ConfigMap (pilot/pkg/bootstrap/mesh.go).
	SharedMeshConfigEnv = "SHARED_MESH_CONFIG"
	// PeerAuthenticationName is the mesh-wide PeerAuthentication, in the
	// root namespace.
	PeerAuthenticationName = "default"
	// IstioDefaultTrustDomain is what Istio's chart writes when
	// meshConfig.trustDomain is not set.
	IstioDefaultTrustDomain = "cluster.local"
	// InjectionTemplate and GatewayInjectionTemplate mount the SPIFFE CSI
	// driver's socket into sidecars and gateways.
	InjectionTemplate        = "spire"
	GatewayInjectionTemplate = "spire-gateway"
)

// MinIstioVersion is the oldest istiod that gives remote endpoints client
// SANs with their own trust domain (istio #58455, #59476).
var MinIstioVersion = [3]int{1, 29, 2}

// Istio install objects, by name.

// IstioMeshConfigMapName is the ConfigMap Istio's install renders its mesh
// config into: istio or istio-<revision>.
func IstioMeshConfigMapName(revision string) string { return "istio" + suffix(revision) }

// IstiodName is istiod's Deployment: istiod or istiod-<revision>.
func IstiodName(revision string) string { return "istiod" + suffix(revision) }

// InjectorConfigMapName is the sidecar injector's ConfigMap.
func InjectorConfigMapName(revision string) string {
	return "istio-sidecar-injector" + suffix(revision)
}

// IstioInstall is what the zone's Istio install holds; nil fields were not
// found.
type IstioInstall struct {
	MeshConfig *corev1.ConfigMap
	Istiod     *appsv1.Deployment
	Injector   *corev1.ConfigMap
}

// IstioSettings returns the Istio settings with their defaults.
func IstioSettings(integration *spirefedv1alpha1.MeshIntegration) spirefedv1alpha1.IstioIntegration {
	settings := spirefedv1alpha1.IstioIntegration{Namespace: "istio-system"}
	if integration.Istio != nil {
		settings = *integration.Istio
		if settings.Namespace == "" {
			settings.Namespace = "istio-system"
		}
	}
	return settings
}

// IstioObjects are the objects the operator writes in a zone for Istio:
// the shared mesh-config ConfigMap, and the STRICT PeerAuthentication on
// opt-in.
func IstioObjects(mesh string, integration *spirefedv1alpha1.MeshIntegration, zone Zone) ([]*unstructured.Unstructured, error) {
	settings := IstioSettings(integration)
	meshConfig, err := RenderMeshConfig(zone.Peers)
	if err != nil {
		return nil, fmt.Errorf("rendering the Istio mesh config of zone %s: %w", zone.Name, err)
	}
	configMap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   metadata(IstioMeshConfigName, settings.Namespace, Labels(mesh, zone.Name)),
		"data":       map[string]any{IstioMeshConfigKey: meshConfig},
	}}
	objects := []*unstructured.Unstructured{configMap}
	if settings.StrictMTLS {
		objects = append(objects, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "security.istio.io/v1",
			"kind":       "PeerAuthentication",
			"metadata":   metadata(PeerAuthenticationName, settings.Namespace, Labels(mesh, zone.Name)),
			"spec":       map[string]any{"mtls": map[string]any{"mode": "STRICT"}},
		}})
	}
	return objects, nil
}

func metadata(name, namespace string, labels map[string]string) map[string]any {
	objectLabels := make(map[string]any, len(labels))
	for key, value := range labels {
		objectLabels[key] = value
	}
	out := map[string]any{"name": name, "labels": objectLabels}
	if namespace != "" {
		out["namespace"] = namespace
	}
	return out
}

// certificateData is one caCertificates entry of Istio's MeshConfig.
type certificateData struct {
	PEM          string   `json:"pem"`
	TrustDomains []string `json:"trustDomains"`
}

// RenderMeshConfig renders the "mesh" key: one caCertificates entry per
// peer whose bundle is known ({pem, trustDomains: [peer]}), sorted by trust
// domain; "{}" without such a peer. Under SPIRE its effect is to add
// spiffe://<peer>/ to the SAN prefixes of inbound mTLS; the chain is
// trusted through SPIRE's ROOTCA. It never sets trustDomainAliases, which
// would merge identities in AuthorizationPolicy. The result is checked with
// ParseMeshConfig.
func RenderMeshConfig(peers []Peer) (string, error) {
	sorted := slices.Clone(peers)
	slices.SortFunc(sorted, func(a, b Peer) int {
		if a.TrustDomain < b.TrustDomain {
			return -1
		}
		if a.TrustDomain > b.TrustDomain {
			return 1
		}
		return 0
	})
	var entries []certificateData
	for _, peer := range sorted {
		if peer.X509PEM == "" {
			continue
		}
		entries = append(entries, certificateData{PEM: peer.X509PEM, TrustDomains: []string{peer.TrustDomain}})
	}
	if len(entries) == 0 {
		return "{}\n", nil
	}
	out, err := yaml.Marshal(map[string]any{"caCertificates": entries})
	if err != nil {
		return "", err
	}
	if _, err := ParseMeshConfig(string(out)); err != nil {
		return "", err
	}
	return string(out), nil
}

// ParseMeshConfig parses a mesh config strictly, as istio.io/api's
// MeshConfig: an unknown field or a oneof clash is an error.
func ParseMeshConfig(text string) (*meshv1alpha1.MeshConfig, error) {
	document, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("mesh config is not YAML: %w", err)
	}
	config := &meshv1alpha1.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(document, config); err != nil {
		return nil, fmt.Errorf("mesh config is not an Istio MeshConfig: %w", err)
	}
	return config, nil
}

// primaryMeshConfig is what the operator reads of the istio[-rev]
// ConfigMap's mesh config.
type primaryMeshConfig struct {
	TrustDomain    string `json:"trustDomain"`
	CACertificates []any  `json:"caCertificates"`
}

func readPrimaryMeshConfig(configMap *corev1.ConfigMap) (primaryMeshConfig, error) {
	var meshConfig primaryMeshConfig
	if err := yaml.Unmarshal([]byte(configMap.Data[IstioMeshConfigKey]), &meshConfig); err != nil {
		return meshConfig, fmt.Errorf("reading key %s of ConfigMap %s/%s: %w", IstioMeshConfigKey, configMap.Namespace, configMap.Name, err)
	}
	if meshConfig.TrustDomain == "" {
		meshConfig.TrustDomain = IstioDefaultTrustDomain
	}
	return meshConfig, nil
}

// IstioTrustDomain reads meshConfig.trustDomain from the istio[-rev]
// ConfigMap, with Istio's default.
func IstioTrustDomain(configMap *corev1.ConfigMap) (string, error) {
	meshConfig, err := readPrimaryMeshConfig(configMap)
	return meshConfig.TrustDomain, err
}

// InjectionTemplates lists the templates of the sidecar injector's
// ConfigMap (key "config").
func InjectionTemplates(configMap *corev1.ConfigMap) ([]string, error) {
	var config struct {
		Templates map[string]any `json:"templates"`
	}
	if err := yaml.Unmarshal([]byte(configMap.Data["config"]), &config); err != nil {
		return nil, fmt.Errorf("reading key config of ConfigMap %s/%s: %w", configMap.Namespace, configMap.Name, err)
	}
	names := make([]string, 0, len(config.Templates))
	for name := range config.Templates {
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// istiodEnv is the value of an environment variable of istiod's discovery
// container, and whether it is set.
func istiodEnv(istiod *appsv1.Deployment, name string) (string, bool) {
	for _, container := range istiod.Spec.Template.Spec.Containers {
		if container.Name != "discovery" && len(istiod.Spec.Template.Spec.Containers) > 1 {
			continue
		}
		for _, env := range container.Env {
			if env.Name == name {
				return env.Value, true
			}
		}
	}
	return "", false
}

// istiodImage is the image of istiod's discovery container.
func istiodImage(istiod *appsv1.Deployment) string {
	for _, container := range istiod.Spec.Template.Spec.Containers {
		if container.Name == "discovery" || len(istiod.Spec.Template.Spec.Containers) == 1 {
			return container.Image
		}
	}
	return ""
}

var imageVersion = regexp.MustCompile(`:(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.-]*)?(?:@sha256:[0-9a-f]+)?$`)

// ImageVersion reads major.minor.patch from an image tag such as
// "docker.io/istio/pilot:1.30.3-distroless"; false when the tag names no
// version (a digest only, "latest", a dev build).
func ImageVersion(image string) ([3]int, bool) {
	match := imageVersion.FindStringSubmatch(image)
	if match == nil {
		return [3]int{}, false
	}
	var version [3]int
	for i := range version {
		n, err := strconv.Atoi(match[i+1])
		if err != nil {
			return [3]int{}, false
		}
		version[i] = n
	}
	return version, true
}

func olderThan(version, minimum [3]int) bool {
	for i := range version {
		if version[i] != minimum[i] {
			return version[i] < minimum[i]
		}
	}
	return false
}

// checkIstio judges a zone's Istio install; each finding is a reason and
// an actionable message, in the order of the reasons' precedence.
func checkIstio(integration *spirefedv1alpha1.MeshIntegration, zone Zone, install IstioInstall) []finding {
	settings := IstioSettings(integration)
	revision := settings.Revision
	if install.MeshConfig == nil {
		return []finding{{spirefedv1alpha1.ReasonMeshNotInstalled, fmt.Sprintf(
			"Istio is not installed: ConfigMap %s/%s not found (install istiod with revision %q in namespace %s)",
			settings.Namespace, IstioMeshConfigMapName(revision), revision, settings.Namespace)}}
	}
	var findings []finding
	primary, err := readPrimaryMeshConfig(install.MeshConfig)
	switch {
	case err != nil:
		findings = append(findings, finding{spirefedv1alpha1.ReasonTrustDomainMismatch, err.Error()})
	case primary.TrustDomain != zone.TrustDomain:
		findings = append(findings, finding{spirefedv1alpha1.ReasonTrustDomainMismatch, fmt.Sprintf(
			"Istio's meshConfig.trustDomain is %q, the zone's SPIRE trust domain is %q: set meshConfig.trustDomain=%s in istiod's values",
			primary.TrustDomain, zone.TrustDomain, zone.TrustDomain)})
	}
	if len(primary.CACertificates) > 0 {
		// istiod merges the shared mesh config under the primary one: the
		// primary's caCertificates would replace the operator's.
		findings = append(findings, finding{spirefedv1alpha1.ReasonSharedMeshConfigNotWired, fmt.Sprintf(
			"ConfigMap %s/%s sets caCertificates, which replace the operator's: remove meshConfig.caCertificates from istiod's values",
			install.MeshConfig.Namespace, install.MeshConfig.Name)})
	}
	if install.Istiod == nil {
		findings = append(findings, finding{spirefedv1alpha1.ReasonMeshNotInstalled, fmt.Sprintf(
			"Deployment %s/%s not found", settings.Namespace, IstiodName(revision))})
	} else {
		if version, ok := ImageVersion(istiodImage(install.Istiod)); ok && olderThan(version, MinIstioVersion) {
			findings = append(findings, finding{spirefedv1alpha1.ReasonIstioTooOld, fmt.Sprintf(
				"istiod is %d.%d.%d; remote endpoints get SANs with the local trust domain before 1.29.2: upgrade Istio",
				version[0], version[1], version[2])})
		}
		if value, _ := istiodEnv(install.Istiod, SharedMeshConfigEnv); value != IstioMeshConfigName {
			findings = append(findings, finding{spirefedv1alpha1.ReasonSharedMeshConfigNotWired, fmt.Sprintf(
				"istiod %s/%s does not read the operator's mesh config: set pilot.env.%s=%s in istiod's values",
				settings.Namespace, IstiodName(revision), SharedMeshConfigEnv, IstioMeshConfigName)})
		}
	}
	if install.Injector == nil {
		findings = append(findings, finding{spirefedv1alpha1.ReasonInjectionTemplateMissing, fmt.Sprintf(
			"ConfigMap %s/%s not found", settings.Namespace, InjectorConfigMapName(revision))})
	} else {
		templates, err := InjectionTemplates(install.Injector)
		var missing []string
		for _, name := range []string{InjectionTemplate, GatewayInjectionTemplate} {
			if !slices.Contains(templates, name) {
				missing = append(missing, name)
			}
		}
		switch {
		case err != nil:
			findings = append(findings, finding{spirefedv1alpha1.ReasonInjectionTemplateMissing, err.Error()})
		case len(missing) > 0:
			findings = append(findings, finding{spirefedv1alpha1.ReasonInjectionTemplateMissing, fmt.Sprintf(
				"the sidecar injector has no template %s: add sidecarInjectorWebhook.templates %s (mounting csi.spiffe.io at /var/run/secrets/workload-spiffe-uds) to istiod's values",
				joinNames(missing), joinNames(missing))})
		}
	}
	return findings
}
