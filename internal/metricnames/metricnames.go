// Package metricnames lists the metric names a podlb controller exports,
// for tests that check dashboards, alert rules and the guide against them.
//
// It wraps controller-runtime's metrics.Registry when it is initialized
// and records every collector registered after that. Go initializes
// packages in dependency order and, among those ready, by import path
// (the Go spec, since Go 1.21), so this package, which depends only on
// controller-runtime's metrics package, comes before every podlb package
// and every other controller-runtime package that registers metrics. What
// controller-runtime's metrics package registers itself (leader election,
// client-go adapters) is gathered instead, once it has series.
//
// Import it only from tests: the wrapper stays in place for the process.
package metricnames

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Kind tells which series names a metric family exposes.
type Kind int

const (
	// Single families expose their own name only (counters, gauges).
	Single Kind = iota
	// Histogram families expose _bucket, _sum and _count series.
	Histogram
	// Summary families expose their own name, _sum and _count.
	Summary
)

type recorder struct {
	metrics.RegistererGatherer
	recorded map[string]Kind
}

var rec = &recorder{RegistererGatherer: metrics.Registry, recorded: map[string]Kind{}}

func init() { metrics.Registry = rec }

var fqName = regexp.MustCompile(`^Desc\{fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.RegistererGatherer.Register(c); err != nil {
		return err
	}
	kind := kindOf(c)
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		// Desc keeps its name private; its String form is the one stable
		// way to read it.
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			panic(fmt.Sprintf("metricnames: cannot read the name of %s", d))
		}
		r.recorded[m[1]] = kind
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func kindOf(c prometheus.Collector) Kind {
	switch c.(type) {
	case prometheus.Histogram, *prometheus.HistogramVec:
		return Histogram
	case prometheus.Summary, *prometheus.SummaryVec:
		return Summary
	}
	return Single
}

// Families returns every metric family the process has registered into
// metrics.Registry, by name, with its kind: those registered after this
// package was initialized and those that have series when gathered.
func Families() (map[string]Kind, error) {
	if len(rec.recorded) == 0 {
		return nil, fmt.Errorf("metricnames: nothing was registered after it was initialized: it is initialized too late to see the controller's metrics")
	}
	out := map[string]Kind{}
	for name, k := range rec.recorded {
		out[name] = k
	}
	fams, err := rec.Gather()
	if err != nil {
		return nil, err
	}
	for _, f := range fams {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[f.GetName()] = Histogram
		case dto.MetricType_SUMMARY:
			out[f.GetName()] = Summary
		default:
			out[f.GetName()] = Single
		}
	}
	return out, nil
}

// SeriesNames expands families into the names their series carry, which
// is what queries select.
func SeriesNames(fams map[string]Kind) []string {
	var out []string
	for name, k := range fams {
		switch k {
		case Histogram:
			out = append(out, name+"_bucket", name+"_sum", name+"_count")
		case Summary:
			out = append(out, name, name+"_sum", name+"_count")
		default:
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
