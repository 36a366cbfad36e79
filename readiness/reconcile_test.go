package readiness

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

func gatedWebPod() *corev1.Pod {
	p := webPod.DeepCopy()
	p.Spec.NodeName = "node-1"
	p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: targets.GateConditionType}}
	return p
}

// indexedClientBuilder is a fake client with the Service index the gate
// finds selecting Services through.
func indexedClientBuilder() *fake.ClientBuilder {
	return fake.NewClientBuilder().WithIndex(&corev1.Service{}, ServiceSelectorIndex, ServiceSelectorPair)
}

// listedUnder finds Services under a pair through the fake client's index.
func listedUnder(c client.Reader) ServicesUnder {
	return func(ctx context.Context, namespace, pair string) ([]*corev1.Service, error) {
		var list corev1.ServiceList
		if err := c.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{ServiceSelectorIndex: pair}); err != nil {
			return nil, err
		}
		out := make([]*corev1.Service, len(list.Items))
		for i := range list.Items {
			out[i] = &list.Items[i]
		}
		return out, nil
	}
}

// The index finds exactly the Services whose selector selects the pod,
// whichever of their pairs comes first, and no Service of another
// namespace, without a selector, or wanting a label the pod lacks or has
// with another value.
func TestServicesSelectingThroughTheIndex(t *testing.T) {
	svc := func(ns, name string, selector map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: selector}}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p",
		Labels: map[string]string{"app": "web", "tier": "front", "zz": "last", "empty": ""}}}
	idx := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, ServiceSelectorIndexers())
	for _, s := range []*corev1.Service{
		svc("ns", "by-app", map[string]string{"app": "web"}),
		svc("ns", "by-all", map[string]string{"app": "web", "tier": "front", "zz": "last"}),
		svc("ns", "by-last", map[string]string{"zz": "last"}),
		svc("ns", "by-empty-value", map[string]string{"empty": ""}),
		svc("ns", "wants-more", map[string]string{"app": "web", "version": "v2"}),
		svc("ns", "other-value", map[string]string{"app": "api"}),
		svc("ns", "absent-label", map[string]string{"absent": ""}),
		svc("ns", "no-selector", nil),
		svc("other", "by-app", map[string]string{"app": "web"}),
	} {
		if err := idx.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	r := &GateReconciler{Services: IndexedServices(idx)}
	got, err := r.servicesSelecting(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Namespace+"/"+s.Name)
	}
	want := []string{"ns/by-all", "ns/by-app", "ns/by-empty-value", "ns/by-last"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("selecting Services %v, want %v", names, want)
	}
}

func annotatedService(name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: annotations},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}},
	}
}

func gateAfter(t *testing.T, r *GateReconciler) (*corev1.PodCondition, reconcile.Result) {
	t.Helper()
	res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "web-1"}})
	if err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := r.Client.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "web-1"}, &p); err != nil {
		t.Fatal(err)
	}
	return targets.PodCondition(&p, targets.GateConditionType), res
}

