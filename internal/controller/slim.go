package controller

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SlimPod keeps only what podlb reads of a pod, so that caching every pod
// of a large cluster costs a fraction of the full objects: no env, volumes,
// images, managed fields or container statuses.
func SlimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: slimMeta(&p.ObjectMeta),
		Spec: corev1.PodSpec{
			NodeName:                      p.Spec.NodeName,
			ReadinessGates:                p.Spec.ReadinessGates,
			TerminationGracePeriodSeconds: p.Spec.TerminationGracePeriodSeconds,
		},
		Status: corev1.PodStatus{
			Phase:      p.Status.Phase,
			Conditions: p.Status.Conditions,
			PodIP:      p.Status.PodIP,
			PodIPs:     p.Status.PodIPs,
		},
	}
	for _, c := range p.Spec.Containers {
		sc := corev1.Container{Name: c.Name}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			sc.Lifecycle = &corev1.Lifecycle{PreStop: c.Lifecycle.PreStop}
		}
		slim.Spec.Containers = append(slim.Spec.Containers, sc)
	}
	return slim, nil
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

func slimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:                       m.Name,
		Namespace:                  m.Namespace,
		UID:                        m.UID,
		ResourceVersion:            m.ResourceVersion,
		Generation:                 m.Generation,
		Labels:                     m.Labels,
		DeletionTimestamp:          m.DeletionTimestamp,
		DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
		OwnerReferences:            m.OwnerReferences,
	}
}
