package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/meshintegration"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// The sidecar whose configuration istiod generates in TestMeshIntegrationIstiod:
// Pod app-0 of Service demo (port 8080) in namespace demo.
const (
	sidecarNamespace = "demo"
	sidecarPod       = "app-0"
	sidecarIP        = "10.11.0.5"
	sidecarPort      = 8080
	listenerTypeURL  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	virtualInbound   = "virtualInbound"
)

// TestMeshIntegrationIstiod runs a real istiod (pilot-discovery, built by
// hack/tools.sh) against a zone's API server, wired as the README says
// (SHARED_MESH_CONFIG=spirefed-mesh, the istio ConfigMap's trustDomain is
// the zone's), and asks it for a sidecar's listeners over ADS as Envoy
// does: the SAN matchers of the inbound mTLS filter chains accept the
// peers' SPIFFE IDs, follow zones joining and leaving the mesh, the
// opt-in STRICT PeerAuthentication removes plaintext from the Service's
// port, and istiod logs no mesh-config error.
func TestMeshIntegrationIstiod(t *testing.T) {
	a := startFederationZone(t, "ist-a", "alpha")
	b := startFederationZone(t, "ist-b", "beta")
	c := startFederationZone(t, "ist-c", "gamma")

	// Istio's install in zone a, as its chart renders it for the zone: the
	// CRDs istiod reads mTLS settings from, its namespace and the primary
	// mesh config with the zone's trust domain.
	installMeshCRDs(t, a.cluster, "istio")
	ensureNamespace(t, a.cluster, "istio-system")
	createInZone(t, t, a.cluster, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: meshintegration.IstioMeshConfigMapName("")},
		Data:       map[string]string{meshintegration.IstioMeshConfigKey: "trustDomain: " + a.trustDomain() + "\n"},
	})
	createSidecarWorkload(t, a.cluster)

	istiod, err := env.StartIstiod(testCtx, testenv.IstiodOptions{
		Name:      "ist-a",
		Cluster:   a.cluster,
		Namespace: "istio-system",
		Env:       []string{meshintegration.SharedMeshConfigEnv + "=" + meshintegration.IstioMeshConfigName},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := istiod.Stop(); err != nil {
			t.Errorf("stopping istiod: %v", err)
		}
	})
	sidecar := connectSidecar(t, istiod.GRPCAddress)

	t.Run("before the mesh: only the zone's own trust domain", func(t *testing.T) {
		sidecar.waitForInboundSANPrefixes(t, a.trustDomain())
	})

	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "ist-mesh"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:           spirefedv1alpha1.ZoneSelection{Names: []string{a.name, b.name}},
			Topology:        spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
			MeshIntegration: &spirefedv1alpha1.MeshIntegration{Type: spirefedv1alpha1.MeshIstio},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { waitForDeletion(t, mesh) })

	t.Run("the peer's SPIFFE IDs are accepted", func(t *testing.T) {
		waitForSharedMeshConfig(t, a.cluster, map[string]string{b.trustDomain(): b.endpoint.bootstrapPEM()})
		sidecar.waitForInboundSANPrefixes(t, a.trustDomain(), b.trustDomain())
	})

	t.Run("a zone joining is accepted, and leaving is not", func(t *testing.T) {
		updateMeshNamed(t, mesh.Name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{a.name, b.name, c.name} })
		sidecar.waitForInboundSANPrefixes(t, a.trustDomain(), b.trustDomain(), c.trustDomain())
		updateMeshNamed(t, mesh.Name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.Zones.Names = []string{a.name, b.name} })
		sidecar.waitForInboundSANPrefixes(t, a.trustDomain(), b.trustDomain())
	})

	t.Run("opt-in STRICT mTLS: the Service's port accepts only mTLS", func(t *testing.T) {
		sidecar.waitForPlaintext(t, true)
		updateMeshNamed(t, mesh.Name, func(m *spirefedv1alpha1.FederationMesh) {
			m.Spec.MeshIntegration.Istio = &spirefedv1alpha1.IstioIntegration{Namespace: "istio-system", StrictMTLS: true}
		})
		sidecar.waitForPlaintext(t, false)
		sidecar.waitForInboundSANPrefixes(t, a.trustDomain(), b.trustDomain())
		updateMeshNamed(t, mesh.Name, func(m *spirefedv1alpha1.FederationMesh) { m.Spec.MeshIntegration.Istio.StrictMTLS = false })
		sidecar.waitForPlaintext(t, true)
	})

	t.Run("istiod logged no mesh-config error", func(t *testing.T) {
		log, err := istiod.Log()
		if err != nil {
			t.Fatal(err)
		}
		if problems := meshConfigProblems(log); len(problems) > 0 {
			t.Errorf("istiod's log (%s) reports mesh-config problems:\n%s", istiod.LogPath, strings.Join(problems, "\n"))
		}
		// The shared mesh config was read at all: istiod logs the merged
		// mesh config at start, and each change.
		if !strings.Contains(log, "mesh configuration") {
			t.Errorf("istiod's log (%s) never mentions its mesh configuration", istiod.LogPath)
		}
	})
}

