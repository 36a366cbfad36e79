package e2eutil

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
)

// FastTiming is the controller timing of end-to-end suites: fast polls and
// short backoff so scenarios take seconds.
var FastTiming = targets.Timing{Poll: 250 * time.Millisecond, Resync: time.Minute, Coalesce: 200 * time.Millisecond, MaxBackoff: 5 * time.Second}

// Restartable is a suite's controller, which tests may stop and start
// again as a new process would be.
type Restartable struct {
	cfg     *rest.Config
	options func() (controller.Options, error)

	mu  sync.Mutex
	ctl *Controller
}

// NewRestartable prepares a controller whose options are built anew on
// every start (fresh providers: nothing survives but the cluster and the
// cloud).
func NewRestartable(cfg *rest.Config, options func() (controller.Options, error)) *Restartable {
	return &Restartable{cfg: cfg, options: options}
}

// Start runs the controller.
func (r *Restartable) Start() error {
	o, err := r.options()
	if err != nil {
		return err
	}
	ctl, err := StartController(r.cfg, o)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.ctl = ctl
	r.mu.Unlock()
	return nil
}

// Stop ends the controller.
func (r *Restartable) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctl == nil {
		return nil
	}
	err := r.ctl.Stop()
	r.ctl = nil
	return err
}

// Kube is the Kubernetes side of end-to-end scenarios, failing the test on
// API errors so scenarios read as what they check.
type Kube struct {
	Client kubernetes.Interface
}

var ctx = context.Background()

// WebService is a Service app=<name> with port 80 "http" -> 8080, the port
// the node simulator's backends serve.
func WebService(ns, name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// RollingDeployment rolls two pods at a time and never goes below the
// replica count; old pods serve 2 s after termination starts. gated adds
// podlb's readiness gate.
func RollingDeployment(ns, name string, replicas int32, gated bool) *appsv1.Deployment {
	surge, unavailable := intstr.FromInt32(2), intstr.FromInt32(0)
	o := cluster.DeploymentOptions{
		Replicas: replicas, PreStopSleep: 2 * time.Second, TerminationGracePeriod: 10 * time.Second,
		MaxSurge: &surge, MaxUnavailable: &unavailable,
	}
	if gated {
		o.Gates = []string{string(targets.GateConditionType)}
	}
	return cluster.NewDeployment(ns, name, o)
}

// Create creates Services, Deployments, Ingresses and IngressClasses.
func (k Kube) Create(t testing.TB, objs ...any) {
	t.Helper()
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.Service:
			_, err = k.Client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = k.Client.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *networkingv1.Ingress:
			_, err = k.Client.NetworkingV1().Ingresses(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *networkingv1.IngressClass:
			_, err = k.Client.NetworkingV1().IngressClasses().Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("cannot create %T", obj)
		}
		if err != nil {
			t.Fatalf("create: %v", err)
		}
	}
}

