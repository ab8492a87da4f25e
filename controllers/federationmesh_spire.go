package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	meshstatus "github.com/spirefed/spire-federation-operator/internal/mesh"
	"github.com/spirefed/spire-federation-operator/internal/metrics"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
)

// refreshSpire asks the SPIRE server of every trusting zone it can reach to
// refresh a peer's bundle when the server does not hold the peer's current
// authorities, instead of waiting for the server's own poll (at least a
// minute; spire-controller-manager passes a changed trustDomainBundle on to
// SPIRE only when it creates a relationship). It then reads the server's
// bundles again, so that status shows the result of the refresh.
func (r *FederationMeshReconciler) refreshSpire(ctx context.Context, scope *meshScope) {
	observed := scope.observed
	refreshed := map[string]bool{}
	for _, link := range scope.plan.Links {
		server, reachable := scope.spireServers[link.From]
		held, read := observed.SpireHeld[link.From]
		if !reachable || !read || !meshstatus.Written(scope.members, observed, link) {
			continue
		}
		peer := scope.members[link.To]
		// A peer whose endpoint fails cannot be fetched by SPIRE either.
		if meshstatus.HoldsCurrent(held, peer) || !meta.IsStatusConditionTrue(peer.Status.Conditions, spirefedv1alpha1.BundleFetchedCondition) ||
			!r.refreshes.allow(refreshKey{mesh: scope.mesh.Name, from: link.From, peer: peer.Spec.TrustDomain}, bundleDigest(peer), r.Clock.Now(), r.SpireRefreshInterval) {
			continue
		}
		log := ctrl.LoggerFrom(ctx).WithValues("zone", link.From, "peer", peer.Spec.TrustDomain)
		callCtx, cancel := context.WithTimeout(ctx, r.SpireCallTimeout)
		start := r.Clock.Now()
		err := server.RefreshBundle(callCtx, peer.Spec.TrustDomain)
		metrics.RecordSpireRefresh(link.From, r.Clock.Since(start))
		cancel()
		if err != nil {
			// Typically: spire-controller-manager has not created the
			// relationship yet. The pair stays Pending and is retried.
			log.V(1).Info("SPIRE bundle refresh failed", "error", err.Error())
			continue
		}
		log.Info("Asked SPIRE to refresh a peer's bundle")
		metrics.SpireRefreshes.WithLabelValues(link.From).Inc()
		refreshed[link.From] = true
	}
	for name := range refreshed {
		// The server's identity was checked when it was first read.
		callCtx, cancel := context.WithTimeout(ctx, r.SpireCallTimeout)
		held, err := scope.spireServers[name].FederatedBundles(callCtx)
		cancel()
		if err != nil {
			observed.SpireErrors[name] = err.Error()
			delete(observed.SpireHeld, name)
			continue
		}
		observed.SpireHeld[name] = held
	}
}

// readSpire checks that a SPIRE server is the zone's own (its trust domain)
// and reads the federated bundles it holds.
func (r *FederationMeshReconciler) readSpire(ctx context.Context, server spireaccess.Server, trustDomain string) (map[string]spireaccess.HeldBundle, error) {
	ctx, cancel := context.WithTimeout(ctx, r.SpireCallTimeout)
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

// refreshKey names a pair in one mesh: zone From's SPIRE refreshing the
// bundle of trust domain peer.
type refreshKey struct {
	mesh, from, peer string
}

// refreshLimiter rate-limits refresh requests per pair and peer bundle:
// the first request for a bundle the peer had not published before (a
// rotation) goes at once, whenever the last request for an older bundle
// was sent; a repeated request for the same bundle (SPIRE could not fetch
// it yet) waits the interval. It remembers one request per pair.
type refreshLimiter struct {
	mu   sync.Mutex
	last map[refreshKey]refreshSent
}

// refreshSent is the last refresh request of a pair: for which of the
// peer's bundles (its digest), and when.
type refreshSent struct {
	digest string
	at     time.Time
}

// allow says whether a refresh for key may be sent now, the peer's bundle
// being digest, and records it.
func (l *refreshLimiter) allow(key refreshKey, digest string, now time.Time, interval time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.last[key]; ok && last.digest == digest && now.Sub(last.at) < interval {
		return false
	}
	if l.last == nil {
		l.last = map[refreshKey]refreshSent{}
	}
	l.last[key] = refreshSent{digest: digest, at: now}
	return true
}

// bundleDigest is the digest of the bundle a zone publishes, empty when it
// has none yet.
func bundleDigest(zone *spirefedv1alpha1.ZoneTrustDomain) string {
	if zone.Status.Bundle == nil {
		return ""
	}
	return zone.Status.Bundle.Digest
}

// forget drops the refresh times of a deleted mesh.
func (l *refreshLimiter) forget(mesh string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key := range l.last {
		if key.mesh == mesh {
			delete(l.last, key)
		}
	}
}