// meshConfigProblems returns the lines of istiod's log where it rejected
// or warned about a mesh config (pkg/config/mesh: "invalid mesh config",
// "warnings occurred during mesh validation"; pilot/pkg/trustbundle:
// "failed to update meshConfig"), or any error line about the mesh config.
func meshConfigProblems(log string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		lower := strings.ToLower(line)
		switch {
		case strings.Contains(lower, "invalid mesh config"),
			strings.Contains(lower, "mesh validation"),
			strings.Contains(lower, "failed to update meshconfig"),
			strings.Contains(lower, "\terror\t") && strings.Contains(lower, "mesh"):
			out = append(out, line)
		}
	}
	return out
}

// createSidecarWorkload creates what a cluster holds for the sidecar: its
// namespace, Service, running Pod and EndpointSlice (envtest runs no
// kubelet and no endpoint controller, so the test writes them).
func createSidecarWorkload(t *testing.T, cluster *testenv.Cluster) {
	t.Helper()
	ensureNamespace(t, cluster, sidecarNamespace)
	labels := map[string]string{"app": "demo"}
	createInZone(t, t, cluster, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sidecarNamespace, Name: "app"}})
	createInZone(t, t, cluster, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: sidecarNamespace, Name: "demo"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: sidecarPort, TargetPort: intstr.FromInt32(sidecarPort), Protocol: corev1.ProtocolTCP}},
		},
	})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: sidecarNamespace, Name: sidecarPod, Labels: labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: sidecarPort}}}},
		},
	}
	createInZone(t, t, cluster, pod)
	updateStatusInZone(t, cluster, pod, func() {
		pod.Status = corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      sidecarIP,
			PodIPs:     []corev1.PodIP{{IP: sidecarIP}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		}
	})
	createInZone(t, t, cluster, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: sidecarNamespace, Name: "demo-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "demo", discoveryv1.LabelManagedBy: "spirefed-test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{sidecarIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: sidecarNamespace, Name: sidecarPod},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](sidecarPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	})
}

// sidecarClient is an ADS stream to istiod as an Envoy sidecar opens it,
// watching listeners: every response is ACKed, and the SAN prefixes of the
// inbound mTLS filter chains of the last one are kept.
type sidecarClient struct {
	mu      sync.Mutex
	inbound map[string][]string // filter chain -> SAN prefixes
	// plaintext counts the inbound filter chains of the Service's port
	// without TLS (PERMISSIVE mode has them, STRICT has none).
	plaintext int
	received  int
	err       error
}

