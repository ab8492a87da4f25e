// Package image_test builds the operator's container image with `make
// image` (no Docker daemon) and checks what a runtime would see: the
// configuration, the files, the archive formats, and that the same source
// gives the same digest.
package image_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

const binaryName = "spire-federation-operator"

func TestImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.tar"), filepath.Join(dir, "second.tar")

	start := time.Now()
	digest, err := testenv.BuildImage(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	firstTime := time.Since(start)
	start = time.Now()
	again, err := testenv.BuildImage(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("make image: %s, then %s; digests %s and %s", firstTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), digest, again)

	t.Run("reproducible", func(t *testing.T) {
		if digest != again {
			t.Errorf("two builds of the same source: %s and %s", digest, again)
		}
		a, errA := os.ReadFile(first)
		b, errB := os.ReadFile(second)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if sha256.Sum256(a) != sha256.Sum256(b) {
			t.Errorf("the two archives differ (%d and %d bytes)", len(a), len(b))
		}
	})

	image, err := testenv.ReadImageArchive(first)
	if err != nil {
		t.Fatal(err)
	}
	if image.Digest != digest {
		t.Errorf("the archive's index names %s, make image printed %s", image.Digest, digest)
	}

	t.Run("configuration", func(t *testing.T) {
		config := image.Config
		if config.Config.User != "65532:65532" {
			t.Errorf("user %q, want 65532:65532", config.Config.User)
		}
		if !slices.Equal(config.Config.Entrypoint, []string{"/" + binaryName}) || len(config.Config.Cmd) != 0 {
			t.Errorf("entrypoint %q, cmd %q", config.Config.Entrypoint, config.Config.Cmd)
		}
		if config.OS != "linux" || config.Architecture == "" {
			t.Errorf("platform %s/%s", config.OS, config.Architecture)
		}
		labels := config.Config.Labels
		if labels["org.opencontainers.image.source"] != "https://github.com/spirefed/spire-federation-operator" {
			t.Errorf("source label %q", labels["org.opencontainers.image.source"])
		}
		if version := labels["org.opencontainers.image.version"]; version == "" || image.RefName != version {
			t.Errorf("version label %q, OCI ref.name %q", version, image.RefName)
		}
		revision := labels["org.opencontainers.image.revision"]
		if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && revision != strings.TrimSpace(string(head)) {
			t.Errorf("revision label %q, HEAD is %s", revision, head)
		} else if revision == "" {
			t.Error("no revision label")
		}
	})

	t.Run("archive formats", func(t *testing.T) {
		if !slices.IsSorted(image.Entries) {
			t.Errorf("archive entries are not sorted: %v", image.Entries)
		}
		hexConfig := strings.TrimPrefix(image.ConfigDigest, "sha256:")
		if image.DockerConfig != "blobs/sha256/"+hexConfig || len(image.DockerLayers) != 1 ||
			len(image.DockerRepoTags) != 1 || !strings.HasSuffix(image.DockerRepoTags[0], ":"+image.RefName) {
			t.Errorf("manifest.json for docker load / crane push: config %s, tags %v, layers %v", image.DockerConfig, image.DockerRepoTags, image.DockerLayers)
		}
	})

	t.Run("files", func(t *testing.T) {
		var names []string
		for name, file := range image.Files {
			names = append(names, name)
			if file.Header.ModTime.Unix() != image.Files[binaryName].Header.ModTime.Unix() {
				t.Errorf("%s: time %s differs from the binary's", name, file.Header.ModTime)
			}
		}
		slices.Sort(names)
		want := []string{"etc", "etc/group", "etc/nsswitch.conf", "etc/passwd", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt",
			"home", "home/nonroot", "spire-federation-operator", "tmp"}
		if !slices.Equal(names, want) {
			t.Errorf("files %v, want %v (no shell, nothing else)", names, want)
		}
		if binary := image.Files[binaryName]; binary.Header.Mode&0o111 == 0 || binary.Header.Uid != 0 {
			t.Errorf("binary mode %o owner %d", binary.Header.Mode, binary.Header.Uid)
		}
		if !strings.Contains(string(image.Files["etc/passwd"].Data), ":65532:65532:") {
			t.Errorf("/etc/passwd lacks user 65532:\n%s", image.Files["etc/passwd"].Data)
		}
		if home := image.Files["home/nonroot"]; home.Header.Uid != 65532 {
			t.Errorf("/home/nonroot owned by %d", home.Header.Uid)
		}
		if tmp := image.Files["tmp"]; tmp.Header.Mode&0o1777 != 0o1777 {
			t.Errorf("/tmp mode %o", tmp.Header.Mode)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(image.Files["etc/ssl/certs/ca-certificates.crt"].Data) {
			t.Error("the CA certificates do not parse")
		}
	})

	t.Run("static binary that runs", func(t *testing.T) {
		root := t.TempDir()
		if err := image.ExtractRootFS(root); err != nil {
			t.Fatal(err)
		}
		binary := filepath.Join(root, binaryName)
		executable, err := elf.Open(binary)
		if err != nil {
			t.Fatal(err)
		}
		defer executable.Close()
		for _, program := range executable.Progs {
			if program.Type == elf.PT_INTERP {
				t.Error("the binary asks for a dynamic loader: it is not static")
			}
		}
		if libraries, _ := executable.ImportedLibraries(); len(libraries) != 0 {
			t.Errorf("the binary needs %v", libraries)
		}
		var usage bytes.Buffer
		cmd := exec.Command(binary, "-h")
		cmd.Stdout, cmd.Stderr = &usage, &usage
		_ = cmd.Run() // the flag package exits 0 on -h
		for _, flag := range []string{"-leader-elect", "-metrics-secure", "-namespace"} {
			if !strings.Contains(usage.String(), flag) {
				t.Errorf("the binary's usage lacks %s:\n%s", flag, usage.String())
			}
		}
	})

	t.Run("Dockerfile gives the same image", func(t *testing.T) {
		repo, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dockerfile, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w -buildid="`, "gcr.io/distroless/static",
			"USER 65532:65532", `ENTRYPOINT ["/spire-federation-operator"]`, "COPY --from=build /out/spire-federation-operator /spire-federation-operator",
			"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.version"} {
			if !strings.Contains(string(dockerfile), want) {
				t.Errorf("the Dockerfile lacks %s", want)
			}
		}
	})
}
