package targets

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

// Desired is a target podlb wants registered, with the pod behind it.
type Desired struct {
	providers.Target
	Pod types.NamespacedName
	UID types.UID
}

// NodeInfo is what a provider needs to know of a pod's node.
type NodeInfo struct {
	Zone     string
	Instance string
	// Deleting is true once the node is being deleted: its pods are about
	// to go and are no longer targets.
	Deleting bool
}

// Lookups gives DesiredTargets read access to the caches.
type Lookups struct {
	Pod  func(namespace, name string) *corev1.Pod
	Node func(name string) (NodeInfo, bool)
	// Stopping, when set, is told of each endpoint of a terminating pod
	// (which is left out) with its target, to learn when it is killed.
	Stopping func(key providers.TargetKey, pod *corev1.Pod)
}

// Slice is what desired targets are built from of an EndpointSlice; the
// cache holds slices in this form (see SliceOf).
type Slice struct {
	Namespace   string
	AddressType discoveryv1.AddressType
	Ports       []discoveryv1.EndpointPort
	// Endpoints are the slice's endpoints that are pods with an address.
	Endpoints []SliceEndpoint
}

// SliceEndpoint is one pod endpoint of a Slice.
type SliceEndpoint struct {
	// Address is the endpoint's first address, the one registered.
	Address netip.Addr
	Pod     string
	// UID is the pod's, when the slice names it.
	UID types.UID
	// Node and Zone are the slice's, empty when it names none.
	Node, Zone  string
	Terminating bool
}

// SliceOf keeps of s what desired targets read: its ports and, of each
// endpoint that is a pod with an address, the first address, the pod,
// node and zone (shared strings) and whether it terminates. Hints,
// hostnames, the deprecated topology, the ready and serving conditions
// (a pod's own conditions decide) and endpoints of other kinds go.
func SliceOf(s *discoveryv1.EndpointSlice) *Slice {
	out := &Slice{Namespace: providers.Intern(s.Namespace), AddressType: discoveryv1.AddressType(providers.Intern(string(s.AddressType))), Ports: s.Ports}
	n := 0
	for i := range s.Endpoints {
		if isPodEndpoint(&s.Endpoints[i]) {
			n++
		}
	}
	// Sized exactly: the cache holds one slice per EndpointSlice.
	out.Endpoints = make([]SliceEndpoint, 0, n)
	for i := range s.Endpoints {
		ep := &s.Endpoints[i]
		if !isPodEndpoint(ep) {
			continue
		}
		addr, err := netip.ParseAddr(ep.Addresses[0])
		if err != nil {
			continue
		}
		out.Endpoints = append(out.Endpoints, SliceEndpoint{Address: addr, Pod: ep.TargetRef.Name, UID: ep.TargetRef.UID,
			Node: providers.Intern(deref(ep.NodeName)), Zone: providers.Intern(deref(ep.Zone)),
			Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating})
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func isPodEndpoint(ep *discoveryv1.Endpoint) bool {
	return ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && len(ep.Addresses) > 0
}

// DesiredTargets computes the targets of one binding from the Service's
// EndpointSlices. Whether an endpoint is a target is decided by its pod's
// own conditions, not the slice's ready flag (which
// publishNotReadyAddresses sets for every pod): a pod that is Ready, or
// whose containers are ready and that waits only for podlb's gate
// (otherwise the gate could never turn True). Terminating endpoints and
// pods, and pods on nodes that are gone or being deleted, are left out so
// they are deregistered as soon as termination starts.
func DesiredTargets(b *providers.Binding, slices []*Slice, look Lookups) []Desired {
	seen := map[providers.TargetKey]bool{}
	var out []Desired
	for _, slice := range slices {
		if slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(slice, b.PortName)
		if !ok {
			continue
		}
		for i := range slice.Endpoints {
			ep := &slice.Endpoints[i]
			if ep.Terminating && look.Stopping == nil {
				continue
			}
			pod := look.Pod(slice.Namespace, ep.Pod)
			if pod == nil {
				continue
			}
			// A slice can lag behind a pod's replacement under the same name.
			if ep.UID != "" && ep.UID != pod.UID {
				continue
			}
			t := providers.Target{IP: ep.Address, Port: port, Node: ep.Node, Zone: ep.Zone}
			if ep.Terminating || pod.DeletionTimestamp != nil {
				if look.Stopping != nil {
					look.Stopping(t.Key(), pod)
				}
				continue
			}
			if !conditionTrue(pod, corev1.PodReady) && !HeldOnlyByGate(pod) {
				continue
			}
			if t.Node == "" {
				t.Node = pod.Spec.NodeName
			}
			if look.Node != nil && t.Node != "" {
				ni, ok := look.Node(t.Node)
				if !ok || ni.Deleting {
					continue
				}
				if t.Zone == "" {
					t.Zone = ni.Zone
				}
				t.Instance = ni.Instance
			}
			if seen[t.Key()] {
				continue
			}
			seen[t.Key()] = true
			out = append(out, Desired{Target: t, Pod: types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}, UID: pod.UID})
		}
	}
	return out
}

// slicePort finds the resolved port of the named Service port in a slice.
// Slices name their ports after the Service's ports.
func slicePort(slice *Slice, name string) (int32, bool) {
	for _, p := range slice.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		if pn == name && p.Port != nil {
			return *p.Port, true
		}
	}
	return 0, false
}

// HasGate reports whether the pod lists podlb's readiness gate.
func HasGate(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == GateConditionType {
			return true
		}
	}
	return false
}

// HeldOnlyByGate reports whether the pod's containers are ready and every
// readiness gate but podlb's is True: such a pod waits for podlb alone, so
// podlb must register it for it to ever become Ready.
func HeldOnlyByGate(pod *corev1.Pod) bool {
	if !HasGate(pod) || !conditionTrue(pod, corev1.ContainersReady) {
		return false
	}
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType != GateConditionType && !conditionTrue(pod, g.ConditionType) {
			return false
		}
	}
	return true
}

func conditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	c := PodCondition(pod, t)
	return c != nil && c.Status == corev1.ConditionTrue
}

// PodCondition returns the pod's condition of type t, or nil.
func PodCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
