package targets

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podlb/podlb/providers"
)

var (
	bindingErrorsDesc = prometheus.NewDesc("podlb_binding_errors",
		"1 for every binding whose last reconcile failed (the error in its status), by error class; bindings that work are not reported.",
		[]string{"namespace", "service", "port", "provider", "class"}, nil)
	sweptGroups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_sweep_released_groups_total",
		Help: "Groups the leak sweep released because no Service asks for them any more: each one had leaked.",
	}, []string{"provider"})
	sweeps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_sweeps_total",
		Help: "Leak sweeps by result: ok, or failed when something could not be listed or released.",
	}, []string{"result"})
)

// bindingErrors reports, when scraped, the bindings whose status holds an
// error, from the registry: only the leader reconciles, so only its
// registry has any.
type bindingErrors struct {
	reg atomic.Pointer[Registry]
}

var failingBindings = &bindingErrors{}

func init() {
	metrics.Registry.MustRegister(failingBindings, sweptGroups, sweeps)
	for _, result := range []string{"ok", "failed"} {
		sweeps.WithLabelValues(result)
	}
}

// ReportBindingErrors makes podlb_binding_errors read reg; the last call
// wins.
func ReportBindingErrors(reg *Registry) { failingBindings.reg.Store(reg) }

func (b *bindingErrors) Describe(ch chan<- *prometheus.Desc) { ch <- bindingErrorsDesc }

func (b *bindingErrors) Collect(ch chan<- prometheus.Metric) {
	reg := b.reg.Load()
	if reg == nil {
		return
	}
	for _, k := range reg.AllBindings() {
		st := reg.Status(k)
		if st == nil || st.Error == "" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(bindingErrorsDesc, prometheus.GaugeValue, 1,
			k.Namespace, k.Service, portLabel(k), k.Provider, string(statusErrorClass(st.Error)))
	}
}

// portLabel is a binding's port label: the port, followed by
// " via balancer" for a load balancer's backend, so its series never
// merge with those of the Service's own binding of the port while the
// label set stays the same for every binding.
func portLabel(k providers.BindingKey) string {
	port := strconv.Itoa(int(k.Port))
	if k.Balancer != "" {
		port += " via " + k.Balancer
	}
	return port
}

// statusErrorClass reads the class back from a status error, which the
// binding reconciler writes as "class: error".
func statusErrorClass(msg string) providers.Class {
	class, _, _ := strings.Cut(msg, ":")
	switch c := providers.Class(class); c {
	case providers.Throttled, providers.NotFound, providers.Invalid, providers.Transient:
		return c
	}
	return providers.Transient
}
