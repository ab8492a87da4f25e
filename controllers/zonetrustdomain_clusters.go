package controllers

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/status"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// clusterRecheckInterval is how soon a zone with a degraded cluster is
// looked at again.
const clusterRecheckInterval = 5 * time.Second

// spireCallTimeout bounds one call to a cluster's SPIRE server.
const spireCallTimeout = 10 * time.Second

// clusterObservation is what one reconcile saw of one cluster of a nested
// or HA trust domain.
type clusterObservation struct {
	cluster zones.Cluster
	// access is the ClusterReachable reason and message when the cluster
	// cannot be reached; empty when it can.
	accessReason, accessMessage string
	// own is the server's own bundle, nil when it has no access configured
	// or cannot be read (spireErr).
	own       *types.Bundle
	observed  bool
	spireErr  error
	authority spireaccess.Authorities
}

// reconcileClusters reports every cluster of a nested or HA trust domain in
// status.clusters, and keeps an HA trust domain's sides cross-linked: each
// side's own bundle holds the other side's authorities, so that whichever
// side's bundle endpoint a peer's SPIRE fetches gives it both. It returns
// how soon to look again (0: at the resync).
func (r *ZoneTrustDomainReconciler) reconcileClusters(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) time.Duration {
	clusters := zones.Clusters(zone)
	r.forgetRemovedClusters(ctx, zone, clusters)
	if len(clusters) == 1 && clusters[0].Role == "" {
		zone.Status.Clusters = nil
		return 0
	}
	observations := make([]*clusterObservation, 0, len(clusters))
	for _, cluster := range clusters {
		observations = append(observations, r.observeCluster(ctx, zone, cluster))
	}
	if zone.Spec.Spire.Shape == spirefedv1alpha1.ShapeHA && len(observations) == 2 {
		r.crossLink(ctx, zone, observations[0], observations[1])
		r.crossLink(ctx, zone, observations[1], observations[0])
	}
	zone.Status.Clusters = clusterStatuses(zone, observations)
	for _, cluster := range zone.Status.Clusters {
		if cluster.Reason != spirefedv1alpha1.ClusterHealthy {
			return clusterRecheckInterval
		}
	}
	return 0
}

// observeCluster connects to one cluster, probes it and reads its SPIRE
// server's own bundle where the cluster names a way to reach it.
func (r *ZoneTrustDomainReconciler) observeCluster(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, cluster zones.Cluster) *clusterObservation {
	observation := &clusterObservation{cluster: cluster}
	connected, err := r.Zones.Connect(ctx, cluster.View)
	if err == nil && cluster.View != zone {
		// The zone's own cluster was probed by reconcileAccess.
		err = connected.RecentProbe(ctx)
	}
	if err != nil {
		observation.accessReason, observation.accessMessage = spirefedv1alpha1.ReasonUnreachable, err.Error()
		var accessErr *zones.AccessError
		if errors.As(err, &accessErr) {
			observation.accessReason = accessErr.Reason
		}
		return observation
	}
	if r.Spire == nil {
		return observation
	}
	server, err := r.Spire.ServerFor(cluster.View, connected.Config, connected.Clientset)
	if server == nil && err == nil {
		return observation
	}
	observation.observed = true
	if err != nil {
		observation.spireErr = err
		return observation
	}
	authority, ok := server.(spireaccess.Authorities)
	if !ok {
		observation.spireErr = fmt.Errorf("the SPIRE server of cluster %s cannot report its own bundle", cluster.Name)
		return observation
	}
	observation.authority = authority
	observation.own, observation.spireErr = readOwnBundle(ctx, authority, zone.Spec.TrustDomain)
	return observation
}

// readOwnBundle reads a server's own bundle and checks its trust domain.
func readOwnBundle(ctx context.Context, authority spireaccess.Authorities, trustDomain string) (*types.Bundle, error) {
	ctx, cancel := context.WithTimeout(ctx, spireCallTimeout)
	defer cancel()
	own, err := authority.OwnBundle(ctx)
	if err != nil {
		return nil, err
	}
	if own.GetTrustDomain() != trustDomain {
		return nil, fmt.Errorf("the SPIRE server reached is the one of trust domain %q, not %q: check its serverAccess", own.GetTrustDomain(), trustDomain)
	}
	return own, nil
}

