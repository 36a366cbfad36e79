package loadbalancers

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ServiceLookup finds a Service by namespace and name, typically in an
// informer cache.
type ServiceLookup func(namespace, name string) (*corev1.Service, bool)

// BuildIngressGroup builds the load balancer of one group from its
// Ingresses (in any order) and reports every problem found, each naming
// its Ingress and field.
//
// Members are ordered by GroupOrderAnnotation, creation time, then
// namespace/name, and claims are settled in that order: the first member
// to claim a route (host, path, path type), the default backend or a TLS
// host keeps it; a later member claiming it with a different backend or
// Secret is refused with a Problem naming the holder, and one claiming it
// identically adds nothing. A refused or broken path never drops the
// member's other paths.
//
// Path types: Exact and Prefix as Kubernetes defines them;
// ImplementationSpecific is treated as Prefix (an empty path then means
// "/"). Paths must start with "/" and must not contain '*' or '?', which
// the clouds' path patterns read as wildcards.
//
// A path whose backend cannot be resolved (unknown Service or port, a
// resource backend, a UDP port) is left out with a Problem. The caller
// decides what a group with problems means for the load balancer already
// in place.
func BuildIngressGroup(group string, ings []*networkingv1.Ingress, services ServiceLookup) (*HTTPLoadBalancer, []Problem) {
	b := &groupBuilder{
		lb:       &HTTPLoadBalancer{Group: group, TLSHosts: map[string]TLSHost{}},
		services: services,
		routes:   map[RouteKey]int{},
	}
	ordered := b.orderMembers(ings)
	for _, ing := range ordered {
		b.addIngress(ing)
	}
	rank := make(map[types.NamespacedName]int, len(b.lb.Members))
	for i, m := range b.lb.Members {
		rank[m.Ingress] = i
	}
	sortRoutes(b.lb.Routes, rank)
	b.lb.Backends = distinctBackends(b.lb)
	return b.lb, b.problems
}

type groupBuilder struct {
	lb       *HTTPLoadBalancer
	services ServiceLookup
	problems []Problem
	// routes indexes lb.Routes by key while building.
	routes map[RouteKey]int
	// defaultOwner holds lb.DefaultBackend.
	defaultOwner types.NamespacedName
}

func (b *groupBuilder) problem(owner types.NamespacedName, field, format string, args ...any) {
	b.problems = append(b.problems, Problem{Object: owner, Field: field, Message: fmt.Sprintf(format, args...)})
}

// orderMembers sorts the Ingresses into group order and records the
// members.
func (b *groupBuilder) orderMembers(ings []*networkingv1.Ingress) []*networkingv1.Ingress {
	present := make([]*networkingv1.Ingress, 0, len(ings))
	for _, ing := range ings {
		if ing != nil {
			present = append(present, ing)
		}
	}
	out, orders, problems := groupOrder(present, "Ingress")
	b.problems = append(b.problems, problems...)
	for i, ing := range out {
		b.lb.Members = append(b.lb.Members, Member{Ingress: nameOf(ing), Order: orders[i], Created: ing.CreationTimestamp.Time})
	}
	// Problems so far were found in input order; report them in group order.
	sortProblemsByMember(b.problems, b.lb.Members)
	return out
}

func sortProblemsByMember(ps []Problem, members []Member) {
	rank := make(map[types.NamespacedName]int, len(members))
	for i, m := range members {
		rank[m.Ingress] = i
	}
	sort.SliceStable(ps, func(i, j int) bool { return rank[ps[i].Object] < rank[ps[j].Object] })
}

func (b *groupBuilder) addIngress(ing *networkingv1.Ingress) {
	owner := nameOf(ing)
	if ib := ing.Spec.DefaultBackend; ib != nil {
		b.addDefaultBackend(owner, ib)
	}
	for i, t := range ing.Spec.TLS {
		b.addTLS(owner, i, t)
	}
	for i, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for j, p := range rule.HTTP.Paths {
			b.addPath(owner, rule.Host, fmt.Sprintf("spec.rules[%d].http.paths[%d]", i, j), p)
		}
	}
}

