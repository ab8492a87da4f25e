package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Cluster is one running Kubernetes cluster.
type Cluster struct {
	// Name of the cluster (the zone name for zones).
	Name string
	// Config reaches the API server as an administrator (system:masters).
	Config *rest.Config
	// Client is an administrator's client.
	Client client.Client
	// KWOK says whether Pods run here (simulated).
	KWOK bool

	dir       string
	env       *envtest.Environment
	processes []*process
}

// clusterSpec says what to start.
type clusterSpec struct {
	name     string
	kwok     bool
	crdPaths []string
	scheme   *runtime.Scheme
	dir      string
}

func startCluster(ctx context.Context, spec clusterSpec) (*Cluster, error) {
	apiserver, err := Tool("kube-apiserver")
	if err != nil {
		return nil, err
	}
	etcd, err := Tool("etcd")
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(spec.dir, "pki")
	dataDir := filepath.Join(spec.dir, "etcd")
	for _, dir := range []string{certDir, dataDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:        spec.crdPaths,
		ErrorIfCRDPathMissing:    true,
		Scheme:                   spec.scheme,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	env.ControlPlane.GetAPIServer().Path = apiserver
	env.ControlPlane.GetAPIServer().CertDir = certDir
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd, DataDir: dataDir}
	if spec.kwok {
		// Pods need service accounts; kube-controller-manager creates them.
		env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
	config, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting API server of cluster %s: %w", spec.name, err)
	}
	cluster := &Cluster{Name: spec.name, Config: config, KWOK: spec.kwok, dir: spec.dir, env: env}
	cluster.Client, err = client.New(config, client.Options{Scheme: spec.scheme})
	if err != nil {
		_ = cluster.stop()
		return nil, fmt.Errorf("creating client of cluster %s: %w", spec.name, err)
	}
	if spec.kwok {
		if err := cluster.startKWOK(ctx); err != nil {
			_ = cluster.stop()
			return nil, err
		}
	}
	return cluster, nil
}

// Kubeconfig returns a kubeconfig for a new user of the cluster with the
// given groups; "system:masters" makes an administrator. Credentials are
// inline client certificates signed by the cluster's client CA.
func (c *Cluster) Kubeconfig(user string, groups ...string) ([]byte, error) {
	authenticated, err := c.env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s to cluster %s: %w", user, c.Name, err)
	}
	return authenticated.KubeConfig()
}

// StopAPIServer stops the cluster's kube-apiserver; etcd keeps running.
func (c *Cluster) StopAPIServer() error {
	if err := c.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("stopping API server of cluster %s: %w", c.Name, err)
	}
	return nil
}

// StartAPIServer starts the kube-apiserver again, on the same address with
// the same certificates and users.
func (c *Cluster) StartAPIServer() error {
	if err := c.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("restarting API server of cluster %s: %w", c.Name, err)
	}
	return nil
}

// stop ends the cluster's processes, simulated ones first.
func (c *Cluster) stop() error {
	var errs []error
	for i := len(c.processes) - 1; i >= 0; i-- {
		errs = append(errs, c.processes[i].stop())
	}
	c.processes = nil
	if c.env != nil {
		errs = append(errs, c.env.Stop())
	}
	return errors.Join(errs...)
}

