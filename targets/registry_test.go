package targets

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
)

const frontLB = "shop/front"

func viaFront(svc string, port int32) providers.BindingKey {
	k := awsKey(svc, port)
	k.Balancer = frontLB
	return k
}

func binding(k providers.BindingKey, group string) *providers.Binding {
	return &providers.Binding{Key: k, Mode: providers.ReadyWhenHealthy, Spec: fakeSpec{group}}
}

var (
	webName     = types.NamespacedName{Namespace: "shop", Name: "web"}
	apiName     = types.NamespacedName{Namespace: "shop", Name: "api"}
	webSelector = labels.SelectorFromSet(labels.Set{"app": "web"})
)

func TestBalancerBindingsSitBesideTheServicesOwnBindingOfTheSamePort(t *testing.T) {
	r := NewRegistry()
	r.SetService(&ServiceEntry{Name: webName, Selector: webSelector}, []*providers.Binding{binding(awsKey("web", 80), "own")})
	changed, removed := r.SetBalancerBindings(frontLB, map[types.NamespacedName][]*providers.Binding{
		webName: {binding(viaFront("web", 80), "alb")},
	}, nil)
	if !slices.Equal(changed, []providers.BindingKey{viaFront("web", 80)}) || len(removed) != 0 {
		t.Fatalf("changed %v removed %v", changed, removed)
	}
	want := []providers.BindingKey{awsKey("web", 80), viaFront("web", 80)}
	if got := r.Service(webName).Bindings; !slices.Equal(got, want) {
		t.Fatalf("entry bindings %v, want both %v", got, want)
	}
	if r.Binding(awsKey("web", 80)).Spec.Summary() != "own" || r.Binding(viaFront("web", 80)).Spec.Summary() != "alb" {
		t.Error("one binding replaced the other")
	}
	// An edit of the Service's annotation keeps the balancer's binding.
	r.SetService(&ServiceEntry{Name: webName, Selector: webSelector}, []*providers.Binding{binding(awsKey("web", 80), "own2")})
	if got := r.Service(webName).Bindings; !slices.Equal(got, want) {
		t.Errorf("after an annotation edit: %v", got)
	}
	// Losing the annotation leaves the balancer's binding, still selecting the pods.
	if got := r.RemoveService(webName); !slices.Equal(got, []providers.BindingKey{awsKey("web", 80)}) {
		t.Errorf("RemoveService returned %v, want only the Service's own binding", got)
	}
	e := r.Service(webName)
	if e == nil || e.Annotated || !slices.Equal(e.Bindings, []providers.BindingKey{viaFront("web", 80)}) {
		t.Fatalf("after the annotation went: %+v", e)
	}
	if sel := r.SelectingServices("shop", map[string]string{"app": "web"}); len(sel) != 1 {
		t.Errorf("the pods are still behind the balancer: selecting %v", sel)
	}
	if r.Binding(awsKey("web", 80)) != nil {
		t.Error("the removed own binding is still registered")
	}
}

