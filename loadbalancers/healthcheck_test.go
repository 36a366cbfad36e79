package loadbalancers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podMod func(*corev1.Pod)

// pod has one container "app" with ports http (8080) and metrics (9090)
// and a readiness probe GET /ready on http, then applies mods.
func pod(mods ...podMod) *corev1.Pod {
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name:  "app",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/ready", Port: intstr.FromString("http"),
		}}},
	}}}}
	for _, m := range mods {
		m(p)
	}
	return p
}

func probe(f func(*corev1.HTTPGetAction)) podMod {
	return func(p *corev1.Pod) { f(p.Spec.Containers[0].ReadinessProbe.HTTPGet) }
}

func TestHealthCheckPath(t *testing.T) {
	noPorts := func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil }
	sidecar := func(p *corev1.Pod) {
		p.Spec.Containers = append([]corev1.Container{{Name: "proxy", Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}}}, p.Spec.Containers...)
	}
	cases := []struct {
		name   string
		pods   []*corev1.Pod
		target intstr.IntOrString
		path   string
		ok     bool
	}{
		{"by port name", []*corev1.Pod{pod(), pod()}, intstr.FromString("http"), "/ready", true},
		{"by port number", []*corev1.Pod{pod()}, intstr.FromInt32(8080), "/ready", true},
		{"probe port by number", []*corev1.Pod{pod(probe(func(g *corev1.HTTPGetAction) { g.Port = intstr.FromInt32(8080) }))}, intstr.FromString("http"), "/ready", true},
		{"empty probe path is /", []*corev1.Pod{pod(probe(func(g *corev1.HTTPGetAction) { g.Path = "" }))}, intstr.FromInt32(8080), "/", true},
		{"explicit HTTP scheme", []*corev1.Pod{pod(probe(func(g *corev1.HTTPGetAction) { g.Scheme = corev1.URISchemeHTTP }))}, intstr.FromInt32(8080), "/ready", true},
		{"undeclared numeric port served by the probe", []*corev1.Pod{pod(noPorts, probe(func(g *corev1.HTTPGetAction) { g.Port = intstr.FromInt32(8080) }))}, intstr.FromInt32(8080), "/ready", true},
		{"the right container among several", []*corev1.Pod{pod(sidecar)}, intstr.FromString("http"), "/ready", true},
		{"no pods", nil, intstr.FromInt32(8080), "", false},
		{"pods disagree", []*corev1.Pod{pod(), pod(probe(func(g *corev1.HTTPGetAction) { g.Path = "/v2/ready" }))}, intstr.FromInt32(8080), "", false},
		{"a pod without the port", []*corev1.Pod{pod(), pod(noPorts)}, intstr.FromString("http"), "", false},
		{"probe on another port", []*corev1.Pod{pod()}, intstr.FromString("metrics"), "", false},
		{"probe port name not declared", []*corev1.Pod{pod(probe(func(g *corev1.HTTPGetAction) { g.Port = intstr.FromString("web") }))}, intstr.FromInt32(8080), "", false},
		{"HTTPS probe", []*corev1.Pod{pod(probe(func(g *corev1.HTTPGetAction) { g.Scheme = corev1.URISchemeHTTPS }))}, intstr.FromInt32(8080), "", false},
		{"no readiness probe", []*corev1.Pod{pod(func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe = nil })}, intstr.FromInt32(8080), "", false},
		{"exec probe", []*corev1.Pod{pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].ReadinessProbe.ProbeHandler = corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}
		})}, intstr.FromInt32(8080), "", false},
		{"unknown port number", []*corev1.Pod{pod()}, intstr.FromInt32(1234), "", false},
	}
	for _, c := range cases {
		path, ok := HealthCheckPath(c.pods, c.target)
		if path != c.path || ok != c.ok {
			t.Errorf("%s: got %q, %v; want %q, %v", c.name, path, ok, c.path, c.ok)
		}
	}
}
