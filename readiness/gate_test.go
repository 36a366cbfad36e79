package readiness

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

type spec string

func (s spec) Summary() string { return string(s) }

func key(svc string, port int32) providers.BindingKey {
	return providers.BindingKey{Namespace: "ns", Service: svc, Provider: "aws", Port: port}
}

// registry with one Service "web" selecting app=web with the given ports.
func registry(mode providers.ReadinessMode, ports ...int32) *targets.Registry {
	r := targets.NewRegistry()
	var bs []*providers.Binding
	for _, p := range ports {
		bs = append(bs, &providers.Binding{Key: key("web", p), Mode: mode, Spec: spec("g")})
	}
	r.SetService(&targets.ServiceEntry{Name: types.NamespacedName{Namespace: "ns", Name: "web"},
		Selector: labels.SelectorFromSet(labels.Set{"app": "web"})}, bs)
	return r
}

var webPod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1", UID: "u1", Labels: map[string]string{"app": "web"}}}

func observe(r *targets.Registry, k providers.BindingKey, serving bool, pods map[types.UID]targets.PodTarget) {
	_, gen := r.BindingAt(k)
	r.SetHealth(k, gen, &targets.BindingHealth{Group: "targetgroup/web/1", Serving: serving, Pods: pods})
}

func target(state providers.State, cloud, reason string) targets.PodTarget {
	return targets.PodTarget{State: state, CloudState: cloud, Reason: reason, Group: "targetgroup/web/1"}
}

func TestEvaluateNotSelected(t *testing.T) {
	r := registry(providers.ReadyWhenHealthy, 80)
	other := webPod.DeepCopy()
	other.Labels = map[string]string{"app": "other"}
	v := Evaluate(other, r)
	if !v.Known || v.Status != corev1.ConditionTrue || v.Reason != ReasonNotSelected {
		t.Errorf("a pod no binding selects must not be blocked: %v", v)
	}
}

func TestEvaluateWaitsForFirstObservation(t *testing.T) {
	r := registry(providers.ReadyWhenHealthy, 80, 443)
	observe(r, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if v := Evaluate(webPod, r); v.Known {
		t.Errorf("port 443 never observed since start: the gate must be left alone, got %v", v)
	}
	observe(r, key("web", 443), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if v := Evaluate(webPod, r); !v.Known || v.Status != corev1.ConditionTrue || v.Reason != ReasonReady {
		t.Errorf("healthy in both: %v", v)
	}
}

func TestEvaluateStates(t *testing.T) {
	cases := []struct {
		mode    providers.ReadinessMode
		serving bool
		target  *targets.PodTarget
		status  corev1.ConditionStatus
		reason  string
		message string
	}{
		{providers.ReadyWhenHealthy, true, &targets.PodTarget{State: providers.Pending, CloudState: "initial", Reason: "Elb.InitialHealthChecking", Group: "targetgroup/web/1"},
			corev1.ConditionFalse, ReasonPending, "initial: Elb.InitialHealthChecking in targetgroup/web/1"},
		{providers.ReadyWhenHealthy, true, &targets.PodTarget{State: providers.Unhealthy, CloudState: "unhealthy", Reason: "Target.Timeout", Group: "targetgroup/web/1"},
			corev1.ConditionFalse, ReasonUnhealthy, "unhealthy: Target.Timeout"},
		{providers.ReadyWhenHealthy, false, &targets.PodTarget{State: providers.Unused, CloudState: "unused", Reason: "Target.NotInUse", Group: "targetgroup/web/1"},
			corev1.ConditionFalse, ReasonUnused, "podlb.io/readiness: registered"},
		{providers.ReadyWhenRegistered, false, &targets.PodTarget{State: providers.Unused, CloudState: "unused", Reason: "Target.NotInUse"},
			corev1.ConditionTrue, ReasonReady, ""},
		{providers.ReadyWhenRegistered, true, &targets.PodTarget{State: providers.Pending, CloudState: "initial"},
			corev1.ConditionTrue, ReasonReady, ""},
		{providers.ReadyWhenRegistered, true, &targets.PodTarget{State: providers.Draining, CloudState: "draining"},
			corev1.ConditionFalse, ReasonPending, "draining"},
		{providers.ReadyWhenHealthy, true, nil, corev1.ConditionFalse, ReasonNotRegistered, "waiting for the pod's containers"},
	}
	for i, c := range cases {
		r := registry(c.mode, 80)
		pods := map[types.UID]targets.PodTarget{}
		if c.target != nil {
			pods["u1"] = *c.target
		}
		observe(r, key("web", 80), c.serving, pods)
		v := Evaluate(webPod, r)
		if !v.Known || v.Status != c.status || v.Reason != c.reason || !strings.Contains(v.Message, c.message) {
			t.Errorf("case %d: got %v, want %s %s containing %q", i, v, c.status, c.reason, c.message)
		}
	}
}

func TestEvaluateBlockingProblemsAndErrors(t *testing.T) {
	r := targets.NewRegistry()
	r.SetService(&targets.ServiceEntry{Name: types.NamespacedName{Namespace: "ns", Name: "web"},
		Selector: labels.SelectorFromSet(labels.Set{"app": "web"}),
		Problems: []targets.Problem{{Field: `podlb.io/aws-target-groups["https"]`, Message: "no port", Provider: "aws"}}}, nil)
	v := Evaluate(webPod, r)
	if v.Status != corev1.ConditionFalse || v.Reason != ReasonInvalid || !strings.Contains(v.Message, `["https"]`) {
		t.Errorf("a broken annotation must hold the pod and say why: %v", v)
	}

	r = registry(providers.ReadyWhenHealthy, 80)
	r.SetStatus(key("web", 80), &targets.BindingStatus{Error: "not-found: arn: TargetGroupNotFound"})
	v = Evaluate(webPod, r)
	if !v.Known || v.Status != corev1.ConditionFalse || v.Reason != ReasonError || !strings.Contains(v.Message, "TargetGroupNotFound") {
		t.Errorf("a failing binding never observed: %v", v)
	}
}

func TestEvaluateReportsEveryBlockingBinding(t *testing.T) {
	r := registry(providers.ReadyWhenHealthy, 80, 443)
	observe(r, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Pending, "initial", "Elb.RegistrationInProgress")})
	observe(r, key("web", 443), true, map[types.UID]targets.PodTarget{"u1": target(providers.Unhealthy, "unhealthy", "Target.FailedHealthChecks")})
	v := Evaluate(webPod, r)
	if v.Status != corev1.ConditionFalse || !strings.Contains(v.Message, "(and 1 more)") {
		t.Errorf("got %v", v)
	}
}