func TestBalancerAloneMakesAnEntryForAServiceWithoutAnnotation(t *testing.T) {
	r := NewRegistry()
	sels := map[types.NamespacedName]labels.Selector{webName: webSelector, apiName: labels.SelectorFromSet(labels.Set{"app": "api"})}
	r.SetBalancerBindings(frontLB, map[types.NamespacedName][]*providers.Binding{
		webName: {binding(viaFront("web", 80), "a")},
		apiName: {binding(viaFront("api", 8000), "b")},
	}, sels)
	sel := r.SelectingServices("shop", map[string]string{"app": "api"})
	if len(sel) != 1 || sel[0].Name != apiName || !slices.Equal(sel[0].Bindings, []providers.BindingKey{viaFront("api", 8000)}) {
		t.Fatalf("api pods: %+v", sel)
	}
	entry := r.Service(webName)
	// The balancer drops api and changes web's group: api's entry goes,
	// web's binding counts as changed and its old health is forgotten.
	_, gen := r.BindingAt(viaFront("web", 80))
	r.SetHealth(viaFront("web", 80), gen, &BindingHealth{Group: "a"})
	changed, removed := r.SetBalancerBindings(frontLB, map[types.NamespacedName][]*providers.Binding{
		webName: {binding(viaFront("web", 80), "a2")},
	}, sels)
	if !slices.Equal(changed, []providers.BindingKey{viaFront("web", 80)}) || !slices.Equal(removed, []providers.BindingKey{viaFront("api", 8000)}) {
		t.Fatalf("changed %v removed %v", changed, removed)
	}
	if r.Service(apiName) != nil || r.Binding(viaFront("api", 8000)) != nil {
		t.Error("api is bound by nothing any more but still registered")
	}
	if r.Health(viaFront("web", 80)) != nil {
		t.Error("health seen in the previous group would count for the new one")
	}
	if len(entry.Bindings) != 1 || entry.Bindings[0] != viaFront("web", 80) || r.Service(webName) == entry {
		t.Error("an entry handed out must never change under its reader; a new one is stored")
	}
	if got := r.RemoveBalancer(frontLB); !slices.Equal(got, []providers.BindingKey{viaFront("web", 80)}) {
		t.Errorf("RemoveBalancer returned %v", got)
	}
	if r.Service(webName) != nil || len(r.AllBindings()) != 0 {
		t.Error("nothing binds web any more, yet it is registered")
	}
}

func TestBalancerBindingsOfAnotherOwnerOrServiceAreNeverStored(t *testing.T) {
	r := NewRegistry()
	other := awsKey("web", 80)
	other.Balancer = "shop/other"
	r.SetBalancerBindings(frontLB, map[types.NamespacedName][]*providers.Binding{
		webName: {binding(other, "x"), binding(awsKey("web", 80), "y"), binding(viaFront("api", 8000), "z")},
	}, nil)
	if n := len(r.AllBindings()); n != 0 {
		t.Errorf("stored %d bindings that are not this balancer's bindings of web", n)
	}
}

func TestIngressSettledForNamesGenerationAndService(t *testing.T) {
	r := NewRegistry()
	ing := types.NamespacedName{Namespace: "shop", Name: "front"}
	if r.IngressSettledFor(ing, 1, "web") {
		t.Fatal("settled before anything was recorded")
	}
	r.SetIngressSettled(ing, IngressSettled{Generation: 1, Services: []string{"api", "web"}})
	switch {
	case !r.IngressSettledFor(ing, 1, "web"):
		t.Error("generation 1 with web was settled")
	case r.IngressSettledFor(ing, 2, "web"):
		t.Error("an edit (generation 2) is not settled yet")
	case r.IngressSettledFor(ing, 1, "cart"):
		t.Error("cart was not among the Services found")
	}
	r.ForgetIngress(ing)
	if r.IngressSettledFor(ing, 1, "web") {
		t.Error("forgotten Ingress still settled")
	}
}

func TestLoadBalancerServiceSettledNamesTheVersion(t *testing.T) {
	r := NewRegistry()
	svc := types.NamespacedName{Namespace: "shop", Name: "edge"}
	if r.LoadBalancerServiceSettled(svc, "v1") {
		t.Fatal("settled before anything was recorded")
	}
	if !r.SetLoadBalancerServiceSettled(svc, "v1") || r.SetLoadBalancerServiceSettled(svc, "v1") {
		t.Error("the first record is a change, the same again is not")
	}
	switch {
	case !r.LoadBalancerServiceSettled(svc, "v1"):
		t.Error("v1 was settled")
	case r.LoadBalancerServiceSettled(svc, "v2"):
		t.Error("an edit (v2) is not settled yet")
	}
	if !r.ForgetLoadBalancerService(svc) || r.LoadBalancerServiceSettled(svc, "v1") || r.ForgetLoadBalancerService(svc) {
		t.Error("a forgotten Service is not settled, and forgetting twice changes nothing")
	}
}

