package readiness

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/targets"
)

// gatedPod lists podlb's gate plus extra gates; conds are type, status and
// minutes before now of the last transition.
func gatedPod(name string, now time.Time, extraGates []corev1.PodConditionType, conds ...any) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.PodSpec{NodeName: "n1", ReadinessGates: []corev1.PodReadinessGate{{ConditionType: targets.GateConditionType}}}}
	for _, g := range extraGates {
		p.Spec.ReadinessGates = append(p.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: g})
	}
	for i := 0; i+2 < len(conds); i += 3 {
		c := corev1.PodCondition{Type: conds[i].(corev1.PodConditionType), Status: conds[i+1].(corev1.ConditionStatus),
			LastTransitionTime: metav1.NewTime(now.Add(-time.Duration(conds[i+2].(int)) * time.Minute))}
		if c.Type == targets.GateConditionType && c.Status == corev1.ConditionFalse {
			c.Reason = ReasonPending
		}
		p.Status.Conditions = append(p.Status.Conditions, c)
	}
	return p
}

func TestGateWaitsCountOnlyPodsPodlbAloneHolds(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const other corev1.PodConditionType = "example.com/other"
	T, F := corev1.ConditionTrue, corev1.ConditionFalse
	pods := []corev1.Pod{
		// Pending for 7 minutes since its containers became ready.
		gatedPod("pending-7m", now, nil, corev1.ContainersReady, T, 7, targets.GateConditionType, F, 6),
		gatedPod("pending-2m", now, nil, corev1.ContainersReady, T, 2, targets.GateConditionType, F, 2),
		// The other gate turned True 3 minutes ago: podlb alone holds it
		// since then, not since the containers became ready.
		gatedPod("other-gate", now, []corev1.PodConditionType{other}, corev1.ContainersReady, T, 30, other, T, 3),
		// Not held by podlb alone: containers not ready, another gate
		// False, or the gate already True.
		gatedPod("containers", now, nil, corev1.ContainersReady, F, 50, targets.GateConditionType, F, 50),
		gatedPod("other-false", now, []corev1.PodConditionType{other}, corev1.ContainersReady, T, 50, other, F, 50),
		gatedPod("open", now, nil, corev1.ContainersReady, T, 50, targets.GateConditionType, T, 49),
	}
	deleted := gatedPod("deleted", now, nil, corev1.ContainersReady, T, 60)
	deleted.DeletionTimestamp = &metav1.Time{Time: now}
	ungated := gatedPod("ungated", now, nil, corev1.ContainersReady, T, 60)
	ungated.Spec.ReadinessGates = nil
	pods = append(pods, deleted, ungated)

	sum := newGateWaits(now)
	for i := range pods {
		sum.add(&pods[i])
	}
	got := sum.by
	want := map[string]WaitSummary{
		ReasonPending:   {Pods: 2, Longest: 7 * time.Minute},
		NoGateCondition: {Pods: 1, Longest: 3 * time.Minute},
	}
	if len(got) != len(want) {
		t.Fatalf("gate waits = %v, want %v", got, want)
	}
	for reason, w := range want {
		if got[reason] != w {
			t.Errorf("reason %s: %+v, want %+v", reason, got[reason], w)
		}
	}
}

func TestWaitingGatesReportsFromThePodsGiven(t *testing.T) {
	now := time.Now()
	p := gatedPod("p", now, nil, corev1.ContainersReady, corev1.ConditionTrue, 12, targets.GateConditionType, corev1.ConditionFalse, 12)
	c := &waitingGates{}
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Fatalf("without pods to walk the collector must report nothing, got %d series", n)
	}
	walk := PodWalk(func(_ context.Context, visit func(*corev1.Pod)) error {
		visit(&p)
		return nil
	})
	c.pods.Store(&walk)
	want := `
# HELP podlb_gate_waiting_pods Pods held back by the podlb.io/load-balancer-ready gate alone (containers ready, every other gate True), by the gate's reason.
# TYPE podlb_gate_waiting_pods gauge
podlb_gate_waiting_pods{reason="TargetPending"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "podlb_gate_waiting_pods"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "podlb_gate_longest_wait_seconds" {
			if v := f.GetMetric()[0].GetGauge().GetValue(); v < 12*60 || v > 13*60 {
				t.Errorf("longest wait %vs, want about 720s", v)
			}
			return
		}
	}
	t.Error("podlb_gate_longest_wait_seconds not reported")
}
