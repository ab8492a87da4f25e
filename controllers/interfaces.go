package controllers

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/source"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// The reconcilers depend on these small interfaces, not on the packages'
// types, so that a unit test can pass a fake where the real thing is not
// needed. The operator wires the real implementations (see
// internal/operator).

// ZoneConnector gives clients of the zones' clusters (zones.Registry).
type ZoneConnector interface {
	// Connect returns the zone's connected cluster; errors are
	// *zones.AccessError when the zone's access is at fault.
	Connect(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (*zones.Zone, error)
	// Forget drops a zone's client and stops its watches.
	Forget(key zones.Key)
	// EnsureWatch keeps a watch running in a connected zone's cluster.
	EnsureWatch(key zones.Key, kind, id string, run zones.WatchFunc)
	// Source enqueues zones whose health changed or whose watches fired.
	Source() source.Source
	// SecretData reads a key of a Secret in the operator's namespace
	// (errors are *zones.AccessError when it is missing).
	SecretData(ctx context.Context, ref spirefedv1alpha1.KubeconfigSecretReference) ([]byte, error)
}

// ZoneWriter writes plans into zones' clusters (apply.Applier).
type ZoneWriter interface {
	Apply(ctx context.Context, c client.Client, live *apply.Live, zonePlan *plan.ZonePlan) (apply.Result, error)
	RemoveZone(ctx context.Context, c client.Client, zone string) (int, error)
}

// SpireAccess reaches zones' SPIRE servers (spireaccess.Access); a nil
// server and no error mean the zone configures no access.
type SpireAccess interface {
	ServerFor(zone *spirefedv1alpha1.ZoneTrustDomain, config *rest.Config, clientset kubernetes.Interface) (spireaccess.Server, error)
}

// SpireReleases installs SPIRE with Helm (spirehelm.Lifecycle).
type SpireReleases interface {
	Reconcile(ctx context.Context, config *rest.Config, zone *spirefedv1alpha1.ZoneTrustDomain) (spirehelm.Outcome, error)
	Uninstall(config *rest.Config, namespace, releaseName string) error
	// ReconcileShape and UninstallShape do the same for the spire-nested
	// releases of a Nested or HA trust domain, cluster by cluster.
	ReconcileShape(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, configFor spirehelm.ClusterConfig, rootKubeconfigs map[string][]byte) (spirehelm.Outcome, error)
	UninstallShape(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain, configFor spirehelm.ClusterConfig, skip func(error) bool) error
}

// BundleFetcher fetches bundles from bundle endpoints (bundle.Fetcher).
type BundleFetcher interface {
	// Fetch returns the validated bundle and the authorities it left out.
	Fetch(ctx context.Context, endpoint bundle.Endpoint, trust x509bundle.Source) (*spiffebundle.Bundle, []bundle.Dropped, error)
}
