package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
)

// refreshSpire asks the SPIRE server of every trusting zone it can reach to
// refresh a peer's bundle when the server does not hold the peer's current
// authorities, instead of waiting for the server's own poll (at least a
// minute; spire-controller-manager passes a changed trustDomainBundle on to
// SPIRE only when it creates a relationship). It then reads the server's
// bundles again, so that status shows the result of the refresh.
func (r *FederationMeshReconciler) refreshSpire(ctx context.Context, scope *meshScope) {
	refreshed := map[string]bool{}
	for _, link := range scope.plan.Links {
		server, held, ok := r.spireOf(scope, link.From)
		if !ok || !r.written(scope, link) {
			continue
		}
		peer := scope.members[link.To]
		// A peer whose endpoint fails cannot be fetched by SPIRE either.
		if holdsCurrent(held, peer) || !meta.IsStatusConditionTrue(peer.Status.Conditions, spirefedv1alpha1.BundleFetchedCondition) ||
			!r.mayRefresh(scope.mesh.Name, link.From, peer.Spec.TrustDomain) {
			continue
		}
		log := ctrl.LoggerFrom(ctx).WithValues("zone", link.From, "peer", peer.Spec.TrustDomain)
		callCtx, cancel := context.WithTimeout(ctx, spireCallTimeout)
		err := server.RefreshBundle(callCtx, peer.Spec.TrustDomain)
		cancel()
		if err != nil {
			// Typically: spire-controller-manager has not created the
			// relationship yet. The pair stays Pending and is retried.
			log.V(1).Info("SPIRE bundle refresh failed", "error", err.Error())
			continue
		}
		log.Info("Asked SPIRE to refresh a peer's bundle")
		metrics.SpireRefreshes.WithLabelValues(link.From).Inc()
		r.refreshes.Add(1)
		refreshed[link.From] = true
	}
	for name := range refreshed {
		// The server's identity was checked when it was first read.
		callCtx, cancel := context.WithTimeout(ctx, spireCallTimeout)
		held, err := scope.spireServers[name].FederatedBundles(callCtx)
		cancel()
		if err != nil {
			scope.spireErrors[name] = err.Error()
			delete(scope.spireHeld, name)
			continue
		}
		scope.spireHeld[name] = held
	}
}

// spireCallTimeout bounds one call to a SPIRE server.
const spireCallTimeout = 10 * time.Second

// readSpire checks that a SPIRE server is the zone's own (its trust domain)
// and reads the federated bundles it holds.
func readSpire(ctx context.Context, server spireaccess.Server, trustDomain string) (map[string]spireaccess.HeldBundle, error) {
	ctx, cancel := context.WithTimeout(ctx, spireCallTimeout)
	defer cancel()
	own, err := server.TrustDomain(ctx)
	if err != nil {
		return nil, err
	}
	if own != trustDomain {
		return nil, fmt.Errorf("the SPIRE server reached is the one of trust domain %q, not %q: check spire.serverAccess", own, trustDomain)
	}
	return server.FederatedBundles(ctx)
}

// SpireRefreshes counts the refresh requests the reconciler sent.
func (r *FederationMeshReconciler) SpireRefreshes() int64 { return r.refreshes.Load() }

// spireOf returns the SPIRE server of a zone and the bundles it holds, when
// both are known.
func (r *FederationMeshReconciler) spireOf(scope *meshScope, zone string) (spireaccess.Server, map[string]spireaccess.HeldBundle, bool) {
	server, reachable := scope.spireServers[zone]
	held, read := scope.spireHeld[zone]
	return server, held, reachable && read
}

// written says whether the trusting zone holds the pair's current
// ClusterFederatedTrustDomain: only then can its SPIRE fetch the peer.
func (r *FederationMeshReconciler) written(scope *meshScope, link plan.Link) bool {
	peer := scope.members[link.To]
	if peer == nil {
		return false
	}
	result, applied := scope.applied[link.From]
	return applied && result.Current[peer.Spec.TrustDomain]
}

// mayRefresh rate-limits refresh requests per pair.
func (r *FederationMeshReconciler) mayRefresh(mesh, from, peer string) bool {
	interval := r.SpireRefreshInterval
	if interval <= 0 {
		interval = DefaultSpireRefreshInterval
	}
	key := refreshKey{mesh: mesh, from: from, peer: peer}
	now := r.now()
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if last, ok := r.lastRefresh[key]; ok && now.Sub(last) < interval {
		return false
	}
	if r.lastRefresh == nil {
		r.lastRefresh = map[refreshKey]time.Time{}
	}
	r.lastRefresh[key] = now
	return true
}

// forgetRefreshes drops the refresh times of a deleted mesh.
func (r *FederationMeshReconciler) forgetRefreshes(mesh string) {
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	for key := range r.lastRefresh {
		if key.mesh == mesh {
			delete(r.lastRefresh, key)
		}
	}
}

// holdsCurrent says whether a SPIRE server holds the peer's current
// authorities: the same X.509 authorities and, once the peer's bundle came
// from its endpoint (the bootstrap ConfigMap has no JWT keys), the same JWT
// authorities. Sequences are not compared: SPIRE does not report the
// sequence of federated bundles.
func holdsCurrent(held map[string]spireaccess.HeldBundle, peer *spirefedv1alpha1.ZoneTrustDomain) bool {
	bundle, ok := held[peer.Spec.TrustDomain]
	current := peer.Status.Bundle
	if !ok || current == nil {
		return false
	}
	fingerprints := make([]string, 0, len(current.X509Authorities))
	for _, authority := range current.X509Authorities {
		fingerprints = append(fingerprints, authority.SHA256Fingerprint)
	}
	if !bundle.Holds(fingerprints) {
		return false
	}
	return current.Source != spirefedv1alpha1.BundleSourceEndpoint || bundle.HoldsJWTKeys(current.JWTAuthorityKeyIDs)
}
