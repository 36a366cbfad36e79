package loadbalancers

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// fakeL4Cloud records what the Service reconciler asks of a cloud. With
// refusesUDP it answers as a cloud whose load balancer carries TCP only:
// UDP ports get no listener and are named in Refused.
type fakeL4Cloud struct {
	fakeCloud
	name       string
	refusesUDP bool
	ensuredL4  []*providers.L4Balancer
	deletedL4  []providers.BalancerKey
}

const udpRefused = "this load balancer carries TCP only"

func (c *fakeL4Cloud) Name() string { return c.name }

// ParseL4Spec reads the same settings as the HTTP fake: a scheme, and
// "public" is refused naming the field.
func (c *fakeL4Cloud) ParseL4Spec(raw string) (any, error) { return c.ParseBalancerSpec(raw) }

func (c *fakeL4Cloud) EnsureL4(_ context.Context, lb *providers.L4Balancer) (*providers.L4Result, error) {
	c.ensuredL4 = append(c.ensuredL4, lb)
	res := &providers.L4Result{Status: providers.BalancerStatus{IP: "203.0.113.7"}, Specs: map[string]providers.Spec{}, Refused: map[string]string{}}
	for _, l := range lb.Listeners {
		if c.refusesUDP && l.Protocol == "UDP" {
			res.Refused[strconv.Itoa(int(l.Port))+"/UDP"] = udpRefused
			continue
		}
		res.Specs[l.Backend.ID()] = fakeBackendSpec("group-" + l.Backend.ID())
	}
	return res, nil
}

func (c *fakeL4Cloud) DeleteL4(_ context.Context, _ string, key providers.BalancerKey) error {
	if c.deleteBusy > 0 {
		c.deleteBusy--
		return providers.Errorf(providers.Transient, "", "listeners still draining")
	}
	c.deletedL4 = append(c.deletedL4, key)
	return nil
}

// servedService is a Service podlb serves in namespace shop, created at
// epoch, selecting app=name, with port 80 to 8080 and then any ports mods
// add.
func servedService(name string, mods ...svcMod) *corev1.Service {
	return lbService("shop", name, 0, append([]svcMod{ports(port("http", 80, intstr.FromInt32(8080)))}, mods...)...)
}

func loadBalancerClass(class *string) svcMod {
	return func(svc *corev1.Service) { svc.Spec.LoadBalancerClass = class }
}

type serviceFixture struct {
	reconcilerFixture
	cloud *fakeL4Cloud
}

func newServiceFixture(t *testing.T, cloud *fakeL4Cloud, objs ...client.Object) *serviceFixture {
	t.Helper()
	f := &serviceFixture{reconcilerFixture: newReconcilerFixture(&corev1.Service{}, objs...), cloud: cloud}
	f.reconciler = &ServiceReconciler{Client: f.c, Registry: f.reg, Ledger: f.ledger,
		Clouds: L4Clouds([]providers.Provider{cloud}), Cluster: "c1", Recorder: f.rec, Timing: testTiming,
		EnqueueBinding: func(providers.BindingKey) {}}
	return f
}

// service reads a Service back; nil once it is gone.
func (f *serviceFixture) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	var svc corev1.Service
	err := f.c.Get(context.Background(), client.ObjectKey{Namespace: "shop", Name: name}, &svc)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return &svc
}

func (f *serviceFixture) update(t *testing.T, name string, mods ...svcMod) {
	t.Helper()
	svc := f.service(t, name)
	for _, m := range mods {
		m(svc)
	}
	if err := f.c.Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
}

// listenerBinding is the key of the binding that registers the pods
// behind a Service port for the load balancer of group.
func listenerBinding(cloud, service string, port int32, group providers.BalancerKey) providers.BindingKey {
	return providers.BindingKey{Namespace: "shop", Service: service, Provider: cloud, Port: port, Balancer: ServiceBalancer(group)}
}