func TestEvaluateHealthySince(t *testing.T) {
	r := registry(providers.ReadyWhenHealthy, 80, 443)
	early, late := time.Unix(100, 0), time.Unix(200, 0)
	t80, t443 := target(providers.Healthy, "healthy", ""), target(providers.Healthy, "healthy", "")
	t80.HealthySince, t443.HealthySince = early, late
	observe(r, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": t80})
	observe(r, key("web", 443), true, map[types.UID]targets.PodTarget{"u1": t443})
	if v := Evaluate(webPod, r); !v.HealthySince.Equal(late) {
		t.Errorf("gate latency counts from the last group to turn healthy: %v", v.HealthySince)
	}
}

// A binding's health counts only for the version of the binding it was
// observed for: an observation that races a change of the binding (another
// group, another port) is dropped, and a change forgets earlier health.
func TestHealthOfAnEarlierBindingNeverOpensTheGate(t *testing.T) {
	r := registry(providers.ReadyWhenHealthy, 80)
	_, before := r.BindingAt(key("web", 80))
	observe(r, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if v := Evaluate(webPod, r); v.Status != corev1.ConditionTrue {
		t.Fatalf("healthy in the only group: %v", v)
	}
	// The annotation now names another group.
	r.SetService(&targets.ServiceEntry{Name: types.NamespacedName{Namespace: "ns", Name: "web"},
		Selector: labels.SelectorFromSet(labels.Set{"app": "web"})},
		[]*providers.Binding{{Key: key("web", 80), Mode: providers.ReadyWhenHealthy, Spec: spec("other")}})
	if v := Evaluate(webPod, r); v.Known {
		t.Errorf("health of the previous group still counts: %v", v)
	}
	// A reconcile that started before the change reports late.
	r.SetHealth(key("web", 80), before, &targets.BindingHealth{Group: "targetgroup/web/1", Serving: true,
		Pods: map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")}})
	if v := Evaluate(webPod, r); v.Known {
		t.Errorf("an observation of the earlier binding was stored: %v", v)
	}
}

// A problem whose port stays bound (last good binding kept, or a port
// named twice) does not hold gates; one that leaves a port unbound does.
func TestEvaluateKeptProblemsDoNotHoldTheGate(t *testing.T) {
	r := targets.NewRegistry()
	r.SetService(&targets.ServiceEntry{Name: types.NamespacedName{Namespace: "ns", Name: "web"},
		Selector: labels.SelectorFromSet(labels.Set{"app": "web"}),
		Problems: []targets.Problem{{Field: `podlb.io/aws-target-groups`, Message: "malformed JSON", Provider: "aws", Kept: true}}},
		[]*providers.Binding{{Key: key("web", 80), Mode: providers.ReadyWhenHealthy, Spec: spec("g")}})
	observe(r, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	v := Evaluate(webPod, r)
	if v.Status != corev1.ConditionTrue || !strings.Contains(v.Message, "last good bindings are in force") {
		t.Errorf("kept binding healthy: %v", v)
	}
}

// A target the cloud refused holds the pod with the cloud's reason.
func TestEvaluateRejectedTarget(t *testing.T) {
	r := registry(providers.ReadyWhenHealthy, 80)
	rej := target(providers.Pending, "refused", "InvalidTarget: not in the VPC")
	rej.Rejected = true
	observe(r, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": rej})
	v := Evaluate(webPod, r)
	if v.Status != corev1.ConditionFalse || v.Reason != ReasonRejected || !strings.Contains(v.Message, "not in the VPC") {
		t.Errorf("got %v", v)
	}
}