// startKWOK runs kube-controller-manager, kube-scheduler and kwok against
// the API server and registers one fake node.
func (c *Cluster) startKWOK(ctx context.Context) error {
	kubeconfig, err := c.Kubeconfig("kwok-admin", "system:masters")
	if err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(c.dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig of cluster %s: %w", c.Name, err)
	}
	saKey := filepath.Join(c.dir, "pki", "sa-signer.key")
	kubeletPort, err := freePort()
	if err != nil {
		return err
	}
	kubeletCert, kubeletKey, err := writeKubeletServingCertificate(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	execConfig, err := c.writeExecConfig()
	if err != nil {
		return err
	}
	commands := []struct {
		tool string
		args []string
	}{
		{"kube-controller-manager", []string{
			"--kubeconfig=" + kubeconfigPath,
			"--leader-elect=false",
			"--secure-port=0",
			"--use-service-account-credentials=false",
			"--service-account-private-key-file=" + saKey,
			"--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service",
		}},
		{"kube-scheduler", []string{
			"--kubeconfig=" + kubeconfigPath,
			"--leader-elect=false",
			"--secure-port=0",
		}},
		{"kwok", []string{
			"--kubeconfig=" + kubeconfigPath,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--node-lease-duration-seconds=40",
			"--cidr=10.0.0.1/16",
			"--node-ip=127.0.0.1",
			// The kubelet API of the fake node: exec runs on this machine.
			"--node-port=" + strconv.Itoa(kubeletPort),
			"--server-address=127.0.0.1:" + strconv.Itoa(kubeletPort),
			"--tls-cert-file=" + kubeletCert,
			"--tls-private-key-file=" + kubeletKey,
			"--config=" + execConfig,
		}},
	}
	for _, command := range commands {
		path, err := Tool(command.tool)
		if err != nil {
			return err
		}
		cmd, err := startProcess(c.dir, command.tool, path, command.args...)
		if err != nil {
			return fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		c.processes = append(c.processes, cmd)
	}
	return c.createFakeNode(ctx)
}

// ExecBinDir is the folder whose commands an exec into a Pod of a KWOK
// cluster runs (on this machine, with no container around them).
func (c *Cluster) ExecBinDir() string { return filepath.Join(c.dir, "exec-bin") }

// ExposeToExec makes a tool of hack/tools.sh runnable by exec into the
// cluster's Pods, under its own name.
func (c *Cluster) ExposeToExec(tool string) error {
	path, err := Tool(tool)
	if err != nil {
		return err
	}
	link := filepath.Join(c.ExecBinDir(), tool)
	if err := os.Symlink(path, link); err != nil && !os.IsExist(err) {
		return fmt.Errorf("exposing %s to exec in cluster %s: %w", tool, c.Name, err)
	}
	return nil
}

// writeExecConfig writes KWOK's configuration: exec into any container of
// any Pod runs the command on this machine with ExecBinDir first in PATH.
func (c *Cluster) writeExecConfig() (string, error) {
	if err := os.MkdirAll(c.ExecBinDir(), 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", c.ExecBinDir(), err)
	}
	config := fmt.Sprintf(`apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterExec
metadata:
  name: run-on-host
spec:
  execs:
  - local:
      workDir: %q
      envs:
      - name: PATH
        value: %q
`, c.dir, c.ExecBinDir()+":/usr/local/bin:/usr/bin:/bin")
	path := filepath.Join(c.dir, "kwok.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return "", fmt.Errorf("writing KWOK configuration of cluster %s: %w", c.Name, err)
	}
	return path, nil
}

// FakeNodeName is the name of the node KWOK simulates in KWOK clusters.
const FakeNodeName = "kwok-node-0"

func (c *Cluster) createFakeNode(ctx context.Context) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        FakeNodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{
				"kubernetes.io/hostname": FakeNodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if err := c.Client.Create(ctx, node); err != nil {
		return fmt.Errorf("creating fake node in cluster %s: %w", c.Name, err)
	}
	return nil
}

// CreatePersistentVolume creates a hostPath volume of the given size, with
// no storage class, for claims to bind in a KWOK cluster (which has no
// provisioner).
func (c *Cluster) CreatePersistentVolume(ctx context.Context, name, size string) error {
	volume := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany, corev1.ReadOnlyMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: filepath.Join(c.dir, "volumes", name)}},
		},
	}
	if err := c.Client.Create(ctx, volume); err != nil {
		return fmt.Errorf("creating persistent volume %s in cluster %s: %w", name, c.Name, err)
	}
	return nil
}

// process is a running binary of a KWOK cluster.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProcess starts a binary with its output in dir/<name>.log. It is
// killed if the thread that started it dies (Pdeathsig), and the reaper
// covers every other way the test process can end.
func startProcess(dir, name, path string, args ...string) (*process, error) {
	return startProcessWithEnv(dir, name, path, nil, args...)
}

// startProcessWithEnv is startProcess with extra environment variables
// ("KEY=value") on top of the test process's own.
func startProcessWithEnv(dir, name, path string, extraEnv []string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating log of %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	if extraEnv != nil {
		cmd.Env = append(os.Environ(), extraEnv...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	started := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(started.done)
	}()
	return started, nil
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace period.
func (p *process) stop() error {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit", p.name, p.cmd.Process.Pid)
	}
}
