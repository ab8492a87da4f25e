// Command image builds the operator's container image without a container
// engine, with go-containerregistry, and writes it as one tar file that is
// both an OCI image layout (oci-layout, index.json, blobs/) and a Docker
// archive (manifest.json naming the same blobs): `docker load`, `podman
// load`, `skopeo copy oci-archive:...` and `crane push` all accept it.
//
// The image is distroless-like: one layer with the static operator binary,
// CA certificates, /etc/passwd and /etc/group naming the non-root user 65532,
// and an empty /tmp; no shell. It is reproducible: the same source, Go
// toolchain and CA file give the same digest (fixed timestamps, sorted tar
// entries with fixed owners, deterministic gzip).
//
// Run from the repository's Makefile: `make image`.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where things are in the image.
const (
	binaryPath = "/spire-federation-operator"
	nonRootID  = 65532
)

type options struct {
	repo     string
	out      string
	name     string
	version  string
	revision string
	source   string
	caFile   string
	goarch   string
	epoch    int64
}

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", "../..", "The operator's repository (its main package is built).")
	flag.StringVar(&o.out, "out", "../../bin/spire-federation-operator.oci.tar", "The archive to write.")
	flag.StringVar(&o.name, "name", "ghcr.io/spirefed/spire-federation-operator", "Image name (without tag) recorded in the archive.")
	flag.StringVar(&o.version, "version", "", "Image version: its tag and the org.opencontainers.image.version label.")
	flag.StringVar(&o.revision, "revision", "", "Source revision (git commit): the org.opencontainers.image.revision label.")
	flag.StringVar(&o.source, "source", "https://github.com/spirefed/spire-federation-operator", "The org.opencontainers.image.source label.")
	flag.StringVar(&o.caFile, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle of CA certificates to ship (Debian's ca-certificates package by default).")
	flag.StringVar(&o.goarch, "goarch", "amd64", "Architecture to build for.")
	flag.Int64Var(&o.epoch, "source-date-epoch", 0, "Timestamp of every file and of the image, in seconds since 1970 (SOURCE_DATE_EPOCH, e.g. the commit time).")
	flag.Parse()
	if o.version == "" || o.revision == "" {
		fmt.Fprintln(os.Stderr, "image: -version and -revision are required")
		os.Exit(2)
	}
	digest, err := build(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s:%s %s\n", o.out, o.name, o.version, digest)
}

// build compiles the operator, assembles the image and writes the archive;
// it returns the image's manifest digest.
func build(o options) (v1.Hash, error) {
	work, err := os.MkdirTemp("", "spirefed-image-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(work)

	binary := filepath.Join(work, "spire-federation-operator")
	compile := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", binary, ".")
	compile.Dir = o.repo
	compile.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.goarch, "GOFLAGS=")
	compile.Stdout, compile.Stderr = os.Stderr, os.Stderr
	if err := compile.Run(); err != nil {
		return v1.Hash{}, fmt.Errorf("building the operator: %w", err)
	}
	binaryData, err := os.ReadFile(binary)
	if err != nil {
		return v1.Hash{}, err
	}
	caData, err := os.ReadFile(o.caFile)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("reading CA certificates: %w", err)
	}
	img, err := assemble(o, binaryData, caData)
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	return digest, writeArchive(o, img)
}

// assemble makes the image from the binary and the CA certificates.
func assemble(o options, binaryData, caData []byte) (v1.Image, error) {
	created := time.Unix(o.epoch, 0).UTC()
	layerTar, err := rootFS(created, binaryData, caData)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("creating the layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "make image (hack/image)", Comment: "static operator binary, CA certificates, passwd"},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		"org.opencontainers.image.source":   o.source,
		"org.opencontainers.image.revision": o.revision,
		"org.opencontainers.image.version":  o.version,
		"org.opencontainers.image.title":    "spire-federation-operator",
		"org.opencontainers.image.created":  created.Format(time.RFC3339),
	}
	configFile, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	configFile = configFile.DeepCopy()
	configFile.Created = v1.Time{Time: created}
	configFile.OS, configFile.Architecture = "linux", o.goarch
	configFile.Config = v1.Config{
		User:       strconv.Itoa(nonRootID) + ":" + strconv.Itoa(nonRootID),
		Entrypoint: []string{binaryPath},
		WorkingDir: "/",
		Labels:     labels,
	}
	if img, err = mutate.ConfigFile(img, configFile); err != nil {
		return nil, err
	}
	return img, nil
}

// rootFS is the layer: entries sorted by path, owned by root except the
// non-root user's home, all dated created.
func rootFS(created time.Time, binary, caCertificates []byte) ([]byte, error) {
	type entry struct {
		mode int64
		uid  int
		data []byte
		dir  bool
	}
	entries := map[string]entry{
		"etc/":                              {mode: 0o755, dir: true},
		"etc/group":                         {mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		"etc/passwd":                        {mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		"etc/nsswitch.conf":                 {mode: 0o644, data: []byte("hosts: files dns\n")},
		"etc/ssl/":                          {mode: 0o755, dir: true},
		"etc/ssl/certs/":                    {mode: 0o755, dir: true},
		"etc/ssl/certs/ca-certificates.crt": {mode: 0o644, data: caCertificates},
		"home/":                             {mode: 0o755, dir: true},
		"home/nonroot/":                     {mode: 0o700, dir: true, uid: nonRootID},
		"tmp/":                              {mode: 0o1777, dir: true},
		"spire-federation-operator":         {mode: 0o755, data: binary},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		e := entries[name]
		header := &tar.Header{
			Name: name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: created,
			Typeflag: tar.TypeReg, Size: int64(len(e.data)), Format: tar.FormatPAX,
		}
		if e.dir {
			header.Typeflag, header.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(header); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes the image as an OCI layout (with the tag as the
// ref.name annotation) plus a Docker manifest.json, in one tar with sorted
// entries and fixed metadata.
func writeArchive(o options, img v1.Image) error {
	dir, err := os.MkdirTemp("", "spirefed-image-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tag := o.name + ":" + o.version
	index, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := index.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": o.version,
		"io.containerd.image.name":          tag,
	})); err != nil {
		return fmt.Errorf("writing the OCI layout: %w", err)
	}
	manifest, err := img.Manifest()
	if err != nil {
		return err
	}
	docker := []map[string]any{{
		"Config":   "blobs/sha256/" + manifest.Config.Digest.Hex,
		"RepoTags": []string{tag},
		"Layers":   []string{"blobs/sha256/" + manifest.Layers[0].Digest.Hex},
	}}
	dockerJSON, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), dockerJSON, 0o644); err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	tmp := o.out + ".tmp"
	file, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := tarFolder(file, dir); err != nil {
		_ = file.Close()
		return fmt.Errorf("writing %s: %w", o.out, err)
	}
	if err := file.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, o.out)
}

// tarFolder writes dir's files (and folders) sorted, with fixed metadata.
func tarFolder(w io.Writer, dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		paths = append(paths, path)
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(paths)
	tw := tar.NewWriter(w)
	for _, path := range paths {
		info, err := os.Stat(path)
		if err != nil {
			return err
		}
		name, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		header := &tar.Header{Name: filepath.ToSlash(name), Mode: 0o644, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Size: info.Size(), Format: tar.FormatPAX}
		if info.IsDir() {
			header.Name += "/"
			header.Mode, header.Typeflag, header.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(header); err != nil {
			return err
		}
		if info.IsDir() {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}