// connectSidecar opens the stream until the test ends.
func connectSidecar(t *testing.T, address string) *sidecarClient {
	t.Helper()
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx)
	t.Cleanup(func() {
		cancel()
		conn.Close()
	})
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := sidecarNode(t)
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: listenerTypeURL}); err != nil {
		t.Fatal(err)
	}
	client := &sidecarClient{}
	go client.receive(stream)
	return client
}

// sidecarNode is the Envoy node of the Pod's sidecar, with the metadata
// istio-agent sends (pkg/model/proxy.go NodeMetadata).
func sidecarNode(t *testing.T) *corev3.Node {
	t.Helper()
	metadata, err := structpb.NewStruct(map[string]any{
		"NAMESPACE":         sidecarNamespace,
		"NAME":              sidecarPod,
		"SERVICE_ACCOUNT":   "app",
		"CLUSTER_ID":        "Kubernetes",
		"ISTIO_VERSION":     "1.31.0",
		"INSTANCE_IPS":      sidecarIP,
		"INTERCEPTION_MODE": "REDIRECT",
		"WORKLOAD_NAME":     "app",
		"LABELS":            map[string]any{"app": "demo"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{
		Id:            fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", sidecarIP, sidecarPod, sidecarNamespace, sidecarNamespace),
		Cluster:       "app." + sidecarNamespace,
		Metadata:      metadata,
		UserAgentName: "envoy",
	}
}

func (s *sidecarClient) receive(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) {
	for {
		response, err := stream.Recv()
		if err == nil {
			var inbound map[string][]string
			var plaintext int
			if inbound, plaintext, err = inboundSANPrefixes(response); err == nil {
				s.mu.Lock()
				s.inbound, s.plaintext, s.received = inbound, plaintext, s.received+1
				s.mu.Unlock()
				err = stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: listenerTypeURL,
					VersionInfo: response.GetVersionInfo(), ResponseNonce: response.GetNonce()})
			}
		}
		if err != nil {
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			return
		}
	}
}

// inboundSANPrefixes reads, from a listener response, the SAN prefix
// matchers of every mTLS filter chain of the virtualInbound listener, by
// filter chain name, and counts the chains of the Service's port without
// TLS.
func inboundSANPrefixes(response *discoveryv3.DiscoveryResponse) (map[string][]string, int, error) {
	out := map[string][]string{}
	plaintext := 0
	for _, resource := range response.GetResources() {
		listener := &listenerv3.Listener{}
		if err := resource.UnmarshalTo(listener); err != nil {
			return nil, 0, fmt.Errorf("reading a listener: %w", err)
		}
		if listener.GetName() != virtualInbound {
			continue
		}
		for _, chain := range listener.GetFilterChains() {
			socket := chain.GetTransportSocket()
			if socket == nil || socket.GetTypedConfig() == nil {
				if chain.GetFilterChainMatch().GetDestinationPort().GetValue() == sidecarPort {
					plaintext++
				}
				continue
			}
			tlsContext := &tlsv3.DownstreamTlsContext{}
			if err := socket.GetTypedConfig().UnmarshalTo(tlsContext); err != nil {
				return nil, 0, fmt.Errorf("reading the TLS context of filter chain %s: %w", chain.GetName(), err)
			}
			validation := tlsContext.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext()
			var prefixes []string
			for _, matcher := range validation.GetMatchSubjectAltNames() {
				if prefix := matcher.GetPrefix(); prefix != "" {
					prefixes = append(prefixes, prefix)
				}
			}
			slices.Sort(prefixes)
			name := fmt.Sprintf("%s (port %d)", chain.GetName(), chain.GetFilterChainMatch().GetDestinationPort().GetValue())
			out[name] = prefixes
		}
	}
	return out, plaintext, nil
}

// waitForPlaintext waits until the Service's port accepts plaintext
// (PERMISSIVE) or only mTLS (STRICT).
func (s *sidecarClient) waitForPlaintext(t *testing.T, accepted bool) {
	t.Helper()
	deadline := testDeadline(60)
	for {
		s.mu.Lock()
		plaintext, received, err := s.plaintext, s.received, s.err
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("the sidecar's ADS stream ended: %v", err)
		}
		if (plaintext > 0) == accepted {
			return
		}
		if deadline() {
			t.Fatalf("after %d listener responses from istiod: %d plaintext filter chains on port %d, want plaintext accepted: %v", received, plaintext, sidecarPort, accepted)
		}
	}
}

