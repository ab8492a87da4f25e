package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ZoneTrustDomainSpec describes one zone: a Kubernetes cluster running SPIRE
// for one SPIFFE trust domain, how the operator reaches it, and where the
// zone publishes its trust bundle.
type ZoneTrustDomainSpec struct {
	// TrustDomain is the zone's SPIFFE trust domain name, e.g. "broker.example".
	// It is canonical, as the SPIFFE specification has it: lowercase
	// letters, digits, '-' and '_' in labels separated by single dots (no
	// empty label), at most 255 characters; and immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="trustDomain is immutable"
	TrustDomain string `json:"trustDomain"`

	// ClusterName is the name SPIRE knows this zone's cluster by
	// (global.spire.clusterName of the chart, the k8s_psat cluster).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	ClusterName string `json:"clusterName"`

	// Cluster says how the operator reaches the zone's Kubernetes API.
	Cluster ClusterAccess `json:"cluster"`

	// Spire describes the zone's SPIRE installation.
	// +kubebuilder:default={install: Helm, namespace: spire-server, releaseName: spire}
	// +optional
	Spire SpireInstallation `json:"spire,omitempty"`

	// BundleEndpoint is the zone's SPIFFE federation bundle endpoint, which
	// peers poll for its trust bundle.
	BundleEndpoint BundleEndpoint `json:"bundleEndpoint"`

	// BootstrapBundle is where the operator reads the zone's X.509
	// authorities through the zone's own API, an authenticated channel. They
	// authenticate the zone's https_spiffe bundle endpoint.
	// +kubebuilder:default={}
	// +optional
	BootstrapBundle BootstrapBundleSource `json:"bootstrapBundle,omitempty"`
}

// ClusterAccess names the zone's cluster: either a kubeconfig Secret in the
// operator's namespace or the management cluster itself.
// +kubebuilder:validation:XValidation:rule="has(self.kubeconfigSecretRef) != (has(self.local) && self.local)",message="set exactly one of cluster.kubeconfigSecretRef and cluster.local: true"
type ClusterAccess struct {
	// KubeconfigSecretRef is a Secret in the operator's namespace holding a
	// kubeconfig for the zone's cluster. Kubeconfigs that run exec or
	// auth-provider plugins are refused.
	// +optional
	KubeconfigSecretRef *KubeconfigSecretReference `json:"kubeconfigSecretRef,omitempty"`

	// Local means the zone's cluster is the management cluster the operator
	// runs in.
	// +optional
	Local bool `json:"local,omitempty"`
}

// KubeconfigSecretReference names a key of a Secret in the operator's namespace.
type KubeconfigSecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// Key of the Secret's data holding the kubeconfig. Defaults to "value",
	// as in Flux and Cluster API.
	// +kubebuilder:default=value
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// SpireInstallMode says who installs SPIRE in a zone.
// +kubebuilder:validation:Enum=Helm;External
// +kubebuilder:validation:MaxLength=16
type SpireInstallMode string

const (
	// SpireInstallHelm: the operator installs the upstream spire-crds and
	// spire charts in the zone.
	SpireInstallHelm SpireInstallMode = "Helm"
	// SpireInstallExternal: SPIRE is installed by someone else; the operator
	// only writes custom resources for its spire-controller-manager.
	SpireInstallExternal SpireInstallMode = "External"
)