// crossLink adds to side's own bundle the authorities of other that it
// lacks. Authorities only ever get added; SPIRE drops them once expired.
func (r *ZoneTrustDomainReconciler) crossLink(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, side, other *clusterObservation) {
	if side.own == nil || other.own == nil {
		return
	}
	missing := spireaccess.MissingAuthorities(side.own, other.own)
	if missing == nil {
		return
	}
	if err := checkAuthorities(missing); err != nil {
		side.spireErr = fmt.Errorf("side %s's authorities are not CA certificates: %w", other.cluster.Name, err)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, spireCallTimeout)
	defer cancel()
	if err := side.authority.AppendAuthorities(callCtx, missing); err != nil {
		ctrl.LoggerFrom(ctx).Info("Cannot cross-link an HA side", "side", side.cluster.Name, "error", err.Error())
		return
	}
	r.EventRecorder.Eventf(zone, nil, corev1.EventTypeNormal, "CrossLinked", "CrossLink",
		"Side %s now holds side %s's authorities (%d X.509, %d JWT added)", side.cluster.Name, other.cluster.Name, len(missing.X509Authorities), len(missing.JwtAuthorities))
	ctrl.LoggerFrom(ctx).Info("Cross-linked an HA side", "side", side.cluster.Name, "x509", len(missing.X509Authorities), "jwt", len(missing.JwtAuthorities))
	if own, err := readOwnBundle(ctx, side.authority, zone.Spec.TrustDomain); err == nil {
		side.own = own
	}
}

// checkAuthorities makes sure X.509 authorities about to enter a server's
// own bundle are CA certificates.
func checkAuthorities(authorities *types.Bundle) error {
	for _, authority := range authorities.GetX509Authorities() {
		cert, err := x509.ParseCertificate(authority.GetAsn1())
		if err != nil {
			return err
		}
		if !cert.IsCA {
			return fmt.Errorf("certificate %q is not a CA", cert.Subject)
		}
	}
	return nil
}

// clusterStatuses turns what was observed into status.clusters. It has no
// side effects.
func clusterStatuses(zone *spirefedv1alpha1.ZoneTrustDomain, observations []*clusterObservation) []spirefedv1alpha1.TrustDomainClusterStatus {
	var rootFingerprints []string
	if zone.Status.Bundle != nil {
		for _, authority := range zone.Status.Bundle.X509Authorities {
			rootFingerprints = append(rootFingerprints, authority.SHA256Fingerprint)
		}
	}
	out := make([]spirefedv1alpha1.TrustDomainClusterStatus, 0, len(observations))
	for i, observation := range observations {
		cluster := spirefedv1alpha1.TrustDomainClusterStatus{
			Name: observation.cluster.Name, Role: observation.cluster.Role,
			Reachable: metav1.ConditionTrue, SpireReady: metav1.ConditionUnknown,
		}
		switch {
		case observation.cluster.Role == spirefedv1alpha1.RoleRoot:
		case observation.cluster.Role == spirefedv1alpha1.RoleChild && observation.own != nil && rootFingerprints != nil:
			cluster.Attested = conditionStatus(spireaccess.HoldsX509(observation.own, rootFingerprints))
		case observation.cluster.Role == spirefedv1alpha1.RoleSide && observation.own != nil && observations[1-i].own != nil:
			cluster.Attested = conditionStatus(spireaccess.MissingAuthorities(observation.own, observations[1-i].own) == nil)
		default:
			cluster.Attested = metav1.ConditionUnknown
		}
		switch {
		case observation.accessReason != "":
			cluster.Reachable, cluster.Reason, cluster.Message = metav1.ConditionFalse, observation.accessReason, observation.accessMessage
		case observation.spireErr != nil:
			cluster.SpireReady, cluster.Reason = metav1.ConditionFalse, spirefedv1alpha1.ClusterSpireUnreachable
			cluster.Message = "Its SPIRE server cannot be read: " + status.Brief(observation.spireErr.Error())
		case cluster.Attested == metav1.ConditionFalse && cluster.Role == spirefedv1alpha1.RoleChild:
			cluster.SpireReady, cluster.Reason = metav1.ConditionTrue, spirefedv1alpha1.ClusterNotAttested
			cluster.Message = "The nested SPIRE server does not hold the root's current authorities: check its UpstreamAuthority and its agent of the root"
		case cluster.Attested == metav1.ConditionFalse:
			cluster.SpireReady, cluster.Reason = metav1.ConditionTrue, spirefedv1alpha1.ClusterNotCrossLinked
			cluster.Message = "This side does not hold the other side's authorities; the operator adds them through spire.serverAccess.socket"
		default:
			if observation.observed {
				cluster.SpireReady = metav1.ConditionTrue
			}
			cluster.Reason, cluster.Message = spirefedv1alpha1.ClusterHealthy, "Reachable"
			if observation.observed {
				cluster.Message = "Reachable, its SPIRE server answers"
			}
		}
		out = append(out, cluster)
	}
	return out
}

