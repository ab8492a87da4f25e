package bundle

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// WatchConfigMap calls onChange whenever the named ConfigMap (a zone's
// bootstrap bundle) is added, changed or deleted, until ctx ends. The
// informer retries on its own while the zone is unreachable.
func WatchConfigMap(ctx context.Context, clientset kubernetes.Interface, namespace, name string, onChange func()) {
	listWatch := cache.NewListWatchFromClient(clientset.CoreV1().RESTClient(), "configmaps", namespace,
		fields.OneTermEqualSelector("metadata.name", name))
	informer := cache.NewSharedIndexInformer(listWatch, &corev1.ConfigMap{}, 0, cache.Indexers{})
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { onChange() },
		UpdateFunc: func(before, after any) {
			if before.(*corev1.ConfigMap).ResourceVersion != after.(*corev1.ConfigMap).ResourceVersion {
				onChange()
			}
		},
		DeleteFunc: func(any) { onChange() },
	})
	informer.RunWithContext(ctx)
}
