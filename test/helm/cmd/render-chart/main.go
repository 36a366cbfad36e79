// Command render-chart prints the objects charts/podlb installs for the
// given values files, through Helm's library (see package helm). The
// installation tests in the main module run it, so they need no Helm
// dependency of their own.
package main

import (
	"flag"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/podlb/podlb/test/helm"
)

type valueFiles []string

func (v *valueFiles) String() string     { return fmt.Sprint(*v) }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render-chart:", err)
		os.Exit(1)
	}
}

func run() error {
	var files valueFiles
	chartDir := flag.String("chart", "", "chart directory (required)")
	namespace := flag.String("namespace", "podlb-system", "release namespace")
	flag.Var(&files, "values", "values file; repeat to layer them")
	flag.Parse()
	if *chartDir == "" {
		return fmt.Errorf("-chart is required")
	}
	values, err := helm.ReadValues(files...)
	if err != nil {
		return err
	}
	objs, err := helm.Render(*chartDir, *namespace, values)
	if err != nil {
		return err
	}
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		fmt.Printf("---\n%s", data)
	}
	return nil
}
