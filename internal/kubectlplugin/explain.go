package kubectlplugin

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/targets"
)

func (e *env) explain(ctx context.Context, arg string) error {
	kind, name, err := splitObject(arg, "pod")
	if err != nil {
		return err
	}
	if kind != "pod" && kind != "pods" && kind != "po" {
		return fmt.Errorf("explain: %q is not a pod (explain pod/NAME)", arg)
	}
	pod, err := e.client.CoreV1().Pods(e.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	svcs, err := selectingServices(ctx, e, pod)
	if err != nil {
		return err
	}
	return writeExplanation(e.out, pod, svcs, e.now)
}

// selectingServices lists the Services podlb acts on (annotated, or of
// type LoadBalancer with its class) whose selector matches the pod.
func selectingServices(ctx context.Context, e *env, pod *corev1.Pod) ([]corev1.Service, error) {
	list, err := e.client.CoreV1().Services(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []corev1.Service
	for _, svc := range list.Items {
		if podlbService(&svc) && selects(&svc, pod) {
			out = append(out, svc)
		}
	}
	return out, nil
}

func selects(svc *corev1.Service, pod *corev1.Pod) bool {
	return len(svc.Spec.Selector) > 0 && labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

func writeExplanation(w io.Writer, pod *corev1.Pod, svcs []corev1.Service, now time.Time) error {
	gated := targets.HasGate(pod)
	cond := targets.PodCondition(pod, targets.GateConditionType)
	fmt.Fprintf(w, "pod %s/%s", pod.Namespace, pod.Name)
	if pod.Status.PodIP != "" {
		fmt.Fprintf(w, "  IP %s", pod.Status.PodIP)
	}
	if pod.Spec.NodeName != "" {
		fmt.Fprintf(w, "  node %s", pod.Spec.NodeName)
	}
	fmt.Fprintln(w)
	if gated {
		fmt.Fprintf(w, "gate:        %s is listed in readinessGates: the pod is Ready only once podlb sets it True\n", targets.GateConditionType)
	} else {
		fmt.Fprintf(w, "gate:        not gated: %s is not in readinessGates, so the pod turns Ready without waiting for any load balancer; podlb still registers it once it is Ready\n", targets.GateConditionType)
	}
	if cond == nil {
		fmt.Fprintln(w, "condition:   none written")
	} else {
		fmt.Fprintf(w, "condition:   %s  reason %s  since %s (%s ago)\n", cond.Status, cond.Reason,
			cond.LastTransitionTime.UTC().Format(time.RFC3339), age(now.Sub(cond.LastTransitionTime.Time)))
		if cond.Message != "" {
			fmt.Fprintf(w, "message:     %s\n", cond.Message)
		}
	}
	fmt.Fprintf(w, "waiting for: %s\n", waitingFor(cond, gated))

	if len(svcs) == 0 {
		fmt.Fprintln(w, "\nNo Service podlb acts on (podlb annotations, or type LoadBalancer of podlb's class) selects this pod: no load balancer group holds it, and a gate opens at once (NoLoadBalancer).")
		return nil
	}
	fmt.Fprintln(w, "\nServices podlb acts on selecting the pod:")
	t := table{header: []string{"SERVICE", "CLOUD", "PORT", "GROUP", "TARGET", "REJECTED"}}
	var notes []string
	for i := range svcs {
		svc := &svcs[i]
		st, err := bindingsOf(svc)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: no readable %s (%v)", svc.Name, targets.AnnotationStatus, err))
			continue
		}
		for _, b := range bindings(st) {
			target, rejected := podTarget(svc, b, pod)
			rej := yesNo(rejected != "")
			if rejected != "" {
				rej = "yes: " + rejected
			}
			group := ""
			if b.status != nil {
				group = b.status.Group
			}
			t.add(svc.Name, b.cloud, b.port, group, target, rej)
		}
		for _, p := range st.Problems {
			notes = append(notes, svc.Name+": "+p)
		}
	}
	if len(t.rows) > 0 {
		if err := t.write(w); err != nil {
			return err
		}
	}
	section(w, "Notes", notes)
	return nil
}

// podTarget is the pod's target in a binding, "ip:port" (several when
// the pod has several IPs), and the cloud's error when it refused one.
func podTarget(svc *corev1.Service, b bindingRef, pod *corev1.Pod) (target, rejected string) {
	port, ok := targetPort(svc, b.port, pod)
	if !ok {
		return "", ""
	}
	var keys []string
	for _, ip := range pod.Status.PodIPs {
		addr, err := netip.ParseAddr(ip.IP)
		if err != nil {
			continue
		}
		key := netip.AddrPortFrom(addr, uint16(port)).String()
		keys = append(keys, key)
		if b.status != nil && rejected == "" {
			rejected = b.status.Rejected[key]
		}
	}
	return strings.Join(keys, ","), rejected
}

// targetPort resolves a Service port (by number, as status keys it) to the
// pod's port, as the EndpointSlice controller does.
func targetPort(svc *corev1.Service, servicePort string, pod *corev1.Pod) (int32, bool) {
	n, err := strconv.Atoi(servicePort)
	if err != nil {
		return 0, false
	}
	for _, sp := range svc.Spec.Ports {
		if int(sp.Port) != n {
			continue
		}
		switch {
		case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
			for _, c := range pod.Spec.Containers {
				for _, cp := range c.Ports {
					if cp.Name == sp.TargetPort.StrVal && cp.Protocol == sp.Protocol {
						return cp.ContainerPort, true
					}
				}
			}
			return 0, false
		case sp.TargetPort.IntVal != 0:
			return sp.TargetPort.IntVal, true
		}
		return sp.Port, true
	}
	return 0, false
}
