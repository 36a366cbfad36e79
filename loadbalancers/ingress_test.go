package loadbalancers

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// fakeCloud records what the reconciler asks of a cloud. Only the calls
// the Ingress reconciler makes are implemented.
type fakeCloud struct {
	ensured  []*providers.HTTPBalancer
	deleted  []providers.BalancerKey
	released []providers.BindingKey
	// deleteBusy makes DeleteHTTP answer Transient this many times.
	deleteBusy int
	// deleteKept is what DeleteHTTP keeps for resources podlb did not
	// create, every time.
	deleteKept []string
}

type fakeBackendSpec string

func (s fakeBackendSpec) Summary() string { return string(s) }

func (c *fakeCloud) Name() string          { return "aws" }
func (c *fakeCloud) AnnotationKey() string { return "podlb.io/aws-target-groups" }
func (c *fakeCloud) ParseSpec(json.RawMessage) (providers.Spec, error) {
	return nil, errors.New("not used")
}
func (c *fakeCloud) Ensure(context.Context, *providers.Binding) (*providers.Group, error) {
	return nil, errors.New("not used")
}
func (c *fakeCloud) Observe(context.Context, *providers.Group) ([]providers.Observed, error) {
	return nil, errors.New("not used")
}
func (c *fakeCloud) Apply(context.Context, *providers.Group, providers.Plan) error {
	return errors.New("not used")
}
func (c *fakeCloud) Release(_ context.Context, k providers.BindingKey, _ string, _ []providers.TargetKey) error {
	c.released = append(c.released, k)
	return nil
}

func (c *fakeCloud) ParseBalancerSpec(raw string) (any, error) {
	var v struct {
		Scheme string `json:"scheme"`
		Group  string `json:"group"`
	}
	if strings.TrimSpace(raw) != "" {
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return nil, providers.Errorf(providers.Invalid, "", "%v", err)
		}
	}
	if v.Scheme == "public" {
		return nil, providers.Errorf(providers.Invalid, "scheme", "must be internet-facing or internal")
	}
	return v.Scheme, nil
}

func (c *fakeCloud) EnsureHTTP(_ context.Context, lb *providers.HTTPBalancer) (*providers.BalancerStatus, map[string]providers.Spec, error) {
	c.ensured = append(c.ensured, lb)
	specs := map[string]providers.Spec{}
	for id := range lb.Backends {
		specs[id] = fakeBackendSpec("tg-" + id)
	}
	return &providers.BalancerStatus{Hostname: "lb-" + strings.ReplaceAll(lb.Key.String(), "/", "-") + ".elb.example"}, specs, nil
}

func (c *fakeCloud) DeleteHTTP(_ context.Context, _ string, key providers.BalancerKey) error {
	if c.deleteBusy > 0 {
		c.deleteBusy--
		return providers.Errorf(providers.Transient, "", "target groups still in use")
	}
	c.deleted = append(c.deleted, key)
	return providers.Kept(c.deleteKept)
}

func backendService(name string, selector map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Spec: corev1.ServiceSpec{Selector: selector, Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
}

func probedPod(name, app, path string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8080)}}}}}}}
}

// reconcilerFixture is what the reconciler tests share: a fake API
// server, the registry, the Events, and the reconciler under test.
type reconcilerFixture struct {
	c          client.Client
	reg        *targets.Registry
	rec        *record.FakeRecorder
	ledger     *targets.Ledger
	reconciler reconcile.Reconciler
}

// testTiming resyncs later than any test runs: every cloud call is one a
// change asked for.
var testTiming = targets.Timing{Resync: 600e9, MaxBackoff: 60e9, Poll: 1e9}

// newReconcilerFixture serves objs; status is the kind whose status is a
// subresource.
func newReconcilerFixture(status client.Object, objs ...client.Object) reconcilerFixture {
	c := fake.NewClientBuilder().WithObjects(objs...).WithStatusSubresource(status).Build()
	return reconcilerFixture{c: c, reg: targets.NewRegistry(), rec: record.NewFakeRecorder(100), ledger: targets.NewLedger(c, c, "podlb-system")}
}

// reconcile asks for the object shop/name.
func (f *reconcilerFixture) reconcile(t *testing.T, name string) reconcile.Result {
	t.Helper()
	res, err := f.reconciler.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: name}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// events takes the Events recorded since the last call.
