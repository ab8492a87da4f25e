package meshintegration

import (
	"reflect"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// apiVersions of the kinds the integration writes.
var apiVersions = map[string]string{
	"ConfigMap":          "v1",
	"PeerAuthentication": "security.istio.io/v1",
	"MeshIdentity":       KumaAPIVersion,
}

// ObjectKey names an object the integration may own in a zone.
type ObjectKey struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
}

// KeyOf returns an object's key.
func KeyOf(object *unstructured.Unstructured) ObjectKey {
	return ObjectKey{APIVersion: object.GetAPIVersion(), Kind: object.GetKind(), Namespace: object.GetNamespace(), Name: object.GetName()}
}

// Ref is the key as status shows it: "Kind namespace/name".
func (k ObjectKey) Ref() string { return ObjectRef(k.Kind, k.Namespace, k.Name) }

// Object is an empty object of the key, to Get or Delete.
func (k ObjectKey) Object() *unstructured.Unstructured {
	object := &unstructured.Unstructured{}
	object.SetAPIVersion(k.APIVersion)
	object.SetKind(k.Kind)
	object.SetNamespace(k.Namespace)
	object.SetName(k.Name)
	return object
}

// ParseRef reads a Ref back; false for a kind the integration never writes.
func ParseRef(ref string) (ObjectKey, bool) {
	kind, rest, ok := strings.Cut(ref, " ")
	apiVersion, known := apiVersions[kind]
	namespace, name, namespaced := strings.Cut(rest, "/")
	if !ok || !known || !namespaced || namespace == "" || name == "" {
		return ObjectKey{}, false
	}
	return ObjectKey{APIVersion: apiVersion, Kind: kind, Namespace: namespace, Name: name}, true
}

// Candidates are every object the integration could own in a zone under
// its current spec, written or not (so that turning strictMTLS off, or
// changing the type, prunes what was written).
func Candidates(integration *spirefedv1alpha1.MeshIntegration) []ObjectKey {
	if integration == nil {
		return nil
	}
	switch integration.Type {
	case spirefedv1alpha1.MeshIstio:
		namespace := IstioSettings(integration).Namespace
		return []ObjectKey{
			{APIVersion: "v1", Kind: "ConfigMap", Namespace: namespace, Name: IstioMeshConfigName},
			{APIVersion: apiVersions["PeerAuthentication"], Kind: "PeerAuthentication", Namespace: namespace, Name: PeerAuthenticationName},
		}
	case spirefedv1alpha1.MeshKuma:
		settings := KumaSettings(integration)
		return []ObjectKey{{APIVersion: KumaAPIVersion, Kind: "MeshIdentity", Namespace: settings.Namespace, Name: MeshIdentityName(settings.Mesh)}}
	}
	return nil
}

// Stale are the objects to remove from a zone: the candidates and the
// objects status says were written there, less the desired ones; sorted,
// without duplicates. Only those the mesh owns in the zone (Owned) may be
// deleted.
func Stale(desired []*unstructured.Unstructured, candidates []ObjectKey, written []string) []ObjectKey {
	keep := map[ObjectKey]bool{}
	for _, object := range desired {
		keep[KeyOf(object)] = true
	}
	seen := map[ObjectKey]bool{}
	var out []ObjectKey
	add := func(key ObjectKey) {
		if !keep[key] && !seen[key] {
			seen[key] = true
			out = append(out, key)
		}
	}
	for _, key := range candidates {
		add(key)
	}
	for _, ref := range written {
		if key, ok := ParseRef(ref); ok {
			add(key)
		}
	}
	slices.SortFunc(out, func(a, b ObjectKey) int { return strings.Compare(a.Ref(), b.Ref()) })
	return out
}

// Owner says who owns a live object: "" when it is the mesh's in the
// zone, else a description of its owner for a Conflict message.
func Owner(live *unstructured.Unstructured, mesh, zone string) string {
	labels := live.GetLabels()
	switch {
	case labels[plan.LabelManagedBy] != plan.ManagedBy:
		return "not the operator's"
	case labels[plan.LabelMesh] != mesh || labels[plan.LabelZone] != zone:
		return "the operator's for mesh " + labels[plan.LabelMesh] + " in zone " + labels[plan.LabelZone]
	}
	return ""
}

// UpToDate says whether live holds every label and every field of desired
// (fields the API server or the mesh add are ignored): then nothing is
// written.
func UpToDate(desired, live *unstructured.Unstructured) bool {
	for key, value := range desired.GetLabels() {
		if live.GetLabels()[key] != value {
			return false
		}
	}
	for key, value := range desired.Object {
		if key == "metadata" || key == "apiVersion" || key == "kind" {
			continue
		}
		if !covers(value, live.Object[key]) {
			return false
		}
	}
	return true
}

// covers: every map key of want is in got with a covering value; other
// values are equal.
func covers(want, got any) bool {
	wantMap, isMap := want.(map[string]any)
	if !isMap {
		return reflect.DeepEqual(want, got)
	}
	gotMap, ok := got.(map[string]any)
	if !ok {
		// An empty map may be dropped by the API server.
		return len(wantMap) == 0 && got == nil
	}
	for key, value := range wantMap {
		if !covers(value, gotMap[key]) {
			return false
		}
	}
	return true
}