// While an annotated Service that selects the pod is not yet in the
// registry (podlb just started, or the Service was just created), the gate
// is left alone, however healthy the pod is in the Services already known.
func TestGateWaitsForEveryAnnotatedServiceSelectingThePod(t *testing.T) {
	reg := registry(providers.ReadyWhenHealthy, 80) // Service "web", known and healthy
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	c := indexedClientBuilder().WithObjects(gatedWebPod(),
		annotatedService("web", map[string]string{"podlb.io/aws-target-groups": "{}"}),
		annotatedService("other", map[string]string{"podlb.io/aws-target-groups": "{}"})).
		WithStatusSubresource(&corev1.Pod{}).Build()
	r := &GateReconciler{Client: c, Registry: reg, Services: listedUnder(c), Annotations: []string{"podlb.io/aws-target-groups"}}
	g, res := gateAfter(t, r)
	if g != nil || res.RequeueAfter == 0 {
		t.Fatalf("gate written (%+v) or not looked at again (%v) while Service other is unknown", g, res)
	}
	// Once the other Service is known and healthy too, the gate opens.
	reg.SetService(&targets.ServiceEntry{Name: types.NamespacedName{Namespace: "ns", Name: "other"},
		Selector: labels.SelectorFromSet(labels.Set{"app": "web"})}, []*providers.Binding{{Key: key("other", 80), Mode: providers.ReadyWhenHealthy, Spec: spec("g")}})
	observe(reg, key("other", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if g, _ := gateAfter(t, r); g == nil || g.Status != corev1.ConditionTrue {
		t.Fatalf("gate %+v once every selecting Service is known and healthy", g)
	}
}

// A Service that binds the pod only on a cloud this controller does not
// serve holds the gate, unless the controller is told another one serves
// it.
func TestGateHeldForAnUnservedCloud(t *testing.T) {
	for _, ignore := range []bool{false, true} {
		reg := targets.NewRegistry()
		c := indexedClientBuilder().WithObjects(gatedWebPod(), annotatedService("elsewhere", map[string]string{"podlb.io/gcp-negs": "{}"})).
			WithStatusSubresource(&corev1.Pod{}).Build()
		r := &GateReconciler{Client: c, Registry: reg, Services: listedUnder(c), Annotations: []string{"podlb.io/aws-target-groups"}, IgnoreUnservedClouds: ignore}
		g, _ := gateAfter(t, r)
		switch {
		case g == nil:
			t.Errorf("ignore=%v: no gate written", ignore)
		case !ignore && (g.Status != corev1.ConditionFalse || g.Reason != ReasonCloudNotServed):
			t.Errorf("gate %s %s %q, want False %s", g.Status, g.Reason, g.Message, ReasonCloudNotServed)
		case ignore && (g.Status != corev1.ConditionTrue || g.Reason != ReasonNotSelected):
			t.Errorf("with --gate-ignores-unserved-clouds: gate %s %s, want True %s", g.Status, g.Reason, ReasonNotSelected)
		}
	}
}

// A Service without podlb annotations of its own that an Ingress podlb
// serves routes to: until the Ingress's balancer has settled the
// Ingress's current generation, its pods' gates are left alone; then
// they follow the balancer's bindings.
func TestGateWaitsForTheBalancerOfAnIngressBackend(t *testing.T) {
	reg := targets.NewRegistry()
	class := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "podlb"}, Spec: networkingv1.IngressClassSpec{Controller: loadbalancers.IngressController}}
	className := "podlb"
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "front", Generation: 3},
		Spec: networkingv1.IngressSpec{IngressClassName: &className, DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}
	c := indexedClientBuilder().WithObjects(gatedWebPod(), annotatedService("web", nil), class, ing).
		WithStatusSubresource(&corev1.Pod{}).Build()
	r := &GateReconciler{Client: c, Registry: reg, Services: listedUnder(c), Ingresses: c, Annotations: []string{"podlb.io/aws-target-groups"}}
	if g, res := gateAfter(t, r); g != nil || res.RequeueAfter == 0 {
		t.Fatalf("gate written (%+v) or not looked at again (%v) before the Ingress's balancer settled", g, res)
	}
	via := key("web", 80)
	via.Balancer = "ns/front"
	web := types.NamespacedName{Namespace: "ns", Name: "web"}
	reg.SetBalancerBindings("ns/front", map[types.NamespacedName][]*providers.Binding{web: {{Key: via, Mode: providers.ReadyWhenHealthy, Spec: spec("alb")}}},
		map[types.NamespacedName]labels.Selector{web: labels.SelectorFromSet(labels.Set{"app": "web"})})
	observe(reg, via, true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	reg.SetIngressSettled(types.NamespacedName{Namespace: "ns", Name: "front"}, targets.IngressSettled{Generation: 2, Services: []string{"web"}})
	if g, res := gateAfter(t, r); g != nil || res.RequeueAfter == 0 {
		t.Fatalf("gate written (%+v) for an earlier generation of the Ingress (%v)", g, res)
	}
	reg.SetIngressSettled(types.NamespacedName{Namespace: "ns", Name: "front"}, targets.IngressSettled{Generation: 3, Services: []string{"web"}})
	observe(reg, via, true, map[types.UID]targets.PodTarget{"u1": target(providers.Pending, "initial", "Elb.InitialHealthChecking")})
	if g, _ := gateAfter(t, r); g == nil || g.Status != corev1.ConditionFalse || g.Reason != ReasonPending {
		t.Fatalf("gate %+v while the pod is pending behind the balancer", g)
	}
	observe(reg, via, true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if g, _ := gateAfter(t, r); g == nil || g.Status != corev1.ConditionTrue {
		t.Fatalf("gate %+v once healthy behind the balancer", g)
	}
}

// After a start every binding is queued at once; a pod held only by the
// gate asks for the bindings it waits on, not yet observed, to go first.
// A pod whose containers are not ready yet asks for nothing.
func TestGateHurriesTheUnobservedBindingsAWaitingPodNeeds(t *testing.T) {
	reg := registry(providers.ReadyWhenHealthy, 80)
	for _, ready := range []bool{true, false} {
		pod := gatedWebPod()
		if ready {
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}}
		}
		c := indexedClientBuilder().WithObjects(pod, annotatedService("web", map[string]string{"podlb.io/aws-target-groups": "{}"})).
			WithStatusSubresource(&corev1.Pod{}).Build()
		var hurried []providers.BindingKey
		r := &GateReconciler{Client: c, Registry: reg, Services: listedUnder(c), Annotations: []string{"podlb.io/aws-target-groups"},
			Hurry: func(keys []providers.BindingKey) { hurried = append(hurried, keys...) }}
		if g, _ := gateAfter(t, r); g != nil {
			t.Fatalf("gate written (%+v) while a binding is unobserved", g)
		}
		switch {
		case ready && (len(hurried) != 1 || hurried[0] != key("web", 80)):
			t.Errorf("a pod held only by the gate hurried %v, want the unobserved %v", hurried, key("web", 80))
		case !ready && len(hurried) != 0:
			t.Errorf("a pod whose containers are not ready hurried %v", hurried)
		}
	}
}