// SpireInstallation describes the zone's SPIRE.
// +kubebuilder:validation:XValidation:rule="self.install != 'External' || (has(self.className) && size(self.className) > 0)",message="spire.className is required when spire.install is External"
// +kubebuilder:validation:XValidation:rule="self.install != 'Helm' || !has(self.className)",message="spire.className is derived for Helm installs as <namespace>-<releaseName>; set it only with install External"
// +kubebuilder:validation:XValidation:rule="(has(self.shape) && self.shape == 'Nested') == has(self.nested)",message="spire.nested is required for shape Nested and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="(has(self.shape) && self.shape == 'HA') == has(self.ha)",message="spire.ha is required for shape HA and not allowed otherwise"
// +kubebuilder:validation:XValidation:rule="(has(oldSelf.shape) ? oldSelf.shape : 'Single') == (has(self.shape) ? self.shape : 'Single')",message="spire.shape is immutable (Helm releases would stay behind); create a new zone instead"
// +kubebuilder:validation:XValidation:rule="!has(self.nested) || self.install != 'External' || self.nested.children.all(c, has(c.spire.className))",message="spire.nested.children[].spire.className is required when spire.install is External"
// +kubebuilder:validation:XValidation:rule="!has(self.ha) || self.install != 'External' || (has(self.ha.a.spire.className) && has(self.ha.b.spire.className))",message="spire.ha.a.spire.className and spire.ha.b.spire.className are required when spire.install is External"
// +kubebuilder:validation:XValidation:rule="self.install != 'Helm' || !has(self.nested) || (has(self.nested.rootServerAddress) && self.nested.children.all(c, has(c.rootKubeconfigSecretRef)))",message="install Helm with shape Nested needs spire.nested.rootServerAddress and every child's rootKubeconfigSecretRef"
// +kubebuilder:validation:XValidation:rule="self.install != 'Helm' || !has(self.ha) || (!has(self.ha.a.cluster) && !has(self.ha.b.cluster))",message="install Helm with shape HA installs both sides in spec.cluster (the spire-nested chart's HA layout): leave spire.ha.a.cluster and spire.ha.b.cluster unset, or use install External"
// +kubebuilder:validation:XValidation:rule="!has(self.ha) || has(self.ha.a.cluster) || has(self.ha.b.cluster) || self.install != 'External' || self.ha.a.spire.className == self.ha.b.spire.className",message="HA sides in one cluster share their objects: give spire.ha.a and spire.ha.b the same className"
// +kubebuilder:validation:XValidation:rule="!has(self.ha) || self.ha.a.bundleEndpointURL != self.ha.b.bundleEndpointURL",message="spire.ha.a and spire.ha.b need their own bundleEndpointURL"
type SpireInstallation struct {
	// Install says who installs SPIRE: Helm (the operator) or External.
	// +kubebuilder:default=Helm
	// +optional
	Install SpireInstallMode `json:"install,omitempty"`

	// Namespace of the SPIRE server and of the Helm releases. Immutable: a
	// Helm install would stay behind in the old one.
	// +kubebuilder:default=spire-server
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spire.namespace is immutable (a Helm install would stay behind); create a new zone instead"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// ReleaseName is the name of the spire Helm release. Immutable.
	// +kubebuilder:default=spire
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spire.releaseName is immutable (the old release would stay behind); create a new zone instead"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=53
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	ReleaseName string `json:"releaseName,omitempty"`

	// ClassName is the className of the zone's spire-controller-manager: it
	// handles only custom resources that carry it. Derived as
	// <namespace>-<releaseName> for Helm installs (and not set there);
	// required for External.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClassName string `json:"className,omitempty"`

	// Charts selects the spire-crds and spire charts of a Helm install.
	// +optional
	Charts *SpireCharts `json:"charts,omitempty"`

	// UpgradeRemediation says what follows a failed upgrade of a Helm
	// install: Retry (default) upgrades again with backoff; Rollback rolls
	// the release back to its previous revision first. A failed release is
	// never uninstalled: that would destroy SPIRE's CA and datastore.
	// +kubebuilder:validation:Enum=Retry;Rollback
	// +kubebuilder:default=Retry
	// +optional
	UpgradeRemediation UpgradeRemediation `json:"upgradeRemediation,omitempty"`

	// DeletionPolicy says what happens to a Helm install when the
	// ZoneTrustDomain is deleted: Retain (default) leaves SPIRE installed;
	// Delete uninstalls the spire and spire-crds releases.
	// +kubebuilder:validation:Enum=Retain;Delete
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// Values are Helm values merged over the ones the operator computes for
	// the spire chart, except for the keys the operator owns.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Values *apiextensionsv1.JSON `json:"values,omitempty"`

	// ServerAccess says how the operator reaches the zone's SPIRE server API,
	// to ask it to refresh a peer's bundle as soon as the peer rotates and to
	// read which federated bundles it holds. Without it, pairs trusted by
	// this zone cannot be confirmed Converged.
	// +optional
	ServerAccess *SpireServerAccess `json:"serverAccess,omitempty"`

	// Shape of the trust domain's SPIRE: Single (empty: one server in
	// spec.cluster), Nested (a root server in spec.cluster and nested
	// servers in spire.nested.children) or HA (two independent sides,
	// spire.ha). Immutable.
	// +optional
	Shape SpireShape `json:"shape,omitempty"`

	// Nested lists the child clusters of shape Nested.
	// +optional
	Nested *NestedSpire `json:"nested,omitempty"`

	// HA describes the sides of shape HA.
	// +optional
	HA *HASpire `json:"ha,omitempty"`
}