func (f *reconcilerFixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

type ingressFixture struct {
	reconcilerFixture
	cloud *fakeCloud
	r     *IngressReconciler
}

func newIngressFixture(t *testing.T, objs ...client.Object) *ingressFixture {
	t.Helper()
	class := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "podlb"}, Spec: networkingv1.IngressClassSpec{Controller: IngressController}}
	objs = append(objs, class, backendService("web", map[string]string{"app": "web"}), backendService("api", map[string]string{"app": "api"}),
		probedPod("web-1", "web", "/healthz"), probedPod("api-1", "api", "/ready"))
	f := &ingressFixture{reconcilerFixture: newReconcilerFixture(&networkingv1.Ingress{}, objs...), cloud: &fakeCloud{}}
	f.r = &IngressReconciler{Client: f.c, Reader: f.c, Registry: f.reg, Ledger: f.ledger,
		Clouds: HTTPClouds([]providers.Provider{f.cloud}), Cluster: "c1", Recorder: f.rec, Timing: testTiming,
		EnqueueBinding: func(providers.BindingKey) {}}
	f.reconciler = f.r
	return f
}

func (f *ingressFixture) ingress(t *testing.T, name string) *networkingv1.Ingress {
	t.Helper()
	var ing networkingv1.Ingress
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: name}, &ing); err != nil {
		t.Fatal(err)
	}
	return &ing
}

func shopFront(mods ...ingressMod) *networkingv1.Ingress {
	base := []ingressMod{className("podlb"),
		rule("shop.example.com", path("/api", prefix, "api", 80), path("/", prefix, "web", "http")),
		rule("admin.example.com", path("/", prefix, "api", 80))}
	return ingress("shop", "front", append(base, mods...)...)
}

func TestIngressBecomesALoadBalancerWithGatedBindings(t *testing.T) {
	f := newIngressFixture(t, shopFront())
	f.reconcile(t, "front")
	if len(f.cloud.ensured) != 1 {
		t.Fatalf("EnsureHTTP called %d times", len(f.cloud.ensured))
	}
	lb := f.cloud.ensured[0]
	var routes []string
	for _, r := range lb.Routes {
		routes = append(routes, r.Host+r.Path+">"+r.Backend)
	}
	want := []string{"admin.example.com/>shop/api:80", "shop.example.com/api>shop/api:80", "shop.example.com/>shop/web:80"}
	if !slices.Equal(routes, want) {
		t.Errorf("routes %v, want %v", routes, want)
	}
	if lb.Key != (providers.BalancerKey{Namespace: "shop", Name: "front"}) {
		t.Errorf("balancer key %v", lb.Key)
	}
	if be := lb.Backends["shop/web:80"]; be.PortName != "http" || be.HealthCheckPath != "/healthz" {
		t.Errorf("web backend %+v, want port name http and the readiness probe's path", be)
	}
	entry := f.reg.Service(types.NamespacedName{Namespace: "shop", Name: "web"})
	via := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80, Balancer: "shop/front"}
	if entry == nil || !slices.Equal(entry.Bindings, []providers.BindingKey{via}) || entry.Selector == nil {
		t.Fatalf("web's entry %+v, want the balancer's binding with the Service's selector", entry)
	}
	if b := f.reg.Binding(via); b.Mode != providers.ReadyWhenHealthy || b.TargetPort != 8080 || b.Spec.Summary() != "tg-shop/web:80" {
		t.Errorf("binding %+v", b)
	}
	ing := f.ingress(t, "front")
	if !slices.Contains(ing.Finalizers, IngressFinalizer) {
		t.Error("no finalizer: deleting the Ingress would leave the load balancer behind")
	}
	if got := ing.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].Hostname != "lb-shop-front.elb.example" {
		t.Errorf("status.loadBalancer.ingress %+v", got)
	}
	st, err := IngressStatusOf(ing)
	if err != nil || st.Balancer != "shop/front" || st.Clouds["aws"] == nil || st.Clouds["aws"].Backends["shop/api:80"] == nil {
		t.Errorf("status annotation %+v %v", st, err)
	}
	if !f.reg.IngressSettledFor(types.NamespacedName{Namespace: "shop", Name: "front"}, ing.Generation, "api") {
		t.Error("the gate would wait forever: the Ingress is not settled")
	}
	if evs := f.events(); !slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, "Normal LoadBalancerProvisioned") }) {
		t.Errorf("events %v, want LoadBalancerProvisioned", evs)
	}
	// A pass that changes nothing costs no cloud call.
	f.reconcile(t, "front")
	if len(f.cloud.ensured) != 1 {
		t.Errorf("an unchanged load balancer was ensured again")
	}
}