// waitForInboundSANPrefixes waits until every inbound mTLS filter chain,
// among them one for the Service's port, accepts exactly the SPIFFE IDs
// of the trust domains: spiffe://<td>/ prefixes.
func (s *sidecarClient) waitForInboundSANPrefixes(t *testing.T, trustDomains ...string) {
	t.Helper()
	var want []string
	for _, trustDomain := range trustDomains {
		want = append(want, "spiffe://"+trustDomain+"/")
	}
	slices.Sort(want)
	deadline := testDeadline(60)
	for {
		s.mu.Lock()
		inbound, received, err := s.inbound, s.received, s.err
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("the sidecar's ADS stream ended: %v", err)
		}
		problem := inboundProblem(inbound, want)
		if problem == "" {
			return
		}
		if deadline() {
			t.Fatalf("after %d listener responses from istiod: %s", received, problem)
		}
	}
}

// inboundProblem says how the inbound mTLS filter chains differ from
// accepting exactly the SAN prefixes want; "" when they do not.
func inboundProblem(inbound map[string][]string, want []string) string {
	if len(inbound) == 0 {
		return "no mTLS filter chain in listener " + virtualInbound
	}
	servicePort := false
	for name, prefixes := range inbound {
		if !slices.Equal(prefixes, want) {
			return fmt.Sprintf("filter chain %s accepts SAN prefixes %v, want %v", name, prefixes, want)
		}
		servicePort = servicePort || strings.HasSuffix(name, fmt.Sprintf("(port %d)", sidecarPort))
	}
	if !servicePort {
		return fmt.Sprintf("no mTLS filter chain for the Service's port %d among %v", sidecarPort, mapKeys(inbound))
	}
	return ""
}

func mapKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for key := range m {
		out = append(out, key)
	}
	slices.Sort(out)
	return out
}

// updateStatusInZone writes an object's status subresource in a zone's
// cluster after change, retrying on conflicts.
func updateStatusInZone(t *testing.T, cluster *testenv.Cluster, object client.Object, change func()) {
	t.Helper()
	for {
		if err := cluster.Client.Get(testCtx, client.ObjectKeyFromObject(object), object); err != nil {
			t.Fatal(err)
		}
		change()
		err := cluster.Client.Status().Update(testCtx, object)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

// TestMeshConfigProblems: the log check of TestMeshIntegrationIstiod finds
// the lines istiod writes when it rejects or doubts a mesh config.
func TestMeshConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"2026-11-30T04:48:35.574935Z\tinfo\tmesh configuration: connectTimeout: 10s", false},
		{"2026-11-30T04:48:35.641946Z\twarn\tPILOT_CERT_PROVIDER=none is not implemented", false},
		{"2026-11-30T04:48:35.000000Z\twarn\tinvalid mesh config, ignoring: 1 error occurred", true},
		{"2026-11-30T04:48:35.000000Z\twarn\twarnings occurred during mesh validation: trustDomain is empty", true},
		{"2026-11-30T04:48:35.000000Z\terror\ttrustBundle\tfailed to update meshConfig PEM trustAnchors: bad pem", true},
		{"2026-11-30T04:48:35.000000Z\terror\tcannot read the shared mesh ConfigMap", true},
	} {
		if got := len(meshConfigProblems(tc.line)) > 0; got != tc.want {
			t.Errorf("%q: problem %v, want %v", tc.line, got, tc.want)
		}
	}
}
