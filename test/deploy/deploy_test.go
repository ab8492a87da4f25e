// Package deploy_test runs the operator as deployed: the binary of the
// image `make image` builds, with the command, arguments, environment,
// user, security context and volumes of the Deployment the operator's own
// chart installs, in a container-like sandbox (read-only root file system,
// only the chart's emptyDirs writable, user 65532), reaching the management
// API server with its ServiceAccount's token and nothing more than the
// chart's RBAC. Two replicas run with leader election.
//
// Where no sandbox can be made (not root), or SPIREFED_TEST_NO_SANDBOX is
// set, the same binary runs directly with the same arguments, the token in
// a kubeconfig and the volumes as host folders, and the test says so.
package deploy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/spirehelm"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(sandboxEnv); spec != "" {
		err := runSandbox(spec)
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(127)
	}
	os.Exit(m.Run())
}

const (
	namespace   = testenv.OperatorNamespace
	releaseName = "spire-federation-operator"
	appName     = "spire-federation-operator"
)

func TestOperatorAsDeployed(t *testing.T) {
	testStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	work := t.TempDir()

	// The image, built as a user would, unpacked as a runtime would.
	start := time.Now()
	archive := filepath.Join(work, "image.tar")
	if _, err := testenv.BuildImage(ctx, archive); err != nil {
		t.Fatal(err)
	}
	image, err := testenv.ReadImageArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	rootFS := filepath.Join(work, "rootfs")
	if err := image.ExtractRootFS(rootFS); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: make image and unpack: %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	env := testenv.StartForTest(ctx, t, testenv.Options{Zones: []testenv.ZoneSpec{
		{Name: "helm", KWOK: true, WithoutSpireCRDs: true},
		{Name: "plain"},
	}})
	t.Logf("timing: clusters started: %s", time.Since(start).Round(time.Millisecond))
	clientset, err := kubernetes.NewForConfig(env.Management.Config)
	if err != nil {
		t.Fatal(err)
	}

	// What a user creates beside the chart: the CA of their chart
	// repository, and a certificate for the metrics endpoint.
	charts, chartsCA, err := testenv.ServeChartsTLS()
	if err != nil {
		t.Fatal(err)
	}
	defer charts.Close()
	metricsCA, err := testenv.NewCA("metrics CA")
	if err != nil {
		t.Fatal(err)
	}
	metricsCert, err := metricsCA.NewServingCertificate("", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	create(ctx, t, env.Management.Client,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "chart-repository-ca"},
			Data: map[string]string{"ca.crt": string(testenv.PEM(chartsCA.Cert))}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "metrics-tls"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": certificatePEM(metricsCert), "tls.key": keyPEM(t, metricsCert)}})

	// The chart, installed with the Helm SDK.
	operatorChart, err := testenv.OperatorChart()
	if err != nil {
		t.Fatal(err)
	}
	helm, err := spirehelm.ActionConfig(env.Management.Config, namespace)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(helm)
	install.ReleaseName, install.Namespace = releaseName, namespace
	values := map[string]any{
		"replicaCount":        2,
		"extraCACertificates": map[string]any{"configMap": "chart-repository-ca"},
		"metrics":             map[string]any{"certSecret": "metrics-tls"},
		"logging":             map[string]any{"level": "debug"},
	}
	if _, err := install.RunWithContext(ctx, operatorChart, values); err != nil {
		t.Fatalf("installing the operator's chart: %v", err)
	}
	deployment := &appsv1.Deployment{}
	if err := env.Management.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: appName}, deployment); err != nil {
		t.Fatal(err)
	}
	pod := deployment.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	if sc := pod.Containers[0].SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Fatalf("the chart does not make the root file system read-only: %+v", sc)
	}

	kubelet := &kubelet{t: t, ctx: ctx, env: env, clientset: clientset, image: image, rootFS: rootFS, dir: work, pod: pod}
	first := kubelet.start("replica-1")
	first.waitReady(t, 60*time.Second)
	first.waitLog(t, "Successfully acquired lease", 30*time.Second)
	second := kubelet.start("replica-2")
	second.waitReady(t, 60*time.Second)

	// Zones: a KWOK cluster where the operator installs SPIRE with Helm
	// from the https repository, and a plain cluster with its own SPIRE.
	helmZone := newZonePKI(t, "helm.deploy.test")
	plainZone := newZonePKI(t, "plain.deploy.test")
	helmCluster, plainCluster := env.Zones["helm"], env.Zones["plain"]
	if err := helmCluster.CreatePersistentVolume(ctx, "spire-server-pv", "1Gi"); err != nil {
		t.Fatal(err)
	}
	writeBundle(ctx, t, plainCluster, plainZone)
	zoneStart := time.Now()
	helmObject := zoneObject("helm", helmZone, spirefedv1alpha1.SpireInstallation{
		Install: spirefedv1alpha1.SpireInstallHelm, Namespace: "spire-server", ReleaseName: "spire",
		Charts: &spirefedv1alpha1.SpireCharts{Repository: charts.URL},
	})
	plainObject := zoneObject("plain", plainZone, spirefedv1alpha1.SpireInstallation{
		Install: spirefedv1alpha1.SpireInstallExternal, Namespace: "spire-server", ReleaseName: "spire", ClassName: "spire-server-spire",
	})
	create(ctx, t, env.Management.Client, helmObject, plainObject)

	t.Run("a Helm zone from an https repository becomes Ready", func(t *testing.T) {
		waitZone(ctx, t, env, "helm", spirefedv1alpha1.SpireInstalledCondition, 3*time.Minute)
		t.Logf("timing: Helm zone SpireInstalled %s after creation", time.Since(zoneStart).Round(time.Millisecond))
		// The chart's spire-server would now publish its bundle.
		writeBundle(ctx, t, helmCluster, helmZone)
		waitZone(ctx, t, env, "helm", spirefedv1alpha1.ReadyCondition, time.Minute)
		waitZone(ctx, t, env, "plain", spirefedv1alpha1.ReadyCondition, time.Minute)
		t.Logf("timing: zones Ready %s after creation", time.Since(zoneStart).Round(time.Millisecond))
	})
	if t.Failed() {
		t.FailNow()
	}

	meshStart := time.Now()
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "deployed"},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: []string{"helm", "plain"}},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	create(ctx, t, env.Management.Client, mesh)
	t.Run("a mesh's pairs are written", func(t *testing.T) {
		waitFor(t, time.Minute, "mesh Ready with 2 pairs", func() (bool, string) {
			current := &spirefedv1alpha1.FederationMesh{}
			if err := env.Management.Client.Get(ctx, client.ObjectKeyFromObject(mesh), current); err != nil {
				return false, err.Error()
			}
			ready := meta.FindStatusCondition(current.Status.Conditions, spirefedv1alpha1.ReadyCondition)
			return ready != nil && ready.Status == metav1.ConditionTrue && len(current.Status.Pairs) == 2, fmt.Sprintf("%+v", current.Status)
		})
		for zone, peer := range map[*testenv.Cluster]string{helmCluster: "plain.deploy.test", plainCluster: "helm.deploy.test"} {
			list := &spirev1alpha1.ClusterFederatedTrustDomainList{}
			if err := zone.Client.List(ctx, list); err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 || list.Items[0].Spec.TrustDomain != peer {
				t.Errorf("zone %s holds %+v, want the peer %s", zone.Name, list.Items, peer)
			}
		}
		t.Logf("timing: pairs written %s after the mesh's creation", time.Since(meshStart).Round(time.Millisecond))
	})

	t.Run("metrics need an authorized token", func(t *testing.T) {
		metricsURL := "https://127.0.0.1:" + strconv.Itoa(first.metricsPort) + "/metrics"
		if !first.isLeader() {
			metricsURL = "https://127.0.0.1:" + strconv.Itoa(second.metricsPort) + "/metrics"
		}
		roots := x509.NewCertPool()
		roots.AddCert(metricsCA.Cert)
		scraper := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}}}
		create(ctx, t, env.Management.Client,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "prometheus"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "stranger"}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics"},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: appName + "-metrics-reader"},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: namespace, Name: "prometheus"}}})
		scrape := func(token string) (int, string) {
			request, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			if token != "" {
				request.Header.Set("Authorization", "Bearer "+token)
			}
			response, err := scraper.Do(request)
			if err != nil {
				t.Fatalf("scraping %s: %v", metricsURL, err)
			}
			defer response.Body.Close()
			body, _ := io.ReadAll(response.Body)
			if response.ProtoMajor != 1 {
				t.Errorf("metrics served over HTTP/%d", response.ProtoMajor)
			}
			return response.StatusCode, string(body)
		}
		if status, _ := scrape(""); status != http.StatusUnauthorized {
			t.Errorf("no token: %d, want 401", status)
		}
		if status, _ := scrape(serviceAccountToken(ctx, t, clientset, "stranger")); status != http.StatusForbidden {
			t.Errorf("a token without the metrics-reader role: %d, want 403", status)
		}
		waitFor(t, 30*time.Second, "authorized scrape", func() (bool, string) {
			status, body := scrape(serviceAccountToken(ctx, t, clientset, "prometheus"))
			return status == http.StatusOK && strings.Contains(body, "spirefed_"), fmt.Sprintf("%d %.300s", status, body)
		})
	})

	t.Run("the standby replica takes over without duplicate writes", func(t *testing.T) {
		leader, standby := first, second
		if !first.isLeader() {
			leader, standby = second, first
		}
		if standby.isLeader() || standby.logContains("Starting workers") {
			t.Fatalf("both replicas lead:\n%s", standby.logTail())
		}
		before := zoneWrites(ctx, t, helmCluster, plainCluster)
		stopped := time.Now()
		leader.stop(t)
		standby.waitLog(t, "Successfully acquired lease", 60*time.Second)
		takeover := time.Since(stopped)
		t.Logf("timing: leader stopped, standby took over in %s", takeover.Round(time.Millisecond))
		standby.waitLog(t, "Starting workers", 30*time.Second)
		// Let the new leader reconcile every object, then count writes.
		time.Sleep(8 * time.Second)
		if after := zoneWrites(ctx, t, helmCluster, plainCluster); !slices.Equal(before, after) {
			t.Errorf("the new leader rewrote objects in the zones:\nbefore %v\nafter  %v", before, after)
		}
		for name, want := range map[string]int{"spire": 1, "spire-crds": 1} {
			history, err := releaseHistory(helmCluster, name)
			if err != nil {
				t.Fatal(err)
			}
			if history != want {
				t.Errorf("release %s has %d revisions, want %d", name, history, want)
			}
		}
		// The new leader does reconcile: a spec change reaches status.
		current := &spirefedv1alpha1.FederationMesh{}
		if err := env.Management.Client.Get(ctx, client.ObjectKeyFromObject(mesh), current); err != nil {
			t.Fatal(err)
		}
		current.Spec.Topology = spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyHubAndSpoke, Hub: "helm"}
		if err := env.Management.Client.Update(ctx, current); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the new leader to reconcile the mesh", func() (bool, string) {
			if err := env.Management.Client.Get(ctx, client.ObjectKeyFromObject(mesh), current); err != nil {
				return false, err.Error()
			}
			ready := meta.FindStatusCondition(current.Status.Conditions, spirefedv1alpha1.ReadyCondition)
			return ready != nil && ready.ObservedGeneration == current.Generation && ready.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", ready)
		})
		standby.stop(t)
	})
	t.Logf("timing: whole test %s", time.Since(testStart).Round(time.Millisecond))
}

