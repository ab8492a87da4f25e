package v1alpha1

// Condition types. Every kind carries ReadyCondition; the others say which
// prerequisite of Ready holds or fails.
const (
	// ReadyCondition summarises the object: True when everything below that
	// applies to the kind is True. Its reason is that of the first failing one.
	ReadyCondition = "Ready"

	// ReconcilingCondition (kstatus) is True while the operator works
	// towards Ready: a Helm action, SPIRE or pairs settling, an endpoint
	// being retried. Its reason and message are Ready's. Absent when Ready.
	ReconcilingCondition = "Reconciling"

	// StalledCondition (kstatus) is True when only a human can make the
	// object Ready: an invalid spec, values that conflict, a kubeconfig
	// refused, a duplicate trust domain, a zone that does not exist. Its
	// reason and message are Ready's. Absent otherwise.
	StalledCondition = "Stalled"

	// ClusterReachableCondition on a ZoneTrustDomain: the operator reaches the
	// zone's API server with the configured credentials and may read what it
	// needs there.
	ClusterReachableCondition = "ClusterReachable"

	// BundleAvailableCondition on a ZoneTrustDomain: the zone's X.509
	// authorities were read through an authenticated channel and are valid.
	BundleAvailableCondition = "BundleAvailable"

	// BundleFetchedCondition on a ZoneTrustDomain: the latest fetch from the
	// zone's bundle endpoint was authenticated and its bundle accepted.
	BundleFetchedCondition = "BundleFetched"

	// SpireInstalledCondition on a ZoneTrustDomain with install Helm: the
	// spire-crds and spire releases are deployed as desired and their
	// workloads are ready.
	SpireInstalledCondition = "SpireInstalled"

	// ConvergedCondition on a FederationMesh: every directed pair is
	// Converged, as observed in the trusting zone's SPIRE server.
	ConvergedCondition = "Converged"

	// ZonesResolvedCondition on a FederationMesh: every member zone named by
	// the mesh exists and the topology refers only to members.
	ZonesResolvedCondition = "ZonesResolved"

	// MeshIntegrationReadyCondition on a FederationMesh with
	// spec.meshIntegration: every member zone's mesh install is ready to
	// use the federated SPIRE identities, and the operator's mesh objects
	// are written there. Absent without spec.meshIntegration. It never
	// changes the mesh's or a zone's Ready.
	MeshIntegrationReadyCondition = "MeshIntegrationReady"
)

// Reasons for MeshIntegrationReady (and status.zones[].meshIntegration).
const (
	// ReasonMeshIntegrated: every member zone passes every check.
	ReasonMeshIntegrated = "MeshIntegrated"
	// ReasonMeshNotInstalled: the mesh's control plane (Istio's istio[-rev]
	// ConfigMap, Kuma's Mesh or its MeshIdentity CRD) is not in the zone.
	ReasonMeshNotInstalled = "MeshNotInstalled"
	// ReasonTrustDomainMismatch: Istio's meshConfig.trustDomain is not the
	// zone's SPIRE trust domain.
	ReasonTrustDomainMismatch = "TrustDomainMismatch"
	// ReasonSharedMeshConfigNotWired: istiod does not run with
	// SHARED_MESH_CONFIG=spirefed-mesh, so it ignores the peers.
	ReasonSharedMeshConfigNotWired = "SharedMeshConfigNotWired"
	// ReasonInjectionTemplateMissing: Istio's sidecar injector has no
	// spire or spire-gateway template.
	ReasonInjectionTemplateMissing = "InjectionTemplateMissing"
	// ReasonIstioTooOld: istiod is older than 1.29.2.
	ReasonIstioTooOld = "IstioTooOld"
	// ReasonMeshServicesNotExclusive: the Kuma Mesh's
	// spec.meshServices.mode is not Exclusive.
	ReasonMeshServicesNotExclusive = "MeshServicesNotExclusive"
	// ReasonMeshIdentityNotReady: Kuma has not (yet) reported the
	// operator's MeshIdentity Ready.
	ReasonMeshIdentityNotReady = "MeshIdentityNotReady"
	// ReasonSDSProfileConflict: the zone is in an Istio mesh and a Kuma
	// mesh, whose SPIRE agent SDS profiles exclude each other.
	ReasonSDSProfileConflict = "SDSProfileConflict"
	// ReasonPeersPending: a trusted peer's bundle is not yet held by the
	// zone's SPIRE (not yet in federatesWith of the mesh workloads).
	ReasonPeersPending = "PeersPending"
	// ReasonMeshIntegrationApplyFailed: writing the mesh objects in the
	// zone failed.
	ReasonMeshIntegrationApplyFailed = "MeshIntegrationApplyFailed"
	// ReasonZoneUnreachable: the zone's cluster could not be read.
	ReasonZoneUnreachable = "ZoneUnreachable"
)

