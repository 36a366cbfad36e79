package loadbalancers

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ingressClass(name, controller string, isDefault bool) networkingv1.IngressClass {
	c := networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
	if isDefault {
		c.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
	}
	return c
}

func TestServesIngress(t *testing.T) {
	ours := ingressClass("podlb", IngressController, false)
	oursDefault := ingressClass("podlb", IngressController, true)
	nginx := ingressClass("nginx", "k8s.io/ingress-nginx", false)
	nginxDefault := ingressClass("nginx", "k8s.io/ingress-nginx", true)
	notDefault := ingressClass("podlb", IngressController, false)
	notDefault.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "false"}

	cases := []struct {
		name    string
		ing     *networkingv1.Ingress
		classes []networkingv1.IngressClass
		want    bool
	}{
		{"class name of our class", ingress("a", "x", className("podlb")), []networkingv1.IngressClass{ours, nginx}, true},
		{"class name of another controller's class", ingress("a", "x", className("nginx")), []networkingv1.IngressClass{ours, nginx}, false},
		{"class name without such a class", ingress("a", "x", className("podlb")), []networkingv1.IngressClass{nginx}, false},
		{"class name wins over a default class", ingress("a", "x", className("nginx")), []networkingv1.IngressClass{oursDefault, nginx}, false},
		{"class name wins over the legacy annotation", ingress("a", "x", className("nginx"), annotation(legacyClassAnnotation, "podlb")), []networkingv1.IngressClass{ours, nginx}, false},
		{"legacy annotation naming our class", ingress("a", "x", annotation(legacyClassAnnotation, "podlb")), []networkingv1.IngressClass{ours, nginx}, true},
		{"legacy annotation naming another class", ingress("a", "x", annotation(legacyClassAnnotation, "nginx")), []networkingv1.IngressClass{oursDefault, nginx}, false},
		{"legacy annotation naming no class", ingress("a", "x", annotation(legacyClassAnnotation, "gce")), []networkingv1.IngressClass{oursDefault}, false},
		{"no class, our class is the only default", ingress("a", "x"), []networkingv1.IngressClass{oursDefault, nginx}, true},
		{"no class, another controller's default", ingress("a", "x"), []networkingv1.IngressClass{ours, nginxDefault}, false},
		{"no class, two defaults", ingress("a", "x"), []networkingv1.IngressClass{oursDefault, nginxDefault}, false},
		{"no class, no default", ingress("a", "x"), []networkingv1.IngressClass{ours, nginx}, false},
		{"no class, default annotation not true", ingress("a", "x"), []networkingv1.IngressClass{notDefault}, false},
		{"no class and no classes", ingress("a", "x"), nil, false},
	}
	for _, c := range cases {
		if got := ServesIngress(c.ing, c.classes); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}
