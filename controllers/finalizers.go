package controllers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// The operator never rewrites a user's spec: finalizers are added and
// removed with a merge patch of metadata.finalizers alone (guarded by the
// resourceVersion), never with an Update that would send the whole object
// back and take ownership of its fields.

// addFinalizer adds finalizer to obj unless it is there.
func addFinalizer(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.AddFinalizer(obj, finalizer) {
		return nil
	}
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("adding finalizer to %s: %w", obj.GetName(), err)
	}
	return nil
}

// removeFinalizer removes finalizer from obj; an object already gone is
// not an error.
func removeFinalizer(ctx context.Context, c client.Client, obj client.Object, finalizer string) error {
	before := obj.DeepCopyObject().(client.Object)
	if !controllerutil.RemoveFinalizer(obj, finalizer) {
		return nil
	}
	if err := c.Patch(ctx, obj, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer from %s: %w", obj.GetName(), err))
	}
	return nil
}
