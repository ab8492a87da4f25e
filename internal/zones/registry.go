// Package zones is a cache of remote cluster clients, one per zone (in the
// manner of cluster-api's ClusterCache). A client is built from the zone's
// kubeconfig Secret (or the management cluster's own config for local
// zones), cached until that Secret changes, and watched by a health probe
// whose transitions enqueue the zone, so that a zone coming back is
// reconciled at once instead of after a backoff. Others register watches in
// a zone's cluster through EnsureWatch; they run as long as the connection.
package zones

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// DefaultProbeInterval is how often a connected zone's health is probed.
const DefaultProbeInterval = 10 * time.Second

// AccessError says why a zone's cluster cannot be used. Reason is one of
// the ClusterReachable reasons of the API; Message is for humans and never
// holds credentials.
type AccessError struct {
	Reason  string
	Message string
	Err     error
}

func (e *AccessError) Error() string { return e.Message }
func (e *AccessError) Unwrap() error { return e.Err }

// Options configure a Registry.
type Options struct {
	// Namespace holds the zones' kubeconfig Secrets.
	Namespace string
	// SecretReader reads Secrets in Namespace.
	SecretReader client.Reader
	// LocalConfig reaches the management cluster, for local zones.
	LocalConfig *rest.Config
	// Scheme of the zone clients.
	Scheme *runtime.Scheme
	// ProbeInterval between health probes; DefaultProbeInterval if zero.
	ProbeInterval time.Duration
	// Log receives health transitions.
	Log logr.Logger
	// OwnedLabels returns the labels that mark the objects the operator
	// owns in a zone's cluster for that zone; Zone.Owned caches only
	// those. Nil: Zone.Owned reads through Zone.Client, uncached.
	OwnedLabels func(zone string) map[string]string
	// OwnedKinds are the kinds of those objects whose watches start as
	// soon as the zone connects, so that the first read finds them synced.
	// The watch of another kind starts on its first read.
	OwnedKinds []client.Object
}

// Registry caches zone clients and probes their health. It is a manager
// Runnable: its probes stop with the manager.
type Registry struct {
	opts   Options
	events chan event.GenericEvent

	rootCtx    context.Context
	rootCancel context.CancelFunc

	mu    sync.Mutex
	zones map[string]*Zone
}

// NewRegistry returns an empty registry.
func NewRegistry(opts Options) *Registry {
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultProbeInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{
		opts:       opts,
		events:     make(chan event.GenericEvent, 1024),
		rootCtx:    ctx,
		rootCancel: cancel,
		zones:      map[string]*Zone{},
	}
}

// Start blocks until ctx ends, then stops every health probe.
func (r *Registry) Start(ctx context.Context) error {
	<-ctx.Done()
	r.rootCancel()
	return nil
}

// Source enqueues a ZoneTrustDomain whenever its health changes.
func (r *Registry) Source() source.Source {
	return source.Channel(r.events, &handler.EnqueueRequestForObject{})
}

// Key names a zone in the registry: the name of its ZoneTrustDomain.
type Key struct{ Name string }

// KeyOf is the registry key of a zone.
func KeyOf(zone *spirefedv1alpha1.ZoneTrustDomain) Key { return Key{Name: zone.Name} }

// Zone is a connected zone cluster.
type Zone struct {
	// Name of the ZoneTrustDomain.
	Name string
	// Client of the zone's cluster, uncached.
	Client client.Client
	// Config reaches the zone's cluster (for exec into Pods), with the
	// registry's client limits, and Clientset is built from it.
	Config    *rest.Config
	Clientset kubernetes.Interface

	accessKey string
	// probeNamespace is where the operator must be allowed to read
	// ConfigMaps: the zone's SPIRE namespace.
	probeNamespace string
	// ctx lives as long as this connection; watches and probes run in it.
	ctx        context.Context
	stopProbes context.CancelFunc
	// watchClient is the HTTP client, without a timeout, of the zone's
	// watches: its caches and Clientset (see newZoneClient).
	watchClient *http.Client

	// probeInterval is the registry's; a probe younger than it is fresh.
	probeInterval time.Duration

	mu          sync.Mutex
	lastReason  string
	lastMessage string
	// probedAt is when the last probe ended, and lastProbe its outcome.
	probedAt  time.Time
	lastProbe error
	watches   map[string]*watch
	// owned is the cache of the operator's own objects; ownedStop stops it.
	owned     ownedCache
	ownedStop context.CancelFunc
}

// Owned reads, from a cache kept current by watches, the objects the
// operator owns in the zone's cluster for this zone (the labels
// Options.OwnedLabels returns; managedFields stripped). Steady-state reads
// go here, never to the API server. The cache is rebuilt when the zone
// comes back after its probe failed, so that it never serves what an
// outage kept from it.
func (z *Zone) Owned() client.Reader {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.owned.Reader
}

