package bundle

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// Bounds of the retries of WatchConfigMap while the zone does not answer.
const (
	watchRetryInitial = time.Second
	watchRetryMax     = 30 * time.Second
)

// ConfigMapView is the latest state of a ConfigMap that WatchConfigMap
// follows: a zone's reconcile reads its bootstrap bundle there instead of
// asking the zone's API server again at every resync. It is known
// (synced) from the first full read of a watch until that watch ends
// without resuming.
type ConfigMapView struct {
	mu        sync.Mutex
	run       int
	synced    bool
	configMap *corev1.ConfigMap
}

// Latest returns the ConfigMap (nil when it does not exist) and whether
// the view is synced; when it is not, read the ConfigMap from the API.
func (v *ConfigMapView) Latest() (configMap *corev1.ConfigMap, synced bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.configMap, v.synced
}

// begin starts a watch's run: what an earlier run sets from now on is
// ignored (a run that ends after the next one started must not unsync it).
func (v *ConfigMapView) begin() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.run++
	v.synced, v.configMap = false, nil
	return v.run
}

func (v *ConfigMapView) set(run int, synced bool, configMap *corev1.ConfigMap) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.run == run {
		v.synced, v.configMap = synced, configMap
	}
}

// WatchConfigMap calls onChange whenever the named ConfigMap (a zone's
// bootstrap bundle) is added, changed or deleted, until ctx ends; and once
// after every full read of it (the first, and after a watch could not
// resume), when a change may have been missed. It retries with backoff
// while the zone does not answer.
//
// It lists and watches the one ConfigMap itself rather than through an
// informer: an informer per zone is nine goroutines and a queue, and a
// 200-zone operator runs 200 of them.
//
// view, if not nil, holds the ConfigMap as last seen.
func WatchConfigMap(ctx context.Context, clientset kubernetes.Interface, namespace, name string, view *ConfigMapView, onChange func()) {
	if view == nil {
		view = &ConfigMapView{}
	}
	run := view.begin()
	defer view.set(run, false, nil)
	configMaps := clientset.CoreV1().ConfigMaps(namespace)
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	delay := watchRetryInitial
	retry := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
			delay = min(2*delay, watchRetryMax)
			return true
		}
	}
	resourceVersion := ""
	for ctx.Err() == nil {
		if resourceVersion == "" {
			list, err := configMaps.List(ctx, metav1.ListOptions{FieldSelector: selector})
			if err != nil {
				if !retry() {
					return
				}
				continue
			}
			resourceVersion = list.ResourceVersion
			var found *corev1.ConfigMap
			if len(list.Items) > 0 {
				found = &list.Items[0]
			}
			view.set(run, true, found)
			onChange()
		}
		started := time.Now()
		watcher, err := configMaps.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: resourceVersion, AllowWatchBookmarks: true})
		if err == nil {
			resourceVersion = followConfigMap(ctx, watcher, resourceVersion, func(configMap *corev1.ConfigMap) {
				view.set(run, true, configMap)
				onChange()
			})
			if resourceVersion == "" {
				view.set(run, false, nil)
			}
		} else if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			resourceVersion = ""
			view.set(run, false, nil)
		}
		if err == nil && time.Since(started) > watchRetryMax {
			// A watch that lasted: the zone answers.
			delay = watchRetryInitial
			continue
		}
		// A watch refused, or ended at once: not in a tight loop.
		if !retry() {
			return
		}
	}
}

// followConfigMap handles a watch's events until it or ctx ends, and
// returns the resource version to resume from: "" when it cannot resume
// (read again).
// changed receives the ConfigMap as it now is, nil once deleted.
func followConfigMap(ctx context.Context, watcher watch.Interface, resourceVersion string, changed func(*corev1.ConfigMap)) string {
	defer watcher.Stop()
	for {
		var event watch.Event
		var open bool
		select {
		case <-ctx.Done():
			return resourceVersion
		case event, open = <-watcher.ResultChan():
		}
		if !open {
			return resourceVersion
		}
		switch event.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			configMap, ok := event.Object.(*corev1.ConfigMap)
			if !ok {
				return ""
			}
			resourceVersion = configMap.ResourceVersion
			if event.Type == watch.Deleted {
				configMap = nil
			}
			changed(configMap)
		case watch.Bookmark:
			if configMap, ok := event.Object.(*corev1.ConfigMap); ok {
				resourceVersion = configMap.ResourceVersion
			}
		case watch.Error:
			// Expired (410 Gone) or anything else the server ends a watch
			// with: read the ConfigMap again.
			return ""
		}
	}
}
