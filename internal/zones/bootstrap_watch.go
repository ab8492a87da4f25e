package zones

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// watchBootstrapConfigMap calls onChange whenever the zone's bootstrap
// ConfigMap is added, changed or deleted, until ctx ends. The informer
// retries on its own while the zone is unreachable.
func (z *Zone) watchBootstrapConfigMap(ctx context.Context, clientset kubernetes.Interface, onChange func()) {
	listWatch := cache.NewListWatchFromClient(clientset.CoreV1().RESTClient(), "configmaps", z.bootstrapNamespace,
		fields.OneTermEqualSelector("metadata.name", z.bootstrapName))
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