func (b *groupBuilder) addDefaultBackend(owner types.NamespacedName, ib *networkingv1.IngressBackend) {
	const field = "spec.defaultBackend"
	backend, ok := b.resolve(owner, field, ib)
	if !ok {
		return
	}
	switch held := b.lb.DefaultBackend; {
	case held == nil:
		b.lb.DefaultBackend = &backend
		b.defaultOwner = owner
	case !held.same(backend):
		b.problem(owner, field, "the group's default backend is already %s, set by Ingress %s; this one is ignored", held, b.defaultOwner)
	}
}

func (b *groupBuilder) addTLS(owner types.NamespacedName, i int, t networkingv1.IngressTLS) {
	want := TLSHost{Secret: types.NamespacedName{Namespace: owner.Namespace, Name: t.SecretName}, Owner: owner}
	hosts, fields := t.Hosts, make([]string, len(t.Hosts))
	for j := range hosts {
		fields[j] = fmt.Sprintf("spec.tls[%d].hosts[%d]", i, j)
	}
	if len(hosts) == 0 {
		hosts, fields = []string{""}, []string{fmt.Sprintf("spec.tls[%d]", i)}
	}
	for j, host := range hosts {
		held, taken := b.lb.TLSHosts[host]
		switch {
		case !taken:
			b.lb.TLSHosts[host] = want
		case held.Secret != want.Secret:
			b.problem(owner, fields[j], "%s already uses %s, listed by Ingress %s; this entry is ignored", hostText(host), secretText(held.Secret), held.Owner)
		}
	}
}

func (b *groupBuilder) addPath(owner types.NamespacedName, host, field string, p networkingv1.HTTPIngressPath) {
	route := Route{Host: host, Path: p.Path, Owner: owner}
	switch {
	case p.PathType == nil:
		b.problem(owner, field+".pathType", "is required: Exact, Prefix or ImplementationSpecific")
		return
	case *p.PathType == networkingv1.PathTypeExact:
		route.PathType = Exact
	case *p.PathType == networkingv1.PathTypePrefix:
		route.PathType = Prefix
	case *p.PathType == networkingv1.PathTypeImplementationSpecific:
		route.PathType = Prefix
		if route.Path == "" {
			route.Path = "/"
		}
	default:
		b.problem(owner, field+".pathType", "unknown path type %q; want Exact, Prefix or ImplementationSpecific", *p.PathType)
		return
	}
	switch {
	case !strings.HasPrefix(route.Path, "/"):
		b.problem(owner, field+".path", "%q must start with /", p.Path)
		return
	case strings.ContainsAny(route.Path, "*?"):
		b.problem(owner, field+".path", "%q contains * or ?, which cloud load balancers read as wildcards; podlb matches paths literally and ignores this one", p.Path)
		return
	}
	if route.PathType == Prefix {
		// Kubernetes ignores a trailing slash on prefixes; one form keeps
		// "/a" and "/a/" from becoming two competing routes.
		if trimmed := strings.TrimRight(route.Path, "/"); trimmed != "" {
			route.Path = trimmed
		} else {
			route.Path = "/"
		}
	}
	backend, ok := b.resolve(owner, field+".backend", &p.Backend)
	if !ok {
		return
	}
	route.Backend = backend
	if i, taken := b.routes[route.Key()]; taken {
		if held := b.lb.Routes[i]; !held.Backend.same(backend) {
			b.problem(owner, field, "%s %s on %s already goes to %s, routed by Ingress %s; this path is ignored",
				route.PathType, route.Path, hostText(host), held.Backend, held.Owner)
		}
		return
	}
	b.routes[route.Key()] = len(b.lb.Routes)
	b.lb.Routes = append(b.lb.Routes, route)
}

