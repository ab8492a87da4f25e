package spirehelm

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func helmZone(edit func(*spirefedv1alpha1.ZoneTrustDomain)) *spirefedv1alpha1.ZoneTrustDomain {
	zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{
		TrustDomain: "broker.example",
		ClusterName: "broker",
		Spire:       spirefedv1alpha1.SpireInstallation{Install: spirefedv1alpha1.SpireInstallHelm, Namespace: "spire-server", ReleaseName: "spire"},
		BundleEndpoint: spirefedv1alpha1.BundleEndpoint{
			URL: "https://spire-bundle.broker.example:9443", Profile: spirefedv1alpha1.ProfileHTTPSSPIFFE,
		},
	}}
	if edit != nil {
		edit(zone)
	}
	return zone
}

func withValues(values string) func(*spirefedv1alpha1.ZoneTrustDomain) {
	return func(zone *spirefedv1alpha1.ZoneTrustDomain) {
		zone.Spec.Spire.Values = &apiextensionsv1.JSON{Raw: []byte(values)}
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		zone    *spirefedv1alpha1.ZoneTrustDomain
		want    []string // JSON fragments of the merged values
		wantErr string
	}{
		{
			name: "operator values",
			zone: helmZone(nil),
			want: []string{`"trustDomain":"broker.example"`, `"clusterName":"broker"`, `"bundleConfigMap":"spire-bundle"`,
				`"bundleEndpoint":{"port":9443,"refreshHint":"5m"}`, `"enabled":true`, `"className":"spire-server-spire"`,
				`"k8sConfigMap":{"enabled":true,"format":"pem","namespace":"spire-server"}`, `"spire-agent":{"trustBundleFormat":"pem"}`,
				`"tls":{"spire":{"enabled":true}}`},
		},
		{
			name: "port defaults to the chart's when the URL names none; refresh hint from the spec",
			zone: helmZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
				zone.Spec.BundleEndpoint.URL = "https://spire-bundle.broker.example"
				zone.Spec.BundleEndpoint.RefreshHint = &metav1.Duration{Duration: 90 * time.Second}
			}),
			want: []string{`"bundleEndpoint":{"port":8443,"refreshHint":"1m30s"}`},
		},
		{
			name: "user values merge around the owned keys",
			zone: helmZone(withValues(`{"spire-server": {"logLevel": "debug", "federation": {"enabled": true}}, "spire-agent": {"logLevel": "warn"}}`)),
			want: []string{`"logLevel":"debug"`, `"spire-agent":{"logLevel":"warn","trustBundleFormat":"pem"}`, `"trustDomain":"broker.example"`},
		},
		{
			name:    "a conflicting owned key is refused",
			zone:    helmZone(withValues(`{"global": {"spire": {"trustDomain": "other.example"}}, "spire-server": {"controllerManager": {"className": "mine"}}}`)),
			wantErr: "global.spire.trustDomain (the operator sets broker.example), spire-server.controllerManager.className (the operator sets spire-server-spire)",
		},
		{
			name: "a bootstrap key the chart does not publish",
			zone: helmZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
				zone.Spec.BootstrapBundle.ConfigMap.Key = "bundle.spiffe"
			}),
			wantErr: `bootstrapBundle.configMap.key is "bundle.spiffe"`,
		},
		{
			name:    "values that are not an object",
			zone:    helmZone(withValues(`["a"]`)),
			wantErr: "not a JSON object",
		},
		{
			name: "https_web needs a certificate source",
			zone: helmZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
				zone.Spec.BundleEndpoint.Profile = spirefedv1alpha1.ProfileHTTPSWeb
			}),
			wantErr: "needs a Web PKI certificate",
		},
		{
			name: "https_web with cert-manager",
			zone: helmZone(func(zone *spirefedv1alpha1.ZoneTrustDomain) {
				zone.Spec.BundleEndpoint.Profile = spirefedv1alpha1.ProfileHTTPSWeb
				withValues(`{"spire-server": {"federation": {"tls": {"certManager": {"enabled": true}}}}}`)(zone)
			}),
			want: []string{`"tls":{"certManager":{"enabled":true},"spire":{"enabled":false}}`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			values, err := Values(c.zone)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			encoded, _ := json.Marshal(values)
			for _, fragment := range c.want {
				if !strings.Contains(string(encoded), fragment) {
					t.Errorf("values %s lack %s", encoded, fragment)
				}
			}
		})
	}
}

func TestDigestIgnoresNumberTypes(t *testing.T) {
	t.Parallel()
	ours := map[string]any{"port": int64(8443), "nested": map[string]any{"b": true, "a": "x"}}
	var stored map[string]any // as Helm reads values back from storage
	if err := json.Unmarshal([]byte(`{"nested": {"a": "x", "b": true}, "port": 8443}`), &stored); err != nil {
		t.Fatal(err)
	}
	if Digest("0.30.0", ours) != Digest("0.30.0", stored) {
		t.Error("the same values digest differently")
	}
	if Digest("0.30.0", ours) == Digest("0.31.0", ours) {
		t.Error("the chart version does not count")
	}
}

func TestOwnedKeys(t *testing.T) {
	t.Parallel()
	owned, err := OwnedValues(helmZone(nil))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(OwnedKeys(owned), " ")
	for _, key := range []string{"global.spire.trustDomain", "global.spire.clusterName", "spire-server.federation.bundleEndpoint.port", "spire-server.controllerManager.className"} {
		if !strings.Contains(got, key) {
			t.Errorf("owned keys %s lack %s", got, key)
		}
	}
}
