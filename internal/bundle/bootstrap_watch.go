package bundle

import (
	"context"
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

// WatchConfigMap calls onChange whenever the named ConfigMap (a zone's
// bootstrap bundle) is added, changed or deleted, until ctx ends; and once
// after every full read of it (the first, and after a watch could not
// resume), when a change may have been missed. It retries with backoff
// while the zone does not answer.
//
// It lists and watches the one ConfigMap itself rather than through an
// informer: an informer per zone is nine goroutines and a queue, and a
// 200-zone operator runs 200 of them.
func WatchConfigMap(ctx context.Context, clientset kubernetes.Interface, namespace, name string, onChange func()) {
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
			onChange()
		}
		started := time.Now()
		watcher, err := configMaps.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: resourceVersion, AllowWatchBookmarks: true})
		if err == nil {
			resourceVersion = followConfigMap(ctx, watcher, resourceVersion, onChange)
		} else if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			resourceVersion = ""
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
func followConfigMap(ctx context.Context, watcher watch.Interface, resourceVersion string, onChange func()) string {
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
			if configMap, ok := event.Object.(*corev1.ConfigMap); ok {
				resourceVersion = configMap.ResourceVersion
			}
			onChange()
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
