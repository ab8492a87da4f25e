// Package zones gives controllers a client for each zone's cluster. A client
// is built from the zone's kubeconfig Secret (or the management cluster's
// own config for local zones), cached until that Secret changes, and
// watched by a health probe whose transitions enqueue the zone, so that a
// zone coming back is reconciled at once instead of after a backoff.
package zones

import (
	"context"
	"errors"
	"fmt"
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

	accessKey          string
	bootstrapNamespace string
	bootstrapName      string
	stopProbes         context.CancelFunc

	mu         sync.Mutex
	lastReason string
}

// Connect returns the client of zone's cluster, building it when the zone
// is new or its kubeconfig Secret changed. Errors are *AccessError.
func (r *Registry) Connect(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (*Zone, error) {
	accessKey, config, err := r.resolveAccess(ctx, zone)
	if err != nil {
		r.Forget(zone.Name)
		return nil, err
	}
	bootstrap := zone.BootstrapConfigMap()
	accessKey += "|" + bootstrap.Namespace + "|" + bootstrap.Name

	r.mu.Lock()
	defer r.mu.Unlock()
	if existing := r.zones[zone.Name]; existing != nil {
		if existing.accessKey == accessKey {
			return existing, nil
		}
		existing.stopProbes()
	}
	limited := withClientLimits(config, zone.Name)
	zoneClient, err := client.New(limited, client.Options{Scheme: r.opts.Scheme})
	if err == nil {
		var clientset kubernetes.Interface
		clientset, err = kubernetes.NewForConfig(limited)
		if err == nil {
			return r.startZone(zone.Name, accessKey, bootstrap, limited, zoneClient, clientset), nil
		}
	}
	delete(r.zones, zone.Name)
	return nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: fmt.Sprintf("building a client from the kubeconfig: %v", err), Err: err}
}

// startZone registers a connected zone and starts its health probe and
// its bootstrap ConfigMap watch. r.mu is held.
func (r *Registry) startZone(name, accessKey string, bootstrap spirefedv1alpha1.ConfigMapKeySelector, config *rest.Config, zoneClient client.Client, clientset kubernetes.Interface) *Zone {
	ctx, stop := context.WithCancel(r.rootCtx)
	connected := &Zone{
		Name:               name,
		Client:             zoneClient,
		Config:             config,
		Clientset:          clientset,
		accessKey:          accessKey,
		bootstrapNamespace: bootstrap.Namespace,
		bootstrapName:      bootstrap.Name,
		stopProbes:         stop,
	}
	r.zones[name] = connected
	go r.probeLoop(ctx, connected)
	go connected.watchBootstrapConfigMap(ctx, clientset, func() {
		r.opts.Log.V(1).Info("Bootstrap ConfigMap changed", "zone", name)
		r.enqueue(ctx, name)
	})
	return connected
}

// Forget drops a zone's client and stops its probes.
func (r *Registry) Forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if existing := r.zones[name]; existing != nil {
		existing.stopProbes()
		delete(r.zones, name)
	}
}

// resolveAccess returns a key that changes whenever the zone's access
// changes, and the REST config to reach it.
func (r *Registry) resolveAccess(ctx context.Context, zone *spirefedv1alpha1.ZoneTrustDomain) (string, *rest.Config, error) {
	if zone.Spec.Cluster.Local {
		if r.opts.LocalConfig == nil {
			return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: "the operator has no config for the local cluster"}
		}
		return "local", r.opts.LocalConfig, nil
	}
	ref := zone.Spec.Cluster.KubeconfigSecretRef
	if ref == nil {
		return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: "spec.cluster names neither a kubeconfig Secret nor the local cluster"}
	}
	key := ref.Key
	if key == "" {
		key = "value"
	}
	secret := &corev1.Secret{}
	if err := r.opts.SecretReader.Get(ctx, types.NamespacedName{Namespace: r.opts.Namespace, Name: ref.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf("Secret %s/%s does not exist", r.opts.Namespace, ref.Name), Err: err}
		}
		return "", nil, fmt.Errorf("reading kubeconfig Secret %s/%s: %w", r.opts.Namespace, ref.Name, err)
	}
	data, ok := secret.Data[key]
	if !ok {
		return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf("Secret %s/%s has no key %q", r.opts.Namespace, ref.Name, key)}
	}
	config, err := restConfigFromKubeconfig(data)
	if err != nil {
		return "", nil, &AccessError{Reason: spirefedv1alpha1.ReasonKubeconfigInvalid, Message: fmt.Sprintf("Secret %s/%s key %q: %v", r.opts.Namespace, ref.Name, key, err), Err: err}
	}
	return fmt.Sprintf("secret|%s|%s|%s|%s", ref.Name, key, secret.UID, secret.ResourceVersion), config, nil
}

// probeLoop probes the zone periodically and enqueues it when the result
// changes from what was last seen, by this loop or by the reconciler.
func (r *Registry) probeLoop(ctx context.Context, zone *Zone) {
	ticker := time.NewTicker(r.opts.ProbeInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := zone.Probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if zone.recordReason(reasonOf(err)) {
			r.opts.Log.V(1).Info("Zone health changed", "zone", zone.Name, "reason", reasonOf(err))
			r.enqueue(ctx, zone.Name)
		}
	}
}

// enqueue asks for the zone to be reconciled.
func (r *Registry) enqueue(ctx context.Context, name string) {
	select {
	case r.events <- event.GenericEvent{Object: &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: name}}}:
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
	z.recordReason(reasonOf(err))
	return err
}

func (z *Zone) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	review := newAccessReview(z.bootstrapNamespace)
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
			Message: fmt.Sprintf("the kubeconfig's user may not get configmaps in namespace %q of the zone's cluster", z.bootstrapNamespace),
		}
	}
	return nil
}

// recordReason stores the latest probe outcome and says whether it changed.
func (z *Zone) recordReason(reason string) bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	changed := z.lastReason != reason
	z.lastReason = reason
	return changed
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