// Pods lists the pods labelled app=<app>.
func (k Kube) Pods(t testing.TB, ns, app string) []corev1.Pod {
	t.Helper()
	list, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// LivePods are the pods labelled app=<app> not being deleted.
func (k Kube) LivePods(t testing.TB, ns, app string) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	for _, p := range k.Pods(t, ns, app) {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// WaitRollout waits until a Deployment's rollout is complete and all its
// replicas are available.
func (k Kube) WaitRollout(t testing.TB, ns, name string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, "rollout of "+name, func() error {
		d, err := k.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.Replicas != want || s.AvailableReplicas != want {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

// Restart triggers a rolling update, as a new image would.
func (k Kube) Restart(t testing.TB, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"podlb.io/test-restart":"%d"}}}}}`, time.Now().UnixNano())
	if _, err := k.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Scale sets a Deployment's replicas.
func (k Kube) Scale(t testing.TB, ns, name string, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := k.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Annotate sets (or, with value "", removes) a Service annotation.
func (k Kube) Annotate(t testing.TB, ns, name, key, value string) {
	t.Helper()
	v := "null"
	if value != "" {
		b, _ := json.Marshal(value)
		v = string(b)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v)
	if _, err := k.Client.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Status is a Service's podlb.io/status, nil while there is none.
func (k Kube) Status(t testing.TB, ns, name string) *targets.Status {
	t.Helper()
	svc, err := k.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := targets.StatusOf(svc)
	if err != nil {
		return nil
	}
	return st
}

// StatusJSON is Status as JSON, for messages and substring checks.
func (k Kube) StatusJSON(t testing.TB, ns, name string) string {
	t.Helper()
	b, _ := json.Marshal(k.Status(t, ns, name))
	return string(b)
}

// Warnings lists "Reason: message" of a Service's Warning Events that
// contain substr.
func (k Kube) Warnings(t testing.TB, ns, svc, substr string) []string {
	t.Helper()
	evs, err := Events(ctx, k.Client, ns, svc, "Service")
	if err != nil {
		t.Fatal(err)
	}
	return WarningsContaining(evs, substr)
}

// podlbComponent is the source of podlb's Events.
const podlbComponent = "podlb"

// AllWarnings lists podlb's Warning Events of a Service.
func (k Kube) AllWarnings(t testing.TB, ns, svc string) []corev1.Event {
	t.Helper()
	return k.AllWarningsOf(t, ns, svc, "Service")
}

// AllWarningsOf lists podlb's Warning Events of an object of kind. The
// control plane's own (the Service IP allocator's repair loop warns of a
// ClusterIP it has not recorded yet when it races a Service's creation)
// say nothing about podlb.
func (k Kube) AllWarningsOf(t testing.TB, ns, name, kind string) []corev1.Event {
	t.Helper()
	evs, err := Events(ctx, k.Client, ns, name, kind)
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range evs {
		if e.Type == corev1.EventTypeWarning && (e.Source.Component == podlbComponent || e.ReportingController == podlbComponent) {
			out = append(out, e)
		}
	}
	return out
}

// WarningsByReason counts podlb's Warning Events of a Service by reason,
// repeats included.
func (k Kube) WarningsByReason(t testing.TB, ns, svc string) map[string]int32 {
	t.Helper()
	out := map[string]int32{}
	for _, e := range k.AllWarnings(t, ns, svc) {
		out[e.Reason] += max(e.Count, 1)
	}
	return out
}

// CheckRolloutSafetyWarnings checks the Warnings of Services whose pods
// were created and rolled: one PodsWithoutGate where the pods lack the
// gate (ungated[svc]), none elsewhere, at most one
// TerminationShorterThanDrain, and no TargetsDeregisteredLate (the old
// pods serve 10 s after termination starts). Pods coming and going
// change the counts and examples in those messages, not the problems.
func (k Kube) CheckRolloutSafetyWarnings(t testing.TB, ns string, ungated map[string]bool) {
	t.Helper()
	for svc, noGate := range ungated {
		byReason := k.WarningsByReason(t, ns, svc)
		want := int32(0)
		if noGate {
			want = 1
		}
		if byReason["PodsWithoutGate"] != want || byReason["TerminationShorterThanDrain"] > 1 || byReason["TargetsDeregisteredLate"] != 0 {
			t.Errorf("Service %s: Warnings by reason %v through its rollout; want %d PodsWithoutGate, at most one TerminationShorterThanDrain and no TargetsDeregisteredLate", svc, byReason, want)
		}
	}
}

// Released reports why podlb has not let go of a Service yet: its
// finalizer, its status annotation, or a ledger ConfigMap for it in
// podlb's namespace; nil once all are gone.
func (k Kube) Released(ns, name string) error {
	svc, err := k.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(svc.Finalizers) != 0 || svc.Annotations[targets.AnnotationStatus] != "" {
		return fmt.Errorf("finalizers %v, status %q", svc.Finalizers, svc.Annotations[targets.AnnotationStatus])
	}
	cms, err := k.Client.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, cm := range cms.Items {
		if cm.Annotations["podlb.io/namespace"] == ns && cm.Annotations["podlb.io/service"] == name {
			return fmt.Errorf("ledger %s left", cm.Name)
		}
	}
	return nil
}

// BadInput is a Service whose annotation has a problem, and the text the
// Warning and status must contain.
type BadInput struct {
	Service, Want string
}

// ExpectProblemsNamed checks that every bad Service gets a Warning and a
// status naming its problem, that its gated pods are held, and that no
// Warning repeats (a persistent problem is one Event, not a retry storm).
func (k Kube) ExpectProblemsNamed(t *testing.T, ns string, cases []BadInput) {
	t.Helper()
	for _, tc := range cases {
		Eventually(t, 60*time.Second, tc.Service+": Warning, status and gate name the problem", func() error {
			if ws := k.Warnings(t, ns, tc.Service, tc.Want); len(ws) == 0 {
				return fmt.Errorf("no Warning containing %q; have %v", tc.Want, k.AllWarnings(t, ns, tc.Service))
			}
			if s := k.StatusJSON(t, ns, tc.Service); !strings.Contains(s, strings.ReplaceAll(tc.Want, `"`, `\"`)) {
				return fmt.Errorf("status %s does not contain %q", s, tc.Want)
			}
			for _, p := range k.LivePods(t, ns, tc.Service) {
				if g := GateOf(&p); g == nil || g.Status != corev1.ConditionFalse {
					return fmt.Errorf("pod %s gate %+v", p.Name, g)
				}
			}
			return nil
		})
	}
	time.Sleep(5 * time.Second)
	for _, tc := range cases {
		ws := k.AllWarnings(t, ns, tc.Service)
		if len(ws) > 2 {
			t.Errorf("%s: %d different Warnings for one problem", tc.Service, len(ws))
		}
		for _, w := range ws {
			if w.Count > 2 {
				t.Errorf("%s: Warning repeated %d times: %s", tc.Service, w.Count, w.Message)
			}
		}
	}
}

// WaitOtherNamespacesGone waits until the namespaces of earlier tests are
// deleted, so that what an emulator counts next is the current test's
// doing.
func (k Kube) WaitOtherNamespacesGone(t testing.TB, ns string) {
	t.Helper()
	Eventually(t, 2*time.Minute, "earlier tests' namespaces deleted", func() error {
		list, err := k.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range list.Items {
			if n.Name != ns && n.DeletionTimestamp != nil {
				return fmt.Errorf("namespace %s is being deleted", n.Name)
			}
		}
		return nil
	})
}

// DeleteWithoutFinalizer deletes a Service after taking its finalizers off
// by hand, as someone would whose Service hangs in deletion, and waits
// until it is gone.
func (k Kube) DeleteWithoutFinalizer(t testing.TB, ns, name string) {
	t.Helper()
	svcs := k.Client.CoreV1().Services(ns)
	if _, err := svcs.Patch(ctx, name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := svcs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, name+" gone", func() error {
		if _, err := svcs.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
}