// Reasons for ClusterReachable.
const (
	// ReasonConnected: the zone's API server answered and allowed our requests.
	ReasonConnected = "Connected"
	// ReasonSecretNotFound: the kubeconfig Secret (or its key) does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonKubeconfigInvalid: the kubeconfig cannot be parsed or is refused
	// (exec and auth-provider plugins are not supported).
	ReasonKubeconfigInvalid = "KubeconfigInvalid"
	// ReasonUnreachable: the zone's API server did not answer.
	ReasonUnreachable = "Unreachable"
	// ReasonUnauthorized: the API server refused the kubeconfig's credentials.
	ReasonUnauthorized = "Unauthorized"
	// ReasonForbidden: the credentials are valid but lack a permission the
	// operator needs in the zone.
	ReasonForbidden = "Forbidden"
)

// Reasons for BundleAvailable.
const (
	// ReasonBundleRead: the bootstrap bundle was read and validated.
	ReasonBundleRead = "BundleRead"
	// ReasonBundleNotFound: the bootstrap ConfigMap or its key does not exist.
	ReasonBundleNotFound = "BundleNotFound"
	// ReasonBundleInvalid: the bootstrap bundle is not a set of PEM X.509 CA
	// certificates; the last good authorities, if any, are kept in status.
	ReasonBundleInvalid = "BundleInvalid"
	// ReasonClusterNotReachable: the bundle could not be read because the
	// zone's cluster is not reachable.
	ReasonClusterNotReachable = "ClusterNotReachable"
)

// Reasons for BundleFetched.
const (
	// ReasonFetched: the endpoint's bundle was fetched and accepted.
	ReasonFetched = "Fetched"
	// ReasonWaitingForBootstrap: an https_spiffe endpoint cannot be
	// authenticated before the zone's authorities are known.
	ReasonWaitingForBootstrap = "WaitingForBootstrap"
	// ReasonEndpointUnreachable: no HTTP response from the endpoint.
	ReasonEndpointUnreachable = "EndpointUnreachable"
	// ReasonAuthenticationFailed: the endpoint's certificate failed
	// authentication (wrong CA, wrong SPIFFE ID, a redirect elsewhere).
	ReasonAuthenticationFailed = "AuthenticationFailed"
	// ReasonBadResponse: the endpoint answered with something other than a
	// bundle (status, size, redirect to http).
	ReasonBadResponse = "BadResponse"
	// ReasonBundleRejected: the document is not an acceptable bundle.
	ReasonBundleRejected = "BundleRejected"
	// ReasonSequenceRegressed: the bundle's sequence is lower than the
	// accepted one's.
	ReasonSequenceRegressed = "SequenceRegressed"
	// ReasonSequenceReused: the bundle has the accepted sequence but other
	// authorities; a publisher that changes its authorities raises the
	// sequence. The accepted bundle is kept.
	ReasonSequenceReused = "SequenceReused"
	// ReasonSequenceMissing: the bundle has no sequence although the zone
	// published one before. The accepted bundle is kept.
	ReasonSequenceMissing = "SequenceMissing"
)

