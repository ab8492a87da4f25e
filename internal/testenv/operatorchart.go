package testenv

import (
	"path/filepath"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
)

// OperatorChart loads the operator's own Helm chart from the repository
// (charts/spire-federation-operator).
func OperatorChart() (*chart.Chart, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	return loader.Load(filepath.Join(root, "charts", "spire-federation-operator"))
}
