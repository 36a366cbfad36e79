package metricnames_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/yaml"

	// The packages whose metrics the controller serves.
	_ "github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/metricnames"
	_ "github.com/podlb/podlb/providers/aws"
	_ "github.com/podlb/podlb/providers/gcp"
)

const (
	rulesFile     = "../../manifests/components/alerts/prometheusrule.yaml"
	dashboardFile = "../../manifests/components/dashboards/podlb.json"
	guideFile     = "../../docs/guide.md"
)

// exported lists the series names the controller serves. Metrics
// controller-runtime registers before any podlb package only show once
// they have a series, so the leader election gauge gets one the way the
// manager's elector gives it one.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	_, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          &resourcelock.LeaseLock{LockConfig: resourcelock.ResourceLockConfig{Identity: "metric-names"}},
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{OnStartedLeading: func(context.Context) {}, OnStoppedLeading: func() {}},
		Name:      "metric-names",
	})
	if err != nil {
		t.Fatal(err)
	}
	fams, err := metricnames.Families()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, n := range metricnames.SeriesNames(fams) {
		out[n] = true
	}
	return out
}

// exprParser parses PromQL as Prometheus does for rule files.
var exprParser = parser.NewParser(parser.Options{})

// selectedNames lists the metric names a PromQL expression selects; a
// selector without a fixed name is an error, since it cannot be checked.
func selectedNames(expr string) ([]string, error) {
	e, err := exprParser.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && name == "" {
				name = m.Value
			}
		}
		if name == "" {
			bad = fmt.Errorf("selector %s names no metric", vs)
		}
		names = append(names, name)
		return nil
	})
	return names, bad
}

func checkNames(t *testing.T, where, expr string, exported map[string]bool) {
	t.Helper()
	names, err := selectedNames(expr)
	if err != nil {
		t.Errorf("%s: %q: %v", where, expr, err)
		return
	}
	if len(names) == 0 {
		t.Errorf("%s: %q selects no metric", where, expr)
	}
	for _, n := range names {
		if !exported[n] {
			t.Errorf("%s: %q uses %s, which the controller does not export", where, expr, n)
		}
	}
}

// ruleGroups reads the PrometheusRule's spec with Prometheus's own rule
// file parser: the operator hands spec.groups to Prometheus as a rule file.
func ruleGroups(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       map[string]any `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(raw, &obj); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	if obj.Kind != "PrometheusRule" {
		t.Fatalf("%s: kind %q, want PrometheusRule", rulesFile, obj.Kind)
	}
	spec, err := yaml.Marshal(obj.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(spec, false, model.LegacyValidation, exprParser)
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	return groups
}

func TestAlertRulesParseAndUseOnlyExportedMetrics(t *testing.T) {
	names := exported(t)
	guide, err := os.ReadFile(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(string(guide))
	alerts := 0
	for _, g := range ruleGroups(t).Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("rule %s%s", r.Alert, r.Record)
			checkNames(t, where, r.Expr, names)
			if r.Alert == "" {
				continue
			}
			alerts++
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s has no %s annotation", where, a)
				}
			}
			_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
			if want := strings.ToLower(r.Alert); anchor != want || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q must point at a guide section headed %s (#%s)", where, r.Annotations["runbook_url"], r.Alert, want)
			}
		}
	}
	if alerts == 0 {
		t.Fatal("no alerts")
	}
}

// grafanaVars are dashboard variables in a query; they are replaced by
// values PromQL accepts before parsing.
var (
	grafanaInterval = regexp.MustCompile(`\$__(rate_)?interval`)
	grafanaVar      = regexp.MustCompile(`\$\{?(\w+)(:\w+)?\}?`)
	labelValues     = regexp.MustCompile(`^label_values\((\w+),\s*\w+\)$`)
)

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func TestDashboardQueriesParseAndUseOnlyExportedMetrics(t *testing.T) {
	names := exported(t)
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	queries := 0
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				queries++
				expr := grafanaInterval.ReplaceAllString(q.Expr, "5m")
				expr = grafanaVar.ReplaceAllString(expr, "$1")
				checkNames(t, fmt.Sprintf("panel %q", p.Title), expr, names)
			}
		}
	}
	walk(dash.Panels)
	if queries == 0 {
		t.Fatal("no panel queries")
	}
	for _, v := range dash.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: cannot check %q", v.Name, v.Definition)
		} else if !names[m[1]] {
			t.Errorf("variable %s uses %s, which the controller does not export", v.Name, m[1])
		}
	}
}

// TestGuideListsEveryPodlbMetric keeps the guide's metric table in step
// with the code both ways.
func TestGuideListsEveryPodlbMetric(t *testing.T) {
	fams, err := metricnames.Families()
	if err != nil {
		t.Fatal(err)
	}
	guide, err := os.ReadFile(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(podlb_\\w+)` \\|").FindAllStringSubmatch(string(guide), -1) {
		listed[m[1]] = true
	}
	for name := range fams {
		if strings.HasPrefix(name, "podlb_") && !listed[name] {
			t.Errorf("the guide's metric table lacks %s", name)
		}
	}
	for name := range listed {
		if _, ok := fams[name]; !ok {
			t.Errorf("the guide lists %s, which the controller does not export", name)
		}
	}
}

// headingAnchors are the anchors GitHub gives the guide's headings.
func headingAnchors(md string) map[string]bool {
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}
