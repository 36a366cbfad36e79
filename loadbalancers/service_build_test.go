package loadbalancers

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/providers"
)

type svcMod func(*corev1.Service)

// lbService is a Service of type LoadBalancer of podlb's class, created
// at epoch plus minute.
func lbService(ns, name string, minute int, mods ...svcMod) *corev1.Service {
	class := LoadBalancerClass
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(minute) * time.Minute))},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class, Selector: map[string]string{"app": name}},
	}
	for _, m := range mods {
		m(svc)
	}
	return svc
}

func ports(ps ...corev1.ServicePort) svcMod {
	return func(s *corev1.Service) { s.Spec.Ports = append(s.Spec.Ports, ps...) }
}

func svcAnnotation(k, v string) svcMod {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func udp(name string, number int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: number, TargetPort: intstr.FromInt32(number), Protocol: corev1.ProtocolUDP}
}

func TestServesServiceOnlyTypeLoadBalancerOfPodlbsClass(t *testing.T) {
	other := "example.com/lb"
	for _, c := range []struct {
		name string
		svc  *corev1.Service
		want bool
	}{
		{"podlb's class", lbService("shop", "web", 0), true},
		{"no class: the cloud's own controller", lbService("shop", "web", 0, func(s *corev1.Service) { s.Spec.LoadBalancerClass = nil }), false},
		{"another class", lbService("shop", "web", 0, func(s *corev1.Service) { s.Spec.LoadBalancerClass = &other }), false},
		{"ClusterIP", lbService("shop", "web", 0, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), false},
	} {
		if got := ServesService(c.svc); got != c.want {
			t.Errorf("%s: ServesService = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestServiceGroupSharesPortsFirstComeAndNamesTheHolder(t *testing.T) {
	group := `{"group": "edge"}`
	// Given out of order: the group orders by creation time.
	late := lbService("shop", "late", 3, svcAnnotation(AWSAnnotation, group), ports(port("web", 80, intstr.FromInt32(8080)), port("alt", 8443, intstr.FromInt32(8443))))
	first := lbService("shop", "first", 1, svcAnnotation(AWSAnnotation, group), ports(port("web", 80, intstr.FromString("http")), port("", 443, intstr.FromInt32(0))))
	dns := lbService("infra", "dns", 2, svcAnnotation(AWSAnnotation, group), ports(port("dns-tcp", 53, intstr.FromInt32(5353)), udp("dns", 53)))
	for _, s := range []*corev1.Service{late, first, dns} {
		if key, ok := ServiceGroupOf(s); !ok || key != (providers.BalancerKey{Name: "edge"}) {
			t.Fatalf("%s: group %v %v", s.Name, key, ok)
		}
	}
	lb, problems := BuildServiceGroup("edge", []*corev1.Service{late, first, dns})

	if want := []string{"shop/first", "infra/dns", "shop/late"}; !reflect.DeepEqual(names(lb.Members), want) {
		t.Errorf("members %v, want %v", names(lb.Members), want)
	}
	var got []string
	for _, l := range lb.Listeners {
		target := l.Backend.TargetPort
		got = append(got, l.Backend.String()+" "+l.Protocol+" on "+itoa(l.Port)+" -> "+target.String())
	}
	want := []string{
		"infra/dns:53 TCP on 53 -> 5353",
		"infra/dns:53 UDP on 53 -> 53",
		"shop/first:80 TCP on 80 -> http",
		// An unset targetPort is the port itself.
		"shop/first:443 TCP on 443 -> 443",
		"shop/late:8443 TCP on 8443 -> 8443",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("listeners\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(problems) != 1 || problems[0].Object != nn("shop", "late") || problems[0].Field != "spec.ports[0]" ||
		!strings.Contains(problems[0].Message, "port 80") || !strings.Contains(problems[0].Message, "shop/first") {
		t.Errorf("problems %v, want late's port 80 refused naming shop/first", problems)
	}

	// The holder leaving frees the port for the next in line.
	lb, problems = BuildServiceGroup("edge", []*corev1.Service{late, dns})
	if len(problems) != 0 || lb.Listeners[2].Backend.Service != "late" || lb.Listeners[2].Port != 80 {
		t.Errorf("without the holder: listeners %+v, problems %v", lb.Listeners, problems)
	}
}

func TestServiceGroupOrderAnnotationAndIgnoredTargetAnnotations(t *testing.T) {
	a := lbService("shop", "a", 1, ports(port("", 80, intstr.FromInt32(80))))
	b := lbService("shop", "b", 2, svcAnnotation(GroupOrderAnnotation, "-1"), ports(port("", 80, intstr.FromInt32(80))),
		svcAnnotation("podlb.io/aws-target-groups", `{"80": {"create": {}}}`))
	lb, problems := BuildServiceGroup("g", []*corev1.Service{a, b})
	if lb.Members[0] != nn("shop", "b") || len(lb.Listeners) != 1 || lb.Listeners[0].Backend.Service != "b" {
		t.Errorf("group-order -1 goes first: members %v listeners %+v", lb.Members, lb.Listeners)
	}
	var fields []string
	for _, p := range problems {
		fields = append(fields, p.Object.Name+" "+p.Field)
	}
	if want := []string{"b metadata.annotations[podlb.io/aws-target-groups]", "a spec.ports[0]"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("problems %v, want %v", problems, want)
	}
}

func TestListenerBindingsOnePerServicePortKeyedByTheBalancer(t *testing.T) {
	dns := lbService("infra", "dns", 0, ports(port("dns-tcp", 53, intstr.FromInt32(5353)), udp("dns", 53), port("metrics", 9153, intstr.FromString("metrics"))))
	lb, _ := BuildServiceGroup("infra/dns", []*corev1.Service{dns})
	key := ServiceBalancerKey(providers.BalancerKey{Namespace: "infra", Name: "dns"})
	// The cloud served 53 (TCP and UDP on one group) and refused 9153.
	specs := map[string]providers.Spec{"infra/dns:53": fakeSpec("tg-53")}
	got := ListenerBindings("aws", "c1", key, lb, specs)
	bs := got[nn("infra", "dns")]
	if len(got) != 1 || len(bs) != 1 {
		t.Fatalf("bindings %v, want one for port 53", got)
	}
	b := bs[0]
	want := providers.BindingKey{Namespace: "infra", Service: "dns", Provider: "aws", Port: 53, Balancer: "service:infra/dns"}
	if b.Key != want || b.TargetPort != 5353 || b.Protocol != "TCP" || b.PortName != "dns-tcp" || b.Mode != providers.ReadyWhenHealthy {
		t.Errorf("binding %+v, want key %v, target port 5353, TCP, dns-tcp, ready when healthy", b, want)
	}
	if !IsServiceBalancer(b.Key.Balancer) || IsServiceBalancer("infra/dns") {
		t.Error("a Service balancer is told apart from an Ingress group of the same name")
	}

	refused := refusedProblems("gcp", lb, map[string]string{"53/UDP": "no UDP here"}, map[nnKey]*corev1.Service{nn("infra", "dns"): dns})
	if len(refused) != 1 || refused[0].Field != "spec.ports[1]" || !strings.Contains(refused[0].Message, "gcp: port 53/UDP gets no listener: no UDP here") {
		t.Errorf("refused problems %v", refused)
	}
}

func TestServiceVersionFollowsWhatDecidesTheBindings(t *testing.T) {
	base := lbService("shop", "web", 0, ports(port("", 80, intstr.FromInt32(8080))))
	v := ServiceVersion(base)
	same := base.DeepCopy()
	same.Annotations = map[string]string{"podlb.io/status": "{}", "unrelated": "x"}
	same.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "lb.example.com"}}
	if ServiceVersion(same) != v {
		t.Error("status and unrelated annotations changed the version")
	}
	for name, mod := range map[string]svcMod{
		"port":       func(s *corev1.Service) { s.Spec.Ports[0].Port = 81 },
		"selector":   func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "other"} },
		"annotation": svcAnnotation(GCPAnnotation, `{}`),
		"type":       func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP },
	} {
		c := base.DeepCopy()
		mod(c)
		if ServiceVersion(c) == v {
			t.Errorf("a new %s kept the version", name)
		}
	}
}

type fakeSpec string

func (s fakeSpec) Summary() string { return string(s) }

func names(ns []nnKey) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.String()
	}
	return out
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

type nnKey = types.NamespacedName
