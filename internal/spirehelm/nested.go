package spirehelm

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// NestedChart is the upstream chart of nested and HA trust domains. It is
// released with the spire chart, at the same version.
const NestedChart = "spire-nested"

// Tags of the spire-nested chart, one per release.
const (
	TagNestedRoot      = "nestedRoot"
	TagNestedChildFull = "nestedChildFull"
	TagHAAgentCommon   = "haAgentCommon"
	TagHASideA         = "bottomTurtleHAA"
	TagHASideB         = "bottomTurtleHAB"
)

// maxReleaseName is Helm's limit on release names.
const maxReleaseName = 53

// PlannedRelease is one spire-nested release of a Nested or HA trust
// domain, in one of its clusters.
type PlannedRelease struct {
	// Cluster is the zones.Cluster name to install in: "root", a child's
	// name, "a" or "b"; "" is the zone's own cluster (spec.cluster).
	Cluster   string
	Namespace string
	Name      string
	// CRDs says whether the spire-crds release (CRDsReleaseName(Name))
	// goes first: once per cluster, with its first release.
	CRDs bool
	// Tag of the chart the release enables.
	Tag string
	// Values the operator owns for this release (the tag included).
	Values map[string]any
	// After are the Keys of the releases that must be ready before this
	// one is installed or upgraded.
	After []string
}

// Key names a planned release: cluster/name.
func (p PlannedRelease) Key() string { return p.Cluster + "/" + p.Name }

// PlanReleases lists the spire-nested releases of a Nested or HA trust
// domain, in the order the chart needs, with the values the operator owns
// for each:
//
//   - Nested: the root's release (tag nestedRoot) in spec.cluster, whose
//     external server's controller managers, node attestor and bundle
//     publisher reach every child through rootKubeconfigs (child name to
//     kubeconfig); then one release per child (tag nestedChildFull), each
//     after the root's, pointed at spire.nested.rootServerAddress.
//   - HA (both sides in spec.cluster): the common part (tag haAgentCommon:
//     spire-ha-agent, CSI driver), then side A and side B (tags
//     bottomTurtleHAA/B), each after the common part only, so that one
//     side never waits for the other.
//
// A child without a kubeconfig in rootKubeconfigs is left out of the
// root's values (callers check first; an uninstall needs none). Single
// zones have no planned release. It has no side effects.
func PlanReleases(zone *spirefedv1alpha1.ZoneTrustDomain, rootKubeconfigs map[string][]byte) ([]PlannedRelease, error) {
	spire := zone.Spec.Spire
	switch {
	case spire.Shape == spirefedv1alpha1.ShapeNested && spire.Nested != nil:
		return planNested(zone, rootKubeconfigs)
	case spire.Shape == spirefedv1alpha1.ShapeHA && spire.HA != nil:
		return planHA(zone)
	default:
		return nil, nil
	}
}

func planNested(zone *spirefedv1alpha1.ZoneTrustDomain, rootKubeconfigs map[string][]byte) ([]PlannedRelease, error) {
	federation, err := federationValues(zone, zone.Spec.BundleEndpoint.URL)
	if err != nil {
		return nil, err
	}
	bootstrap := zone.BootstrapConfigMap()
	kubeConfigs := map[string]any{}
	for _, child := range zone.Spec.Spire.Nested.Children {
		if kubeconfig, ok := rootKubeconfigs[child.Name]; ok {
			kubeConfigs[child.Name] = map[string]any{"kubeConfigBase64": base64.StdEncoding.EncodeToString(kubeconfig)}
		}
	}
	root := PlannedRelease{
		Cluster:   "root",
		Namespace: zone.Spec.Spire.Namespace,
		Name:      zone.Spec.Spire.ReleaseName,
		CRDs:      true,
		Tag:       TagNestedRoot,
		Values: map[string]any{
			"tags":   map[string]any{TagNestedRoot: true},
			"global": globalValues(zone.Spec.TrustDomain, zone.Spec.ClusterName, ""),
			// The root server owns the trust domain's CA and serves its
			// bundle endpoint; it publishes its authorities as PEM into the
			// bootstrap ConfigMap, where its agents read them too.
			"root-spire-server": map[string]any{
				"federation":      federation,
				"bundleConfigMap": bootstrap.Name,
				"bundlePublisher": map[string]any{
					"k8sConfigMap": map[string]any{"enabled": true, "format": "pem", "namespace": bootstrap.Namespace},
				},
			},
			"upstream-spire-agent": map[string]any{
				"bundleConfigMap":   bootstrap.Name,
				"trustBundleFormat": "pem",
			},
			// The root cluster's own workloads get their SVIDs from its
			// internal server: it serves the objects the operator writes
			// there, with the zone's className.
			"internal-spire-server": map[string]any{
				"controllerManager": map[string]any{"className": zone.SpireClassName()},
			},
			"external-spire-server": map[string]any{
				"kubeConfigs": kubeConfigs,
			},
		},
	}
	releases := []PlannedRelease{root}
	for _, cluster := range zones.Clusters(zone)[1:] {
		view := cluster.View
		releases = append(releases, PlannedRelease{
			Cluster:   cluster.Name,
			Namespace: view.Spec.Spire.Namespace,
			Name:      view.Spec.Spire.ReleaseName,
			CRDs:      true,
			Tag:       TagNestedChildFull,
			Values: map[string]any{
				"tags":   map[string]any{TagNestedChildFull: true},
				"global": globalValues(zone.Spec.TrustDomain, cluster.Name, zone.Spec.Spire.Nested.RootServerAddress),
				"internal-spire-server": map[string]any{
					"controllerManager": map[string]any{"className": view.SpireClassName()},
				},
			},
			After: []string{root.Key()},
		})
	}
	return releases, nil
}

