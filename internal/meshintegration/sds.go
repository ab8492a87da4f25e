package meshintegration

import (
	"slices"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// SDS resource names under which a SPIRE agent serves all bundles
// (default_all_bundles_name).
const (
	// SDSAllBundlesIstio: Istio asks for ROOTCA and expects every trust
	// domain's bundle there.
	SDSAllBundlesIstio = "ROOTCA"
	// SDSAllBundlesKuma: Kuma asks for ALL (the SPIRE agent's default).
	SDSAllBundlesKuma = "ALL"
)

// SDSProfileFor is the name under which the mesh's proxies ask the SPIRE
// agent for all bundles.
func SDSProfileFor(meshType spirefedv1alpha1.MeshIntegrationType) string {
	if meshType == spirefedv1alpha1.MeshIstio {
		return SDSAllBundlesIstio
	}
	return SDSAllBundlesKuma
}

// HelmSDSValues are the spire chart values of the agent's SDS profile for
// a mesh type (the spire-agent subchart's "sds" block). Istio:
// default_svid_name "default", default_bundle_name "null" (so that
// ROOTCA is not the local bundle alone) and default_all_bundles_name
// "ROOTCA", as Istio's spire-trust-domain-federation sample. Kuma: the
// agent's defaults, written explicitly.
func HelmSDSValues(meshType spirefedv1alpha1.MeshIntegrationType) map[string]any {
	sds := map[string]any{"enabled": true, "defaultSVIDName": "default"}
	switch meshType {
	case spirefedv1alpha1.MeshIstio:
		sds["defaultBundleName"] = "null"
		sds["defaultAllBundlesName"] = SDSAllBundlesIstio
	default:
		sds["defaultBundleName"] = "ROOTCA"
		sds["defaultAllBundlesName"] = SDSAllBundlesKuma
	}
	return map[string]any{"spire-agent": map[string]any{"sds": sds}}
}

// Membership is a mesh with an integration and its member zones.
type Membership struct {
	Mesh  string
	Type  spirefedv1alpha1.MeshIntegrationType
	Zones []string
}

// SDSConflicts returns, for each zone of mesh, the other meshes that want
// the zone's SPIRE agent with another SDS profile: one agent cannot serve
// ROOTCA as all bundles for Istio and keep ALL for Kuma.
func SDSConflicts(mesh Membership, others []Membership) map[string][]string {
	out := map[string][]string{}
	want := SDSProfileFor(mesh.Type)
	for _, other := range others {
		if other.Mesh == mesh.Mesh || SDSProfileFor(other.Type) == want {
			continue
		}
		for _, zone := range other.Zones {
			if slices.Contains(mesh.Zones, zone) {
				out[zone] = append(out[zone], other.Mesh)
			}
		}
	}
	for zone := range out {
		slices.Sort(out[zone])
	}
	return out
}

// ZoneSDSProfile decides the SDS values of a Helm zone from the meshes it
// belongs to: nil without a mesh integration, nil (and conflict true) when
// the meshes need different profiles, else the values of their type.
func ZoneSDSProfile(types []spirefedv1alpha1.MeshIntegrationType) (values map[string]any, conflict bool) {
	if len(types) == 0 {
		return nil, false
	}
	for _, meshType := range types[1:] {
		if SDSProfileFor(meshType) != SDSProfileFor(types[0]) {
			return nil, true
		}
	}
	return HelmSDSValues(types[0]), false
}