// Health is the outcome of the zone's last probe: a ClusterReachable
// reason (empty before the first probe) and, when it failed, why.
func (z *Zone) Health() (reason, message string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.lastReason, z.lastMessage
}

// WatchFunc watches something in a zone's cluster until ctx ends, and
// calls notify whenever it changed; notify enqueues the zone.
type WatchFunc func(ctx context.Context, zone *Zone, notify func())

// watch is a running WatchFunc.
type watch struct {
	id   string
	stop context.CancelFunc
}

// Connect returns the client of zone's cluster, building it when the zone
// is new or its kubeconfig Secret changed. Errors are *AccessError.
func (r *Registry) Connect(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (*Zone, error) {
	accessKey, configOf, err := r.resolveAccess(ctx, zone)
	if err != nil {
		r.Forget(KeyOf(zone))
		return nil, err
	}
	probeNamespace := zone.BootstrapConfigMap().Namespace
	accessKey += "|" + probeNamespace

	r.mu.Lock()
	defer r.mu.Unlock()
	if existing := r.zones[zone.Name]; existing != nil {
		if existing.accessKey == accessKey {
			return existing, nil
		}
		existing.stopProbes()
	}
	// The kubeconfig is parsed only when the zone's access changed.
	config, err := configOf()
	if err != nil {
		delete(r.zones, zone.Name)
		return nil, err
	}
	limited := withClientLimits(config, zone.Name)
	zoneClient, watchClient, err := newZoneClient(limited, r.opts.Scheme)
	if err == nil {
		var clientset kubernetes.Interface
		clientset, err = kubernetes.NewForConfigAndClient(limited, watchClient)
		if err == nil {
			var owned ownedCache
			owned, err = r.newOwnedCache(limited, watchClient, zoneClient, zone.Name)
			if err == nil {
				connected := r.startZone(zone.Name, accessKey, probeNamespace, limited, zoneClient, clientset, owned)
				connected.watchClient = watchClient
				return connected, nil
			}
		}
	}
	delete(r.zones, zone.Name)
	return nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: fmt.Sprintf("building a client from the kubeconfig: %v", err), Err: err}
}

// startZone registers a connected zone and starts its health probe.
// r.mu is held.
func (r *Registry) startZone(name, accessKey, probeNamespace string, config *rest.Config, zoneClient client.Client, clientset kubernetes.Interface, owned ownedCache) *Zone {
	ctx, stop := context.WithCancel(r.rootCtx)
	connected := &Zone{
		Name:           name,
		Client:         zoneClient,
		Config:         config,
		Clientset:      clientset,
		accessKey:      accessKey,
		probeNamespace: probeNamespace,
		ctx:            ctx,
		stopProbes:     stop,
		probeInterval:  r.opts.ProbeInterval,
		watches:        map[string]*watch{},
	}
	connected.mu.Lock()
	r.startOwned(connected, owned)
	connected.mu.Unlock()
	r.zones[name] = connected
	go r.probeLoop(ctx, connected)
	return connected
}

// startOwned makes owned the zone's cache of owned objects, and stops the
// previous one. zone.mu is held.
func (r *Registry) startOwned(zone *Zone, owned ownedCache) {
	if zone.ownedStop != nil {
		zone.ownedStop()
	}
	ctx, stop := context.WithCancel(zone.ctx)
	zone.owned, zone.ownedStop = owned, stop
	if owned.cache == nil {
		return
	}
	go func() {
		if err := owned.cache.Start(ctx); err != nil {
			r.opts.Log.Error(err, "Cache of owned objects stopped", "zone", zone.Name)
		}
	}()
	for _, kind := range r.opts.OwnedKinds {
		// Start the watch without waiting for it; a kind the zone's
		// cluster does not serve fails here and again when it is read.
		if _, err := owned.cache.GetInformer(ctx, kind, cache.BlockUntilSynced(false)); err != nil {
			r.opts.Log.V(1).Info("Not watching a kind in the zone's cluster", "zone", zone.Name, "kind", fmt.Sprintf("%T", kind), "error", err.Error())
		}
	}
}

// stopWatches stops the zone's cache of owned objects, which reads fail
// until refreshOwned replaces it, and its other watches, which the next
// EnsureWatch starts again.
func (r *Registry) stopWatches(zone *Zone) {
	zone.mu.Lock()
	defer zone.mu.Unlock()
	if zone.ownedStop == nil && len(zone.watches) == 0 {
		return
	}
	r.opts.Log.V(1).Info("Stopping the zone's watches while its API server does not answer", "zone", zone.Name)
	if zone.ownedStop != nil {
		zone.ownedStop()
		zone.ownedStop = nil
		zone.owned = ownedCache{Reader: unavailableReader{zone: zone.Name}}
	}
	for kind, running := range zone.watches {
		running.stop()
		delete(zone.watches, kind)
	}
}

