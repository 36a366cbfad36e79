package e2eutil

import (
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/loadbalancers"
)

// IngressClass is a class podlb serves. Classes are cluster-wide: tests
// name theirs after their namespace and delete it when done.
func IngressClass(t testing.TB, k Kube, name string) string {
	t.Helper()
	k.Create(t, &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkingv1.IngressClassSpec{Controller: loadbalancers.IngressController}})
	t.Cleanup(func() { _ = k.Client.NetworkingV1().IngressClasses().Delete(ctx, name, metav1.DeleteOptions{}) })
	return name
}

// Ingress of class with the given annotations and rules.
func Ingress(ns, name, class string, annotations map[string]string, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: networkingv1.IngressSpec{IngressClassName: &class, Rules: rules}}
}

// HostRule routes host's paths.
func HostRule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

// PrefixPath sends path and everything below it to a Service port.
func PrefixPath(path, service string, port int32) networkingv1.HTTPIngressPath {
	prefix := networkingv1.PathTypePrefix
	return networkingv1.HTTPIngressPath{Path: path, PathType: &prefix, Backend: networkingv1.IngressBackend{
		Service: &networkingv1.IngressServiceBackend{Name: service, Port: networkingv1.ServiceBackendPort{Number: port}}}}
}

// GetIngress reads an Ingress; nil when it is gone.
func (k Kube) GetIngress(t testing.TB, ns, name string) *networkingv1.Ingress {
	t.Helper()
	ing, err := k.Client.NetworkingV1().Ingresses(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return ing
}

// IngressStatus reads an Ingress's podlb.io/status annotation; nil while
// there is none.
func (k Kube) IngressStatus(t testing.TB, ns, name string) *loadbalancers.IngressStatus {
	t.Helper()
	ing := k.GetIngress(t, ns, name)
	if ing == nil {
		return nil
	}
	st, err := loadbalancers.IngressStatusOf(ing)
	if err != nil {
		return nil
	}
	return st
}

// IngressServing checks that the Ingress's load balancer on cloud is
// provisioned without error and that each of backends (namespace/service:port)
// has want healthy targets.
func (k Kube) IngressServing(t testing.TB, ns, name, cloud string, want int32, backends ...string) error {
	t.Helper()
	st := k.IngressStatus(t, ns, name)
	if st == nil || st.Clouds[cloud] == nil {
		return fmt.Errorf("no %s status yet", cloud)
	}
	cs := st.Clouds[cloud]
	if cs.Error != "" {
		return fmt.Errorf("%s: %s", cloud, cs.Error)
	}
	for _, id := range backends {
		if b := cs.Backends[id]; b == nil || b.Desired != int(want) || b.Healthy != int(want) || b.Error != "" {
			return fmt.Errorf("backend %s: %+v", id, b)
		}
	}
	return nil
}
