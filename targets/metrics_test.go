package targets

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podlb/podlb/providers"
)

func TestBindingGaugesReportZeroStatesOnlyWhileNonZero(t *testing.T) {
	key := providers.BindingKey{Namespace: "sparse", Service: "web", Provider: "aws", Port: 80}
	defer DeleteBindingMetrics(key)
	series := func() int {
		return testutil.CollectAndCount(targetsByState) + testutil.CollectAndCount(podsWithoutGate) + testutil.CollectAndCount(desiredTargets)
	}
	before := series()
	r := &BindingReconciler{}
	healthy := providers.Observed{State: providers.Healthy, CloudState: "healthy"}
	r.recordGauges(key, 2, []providers.Observed{healthy, healthy}, 0)
	if got := series() - before; got != 2 {
		t.Errorf("a settled binding adds %d series, want 2 (healthy and desired)", got)
	}
	r.recordGauges(key, 3, []providers.Observed{healthy, healthy, {State: providers.Unhealthy, CloudState: "unhealthy"}}, 1)
	if got := testutil.ToFloat64(targetsByState.WithLabelValues("sparse", "web", "80", "aws", string(providers.Unhealthy))); got != 1 {
		t.Errorf("unhealthy = %v, want 1", got)
	}
	if got := testutil.ToFloat64(podsWithoutGate.WithLabelValues("sparse", "web", "80", "aws")); got != 1 {
		t.Errorf("pods without gate = %v, want 1", got)
	}
	r.recordGauges(key, 2, []providers.Observed{healthy, healthy}, 0)
	if got := series() - before; got != 2 {
		t.Errorf("once settled again the binding has %d series, want 2: zero states must go", got)
	}
	r.recordGauges(key, 2, nil, 0)
	if got := testutil.ToFloat64(targetsByState.WithLabelValues("sparse", "web", "80", "aws", string(providers.Healthy))); got != 0 {
		t.Errorf("healthy must be reported even at zero, got %v", got)
	}
}
