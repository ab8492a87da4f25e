package controllers

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// sdsTrustDomains asks a SPIRE agent's SDS v3 API, as Envoy does, for the
// validation context resource name, and returns the trust domains it holds
// with the SHA-256 fingerprints of their authorities.
func sdsTrustDomains(t *testing.T, socketPath, resourceName string) (map[string][]string, error) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(testCtx, 10*time.Second)
	defer cancel()
	response, err := secretv3.NewSecretDiscoveryServiceClient(conn).FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{
		ResourceNames: []string{resourceName},
		TypeUrl:       "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
		Node: &corev3.Node{Id: "sidecar~10.0.0.1~test~default.svc.cluster.local", UserAgentName: "envoy",
			UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
				Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 36}}}},
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, resource := range response.GetResources() {
		secret := &tlsv3.Secret{}
		if err := resource.UnmarshalTo(secret); err != nil {
			return nil, err
		}
		if secret.GetName() != resourceName {
			continue
		}
		validation := secret.GetValidationContext()
		if validation == nil {
			return nil, fmt.Errorf("secret %s has no validation context", secret.GetName())
		}
		if ca := validation.GetTrustedCa(); ca != nil {
			return nil, fmt.Errorf("secret %s holds one CA set (trusted_ca), not the SPIFFE validator's per-trust-domain bundles", secret.GetName())
		}
		config := &tlsv3.SPIFFECertValidatorConfig{}
		if err := validation.GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(config); err != nil {
			return nil, fmt.Errorf("secret %s: %w", secret.GetName(), err)
		}
		for _, trustDomain := range config.GetTrustDomains() {
			out[trustDomain.GetName()] = pemFingerprints(trustDomain.GetTrustBundle().GetInlineBytes())
		}
	}
	return out, nil
}

func pemFingerprints(data []byte) []string {
	var out []string
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			break
		}
		if _, err := x509.ParseCertificate(block.Bytes); err == nil {
			sum := sha256.Sum256(block.Bytes)
			out = append(out, hex.EncodeToString(sum[:]))
		}
	}
	slices.Sort(out)
	return out
}

// waitForSDS waits until an agent's SDS resource holds exactly the trust
// domains of want, each with (at least) the authorities listed.
func waitForSDS(t *testing.T, agent *testenv.SpireAgent, resourceName string, want map[string][]string) {
	t.Helper()
	deadline := testDeadline(60)
	for {
		got, err := sdsTrustDomains(t, agent.SocketPath, resourceName)
		problem := ""
		switch {
		case err != nil:
			problem = err.Error()
		case !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))):
			problem = fmt.Sprintf("trust domains %v", slices.Sorted(maps.Keys(got)))
		default:
			for trustDomain, fingerprints := range want {
				for _, fingerprint := range fingerprints {
					if !slices.Contains(got[trustDomain], fingerprint) {
						problem = fmt.Sprintf("%s lacks authority %s", trustDomain, fingerprint)
					}
				}
			}
		}
		if problem == "" {
			return
		}
		if deadline() {
			t.Fatalf("SDS %q of %s: %s; want %v", resourceName, agent.SocketPath, problem, want)
		}
	}
}

// TestMeshSDSWithSPIRE asks real SPIRE agents, over SDS v3 as Envoy does,
// for the bundles a mesh's proxies validate peers with: zone A's agent has
// Istio's profile (all bundles under ROOTCA), zone B's Kuma's (the
// default, ALL). Each holds the peer's current authorities once the mesh
// federates them, and the new authority after a rotation.
func TestMeshSDSWithSPIRE(t *testing.T) {
	istio := meshintegration.HelmSDSValues(spirefedv1alpha1.MeshIstio)["spire-agent"].(map[string]any)["sds"].(map[string]any)
	a := startSpireZoneWithSDS(t, "sds-a", "alpha", &testenv.AgentSDS{
		DefaultSVIDName:       istio["defaultSVIDName"].(string),
		DefaultBundleName:     istio["defaultBundleName"].(string),
		DefaultAllBundlesName: istio["defaultAllBundlesName"].(string),
	})
	b := startSpireZone(t, "sds-b", "beta")
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "sds"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			Identities: []spirefedv1alpha1.IdentityTemplate{{
				// This test process stands for the proxy, attested by each
				// zone's agent.
				Name:             "proxy",
				SPIFFEIDTemplate: "spiffe://{{ .TrustDomain }}/ns/default/sa/proxy",
				Static:           labStatic(),
			}},
		},
	}
	createMesh(t, mesh)
	waitForMeshCondition(t, "sds", spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "All 2 pairs are converged")

	tdA, tdB := a.server.TrustDomain, b.server.TrustDomain
	t.Run("Istio's ROOTCA and Kuma's ALL hold every peer", func(t *testing.T) {
		waitForSDS(t, a.agent, meshintegration.SDSAllBundlesIstio, map[string][]string{tdA: a.ownFingerprints(t), tdB: b.ownFingerprints(t)})
		waitForSDS(t, b.agent, meshintegration.SDSAllBundlesKuma, map[string][]string{tdA: a.ownFingerprints(t), tdB: b.ownFingerprints(t)})
		// Why one agent cannot serve both meshes: with Kuma's profile
		// (SPIRE's defaults) ROOTCA is the zone's own bundle alone, so
		// Istio's proxies there would trust no peer.
		waitForSDS(t, b.agent, meshintegration.SDSAllBundlesIstio, map[string][]string{tdB: b.ownFingerprints(t)})
	})

	t.Run("a rotation's new authority reaches the peer's proxies", func(t *testing.T) {
		before := b.ownFingerprints(t)
		if _, err := b.server.CLI(testCtx, "localauthority", "x509", "prepare"); err != nil {
			t.Fatal(err)
		}
		after := b.ownFingerprints(t)
		if len(after) != len(before)+1 {
			t.Fatalf("prepare did not add an authority: %d -> %d", len(before), len(after))
		}
		started := time.Now()
		waitForSDS(t, a.agent, meshintegration.SDSAllBundlesIstio, map[string][]string{tdA: a.ownFingerprints(t), tdB: after})
		t.Logf("the prepared authority of %s reached %s's SDS %s in %s (%s)", b.name, a.name, meshintegration.SDSAllBundlesIstio,
			time.Since(started).Round(10*time.Millisecond), strings.Join(after, ","))
	})
}
