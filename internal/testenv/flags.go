package testenv

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// OperatorFlags lists the command's flags: those main.go defines
// (flag.XxxVar calls) and those of the zap logger it binds.
func OperatorFlags() (mainFlags, zapFlags []string, err error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, nil, err
	}
	file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "main.go"), nil, 0)
	if err != nil {
		return nil, nil, err
	}
	ast.Inspect(file, func(node ast.Node) bool {
		call, ok := node.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		selector, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if pkg, ok := selector.X.(*ast.Ident); !ok || pkg.Name != "flag" {
			return true
		}
		if literal, ok := call.Args[1].(*ast.BasicLit); ok && literal.Kind == token.STRING {
			if name, err := strconv.Unquote(literal.Value); err == nil {
				mainFlags = append(mainFlags, name)
			}
		}
		return true
	})
	if len(mainFlags) == 0 {
		return nil, nil, fmt.Errorf("no flag.XxxVar call found in main.go")
	}
	set := flag.NewFlagSet("zap", flag.ContinueOnError)
	(&zap.Options{}).BindFlags(set)
	set.VisitAll(func(f *flag.Flag) { zapFlags = append(zapFlags, f.Name) })
	return mainFlags, zapFlags, nil
}