// SpireServerAccess is one way to reach a SPIRE server's admin API.
// +kubebuilder:validation:XValidation:rule="has(self.socket) != has(self.exec)",message="set exactly one of spire.serverAccess.socket and spire.serverAccess.exec"
type SpireServerAccess struct {
	// Socket is the SPIRE server's admin API socket on the operator's own
	// file system, for an operator that runs beside the server.
	// +optional
	Socket *SocketAccess `json:"socket,omitempty"`

	// Exec runs the spire-server command in the SPIRE server's container
	// through the zone's Kubernetes API (pods/exec).
	// +optional
	Exec *ExecAccess `json:"exec,omitempty"`
}

// SocketAccess names a SPIRE server admin API socket.
type SocketAccess struct {
	// Path of the unix socket.
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=107
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path"`
}

// ExecAccess names the SPIRE server's container in the zone's cluster.
type ExecAccess struct {
	// Pod running the SPIRE server, in spire.namespace. Defaults to the
	// chart's first server Pod, <releaseName>-server-0.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$`
	// +optional
	Pod string `json:"pod,omitempty"`

	// Container running the SPIRE server.
	// +kubebuilder:default=spire-server
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Container string `json:"container,omitempty"`

	// Command is the spire-server executable inside the container: an
	// absolute path ending in spire-server.
	// +kubebuilder:default=/opt/spire/bin/spire-server
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/([^/]+/)*spire-server$`
	// +optional
	Command string `json:"command,omitempty"`

	// SocketPath of the admin API inside the container.
	// +kubebuilder:default=/tmp/spire-server/private/api.sock
	// +kubebuilder:validation:MaxLength=107
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	SocketPath string `json:"socketPath,omitempty"`
}

// UpgradeRemediation is what follows a failed upgrade.
type UpgradeRemediation string

const (
	// RemediationRetry upgrades again, with backoff.
	RemediationRetry UpgradeRemediation = "Retry"
	// RemediationRollback rolls back to the previous revision first.
	RemediationRollback UpgradeRemediation = "Rollback"
)

// DeletionPolicy is what happens to a Helm install with its zone.
type DeletionPolicy string

const (
	// DeletionRetain leaves SPIRE installed.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete uninstalls the releases.
	DeletionDelete DeletionPolicy = "Delete"
)

// SpireCharts selects the charts of a Helm install.
// +kubebuilder:validation:XValidation:rule="!(has(self.repository) && has(self.configMap))",message="set at most one of charts.repository and charts.configMap"
type SpireCharts struct {
	// Repository is an http(s) Helm chart repository URL (holding
	// index.yaml) or an oci:// reference to the folder of the charts (the
	// chart name and version are appended). Empty means the upstream
	// helm-charts-hardened repository.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') || self.startsWith('http://') || self.startsWith('oci://')",message="charts.repository must be an http(s):// or oci:// URL"
	// +optional
	Repository string `json:"repository,omitempty"`

	// ConfigMap names a ConfigMap in the operator's namespace holding the
	// packaged charts, for sites without access to a repository: binaryData
	// keys spire-<spireVersion>.tgz and spire-crds-<crdsVersion>.tgz.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	ConfigMap string `json:"configMap,omitempty"`

	// SpireVersion is the version of the spire chart; 0.30.0 if empty.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SpireVersion string `json:"spireVersion,omitempty"`

	// CRDsVersion is the version of the spire-crds chart; 0.6.0 if empty.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	CRDsVersion string `json:"crdsVersion,omitempty"`
}

// BundleEndpointProfile is a SPIFFE federation endpoint profile.
// +kubebuilder:validation:Enum=https_spiffe;https_web
type BundleEndpointProfile string

const (
	// ProfileHTTPSSPIFFE: the endpoint presents an X509-SVID for the endpoint
	// SPIFFE ID, authenticated with the zone's own bundle.
	ProfileHTTPSSPIFFE BundleEndpointProfile = "https_spiffe"
	// ProfileHTTPSWeb: the endpoint presents a Web PKI certificate.
	ProfileHTTPSWeb BundleEndpointProfile = "https_web"
)

// BundleEndpoint is a SPIFFE federation bundle endpoint.
// +kubebuilder:validation:XValidation:rule="self.profile == 'https_spiffe' || !has(self.endpointSPIFFEID)",message="bundleEndpoint.endpointSPIFFEID is only allowed with profile https_spiffe"
// +kubebuilder:validation:XValidation:rule="self.profile == 'https_web' || !has(self.caBundle)",message="bundleEndpoint.caBundle is only allowed with profile https_web"
type BundleEndpoint struct {
	// URL of the bundle endpoint: https, with a host and no user information.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",message="bundleEndpoint.url must be an https URL with a host"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*@')",message="bundleEndpoint.url must not carry user information"
	URL string `json:"url"`

	// Profile is the endpoint profile: https_spiffe (default) or https_web.
	// +kubebuilder:default=https_spiffe
	// +optional
	Profile BundleEndpointProfile `json:"profile,omitempty"`

	// EndpointSPIFFEID is the SPIFFE ID the https_spiffe endpoint presents.
	// Defaults to spiffe://<trustDomain>/spire/server.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^spiffe://[a-z0-9_-]+(\.[a-z0-9_-]+)*(/[a-zA-Z0-9._-]+)+$`
	// +optional
	EndpointSPIFFEID string `json:"endpointSPIFFEID,omitempty"`

	// RefreshHint is how often the operator fetches this zone's bundle when
	// the bundle does not say (SPIRE's default is 5m).
	// +optional
	RefreshHint *metav1.Duration `json:"refreshHint,omitempty"`

	// CABundle holds PEM CA certificates that authenticate an https_web
	// endpoint in place of the system roots.
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	CABundle string `json:"caBundle,omitempty"`
}

