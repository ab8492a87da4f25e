package spirehelm

import (
	"path/filepath"
	"reflect"
	"testing"

	"helm.sh/helm/v3/pkg/repo"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// TestParseIndex checks that an index parsed from memory (no temporary
// file: the operator's root file system is read-only) is what Helm reads
// from the file, and that what Helm refuses is refused.
func TestParseIndex(t *testing.T) {
	t.Parallel()
	dir, err := testenv.SharedChartsDir()
	if err != nil {
		t.Fatal(err)
	}
	want, err := repo.LoadIndexFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseIndex(sharedChart(t, "index.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed from memory:\n%+v\nHelm parses:\n%+v", got, want)
	}
	for name, data := range map[string]string{
		"empty":         "",
		"no apiVersion": "entries: {}\n",
		"unknown field": "apiVersion: v1\nentries: {}\nbogus: 1\n",
		"not an index":  "[1, 2]",
		"wrong entry":   "apiVersion: v1\nentries: {spire: 3}\n",
	} {
		if _, err := parseIndex([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	skipped, err := parseIndex([]byte("apiVersion: v1\nentries:\n  spire:\n  - name: spire\n    version: 1.0.0\n  - name: spire\n    version: not-semver\n  - null\n"))
	if err != nil {
		t.Fatal(err)
	}
	if versions := skipped.Entries["spire"]; len(versions) != 1 || versions[0].Version != "1.0.0" {
		t.Errorf("invalid entries kept: %+v", versions)
	}
}