func hasEvent(evs []string, prefix string, parts ...string) bool {
	return slices.ContainsFunc(evs, func(e string) bool {
		if !strings.HasPrefix(e, prefix) {
			return false
		}
		for _, p := range parts {
			if !strings.Contains(e, p) {
				return false
			}
		}
		return true
	})
}

var shopEdge = providers.BalancerKey{Namespace: "shop", Name: "edge"}

func TestServiceOfAnotherClassOrNoClassIsIgnored(t *testing.T) {
	other := "example.com/other"
	f := newServiceFixture(t, &fakeL4Cloud{name: "aws"},
		servedService("theirs", loadBalancerClass(&other)), servedService("cloud-default", loadBalancerClass(nil)))
	for _, name := range []string{"theirs", "cloud-default"} {
		if res := f.reconcile(t, name); res != (reconcile.Result{}) {
			t.Errorf("%s: requeued %+v", name, res)
		}
		if svc := f.service(t, name); len(svc.Finalizers) > 0 || svc.Annotations[targets.AnnotationStatus] != "" {
			t.Errorf("%s: finalizers %v, annotations %v on a Service podlb does not serve", name, svc.Finalizers, svc.Annotations)
		}
	}
	if len(f.cloud.ensuredL4) != 0 || len(f.cloud.deletedL4) != 0 || len(f.reg.AllBindings()) != 0 {
		t.Errorf("cloud calls %v %v, bindings %v for Services of another class", f.cloud.ensuredL4, f.cloud.deletedL4, f.reg.AllBindings())
	}
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("events %v", evs)
	}
}

func TestServiceBecomesALoadBalancerWithGatedBindings(t *testing.T) {
	f := newServiceFixture(t, &fakeL4Cloud{name: "aws"}, servedService("edge"))
	f.reconcile(t, "edge")
	if len(f.cloud.ensuredL4) != 1 {
		t.Fatalf("EnsureL4 called %d times", len(f.cloud.ensuredL4))
	}
	lb := f.cloud.ensuredL4[0]
	if lb.Key != shopEdge || len(lb.Listeners) != 1 || lb.Listeners[0].Port != 80 || lb.Listeners[0].Backend.ID() != "shop/edge:80" {
		t.Errorf("asked for %+v", lb)
	}
	b := f.reg.Binding(listenerBinding("aws", "edge", 80, shopEdge))
	if b == nil || b.Mode != providers.ReadyWhenHealthy || b.TargetPort != 8080 || b.Protocol != "TCP" {
		t.Fatalf("binding %+v, want port 80 to 8080 waiting for health", b)
	}
	svc := f.service(t, "edge")
	if !slices.Contains(svc.Finalizers, ServiceFinalizer) {
		t.Error("no finalizer: deleting the Service would leave the load balancer behind")
	}
	if got := svc.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != "203.0.113.7" {
		t.Errorf("status.loadBalancer.ingress %+v", got)
	}
	if !f.reg.LoadBalancerServiceSettled(nameOf(svc), ServiceVersion(svc)) {
		t.Error("the gate would wait forever: the Service is not settled")
	}
	if evs := f.events(); !hasEvent(evs, "Normal LoadBalancerProvisioned", "shop/edge: 203.0.113.7 (ports 80)") {
		t.Errorf("events %v, want LoadBalancerProvisioned with the address and port", evs)
	}
	f.reconcile(t, "edge")
	if len(f.cloud.ensuredL4) != 1 {
		t.Error("an unchanged load balancer was ensured again")
	}
}