// Reasons for SpireInstalled.
const (
	// ReasonReleaseReady: both releases are deployed as desired and every
	// workload of the spire release is ready.
	ReasonReleaseReady = "ReleaseReady"
	// ReasonWorkloadsNotReady: deployed, waiting for workloads.
	ReasonWorkloadsNotReady = "WorkloadsNotReady"
	// ReasonChartUnavailable: a chart could not be obtained; the running
	// release is left untouched.
	ReasonChartUnavailable = "ChartUnavailable"
	// ReasonValuesConflict: spire.values sets a key the operator owns.
	ReasonValuesConflict = "ValuesConflict"
	// ReasonInstallFailed: a Helm install failed; retried with backoff.
	ReasonInstallFailed = "InstallFailed"
	// ReasonUpgradeFailed: a Helm upgrade failed (e.g. the chart rejects
	// the values); retried with backoff, the running release is kept.
	ReasonUpgradeFailed = "UpgradeFailed"
	// ReasonUninstallFailed: uninstalling on deletion failed; retried.
	ReasonUninstallFailed = "UninstallFailed"
)

// Reasons for ZonesResolved and the FederationMesh's Ready.
const (
	// ReasonResolved: every member zone exists.
	ReasonResolved = "Resolved"
	// ReasonZoneNotFound: a zone named by the mesh does not exist.
	ReasonZoneNotFound = "ZoneNotFound"
	// ReasonHubNotMember: the hub of a HubAndSpoke topology is not a member.
	ReasonHubNotMember = "HubNotMember"
	// ReasonLinkNotMember: an explicit link names a zone that is not a member.
	ReasonLinkNotMember = "LinkNotMember"
	// ReasonDuplicateTrustDomain: two member zones have the same trust domain.
	ReasonDuplicateTrustDomain = "DuplicateTrustDomain"
	// ReasonZonesNotReady: at least one member zone is not Ready.
	ReasonZonesNotReady = "ZonesNotReady"
	// ReasonPairsNotEstablished: at least one directed pair is not written
	// and current in its trusting zone.
	ReasonPairsNotEstablished = "PairsNotEstablished"
	// ReasonDeleting: the mesh is being deleted.
	ReasonDeleting = "Deleting"
	// ReasonPeerBundleUnknown: the trusted zone's bundle is not known yet.
	ReasonPeerBundleUnknown = "PeerBundleUnknown"
	// ReasonPeerBundleNotRefreshed: the trusted zone's bundle endpoint is
	// failing; the trusting zone keeps the last good bundle.
	ReasonPeerBundleNotRefreshed = "PeerBundleNotRefreshed"
	// ReasonConflict: an object the operator does not own is in the way.
	ReasonConflict = "Conflict"
	// ReasonApplyFailed: writing to the trusting zone failed.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonSpireNotObserved: pairs are written and current, but the
	// operator cannot see what the zones' SPIRE servers hold.
	ReasonSpireNotObserved = "SpireNotObserved"
	// ReasonSpireUnreachable: the trusting zone's SPIRE server is
	// configured for access but cannot be read.
	ReasonSpireUnreachable = "SpireUnreachable"
	// ReasonWaitingForSpire: the trusting zone's SPIRE server holds no
	// bundle of the peer yet (spire-controller-manager has not created the
	// relationship, or its first fetch is under way).
	ReasonWaitingForSpire = "WaitingForSpire"
	// ReasonSpireBundleOutdated: the trusting zone's SPIRE server holds an
	// older bundle of the peer; the operator asked it to refresh.
	ReasonSpireBundleOutdated = "SpireBundleOutdated"
	// ReasonBundleHeld: the trusting zone's SPIRE server holds the peer's
	// current bundle.
	ReasonBundleHeld = "BundleHeld"
)

// Generic reasons.
const (
	// ReasonSucceeded: the condition's subject holds.
	ReasonSucceeded = "Succeeded"
	// ReasonProgressing: work is under way; the condition will settle.
	ReasonProgressing = "Progressing"
	// ReasonNoHealthyCluster: no child cluster (nested) or side (HA) of
	// the trust domain is healthy; status.clusters says why.
	ReasonNoHealthyCluster = "NoHealthyCluster"
)
