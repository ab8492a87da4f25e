package operator

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	limited := write("limited", "536870912\n")
	for _, tc := range []struct {
		name, path, env string
		want            int64
		wantSet         bool
	}{
		{"90 % of the container's limit", limited, "", 483183820, true},
		{"GOMEMLIMIT wins", limited, "300MiB", 0, false},
		{"no limit", write("max", "max\n"), "", 0, false},
		{"not cgroup v2", filepath.Join(dir, "missing"), "", 0, false},
		{"unreadable content", write("garbage", "lots\n"), "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, set := memoryLimit(tc.path, tc.env)
			if got != tc.want || set != tc.wantSet {
				t.Errorf("memoryLimit = %d, %v; want %d, %v", got, set, tc.want, tc.wantSet)
			}
		})
	}
}
