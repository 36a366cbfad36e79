package kubectlplugin

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/podlb/podlb/targets"
)

// The Service checks on fixed objects: a Service stuck in deletion behind
// podlb's finalizer, pods that stop before the drain time a Warning
// reported, and a Service without podlb annotations, which check ignores.
func TestCheckServicesFindsStuckFinalizerAndShortTermination(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	annotated := map[string]string{"podlb.io/aws-target-groups": `{"http": {"name": "web"}}`}
	svc := func(name string, mutate func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: annotated},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}}}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	pod := func(name, app string, preStop int64) *corev1.Pod {
		grace := int64(30)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
				ReadinessGates: []corev1.PodReadinessGate{{ConditionType: targets.GateConditionType}},
				Containers:     []corev1.Container{{Name: "web"}}}}
		if preStop > 0 {
			p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: preStop}}}
		}
		return p
	}
	deleted := metav1.NewTime(now.Add(-5 * time.Minute))
	objs := []runtime.Object{
		svc("web", nil),
		pod("web-1", "web", 5), pod("web-2", "web", 0), pod("web-3", "web", 12),
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web.1"}, Type: corev1.EventTypeWarning,
			InvolvedObject: corev1.ObjectReference{Kind: "Service", Name: "web"}, Reason: "TerminationShorterThanDrain",
			Message: "aws port 80: 2 pods (e.g. web-1) stop serving 5s after termination starts, but targetgroup/web/1 drains for 10s: give them ..."},
		svc("gone", func(s *corev1.Service) {
			s.DeletionTimestamp, s.Finalizers = &deleted, []string{targets.Finalizer}
		}),
		svc("plain", func(s *corev1.Service) { s.Annotations = nil }),
		pod("plain-1", "plain", 0),
	}
	e := &env{client: fake.NewClientset(objs...), namespace: "shop", now: now}
	var fs findings
	if err := e.checkServices(context.Background(), checkOptions{}, &fs); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.level+" | "+f.subject+" | "+f.detail)
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"PROBLEM | service shop/gone | deleted 5m ago, held by finalizer podlb.io/cleanup",
		"PROBLEM | service shop/web | 2 of 3 pods stop serving before the group's 10s drain ends: web-1 (5s), web-2 (0s);",
		"ok | service shop/web | 3 of 3 pods list readinessGates",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "plain") || fs.problems() != 2 {
		t.Errorf("%d problems (want 2), the unannotated Service must be left out:\n%s", fs.problems(), all)
	}
}