// kubelet starts replicas of the pod the way a kubelet would, as far as
// this machine allows.
type kubelet struct {
	t         *testing.T
	ctx       context.Context
	env       *testenv.Env
	clientset *kubernetes.Clientset
	image     *testenv.ImageArchive
	rootFS    string
	dir       string
	pod       corev1.PodSpec
}

// replica is one running operator process.
type replica struct {
	name        string
	cmd         *exec.Cmd
	log         *lockedBuffer
	metricsPort int
	healthPort  int
	exited      chan struct{}
}

func (k *kubelet) start(name string) *replica {
	t := k.t
	t.Helper()
	container := k.pod.Containers[0]
	volumeDir := filepath.Join(k.dir, "volumes", name)
	r := &replica{name: name, log: &lockedBuffer{}, exited: make(chan struct{}), metricsPort: freePort(t), healthPort: freePort(t)}

	// Command and arguments: the container's, else the image's. Replicas
	// share the host's network, so each binds ports of its own.
	argv := slices.Clone(container.Command)
	if len(argv) == 0 {
		argv = slices.Clone(k.image.Config.Config.Entrypoint)
	}
	args := container.Args
	if len(args) == 0 {
		args = k.image.Config.Config.Cmd
	}
	for _, arg := range args {
		switch {
		case strings.HasPrefix(arg, "--metrics-bind-address="):
			arg = "--metrics-bind-address=127.0.0.1:" + strconv.Itoa(r.metricsPort)
		case strings.HasPrefix(arg, "--health-probe-bind-address="):
			arg = "--health-probe-bind-address=127.0.0.1:" + strconv.Itoa(r.healthPort)
		}
		argv = append(argv, arg)
	}

	// Environment: the image's, the container's, and the service's.
	apiServer, err := url.Parse(k.env.Management.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	environment := slices.Clone(k.image.Config.Config.Env)
	for _, variable := range container.Env {
		if variable.ValueFrom != nil {
			t.Fatalf("env %s: valueFrom is not supported here", variable.Name)
		}
		environment = append(environment, variable.Name+"="+variable.Value)
	}
	environment = append(environment, "KUBERNETES_SERVICE_HOST="+apiServer.Hostname(), "KUBERNETES_SERVICE_PORT="+apiServer.Port())

	// Volumes: emptyDirs are tmpfs; ConfigMaps, Secrets and the service
	// account token are files written from the API server, read-only.
	var mounts []sandboxMount
	for _, volumeMount := range container.VolumeMounts {
		volume := volumeNamed(t, k.pod, volumeMount.Name)
		switch {
		case volume.EmptyDir != nil:
			size := ""
			if volume.EmptyDir.SizeLimit != nil {
				size = volume.EmptyDir.SizeLimit.String()
			}
			mounts = append(mounts, sandboxMount{Target: volumeMount.MountPath, SizeLimit: size})
		case volume.ConfigMap != nil:
			configMap, err := k.clientset.CoreV1().ConfigMaps(namespace).Get(k.ctx, volume.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			files := map[string][]byte{}
			for key, value := range configMap.Data {
				files[key] = []byte(value)
			}
			mounts = append(mounts, sandboxMount{Target: volumeMount.MountPath, Source: writeVolume(t, filepath.Join(volumeDir, volume.Name), files)})
		case volume.Secret != nil:
			secret, err := k.clientset.CoreV1().Secrets(namespace).Get(k.ctx, volume.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mounts = append(mounts, sandboxMount{Target: volumeMount.MountPath, Source: writeVolume(t, filepath.Join(volumeDir, volume.Name), secret.Data)})
		default:
			t.Fatalf("volume %s: only emptyDir, configMap and secret volumes are supported here", volume.Name)
		}
	}
	serviceAccountDir := writeVolume(t, filepath.Join(volumeDir, "kube-api-access"), map[string][]byte{
		"token":     []byte(serviceAccountToken(k.ctx, t, k.clientset, k.pod.ServiceAccountName)),
		"ca.crt":    k.env.Management.Config.CAData,
		"namespace": []byte(namespace),
	})
	mounts = append(mounts, sandboxMount{Target: "/var/run/secrets/kubernetes.io/serviceaccount", Source: serviceAccountDir})

	// User: the pod's or container's security context, else the image's.
	uid, gid := imageUser(t, k.image.Config.Config.User)
	var groups []int
	for _, sc := range []*corev1.PodSecurityContext{k.pod.SecurityContext} {
		if sc != nil && sc.RunAsUser != nil {
			uid = int(*sc.RunAsUser)
		}
		if sc != nil && sc.RunAsGroup != nil {
			gid = int(*sc.RunAsGroup)
		}
		if sc != nil && sc.FSGroup != nil {
			groups = append(groups, int(*sc.FSGroup))
		}
	}
	sc := container.SecurityContext
	if sc != nil && sc.RunAsUser != nil {
		uid = int(*sc.RunAsUser)
	}
	if sc != nil && sc.RunAsGroup != nil {
		gid = int(*sc.RunAsGroup)
	}
	if runAsNonRoot := k.pod.SecurityContext != nil && k.pod.SecurityContext.RunAsNonRoot != nil && *k.pod.SecurityContext.RunAsNonRoot; runAsNonRoot && uid == 0 {
		t.Fatal("runAsNonRoot with user 0: the kubelet would refuse to start the container")
	}
	spec := sandboxSpec{
		RootFS: k.rootFS, Mounts: mounts, UID: uid, GID: gid, Groups: groups,
		NoNewPrivs: sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation,
		Argv:       append([]string{argv[0]}, argv[1:]...),
		Env:        environment,
	}
	cmd, why, err := sandboxCommand(spec)
	if err != nil {
		t.Fatal(err)
	}
	if cmd == nil {
		// Run what can be run: the same binary, arguments and files, on
		// the host's file system as this user.
		t.Logf("%s: %s; running the binary directly, with a kubeconfig holding the token", name, why)
		cmd = directCommand(t, k, spec, serviceAccountDir)
	} else {
		t.Logf("%s: uid %d gid %d groups %v, read-only root %s, %d volumes, no_new_privs %v: %q", name, uid, gid, groups, k.rootFS, len(mounts), spec.NoNewPrivs, argv)
	}
	logFile, err := os.Create(filepath.Join(k.dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	r.log.file = logFile
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	r.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, r.logTail())
		}
	})
	return r
}

// directCommand is the fallback where no sandbox can be made.
func directCommand(t *testing.T, k *kubelet, spec sandboxSpec, serviceAccountDir string) *exec.Cmd {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(serviceAccountDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(serviceAccountDir, "..", "kubeconfig")
	data := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: m, cluster: {server: %q, certificate-authority: %q}}]\n"+
		"users: [{name: u, user: {token: %q}}]\ncontexts: [{name: c, context: {cluster: m, user: u, namespace: %s}}]\ncurrent-context: c\n",
		k.env.Management.Config.Host, filepath.Join(serviceAccountDir, "ca.crt"), token, namespace)
	if err := os.WriteFile(kubeconfig, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	// Paths under the container's mounts point to host folders instead.
	replace := map[string]string{}
	for _, mount := range spec.Mounts {
		source := mount.Source
		if source == "" {
			source = filepath.Join(filepath.Dir(serviceAccountDir), "emptydir"+strings.ReplaceAll(mount.Target, "/", "-"))
			if err := os.MkdirAll(source, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		replace[mount.Target] = source
	}
	var environment []string
	for _, variable := range spec.Env {
		name, value, _ := strings.Cut(variable, "=")
		for target, source := range replace {
			if value == target || strings.HasPrefix(value, target+"/") {
				value = source + strings.TrimPrefix(value, target)
			}
		}
		if !strings.HasPrefix(name, "KUBERNETES_SERVICE_") {
			environment = append(environment, name+"="+value)
		}
	}
	args := append(slices.Clone(spec.Argv[1:]), "--kubeconfig="+kubeconfig)
	for i, arg := range args {
		if strings.HasPrefix(arg, "--metrics-cert-path=") {
			args[i] = "--metrics-cert-path=" + replace[strings.TrimPrefix(arg, "--metrics-cert-path=")]
		}
	}
	cmd := exec.Command(filepath.Join(k.rootFS, spec.Argv[0]), args...)
	cmd.Env = environment
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func (r *replica) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	probe := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, timeout, r.name+" ready (/readyz)", func() (bool, string) {
		select {
		case <-r.exited:
			t.Fatalf("%s exited:\n%s", r.name, r.logTail())
		default:
		}
		response, err := probe.Get("http://127.0.0.1:" + strconv.Itoa(r.healthPort) + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		response.Body.Close()
		return response.StatusCode == http.StatusOK, response.Status
	})
}

func (r *replica) waitLog(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s to log %q", r.name, text), func() (bool, string) {
		return r.logContains(text), r.logTail()
	})
}

