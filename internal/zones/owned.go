package zones

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
	"unique"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// unavailableReader is the reader of a zone whose watches are stopped.
type unavailableReader struct{ zone string }

func (u unavailableReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return u.err()
}

func (u unavailableReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return u.err()
}

func (u unavailableReader) err() error {
	return fmt.Errorf("the cache of zone %s is stopped while its API server does not answer", u.zone)
}

// ownedCache reads the operator's own objects in a zone's cluster: a
// label-filtered cache, or the uncached client when the registry has no
// OwnedLabels.
type ownedCache struct {
	client.Reader
	cache cache.Cache
}

// ownedSyncTimeout bounds the first read of a kind from a zone's cache
// (the informer's initial list): an unreachable zone fails the read
// instead of holding the reconcile.
const ownedSyncTimeout = 10 * time.Second

// newOwnedCache builds the cache of the objects the operator owns in a
// zone's cluster for that zone: only objects with the zone's ownership
// labels are listed and watched, and their managedFields are dropped. name
// is the registry name: a cluster of a nested or HA trust domain holds the
// objects of its zone (ZoneOf), labelled with the zone's name.
func (r *Registry) newOwnedCache(config *rest.Config, watchClient *http.Client, zoneClient client.Client, name string) (ownedCache, error) {
	zone := ZoneOf(name)
	if r.opts.OwnedLabels == nil {
		return ownedCache{Reader: zoneClient}, nil
	}
	zoneCache, err := cache.New(config, cache.Options{
		Scheme:               r.opts.Scheme,
		HTTPClient:           watchClient,
		Mapper:               zoneClient.RESTMapper(),
		DefaultLabelSelector: labels.SelectorFromSet(r.opts.OwnedLabels(zone)),
		DefaultTransform:     ownedTransform(),
	})
	if err != nil {
		return ownedCache{}, err
	}
	selector := labels.SelectorFromSet(r.opts.OwnedLabels(zone))
	return ownedCache{Reader: newOwnedReader(zoneCache, zoneClient, selector), cache: zoneCache}, nil
}

// ownedTransform strips what the operator does not read from the objects
// a zone's cache holds: their managedFields, and the copies of a bundle.
// Every ClusterFederatedTrustDomain of a peer carries the same bundle (199
// copies of each zone's at 200 zones, 160 MB in all): the cache keeps one
// (unique.Make), which the planner's bundle of that zone is too, so that
// comparing them is comparing two pointers. The other strings a peer's
// objects repeat (labels, trust domain, endpoint) are kept once too.
func ownedTransform() toolscache.TransformFunc {
	stripManagedFields := cache.TransformStripManagedFields()
	return func(in any) (any, error) {
		out, err := stripManagedFields(in)
		if err != nil {
			return out, err
		}
		if object, ok := out.(metav1.Object); ok && len(object.GetLabels()) > 0 {
			object.SetLabels(internLabels(object.GetLabels()))
		}
		if federated, ok := out.(*spirev1alpha1.ClusterFederatedTrustDomain); ok {
			spec := &federated.Spec
			spec.TrustDomainBundle = intern(spec.TrustDomainBundle)
			spec.TrustDomain = intern(spec.TrustDomain)
			spec.BundleEndpointURL = intern(spec.BundleEndpointURL)
			spec.BundleEndpointProfile.Type = spirev1alpha1.BundleEndpointProfileType(intern(string(spec.BundleEndpointProfile.Type)))
			spec.BundleEndpointProfile.EndpointSPIFFEID = intern(spec.BundleEndpointProfile.EndpointSPIFFEID)
			spec.ClassName = intern(spec.ClassName)
		}
		return out, nil
	}
}

// intern returns the one copy of s that the process keeps.
func intern(s string) string { return unique.Make(s).Value() }

// internLabels copies labels with interned keys and values.
func internLabels(labels map[string]string) map[string]string {
	interned := make(map[string]string, len(labels))
	for key, value := range labels {
		interned[intern(key)] = intern(value)
	}
	return interned
}

// ownedReader reads a zone's cache of owned objects. Every read is
// bounded by ownedSyncTimeout: the first read of a kind waits for the
// informer's initial list.
type ownedReader struct {
	cache cache.Cache
	// uncached and selector serve Holds' one look at a kind the cache
	// does not watch yet.
	uncached client.Reader
	selector labels.Selector

	mu sync.Mutex
	// watched are the kinds the cache has been asked for (their informers
	// run); held, the kinds looked up by Holds, and whether the zone held
	// any.
	watched map[string]bool
	held    map[string]bool
}

func newOwnedReader(zoneCache cache.Cache, uncached client.Reader, selector labels.Selector) *ownedReader {
	return &ownedReader{cache: zoneCache, uncached: uncached, selector: selector, watched: map[string]bool{}, held: map[string]bool{}}
}

func (o *ownedReader) markWatched(obj runtime.Object) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.watched[fmt.Sprintf("%T", obj)] = true
}

// Holds says whether the zone's cluster may hold objects of obj's kind
// that the operator owns for the zone: yes once the cache watches the
// kind; otherwise one uncached list (of at most one object, list is of
// obj's kind) tells, and the answer is kept. A kind the operator only
// writes when a mesh asks for it (ClusterStaticEntries) is then watched
// only in the zones that hold some or are to: at 200 zones, an informer
// per zone is 1,800 goroutines and 200 watches.
func (o *ownedReader) Holds(ctx context.Context, obj client.Object, list client.ObjectList) (bool, error) {
	kind := fmt.Sprintf("%T", obj)
	o.mu.Lock()
	watched, held, looked := o.watched[kind], o.held[kind], false
	if !watched {
		_, looked = o.held[kind]
	}
	o.mu.Unlock()
	if watched || looked {
		return watched || held, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ownedSyncTimeout)
	defer cancel()
	if err := o.uncached.List(ctx, list, client.MatchingLabelsSelector{Selector: o.selector}, client.Limit(1)); err != nil {
		return false, err
	}
	held = meta.LenList(list) > 0
	o.mu.Lock()
	o.held[kind] = held
	o.mu.Unlock()
	return held, nil
}

// CachedObjects returns the objects of obj's kind that the cache holds,
// the cache's own, neither copied nor filtered: every object of the cache
// is one the operator owns for the zone. A pass reads them all (39,800 at
// 200 zones), and a List would copy each. They must not be modified.
func (o *ownedReader) CachedObjects(ctx context.Context, obj client.Object) ([]any, error) {
	o.markWatched(obj)
	ctx, cancel := context.WithTimeout(ctx, ownedSyncTimeout)
	defer cancel()
	informer, err := o.cache.GetInformer(ctx, obj)
	if err != nil {
		return nil, err
	}
	indexed, ok := informer.(toolscache.SharedIndexInformer)
	if !ok {
		return nil, fmt.Errorf("the cache's informer of %T is a %T, not an indexed informer", obj, informer)
	}
	if !indexed.HasSynced() {
		// An informer of a cache that is not started (yet, or any more)
		// is not waited for: its empty store is not what the zone holds.
		return nil, &cache.ErrCacheNotStarted{}
	}
	return indexed.GetStore().List(), nil
}

func (o *ownedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	o.markWatched(obj)
	ctx, cancel := context.WithTimeout(ctx, ownedSyncTimeout)
	defer cancel()
	return o.cache.Get(ctx, key, obj, opts...)
}

func (o *ownedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	ctx, cancel := context.WithTimeout(ctx, ownedSyncTimeout)
	defer cancel()
	return o.cache.List(ctx, list, opts...)
}