// BootstrapBundleSource says where the zone's X.509 authorities are read.
type BootstrapBundleSource struct {
	// ConfigMap holding the zone's X.509 authorities as PEM, in the zone's
	// cluster. Defaults to the chart's spire-bundle ConfigMap (key
	// bundle.crt) in the SPIRE namespace.
	// +kubebuilder:default={}
	// +optional
	ConfigMap ConfigMapKeySelector `json:"configMap,omitempty"`
}

// ConfigMapKeySelector names a key of a ConfigMap in the zone's cluster.
type ConfigMapKeySelector struct {
	// Namespace of the ConfigMap; empty means spire.namespace.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$`
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the ConfigMap.
	// +kubebuilder:default=spire-bundle
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`

	// Key of the ConfigMap's data holding the PEM certificates.
	// +kubebuilder:default=bundle.crt
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// ZoneTrustDomainStatus is the observed state of a zone.
type ZoneTrustDomainStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, ClusterReachable, BundleAvailable.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ClassName is the className the operator writes into the zone's
	// spire-controller-manager resources.
	// +optional
	ClassName string `json:"className,omitempty"`

	// EndpointSPIFFEID is the SPIFFE ID the bundle endpoint must present
	// (https_spiffe only).
	// +optional
	EndpointSPIFFEID string `json:"endpointSPIFFEID,omitempty"`

	// Bootstrap holds the X.509 authorities read from the zone's bootstrap
	// ConfigMap. They authenticate the https_spiffe bundle endpoint.
	// +optional
	Bootstrap *BootstrapStatus `json:"bootstrap,omitempty"`

	// Bundle is the zone's latest validated trust bundle: from the bundle
	// endpoint, or from the bootstrap ConfigMap until the first fetch. It is
	// what peers receive, and it is kept when a later read or fetch fails.
	// +optional
	Bundle *BundleStatus `json:"bundle,omitempty"`

	// LastFetch is the result of the latest bundle endpoint fetch, and
	// since when fetches have had that result. A fetch with the same
	// result changes nothing here (a quiet zone writes nothing); the time
	// of the latest fetch is the metric
	// spirefed_bundle_last_fetch_timestamp_seconds.
	// +optional
	LastFetch *FetchStatus `json:"lastFetch,omitempty"`

	// FetchInterval is the effective interval between fetches of the
	// bundle endpoint: the refresh hint (of the accepted bundle, else of
	// the spec, else the operator's default) clamped to the operator's
	// bounds.
	// +optional
	FetchInterval *metav1.Duration `json:"fetchInterval,omitempty"`

	// Spire is the state of a Helm install of SPIRE.
	// +optional
	Spire *SpireReleaseStatus `json:"spire,omitempty"`

	// BundleEndpointURL is the endpoint the zone's bundle was last fetched
	// from, which peers are given: spec.bundleEndpoint.url, or for an HA
	// trust domain the endpoint of an available side.
	// +optional
	BundleEndpointURL string `json:"bundleEndpointURL,omitempty"`

	// Clusters is the state of every cluster (or side) of a Nested or HA
	// trust domain.
	// +listType=map
	// +listMapKey=name
	// +optional
	Clusters []TrustDomainClusterStatus `json:"clusters,omitempty"`
}

// SpireReleaseStatus is the state of the spire and spire-crds releases.
type SpireReleaseStatus struct {
	// ReleaseName of the spire release.
	ReleaseName string `json:"releaseName"`
	// Revision of the spire release.
	// +optional
	Revision int `json:"revision,omitempty"`
	// ChartVersion of the spire release.
	// +optional
	ChartVersion string `json:"chartVersion,omitempty"`
	// AppVersion of the spire release (the SPIRE version).
	// +optional
	AppVersion string `json:"appVersion,omitempty"`
	// CRDsRevision of the spire-crds release.
	// +optional
	CRDsRevision int `json:"crdsRevision,omitempty"`
	// CRDsChartVersion of the spire-crds release.
	// +optional
	CRDsChartVersion string `json:"crdsChartVersion,omitempty"`
	// ValuesDigest is the SHA-256 of the spire release's chart version and
	// values: the release is upgraded only when the desired one differs.
	// +optional
	ValuesDigest string `json:"valuesDigest,omitempty"`
	// LastAttemptedDigest is the ValuesDigest the latest action aimed at;
	// Failures count for it.
	// +optional
	LastAttemptedDigest string `json:"lastAttemptedDigest,omitempty"`
	// LastAction is the latest Helm action: Install, Upgrade, Rollback,
	// DriftCorrection or Uninstall.
	// +optional
	LastAction string `json:"lastAction,omitempty"`
	// LastActionResult is Succeeded or Failed.
	// +optional
	LastActionResult string `json:"lastActionResult,omitempty"`
	// LastActionTime is when the latest action ended.
	// +optional
	LastActionTime *metav1.Time `json:"lastActionTime,omitempty"`
	// Failures counts consecutive failed actions; it sets the retry backoff
	// and is reset by a success or a changed spec.
	// +optional
	Failures int32 `json:"failures,omitempty"`
	// Releases are the spire-nested releases of a Nested or HA trust
	// domain, in install order: which release is installed in which
	// cluster, and whether it is ready. The fields above describe the
	// first (the root's, or the HA common part).
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=40
	// +optional
	Releases []ClusterReleaseStatus `json:"releases,omitempty"`
}

// ClusterReleaseStatus is one Helm release of a Nested or HA trust domain.
type ClusterReleaseStatus struct {
	// Cluster is the cluster the release is installed in: "root", a
	// child's name, or "a" / "b"; empty for the zone's own cluster (the HA
	// common part).
	// +optional
	Cluster string `json:"cluster,omitempty"`
	// Namespace of the release.
	Namespace string `json:"namespace"`
	// ReleaseName of the release.
	ReleaseName string `json:"releaseName"`
	// Tag of the spire-nested chart the release enables (nestedRoot,
	// nestedChildFull, haAgentCommon, bottomTurtleHAA, bottomTurtleHAB).
	Tag string `json:"tag"`
	// Revision deployed, 0 before the first install.
	// +optional
	Revision int `json:"revision,omitempty"`
	// ValuesDigest is the SHA-256 of the deployed chart version and values.
	// +optional
	ValuesDigest string `json:"valuesDigest,omitempty"`
	// Ready: the release is deployed as desired and its workloads are ready.
	Ready metav1.ConditionStatus `json:"ready"`
	// Reason is a SpireInstalled reason for this release.
	Reason string `json:"reason"`
	// Message says what is wrong and what to do.
	// +optional
	Message string `json:"message,omitempty"`
}

// BootstrapStatus summarises the zone's bootstrap X.509 authorities.
type BootstrapStatus struct {
	// X509Authorities read from the bootstrap ConfigMap.
	// +listType=atomic
	X509Authorities []X509Authority `json:"x509Authorities"`

	// LastChangeTime is when the operator last saw them change.
	// +optional
	LastChangeTime *metav1.Time `json:"lastChangeTime,omitempty"`
}

// BundleSource says where a bundle was read.
type BundleSource string

const (
	// BundleSourceConfigMap: the bootstrap ConfigMap in the zone's cluster.
	BundleSourceConfigMap BundleSource = "ConfigMap"
	// BundleSourceEndpoint: the zone's bundle endpoint.
	BundleSourceEndpoint BundleSource = "Endpoint"
)

// BundleStatus is a validated SPIFFE trust bundle. It holds public keys
// and certificates only.
type BundleStatus struct {
	// Source of the bundle.
	Source BundleSource `json:"source"`

	// SPIFFEBundle is the bundle as SPIFFE bundle JSON, in canonical form.
	// +kubebuilder:validation:MaxLength=1048576
	SPIFFEBundle string `json:"spiffeBundle"`

	// Digest is the SHA-256 of SPIFFEBundle, lowercase hex.
	Digest string `json:"digest"`

	// Sequence is the bundle's spiffe_sequence, when it has one.
	// +optional
	Sequence *int64 `json:"sequence,omitempty"`

	// RefreshHint is the bundle's spiffe_refresh_hint, when it has one.
	// +optional
	RefreshHint *metav1.Duration `json:"refreshHint,omitempty"`

	// X509Authorities are the bundle's X.509 CA certificates.
	// +listType=atomic
	X509Authorities []X509Authority `json:"x509Authorities"`

	// JWTAuthorityKeyIDs are the key IDs of the bundle's JWT authorities.
	// +listType=atomic
	// +optional
	JWTAuthorityKeyIDs []string `json:"jwtAuthorityKeyIDs,omitempty"`

	// DroppedX509Authorities are authorities the zone published that the
	// operator left out of this bundle because they are outside their
	// validity window (expired, or valid only from further ahead than the
	// clock-skew allowance). Peers do not get them; a SPIRE server that
	// fetched them itself still counts as holding the current bundle.
	// +optional
	DroppedX509Authorities []DroppedAuthority `json:"droppedX509Authorities,omitempty"`

	// LastChangeTime is when the operator last saw the bundle change.
	// +optional
	LastChangeTime *metav1.Time `json:"lastChangeTime,omitempty"`
}

// DroppedAuthority is an authority left out of a bundle, and why.
type DroppedAuthority struct {
	// SHA256Fingerprint of the DER certificate, lowercase hex.
	SHA256Fingerprint string `json:"sha256Fingerprint"`
	// Subject of the certificate.
	// +optional
	Subject string `json:"subject,omitempty"`
	// Reason, e.g. "expired at 2026-01-02T03:04:05Z".
	Reason string `json:"reason"`
}

// FetchStatus is the outcome of bundle endpoint fetches.
type FetchStatus struct {
	// Time since when fetches have had this result.
	Time metav1.Time `json:"time"`
	// Result is the reason of the BundleFetched condition it produced.
	Result string `json:"result"`
}

// X509Authority describes one X.509 CA certificate of a bundle.
type X509Authority struct {
	// SHA256Fingerprint of the DER certificate, lowercase hex.
	SHA256Fingerprint string `json:"sha256Fingerprint"`
	// Subject of the certificate.
	Subject string `json:"subject"`
	// NotAfter is when the certificate expires.
	NotAfter metav1.Time `json:"notAfter"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ztd,categories=spirefed
// +kubebuilder:printcolumn:name="Trust Domain",type=string,JSONPath=`.spec.trustDomain`
// +kubebuilder:printcolumn:name="Install",type=string,JSONPath=`.spec.spire.install`
// +kubebuilder:printcolumn:name="Shape",type=string,priority=1,JSONPath=`.spec.spire.shape`
// +kubebuilder:printcolumn:name="Reachable",type=string,JSONPath=`.status.conditions[?(@.type=="ClusterReachable")].status`
// +kubebuilder:printcolumn:name="Fetched",type=string,JSONPath=`.status.conditions[?(@.type=="BundleFetched")].status`
// +kubebuilder:printcolumn:name="Sequence",type=integer,JSONPath=`.status.bundle.sequence`
// +kubebuilder:printcolumn:name="SPIRE",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="SpireInstalled")].reason`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ZoneTrustDomain is one zone of a SPIRE federation: a cluster, its SPIFFE
// trust domain, its bundle endpoint and its SPIRE installation.
type ZoneTrustDomain struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ZoneTrustDomainSpec   `json:"spec,omitempty"`
	Status ZoneTrustDomainStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ZoneTrustDomainList is a list of ZoneTrustDomains.
type ZoneTrustDomainList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ZoneTrustDomain `json:"items"`
}

