package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// BuildImage runs `make image` to write the operator's image archive at
// archive, and returns the manifest digest it printed.
func BuildImage(ctx context.Context, archive string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "image", "IMAGE_ARCHIVE="+archive)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("make image: %w\n%s", err, stderr.Bytes())
	}
	// The last line is "<archive> <name>:<tag> <digest>".
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) != 3 || !strings.HasPrefix(fields[2], "sha256:") {
		return "", fmt.Errorf("make image printed %q", out)
	}
	return fields[2], nil
}

// ImageConfig is the part of an OCI image configuration tests look at.
type ImageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Env        []string          `json:"Env"`
		WorkingDir string            `json:"WorkingDir"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// ImageFile is a file of an image's layers.
type ImageFile struct {
	Header *tar.Header
	Data   []byte
}

// ImageArchive is an image read from an archive `make image` wrote: an OCI
// image layout whose index names one manifest, plus a Docker manifest.json.
type ImageArchive struct {
	// Digest of the manifest the OCI index names.
	Digest string
	// RefName is the index's org.opencontainers.image.ref.name annotation.
	RefName string
	// DockerRepoTags and DockerLayers come from manifest.json.
	DockerRepoTags []string
	DockerConfig   string
	DockerLayers   []string
	Config         ImageConfig
	ConfigDigest   string
	// Files of the layers by path (without a leading slash), later layers
	// replacing earlier ones.
	Files map[string]ImageFile
	// Entries lists the archive's own entries in order.
	Entries []string
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations"`
}

// ReadImageArchive reads an image archive, checking every blob it uses
// against its digest.
func ReadImageArchive(archive string) (*ImageArchive, error) {
	file, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	contents := map[string][]byte{}
	result := &ImageArchive{Files: map[string]ImageFile{}}
	tr := tar.NewReader(file)
	for {
		header, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", archive, err)
		}
		result.Entries = append(result.Entries, header.Name)
		if header.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		contents[header.Name] = data
	}
	blob := func(digest string) ([]byte, error) {
		hexDigest, ok := strings.CutPrefix(digest, "sha256:")
		if !ok {
			return nil, fmt.Errorf("digest %q is not sha256", digest)
		}
		data, ok := contents["blobs/sha256/"+hexDigest]
		if !ok {
			return nil, fmt.Errorf("blob %s is missing", digest)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != hexDigest {
			return nil, fmt.Errorf("blob %s does not match its digest", digest)
		}
		return data, nil
	}
	var ociLayout struct {
		ImageLayoutVersion string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(contents["oci-layout"], &ociLayout); err != nil || ociLayout.ImageLayoutVersion != "1.0.0" {
		return nil, fmt.Errorf("oci-layout is %q", contents["oci-layout"])
	}
	var index struct {
		Manifests []ociDescriptor `json:"manifests"`
	}
	if err := json.Unmarshal(contents["index.json"], &index); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	if len(index.Manifests) != 1 {
		return nil, fmt.Errorf("index.json names %d manifests", len(index.Manifests))
	}
	result.Digest = index.Manifests[0].Digest
	result.RefName = index.Manifests[0].Annotations["org.opencontainers.image.ref.name"]
	manifestData, err := blob(result.Digest)
	if err != nil {
		return nil, err
	}
	var manifest struct {
		Config ociDescriptor   `json:"config"`
		Layers []ociDescriptor `json:"layers"`
	}
	if err := json.Unmarshal(manifestData, &manifest); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	result.ConfigDigest = manifest.Config.Digest
	configData, err := blob(manifest.Config.Digest)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(configData, &result.Config); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	for _, layer := range manifest.Layers {
		data, err := blob(layer.Digest)
		if err != nil {
			return nil, err
		}
		if err := readLayer(data, result.Files); err != nil {
			return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
		}
	}
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(contents["manifest.json"], &docker); err != nil || len(docker) != 1 {
		return nil, fmt.Errorf("manifest.json: %v (%d images)", err, len(docker))
	}
	result.DockerConfig, result.DockerRepoTags, result.DockerLayers = docker[0].Config, docker[0].RepoTags, docker[0].Layers
	return result, nil
}

func readLayer(data []byte, files map[string]ImageFile) error {
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		header, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(path.Clean("/"+header.Name), "/")] = ImageFile{Header: header, Data: content}
	}
}

// ExtractRootFS writes the image's files under dir, as a container
// runtime would unpack them: modes and owners kept, dir itself 0755.
func (a *ImageArchive) ExtractRootFS(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	// Folders first (sorted paths put a folder before its content).
	for _, name := range slices.Sorted(maps.Keys(a.Files)) {
		file := a.Files[name]
		target := filepath.Join(dir, filepath.FromSlash(name))
		mode := os.FileMode(file.Header.Mode).Perm()
		switch file.Header.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.WriteFile(target, file.Data, 0o600); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %c", name, file.Header.Typeflag)
		}
		if file.Header.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		if err := os.Chmod(target, mode); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(target, file.Header.Uid, file.Header.Gid); err != nil {
				return err
			}
		}
	}
	return nil
}
