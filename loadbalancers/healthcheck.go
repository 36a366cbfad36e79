package loadbalancers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// HealthCheckPath is the path a load balancer should health-check a
// backend on: the HTTP path of the readiness probe of the container port
// targetPort (a Service's targetPort, by number or name) resolves to. It
// is not ok when there are no pods, when a pod has no such port or no
// HTTP readiness probe on that same port (a probe on another port, over
// HTTPS or of another kind says nothing about the traffic port), or when
// the pods disagree (as during a rollout that changes the probe); the
// cloud's default then applies.
func HealthCheckPath(pods []*corev1.Pod, targetPort intstr.IntOrString) (path string, ok bool) {
	for i, pod := range pods {
		p, found := probePath(pod, targetPort)
		if !found || (i > 0 && p != path) {
			return "", false
		}
		path = p
	}
	return path, len(pods) > 0
}

// probePath finds the container serving targetPort in one pod and its
// readiness probe's path. A numeric targetPort need not be declared among
// the container's ports: a container whose probe checks that number
// serves it too.
func probePath(pod *corev1.Pod, targetPort intstr.IntOrString) (string, bool) {
	for _, c := range pod.Spec.Containers {
		number, declared := containerPort(c, targetPort)
		if number == 0 {
			continue
		}
		probe := c.ReadinessProbe
		if probe == nil || probe.HTTPGet == nil || probeTargets(c, probe.HTTPGet.Port) != number {
			if declared {
				return "", false
			}
			continue
		}
		get := probe.HTTPGet
		if get.Scheme != "" && get.Scheme != corev1.URISchemeHTTP {
			return "", false
		}
		if get.Path == "" {
			// The kubelet probes "/" when no path is given.
			return "/", true
		}
		return get.Path, true
	}
	return "", false
}

// containerPort resolves targetPort within a container: the port number,
// and whether the container declares it. A name the container does not
// declare gives 0.
func containerPort(c corev1.Container, port intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (port.Type == intstr.String && cp.Name != "" && cp.Name == port.StrVal) ||
			(port.Type != intstr.String && cp.ContainerPort == port.IntVal) {
			return cp.ContainerPort, true
		}
	}
	if port.Type == intstr.String {
		return 0, false
	}
	return port.IntVal, false
}

// probeTargets resolves a probe's port (number or name) within its
// container; 0 when a name does not resolve.
func probeTargets(c corev1.Container, port intstr.IntOrString) int32 {
	if port.Type != intstr.String {
		return port.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}