func conditionStatus(ok bool) metav1.ConditionStatus {
	if ok {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}

// summarizeClusters refines a True Ready of a nested or HA trust domain:
// False (NoHealthyCluster) when none of its children or sides is healthy,
// its message naming the degraded ones otherwise.
func summarizeClusters(zone *spirefedv1alpha1.ZoneTrustDomain) {
	ready := meta.FindStatusCondition(zone.Status.Conditions, spirefedv1alpha1.ReadyCondition)
	if ready == nil || ready.Status != metav1.ConditionTrue || len(zone.Status.Clusters) == 0 {
		return
	}
	var degraded []string
	serving, healthy := 0, 0
	for _, cluster := range zone.Status.Clusters {
		if cluster.Role != spirefedv1alpha1.RoleRoot {
			serving++
		}
		if cluster.Reason == spirefedv1alpha1.ClusterHealthy {
			if cluster.Role != spirefedv1alpha1.RoleRoot {
				healthy++
			}
			continue
		}
		degraded = append(degraded, fmt.Sprintf("%s (%s)", cluster.Name, cluster.Reason))
	}
	switch {
	case serving > 0 && healthy == 0:
		status.SetCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse,
			spirefedv1alpha1.ReasonNoHealthyCluster, "No cluster of the trust domain can issue: "+strings.Join(degraded, ", ")+"; status.clusters says why")
	case len(degraded) > 0:
		status.SetCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue,
			spirefedv1alpha1.ReasonSucceeded, ready.Message+"; degraded: "+strings.Join(degraded, ", "))
	}
}

// fetchURL is the bundle endpoint the operator fetches: for an HA trust
// domain the first healthy side's (A before B), else the side last
// fetched from; spec.bundleEndpoint.url otherwise. Each side serves both
// sides' authorities once cross-linked, so either gives peers the whole
// trust domain.
func fetchURL(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	ha := zone.Spec.Spire.HA
	if zone.Spec.Spire.Shape != spirefedv1alpha1.ShapeHA || ha == nil {
		return zone.Spec.BundleEndpoint.URL
	}
	for _, cluster := range zone.Status.Clusters {
		if cluster.Reason != spirefedv1alpha1.ClusterHealthy {
			continue
		}
		switch cluster.Name {
		case "a":
			return ha.A.BundleEndpointURL
		case "b":
			return ha.B.BundleEndpointURL
		}
	}
	if zone.Status.BundleEndpointURL != "" {
		return zone.Status.BundleEndpointURL
	}
	return zone.Spec.BundleEndpoint.URL
}

// removeFromClusters removes what the operator wrote in the other clusters
// of a nested or HA trust domain (children, sides) when the zone is
// deleted. A cluster whose kubeconfig Secret is gone is let go with an
// ObjectsLeftBehind Event; any other failure is returned, and the
// deletion waits.
func (r *ZoneTrustDomainReconciler) removeFromClusters(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) error {
	for _, cluster := range zones.Clusters(zone) {
		if cluster.View == zone {
			continue
		}
		connected, err := r.Zones.Connect(ctx, cluster.View)
		if secretGone(err) {
			r.EventRecorder.Eventf(zone, nil, corev1.EventTypeWarning, "ObjectsLeftBehind", "Delete",
				"Cluster %s: %s; the operator's objects there are left behind: delete those labelled %s=%s there",
				cluster.Name, err.Error(), plan.LabelZone, zone.Name)
			continue
		}
		if err == nil {
			_, err = r.Applier.RemoveZone(ctx, connected.Client, zone.Name)
		}
		if err != nil {
			return fmt.Errorf("cluster %s: %w", cluster.Name, err)
		}
		r.Zones.Forget(zones.KeyOf(cluster.View))
	}
	return nil
}