// A False gate whose reason stays the same gets a new message at most
// every falseMessageEvery (the reconcile comes back for it); a new reason
// and the gate opening are written at once.
func TestGateRewritesAFalseMessageOnlyNowAndThen(t *testing.T) {
	reg := registry(providers.ReadyWhenHealthy, 80)
	c := indexedClientBuilder().WithObjects(gatedWebPod(), annotatedService("web", map[string]string{"podlb.io/aws-target-groups": "{}"})).
		WithStatusSubresource(&corev1.Pod{}).Build()
	r := &GateReconciler{Client: c, Registry: reg, Services: listedUnder(c), Annotations: []string{"podlb.io/aws-target-groups"}}
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Pending, "initial", "Elb.RegistrationInProgress")})
	first, _ := gateAfter(t, r)
	if first == nil || first.Reason != ReasonPending || !strings.Contains(first.Message, "RegistrationInProgress") {
		t.Fatalf("gate %+v, want pending while registering", first)
	}
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Pending, "initial", "Elb.InitialHealthChecking")})
	g, res := gateAfter(t, r)
	if g.Message != first.Message {
		t.Errorf("the message was rewritten at once: %q", g.Message)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > falseMessageEvery {
		t.Errorf("not looked at again for the new message: %v", res)
	}
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Unhealthy, "unhealthy", "Target.FailedHealthChecks")})
	if g, _ := gateAfter(t, r); g.Reason != ReasonUnhealthy {
		t.Errorf("a new reason was not written at once: %+v", g)
	}
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if g, _ := gateAfter(t, r); g.Status != corev1.ConditionTrue {
		t.Errorf("the gate did not open at once: %+v", g)
	}
}

