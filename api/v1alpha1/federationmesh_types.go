package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FederationMeshSpec is a set of zones, the federation topology between them,
// the workload identities to place in every member zone, and the service
// mesh integration.
// +kubebuilder:validation:XValidation:rule="!has(self.zones.names) || !has(self.topology.hub) || self.topology.hub in self.zones.names",message="topology.hub must be one of zones.names",fieldPath=".topology.hub"
// +kubebuilder:validation:XValidation:rule="!has(self.zones.names) || !has(self.topology.links) || self.topology.links.all(l, l.from in self.zones.names && l.to in self.zones.names)",message="both ends of every topology.links entry must be in zones.names",fieldPath=".topology.links"
// +kubebuilder:validation:XValidation:rule="!has(self.meshIntegration) || !has(self.identities) || self.identities.all(i, i.name != 'mesh-workloads')",message="the identity name mesh-workloads is reserved for the meshIntegration's workloads",fieldPath=".identities"
type FederationMeshSpec struct {
	// Zones selects the member ZoneTrustDomains.
	Zones ZoneSelection `json:"zones"`

	// Topology says which member trusts which.
	Topology Topology `json:"topology"`

	// Identities are ClusterSPIFFEID templates placed in every member zone.
	// Their federatesWith is computed from the topology.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Identities []IdentityTemplate `json:"identities,omitempty"`

	// MeshIntegration configures a service mesh to use the federated
	// identities.
	// +optional
	MeshIntegration *MeshIntegration `json:"meshIntegration,omitempty"`
}