func TestBrokenIngressKeepsTheLastGoodRoutesAndSaysWhy(t *testing.T) {
	f := newIngressFixture(t, shopFront())
	f.reconcile(t, "front")
	f.events()
	ing := f.ingress(t, "front")
	ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port = networkingv1.ServiceBackendPort{Name: "htp"}
	if err := f.c.Update(context.Background(), ing); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t, "front")
	last := f.cloud.ensured[len(f.cloud.ensured)-1]
	if !slices.ContainsFunc(last.Routes, func(r providers.HTTPRoute) bool { return r.Host == "shop.example.com" && r.Path == "/api" }) {
		t.Errorf("the broken path's last good route was dropped: %+v", last.Routes)
	}
	evs := f.events()
	if len(evs) != 1 || !strings.Contains(evs[0], "Warning InvalidIngress spec.rules[0].http.paths[0].backend.service.port.name") {
		t.Errorf("events %v, want one Warning naming the field", evs)
	}
	// The same problem again is no news.
	f.reconcile(t, "front")
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("repeated events %v", evs)
	}
	st, _ := IngressStatusOf(f.ingress(t, "front"))
	if st == nil || len(st.Problems) != 1 {
		t.Errorf("status problems %+v", st)
	}
	// Deleting the path from a valid Ingress is a clear removal.
	ing = f.ingress(t, "front")
	ing.Spec.Rules[0].HTTP.Paths = ing.Spec.Rules[0].HTTP.Paths[1:]
	if err := f.c.Update(context.Background(), ing); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t, "front")
	last = f.cloud.ensured[len(f.cloud.ensured)-1]
	if slices.ContainsFunc(last.Routes, func(r providers.HTTPRoute) bool { return r.Host == "shop.example.com" && r.Path == "/api" }) {
		t.Errorf("a removed path stayed: %+v", last.Routes)
	}
}

func TestBrokenCloudAnnotationKeepsTheLastGoodSpec(t *testing.T) {
	f := newIngressFixture(t, shopFront(annotation(AWSAnnotation, `{"scheme": "internal"}`)))
	f.reconcile(t, "front")
	ing := f.ingress(t, "front")
	ing.Annotations[AWSAnnotation] = `{"scheme": "public"}`
	if err := f.c.Update(context.Background(), ing); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t, "front")
	if last := f.cloud.ensured[len(f.cloud.ensured)-1]; last.Spec != "internal" {
		t.Errorf("spec in force %v, want the last good internal", last.Spec)
	}
	evs := f.events()
	if !slices.ContainsFunc(evs, func(e string) bool {
		return strings.Contains(e, "Warning InvalidIngress metadata.annotations[podlb.io/aws-load-balancer]: scheme")
	}) {
		t.Errorf("events %v", evs)
	}
}

func TestDeletedIngressDeregistersThenDeletesTheLoadBalancer(t *testing.T) {
	f := newIngressFixture(t, shopFront())
	f.reconcile(t, "front")
	f.cloud.deleteBusy = 1
	if err := f.c.Delete(context.Background(), f.ingress(t, "front")); err != nil {
		t.Fatal(err)
	}
	if res := f.reconcile(t, "front"); res.RequeueAfter == 0 {
		t.Error("a load balancer that is still busy must be tried again")
	}
	if len(f.reg.AllBindings()) != 0 {
		t.Errorf("bindings left: %v", f.reg.AllBindings())
	}
	if len(f.cloud.deleted) != 0 || len(f.ingress(t, "front").Finalizers) == 0 {
		t.Fatal("the Ingress let go before its load balancer was deleted")
	}
	f.reconcile(t, "front")
	if !slices.Equal(f.cloud.deleted, []providers.BalancerKey{{Namespace: "shop", Name: "front"}}) {
		t.Errorf("deleted %v", f.cloud.deleted)
	}
	var ing networkingv1.Ingress
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "front"}, &ing); err == nil {
		t.Errorf("the Ingress is still there with finalizers %v", ing.Finalizers)
	}
	if evs := f.events(); !slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, "Normal LoadBalancerDeleted") }) {
		t.Errorf("events %v, want LoadBalancerDeleted", evs)
	}
}

func TestDeletedIngressGoesWithAWarningWhenAUsersResourceKeepsTheLoadBalancer(t *testing.T) {
	f := newIngressFixture(t, shopFront())
	f.reconcile(t, "front")
	f.events()
	f.cloud.deleteKept = []string{"load balancer x: listener HTTP:80 carries rules podlb did not create (priority 7: arn:rule/7)"}
	if err := f.c.Delete(context.Background(), f.ingress(t, "front")); err != nil {
		t.Fatal(err)
	}
	if res := f.reconcile(t, "front"); len(f.cloud.deleted) != 1 {
		t.Fatalf("deleted %v (requeue %v), want one deletion", f.cloud.deleted, res.RequeueAfter)
	}
	var ing networkingv1.Ingress
	if err := f.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: "front"}, &ing); err == nil {
		t.Errorf("the Ingress is held by what podlb may not delete: finalizers %v", ing.Finalizers)
	}
	evs := f.events()
	if !slices.ContainsFunc(evs, func(e string) bool {
		return strings.HasPrefix(e, "Warning LoadBalancerKept") && strings.Contains(e, "shop/front") && strings.Contains(e, "aws: load balancer x: listener HTTP:80 carries rules podlb did not create (priority 7: arn:rule/7)")
	}) {
		t.Errorf("events %v, want a LoadBalancerKept Warning naming the balancer and the user's rule", evs)
	}
	if slices.ContainsFunc(evs, func(e string) bool { return strings.Contains(e, "LoadBalancerDeleted") }) {
		t.Errorf("events %v: the load balancer is not deleted", evs)
	}
}