func planHA(zone *spirefedv1alpha1.ZoneTrustDomain) ([]PlannedRelease, error) {
	common := PlannedRelease{
		Namespace: zone.Spec.Spire.Namespace,
		Name:      zone.Spec.Spire.ReleaseName,
		CRDs:      true,
		Tag:       TagHAAgentCommon,
		Values: map[string]any{
			"tags":   map[string]any{TagHAAgentCommon: true},
			"global": globalValues(zone.Spec.TrustDomain, zone.Spec.ClusterName, ""),
		},
	}
	releases := []PlannedRelease{common}
	for _, cluster := range zones.Clusters(zone) {
		if cluster.View.Spec.Cluster.KubeconfigSecretRef != nil && zone.Spec.Cluster.KubeconfigSecretRef != nil &&
			cluster.View.Spec.Cluster.KubeconfigSecretRef.Name != zone.Spec.Cluster.KubeconfigSecretRef.Name {
			return nil, &ValuesError{Message: fmt.Sprintf("HA side %s is in another cluster: install Helm installs both sides in spec.cluster", cluster.Name)}
		}
		tag, server, agent := TagHASideA, "internal-spire-server-bottom-turtle-ha-a", "downstream-spire-agent-bottom-turtle-ha-a"
		if cluster.Name == "b" {
			tag, server, agent = TagHASideB, "internal-spire-server-bottom-turtle-ha-b", "downstream-spire-agent-bottom-turtle-ha-b"
		}
		federation, err := federationValues(zone, cluster.View.Spec.BundleEndpoint.URL)
		if err != nil {
			return nil, err
		}
		name := zone.Spec.Spire.ReleaseName + "-" + cluster.Name
		if len(name) > maxReleaseName {
			return nil, &ValuesError{Message: fmt.Sprintf("release name %s of HA side %s is longer than %d characters: shorten spire.releaseName", name, cluster.Name, maxReleaseName)}
		}
		releases = append(releases, PlannedRelease{
			Cluster:   cluster.Name,
			Namespace: cluster.View.Spec.Spire.Namespace,
			Name:      name,
			Tag:       tag,
			Values: map[string]any{
				"tags":   map[string]any{tag: true},
				"global": globalValues(zone.Spec.TrustDomain, zone.Spec.ClusterName, ""),
				// Both sides' controller managers serve the zone's
				// className, so that they share the objects the operator
				// writes; each side serves its own bundle endpoint and
				// publishes its authorities as PEM for its agents.
				server: map[string]any{
					"controllerManager": map[string]any{"className": zone.SpireClassName()},
					"federation":        federation,
					"bundlePublisher": map[string]any{
						"k8sConfigMap": map[string]any{"enabled": true, "format": "pem"},
					},
				},
				agent: map[string]any{"trustBundleFormat": "pem"},
			},
			After: []string{common.Key()},
		})
	}
	return releases, nil
}

// globalValues are the chart's global.spire values of one release.
func globalValues(trustDomain, clusterName, upstreamAddress string) map[string]any {
	spire := map[string]any{"trustDomain": trustDomain, "clusterName": clusterName}
	if upstreamAddress != "" {
		spire["upstreamSpireAddress"] = upstreamAddress
	}
	return map[string]any{"spire": spire}
}

