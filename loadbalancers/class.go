package loadbalancers

import (
	networkingv1 "k8s.io/api/networking/v1"
)

const (
	// IngressController is the spec.controller of the IngressClasses
	// podlb serves.
	IngressController = "podlb.io/ingress"
	// LoadBalancerClass is the spec.loadBalancerClass of the
	// type: LoadBalancer Services podlb serves.
	LoadBalancerClass = "podlb.io/load-balancer"
	// legacyClassAnnotation predates spec.ingressClassName; Kubernetes
	// deprecates it but still accepts it.
	legacyClassAnnotation = "kubernetes.io/ingress.class"
)

// ServesIngress reports whether podlb serves ing, given the cluster's
// IngressClasses. The first rule that applies decides:
//
//  1. spec.ingressClassName set: ours when it names a class whose
//     spec.controller is IngressController. A name without a class is not
//     ours (the class may be created later; the Ingress is then re-read).
//  2. The legacy annotation kubernetes.io/ingress.class set: ours when it
//     names such a class, by the class's name.
//  3. Neither set: ours when exactly one class carries the annotation
//     ingressclass.kubernetes.io/is-default-class "true" and that class is
//     ours. With several default classes no controller can claim the
//     Ingress (Kubernetes refuses to create such Ingresses for the same
//     reason), so podlb does not either.
func ServesIngress(ing *networkingv1.Ingress, classes []networkingv1.IngressClass) bool {
	if name := ing.Spec.IngressClassName; name != nil {
		return isOurs(classes, *name)
	}
	if name, ok := ing.Annotations[legacyClassAnnotation]; ok {
		return isOurs(classes, name)
	}
	var defaults []*networkingv1.IngressClass
	for i := range classes {
		if classes[i].Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" {
			defaults = append(defaults, &classes[i])
		}
	}
	return len(defaults) == 1 && defaults[0].Spec.Controller == IngressController
}

// isOurs reports whether the class called name exists and is podlb's.
func isOurs(classes []networkingv1.IngressClass, name string) bool {
	for _, c := range classes {
		if c.Name == name {
			return c.Spec.Controller == IngressController
		}
	}
	return false
}