// resolve turns an Ingress backend into the Service port it names.
func (b *groupBuilder) resolve(owner types.NamespacedName, field string, ib *networkingv1.IngressBackend) (Backend, bool) {
	if ib.Resource != nil {
		b.problem(owner, field+".resource", "%s %q is a resource backend; podlb routes only to Services", ib.Resource.Kind, ib.Resource.Name)
		return Backend{}, false
	}
	if ib.Service == nil {
		b.problem(owner, field+".service", "is required")
		return Backend{}, false
	}
	ref := ib.Service
	svc, ok := b.services(owner.Namespace, ref.Name)
	if !ok {
		b.problem(owner, field+".service.name", "Service %s/%s not found", owner.Namespace, ref.Name)
		return Backend{}, false
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		b.problem(owner, field+".service.name", "Service %s/%s is of type ExternalName; a load balancer needs a Service with pods behind it", owner.Namespace, ref.Name)
		return Backend{}, false
	}
	var sp *corev1.ServicePort
	portField := field + ".service.port.number"
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if (ref.Port.Name != "" && p.Name == ref.Port.Name) || (ref.Port.Name == "" && p.Port == ref.Port.Number) {
			sp = p
			break
		}
	}
	if ref.Port.Name != "" {
		portField = field + ".service.port.name"
	}
	switch {
	case sp == nil && ref.Port.Name != "":
		b.problem(owner, portField, "Service %s/%s has no port named %q (it has %s)", owner.Namespace, ref.Name, ref.Port.Name, portList(svc))
		return Backend{}, false
	case sp == nil:
		b.problem(owner, portField, "Service %s/%s has no port %d (it has %s)", owner.Namespace, ref.Name, ref.Port.Number, portList(svc))
		return Backend{}, false
	case sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP:
		b.problem(owner, portField, "port %d of Service %s/%s is %s; HTTP load balancers need TCP", sp.Port, owner.Namespace, ref.Name, sp.Protocol)
		return Backend{}, false
	}
	target := sp.TargetPort
	if target == (intstr.IntOrString{}) {
		// The API server defaults an unset targetPort to the port itself.
		target = intstr.FromInt32(sp.Port)
	}
	return Backend{Namespace: owner.Namespace, Service: ref.Name, Port: sp.Port, PortName: sp.Name, TargetPort: target}, true
}

// portList names a Service's ports for messages: "80 (http), 443".
func portList(svc *corev1.Service) string {
	if len(svc.Spec.Ports) == 0 {
		return "no ports"
	}
	parts := make([]string, len(svc.Spec.Ports))
	for i, p := range svc.Spec.Ports {
		parts[i] = strconv.Itoa(int(p.Port))
		if p.Name != "" {
			parts[i] += " (" + p.Name + ")"
		}
	}
	return strings.Join(parts, ", ")
}

func hostText(host string) string {
	if host == "" {
		return "every host"
	}
	return "host " + host
}

func secretText(s types.NamespacedName) string {
	if s.Name == "" {
		return "the cloud's certificates (no secretName)"
	}
	return "Secret " + s.String()
}

// distinctBackends lists the Service ports the load balancer sends to,
// once each, sorted.
func distinctBackends(lb *HTTPLoadBalancer) []Backend {
	var all []Backend
	for _, be := range []*Backend{lb.DefaultBackend, lb.DefaultWarming} {
		if be != nil {
			all = append(all, *be)
		}
	}
	for _, r := range lb.Routes {
		all = append(all, r.Backend)
		if r.Warming != nil {
			all = append(all, *r.Warming)
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, c := all[i], all[j]
		if a.Namespace != c.Namespace {
			return a.Namespace < c.Namespace
		}
		if a.Service != c.Service {
			return a.Service < c.Service
		}
		return a.Port < c.Port
	})
	var out []Backend
	for _, be := range all {
		if len(out) == 0 || !out[len(out)-1].same(be) {
			out = append(out, be)
		}
	}
	return out
}

// BackendServices lists, sorted and once each, the names of the Services
// an Ingress's default backend and paths name (in the Ingress's
// namespace), whether or not they resolve.
func BackendServices(ing *networkingv1.Ingress) []string {
	var out []string
	add := func(ib *networkingv1.IngressBackend) {
		if ib != nil && ib.Service != nil && ib.Service.Name != "" {
			out = append(out, ib.Service.Name)
		}
	}
	add(ing.Spec.DefaultBackend)
	for _, rule := range ing.Spec.Rules {
		if rule.HTTP == nil {
			continue
		}
		for i := range rule.HTTP.Paths {
			add(&rule.HTTP.Paths[i].Backend)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}