// refreshOwned replaces the zone's cache of owned objects with a new one,
// which lists them again.
func (r *Registry) refreshOwned(zone *Zone) {
	owned, err := r.newOwnedCache(zone.Config, zone.watchClient, zone.Client, zone.Name)
	if err != nil {
		r.opts.Log.Error(err, "Rebuilding the cache of owned objects", "zone", zone.Name)
		return
	}
	zone.mu.Lock()
	defer zone.mu.Unlock()
	r.startOwned(zone, owned)
}

// EnsureWatch makes sure a watch of the given kind runs in a connected
// zone's cluster, with the parameters that id names: one watch per kind
// per zone; a different id replaces the running one. Watches stop when the
// zone is forgotten or its access changes (the next EnsureWatch after
// Connect starts them again). A zone that is not connected is ignored.
func (r *Registry) EnsureWatch(key Key, kind, id string, run WatchFunc) {
	zoneName := key.Name
	r.mu.Lock()
	zone := r.zones[zoneName]
	r.mu.Unlock()
	if zone == nil {
		return
	}
	zone.mu.Lock()
	defer zone.mu.Unlock()
	if running := zone.watches[kind]; running != nil {
		if running.id == id {
			return
		}
		running.stop()
	}
	ctx, stop := context.WithCancel(zone.ctx)
	zone.watches[kind] = &watch{id: id, stop: stop}
	go run(ctx, zone, func() {
		r.opts.Log.V(1).Info("Watched object changed", "zone", zoneName, "watch", kind)
		r.enqueue(ctx, zoneName)
	})
}

// Forget drops a zone's client and stops its probes.
func (r *Registry) Forget(key Key) {
	name := key.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if existing := r.zones[name]; existing != nil {
		existing.stopProbes()
		delete(r.zones, name)
	}
}

// SecretData reads one key of a Secret in the namespace of the zones'
// kubeconfig Secrets (a missing Secret or key is an *AccessError with
// reason SecretNotFound).
func (r *Registry) SecretData(ctx context.Context, ref spirefedv1alpha1.KubeconfigSecretReference) ([]byte, error) {
	_, _, data, err := r.secretKey(ctx, ref)
	return data, err
}

// secretKey reads the Secret ref names, in the namespace of the zones'
// kubeconfig Secrets, and the value of its key (default "value"); a
// missing Secret or key is an *AccessError with reason SecretNotFound.
func (r *Registry) secretKey(ctx context.Context, ref spirefedv1alpha1.KubeconfigSecretReference) (*corev1.Secret, string, []byte, error) {
	key := ref.Key
	if key == "" {
		key = "value"
	}
	secret := &corev1.Secret{}
	if err := r.opts.SecretReader.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: ref.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, key, nil, &AccessError{Reason: spirefedv1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf("Secret %s/%s does not exist", r.opts.Namespace, ref.Name), Err: err}
		}
		return nil, key, nil, fmt.Errorf("reading Secret %s/%s: %w", r.opts.Namespace, ref.Name, err)
	}
	data, ok := secret.Data[key]
	if !ok {
		return nil, key, nil, &AccessError{Reason: spirefedv1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf("Secret %s/%s has no key %q", r.opts.Namespace, ref.Name, key)}
	}
	return secret, key, data, nil
}

// Connected says whether the registry holds a client (and runs a probe)
// for key.
func (r *Registry) Connected(key Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.zones[key.Name] != nil
}

// resolveAccess returns a key that changes whenever the zone's access
// changes, and how to build the REST config to reach it (a kubeconfig is
// parsed only when its key is new).
func (r *Registry) resolveAccess(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (string, func() (*rest.Config, error), error) {
	if zone.Spec.Cluster.Local {
		if r.opts.LocalConfig == nil {
			return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: "the operator has no config for the local cluster"}
		}
		return "local", func() (*rest.Config, error) { return r.opts.LocalConfig, nil }, nil
	}
	ref := zone.Spec.Cluster.KubeconfigSecretRef
	if ref == nil {
		return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: "spec.cluster names neither a kubeconfig Secret nor the local cluster"}
	}
	secret, key, data, err := r.secretKey(ctx, *ref)
	if err != nil {
		return "", nil, err
	}
	configOf := func() (*rest.Config, error) {
		config, err := restConfigFromKubeconfig(data)
		if err != nil {
			return nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: fmt.Sprintf("Secret %s/%s key %q: %v", r.opts.Namespace, ref.Name, key, err), Err: err}
		}
		return config, nil
	}
	return fmt.Sprintf("secret|%s|%s|%s|%s", ref.Name, key, secret.UID, secret.ResourceVersion), configOf, nil
}

