package loadbalancers

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Fixture builders: an object with modifiers applied in order.

type ingressMod func(*networkingv1.Ingress)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ingress(ns, name string, mods ...ingressMod) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch)}}
	for _, m := range mods {
		m(ing)
	}
	return ing
}

func createdAt(minute int) ingressMod {
	return func(ing *networkingv1.Ingress) {
		ing.CreationTimestamp = metav1.NewTime(epoch.Add(time.Duration(minute) * time.Minute))
	}
}

func annotation(k, v string) ingressMod {
	return func(ing *networkingv1.Ingress) {
		if ing.Annotations == nil {
			ing.Annotations = map[string]string{}
		}
		ing.Annotations[k] = v
	}
}

func className(name string) ingressMod {
	return func(ing *networkingv1.Ingress) { ing.Spec.IngressClassName = &name }
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) ingressMod {
	return func(ing *networkingv1.Ingress) {
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{
			Host:             host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}},
		})
	}
}

func defaultBackend(svc string, port any) ingressMod {
	return func(ing *networkingv1.Ingress) { ing.Spec.DefaultBackend = serviceBackend(svc, port) }
}

func tls(secret string, hosts ...string) ingressMod {
	return func(ing *networkingv1.Ingress) {
		ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{Hosts: hosts, SecretName: secret})
	}
}

// path is one HTTP path to a Service port given as a number (int) or a
// name (string).
func path(p string, t networkingv1.PathType, svc string, port any) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: &t, Backend: *serviceBackend(svc, port)}
}

func serviceBackend(svc string, port any) *networkingv1.IngressBackend {
	ref := &networkingv1.IngressServiceBackend{Name: svc}
	switch p := port.(type) {
	case int:
		ref.Port.Number = int32(p)
	case string:
		ref.Port.Name = p
	}
	return &networkingv1.IngressBackend{Service: ref}
}

const (
	exact    = networkingv1.PathTypeExact
	prefix   = networkingv1.PathTypePrefix
	implSpec = networkingv1.PathTypeImplementationSpecific
)

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func port(name string, number int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: number, TargetPort: target, Protocol: corev1.ProtocolTCP}
}

// lookup serves the given Services.
func lookup(svcs ...*corev1.Service) ServiceLookup {
	m := map[types.NamespacedName]*corev1.Service{}
	for _, s := range svcs {
		m[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	return func(ns, name string) (*corev1.Service, bool) {
		s, ok := m[types.NamespacedName{Namespace: ns, Name: name}]
		return s, ok
	}
}

func nn(ns, name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

// Services of the "shop" namespace most tests use.
var shopServices = lookup(
	service("shop", "web", port("http", 80, intstr.FromString("http")), port("admin", 8080, intstr.FromInt32(9090))),
	service("shop", "api", port("", 8000, intstr.FromInt32(8000))),
	service("shop", "static", port("http", 80, intstr.IntOrString{})),
	service("shop", "dns", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
	&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "external"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}},
	service("blog", "web", port("http", 80, intstr.FromInt32(8080))),
)

var (
	webHTTP  = Backend{Namespace: "shop", Service: "web", Port: 80, PortName: "http", TargetPort: intstr.FromString("http")}
	webAdmin = Backend{Namespace: "shop", Service: "web", Port: 8080, PortName: "admin", TargetPort: intstr.FromInt32(9090)}
	api      = Backend{Namespace: "shop", Service: "api", Port: 8000, TargetPort: intstr.FromInt32(8000)}
	static   = Backend{Namespace: "shop", Service: "static", Port: 80, PortName: "http", TargetPort: intstr.FromInt32(80)}
	blogWeb  = Backend{Namespace: "blog", Service: "web", Port: 80, PortName: "http", TargetPort: intstr.FromInt32(8080)}
)
