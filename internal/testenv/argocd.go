package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"
)

// ArgoCDCustomizations is the folder of the Argo CD health checks of the
// operator's API group, one folder per kind.
func ArgoCDCustomizations() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "config", "argocd", "resource_customizations", "spirefed.io"), nil
}

// ArgoCDHealthScript is the path of the Argo CD health check of a kind of
// the operator's API.
func ArgoCDHealthScript(kind string) (string, error) {
	dir, err := ArgoCDCustomizations()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, kind, "health.lua"), nil
}

// ArgoCDHealth runs an Argo CD health script on an object (anything that
// marshals to JSON) the way Argo CD does, with gopher-lua, the interpreter
// it embeds: the object as the global obj, passed through JSON; the script
// returns a table {status, message}.
func ArgoCDHealth(script string, object any) (status, message string, err error) {
	source, err := os.ReadFile(script)
	if err != nil {
		return "", "", err
	}
	data, err := json.Marshal(object)
	if err != nil {
		return "", "", err
	}
	var decoded any
	if err := json.Unmarshal(data, &decoded); err != nil {
		return "", "", err
	}
	state := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer state.Close()
	for _, open := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		state.Push(state.NewFunction(open.fn))
		state.Push(lua.LString(open.name))
		state.Call(1, 0)
	}
	state.SetGlobal("obj", toLua(state, decoded))
	if err := state.DoString(string(source)); err != nil {
		return "", "", fmt.Errorf("running %s: %w", script, err)
	}
	result, ok := state.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("%s returned %s, not a table", script, state.Get(-1).Type())
	}
	return lua.LVAsString(result.RawGetString("status")), lua.LVAsString(result.RawGetString("message")), nil
}

// toLua converts decoded JSON into Lua values.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case map[string]any:
		table := state.NewTable()
		for key, item := range v {
			table.RawSetString(key, toLua(state, item))
		}
		return table
	case []any:
		table := state.NewTable()
		for _, item := range v {
			table.Append(toLua(state, item))
		}
		return table
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case bool:
		return lua.LBool(v)
	default:
		return lua.LNil
	}
}
