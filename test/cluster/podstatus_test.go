package cluster

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testGate = "podlb.io/load-balancer-ready"

func gatedPod(conditions ...corev1.PodCondition) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u1", Generation: 1},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "a", Image: "img"}, {Name: "b", Image: "img"}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: testGate}},
		},
		Status: corev1.PodStatus{Conditions: conditions},
	}
}

func TestKubeletStatusReadiness(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(time.Minute)
	rt := podRuntime{podIP: "10.20.0.5", hostIP: "10.20.250.1", started: start}
	scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}

	cases := []struct {
		name       string
		ready      bool
		conditions []corev1.PodCondition
		want       corev1.PodCondition
	}{
		{"containers not ready", false, nil, corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [a b]"}},
		{"gate missing", true, nil, corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "ReadinessGatesNotReady",
			Message: `corresponding condition of pod readiness gate "podlb.io/load-balancer-ready" does not exist.`}},
		{"gate false", true, []corev1.PodCondition{{Type: testGate, Status: corev1.ConditionFalse}}, corev1.PodCondition{Status: corev1.ConditionFalse, Reason: "ReadinessGatesNotReady",
			Message: `the status of pod readiness gate "podlb.io/load-balancer-ready" is not "True", but False`}},
		{"gate true", true, []corev1.PodCondition{{Type: testGate, Status: corev1.ConditionTrue}}, corev1.PodCondition{Status: corev1.ConditionTrue}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := gatedPod(append([]corev1.PodCondition{scheduled}, tc.conditions...)...)
			rt.ready = tc.ready
			got := kubeletStatus(pod, rt, now)
			ready := findCondition(got.Conditions, corev1.PodReady)
			if ready == nil || ready.Status != tc.want.Status || ready.Reason != tc.want.Reason || ready.Message != tc.want.Message {
				t.Fatalf("Ready = %+v, want %+v", ready, tc.want)
			}
			// Foreign conditions survive untouched, in place.
			if got.Conditions[0] != scheduled {
				t.Errorf("PodScheduled changed: %+v", got.Conditions[0])
			}
			for _, c := range tc.conditions {
				if g := findCondition(got.Conditions, c.Type); g == nil || *g != c {
					t.Errorf("gate condition changed: %+v", g)
				}
			}
			if got.Phase != corev1.PodRunning || got.PodIP != rt.podIP || got.HostIP != rt.hostIP || len(got.ContainerStatuses) != 2 {
				t.Errorf("status = %+v", got)
			}
		})
	}
}

func TestLastTransitionTimeMovesOnlyOnChange(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rt := podRuntime{podIP: "10.20.0.5", hostIP: "10.20.250.1", started: t0, ready: true}
	pod := gatedPod()
	pod.Status = kubeletStatus(pod, rt, t0)
	again := kubeletStatus(pod, rt, t0.Add(time.Hour))
	for _, c := range again.Conditions {
		if !c.LastTransitionTime.Time.Equal(t0) {
			t.Errorf("%s moved to %v without a status change", c.Type, c.LastTransitionTime)
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: testGate, Status: corev1.ConditionTrue})
	later := t0.Add(2 * time.Hour)
	flipped := kubeletStatus(pod, rt, later)
	if r := findCondition(flipped.Conditions, corev1.PodReady); r.Status != corev1.ConditionTrue || !r.LastTransitionTime.Time.Equal(later) {
		t.Errorf("Ready = %+v, want True since %v", r, later)
	}
	if c := findCondition(flipped.Conditions, corev1.ContainersReady); !c.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("ContainersReady moved: %v", c.LastTransitionTime)
	}
}

func TestFinishedPodIsSucceeded(t *testing.T) {
	t0 := time.Now()
	rt := podRuntime{podIP: "10.20.0.5", hostIP: "10.20.250.1", started: t0, ready: true, finished: t0.Add(time.Second)}
	got := kubeletStatus(gatedPod(), rt, t0)
	if got.Phase != corev1.PodSucceeded || got.ContainerStatuses[0].State.Terminated == nil || got.ContainerStatuses[0].Ready {
		t.Fatalf("status = %+v", got)
	}
	if r := findCondition(got.Conditions, corev1.PodReady); r.Status != corev1.ConditionFalse || r.Reason != "PodCompleted" {
		t.Fatalf("Ready = %+v", r)
	}
}

func TestPreStopDuration(t *testing.T) {
	cases := []struct {
		handler corev1.LifecycleHandler
		want    time.Duration
	}{
		{corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}, 3 * time.Second},
		{corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "5"}}}, 5 * time.Second},
		{corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "sleep 1.5"}}}, 1500 * time.Millisecond},
		{corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"nginx", "-s", "quit"}}}, 0},
	}
	for _, tc := range cases {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Lifecycle: &corev1.Lifecycle{PreStop: &tc.handler}}}}}
		if got := preStopDuration(pod); got != tc.want {
			t.Errorf("%+v: got %v, want %v", tc.handler, got, tc.want)
		}
	}
}

func TestAddressing(t *testing.T) {
	for in, want := range map[string]string{
		"10.42.1.2":       "127.42.1.2",
		"10.42.1.2:8080":  "127.42.1.2:8080",
		"192.168.1.1:80":  "192.168.1.1:80",
		"example.com:443": "example.com:443",
	} {
		if got := LoopbackAddr(in); got != want {
			t.Errorf("LoopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
	n := &network{octet: 42}
	for _, nodes := range []int{1, 3, 15, 16, 100, 240} {
		var last netip.Prefix
		for i := range nodes {
			b := n.podBlock(i, nodes)
			if b.Masked() != b || (i > 0 && b.Overlaps(last)) {
				t.Fatalf("%d nodes: block %d = %v overlaps or is not aligned", nodes, i, b)
			}
			end := b.Addr().As4()
			if int(end[2])+(1<<(24-b.Bits())) > podSpaceOctets {
				t.Fatalf("%d nodes: block %v runs into the host range", nodes, b)
			}
			last = b
		}
	}
}
