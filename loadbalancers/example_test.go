package loadbalancers_test

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/loadbalancers"
)

// Two Ingresses of one group: the second one's claim on /api is refused
// because the first already routes it elsewhere, and its other path stays.
func ExampleBuildIngressGroup() {
	prefix := networkingv1.PathTypePrefix
	paths := func(ps ...string) []networkingv1.HTTPIngressPath {
		var out []networkingv1.HTTPIngressPath
		for _, p := range ps {
			path, svc, _ := strings.Cut(p, ">")
			out = append(out, networkingv1.HTTPIngressPath{Path: path, PathType: &prefix, Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}},
			}})
		}
		return out
	}
	ingress := func(name string, created int, ps ...string) *networkingv1.Ingress {
		return &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, CreationTimestamp: metav1.Unix(int64(created), 0)},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "shop.example.com",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths(ps...)}}}}},
		}
	}
	services := func(namespace, name string) (*corev1.Service, bool) {
		return &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, true
	}
	lb, problems := loadbalancers.BuildIngressGroup("shop", []*networkingv1.Ingress{
		ingress("late", 2, "/api>api-v2", "/cart>cart"),
		ingress("early", 1, "/>web", "/api>api"),
	}, services)
	priorities := lb.Priorities()
	for _, r := range lb.Routes {
		fmt.Printf("%d: %s %s %s -> %s (%s)\n", priorities[r.Key()], r.Host, r.PathType, r.Path, r.Backend, r.Owner.Name)
	}
	for _, p := range problems {
		fmt.Println(p)
	}
	// Output:
	// 1: shop.example.com Prefix /cart -> shop/cart:80 (late)
	// 2: shop.example.com Prefix /api -> shop/api:80 (early)
	// 3: shop.example.com Prefix / -> shop/web:80 (early)
	// shop/late: spec.rules[0].http.paths[0]: Prefix /api on host shop.example.com already goes to shop/api:80, routed by Ingress shop/early; this path is ignored
}
