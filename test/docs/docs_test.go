// Package docs_test keeps docs/ true to the code: every flag of the
// command and every metric is in the reference, every condition reason in
// troubleshooting, and every relative link leads to a file.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func read(t *testing.T, parts ...string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(append([]string{root}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// parseGo parses a Go file of the repository.
func parseGo(t *testing.T, path string) *ast.File {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, path), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

func TestDocs(t *testing.T) {
	reference := read(t, "docs", "reference.md")
	troubleshooting := read(t, "docs", "troubleshooting.md")

	t.Run("every flag in the reference", func(t *testing.T) {
		mainFlags, zapFlags, err := testenv.OperatorFlags()
		if err != nil {
			t.Fatal(err)
		}
		// controller-runtime registers --kubeconfig, which GetConfigOrDie reads.
		for _, flag := range append(append(mainFlags, zapFlags...), "kubeconfig") {
			if !strings.Contains(reference, "| `--"+flag+"` |") {
				t.Errorf("docs/reference.md does not describe --%s", flag)
			}
		}
	})

	t.Run("every metric in the reference", func(t *testing.T) {
		var names []string
		ast.Inspect(parseGo(t, "internal/metrics/metrics.go"), func(node ast.Node) bool {
			field, ok := node.(*ast.KeyValueExpr)
			if !ok {
				return true
			}
			if key, ok := field.Key.(*ast.Ident); ok && key.Name == "Name" {
				if literal, ok := field.Value.(*ast.BasicLit); ok && literal.Kind == token.STRING {
					name, _ := strconv.Unquote(literal.Value)
					names = append(names, name)
				}
			}
			return true
		})
		if len(names) == 0 {
			t.Fatal("no metric found in internal/metrics/metrics.go")
		}
		for _, name := range names {
			if !strings.Contains(reference, "| `"+name+"` |") {
				t.Errorf("docs/reference.md does not describe the metric %s", name)
			}
		}
	})

	t.Run("every condition reason in troubleshooting", func(t *testing.T) {
		reasons := 0
		for _, declaration := range parseGo(t, "api/v1alpha1/condition_types.go").Decls {
			general, ok := declaration.(*ast.GenDecl)
			if !ok || general.Tok != token.CONST {
				continue
			}
			for _, spec := range general.Specs {
				value := spec.(*ast.ValueSpec)
				for i, name := range value.Names {
					if !strings.HasPrefix(name.Name, "Reason") || i >= len(value.Values) {
						continue
					}
					literal, ok := value.Values[i].(*ast.BasicLit)
					if !ok {
						continue
					}
					reason, _ := strconv.Unquote(literal.Value)
					reasons++
					if !strings.Contains(troubleshooting, "| `"+reason+"` |") {
						t.Errorf("docs/troubleshooting.md has no row for the reason %s (%s)", reason, name.Name)
					}
				}
			}
		}
		if reasons < 10 {
			t.Fatalf("only %d reasons found in api/v1alpha1/condition_types.go", reasons)
		}
	})

	t.Run("relative links lead to files", func(t *testing.T) {
		root, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		documents, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
		if err != nil {
			t.Fatal(err)
		}
		link := regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`)
		for _, document := range documents {
			data, err := os.ReadFile(document)
			if err != nil {
				t.Fatal(err)
			}
			for _, match := range link.FindAllStringSubmatch(string(data), -1) {
				if _, err := os.Stat(filepath.Join(filepath.Dir(document), match[1])); err != nil {
					t.Errorf("%s links to %s, which does not exist", filepath.Base(document), match[1])
				}
			}
		}
	})
}