func TestGroupOfReadsTheGroupField(t *testing.T) {
	cases := []struct {
		ann  map[string]string
		want providers.BalancerKey
		ok   bool
	}{
		{nil, providers.BalancerKey{Namespace: "shop", Name: "front"}, true},
		{map[string]string{AWSAnnotation: `{"group": "public"}`}, providers.BalancerKey{Name: "public"}, true},
		{map[string]string{AWSAnnotation: `{"group": "public"}`, GCPAnnotation: `{}`}, providers.BalancerKey{Name: "public"}, true},
		{map[string]string{AWSAnnotation: `{"group": "a"}`, GCPAnnotation: `{"group": "b"}`}, providers.BalancerKey{}, false},
		{map[string]string{AWSAnnotation: `{"group": `}, providers.BalancerKey{}, false},
	}
	for _, tc := range cases {
		ing := ingress("shop", "front")
		ing.Annotations = tc.ann
		got, ok := GroupOf(ing)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%v: got %v %v, want %v %v", tc.ann, got, ok, tc.want, tc.ok)
		}
		if ok {
			if back, _ := ParseBalancerKey(got.String()); back != got {
				t.Errorf("%v does not read back: %v", got, back)
			}
		}
	}
}

func TestGroupSharesOneLoadBalancerAndRefusesATakenRoute(t *testing.T) {
	group := annotation(AWSAnnotation, `{"group": "public"}`)
	first := ingress("shop", "first", className("podlb"), group, createdAt(0),
		rule("shop.example.com", path("/", prefix, "web", 80)))
	second := ingress("shop", "second", className("podlb"), group, createdAt(1),
		rule("shop.example.com", path("/", prefix, "api", 80), path("/api", prefix, "api", 80)))
	f := newIngressFixture(t, first, second)
	f.reconcile(t, "second")
	if len(f.cloud.ensured) != 1 || f.cloud.ensured[0].Key != (providers.BalancerKey{Name: "public"}) {
		t.Fatalf("ensured %+v, want one load balancer for group public", f.cloud.ensured)
	}
	var routes []string
	for _, r := range f.cloud.ensured[0].Routes {
		routes = append(routes, r.Path+">"+r.Backend)
	}
	if want := []string{"/api>shop/api:80", "/>shop/web:80"}; !slices.Equal(routes, want) {
		t.Errorf("routes %v, want %v: the earlier member keeps /", routes, want)
	}
	evs := f.events()
	if !slices.ContainsFunc(evs, func(e string) bool {
		return strings.Contains(e, "Warning InvalidIngress spec.rules[0].http.paths[0]: Prefix / on host shop.example.com already goes to shop/web:80, routed by Ingress shop/first")
	}) {
		t.Errorf("events %v, want the refusal naming the holder", evs)
	}
	for _, name := range []string{"first", "second"} {
		if got := f.ingress(t, name).Status.LoadBalancer.Ingress; len(got) != 1 || got[0].Hostname != "lb-public.elb.example" {
			t.Errorf("%s: address %+v", name, got)
		}
	}
	// The second leaves: the first keeps the load balancer.
	if err := f.c.Delete(context.Background(), f.ingress(t, "second")); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t, "second")
	if len(f.cloud.deleted) != 0 {
		t.Errorf("deleted %v while the first Ingress still uses it", f.cloud.deleted)
	}
	last := f.cloud.ensured[len(f.cloud.ensured)-1]
	if len(last.Routes) != 1 || last.Routes[0].Backend != "shop/web:80" {
		t.Errorf("routes after the second left: %+v", last.Routes)
	}
	if evs := f.events(); !slices.ContainsFunc(evs, func(e string) bool { return strings.HasPrefix(e, "Normal LoadBalancerReleased") }) {
		t.Errorf("events %v, want LoadBalancerReleased", evs)
	}
	if via := (providers.BindingKey{Namespace: "shop", Service: "api", Provider: "aws", Port: 80, Balancer: "public"}); f.reg.Binding(via) != nil {
		t.Error("api is no backend any more but still bound")
	}
}

func TestUnusedTLSSecretsAreNamedByField(t *testing.T) {
	ing := ingress("shop", "front", tls("shop-cert", "shop.example.com"), tls("", "api.example.com"))
	got := unusedTLSSecrets([]*networkingv1.Ingress{ing})
	if len(got) != 1 || got[0].Field != "spec.tls[0].secretName" || !strings.Contains(got[0].Message, "shop-cert") {
		t.Errorf("problems %v, want one naming spec.tls[0].secretName and the Secret", got)
	}
}
