package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// A container, as far as the operator can tell: the image's files as a
// read-only root file system, the pod's volumes mounted on it (emptyDirs
// as tmpfs, ConfigMaps, Secrets and the service account token read-only),
// a non-root user, no new privileges. The network and PID namespaces are
// the host's: replicas get distinct ports.

// sandboxEnv names the environment variable that turns the test binary
// into the sandbox helper (see TestMain).
const sandboxEnv = "SPIREFED_SANDBOX_SPEC"

// sandboxMount is a volume mount.
type sandboxMount struct {
	// Target is the mount path in the container.
	Target string
	// Source is a host folder bind-mounted read-only; empty makes a tmpfs
	// (an emptyDir).
	Source string
	// SizeLimit of a tmpfs, e.g. "64Mi" as Kubernetes writes it.
	SizeLimit string
}

// sandboxSpec is what the helper does before it becomes the operator.
type sandboxSpec struct {
	RootFS string
	Mounts []sandboxMount
	UID    int
	GID    int
	Groups []int
	// NoNewPrivs is allowPrivilegeEscalation: false.
	NoNewPrivs bool
	Argv       []string
	Env        []string
}

// sandboxCommand returns a command that runs spec in a private mount
// namespace when the machine allows it (root); otherwise it returns no
// command, and why says what could not be done.
func sandboxCommand(spec sandboxSpec) (cmd *exec.Cmd, why string, err error) {
	if os.Getenv("SPIREFED_TEST_NO_SANDBOX") != "" {
		return nil, "SPIREFED_TEST_NO_SANDBOX is set", nil
	}
	if os.Geteuid() != 0 {
		return nil, "not root: no mount namespace, read-only root or user switch", nil
	}
	encoded, err := json.Marshal(spec)
	if err != nil {
		return nil, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd = exec.Command(self)
	cmd.Env = []string{sandboxEnv + "=" + string(encoded)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true}
	return cmd, "", nil
}

// runSandbox is the helper: it builds the container's mounts in its own
// mount namespace (Go made every mount private when it unshared), enters
// the root file system, drops to the user and execs the operator. It
// returns only on failure.
func runSandbox(encoded string) error {
	var spec sandboxSpec
	if err := json.Unmarshal([]byte(encoded), &spec); err != nil {
		return err
	}
	root := spec.RootFS
	if err := syscall.Mount(root, root, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting the root file system: %w", err)
	}
	// Mount points, as a runtime creates them, then the root goes read-only.
	for _, mount := range spec.Mounts {
		if err := os.MkdirAll(filepath.Join(root, mount.Target), 0o755); err != nil {
			return err
		}
	}
	for _, dir := range []string{"proc", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount("", root, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("making the root file system read-only: %w", err)
	}
	// Even root may not write there now.
	if err := os.WriteFile(filepath.Join(root, ".probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("the root file system is not read-only: writing to it gave %v", err)
	}
	if err := syscall.Mount("proc", filepath.Join(root, "proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := mountDev(filepath.Join(root, "dev")); err != nil {
		return err
	}
	for _, mount := range spec.Mounts {
		target := filepath.Join(root, mount.Target)
		if mount.Source == "" {
			options := "mode=1777"
			if size := tmpfsSize(mount.SizeLimit); size != "" {
				options += ",size=" + size
			}
			if err := syscall.Mount("tmpfs", target, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, options); err != nil {
				return fmt.Errorf("tmpfs on %s: %w", mount.Target, err)
			}
			continue
		}
		if err := syscall.Mount(mount.Source, target, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting %s: %w", mount.Target, err)
		}
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", mount.Target, err)
		}
	}
	if err := syscall.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := syscall.Chdir("/"); err != nil {
		return err
	}
	if err := syscall.Setgroups(spec.Groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(spec.GID); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(spec.UID); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if spec.NoNewPrivs {
		const prSetNoNewPrivs = 38
		if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); errno != 0 {
			return fmt.Errorf("no_new_privs: %w", errno)
		}
	}
	return syscall.Exec(spec.Argv[0], spec.Argv, spec.Env)
}

// mountDev makes a minimal /dev: a tmpfs with the usual character devices
// bind-mounted from the host.
func mountDev(dev string) error {
	if err := syscall.Mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID|syscall.MS_NOEXEC, "mode=755,size=1m"); err != nil {
		return fmt.Errorf("tmpfs on /dev: %w", err)
	}
	for _, name := range []string{"null", "zero", "random", "urandom"} {
		target := filepath.Join(dev, name)
		if err := os.WriteFile(target, nil, 0o666); err != nil {
			return err
		}
		if err := syscall.Mount("/dev/"+name, target, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mounting /dev/%s: %w", name, err)
		}
	}
	return nil
}

// tmpfsSize turns a Kubernetes quantity like 64Mi into tmpfs's 64m.
func tmpfsSize(limit string) string {
	for suffix, unit := range map[string]string{"Ki": "k", "Mi": "m", "Gi": "g"} {
		if number, ok := strings.CutSuffix(limit, suffix); ok {
			return number + unit
		}
	}
	return ""
}