// ZoneSelection selects ZoneTrustDomains by name or by label.
// +kubebuilder:validation:XValidation:rule="has(self.names) != has(self.selector)",message="set exactly one of zones.names and zones.selector"
type ZoneSelection struct {
	// Names of ZoneTrustDomains.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	Names []string `json:"names,omitempty"`

	// Selector selects ZoneTrustDomains by label.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// TopologyType is the shape of a federation.
// +kubebuilder:validation:Enum=FullMesh;HubAndSpoke;Explicit
type TopologyType string

const (
	// TopologyFullMesh: every member trusts every other member.
	TopologyFullMesh TopologyType = "FullMesh"
	// TopologyHubAndSpoke: the hub and every spoke trust each other; spokes
	// do not trust each other.
	TopologyHubAndSpoke TopologyType = "HubAndSpoke"
	// TopologyExplicit: only the listed directed links.
	TopologyExplicit TopologyType = "Explicit"
)

// Topology is the federation topology.
// +kubebuilder:validation:XValidation:rule="self.type == 'HubAndSpoke' ? has(self.hub) : !has(self.hub)",message="topology.hub is required for HubAndSpoke and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="self.type == 'Explicit' ? has(self.links) : !has(self.links)",message="topology.links is required for Explicit and not allowed otherwise"
type Topology struct {
	// Type of the topology.
	Type TopologyType `json:"type"`

	// Hub is the ZoneTrustDomain at the centre of a HubAndSpoke topology.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Hub string `json:"hub,omitempty"`

	// Links of an Explicit topology.
	// +listType=map
	// +listMapKey=from
	// +listMapKey=to
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=1000
	// +optional
	Links []Link `json:"links,omitempty"`
}

// Link is a directed trust relationship: zone From trusts zone To (From's
// SPIRE holds To's bundle, so From's workloads accept To's SVIDs).
// +kubebuilder:validation:XValidation:rule="self.from != self.to",message="a link must join two different zones"
type Link struct {
	// From is the trusting ZoneTrustDomain.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	From string `json:"from"`
	// To is the trusted ZoneTrustDomain.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	To string `json:"to"`
}

// IdentityTemplate renders a ClusterSPIFFEID in every member zone (or in
// the zones listed), or, with static, a ClusterStaticEntry. The fields follow
// spire-controller-manager's ClusterSPIFFEID; federatesWith is computed,
// never typed.
// +kubebuilder:validation:XValidation:rule="!has(self.static) || (!has(self.podSelector) && !has(self.namespaceSelector) && !has(self.workloadSelectorTemplates) && !has(self.dnsNameTemplates))",message="a static identity selects its workload with static.selectors; podSelector, namespaceSelector, workloadSelectorTemplates and dnsNameTemplates are for Pods"
type IdentityTemplate struct {
	// Name of the identity; the ClusterSPIFFEID is named after it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// SPIFFEIDTemplate renders the SPIFFE ID, e.g.
	// "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	SPIFFEIDTemplate string `json:"spiffeIDTemplate"`

	// PodSelector selects the pods that get the identity.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`

	// NamespaceSelector selects the namespaces of those pods.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// WorkloadSelectorTemplates render extra workload selectors.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +optional
	WorkloadSelectorTemplates []string `json:"workloadSelectorTemplates,omitempty"`

	// DNSNameTemplates render DNS SANs of the X509-SVID.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	// +optional
	DNSNameTemplates []string `json:"dnsNameTemplates,omitempty"`

	// TTL of the X509-SVIDs; zero means the SPIRE server's default.
	// +optional
	TTL *metav1.Duration `json:"ttl,omitempty"`

	// Zones limits the identity to these member zones; empty means every
	// member.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=253
	// +optional
	Zones []string `json:"zones,omitempty"`

	// Static renders a ClusterStaticEntry in place of a ClusterSPIFFEID, for
	// workloads that are not Pods (processes or VMs that a SPIRE agent
	// attests). In spiffeIDTemplate and static.parentIDTemplate the only
	// substitution is {{ .TrustDomain }}.
	// +optional
	Static *StaticEntryTemplate `json:"static,omitempty"`
}

// StaticEntryTemplate is the part of a ClusterStaticEntry that selects its
// workload.
type StaticEntryTemplate struct {
	// ParentIDTemplate is the SPIFFE ID of the agent that attests the
	// workload, e.g. "spiffe://{{ .TrustDomain }}/spire/agent/x509pop/host1".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	ParentIDTemplate string `json:"parentIDTemplate"`

	// Selectors of the workload, e.g. "unix:uid:1000".
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=1024
	Selectors []string `json:"selectors"`
}

// MeshIntegrationType is a supported service mesh.
// +kubebuilder:validation:Enum=Istio;Kuma
type MeshIntegrationType string

const (
	// MeshIstio integrates with Istio through SPIRE's SDS.
	MeshIstio MeshIntegrationType = "Istio"
	// MeshKuma integrates with Kuma's SPIRE support.
	MeshKuma MeshIntegrationType = "Kuma"
)

// MeshIntegration configures a service mesh to use the federated identities.
// +kubebuilder:validation:XValidation:rule="self.type == 'Istio' || !has(self.istio)",message="meshIntegration.istio is only allowed with type Istio"
// +kubebuilder:validation:XValidation:rule="self.type == 'Kuma' || !has(self.kuma)",message="meshIntegration.kuma is only allowed with type Kuma"
type MeshIntegration struct {
	// Type of the mesh.
	Type MeshIntegrationType `json:"type"`

	// Istio settings.
	// +optional
	Istio *IstioIntegration `json:"istio,omitempty"`

	// Kuma settings.
	// +optional
	Kuma *KumaIntegration `json:"kuma,omitempty"`
}

// IstioIntegration holds Istio settings.
type IstioIntegration struct {
	// Namespace of Istio's control plane in every zone.
	// +kubebuilder:default=istio-system
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Revision of the Istio control plane, empty for the default one.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Revision string `json:"revision,omitempty"`

	// StrictMTLS makes the operator write the mesh-wide PeerAuthentication
	// "default" (mtls.mode STRICT) in Istio's root namespace of every member
	// zone. Off by default: imposed silently it would break every plaintext
	// client in the zone.
	// +optional
	StrictMTLS bool `json:"strictMTLS,omitempty"`
}

// KumaIntegration holds Kuma settings.
type KumaIntegration struct {
	// Mesh is the name of the Kuma Mesh object.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=244
	// +optional
	Mesh string `json:"mesh,omitempty"`

	// Namespace of the zone control plane (Kuma's system namespace), where
	// zone-origin policies live.
	// +kubebuilder:default=kuma-system
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// FederationMeshStatus is the observed state of a mesh.
type FederationMeshStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, ZonesResolved.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Zones are the member zones found, sorted by name.
	// +listType=map
	// +listMapKey=name
	// +optional
	Zones []MemberZone `json:"zones,omitempty"`

	// ReadyZones counts the member zones whose Ready condition is True.
	// +optional
	ReadyZones int32 `json:"readyZones,omitempty"`

	// TotalZones counts the member zones.
	// +optional
	TotalZones int32 `json:"totalZones,omitempty"`

	// Pairs are the directed trust relationships the topology demands:
	// From trusts To. A mesh of at most 100 pairs lists them all; a larger
	// one lists only the pairs that are not established, at most 100, and
	// counts the others it leaves out in omittedPairs (pairTotals and the
	// zones' summaries count every pair).
	// +kubebuilder:validation:MaxItems=100
	// +listType=map
	// +listMapKey=from
	// +listMapKey=to
	// +optional
	Pairs []PairStatus `json:"pairs,omitempty"`

	// PairTotals counts the pairs by state.
	// +optional
	PairTotals map[PairState]int32 `json:"pairTotals,omitempty"`

	// OmittedPairs counts the pairs that are not established but are not
	// listed in pairs (which holds at most 100).
	// +optional
	OmittedPairs int32 `json:"omittedPairs,omitempty"`

	// AppliedZones are the zones where the mesh may own objects: where it
	// wrote, and where it must clean up when a zone leaves the mesh.
	// +listType=set
	// +optional
	AppliedZones []string `json:"appliedZones,omitempty"`
}

// PairState is the state of one directed trust relationship.
// +kubebuilder:validation:Enum=Converged;Pending;Stale;Conflict;Unreachable;Gated
type PairState string

const (
	// PairConverged: From's SPIRE server holds To's current authorities.
	PairConverged PairState = "Converged"
	// PairPending: written, but not (yet) seen in From's SPIRE server.
	PairPending PairState = "Pending"
	// PairStale: From holds an older bundle of To than the latest known,
	// or To's bundle cannot be refreshed.
	PairStale PairState = "Stale"
	// PairConflict: From's cluster has a ClusterFederatedTrustDomain for
	// To's trust domain that the operator does not own; left untouched.
	PairConflict PairState = "Conflict"
	// PairUnreachable: From's cluster, or its SPIRE server, cannot be reached.
	PairUnreachable PairState = "Unreachable"
	// PairGated: To's bundle is not known yet, so nothing is written.
	PairGated PairState = "Gated"
)

// PairStatus is the state of one directed pair.
type PairStatus struct {
	// From is the trusting zone.
	From string `json:"from"`
	// To is the trusted zone.
	To string `json:"to"`
	// State of the pair.
	State PairState `json:"state"`
	// Reason in CamelCase.
	Reason string `json:"reason"`
	// Message for humans.
	// +optional
	Message string `json:"message,omitempty"`
	// PeerSequence is the sequence of To's bundle in From's
	// ClusterFederatedTrustDomain.
	// +optional
	PeerSequence *int64 `json:"peerSequence,omitempty"`
	// PeerX509Fingerprints are the SHA-256 fingerprints of To's X.509
	// authorities in From's ClusterFederatedTrustDomain.
	// +listType=atomic
	// +optional
	PeerX509Fingerprints []string `json:"peerX509Fingerprints,omitempty"`
	// LastTransitionTime is when State last changed.
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
}

// MeshFinalizer makes the operator remove what a mesh wrote in its zones
// before the mesh goes away.
const MeshFinalizer = "spirefed.io/mesh-cleanup"

// MemberZone is one member zone as the mesh sees it.
type MemberZone struct {
	// Name of the ZoneTrustDomain.
	Name string `json:"name"`
	// TrustDomain of the zone; empty while the zone is missing.
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`
	// Ready is the zone's Ready condition status: True, False or Unknown.
	Ready metav1.ConditionStatus `json:"ready"`
	// Peers counts the pairs in which this zone trusts a peer.
	// +optional
	Peers int32 `json:"peers,omitempty"`
	// EstablishedPeers counts those of them that are established.
	// +optional
	EstablishedPeers int32 `json:"establishedPeers,omitempty"`
	// MeshIntegration is the state of the service mesh integration in the
	// zone; absent without spec.meshIntegration.
	// +optional
	MeshIntegration *ZoneMeshIntegration `json:"meshIntegration,omitempty"`
}

// ZoneMeshIntegration is the state of the service mesh integration in one
// member zone.
type ZoneMeshIntegration struct {
	// Ready is True when the zone passes every check of the integration.
	Ready metav1.ConditionStatus `json:"ready"`
	// Reason in CamelCase: one of the MeshIntegrationReady reasons.
	Reason string `json:"reason"`
	// Message for humans: what is wrong and what to do.
	// +optional
	Message string `json:"message,omitempty"`
	// PeerTrustDomains the zone's mesh proxies trust, sorted.
	// +listType=atomic
	// +optional
	PeerTrustDomains []string `json:"peerTrustDomains,omitempty"`
	// Objects the operator wrote in the zone for the mesh, as
	// "Kind namespace/name", sorted.
	// +listType=atomic
	// +optional
	Objects []string `json:"objects,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=fm,categories=spirefed
// +kubebuilder:printcolumn:name="Topology",type=string,JSONPath=`.spec.topology.type`
// +kubebuilder:printcolumn:name="Zones",type=string,JSONPath=`.status.totalZones`
// +kubebuilder:printcolumn:name="Ready Zones",type=string,JSONPath=`.status.readyZones`
// +kubebuilder:printcolumn:name="Converged",type=string,JSONPath=`.status.conditions[?(@.type=="Converged")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Mesh Integration",type=string,JSONPath=`.status.conditions[?(@.type=="MeshIntegrationReady")].reason`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// FederationMesh federates a set of ZoneTrustDomains under one topology.
type FederationMesh struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   FederationMeshSpec   `json:"spec,omitempty"`
	Status FederationMeshStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// FederationMeshList is a list of FederationMeshes.
type FederationMeshList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []FederationMesh `json:"items"`
}

func init() {
	SchemeBuilder.Register(&FederationMesh{}, &FederationMeshList{})
}

// GetConditions returns the status conditions.
func (m *FederationMesh) GetConditions() []metav1.Condition { return m.Status.Conditions }
