package meshintegration

import (
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Kuma names.
const (
	// KumaAPIVersion of Mesh and MeshIdentity.
	KumaAPIVersion = "kuma.io/v1alpha1"
	// KumaMeshLabel selects the Kuma mesh of a policy.
	KumaMeshLabel = "kuma.io/mesh"
	// KumaOriginLabel must be "zone" on objects created on a zone control
	// plane (Kuma's admission webhook).
	KumaOriginLabel = "kuma.io/origin"
	// KumaPathTemplate renders /ns/<ns>/sa/<sa>, the path of the
	// ClusterSPIFFEID the operator writes.
	KumaPathTemplate = "/ns/{{ .Namespace }}/sa/{{ .ServiceAccount }}"
	// MeshServicesExclusive is the Mesh's spec.meshServices.mode that
	// MeshIdentity requires (Kuma 2.12-2.14).
	MeshServicesExclusive = "Exclusive"
)

// MeshIdentityName is the operator's MeshIdentity for a Kuma mesh.
func MeshIdentityName(kumaMesh string) string { return "spirefed-" + kumaMesh }

// KumaSettings returns the Kuma settings with their defaults.
func KumaSettings(integration *spirefedv1alpha1.MeshIntegration) spirefedv1alpha1.KumaIntegration {
	settings := spirefedv1alpha1.KumaIntegration{Mesh: "default", Namespace: "kuma-system"}
	if integration.Kuma != nil {
		if integration.Kuma.Mesh != "" {
			settings.Mesh = integration.Kuma.Mesh
		}
		if integration.Kuma.Namespace != "" {
			settings.Namespace = integration.Kuma.Namespace
		}
	}
	return settings
}

// KumaObjects are the objects the operator writes on a zone control plane:
// one MeshIdentity with the Spire provider, the zone's trust domain as a
// literal and the path of the mesh workloads' ClusterSPIFFEID, for every
// dataplane of the mesh. No MeshTrust (the Spire provider validates peers
// with SPIRE's ALL bundle), no MeshProxyPatch, no MeshTrafficPermission.
func KumaObjects(mesh string, integration *spirefedv1alpha1.MeshIntegration, zone Zone) []*unstructured.Unstructured {
	settings := KumaSettings(integration)
	labels := Labels(mesh, zone.Name)
	maps.Copy(labels, map[string]string{KumaMeshLabel: settings.Mesh, KumaOriginLabel: "zone"})
	return []*unstructured.Unstructured{{Object: map[string]any{
		"apiVersion": KumaAPIVersion,
		"kind":       "MeshIdentity",
		"metadata":   metadata(MeshIdentityName(settings.Mesh), settings.Namespace, labels),
		"spec": map[string]any{
			"selector": map[string]any{"dataplane": map[string]any{"matchLabels": map[string]any{}}},
			"spiffeID": map[string]any{"trustDomain": zone.TrustDomain, "path": KumaPathTemplate},
			"provider": map[string]any{
				"type":  "Spire",
				"spire": map[string]any{"agent": map[string]any{"timeout": "1s"}},
			},
		},
	}}}
}

// KumaInstall is what the zone's Kuma control plane holds.
type KumaInstall struct {
	// MeshIdentityServed: the zone's API server serves MeshIdentity
	// (Kuma 2.12 or later).
	MeshIdentityServed bool
	// Mesh is the Kuma Mesh; nil when not found.
	Mesh *unstructured.Unstructured
	// MeshIdentity is the operator's MeshIdentity as the zone holds it;
	// nil when not found.
	MeshIdentity *unstructured.Unstructured
}

// checkKuma judges a zone's Kuma install.
func checkKuma(integration *spirefedv1alpha1.MeshIntegration, install KumaInstall) []finding {
	settings := KumaSettings(integration)
	if !install.MeshIdentityServed {
		return []finding{{spirefedv1alpha1.ReasonMeshNotInstalled,
			"Kuma 2.12 or later is not installed: the zone's API server does not serve kuma.io/v1alpha1 MeshIdentity"}}
	}
	if install.Mesh == nil {
		return []finding{{spirefedv1alpha1.ReasonMeshNotInstalled, fmt.Sprintf(
			"Kuma Mesh %s not found in the zone: create it on the global control plane (it syncs to the zones)", settings.Mesh)}}
	}
	var findings []finding
	if mode, _, _ := unstructured.NestedString(install.Mesh.Object, "spec", "meshServices", "mode"); mode != MeshServicesExclusive {
		findings = append(findings, finding{spirefedv1alpha1.ReasonMeshServicesNotExclusive, fmt.Sprintf(
			"Kuma Mesh %s has spec.meshServices.mode %q: set it to Exclusive on the global control plane (MeshIdentity needs it)", settings.Mesh, mode)})
	}
	if message, ready := meshIdentityReady(install.MeshIdentity); !ready {
		findings = append(findings, finding{spirefedv1alpha1.ReasonMeshIdentityNotReady, fmt.Sprintf(
			"MeshIdentity %s/%s: %s", settings.Namespace, MeshIdentityName(settings.Mesh), message)})
	}
	return findings
}

// meshIdentityReady reads the MeshIdentity's Ready condition.
func meshIdentityReady(identity *unstructured.Unstructured) (string, bool) {
	if identity == nil {
		return "not written yet", false
	}
	conditions, _, _ := unstructured.NestedSlice(identity.Object, "status", "conditions")
	for _, item := range conditions {
		condition, ok := item.(map[string]any)
		if !ok || condition["type"] != "Ready" {
			continue
		}
		if condition["status"] == "True" {
			return "", true
		}
		return fmt.Sprintf("Kuma reports it not Ready (%v: %v)", condition["reason"], condition["message"]), false
	}
	return "Kuma has not reported it Ready yet (is kuma-cp running in the zone?)", false
}
