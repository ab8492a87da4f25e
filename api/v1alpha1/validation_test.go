package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// validZone is a ZoneTrustDomain that admission accepts; cases patch it.
const validZone = `
apiVersion: spirefed.io/v1alpha1
kind: ZoneTrustDomain
metadata: {name: z}
spec:
  trustDomain: zone1.example
  clusterName: zone1
  cluster: {kubeconfigSecretRef: {name: zone1-kubeconfig}}
  bundleEndpoint: {url: "https://bundle.zone1.example:8443"}
`

// validMesh is a FederationMesh that admission accepts; cases patch it.
const validMesh = `
apiVersion: spirefed.io/v1alpha1
kind: FederationMesh
metadata: {name: m}
spec:
  zones: {names: [a, b, c]}
  topology: {type: FullMesh}
`

// TestAdmission applies invalid objects to a real API server carrying the
// generated CRDs and checks that each is refused with a message naming the
// field; then it applies every sample.
func TestAdmission(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := testenv.StartForTest(ctx, t, testenv.Options{})
	c := env.Management.Client

	cases := []struct {
		name  string
		base  string
		patch string // YAML merged into base's spec
		want  []string
	}{
		{"trust domain not canonical", validZone, `trustDomain: Zone1.Example`, []string{"spec.trustDomain", "should match"}},
		{"trust domain with a trailing dot", validZone, `trustDomain: "a."`, []string{"spec.trustDomain", "should match"}},
		{"trust domain of dots", validZone, `trustDomain: ".."`, []string{"spec.trustDomain", "should match"}},
		{"trust domain with an empty label", validZone, `trustDomain: "a..b"`, []string{"spec.trustDomain", "should match"}},
		{"trust domain with a leading dot", validZone, `trustDomain: ".a"`, []string{"spec.trustDomain", "should match"}},
		{"trust domain in uppercase", validZone, `trustDomain: ZONE1`, []string{"spec.trustDomain", "should match"}},
		{"trust domain of 256 characters", validZone, "trustDomain: " + strings.Repeat("a", 256), []string{"spec.trustDomain", "Too long"}},
		{"endpoint SPIFFE ID with an empty trust domain label", validZone, `bundleEndpoint: {url: "https://b.example", endpointSPIFFEID: "spiffe://zone1..example/spire/server"}`, []string{"spec.bundleEndpoint.endpointSPIFFEID", "should match"}},
		{"no cluster access", validZone, `cluster: {kubeconfigSecretRef: null}`, []string{"spec.cluster", "set exactly one of cluster.kubeconfigSecretRef and cluster.local: true"}},
		{"two cluster accesses", validZone, `cluster: {local: true}`, []string{"spec.cluster", "set exactly one of cluster.kubeconfigSecretRef and cluster.local: true"}},
		{"kubeconfig secret name invalid", validZone, `cluster: {kubeconfigSecretRef: {name: "Bad_Name"}}`, []string{"spec.cluster.kubeconfigSecretRef.name"}},
		{"bundle endpoint over http", validZone, `bundleEndpoint: {url: "http://bundle.zone1.example"}`, []string{"spec.bundleEndpoint.url", "must be an https URL with a host"}},
		{"bundle endpoint not a URL", validZone, `bundleEndpoint: {url: "bundle.zone1.example"}`, []string{"spec.bundleEndpoint.url", "must be an https URL with a host"}},
		{"bundle endpoint with user information", validZone, `bundleEndpoint: {url: "https://user:pw@bundle.zone1.example"}`, []string{"spec.bundleEndpoint.url", "must not carry user information"}},
		{"unknown profile", validZone, `bundleEndpoint: {url: "https://b.example", profile: https_tofu}`, []string{"spec.bundleEndpoint.profile", "Unsupported value"}},
		{"endpoint SPIFFE ID with https_web", validZone, `bundleEndpoint: {url: "https://b.example", profile: https_web, endpointSPIFFEID: "spiffe://zone1.example/spire/server"}`, []string{"spec.bundleEndpoint", "endpointSPIFFEID is only allowed with profile https_spiffe"}},
		{"endpoint SPIFFE ID not a SPIFFE ID", validZone, `bundleEndpoint: {url: "https://b.example", endpointSPIFFEID: "https://zone1.example/server"}`, []string{"spec.bundleEndpoint.endpointSPIFFEID", "should match"}},
		{"external install without className", validZone, `spire: {install: External}`, []string{"spec.spire", "spire.className is required when spire.install is External"}},
		{"helm install with className", validZone, `spire: {install: Helm, className: mine}`, []string{"spec.spire", "spire.className is derived for Helm installs"}},
		{"unknown install mode", validZone, `spire: {install: Manual}`, []string{"spec.spire.install", "Unsupported value"}},
		{"chart repository not http or oci", validZone, `spire: {charts: {repository: "ftp://charts.example"}}`, []string{"spec.spire.charts.repository", "must be an http(s):// or oci:// URL"}},
		{"SPIRE server access by socket and exec", validZone, `spire: {serverAccess: {socket: {path: /run/spire/api.sock}, exec: {}}}`, []string{"spec.spire.serverAccess", "set exactly one of spire.serverAccess.socket and spire.serverAccess.exec"}},
		{"SPIRE server access by nothing", validZone, `spire: {serverAccess: {}}`, []string{"spec.spire.serverAccess", "set exactly one of spire.serverAccess.socket and spire.serverAccess.exec"}},
		{"SPIRE server socket path relative", validZone, `spire: {serverAccess: {socket: {path: api.sock}}}`, []string{"spec.spire.serverAccess.socket.path", "should match"}},
		{"SPIRE server exec command relative", validZone, `spire: {serverAccess: {exec: {command: spire-server}}}`, []string{"spec.spire.serverAccess.exec.command", "should match"}},
		{"charts from a repository and a ConfigMap", validZone, `spire: {charts: {repository: "https://charts.example", configMap: spire-charts}}`, []string{"spec.spire.charts", "set at most one of charts.repository and charts.configMap"}},
		{"unknown upgrade remediation", validZone, `spire: {upgradeRemediation: Uninstall}`, []string{"spec.spire.upgradeRemediation", "Unsupported value"}},
		{"unknown deletion policy", validZone, `spire: {deletionPolicy: Orphan}`, []string{"spec.spire.deletionPolicy", "Unsupported value"}},
		{"nested shape without children", validZone, `spire: {shape: Nested}`, []string{"spec.spire", "spire.nested is required for shape Nested and not allowed otherwise"}},
		{"nested children on a single shape", validZone, `spire: {nested: {children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}}]}}`, []string{"spec.spire", "spire.nested is required for shape Nested and not allowed otherwise"}},
		{"nested with no child", validZone, `spire: {shape: Nested, nested: {children: []}}`, []string{"spec.spire.nested.children", "should have at least 1 items"}},
		{"nested children with one name", validZone, `spire: {shape: Nested, nested: {children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}}, {name: a, cluster: {kubeconfigSecretRef: {name: b}}}]}}`, []string{"spec.spire.nested.children[1]", "Duplicate value"}},
		{"nested child without cluster access", validZone, `spire: {shape: Nested, nested: {children: [{name: a, cluster: {}}]}}`, []string{"spec.spire.nested.children[0].cluster", "set exactly one of cluster.kubeconfigSecretRef and cluster.local: true"}},
		{"nested child ID path without a leading slash", validZone, `spire: {shape: Nested, nested: {children: [{name: a, idPath: cluster-a, cluster: {kubeconfigSecretRef: {name: a}}}]}}`, []string{"spec.spire.nested.children[0].idPath", "should match"}},
		{"nested external child without className", validZone, `spire: {install: External, className: root, shape: Nested, nested: {children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}}]}}`, []string{"spec.spire", "spire.nested.children[].spire.className is required when spire.install is External"}},
		{"nested Helm install without the root's address", validZone, `spire: {shape: Nested, nested: {children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}, rootKubeconfigSecretRef: {name: a-root}}]}}`, []string{"spec.spire", "needs spire.nested.rootServerAddress and every child's rootKubeconfigSecretRef"}},
		{"nested Helm install without a child's root kubeconfig", validZone, `spire: {shape: Nested, nested: {rootServerAddress: spire-root.example, children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}}]}}`, []string{"spec.spire", "needs spire.nested.rootServerAddress and every child's rootKubeconfigSecretRef"}},
		{"HA Helm install with a side in another cluster", validZone, `spire: {shape: HA, ha: {a: {bundleEndpointURL: "https://a.example"}, b: {bundleEndpointURL: "https://b.example", cluster: {kubeconfigSecretRef: {name: b}}}}}`, []string{"spec.spire", "install Helm with shape HA installs both sides in spec.cluster"}},
		{"HA shape without sides", validZone, `spire: {shape: HA}`, []string{"spec.spire", "spire.ha is required for shape HA and not allowed otherwise"}},
		{"HA sides with one endpoint", validZone, `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {className: x}}, b: {bundleEndpointURL: "https://a.example", spire: {className: x}}}}`, []string{"spec.spire", "need their own bundleEndpointURL"}},
		{"HA side endpoint over http", validZone, `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "http://a.example", spire: {className: x}}, b: {bundleEndpointURL: "https://b.example", spire: {className: x}}}}`, []string{"spec.spire.ha.a.bundleEndpointURL", "must be an https URL with a host"}},
		{"HA external side without className", validZone, `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {className: x}}, b: {bundleEndpointURL: "https://b.example"}}}`, []string{"spec.spire", "spire.ha.a.spire.className and spire.ha.b.spire.className are required"}},
		{"HA external sides in one cluster with two classNames", validZone, `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {className: x}}, b: {bundleEndpointURL: "https://b.example", spire: {className: other}}}}`, []string{"spec.spire", "give spire.ha.a and spire.ha.b the same className"}},
		{"HA sides in one namespace of one cluster", validZone, `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {namespace: s, className: x}}, b: {bundleEndpointURL: "https://b.example", spire: {namespace: s, className: x}}}}`, []string{"spec.spire.ha", "HA sides in one cluster need different spire namespaces"}},
		{"zones by name and selector", validMesh, `zones: {names: [a], selector: {matchLabels: {tier: edge}}}`, []string{"spec.zones", "set exactly one of zones.names and zones.selector"}},
		{"no zones", validMesh, `zones: {names: null}`, []string{"spec.zones", "set exactly one of zones.names and zones.selector"}},
		{"duplicate zone names", validMesh, `zones: {names: [a, a]}`, []string{"spec.zones.names[1]", "Duplicate value"}},
		{"hub and spoke without hub", validMesh, `topology: {type: HubAndSpoke}`, []string{"spec.topology", "topology.hub is required for HubAndSpoke"}},
		{"full mesh with hub", validMesh, `topology: {type: FullMesh, hub: a}`, []string{"spec.topology", "topology.hub is required for HubAndSpoke and not allowed otherwise"}},
		{"hub not a member", validMesh, `topology: {type: HubAndSpoke, hub: z}`, []string{"spec.topology.hub", "topology.hub must be one of zones.names"}},
		{"explicit without links", validMesh, `topology: {type: Explicit}`, []string{"spec.topology", "topology.links is required for Explicit"}},
		{"links outside explicit", validMesh, `topology: {type: FullMesh, links: [{from: a, to: b}]}`, []string{"spec.topology", "topology.links is required for Explicit and not allowed otherwise"}},
		{"link to itself", validMesh, `topology: {type: Explicit, links: [{from: a, to: a}]}`, []string{"spec.topology.links[0]", "a link must join two different zones"}},
		{"duplicate link", validMesh, `topology: {type: Explicit, links: [{from: a, to: b}, {from: a, to: b}]}`, []string{"spec.topology.links[1]", "Duplicate value"}},
		{"link to a non-member", validMesh, `topology: {type: Explicit, links: [{from: a, to: z}]}`, []string{"spec.topology.links", "both ends of every topology.links entry must be in zones.names"}},
		{"unknown topology", validMesh, `topology: {type: Ring}`, []string{"spec.topology.type", "Unsupported value"}},
		{"duplicate identity", validMesh, `identities: [{name: w, spiffeIDTemplate: "spiffe://x/y"}, {name: w, spiffeIDTemplate: "spiffe://x/z"}]`, []string{"spec.identities[1]", "Duplicate value"}},
		{"identity without template", validMesh, `identities: [{name: w}]`, []string{"spec.identities[0].spiffeIDTemplate", "Required value"}},
		{"istio settings on kuma", validMesh, `meshIntegration: {type: Kuma, istio: {namespace: istio-system}}`, []string{"spec.meshIntegration", "meshIntegration.istio is only allowed with type Istio"}},
		{"unknown mesh", validMesh, `meshIntegration: {type: Linkerd}`, []string{"spec.meshIntegration.type", "Unsupported value"}},
		{"identity name reserved for the mesh workloads", validMesh, `{meshIntegration: {type: Istio}, identities: [{name: mesh-workloads, spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/x"}]}`, []string{"spec.identities", "reserved for the meshIntegration"}},
		{"istio revision not a name", validMesh, `meshIntegration: {type: Istio, istio: {revision: "1.30"}}`, []string{"spec.meshIntegration.istio.revision", "should match"}},
		{"kuma namespace not a name", validMesh, `meshIntegration: {type: Kuma, kuma: {namespace: Kuma_System}}`, []string{"spec.meshIntegration.kuma.namespace", "should match"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := patched(t, tc.base, tc.patch)
			err := c.Create(ctx, obj, client.DryRunAll)
			if err == nil {
				t.Fatalf("admission accepted the object; want an error naming %q", tc.want)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err.Error(), want)
				}
			}
		})
	}

	t.Run("canonical trust domains are admitted", func(t *testing.T) {
		for _, trustDomain := range []string{"default.zone1", "broker.example", "a_b-c.d", strings.Repeat("a", 255)} {
			zone := patched(t, validZone, "trustDomain: "+trustDomain)
			if err := c.Create(ctx, zone, client.DryRunAll); err != nil {
				t.Errorf("trust domain %q refused: %v", trustDomain, err)
			}
			if err := bundle.ValidTrustDomain(trustDomain); err != nil {
				t.Errorf("admitted trust domain %q refused by bundle.ValidTrustDomain: %v", trustDomain, err)
			}
		}
	})

	t.Run("trust domain is immutable", func(t *testing.T) {
		zone := patched(t, validZone, `{}`)
		zone.SetName("immutable")
		if err := c.Create(ctx, zone); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(zone.Object, "other.example", "spec", "trustDomain"); err != nil {
			t.Fatal(err)
		}
		err := c.Update(ctx, zone)
		if err == nil || !strings.Contains(err.Error(), "spec.trustDomain") || !strings.Contains(err.Error(), "trustDomain is immutable") {
			t.Fatalf("update of trustDomain: got %v, want an error naming spec.trustDomain", err)
		}
	})

	t.Run("the SPIRE namespace is immutable", func(t *testing.T) {
		zone := patched(t, validZone, `{}`)
		zone.SetName("helm-immutable")
		if err := c.Create(ctx, zone); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(zone.Object, "elsewhere", "spec", "spire", "namespace"); err != nil {
			t.Fatal(err)
		}
		err := c.Update(ctx, zone)
		if err == nil || !strings.Contains(err.Error(), "spec.spire.namespace") || !strings.Contains(err.Error(), "spire.namespace is immutable") {
			t.Fatalf("update of spire.namespace: got %v, want an error naming spec.spire.namespace", err)
		}
	})

	t.Run("nested and HA shapes are admitted", func(t *testing.T) {
		for name, patch := range map[string]string{
			"nested external":                         `spire: {install: External, className: root, shape: Nested, nested: {children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}, spire: {className: a, serverAccess: {socket: {path: /run/a.sock}}}}]}}`,
			"nested Helm":                             `spire: {shape: Nested, nested: {rootServerAddress: spire-root.example, children: [{name: a, cluster: {kubeconfigSecretRef: {name: a}}, rootKubeconfigSecretRef: {name: a-root}}]}}`,
			"HA Helm one cluster":                     `spire: {shape: HA, ha: {a: {bundleEndpointURL: "https://a.example"}, b: {bundleEndpointURL: "https://b.example"}}}`,
			"HA external one cluster":                 `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {className: x}}, b: {bundleEndpointURL: "https://b.example", spire: {className: x}}}}`,
			"HA external two clusters":                `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {className: a}}, b: {bundleEndpointURL: "https://b.example", cluster: {kubeconfigSecretRef: {name: b}}, spire: {className: b}}}}`,
			"HA external one cluster, two namespaces": `spire: {install: External, className: x, shape: HA, ha: {a: {bundleEndpointURL: "https://a.example", spire: {className: x, namespace: spire-a}}, b: {bundleEndpointURL: "https://b.example", spire: {className: x, namespace: spire-b}}}}`,
		} {
			if err := c.Create(ctx, patched(t, validZone, patch), client.DryRunAll); err != nil {
				t.Errorf("%s refused: %v", name, err)
			}
		}
	})

	t.Run("the shape is immutable", func(t *testing.T) {
		zone := patched(t, validZone, `spire: {install: External, className: x}`)
		zone.SetName("shape-immutable")
		if err := c.Create(ctx, zone); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(zone.Object, "HA", "spec", "spire", "shape"); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedMap(zone.Object, map[string]any{
			"a": map[string]any{"bundleEndpointURL": "https://a.example", "spire": map[string]any{"className": "x"}},
			"b": map[string]any{"bundleEndpointURL": "https://b.example", "spire": map[string]any{"className": "x"}},
		}, "spec", "spire", "ha"); err != nil {
			t.Fatal(err)
		}
		err := c.Update(ctx, zone)
		if err == nil || !strings.Contains(err.Error(), "spire.shape is immutable") {
			t.Fatalf("update of spire.shape: got %v, want spire.shape is immutable", err)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		zone := patched(t, validZone, `{}`)
		zone.SetName("defaults")
		if err := c.Create(ctx, zone); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]string{
			"spec.spire.install":                   "Helm",
			"spec.spire.namespace":                 "spire-server",
			"spec.spire.releaseName":               "spire",
			"spec.bundleEndpoint.profile":          "https_spiffe",
			"spec.cluster.kubeconfigSecretRef.key": "value",
			"spec.bootstrapBundle.configMap.name":  "spire-bundle",
			"spec.bootstrapBundle.configMap.key":   "bundle.crt",
		} {
			got, _, _ := unstructured.NestedString(zone.Object, strings.Split(path, ".")...)
			if got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
	})

	t.Run("samples", func(t *testing.T) {
		repo, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		samples, err := filepath.Glob(filepath.Join(repo, "config", "samples", "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		applied := 0
		for _, path := range samples {
			if filepath.Base(path) == "kustomization.yaml" {
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &obj.Object); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if err := c.Create(ctx, obj); err != nil {
				t.Errorf("sample %s refused: %v", filepath.Base(path), err)
			}
			applied++
		}
		if applied < 2 {
			t.Fatalf("found %d samples, want at least one per kind", applied)
		}
	})
}

// patched returns base with patch (YAML) merged into its spec, one level deep.
func patched(t *testing.T, base, patch string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(base), &obj.Object); err != nil {
		t.Fatal(err)
	}
	overrides := map[string]any{}
	if err := yaml.Unmarshal([]byte(patch), &overrides); err != nil {
		t.Fatal(err)
	}
	spec := obj.Object["spec"].(map[string]any)
	for key, value := range overrides {
		existing, isMap := spec[key].(map[string]any)
		update, updateIsMap := value.(map[string]any)
		if !isMap || !updateIsMap {
			spec[key] = value
			continue
		}
		for k, v := range update {
			if v == nil {
				delete(existing, k)
			} else {
				existing[k] = v
			}
		}
	}
	return obj
}