// federationValues enable a server's bundle endpoint on the port of
// endpointURL, with the zone's refresh hint and profile.
func federationValues(zone *spirefedv1alpha1.ZoneTrustDomain, endpointURL string) (map[string]any, error) {
	port, err := bundleEndpointPort(endpointURL)
	if err != nil {
		return nil, err
	}
	refreshHint := refreshHintValue(zone)
	return map[string]any{
		"enabled": true,
		"bundleEndpoint": map[string]any{
			"port":        int64(port),
			"refreshHint": refreshHint,
		},
		"tls": map[string]any{
			"spire": map[string]any{"enabled": zone.Spec.BundleEndpoint.Profile != spirefedv1alpha1.ProfileHTTPSWeb},
		},
	}, nil
}

// nestedWorkloadAgent is the spire-nested chart's alias of the SPIRE agent
// that serves a nested trust domain's workloads (in the root's cluster and
// in every child's), the agent a service mesh's proxies ask over SDS.
const nestedWorkloadAgent = "downstream-spire-agent-full"

// WithMeshValues adds a zone's service-mesh values (the spire chart's
// "spire-agent" SDS profile, from Lifecycle.MeshValues) to the planned
// releases whose chart runs a workload agent: a nested trust domain's root
// and children, under the spire-nested chart's alias of that agent. HA
// releases get none: their workloads are served by the spire-ha-agent,
// which has no SDS profile to set. It returns new releases and leaves
// planned as it was.
func WithMeshValues(planned []PlannedRelease, meshValues map[string]any) []PlannedRelease {
	agentValues, ok := meshValues["spire-agent"].(map[string]any)
	if !ok || len(agentValues) == 0 {
		return planned
	}
	out := make([]PlannedRelease, len(planned))
	for i, release := range planned {
		out[i] = release
		if release.Tag != TagNestedRoot && release.Tag != TagNestedChildFull {
			continue
		}
		out[i].Values = mergeValues(release.Values, map[string]any{nestedWorkloadAgent: copyValues(agentValues)})
	}
	return out
}

// copyValues copies a values tree, so that no two releases share a map.
func copyValues(values map[string]any) map[string]any {
	out := make(map[string]any, len(values))
	for key, value := range values {
		if nested, ok := value.(map[string]any); ok {
			value = copyValues(nested)
		}
		out[key] = value
	}
	return out
}

// PlannedValues merges the user's spire.values over each planned
// release's owned values (the same user values go to every release of the
// zone; keys of parts a release does not enable are ignored by the chart).
// A user value at an owned key must equal the operator's; otherwise the
// result is a *ValuesError naming the release and key.
func PlannedValues(zone *spirefedv1alpha1.ZoneTrustDomain, planned []PlannedRelease) ([]map[string]any, error) {
	if key := zone.BootstrapConfigMap().Key; key != bootstrapKey {
		return nil, &ValuesError{Message: fmt.Sprintf("bootstrapBundle.configMap.key is %q, but the chart publishes the bundle under %q", key, bootstrapKey)}
	}
	out := make([]map[string]any, 0, len(planned))
	for _, release := range planned {
		user := map[string]any{}
		if raw := zone.Spec.Spire.Values; raw != nil && len(raw.Raw) > 0 {
			if err := json.Unmarshal(raw.Raw, &user); err != nil {
				return nil, &ValuesError{Message: fmt.Sprintf("spire.values is not a JSON object: %v", err)}
			}
		}
		var conflicts []string
		walkLeaves(release.Values, nil, func(path []string, want any) {
			if strings.HasPrefix(strings.Join(path, "."), "external-spire-server.kubeConfigs.") {
				// Credentials: never repeated in a message.
				if _, set := lookup(user, path); set {
					conflicts = append(conflicts, strings.Join(path, ".")+" (the operator sets it from the child's rootKubeconfigSecretRef)")
				}
				return
			}
			if got, set := lookup(user, path); set && !sameValue(got, want) {
				conflicts = append(conflicts, fmt.Sprintf("%s (the operator sets %v)", strings.Join(path, "."), want))
			}
		})
		if len(conflicts) > 0 {
			return nil, &ValuesError{Message: fmt.Sprintf("spire.values sets keys the operator owns in release %s: %s", release.Name, strings.Join(conflicts, ", "))}
		}
		out = append(out, mergeValues(user, release.Values))
	}
	return out, nil
}
