package helm_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podlb/podlb/test/helm"
	"github.com/podlb/podlb/test/manifest"
)

const (
	chartDir     = "../../charts/podlb"
	manifestsDir = "../../manifests"
	namespace    = "podlb-system"
)

// helmOnlyLabels are the labels Helm's conventions add and kustomize has
// no counterpart for; they are the only difference allowed between the
// two installations' objects.
var helmOnlyLabels = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
}

// TestChartMatchesKustomize renders the chart for the values that mirror
// each kustomize overlay and requires the same objects, field by field,
// as kustomize renders from the overlay. Only Helm's bookkeeping labels
// may differ, and the Namespace object, which Helm leaves to
// --create-namespace. A change to either side without the other fails
// here.
func TestChartMatchesKustomize(t *testing.T) {
	cases := []struct {
		name        string
		kustomize   func(t *testing.T) string
		valuesFiles []string
	}{
		{"aws", overlay("overlays/aws"), []string{"testdata/overlay-aws.yaml"}},
		{"gcp", overlay("overlays/gcp"), []string{"testdata/overlay-gcp.yaml"}},
		{"aws with servicemonitor", withComponents("overlays/aws", "components/servicemonitor"), []string{"testdata/overlay-aws.yaml", "testdata/servicemonitor.yaml"}},
		{"aws with servicemonitor and alerts", withComponents("overlays/aws", "components/servicemonitor", "components/alerts"), []string{"testdata/overlay-aws.yaml", "testdata/servicemonitor.yaml", "testdata/alerts.yaml"}},
		{"gcp with alerts", withComponents("overlays/gcp", "components/alerts"), []string{"testdata/overlay-gcp.yaml", "testdata/alerts.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := manifest.Kustomize(c.kustomize(t))
			if err != nil {
				t.Fatal(err)
			}
			want = slices.DeleteFunc(want, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" })
			got := render(t, namespace, c.valuesFiles...)
			for _, o := range got {
				labels := o.GetLabels()
				for _, l := range helmOnlyLabels {
					if labels[l] == "" {
						t.Errorf("%s lacks the label %s", key(o), l)
					}
					delete(labels, l)
				}
				o.SetLabels(labels)
			}
			wantByKey, gotByKey := byKey(t, want), byKey(t, got)
			for k, w := range wantByKey {
				g, ok := gotByKey[k]
				if !ok {
					t.Errorf("kustomize renders %s, the chart does not", k)
					continue
				}
				if d := cmp.Diff(w.Object, g.Object); d != "" {
					t.Errorf("%s differs (-kustomize +chart):\n%s", k, d)
				}
			}
			for k := range gotByKey {
				if _, ok := wantByKey[k]; !ok {
					t.Errorf("the chart renders %s, kustomize does not", k)
				}
			}
		})
	}
}

func overlay(rel string) func(*testing.T) string {
	return func(*testing.T) string { return filepath.Join(manifestsDir, rel) }
}

// withComponents writes the overlay the guide tells users to write to add
// components to a cloud overlay.
func withComponents(overlay string, components ...string) func(*testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		dir, err := manifest.WriteOverlay(t.TempDir(), manifestsDir, overlay, components...)
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
}

// TestChartCarriesTheAlertsComponent: the chart's copy of the alert rules
// is the component's file itself, so updating it is a copy.
func TestChartCarriesTheAlertsComponent(t *testing.T) {
	component, err := os.ReadFile(filepath.Join(manifestsDir, "components/alerts/prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join(chartDir, "files/prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(component, copied) {
		t.Fatal("charts/podlb/files/prometheusrule.yaml differs from manifests/components/alerts/prometheusrule.yaml: copy the component's file over")
	}
}

func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

func byKey(t *testing.T, objs []*unstructured.Unstructured) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if _, dup := out[key(o)]; dup {
			t.Fatalf("%s rendered twice", key(o))
		}
		out[key(o)] = o
	}
	return out
}

// render installs the chart (dry run) with values files layered in order
// and then, if given, inline YAML on top.
func render(t *testing.T, ns string, valuesFiles ...string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderErr(ns, valuesFiles, "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderErr(ns string, valuesFiles []string, inline string) ([]*unstructured.Unstructured, error) {
	values, err := helm.ReadValues(valuesFiles...)
	if err != nil {
		return nil, err
	}
	if inline != "" {
		over, err := helm.ParseValues(inline)
		if err != nil {
			return nil, err
		}
		// Layered as a later -f file is.
		values = chartutil.CoalesceTables(over, values)
	}
	return helm.Render(chartDir, ns, values)
}

// renderWith renders the AWS overlay's values with inline YAML on top.
func renderWith(t *testing.T, inline string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderErr(namespace, []string{"testdata/overlay-aws.yaml"}, inline)
	if err != nil {
		t.Fatalf("values %s: %v", inline, err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	slices.Sort(out)
	return out
}

func nested[T any](t *testing.T, o *unstructured.Unstructured, path ...string) T {
	t.Helper()
	if o == nil {
		t.Fatalf("no object to read %s from", strings.Join(path, "."))
	}
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s: no %s (%v)", key(o), strings.Join(path, "."), err)
	}
	out, ok := v.(T)
	if !ok {
		t.Fatalf("%s: %s is %T", key(o), strings.Join(path, "."), v)
	}
	return out
}

func containerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	containers := nested[[]any](t, find(objs, "Deployment"), "spec", "template", "spec", "containers")
	var args []string
	for _, a := range containers[0].(map[string]any)["args"].([]any) {
		args = append(args, a.(string))
	}
	return args
}

// TestChartLints runs Helm's chart linter (helm lint --strict) with the
// AWS overlay's values: warnings fail too.
func TestChartLints(t *testing.T) {
	values, err := helm.ReadValues("testdata/overlay-aws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lint := action.NewLint()
	lint.Strict = true
	lint.Namespace = namespace
	result := lint.Run([]string{chartDir}, values)
	for _, m := range result.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		}
	}
	for _, err := range result.Errors {
		t.Errorf("helm lint: %v", err)
	}
}
