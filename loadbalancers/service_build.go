package loadbalancers

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// What the Service reconciler computes from Services of type
// LoadBalancer without touching anything: which Services are podlb's,
// their group, and the listeners of a group's load balancer.

// ServesService reports whether podlb provisions the load balancer of
// svc: a Service of type LoadBalancer whose spec.loadBalancerClass is
// LoadBalancerClass. Services of another class, or of none (the cloud's
// own controller serves those), are left alone.
func ServesService(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass != nil && *svc.Spec.LoadBalancerClass == LoadBalancerClass
}

// ServiceGroupOf is the balancer key of a Service of type LoadBalancer,
// as GroupOf is an Ingress's: the "group" of its cloud annotations, else
// the Service alone. ok is false while an annotation cannot be read.
func ServiceGroupOf(svc *corev1.Service) (providers.BalancerKey, bool) {
	return groupOf(svc)
}

// ServiceVersion summarises what decides a served Service's listeners
// and bindings: its type, class, ports, selector and cloud annotations.
// Services have no generation that follows annotations; the gate compares
// this instead to know whether the registry holds the Service's current
// bindings.
func ServiceVersion(svc *corev1.Service) string {
	annotations := map[string]string{}
	for _, a := range CloudAnnotations {
		if v, ok := svc.Annotations[a]; ok {
			annotations[a] = v
		}
	}
	raw, _ := json.Marshal(struct {
		Type        corev1.ServiceType
		Class       *string
		Ports       []corev1.ServicePort
		Selector    map[string]string
		Annotations map[string]string
	}{svc.Spec.Type, svc.Spec.LoadBalancerClass, svc.Spec.Ports, svc.Spec.Selector, annotations})
	return string(raw)
}

// ServiceListener is one port of a Service as a listener of its group's
// load balancer.
type ServiceListener struct {
	Port     int32
	Protocol string
	Backend  Backend
}

// ServiceLoadBalancer is the desired state of one TCP/UDP load balancer
// built from the Services of one group.
type ServiceLoadBalancer struct {
	Group string
	// Members in group order (see GroupOrderAnnotation).
	Members []types.NamespacedName
	// Listeners sorted by port, then protocol.
	Listeners []ServiceListener
}

// BuildServiceGroup builds the load balancer of one group from its
// Services (in any order). Members are ordered as an Ingress group's
// (GroupOrderAnnotation, creation time, namespace/name), and each port
// number goes to the first member that exposes it: a later member's port
// of the same number is refused with a Problem naming the holder, and
// gets no listener while the holder keeps it. One Service may expose a
// port number for both TCP and UDP. A member's target-group or NEG
// annotation is reported as ignored.
func BuildServiceGroup(group string, svcs []*corev1.Service) (*ServiceLoadBalancer, []Problem) {
	ordered, _, problems := groupOrder(svcs, "Service")
	lb := &ServiceLoadBalancer{Group: group}
	holder := map[int32]types.NamespacedName{}
	for _, svc := range ordered {
		nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		lb.Members = append(lb.Members, nn)
		for _, a := range slices.Sorted(maps.Keys(targets.KnownCloudAnnotations)) {
			if _, ok := svc.Annotations[a]; ok {
				problems = append(problems, Problem{Object: nn, Field: "metadata.annotations[" + a + "]",
					Message: "ignored: the load balancer podlb provisions for this Service makes its own target groups and NEGs"})
			}
		}
		for i, sp := range svc.Spec.Ports {
			if h, taken := holder[sp.Port]; taken && h != nn {
				problems = append(problems, Problem{Object: nn, Field: fmt.Sprintf("spec.ports[%d]", i),
					Message: fmt.Sprintf("port %d is taken on load balancer %s by Service %s; it gets no listener while that Service holds it", sp.Port, group, h)})
				continue
			}
			holder[sp.Port] = nn
			protocol := string(sp.Protocol)
			if protocol == "" {
				protocol = string(corev1.ProtocolTCP)
			}
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			lb.Listeners = append(lb.Listeners, ServiceListener{Port: sp.Port, Protocol: protocol,
				Backend: Backend{Namespace: svc.Namespace, Service: svc.Name, Port: sp.Port, PortName: sp.Name, TargetPort: target}})
		}
	}
	sort.SliceStable(lb.Listeners, func(i, j int) bool {
		a, b := lb.Listeners[i], lb.Listeners[j]
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
	return lb, problems
}

// L4BalancerOf maps the model to what a cloud is asked for.
func L4BalancerOf(key providers.BalancerKey, cluster string, lb *ServiceLoadBalancer, spec any) *providers.L4Balancer {
	out := &providers.L4Balancer{Key: key, Cluster: cluster, Spec: spec}
	for _, l := range lb.Listeners {
		out.Listeners = append(out.Listeners, providers.L4Listener{Port: l.Port, Protocol: l.Protocol, Backend: l4Backend(l.Backend)})
	}
	return out
}

func l4Backend(b Backend) providers.L4Backend {
	return providers.L4Backend{Namespace: b.Namespace, Service: b.Service, Port: b.Port, PortName: b.PortName}
}

// ListenerBindings turns the Specs a cloud's EnsureL4 returned, by
// backend ID, into the target bindings that register the listeners' pods,
// by Service, as BackendBindings does for an Ingress's backends. A
// Service port served for TCP and UDP is one binding; its protocol is the
// first listener's (TCP before UDP).
func ListenerBindings(cloud, cluster string, key providers.BalancerKey, lb *ServiceLoadBalancer, specs map[string]providers.Spec) map[types.NamespacedName][]*providers.Binding {
	out := map[types.NamespacedName][]*providers.Binding{}
	seen := map[string]bool{}
	for _, l := range lb.Listeners {
		be := l.Backend
		id := l4Backend(be).ID()
		spec, ok := specs[id]
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		nn := types.NamespacedName{Namespace: be.Namespace, Name: be.Service}
		out[nn] = append(out[nn], balancerBinding(cloud, cluster, key, be, l.Protocol, spec))
	}
	return out
}

// refusedProblems turns a cloud's refused listeners ("80/TCP" -> why) into
// Problems on the Services whose ports they are.
func refusedProblems(cloud string, lb *ServiceLoadBalancer, refused map[string]string, svcs map[types.NamespacedName]*corev1.Service) []Problem {
	var out []Problem
	for _, key := range slices.Sorted(maps.Keys(refused)) {
		for _, l := range lb.Listeners {
			if strconv.Itoa(int(l.Port))+"/"+l.Protocol != key {
				continue
			}
			nn := types.NamespacedName{Namespace: l.Backend.Namespace, Name: l.Backend.Service}
			field := "spec.ports"
			if svc := svcs[nn]; svc != nil {
				for i, sp := range svc.Spec.Ports {
					if sp.Port == l.Port && (string(sp.Protocol) == l.Protocol || (sp.Protocol == "" && l.Protocol == "TCP")) {
						field = fmt.Sprintf("spec.ports[%d]", i)
					}
				}
			}
			out = append(out, Problem{Object: nn, Field: field, Message: fmt.Sprintf("%s: port %s gets no listener: %s", cloud, key, refused[key])})
		}
	}
	return out
}