func TestBalancerStatusChangesGoToTheBalancerNotTheService(t *testing.T) {
	r := NewRegistry()
	var services []types.NamespacedName
	var balancers []string
	r.ServiceChanged = func(nn types.NamespacedName) { services = append(services, nn) }
	r.BalancerChanged = func(b string) { balancers = append(balancers, b) }
	r.SetService(&ServiceEntry{Name: webName, Selector: webSelector}, []*providers.Binding{binding(awsKey("web", 80), "own")})
	r.SetBalancerBindings(frontLB, map[types.NamespacedName][]*providers.Binding{webName: {binding(viaFront("web", 80), "alb")}}, nil)
	r.SetStatus(viaFront("web", 80), &BindingStatus{Desired: 2})
	r.SetStatus(awsKey("web", 80), &BindingStatus{Desired: 2})
	if !slices.Equal(balancers, []string{frontLB}) || !slices.Equal(services, []types.NamespacedName{webName}) {
		t.Errorf("balancer told %v, Service told %v", balancers, services)
	}
}

// The ledger names an entry of a Service's own binding as it always did,
// and a balancer's backend binding of the same port apart from it.
func TestLedgerKeepsBalancerBindingsApart(t *testing.T) {
	own, via := awsKey("web", 80), viaFront("web", 80)
	if got := ledgerName(own); got != "podlb-aws-"+shortHash("shop", "web", "aws", "80") {
		t.Errorf("own binding's entry renamed to %s", got)
	}
	if ledgerName(via) == ledgerName(own) {
		t.Fatal("a balancer's binding would overwrite the Service's own entry")
	}
	ctx := context.Background()
	c := fake.NewClientBuilder().Build()
	l := NewLedger(c, c, "podlb-system")
	for _, k := range []providers.BindingKey{own, via, awsKey("api", 80)} {
		if err := l.Put(ctx, k, ledgerRecord(k, "arn-"+k.Service, "10.0.0.5:8080").Entry); err != nil {
			t.Fatal(err)
		}
	}
	fresh := NewLedger(c, c, "podlb-system")
	keys, err := fresh.Bindings(ctx, "shop", "web")
	if err != nil || !slices.Equal(keys, []providers.BindingKey{own, via}) {
		t.Errorf("Service web's entries %v %v, want its own and the balancer's, keys intact", keys, err)
	}
	keys, err = fresh.BalancerBindings(ctx, frontLB)
	if err != nil || !slices.Equal(keys, []providers.BindingKey{via}) {
		t.Errorf("the balancer's entries %v %v", keys, err)
	}
}

// releaser records releases.
type releaser struct {
	stubProvider
	released []providers.BindingKey
}

func (p *releaser) Release(_ context.Context, k providers.BindingKey, _ string, _ []providers.TargetKey) error {
	p.released = append(p.released, k)
	return nil
}

