package bundle_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
)

// TestWatchConfigMap checks that the watch of a bootstrap ConfigMap calls
// back once it read the ConfigMap, on every change and on its deletion,
// and ends with its context. (The controllers' tests watch real API
// servers; this one pins the callbacks.)
func TestWatchConfigMap(t *testing.T) {
	configMap := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "spire", Name: "spire-bundle"}, Data: map[string]string{"bundle.crt": "one"}}
	clientset := fake.NewClientset(configMap)
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	view := &bundle.ConfigMapView{}
	go func() {
		bundle.WatchConfigMap(ctx, clientset, "spire", "spire-bundle", view, func() { calls.Add(1) })
		close(done)
	}()
	waitForCalls := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for calls.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d callbacks, want %d", calls.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitForCalls(1) // read
	if latest, synced := view.Latest(); !synced || latest == nil || latest.Data["bundle.crt"] != "one" {
		t.Fatalf("view after the read: %v, synced %v", latest, synced)
	}
	// The fake's watch starts after the list: give it a moment.
	time.Sleep(200 * time.Millisecond)
	configMaps := clientset.CoreV1().ConfigMaps("spire")
	configMap.Data["bundle.crt"] = "two"
	if _, err := configMaps.Update(ctx, configMap, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForCalls(2)
	if latest, synced := view.Latest(); !synced || latest == nil || latest.Data["bundle.crt"] != "two" {
		t.Fatalf("view after the update: %v, synced %v", latest, synced)
	}
	if err := configMaps.Delete(ctx, configMap.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForCalls(3)
	if latest, synced := view.Latest(); !synced || latest != nil {
		t.Fatalf("view after the deletion: %v, synced %v", latest, synced)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
	if _, synced := view.Latest(); synced {
		t.Error("the view of a watch that ended is synced")
	}
}
