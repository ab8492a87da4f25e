package spirehelm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Default chart versions: the upstream helm-charts-hardened charts.
const (
	DefaultRepository   = "https://spiffe.github.io/helm-charts-hardened/"
	DefaultSpireVersion = "0.30.0"
	DefaultCRDsVersion  = "0.6.0"
	// defaultBundlePort is the chart's bundle endpoint port, used when the
	// zone's bundle endpoint URL names none.
	defaultBundlePort = 8443
	// bootstrapKey is where the chart's bundle publisher puts PEM bundles.
	bootstrapKey = "bundle.crt"
)

// ValuesError says why the user's values cannot be used.
type ValuesError struct{ Message string }

func (e *ValuesError) Error() string { return e.Message }

// bundleEndpointPort is the port a bundle endpoint URL names, or the
// chart's default; a URL that does not parse is a *ValuesError.
func bundleEndpointPort(endpointURL string) (int, error) {
	endpoint, err := url.Parse(endpointURL)
	if err != nil {
		return 0, &ValuesError{Message: fmt.Sprintf("bundle endpoint URL %q: %v", endpointURL, err)}
	}
	explicit := endpoint.Port()
	if explicit == "" {
		return defaultBundlePort, nil
	}
	port, err := strconv.Atoi(explicit)
	if err != nil {
		return 0, &ValuesError{Message: fmt.Sprintf("bundle endpoint URL %q port: %v", endpointURL, err)}
	}
	return port, nil
}

// refreshHintValue is the refresh hint the zone's bundle endpoint serves:
// spec.bundleEndpoint.refreshHint, else SPIRE's default of 5m.
func refreshHintValue(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	if hint := zone.Spec.BundleEndpoint.RefreshHint; hint != nil && hint.Duration > 0 {
		return hint.Duration.String()
	}
	return "5m"
}

// OwnedValues computes the spire chart values the operator owns for a zone:
// trust domain, cluster name, federation with the bundle endpoint's port,
// refresh hint and profile, the controller manager (its className is the
// chart's <namespace>-<release>) and the bundle ConfigMap the operator reads
// for bootstrap.
func OwnedValues(zone *spirefedv1alpha1.ZoneTrustDomain) (map[string]any, error) {
	federation, err := federationValues(zone, zone.Spec.BundleEndpoint.URL)
	if err != nil {
		return nil, err
	}
	bootstrap := zone.BootstrapConfigMap()
	return map[string]any{
		"global": map[string]any{
			"spire": map[string]any{
				"trustDomain":     zone.Spec.TrustDomain,
				"clusterName":     zone.Spec.ClusterName,
				"bundleConfigMap": bootstrap.Name,
			},
		},
		// The server publishes its X.509 authorities as PEM into the
		// bootstrap ConfigMap (key bundle.crt), and agents read them there.
		"spire-agent": map[string]any{
			"trustBundleFormat": "pem",
		},
		"spire-server": map[string]any{
			"bundleConfigMap": bootstrap.Name,
			"bundlePublisher": map[string]any{
				"k8sConfigMap": map[string]any{
					"enabled":   true,
					"format":    "pem",
					"namespace": bootstrap.Namespace,
				},
			},
			"federation": federation,
			"controllerManager": map[string]any{
				"enabled":   true,
				"className": zone.SpireClassName(),
			},
		},
	}, nil
}

// OwnedKeys lists, as dotted paths, the spire chart values the operator owns.
func OwnedKeys(owned map[string]any) []string {
	var keys []string
	walkLeaves(owned, nil, func(path []string, _ any) { keys = append(keys, strings.Join(path, ".")) })
	return keys
}

// Values merges the user's values over the operator's. A user value at a key
// the operator owns must equal the operator's; otherwise the result is a
// *ValuesError naming the key. https_web endpoints need the user to pick the
// chart's certificate source.
func Values(zone *spirefedv1alpha1.ZoneTrustDomain) (map[string]any, error) {
	return ValuesWith(zone, nil)
}

