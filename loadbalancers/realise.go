package loadbalancers

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/providers"
)

// What the Ingress reconciler computes from the model without touching
// anything: the group an Ingress belongs to, the load balancer a cloud is
// asked for, the bindings of its backends, and the last good model kept
// in force while an Ingress has problems.

// GroupOf returns the balancer key of an Ingress: the group named by the
// "group" field of its cloud annotations, else the Ingress alone (its
// namespace and name). ok is false when an annotation cannot be read or
// two annotations name different groups; the caller then keeps the
// Ingress where it was.
func GroupOf(ing *networkingv1.Ingress) (key providers.BalancerKey, ok bool) {
	return groupOf(ing)
}

// groupOf is GroupOf for any annotated object (Ingress or Service).
func groupOf(obj metav1.Object) (key providers.BalancerKey, ok bool) {
	group := ""
	for _, cloud := range slices.Sorted(maps.Keys(CloudAnnotations)) {
		raw, present := obj.GetAnnotations()[CloudAnnotations[cloud]]
		if !present || strings.TrimSpace(raw) == "" {
			continue
		}
		var v struct {
			Group string `json:"group"`
		}
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return providers.BalancerKey{}, false
		}
		if v.Group != "" && group != "" && v.Group != group {
			return providers.BalancerKey{}, false
		}
		if v.Group != "" {
			group = v.Group
		}
	}
	if group != "" {
		return providers.BalancerKey{Name: group}, true
	}
	return providers.BalancerKey{Namespace: obj.GetNamespace(), Name: obj.GetName()}, true
}

// ParseBalancerKey reads what BalancerKey.String wrote.
func ParseBalancerKey(s string) (providers.BalancerKey, bool) {
	if s == "" {
		return providers.BalancerKey{}, false
	}
	if ns, name, found := strings.Cut(s, "/"); found {
		return providers.BalancerKey{Namespace: ns, Name: name}, true
	}
	return providers.BalancerKey{Name: s}, true
}

// HTTPBalancerOf maps the model to what a cloud is asked for: routes in
// the model's evaluation order, the default backend, and each backend
// with the health check path its pods' readiness probes give
// (healthCheckPaths, by backend ID; absent: the cloud's default).
func HTTPBalancerOf(key providers.BalancerKey, cluster string, lb *HTTPLoadBalancer, spec any, healthCheckPaths map[string]string) *providers.HTTPBalancer {
	out := &providers.HTTPBalancer{Key: key, Cluster: cluster, Backends: map[string]providers.HTTPBackend{}, Spec: spec}
	for _, be := range lb.Backends {
		hb := httpBackend(be)
		hb.HealthCheckPath = healthCheckPaths[hb.ID()]
		out.Backends[hb.ID()] = hb
	}
	for _, r := range lb.Routes {
		out.Routes = append(out.Routes, providers.HTTPRoute{Host: r.Host, Path: r.Path, Exact: r.PathType == Exact, Backend: httpBackend(r.Backend).ID(), Warming: backendID(r.Warming)})
	}
	out.Default, out.DefaultWarming = backendID(lb.DefaultBackend), backendID(lb.DefaultWarming)
	return out
}

// backendID is the provider's ID of be, "" for nil.
func backendID(be *Backend) string {
	if be == nil {
		return ""
	}
	return httpBackend(*be).ID()
}

func httpBackend(b Backend) providers.HTTPBackend {
	return providers.HTTPBackend{Namespace: b.Namespace, Service: b.Service, Port: b.Port, PortName: b.PortName}
}

// BackendBindings turns the Specs a cloud's EnsureHTTP returned, by
// backend ID, into the target bindings that register the backends' pods,
// by Service. They wait for health (the gate protects rollouts through
// the load balancer) and carry the balancer in their key, apart from the
// Service's own bindings.
func BackendBindings(cloud, cluster string, key providers.BalancerKey, lb *HTTPLoadBalancer, specs map[string]providers.Spec) map[types.NamespacedName][]*providers.Binding {
	out := map[types.NamespacedName][]*providers.Binding{}
	for _, be := range lb.Backends {
		spec, ok := specs[httpBackend(be).ID()]
		if !ok {
			continue
		}
		nn := types.NamespacedName{Namespace: be.Namespace, Name: be.Service}
		out[nn] = append(out[nn], balancerBinding(cloud, cluster, key, be, "TCP", spec))
	}
	return out
}

// balancerBinding is the binding that registers the pods behind one
// backend of a load balancer (key) on a cloud: it waits for health, as
// the gate protects rollouts through the load balancer.
func balancerBinding(cloud, cluster string, key providers.BalancerKey, be Backend, protocol string, spec providers.Spec) *providers.Binding {
	b := &providers.Binding{
		Key:      providers.BindingKey{Namespace: be.Namespace, Service: be.Service, Provider: cloud, Port: be.Port, Balancer: key.String()},
		Cluster:  cluster,
		PortName: be.PortName,
		Protocol: protocol,
		Mode:     providers.ReadyWhenHealthy,
		Spec:     spec,
		SpecRaw:  spec.Summary(),
	}
	if be.TargetPort.Type == intstr.Int {
		b.TargetPort = be.TargetPort.IntVal
	}
	return b
}

// KeepLastGood returns the model to put in force while the Ingresses in
// broken have problems: cur, plus every route of last that a broken
// Ingress contributed and cur no longer has (unless cur gives the route
// to another backend), and last's default backend when cur lost it. A
// typo in one path never tears down the rest of a load balancer; only a
// clear removal (the path deleted from a valid Ingress) does.
func KeepLastGood(cur, last *HTTPLoadBalancer, broken map[types.NamespacedName]bool) *HTTPLoadBalancer {
	if last == nil || len(broken) == 0 {
		return cur
	}
	out := *cur
	out.Routes = slices.Clone(cur.Routes)
	taken := map[RouteKey]bool{}
	for _, r := range cur.Routes {
		taken[r.Key()] = true
	}
	for _, r := range last.Routes {
		if broken[r.Owner] && !taken[r.Key()] {
			out.Routes = append(out.Routes, r)
			taken[r.Key()] = true
		}
	}
	if out.DefaultBackend == nil && last.DefaultBackend != nil {
		d := *last.DefaultBackend
		out.DefaultBackend = &d
	}
	rank := make(map[types.NamespacedName]int, len(out.Members))
	for i, m := range out.Members {
		rank[m.Ingress] = i
	}
	sortRoutes(out.Routes, rank)
	out.Backends = distinctBackends(&out)
	return &out
}

// FoundServices lists, per Ingress, the backend Services that exist:
// what the gate may trust the registry for once the group is settled.
func FoundServices(ings []*networkingv1.Ingress, services ServiceLookup) map[types.NamespacedName][]string {
	out := map[types.NamespacedName][]string{}
	for _, ing := range ings {
		nn := nameOf(ing)
		out[nn] = []string{}
		for _, name := range BackendServices(ing) {
			if _, ok := services(ing.Namespace, name); ok {
				out[nn] = append(out[nn], name)
			}
		}
		sort.Strings(out[nn])
	}
	return out
}
