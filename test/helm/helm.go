// Package helm renders charts/podlb with Helm's own library, exactly as
// `helm install --dry-run` (client only) does: chart defaults merged with
// the given values, values.schema.json enforced, templates executed. Its
// tests hold the chart to the kustomize manifests; cmd/render-chart lets
// test/e2e/rbac, in the main module, apply the chart's output to a real
// API server.
package helm

import (
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/podlb/podlb/test/manifest"
)

// ReleaseName is the release every render uses; the chart's object names
// do not depend on it.
const ReleaseName = "podlb"

// Render installs the chart in dry-run, client-only mode into namespace
// and returns the objects it would create.
func Render(chartDir, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", chartDir, err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.ClientOnly = true
	install.DryRun = true
	install.ReleaseName = ReleaseName
	install.Namespace = namespace
	rel, err := install.Run(chrt, values)
	if err != nil {
		return nil, err
	}
	return manifest.Decode([]byte(rel.Manifest))
}

// ReadValues reads values files, later ones overriding earlier ones, as
// repeated `helm install -f` does.
func ReadValues(files ...string) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return nil, err
		}
		out = chartutil.CoalesceTables(v.AsMap(), out)
	}
	return out, nil
}

// ParseValues reads values given as YAML text.
func ParseValues(text string) (map[string]any, error) {
	out := map[string]any{}
	if err := yaml.Unmarshal([]byte(text), &out); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return out, nil
}
