package readiness

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podlb/podlb/targets"
)

// NoGateCondition is the reason label of waiting pods whose gate podlb has
// not written at all: no leader, or podlb has not looked at them yet.
const NoGateCondition = "NoCondition"

var (
	waitingPodsDesc = prometheus.NewDesc("podlb_gate_waiting_pods",
		"Pods held back by the podlb.io/load-balancer-ready gate alone (containers ready, every other gate True), by the gate's reason.",
		[]string{"reason"}, nil)
	longestWaitDesc = prometheus.NewDesc("podlb_gate_longest_wait_seconds",
		"How long the longest-waiting pod held back by the gate alone has waited, by the gate's reason.",
		[]string{"reason"}, nil)
)

// waitingGates reports, when scraped, the pods that wait for the gate
// alone. It reads the pod cache rather than the gate reconciler's writes,
// so gates nobody writes (no leader, a stuck queue) show too.
type waitingGates struct {
	pods atomic.Pointer[PodWalk]
}

// PodWalk shows visit every cached pod, to read only, and fails if the
// cache cannot be read; visit must not keep the pod.
type PodWalk func(ctx context.Context, visit func(*corev1.Pod)) error

var waiting = &waitingGates{}

func init() { metrics.Registry.MustRegister(waiting) }

// ReportWaitingGates makes the gate wait metrics read pods with walk;
// the last call wins. Until the first call they report nothing.
func ReportWaitingGates(walk PodWalk) { waiting.pods.Store(&walk) }

// scrapeTimeout bounds a scrape's cache read, which blocks until the
// cache has synced.
const scrapeTimeout = 5 * time.Second

func (w *waitingGates) Describe(ch chan<- *prometheus.Desc) {
	ch <- waitingPodsDesc
	ch <- longestWaitDesc
}

func (w *waitingGates) Collect(ch chan<- prometheus.Metric) {
	walk := w.pods.Load()
	if walk == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	sum := newGateWaits(time.Now())
	if err := (*walk)(ctx, sum.add); err != nil {
		return
	}
	for reason, s := range sum.by {
		ch <- prometheus.MustNewConstMetric(waitingPodsDesc, prometheus.GaugeValue, float64(s.Pods), reason)
		ch <- prometheus.MustNewConstMetric(longestWaitDesc, prometheus.GaugeValue, s.Longest.Seconds(), reason)
	}
}

// WaitSummary is what the pods waiting for the gate with one reason add
// up to.
type WaitSummary struct {
	Pods    int
	Longest time.Duration
}

// gateWaits sums up, by the gate's reason, the pods podlb alone holds
// back, one pod at a time: the wait starts when the last other condition
// a pod needs for Ready (ContainersReady, other readiness gates) turned
// True.
type gateWaits struct {
	now time.Time
	by  map[string]WaitSummary
}

func newGateWaits(now time.Time) gateWaits {
	return gateWaits{now: now, by: map[string]WaitSummary{}}
}

func (w gateWaits) add(p *corev1.Pod) {
	if p.DeletionTimestamp != nil || !targets.HeldOnlyByGate(p) {
		return
	}
	reason := NoGateCondition
	if c := targets.PodCondition(p, targets.GateConditionType); c != nil {
		if c.Status == corev1.ConditionTrue {
			return
		}
		reason = c.Reason
	}
	since := conditionSince(p, corev1.ContainersReady)
	for _, g := range p.Spec.ReadinessGates {
		if g.ConditionType != targets.GateConditionType {
			if t := conditionSince(p, g.ConditionType); t.After(since) {
				since = t
			}
		}
	}
	s := w.by[reason]
	s.Pods++
	if wait := w.now.Sub(since); !since.IsZero() && wait > s.Longest {
		s.Longest = wait
	}
	w.by[reason] = s
}

func conditionSince(p *corev1.Pod, t corev1.PodConditionType) time.Time {
	if c := targets.PodCondition(p, t); c != nil {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}
