package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// SpireShape is how a trust domain's SPIRE is laid out across clusters.
// +kubebuilder:validation:Enum=Single;Nested;HA
// +kubebuilder:validation:MaxLength=16
type SpireShape string

const (
	// ShapeSingle: one SPIRE server in spec.cluster (the default).
	ShapeSingle SpireShape = "Single"
	// ShapeNested: a root SPIRE server in spec.cluster; every child cluster
	// runs a nested SPIRE server that gets its CA from the root
	// (UpstreamAuthority "spire") and issues SVIDs of the same trust domain
	// to its cluster's workloads.
	ShapeNested SpireShape = "Nested"
	// ShapeHA: two independent SPIRE environments, sides A and B, each
	// with its own server, CA and agents, for the same trust domain;
	// workloads trust both sides' authorities (spire-ha-agent).
	ShapeHA SpireShape = "HA"
)

// NestedSpire lists the child clusters of a nested trust domain. The root
// SPIRE server runs in spec.cluster.
type NestedSpire struct {
	// Children are the clusters running a nested SPIRE server.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=map
	// +listMapKey=name
	Children []NestedChild `json:"children"`

	// RootServerAddress is the host name at which the child clusters reach
	// the root's SPIRE server for their nested servers' CAs (the
	// spire-nested chart's global.spire.upstreamSpireAddress, e.g. the
	// root's external-spire-server exposed by an ingress). Required for
	// install Helm; unused for External.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	RootServerAddress string `json:"rootServerAddress,omitempty"`
}

// NestedChild is one child cluster of a nested trust domain.
type NestedChild struct {
	// Name of the child cluster: SPIRE's cluster name there, and the name
	// status uses.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Cluster says how the operator reaches the child cluster's API.
	Cluster ClusterAccess `json:"cluster"`

	// IDPath is inserted after the trust domain in the SPIFFE IDs the
	// mesh's identities give this cluster's workloads, e.g. "/cluster-a"
	// makes "spiffe://example.com/ns/web/sa/app" in this cluster
	// "spiffe://example.com/cluster-a/ns/web/sa/app". Empty: the same IDs
	// in every cluster of the trust domain.
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^(/[a-zA-Z0-9._-]+)*$`
	// +optional
	IDPath string `json:"idPath,omitempty"`

	// Spire is the nested SPIRE server of this cluster.
	// +kubebuilder:default={}
	// +optional
	Spire ClusterSpire `json:"spire,omitempty"`

	// RootKubeconfigSecretRef names a Secret in the operator's namespace
	// holding the kubeconfig with which the root's SPIRE (its controller
	// managers, node attestor and bundle publisher) reaches this child
	// cluster. Its identity must be the one the child's release grants
	// (the chart's external-root-spire-server-full.externalServerSubject,
	// User "spire-root" unless spire.values says otherwise). Required for
	// install Helm; unused for External.
	// +optional
	RootKubeconfigSecretRef *KubeconfigSecretReference `json:"rootKubeconfigSecretRef,omitempty"`
}

// HASpire describes the two sides of an HA trust domain.
// +kubebuilder:validation:XValidation:rule="has(self.a.cluster) || has(self.b.cluster) || !has(self.a.spire.__namespace__) || !has(self.b.spire.__namespace__) || self.a.spire.__namespace__ != self.b.spire.__namespace__",message="HA sides in one cluster need different spire namespaces"
type HASpire struct {
	// A is side A.
	A HASide `json:"a"`
	// B is side B.
	B HASide `json:"b"`
}

// HASide is one side of an HA trust domain.
type HASide struct {
	// Cluster says how the operator reaches the side's cluster; empty means
	// spec.cluster (both sides in one cluster).
	// +optional
	Cluster *ClusterAccess `json:"cluster,omitempty"`

	// BundleEndpointURL is this side's own SPIFFE bundle endpoint. The
	// operator reads which side is up from it; peers are given an
	// available side's endpoint.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="bundleEndpointURL must be an https URL with a host"
	BundleEndpointURL string `json:"bundleEndpointURL"`

	// Spire is this side's SPIRE server.
	// +kubebuilder:default={}
	// +optional
	Spire ClusterSpire `json:"spire,omitempty"`
}

// ClusterSpire is the SPIRE server of one cluster of a nested or HA trust
// domain.
type ClusterSpire struct {
	// Namespace of the SPIRE server (and of the Helm release); defaults to
	// spec.spire.namespace for nested children, and to
	// <spec.spire.namespace>-a and -b for HA sides.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// ClassName of the spire-controller-manager that serves this server.
	// Required for External installs; derived for Helm.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClassName string `json:"className,omitempty"`

	// ServerAccess says how the operator reaches this server's API.
	// +optional
	ServerAccess *SpireServerAccess `json:"serverAccess,omitempty"`
}

// ClusterRole is the part a cluster plays in a nested or HA trust domain.
type ClusterRole string

const (
	// RoleRoot: the cluster of the root SPIRE server (spec.cluster).
	RoleRoot ClusterRole = "Root"
	// RoleChild: a child cluster with a nested SPIRE server.
	RoleChild ClusterRole = "Child"
	// RoleSide: one side of an HA trust domain.
	RoleSide ClusterRole = "Side"
)

// TrustDomainClusterStatus is the state of one cluster (or HA side) of a
// nested or HA trust domain.
type TrustDomainClusterStatus struct {
	// Name: "root", a child's name, or "a" / "b".
	Name string `json:"name"`
	// Role of the cluster.
	Role ClusterRole `json:"role"`
	// Reachable: the operator reaches the cluster's API server.
	Reachable metav1.ConditionStatus `json:"reachable"`
	// SpireReady: the cluster's SPIRE server answers (Unknown without
	// server access).
	SpireReady metav1.ConditionStatus `json:"spireReady"`
	// Attested: a nested server holds the root's current authorities (its
	// CA chains to the root); an HA side serves its bundle endpoint and
	// holds the other side's authorities. Unknown when it cannot be read.
	// +optional
	Attested metav1.ConditionStatus `json:"attested,omitempty"`
	// Reason is a CamelCase word for the first problem, or Healthy.
	Reason string `json:"reason"`
	// Message says what is wrong and what to do.
	// +optional
	Message string `json:"message,omitempty"`
}

// Reasons of a cluster's status in a nested or HA trust domain (besides
// the ClusterReachable reasons, when the cluster cannot be reached).
const (
	// ClusterHealthy: reachable, its SPIRE server answers (or is not
	// observed) and is attested or cross-linked.
	ClusterHealthy = "Healthy"
	// ClusterSpireUnreachable: the cluster's SPIRE server cannot be read.
	ClusterSpireUnreachable = "SpireUnreachable"
	// ClusterNotAttested: a nested server does not hold the root's current
	// authorities: it has no CA from the root (yet).
	ClusterNotAttested = "NotAttested"
	// ClusterNotCrossLinked: an HA side does not hold the other side's
	// authorities, and the operator could not add them.
	ClusterNotCrossLinked = "NotCrossLinked"
)
