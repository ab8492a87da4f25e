package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestArchiveReadBack writes an image archive (with a stand-in binary) and
// reads it back the ways `crane push` does: as a Docker tarball (a file)
// and as an OCI image layout (the archive unpacked into a folder).
func TestArchiveReadBack(t *testing.T) {
	dir := t.TempDir()
	o := options{out: filepath.Join(dir, "image.tar"), name: "example.test/operator", version: "1.2.3", revision: "abc", source: "https://example.test/src", goarch: "amd64", epoch: 1700000000}
	img, err := assemble(o, []byte("#!binary"), []byte("-----CA-----\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeArchive(o, img); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	configName, _ := img.ConfigName()
	layers, _ := img.Layers()
	layerDigest, _ := layers[0].Digest()

	// A file: crane push, docker load (manifest.json).
	fromTarball, err := tarball.ImageFromPath(o.out, nil)
	if err != nil {
		t.Fatalf("reading the archive as a Docker tarball: %v", err)
	}
	if got, _ := fromTarball.ConfigName(); got != configName {
		t.Errorf("Docker tarball config %s, want %s", got, configName)
	}
	tarballLayers, err := fromTarball.Layers()
	if err != nil || len(tarballLayers) != 1 {
		t.Fatalf("Docker tarball layers: %v, %d", err, len(tarballLayers))
	}
	if got, _ := tarballLayers[0].Digest(); got != layerDigest {
		t.Errorf("Docker tarball layer %s, want %s", got, layerDigest)
	}

	// A folder: crane push of a layout, skopeo oci-archive:, podman load.
	unpacked := filepath.Join(dir, "layout")
	untar(t, o.out, unpacked)
	index, err := layout.ImageIndexFromPath(unpacked)
	if err != nil {
		t.Fatalf("reading the archive as an OCI layout: %v", err)
	}
	manifest, err := index.IndexManifest()
	if err != nil || len(manifest.Manifests) != 1 {
		t.Fatalf("OCI index: %v %+v", err, manifest)
	}
	if got := manifest.Manifests[0]; got.Digest != digest || got.Annotations["org.opencontainers.image.ref.name"] != "1.2.3" {
		t.Errorf("OCI index names %s %v, want %s", got.Digest, got.Annotations, digest)
	}
	fromLayout, err := index.Image(digest)
	if err != nil {
		t.Fatal(err)
	}
	config, err := fromLayout.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if config.Config.User != "65532:65532" || config.Config.Labels["org.opencontainers.image.revision"] != "abc" ||
		config.Created.Unix() != 1700000000 || len(config.History) != 1 || config.History[0].Created.Unix() != 1700000000 {
		t.Errorf("config %+v", config)
	}

	// The same input gives the same bytes.
	again := o
	again.out = filepath.Join(dir, "again.tar")
	img2, err := assemble(again, []byte("#!binary"), []byte("-----CA-----\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := writeArchive(again, img2); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(o.out)
	second, _ := os.ReadFile(again.out)
	if !bytes.Equal(first, second) {
		t.Error("two archives of the same input differ")
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	file, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	reader := tar.NewReader(file)
	for {
		header, err := reader.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, header.Name)
		if header.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
