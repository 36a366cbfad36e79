package controller

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/targets"
)

// SlimPod keeps only what podlb reads of a pod, so that caching every pod
// of a large cluster costs a fraction of the full objects: no env, volumes,
// images, managed fields, owner references, container statuses or
// containers without a preStop hook; of the
// conditions only those podlb decides by, and of their texts only the
// gate's own. Strings that repeat across pods (label keys and values,
// namespace, node, condition types) are shared, not held once per pod.
func SlimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: slimMeta(&p.ObjectMeta),
		Spec: corev1.PodSpec{
			NodeName:                      intern(p.Spec.NodeName),
			TerminationGracePeriodSeconds: p.Spec.TerminationGracePeriodSeconds,
		},
		Status: corev1.PodStatus{
			Phase:      p.Status.Phase,
			Conditions: slimConditions(p),
			PodIP:      p.Status.PodIP,
		},
	}
	if len(p.Spec.ReadinessGates) > 0 {
		slim.Spec.ReadinessGates = make([]corev1.PodReadinessGate, len(p.Spec.ReadinessGates))
		for i, g := range p.Spec.ReadinessGates {
			slim.Spec.ReadinessGates[i].ConditionType = internType(g.ConditionType)
		}
	}
	// PodIPs repeats PodIP in single-stack clusters: keep it only when it
	// says more.
	if len(p.Status.PodIPs) > 1 || (len(p.Status.PodIPs) == 1 && p.Status.PodIPs[0].IP != p.Status.PodIP) {
		slim.Status.PodIPs = p.Status.PodIPs
	}
	// Only preStop hooks are read of containers (how long a pod drains);
	// containers without one are left out.
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			slim.Spec.Containers = append(slim.Spec.Containers, corev1.Container{Name: intern(c.Name), Lifecycle: &corev1.Lifecycle{PreStop: c.Lifecycle.PreStop}})
		}
	}
	return slim, nil
}

// slimConditions keeps the conditions podlb reads: ContainersReady (when
// a pod may be registered), Ready, podlb's gate and the pod's other
// readiness gates (a pod held only by podlb's gate is registered). Only
// the gate keeps its reason and message: the gate compares them before it
// writes.
func slimConditions(p *corev1.Pod) []corev1.PodCondition {
	wanted := func(t corev1.PodConditionType) bool {
		if t == corev1.ContainersReady || t == corev1.PodReady || t == targets.GateConditionType {
			return true
		}
		for _, g := range p.Spec.ReadinessGates {
			if g.ConditionType == t {
				return true
			}
		}
		return false
	}
	var out []corev1.PodCondition
	for _, c := range p.Status.Conditions {
		if !wanted(c.Type) {
			continue
		}
		sc := corev1.PodCondition{Type: internType(c.Type), Status: corev1.ConditionStatus(intern(string(c.Status))), LastTransitionTime: c.LastTransitionTime}
		if c.Type == targets.GateConditionType {
			// The gate compares its reason and message, and paces
			// rewrites of the message by when it was last written.
			sc.Reason, sc.Message, sc.LastProbeTime = intern(c.Reason), c.Message, c.LastProbeTime
		}
		out = append(out, sc)
	}
	return out
}

// SlimNode keeps a node's name, labels and providerID; node status (images,
// conditions, capacity) is large and podlb needs none of it.
func SlimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: slimMeta(&n.ObjectMeta),
		Spec:       corev1.NodeSpec{ProviderID: n.Spec.ProviderID},
	}, nil
}

// SlimEndpointSlice keeps what the desired targets are built from: the
// ports, and per endpoint its addresses, conditions, node, zone and pod.
// Hints, hostnames and the deprecated topology go, and repeated strings
// are shared.
func SlimEndpointSlice(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	slim := &discoveryv1.EndpointSlice{
		TypeMeta:    s.TypeMeta,
		ObjectMeta:  slimMeta(&s.ObjectMeta),
		AddressType: s.AddressType,
		Ports:       s.Ports,
		Endpoints:   make([]discoveryv1.Endpoint, len(s.Endpoints)),
	}
	for i, ep := range s.Endpoints {
		out := discoveryv1.Endpoint{Addresses: ep.Addresses, Conditions: ep.Conditions, NodeName: internPtr(ep.NodeName), Zone: internPtr(ep.Zone)}
		if r := ep.TargetRef; r != nil {
			out.TargetRef = &corev1.ObjectReference{Kind: intern(r.Kind), Namespace: intern(r.Namespace), Name: r.Name, UID: r.UID}
		}
		slim.Endpoints[i] = out
	}
	return slim, nil
}

func slimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:                       m.Name,
		Namespace:                  intern(m.Namespace),
		UID:                        m.UID,
		ResourceVersion:            m.ResourceVersion,
		Generation:                 m.Generation,
		DeletionTimestamp:          m.DeletionTimestamp,
		DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
	}
	if len(m.Labels) > 0 {
		out.Labels = make(map[string]string, len(m.Labels))
		for k, v := range m.Labels {
			out.Labels[intern(k)] = intern(v)
		}
	}
	return out
}

// intern returns the one shared copy of s: pods of a Deployment repeat
// the same label keys and values, namespace and node names thousands of
// times over.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

func internType(t corev1.PodConditionType) corev1.PodConditionType {
	return corev1.PodConditionType(intern(string(t)))
}

func internPtr(s *string) *string {
	if s == nil {
		return nil
	}
	v := intern(*s)
	return &v
}