func TestServiceSwitchedToClusterIPReleasesItsLoadBalancer(t *testing.T) {
	f := newServiceFixture(t, &fakeL4Cloud{name: "aws"}, servedService("edge"))
	f.reconcile(t, "edge")
	f.events()
	f.update(t, "edge", func(svc *corev1.Service) { svc.Spec.Type = corev1.ServiceTypeClusterIP }, loadBalancerClass(nil))
	f.reconcile(t, "edge")
	if !slices.Equal(f.cloud.deletedL4, []providers.BalancerKey{shopEdge}) {
		t.Errorf("deleted %v, want the Service's load balancer", f.cloud.deletedL4)
	}
	if len(f.reg.AllBindings()) != 0 {
		t.Errorf("bindings left %v", f.reg.AllBindings())
	}
	svc := f.service(t, "edge")
	if len(svc.Finalizers) != 0 || svc.Annotations[targets.AnnotationStatus] != "" || len(svc.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("finalizers %v, status annotation %q, address %v left on a ClusterIP Service",
			svc.Finalizers, svc.Annotations[targets.AnnotationStatus], svc.Status.LoadBalancer.Ingress)
	}
	if evs := f.events(); !hasEvent(evs, "Normal LoadBalancerDeleted", "shop/edge") {
		t.Errorf("events %v, want LoadBalancerDeleted", evs)
	}
}

func TestBrokenServiceAnnotationKeepsTheLastGoodLoadBalancer(t *testing.T) {
	f := newServiceFixture(t, &fakeL4Cloud{name: "aws"}, servedService("edge", svcAnnotation(AWSAnnotation, `{"scheme": "internal"}`)))
	f.reconcile(t, "edge")
	f.events()
	f.update(t, "edge", svcAnnotation(AWSAnnotation, `{"scheme": "public"}`), ports(port("admin", 9000, intstr.FromInt32(9000))))
	f.reconcile(t, "edge")
	if len(f.cloud.deletedL4) != 0 {
		t.Fatalf("deleted %v over a broken annotation", f.cloud.deletedL4)
	}
	last := f.cloud.ensuredL4[len(f.cloud.ensuredL4)-1]
	if last.Spec != "internal" || len(last.Listeners) != 2 {
		t.Errorf("in force: spec %v with %d listeners, want the last good internal spec with both ports", last.Spec, len(last.Listeners))
	}
	if f.reg.Binding(listenerBinding("aws", "edge", 80, shopEdge)) == nil {
		t.Error("the listener's binding went with the broken annotation")
	}
	evs := f.events()
	if len(evs) != 1 || !hasEvent(evs, "Warning InvalidLoadBalancer metadata.annotations[podlb.io/aws-load-balancer]: scheme", "the last good value stays in force") {
		t.Errorf("events %v, want one Warning naming the field", evs)
	}
	f.reconcile(t, "edge")
	if evs := f.events(); len(evs) != 0 {
		t.Errorf("repeated events %v", evs)
	}
	if st, err := ServiceStatusOf(f.service(t, "edge")); err != nil || len(st.Problems) != 1 || !strings.HasPrefix(st.Problems[0], "metadata.annotations[podlb.io/aws-load-balancer]") {
		t.Errorf("status %+v %v, want the problem naming the field", st, err)
	}
}

func TestTakenPortIsRefusedWhileItsHolderKeepsTheListener(t *testing.T) {
	group := svcAnnotation(AWSAnnotation, `{"group": "edge"}`)
	first := servedService("first", group)
	second := lbService("shop", "second", 1, group, ports(port("http", 80, intstr.FromInt32(8081)), port("https", 443, intstr.FromInt32(8443))))
	f := newServiceFixture(t, &fakeL4Cloud{name: "aws"}, first, second)
	f.reconcile(t, "second")
	edge := providers.BalancerKey{Name: "edge"}
	if len(f.cloud.ensuredL4) != 1 || f.cloud.ensuredL4[0].Key != edge {
		t.Fatalf("ensured %+v, want one load balancer for group edge", f.cloud.ensuredL4)
	}
	var listeners []string
	for _, l := range f.cloud.ensuredL4[0].Listeners {
		listeners = append(listeners, strconv.Itoa(int(l.Port))+">"+l.Backend.ID())
	}
	if want := []string{"80>shop/first:80", "443>shop/second:443"}; !slices.Equal(listeners, want) {
		t.Errorf("listeners %v, want %v: the earlier Service holds 80", listeners, want)
	}
	if f.reg.Binding(listenerBinding("aws", "first", 80, edge)) == nil || f.reg.Binding(listenerBinding("aws", "second", 80, edge)) != nil {
		t.Errorf("bindings %v, want first's port 80 bound and second's not", f.reg.AllBindings())
	}
	evs := f.events()
	if !hasEvent(evs, "Warning InvalidLoadBalancer spec.ports[0]: port 80 is taken on load balancer edge by Service shop/first") {
		t.Errorf("events %v, want the refusal naming the holder", evs)
	}
	if st, _ := ServiceStatusOf(f.service(t, "second")); st == nil || st.Clouds["aws"] == nil || len(st.Clouds["aws"].Ports) != 1 || st.Clouds["aws"].Ports["443"] == nil {
		t.Errorf("second's status %+v, want port 443 only", st)
	}
	if st, _ := ServiceStatusOf(f.service(t, "first")); st == nil || len(st.Problems) != 0 || st.Clouds["aws"].Ports["80"] == nil {
		t.Errorf("first's status %+v, want port 80 and no problem", st)
	}
}

