package main

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// The Ingress app: a gated Deployment behind an Ingress for which podlb
// provisions an Application Load Balancer on each enabled cloud itself.

const ingressClass = "podlb"

// sandboxSubnets place Application Load Balancers in two zones, as AWS
// requires: the first holds every pod address.
var sandboxSubnets = []elbv2sim.Subnet{
	{ID: "subnet-05a0d0b0c000000a1", AvailabilityZone: "us-east-1a", CIDR: sandboxCIDR, Tags: elbv2sim.LoadBalancerRoleTags()},
	{ID: "subnet-05a0d0b0c000000b1", AvailabilityZone: "us-east-1b", CIDR: "100.64.0.0/24", Tags: elbv2sim.LoadBalancerRoleTags()},
}

// createIngress creates the IngressClass and the app's Ingress: every
// host and path to the app's Service.
func (s *sandbox) createIngress(ctx context.Context, a *app) error {
	class := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: ingressClass}, Spec: networkingv1.IngressClassSpec{Controller: loadbalancers.IngressController}}
	if _, err := s.cluster.Client.NetworkingV1().IngressClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		return err
	}
	annotations, err := a.loadBalancerAnnotations(s.enabled, s.cfg.timing)
	if err != nil {
		return err
	}
	prefix := networkingv1.PathTypePrefix
	name := ingressClass
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: a.lbName(), Annotations: annotations},
		Spec: networkingv1.IngressSpec{IngressClassName: &name, Rules: []networkingv1.IngressRule{{IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: a.name, Port: networkingv1.ServiceBackendPort{Name: "http"}}}}}},
		}}}},
	}
	_, err = s.cluster.Client.NetworkingV1().Ingresses(namespace).Create(ctx, ing, metav1.CreateOptions{})
	return err
}

// ingressLoadBalancers waits for podlb to provision the Ingress's load
// balancer on every enabled cloud and register its backend, and returns
// them from the Ingress's status annotation.
func (s *sandbox) ingressLoadBalancers(ctx context.Context, a *app) (map[string]*loadBalancer, error) {
	backend := fmt.Sprintf("%s/%s:%d", namespace, a.name, servicePort)
	return s.waitLoadBalancers(ctx, "Ingress "+a.lbName(), func(ctx context.Context) (map[string]*loadBalancer, string) {
		ing, err := s.cluster.Client.NetworkingV1().Ingresses(namespace).Get(ctx, a.lbName(), metav1.GetOptions{})
		if err != nil {
			return nil, err.Error()
		}
		st, err := loadbalancers.IngressStatusOf(ing)
		if err != nil {
			return nil, "no status yet"
		}
		lbs, last := map[string]*loadBalancer{}, ""
		for _, c := range s.cfg.clouds {
			if lb, why := s.ingressLoadBalancer(c, st.Clouds[c], backend); lb != nil {
				lbs[c] = lb
			} else {
				last = c + ": " + why
			}
		}
		return lbs, last
	})
}

// waitLoadBalancers polls find until it returns a load balancer for every
// enabled cloud; find says why while it does not.
func (s *sandbox) waitLoadBalancers(ctx context.Context, what string, find func(context.Context) (map[string]*loadBalancer, string)) (map[string]*loadBalancer, error) {
	const timeout = 2 * time.Minute
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		lbs, why := find(ctx)
		if len(lbs) == len(s.cfg.clouds) {
			return lbs, nil
		}
		if err := s.controllerDown(); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("podlb provisioned no load balancer for %s within %v (%s)", what, timeout, why)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ingressLoadBalancer is the load balancer a cloud's status names, with
// the group that registers backend; nil and why while it is not there.
func (s *sandbox) ingressLoadBalancer(cloud string, cs *loadbalancers.CloudStatus, backend string) (*loadBalancer, string) {
	if cs == nil {
		return nil, "no status"
	}
	if cs.Error != "" {
		return nil, cs.Error
	}
	b := cs.Backends[backend]
	if b == nil {
		return nil, "backend not bound yet"
	}
	lb := &loadBalancer{cloud: cloud}
	switch cloud {
	case "aws":
		_, name, _ := strings.Cut(cs.Details["loadBalancer"], ":loadbalancer/")
		lb.name, lb.group, lb.provisioned = name, b.Details["arn"], cs.Details["loadBalancer"]
		lb.addr = s.clouds.aws.LoadBalancerAddr(cs.Details["loadBalancer"], 80)
	case "gcp":
		// path.Base of "" is ".": a status still without the names would
		// pass for one.
		bs, rule := b.Details["backendService"], cs.Details["httpRule"]
		if bs == "" || rule == "" {
			return nil, "load balancer not serving yet"
		}
		lb.name, lb.group, lb.provisioned = path.Base(cs.Details["urlMap"]), path.Base(bs), path.Base(rule)
		lb.addr = s.clouds.gcp.ForwardingRuleAddr(path.Base(rule))
	}
	if lb.group == "" || lb.addr == "" {
		return nil, "load balancer not serving yet"
	}
	return lb, ""
}
