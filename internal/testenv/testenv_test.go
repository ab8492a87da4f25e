package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestEnvironment starts a management cluster, a plain zone and a KWOK
// zone, and checks what the rest of the suite relies on.
func TestEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	env, err := Start(ctx, Options{Zones: []ZoneSpec{{Name: "plain"}, {Name: "sim", KWOK: true}}})
	if err != nil {
		t.Fatalf("starting environment: %v", err)
	}
	root := env.Dir()
	stopped := false
	defer func() {
		if !stopped {
			_ = env.Stop()
		}
	}()

	t.Run("zone CRDs and kubeconfig Secrets", func(t *testing.T) {
		for name, zone := range env.Zones {
			var crds metav1.PartialObjectMetadataList
			crds.SetGroupVersionKind(schemaCRDList)
			if err := zone.Client.List(ctx, &crds); err != nil {
				t.Fatalf("listing CRDs of %s: %v", name, err)
			}
			if !hasCRD(crds.Items, "clusterfederatedtrustdomains.spire.spiffe.io") || !hasCRD(crds.Items, "clusterspiffeids.spire.spiffe.io") {
				t.Errorf("zone %s lacks spire-controller-manager CRDs", name)
			}
			secret := &corev1.Secret{}
			if err := env.Management.Client.Get(ctx, types.NamespacedName{Namespace: OperatorNamespace, Name: KubeconfigSecretName(name)}, secret); err != nil {
				t.Fatalf("reading kubeconfig Secret of %s: %v", name, err)
			}
			if _, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["value"]); err != nil {
				t.Errorf("kubeconfig of %s: %v", name, err)
			}
		}
	})

	t.Run("pods run and claims bind on KWOK zones", func(t *testing.T) {
		sim := env.Zones["sim"]
		if err := sim.CreatePersistentVolume(ctx, "pv-0", "1Gi"); err != nil {
			t.Fatal(err)
		}
		claim := &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				StorageClassName: new(string),
			},
		}
		if err := sim.Client.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		replicas := int32(2)
		labels := map[string]string{"app": "web"}
		deployment := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1"}}},
				},
			},
		}
		if err := sim.Client.Create(ctx, deployment); err != nil {
			t.Fatal(err)
		}
		eventually(t, ctx, 60*time.Second, func() (bool, string) {
			if err := sim.Client.Get(ctx, client.ObjectKeyFromObject(deployment), deployment); err != nil {
				return false, err.Error()
			}
			return deployment.Status.ReadyReplicas == replicas, "deployment not ready; events: " + eventsOf(ctx, sim.Client)
		})
		eventually(t, ctx, 60*time.Second, func() (bool, string) {
			if err := sim.Client.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
				return false, err.Error()
			}
			return claim.Status.Phase == corev1.ClaimBound, "claim phase " + string(claim.Status.Phase)
		})
	})

	t.Run("API server restarts with the same address and credentials", func(t *testing.T) {
		plain := env.Zones["plain"]
		if err := plain.StopAPIServer(); err != nil {
			t.Fatal(err)
		}
		if err := plain.Client.Get(ctx, types.NamespacedName{Name: "default"}, &corev1.Namespace{}); err == nil {
			t.Fatal("API server still answers after stop")
		}
		if err := plain.StartAPIServer(); err != nil {
			t.Fatal(err)
		}
		if err := plain.Client.Get(ctx, types.NamespacedName{Name: "default"}, &corev1.Namespace{}); err != nil {
			t.Fatalf("API server does not answer the old client after restart: %v", err)
		}
	})

	if err := env.Stop(); err != nil {
		t.Fatalf("stopping environment: %v", err)
	}
	stopped = true
	if left := processesUnder(root); len(left) > 0 {
		t.Errorf("processes left running after Stop: %v", left)
	}
}

func hasCRD(items []metav1.PartialObjectMetadata, name string) bool {
	for _, item := range items {
		if item.Name == name {
			return true
		}
	}
	return false
}

// processesUnder lists the command lines that name root.
func processesUnder(root string) []string {
	var found []string
	entries, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, entry := range entries {
		data, err := os.ReadFile(entry)
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cmdline, root+"/") && !strings.HasPrefix(cmdline, "pkill ") {
			found = append(found, cmdline)
		}
	}
	return found
}

func eventually(t *testing.T, ctx context.Context, timeout time.Duration, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, message := check()
		if ok {
			return
		}
		last = message
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %s", timeout, last)
}

var schemaCRDList = apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinitionList")

// eventsOf summarises the events of namespace default, for failure messages.
func eventsOf(ctx context.Context, c client.Client) string {
	var list corev1.EventList
	if err := c.List(ctx, &list, client.InNamespace("default")); err != nil {
		return err.Error()
	}
	var lines []string
	for _, event := range list.Items {
		lines = append(lines, event.InvolvedObject.Kind+"/"+event.InvolvedObject.Name+": "+event.Reason+": "+event.Message)
	}
	return strings.Join(lines, "; ")
}