// False gates go through their own client, admitted by their own budget
// without waiting: once it is spent they are put off (and looked at
// again), while the write that opens the gate goes through the gate's
// client regardless.
func TestFalseGatesGiveWayWhenTheirBudgetIsSpent(t *testing.T) {
	reg := registry(providers.ReadyWhenHealthy, 80)
	c := indexedClientBuilder().WithObjects(gatedWebPod(), annotatedService("web", map[string]string{"podlb.io/aws-target-groups": "{}"})).
		WithStatusSubresource(&corev1.Pod{}).Build()
	noteWrites := 0
	notes := interceptor.NewClient(c, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		noteWrites++
		return cl.SubResource(sub).Patch(ctx, obj, patch, opts...)
	}})
	r := &GateReconciler{Client: c, Registry: reg, Services: listedUnder(c), Annotations: []string{"podlb.io/aws-target-groups"},
		Notes: notes, NoteBudget: rate.NewLimiter(0, 1)}
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Pending, "initial", "Elb.RegistrationInProgress")})
	if g, _ := gateAfter(t, r); g == nil || g.Reason != ReasonPending || noteWrites != 1 {
		t.Fatalf("gate %+v after %d writes through the notes client, want pending written through it", g, noteWrites)
	}
	// A new reason would be written at once, but the budget is spent.
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Unhealthy, "unhealthy", "Target.FailedHealthChecks")})
	g, res := gateAfter(t, r)
	if g.Reason != ReasonPending || noteWrites != 1 {
		t.Errorf("gate %+v after %d note writes: a False gate was written beyond its budget", g, noteWrites)
	}
	if res.RequeueAfter <= 0 {
		t.Errorf("a put-off False gate is not looked at again: %v", res)
	}
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	if g, _ := gateAfter(t, r); g.Status != corev1.ConditionTrue || noteWrites != 1 {
		t.Errorf("gate %+v after %d note writes, want True written through the gate's client", g, noteWrites)
	}
}

// The gate is written True once: while the cache still shows the pod as
// it was before the write, the reconciler's own note of the write keeps
// it from writing again; once the cache shows the gate, the note goes (a
// note for every gated pod of a fleet was megabytes at rest), and a pod
// recreated under the name is judged as the new pod it is.
func TestTheGatesOwnNoteLastsUntilTheCacheShowsTheGate(t *testing.T) {
	reg := registry(providers.ReadyWhenHealthy, 80)
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u1": target(providers.Healthy, "healthy", "")})
	c := indexedClientBuilder().WithObjects(gatedWebPod(), annotatedService("web", map[string]string{"podlb.io/aws-target-groups": "{}"})).
		WithStatusSubresource(&corev1.Pod{}).Build()
	var stale *corev1.Pod // what a cache behind the write holds, when set
	writes := 0
	cached := interceptor.NewClient(c, interceptor.Funcs{
		Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if p, ok := obj.(*corev1.Pod); ok && stale != nil {
				stale.DeepCopyInto(p)
				return nil
			}
			return cl.Get(ctx, key, obj, opts...)
		},
		SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			writes++
			return cl.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
	})
	r := &GateReconciler{Client: cached, Registry: reg, Services: listedUnder(c), Annotations: []string{"podlb.io/aws-target-groups"}}
	notes := func() (n int) {
		r.latched.Range(func(any, any) bool { n++; return true })
		return n
	}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "web-1"}}
	reconcileOnce := func() {
		t.Helper()
		if _, err := r.Reconcile(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}

	stale = gatedWebPod()
	if err := c.Get(context.Background(), req.NamespacedName, stale); err != nil {
		t.Fatal(err)
	}
	reconcileOnce()
	if writes != 1 || notes() != 1 {
		t.Fatalf("%d gate writes and %d notes after the healthy pod's reconcile, want 1 and 1", writes, notes())
	}
	reconcileOnce()
	if writes != 1 || notes() != 1 {
		t.Fatalf("%d gate writes and %d notes with the cache behind the write, want 1 and 1", writes, notes())
	}
	stale = nil
	reconcileOnce()
	if writes != 1 || notes() != 0 {
		t.Fatalf("%d gate writes and %d notes once the cache shows the gate, want 1 and 0", writes, notes())
	}

	// A note of an earlier pod of that name does not hold the new one.
	var p corev1.Pod
	if err := c.Get(context.Background(), req.NamespacedName, &p); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	recreated := gatedWebPod()
	recreated.UID = "u2"
	if err := c.Create(context.Background(), recreated); err != nil {
		t.Fatal(err)
	}
	r.latched.Store(req.NamespacedName, types.UID("u1"))
	observe(reg, key("web", 80), true, map[types.UID]targets.PodTarget{"u2": target(providers.Healthy, "healthy", "")})
	reconcileOnce()
	if g, _ := gateAfter(t, r); g == nil || g.Status != corev1.ConditionTrue || writes != 2 {
		t.Errorf("the recreated pod's gate %+v after %d writes, want True written", g, writes)
	}
}