// The Service's own cleanup never releases what a load balancer binds for
// its pods; the balancer does, through ReleaseBinding.
func TestServiceCleanupLeavesBalancerBindingsToTheirBalancer(t *testing.T) {
	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
	c := fake.NewClientBuilder().WithObjects(svc).Build()
	l := NewLedger(c, c, "podlb-system")
	own, via := awsKey("web", 80), viaFront("web", 80)
	for _, k := range []providers.BindingKey{own, via} {
		if err := l.Put(ctx, k, ledgerRecord(k, "arn-"+k.String(), "10.0.0.5:8080").Entry); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry()
	reg.SetBalancerBindings(frontLB, map[types.NamespacedName][]*providers.Binding{webName: {binding(via, "alb")}},
		map[types.NamespacedName]labels.Selector{webName: webSelector})
	p := &releaser{stubProvider: stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}}
	sr := &ServiceReconciler{Client: c, Registry: reg, Ledger: l, Providers: []providers.Provider{p}, Cluster: "c1", Recorder: record.NewFakeRecorder(10)}
	if _, err := sr.Reconcile(ctx, reconcile.Request{NamespacedName: webName}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.released, []providers.BindingKey{own}) {
		t.Fatalf("released %v, want only the Service's own binding", p.released)
	}
	if e := reg.Service(webName); e == nil || !slices.Equal(e.Bindings, []providers.BindingKey{via}) {
		t.Errorf("the balancer's binding left the registry: %+v", e)
	}
	ref, err := ReleaseBinding(ctx, l, p, via)
	if err != nil || ref != "arn-"+via.String() || !slices.Equal(p.released, []providers.BindingKey{own, via}) {
		t.Errorf("ReleaseBinding: ref %q err %v released %v", ref, err, p.released)
	}
	if keys, _ := l.Bindings(ctx, "shop", "web"); len(keys) != 0 {
		t.Errorf("ledger still holds %v", keys)
	}
	var cms corev1.ConfigMapList
	if err := c.List(ctx, &cms, client.InNamespace("podlb-system")); err != nil || len(cms.Items) != 0 {
		t.Errorf("%d ledger ConfigMaps left (%v)", len(cms.Items), err)
	}
}

// A pod's Services are found through the selector index whatever pair
// comes first, in their own namespace only; an entry whose selector
// changes or that goes is found under its new selector or not at all, and
// a selector without a single-valued requirement is still tested.
func TestSelectingServicesFollowsSelectorChanges(t *testing.T) {
	r := NewRegistry()
	entry := func(ns, name string, sel labels.Selector) *ServiceEntry {
		return &ServiceEntry{Name: types.NamespacedName{Namespace: ns, Name: name}, Selector: sel}
	}
	names := func(ns string, podLabels map[string]string) []string {
		var out []string
		for _, e := range r.SelectingServices(ns, podLabels) {
			out = append(out, e.Name.Name)
		}
		return out
	}
	setBased, err := labels.Parse("tier in (front,back)")
	if err != nil {
		t.Fatal(err)
	}
	r.SetService(entry("shop", "web", labels.SelectorFromSet(labels.Set{"app": "web", "tier": "front"})), nil)
	r.SetService(entry("shop", "all", labels.SelectorFromSet(labels.Set{"zone": "a"})), nil)
	r.SetService(entry("shop", "tiers", setBased), nil)
	r.SetService(entry("shop", "none", nil), nil)
	r.SetService(entry("other", "web", labels.SelectorFromSet(labels.Set{"app": "web"})), nil)

	front := map[string]string{"app": "web", "tier": "front", "zone": "a"}
	if got := names("shop", front); !slices.Equal(got, []string{"all", "tiers", "web"}) {
		t.Fatalf("front pod selected by %v, want [all tiers web]", got)
	}
	if got := names("shop", map[string]string{"app": "web"}); len(got) != 0 {
		t.Fatalf("a pod lacking tier and zone selected by %v", got)
	}
	// web now selects app=api: found under its new pair only.
	r.SetService(entry("shop", "web", labels.SelectorFromSet(labels.Set{"app": "api"})), nil)
	if got := names("shop", front); !slices.Equal(got, []string{"all", "tiers"}) {
		t.Fatalf("after web's selector changed, front pod selected by %v", got)
	}
	if got := names("shop", map[string]string{"app": "api"}); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("api pod selected by %v, want [web]", got)
	}
	r.RemoveService(types.NamespacedName{Namespace: "shop", Name: "all"})
	if got := names("shop", front); !slices.Equal(got, []string{"tiers"}) {
		t.Fatalf("after all went, front pod selected by %v", got)
	}
	if got := names("other", front); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("in namespace other, front pod selected by %v", got)
	}
}