func TestUDPPortACloudRefusesIsNamedWhileTCPPortsAreServed(t *testing.T) {
	f := newServiceFixture(t, &fakeL4Cloud{name: "gcp", refusesUDP: true}, lbService("shop", "dns", 0, ports(udp("dns", 53), port("http", 80, intstr.FromInt32(8080)))))
	f.reconcile(t, "dns")
	dns := providers.BalancerKey{Namespace: "shop", Name: "dns"}
	if f.reg.Binding(listenerBinding("gcp", "dns", 80, dns)) == nil {
		t.Errorf("bindings %v, want the TCP port bound", f.reg.AllBindings())
	}
	if f.reg.Binding(listenerBinding("gcp", "dns", 53, dns)) != nil {
		t.Error("the refused UDP port is bound")
	}
	evs := f.events()
	if !hasEvent(evs, "Warning InvalidLoadBalancer spec.ports[0]: gcp: port 53/UDP gets no listener: "+udpRefused) {
		t.Errorf("events %v, want a Warning naming the UDP port", evs)
	}
	svc := f.service(t, "dns")
	if got := svc.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].IP != "203.0.113.7" {
		t.Errorf("address %+v: the TCP port is served", got)
	}
	if st, _ := ServiceStatusOf(svc); st == nil || st.Clouds["gcp"].Refused["53/UDP"] != udpRefused || st.Clouds["gcp"].Ports["80"] == nil {
		t.Errorf("status %+v, want 53/UDP refused and 80 served", st)
	}
}

func TestDeletedServiceTearsDownThenDropsTheFinalizer(t *testing.T) {
	f := newServiceFixture(t, &fakeL4Cloud{name: "aws"}, servedService("edge"))
	f.reconcile(t, "edge")
	f.events()
	f.cloud.deleteBusy = 1
	if err := f.c.Delete(context.Background(), f.service(t, "edge")); err != nil {
		t.Fatal(err)
	}
	if res := f.reconcile(t, "edge"); res.RequeueAfter == 0 {
		t.Error("a load balancer that is still busy must be tried again")
	}
	if len(f.reg.AllBindings()) != 0 {
		t.Errorf("bindings left %v: targets go first", f.reg.AllBindings())
	}
	if svc := f.service(t, "edge"); svc == nil || len(f.cloud.deletedL4) != 0 {
		t.Fatal("the Service let go before its load balancer was deleted")
	}
	f.reconcile(t, "edge")
	if !slices.Equal(f.cloud.deletedL4, []providers.BalancerKey{shopEdge}) {
		t.Errorf("deleted %v", f.cloud.deletedL4)
	}
	if svc := f.service(t, "edge"); svc != nil {
		t.Errorf("the Service is still there with finalizers %v", svc.Finalizers)
	}
	if evs := f.events(); !hasEvent(evs, "Normal LoadBalancerDeleted", "shop/edge") {
		t.Errorf("events %v, want LoadBalancerDeleted", evs)
	}
}