// probeLoop probes the zone periodically and enqueues it when the result
// changes from what was last seen, by this loop or by the reconciler.
func (r *Registry) probeLoop(ctx context.Context, zone *Zone) {
	// Zones connected together (at start, 200 of them) are probed apart,
	// not in one burst every interval.
	select {
	case <-ctx.Done():
		return
	case <-time.After(rand.N(r.opts.ProbeInterval)):
	}
	ticker := time.NewTicker(r.opts.ProbeInterval)
	defer ticker.Stop()
	var failingSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		previous, _ := zone.Health()
		err := zone.Probe(ctx)
		if ctx.Err() != nil {
			return
		}
		// A zone that failed one probe only (an API server too busy to
		// answer in time) is left to the cache's own watches, which
		// resume where they stopped. A longer outage stops the zone's
		// watches (an API server shutting down waits for open watches to
		// end, and a cache that cannot follow the zone is not read), and
		// the cache lists everything again when the zone is back.
		switch {
		case err != nil && failingSince.IsZero():
			failingSince = time.Now()
		case err != nil && time.Since(failingSince) > r.opts.ProbeInterval*3/2:
			r.stopWatches(zone)
		case err == nil && !failingSince.IsZero():
			if time.Since(failingSince) > r.opts.ProbeInterval*3/2 {
				r.refreshOwned(zone)
			}
			failingSince = time.Time{}
		}
		if previous != reasonOf(err) {
			r.opts.Log.V(1).Info("Zone health changed", "zone", zone.Name, "reason", reasonOf(err))
			r.enqueue(ctx, zone.Name)
		}
	}
}

// enqueue asks for the zone to be reconciled (the zone a cluster's view
// belongs to, for the clusters of nested and HA trust domains).
func (r *Registry) enqueue(ctx context.Context, name string) {
	select {
	case r.events <- event.GenericEvent{Object: &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: ZoneOf(name)}}}:
	case <-ctx.Done():
	}
}

// probeTimeout bounds one health probe.
const probeTimeout = 5 * time.Second

// Probe checks that the zone's API server answers, accepts the credentials
// and lets the operator read ConfigMaps in the zone's SPIRE namespace. It
// returns nil or an *AccessError, and records the outcome.
func (z *Zone) Probe(ctx context.Context) error {
	err := z.probe(ctx)
	z.recordReason(reasonOf(err), messageOf(err))
	z.mu.Lock()
	z.probedAt, z.lastProbe = time.Now(), err
	z.mu.Unlock()
	return err
}

// RecentProbe is the outcome of the zone's last probe when it is younger
// than the probe interval (the probe loop keeps it so), and of a new
// probe otherwise: a zone's reconcile does not probe again what the loop
// just probed (at 200 zones, 200 requests a minute fewer).
func (z *Zone) RecentProbe(ctx context.Context) error {
	z.mu.Lock()
	fresh, err := !z.probedAt.IsZero() && time.Since(z.probedAt) < z.probeInterval, z.lastProbe
	z.mu.Unlock()
	if fresh {
		return err
	}
	return z.Probe(ctx)
}

func (z *Zone) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	review := newAccessReview(z.probeNamespace)
	if err := z.Client.Create(ctx, review); err != nil {
		switch {
		case apierrors.IsUnauthorized(err):
			return &AccessError{Reason: spirefedv1alpha1.ReasonUnauthorized, Message: "the zone's API server refused the kubeconfig's credentials", Err: err}
		case apierrors.IsForbidden(err):
			return &AccessError{Reason: spirefedv1alpha1.ReasonForbidden, Message: fmt.Sprintf("the kubeconfig's user may not create selfsubjectaccessreviews: %v", err), Err: err}
		default:
			return &AccessError{Reason: spirefedv1alpha1.ReasonUnreachable, Message: fmt.Sprintf("the zone's API server did not answer: %v", err), Err: err}
		}
	}
	if !review.Status.Allowed {
		return &AccessError{
			Reason:  spirefedv1alpha1.ReasonForbidden,
			Message: fmt.Sprintf("the kubeconfig's user may not get configmaps in namespace %q of the zone's cluster", z.probeNamespace),
		}
	}
	return nil
}

// recordReason stores the latest probe outcome and says whether it changed.
func (z *Zone) recordReason(reason, message string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	changed := z.lastReason != reason
	z.lastReason, z.lastMessage = reason, message
	return changed
}

// messageOf is a probe error's message, or "".
func messageOf(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// reasonOf maps a probe error to a ClusterReachable reason.
func reasonOf(err error) string {
	if err == nil {
		return spirefedv1alpha1.ReasonConnected
	}
	var accessErr *AccessError
	if errors.As(err, &accessErr) {
		return accessErr.Reason
	}
	return spirefedv1alpha1.ReasonUnreachable
}