// ValuesWith is Values where the operator also owns extra, e.g. the SPIRE
// agent's SDS profile that the zone's service meshes need.
func ValuesWith(zone *spirefedv1alpha1.ZoneTrustDomain, extra map[string]any) (map[string]any, error) {
	owned, err := OwnedValues(zone)
	if err != nil {
		return nil, err
	}
	owned = mergeValues(owned, extra)
	if key := zone.BootstrapConfigMap().Key; key != bootstrapKey {
		return nil, &ValuesError{Message: fmt.Sprintf("bootstrapBundle.configMap.key is %q, but the chart publishes the bundle under %q", key, bootstrapKey)}
	}
	user := map[string]any{}
	if raw := zone.Spec.Spire.Values; raw != nil && len(raw.Raw) > 0 {
		if err := json.Unmarshal(raw.Raw, &user); err != nil {
			return nil, &ValuesError{Message: fmt.Sprintf("spire.values is not a JSON object: %v", err)}
		}
	}
	var conflicts []string
	walkLeaves(owned, nil, func(path []string, want any) {
		if got, set := lookup(user, path); set && !sameValue(got, want) {
			conflicts = append(conflicts, fmt.Sprintf("%s (the operator sets %v)", strings.Join(path, "."), want))
		}
	})
	if len(conflicts) > 0 {
		return nil, &ValuesError{Message: "spire.values sets keys the operator owns: " + strings.Join(conflicts, ", ")}
	}
	merged := mergeValues(user, owned)
	if zone.Spec.BundleEndpoint.Profile == spirefedv1alpha1.ProfileHTTPSWeb {
		external, _ := lookup(merged, []string{"spire-server", "federation", "tls", "externalSecret", "enabled"})
		certManager, _ := lookup(merged, []string{"spire-server", "federation", "tls", "certManager", "enabled"})
		if external != true && certManager != true {
			return nil, &ValuesError{Message: "an https_web bundle endpoint needs a Web PKI certificate: enable spire-server.federation.tls.externalSecret or spire-server.federation.tls.certManager in spire.values"}
		}
	}
	return merged, nil
}

// SpecDigest is the SHA-256 of everything that selects a Helm install:
// chart source, versions and values. A failure is retried with backoff
// only while it stays the same.
func SpecDigest(source, spireVersion, crdsVersion string, values map[string]any) string {
	return Digest(source+"|"+spireVersion+"|"+crdsVersion, values)
}

// Digest is the SHA-256 of a chart version and values, as status shows it.
func Digest(chartVersion string, values map[string]any) string {
	data, err := json.Marshal(map[string]any{"chart": chartVersion, "values": values})
	if err != nil {
		// Values come from JSON; they always marshal.
		panic(fmt.Sprintf("marshalling values: %v", err))
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// mergeValues returns base with over merged in, recursively for maps.
func mergeValues(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for key, value := range base {
		out[key] = value
	}
	for key, value := range over {
		if overMap, ok := value.(map[string]any); ok {
			if baseMap, ok := out[key].(map[string]any); ok {
				out[key] = mergeValues(baseMap, overMap)
				continue
			}
		}
		out[key] = value
	}
	return out
}

func walkLeaves(values map[string]any, prefix []string, visit func(path []string, value any)) {
	for _, key := range slices.Sorted(maps.Keys(values)) {
		path := append(append([]string{}, prefix...), key)
		if nested, ok := values[key].(map[string]any); ok {
			walkLeaves(nested, path, visit)
			continue
		}
		visit(path, values[key])
	}
}

func lookup(values map[string]any, path []string) (any, bool) {
	var current any = values
	for _, key := range path {
		m, ok := current.(map[string]any)
		if !ok {
			return nil, false
		}
		if current, ok = m[key]; !ok {
			return nil, false
		}
	}
	return current, true
}

// sameValue compares a user's JSON value with an operator's Go value.
func sameValue(got, want any) bool {
	a, err1 := json.Marshal(got)
	b, err2 := json.Marshal(want)
	return err1 == nil && err2 == nil && string(a) == string(b)
}