func init() {
	SchemeBuilder.Register(&ZoneTrustDomain{}, &ZoneTrustDomainList{})
}

// ResetSequenceAnnotation, set on a ZoneTrustDomain (any value), makes the
// operator accept the next bundle its endpoint serves whatever its
// sequence (it must still be valid and authenticated), for a trust domain
// whose SPIRE was really re-installed and starts counting again. The
// operator records an Event with the old and new sequence and removes the
// annotation once it has accepted a bundle.
const ResetSequenceAnnotation = "spirefed.io/reset-bundle-sequence"

// ZoneFinalizer makes the operator remove what it wrote in a zone's cluster
// before the ZoneTrustDomain goes away.
const ZoneFinalizer = "spirefed.io/zone-cleanup"

// GetConditions returns the status conditions.
func (z *ZoneTrustDomain) GetConditions() []metav1.Condition { return z.Status.Conditions }

// SpireClassName is the className of the zone's spire-controller-manager:
// the one set, or <namespace>-<releaseName> for Helm installs.
func (z *ZoneTrustDomain) SpireClassName() string {
	if z.Spec.Spire.ClassName != "" {
		return z.Spec.Spire.ClassName
	}
	return z.Spec.Spire.Namespace + "-" + z.Spec.Spire.ReleaseName
}

