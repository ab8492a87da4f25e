package spirehelm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func nestedZone(edit func(*spirefedv1alpha1.ZoneTrustDomain)) *spirefedv1alpha1.ZoneTrustDomain {
	return helmZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
		zone.Spec.Spire.Shape = spirefedv1alpha1.ShapeNested
		zone.Spec.Spire.Nested = &spirefedv1alpha1.NestedSpire{
			RootServerAddress: "spire-root.broker.example",
			Children: []spirefedv1alpha1.NestedChild{
				{Name: "east", Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "east"}}},
				{Name: "west", Cluster: spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "west"}},
					Spire: spirefedv1alpha1.ClusterSpire{Namespace: "spire-west"}},
			},
		}
		if edit != nil {
			edit(zone)
		}
	})
}

func haZone(edit func(*spirefedv1alpha1.ZoneTrustDomain)) *spirefedv1alpha1.ZoneTrustDomain {
	return helmZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
		zone.Spec.Cluster = spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "prod"}}
		zone.Spec.Spire.Shape = spirefedv1alpha1.ShapeHA
		zone.Spec.Spire.HA = &spirefedv1alpha1.HASpire{
			A: spirefedv1alpha1.HASide{BundleEndpointURL: "https://spire-a.broker.example:8443"},
			B: spirefedv1alpha1.HASide{BundleEndpointURL: "https://spire-b.broker.example:9443"},
		}
		if edit != nil {
			edit(zone)
		}
	})
}

var rootKubeconfigs = map[string][]byte{"east": []byte("east-kubeconfig"), "west": []byte("west-kubeconfig")}

// describePlan renders a plan as "cluster/namespace/name tag crds after" lines.
func describePlan(planned []PlannedRelease) []string {
	var out []string
	for _, release := range planned {
		out = append(out, fmt.Sprintf("%s|%s|%s|%s|crds=%v|after=%v", release.Cluster, release.Namespace, release.Name, release.Tag, release.CRDs, release.After))
	}
	return out
}

func TestPlanReleases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		zone       *spirefedv1alpha1.ZoneTrustDomain
		kubeconfig map[string][]byte
		want       []string
		// values are JSON fragments each release's owned values hold, by index.
		values  map[int][]string
		absent  map[int][]string
		wantErr string
	}{
		{
			name: "single: no spire-nested release",
			zone: helmZone(nil),
		},
		{
			name:       "nested: the root first, then each child after it",
			zone:       nestedZone(nil),
			kubeconfig: rootKubeconfigs,
			want: []string{
				"root|spire-server|spire|nestedRoot|crds=true|after=[]",
				"east|spire-server|spire|nestedChildFull|crds=true|after=[root/spire]",
				"west|spire-west|spire|nestedChildFull|crds=true|after=[root/spire]",
			},
			values: map[int][]string{
				0: {`"tags":{"nestedRoot":true}`, `"trustDomain":"broker.example"`, `"clusterName":"broker"`,
					`"kubeConfigs":{"east":{"kubeConfigBase64":"ZWFzdC1rdWJlY29uZmln"},"west":{"kubeConfigBase64":"d2VzdC1rdWJlY29uZmln"}}`,
					`"internal-spire-server":{"controllerManager":{"className":"spire-server-spire"}}`,
					`"bundleEndpoint":{"port":9443,"refreshHint":"5m"}`, `"bundleConfigMap":"spire-bundle"`,
					`"k8sConfigMap":{"enabled":true,"format":"pem","namespace":"spire-server"}`,
					`"upstream-spire-agent":{"bundleConfigMap":"spire-bundle","trustBundleFormat":"pem"}`},
				1: {`"tags":{"nestedChildFull":true}`, `"clusterName":"east"`, `"upstreamSpireAddress":"spire-root.broker.example"`,
					`"className":"spire-server-spire"`},
				2: {`"clusterName":"west"`, `"className":"spire-west-spire"`},
			},
			absent: map[int][]string{1: {"kubeConfig", "federation"}},
		},
		{
			name:       "nested: a child without a kubeconfig is left out of the root's values",
			zone:       nestedZone(nil),
			kubeconfig: map[string][]byte{"east": []byte("east-kubeconfig")},
			want: []string{
				"root|spire-server|spire|nestedRoot|crds=true|after=[]",
				"east|spire-server|spire|nestedChildFull|crds=true|after=[root/spire]",
				"west|spire-west|spire|nestedChildFull|crds=true|after=[root/spire]",
			},
			values: map[int][]string{0: {`"kubeConfigs":{"east":{"kubeConfigBase64":"ZWFzdC1rdWJlY29uZmln"}}`}},
		},
		{
			name: "HA: the common part, then each side after it only",
			zone: haZone(nil),
			want: []string{
				"|spire-server|spire|haAgentCommon|crds=true|after=[]",
				"a|spire-server-a|spire-a|bottomTurtleHAA|crds=false|after=[/spire]",
				"b|spire-server-b|spire-b|bottomTurtleHAB|crds=false|after=[/spire]",
			},
			values: map[int][]string{
				0: {`"tags":{"haAgentCommon":true}`, `"trustDomain":"broker.example"`},
				1: {`"tags":{"bottomTurtleHAA":true}`, `"internal-spire-server-bottom-turtle-ha-a":{`, `"className":"spire-server-spire"`,
					`"bundleEndpoint":{"port":8443,"refreshHint":"5m"}`, `"downstream-spire-agent-bottom-turtle-ha-a":{"trustBundleFormat":"pem"}`},
				2: {`"tags":{"bottomTurtleHAB":true}`, `"internal-spire-server-bottom-turtle-ha-b":{`, `"className":"spire-server-spire"`,
					`"bundleEndpoint":{"port":9443,"refreshHint":"5m"}`},
			},
			absent: map[int][]string{0: {"bottom-turtle"}, 1: {"ha-b"}, 2: {"ha-a"}},
		},
		{
			name: "HA: a side in another cluster is refused",
			zone: haZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
				zone.Spec.Spire.HA.B.Cluster = &spirefedv1alpha1.ClusterAccess{KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: "other"}}
			}),
			wantErr: "HA side b is in another cluster",
		},
		{
			name:    "HA: a side's release name too long",
			zone:    haZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) { zone.Spec.Spire.ReleaseName = strings.Repeat("r", 52) }),
			wantErr: "longer than 53 characters",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			planned, err := PlanReleases(tc.zone, tc.kubeconfig)
			if tc.wantErr != "" {
				var valuesErr *ValuesError
				if !errors.As(err, &valuesErr) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want a ValuesError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describePlan(planned); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for i, fragments := range tc.values {
				encoded, _ := json.Marshal(planned[i].Values)
				for _, fragment := range fragments {
					if !strings.Contains(string(encoded), fragment) {
						t.Errorf("release %d values %s lack %s", i, encoded, fragment)
					}
				}
			}
			for i, fragments := range tc.absent {
				encoded, _ := json.Marshal(planned[i].Values)
				for _, fragment := range fragments {
					if strings.Contains(string(encoded), fragment) {
						t.Errorf("release %d values %s hold %s", i, encoded, fragment)
					}
				}
			}
		})
	}
}

func TestPlannedValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		zone    *spirefedv1alpha1.ZoneTrustDomain
		want    map[int][]string
		wantErr string
		secret  string // must not appear in the error
	}{
		{
			name: "the user's values go to every release under the operator's",
			zone: nestedZone(withValues(`{"global": {"spire": {"caSubject": {"organization": "Broker"}}}, "root-spire-server": {"logLevel": "debug"}}`)),
			want: map[int][]string{
				0: {`"organization":"Broker"`, `"logLevel":"debug"`, `"trustDomain":"broker.example"`},
				1: {`"organization":"Broker"`, `"clusterName":"east"`},
			},
		},
		{
			name:    "a user value at an owned key is refused, naming the release",
			zone:    nestedZone(withValues(`{"global": {"spire": {"upstreamSpireAddress": "elsewhere.example"}}}`)),
			wantErr: "release spire: global.spire.upstreamSpireAddress (the operator sets spire-root.broker.example)",
		},
		{
			name:    "a tag the operator sets cannot be turned off",
			zone:    haZone(withValues(`{"tags": {"haAgentCommon": false}}`)),
			wantErr: "tags.haAgentCommon",
		},
		{
			name:    "a kubeconfig the operator sets is refused without repeating it",
			zone:    nestedZone(withValues(`{"external-spire-server": {"kubeConfigs": {"east": {"kubeConfigBase64": "c2VjcmV0"}}}}`)),
			wantErr: "external-spire-server.kubeConfigs.east.kubeConfigBase64 (the operator sets it from the child's rootKubeconfigSecretRef)",
			secret:  "ZWFzdC1rdWJlY29uZmln",
		},
		{
			name: "the bootstrap key must be the chart's",
			zone: nestedZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
				zone.Spec.BootstrapBundle.ConfigMap.Key = "bundle.pem"
			}),
			wantErr: `bootstrapBundle.configMap.key is "bundle.pem"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			planned, err := PlanReleases(tc.zone, rootKubeconfigs)
			if err != nil {
				t.Fatal(err)
			}
			values, err := PlannedValues(tc.zone, planned)
			if tc.wantErr != "" {
				var valuesErr *ValuesError
				if !errors.As(err, &valuesErr) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want a ValuesError containing %q", err, tc.wantErr)
				}
				if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
					t.Errorf("error %q repeats a kubeconfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, fragments := range tc.want {
				encoded, _ := json.Marshal(values[i])
				for _, fragment := range fragments {
					if !strings.Contains(string(encoded), fragment) {
						t.Errorf("release %d values %s lack %s", i, encoded, fragment)
					}
				}
			}
		})
	}
}