func (r *replica) isLeader() bool { return r.logContains("Successfully acquired lease") }

func (r *replica) logContains(text string) bool { return strings.Contains(r.log.String(), text) }

func (r *replica) logTail() string {
	lines := strings.Split(strings.TrimSpace(r.log.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// stop sends SIGTERM, as the kubelet does, and waits for the exit.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		if code := r.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("%s exited with %d after SIGTERM", r.name, code)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM", r.name)
		r.kill()
	}
}

func (r *replica) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
	default:
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.exited
	}
	if r.log.file != nil {
		_ = r.log.file.Close()
	}
}

// lockedBuffer keeps a process's output in memory and in a file.
type lockedBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	file *os.File
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		_, _ = b.file.Write(p)
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func volumeNamed(t *testing.T, pod corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, volume := range pod.Volumes {
		if volume.Name == name {
			return volume
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

// writeVolume writes a volume's files as the kubelet does: a folder
// readable by all, files mode 0644.
func writeVolume(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func imageUser(t *testing.T, user string) (int, int) {
	t.Helper()
	uidText, gidText, _ := strings.Cut(user, ":")
	uid, err := strconv.Atoi(uidText)
	if err != nil {
		t.Fatalf("image user %q is not numeric", user)
	}
	gid := uid
	if gidText != "" {
		if gid, err = strconv.Atoi(gidText); err != nil {
			t.Fatalf("image group %q is not numeric", user)
		}
	}
	return uid, gid
}

func serviceAccountToken(ctx context.Context, t *testing.T, clientset *kubernetes.Clientset, name string) string {
	t.Helper()
	expiration := int64(3600)
	token, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiration}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for ServiceAccount %s: %v", name, err)
	}
	return token.Status.Token
}

func freePort(t *testing.T) int {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port
}

func create(ctx context.Context, t *testing.T, c client.Client, objects ...client.Object) {
	t.Helper()
	for _, object := range objects {
		if err := c.Create(ctx, object); err != nil {
			t.Fatalf("creating %T %s: %v", object, object.GetName(), err)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, done func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := done()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// zonePKI is a zone's CA and its bundle endpoint on loopback.
type zonePKI struct {
	*testenv.TestZonePKI
	server *testenv.BundleServer
}

func newZonePKI(t *testing.T, trustDomain string) *zonePKI {
	t.Helper()
	endpoint := testenv.StartZoneEndpoint(t, trustDomain)
	return &zonePKI{TestZonePKI: endpoint.TestZonePKI, server: endpoint.Server}
}

func zoneObject(name string, pki *zonePKI, spire spirefedv1alpha1.SpireInstallation) *spirefedv1alpha1.ZoneTrustDomain {
	return &spirefedv1alpha1.ZoneTrustDomain{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: spirefedv1alpha1.ZoneTrustDomainSpec{
			TrustDomain: pki.TrustDomain.Name(),
			ClusterName: name,
			Cluster: spirefedv1alpha1.ClusterAccess{
				KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: testenv.KubeconfigSecretName(name)},
			},
			Spire:          spire,
			BundleEndpoint: spirefedv1alpha1.BundleEndpoint{URL: pki.server.URL},
		},
	}
}

// writeBundle writes the zone's bootstrap bundle into the spire-bundle
// ConfigMap of its SPIRE namespace, as SPIRE's bundle publisher does.
func writeBundle(ctx context.Context, t *testing.T, cluster *testenv.Cluster, pki *zonePKI) {
	t.Helper()
	if err := cluster.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spire-server"}}); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	configMap := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "spire-server", Name: "spire-bundle"},
		Data:       map[string]string{"bundle.crt": string(testenv.PEM(pki.CA.Cert))},
	}
	if err := cluster.Client.Create(ctx, configMap); err != nil {
		t.Fatal(err)
	}
}

func waitZone(ctx context.Context, t *testing.T, env *testenv.Env, name, conditionType string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("zone %s %s", name, conditionType), func() (bool, string) {
		zone := &spirefedv1alpha1.ZoneTrustDomain{}
		if err := env.Management.Client.Get(ctx, types.NamespacedName{Name: name}, zone); err != nil {
			return false, err.Error()
		}
		condition := meta.FindStatusCondition(zone.Status.Conditions, conditionType)
		return condition != nil && condition.Status == metav1.ConditionTrue, fmt.Sprintf("%+v", zone.Status.Conditions)
	})
}

// zoneWrites lists "<cluster>/<kind>/<name>@<resourceVersion>" of what the
// operator writes in the zones (federation objects and Helm releases).
func zoneWrites(ctx context.Context, t *testing.T, clusters ...*testenv.Cluster) []string {
	t.Helper()
	var out []string
	for _, cluster := range clusters {
		federated := &spirev1alpha1.ClusterFederatedTrustDomainList{}
		ids := &spirev1alpha1.ClusterSPIFFEIDList{}
		secrets := &corev1.SecretList{}
		for _, list := range []client.ObjectList{federated, ids, secrets} {
			if err := cluster.Client.List(ctx, list); err != nil && !meta.IsNoMatchError(err) {
				t.Fatal(err)
			}
		}
		for _, item := range federated.Items {
			out = append(out, cluster.Name+"/cftd/"+item.Name+"@"+item.ResourceVersion)
		}
		for _, item := range ids.Items {
			out = append(out, cluster.Name+"/clusterspiffeid/"+item.Name+"@"+item.ResourceVersion)
		}
		for _, item := range secrets.Items {
			if item.Type == "helm.sh/release.v1" {
				out = append(out, cluster.Name+"/release/"+item.Name+"@"+item.ResourceVersion)
			}
		}
	}
	slices.Sort(out)
	return out
}

func releaseHistory(cluster *testenv.Cluster, name string) (int, error) {
	helm, err := spirehelm.ActionConfig(cluster.Config, "spire-server")
	if err != nil {
		return 0, err
	}
	history, err := action.NewHistory(helm).Run(name)
	return len(history), err
}

func certificatePEM(certificate tls.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certificate.Certificate[0]})
}

func keyPEM(t *testing.T, certificate tls.Certificate) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(certificate.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