// BundleEndpointSPIFFEID is the SPIFFE ID an https_spiffe bundle endpoint
// must present, or "" for https_web.
func (z *ZoneTrustDomain) BundleEndpointSPIFFEID() string {
	if z.Spec.BundleEndpoint.Profile == ProfileHTTPSWeb {
		return ""
	}
	if z.Spec.BundleEndpoint.EndpointSPIFFEID != "" {
		return z.Spec.BundleEndpoint.EndpointSPIFFEID
	}
	return "spiffe://" + z.Spec.TrustDomain + "/spire/server"
}

// PeerBundleEndpointURL is the bundle endpoint peers are given:
// spec.bundleEndpoint.url, or for an HA trust domain the side's endpoint
// its bundle was last fetched from.
func (z *ZoneTrustDomain) PeerBundleEndpointURL() string {
	if z.Spec.Spire.Shape == ShapeHA && z.Status.BundleEndpointURL != "" {
		return z.Status.BundleEndpointURL
	}
	return z.Spec.BundleEndpoint.URL
}

// SpireServerExec is the exec target of the zone's SPIRE server with
// defaults applied, or nil when the zone is not reached by exec.
func (z *ZoneTrustDomain) SpireServerExec() *ExecAccess {
	access := z.Spec.Spire.ServerAccess
	if access == nil || access.Exec == nil {
		return nil
	}
	target := *access.Exec
	if target.Pod == "" {
		target.Pod = z.Spec.Spire.ReleaseName + "-server-0"
	}
	if target.Container == "" {
		target.Container = "spire-server"
	}
	if target.Command == "" {
		target.Command = "/opt/spire/bin/spire-server"
	}
	if target.SocketPath == "" {
		target.SocketPath = "/tmp/spire-server/private/api.sock"
	}
	return &target
}

// BootstrapConfigMap is the ConfigMap (namespace, name, key) holding the
// zone's bootstrap X.509 authorities, with defaults applied.
func (z *ZoneTrustDomain) BootstrapConfigMap() ConfigMapKeySelector {
	selector := z.Spec.BootstrapBundle.ConfigMap
	if selector.Namespace == "" {
		selector.Namespace = z.Spec.Spire.Namespace
	}
	if selector.Name == "" {
		selector.Name = "spire-bundle"
	}
	if selector.Key == "" {
		selector.Key = "bundle.crt"
	}
	return selector
}
