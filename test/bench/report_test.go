package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
)

// table collects figures by metric and cloud; TestMain prints it once all
// benchmarks have run, so one run gives one side-by-side table.
type table struct {
	mu     sync.Mutex
	order  []row // in first-set order
	clouds []string
	cells  map[row]map[string]string
}

type row struct{ section, metric string }

var results = &table{cells: map[row]map[string]string{}}

func (t *table) set(section, cloud, metric, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := row{section, metric}
	if _, ok := t.cells[r]; !ok {
		t.cells[r] = map[string]string{}
		t.order = append(t.order, r)
	}
	if !slices.Contains(t.clouds, cloud) {
		t.clouds = append(t.clouds, cloud)
	}
	t.cells[r][cloud] = fmt.Sprintf(format, args...)
	logf("%s %s: %s = %s", cloud, section, metric, t.cells[r][cloud])
}

func (t *table) print(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.order) == 0 {
		return
	}
	// Group rows by section, keeping first-seen order inside each.
	var sections []string
	for _, r := range t.order {
		if !slices.Contains(sections, r.section) {
			sections = append(sections, r.section)
		}
	}
	fmt.Fprintf(w, "\n| scenario | figure | %s |\n|---|---|%s\n", strings.Join(t.clouds, " | "), strings.Repeat("---|", len(t.clouds)))
	for _, s := range sections {
		for _, r := range t.order {
			if r.section != s {
				continue
			}
			cols := []string{s, r.metric}
			for _, c := range t.clouds {
				v := t.cells[r][c]
				if v == "" {
					v = "-"
				}
				cols = append(cols, v)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
		}
	}
}

func TestMain(m *testing.M) {
	// The bench links controller-runtime through podlb's packages but runs
	// no controller itself; without a logger it prints a warning stack.
	crlog.SetLogger(logr.Discard())
	code := m.Run()
	results.print(os.Stdout)
	os.Exit(code)
}

// percentile of sorted-in-place durations by nearest rank; 0 when empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := int(math.Ceil(p/100*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// dist formats p50 / p99 / max of a sample.
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("%s / %s / %s (n=%d)", round(percentile(ds, 50)), round(percentile(ds, 99)), round(percentile(ds, 100)), len(ds))
}

func round(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
