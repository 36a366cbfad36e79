package loadbalancers

import (
	"fmt"
	"slices"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// HoldSwitches returns the model to put in the clouds: cur, except that a
// route, or the default, whose traffic routed (the model last put in the
// clouds) sent to a backend that still serves, and which cur gives to a
// backend that does not serve yet, keeps its backend until the new one
// serves. The new backend rides along as the route's Warming backend: its
// pods are registered and judged while the old ones take the traffic, so
// an edit that moves a path never sends its requests to pods nobody has
// checked. It returns what is held, for status, one line per route.
//
// New routes are not held: until their backend serves, requests they
// match fail rather than go where they went before.
func HoldSwitches(cur, routed *HTTPLoadBalancer, serving func(Backend) bool) (*HTTPLoadBalancer, []string) {
	if routed == nil {
		return cur, nil
	}
	before := make(map[RouteKey]Backend, len(routed.Routes))
	for _, r := range routed.Routes {
		before[r.Key()] = r.Backend
	}
	hold := func(from *Backend, to Backend) bool {
		return from != nil && !from.same(to) && !serving(to) && serving(*from)
	}
	out := *cur
	out.Routes = slices.Clone(cur.Routes)
	var held []string
	for i, r := range out.Routes {
		from, ok := before[r.Key()]
		if !ok || !hold(&from, r.Backend) {
			continue
		}
		to := r.Backend
		out.Routes[i].Backend, out.Routes[i].Warming = from, &to
		held = append(held, fmt.Sprintf("%s%s stays on %s until %s serves", r.Host, r.Path, from, to))
	}
	if cur.DefaultBackend != nil && hold(routed.DefaultBackend, *cur.DefaultBackend) {
		from, to := *routed.DefaultBackend, *cur.DefaultBackend
		out.DefaultBackend, out.DefaultWarming = &from, &to
		held = append(held, fmt.Sprintf("the default backend stays %s until %s serves", from, to))
	}
	if len(held) == 0 {
		return cur, nil
	}
	out.Backends = distinctBackends(&out)
	return &out, held
}

// Serves reports whether a backend binding takes traffic well enough for
// a route to move to it: at least one target, and at least half of those
// it wants, healthy.
func Serves(st *targets.BindingStatus) bool {
	return st != nil && st.Healthy > 0 && 2*st.Healthy >= st.Desired
}

// servingOn reports whether a backend serves on every one of the clouds,
// by the status of its bindings for the balancer.
func (r *IngressReconciler) servingOn(key providers.BalancerKey, clouds []string) func(Backend) bool {
	return func(be Backend) bool {
		for _, cloud := range clouds {
			k := providers.BindingKey{Namespace: be.Namespace, Service: be.Service, Provider: cloud, Port: be.Port, Balancer: key.String()}
			if !Serves(r.Registry.Status(k)) {
				return false
			}
		}
		return len(clouds) > 0
	}
}
