package kubectlplugin

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
)

// waitingFor says in one line what a pod's gate waits for, from the
// condition podlb wrote (nil when there is none) and whether the pod lists
// the gate at all.
func waitingFor(cond *corev1.PodCondition, gated bool) string {
	if !gated {
		if cond != nil && cond.Status != corev1.ConditionTrue {
			return "nothing: the pod does not list the gate, so this condition does not hold it back (its rollouts do not wait for the load balancer)"
		}
		return "nothing: the pod does not list the gate, so its rollouts do not wait for the load balancer"
	}
	if cond == nil {
		return "podlb to write the condition: the controller is not running or not leading, or has not observed every group selecting the pod yet"
	}
	if cond.Status == corev1.ConditionTrue {
		return "nothing: the gate is open and stays open for the pod's life"
	}
	switch cond.Reason {
	case readiness.ReasonNotRegistered:
		if strings.Contains(cond.Message, "containers to be ready") {
			return "the pod's containers to become ready (podlb registers only pods held back by its gate alone)"
		}
		return "podlb to register the target (look at the Service's status error and Warning Events)"
	case readiness.ReasonPending:
		return "the load balancer to finish registration and its first health checks"
	case readiness.ReasonUnhealthy:
		return "the target's health checks to pass: they fail now (firewall or security groups, health check port and path)"
	case readiness.ReasonUnused:
		return "a load balancer to use the group (attach it to a listener or backend service, or set " + targets.AnnotationReadiness + ": registered)"
	case readiness.ReasonInvalid:
		return "the Service annotation to be fixed (the message names the field)"
	case readiness.ReasonError:
		return "the binding's cloud error to clear (the message has it)"
	case readiness.ReasonRejected:
		return "the cloud to accept the target it refused (the message has the cloud's error)"
	case readiness.ReasonCloudNotServed:
		return "a podlb controller serving that cloud (or this one started with --gate-ignores-unserved-clouds)"
	case readiness.ReasonReady, readiness.ReasonNotSelected:
		// False with a reason podlb writes only with True: another writer.
		return fmt.Sprintf("nothing podlb decides: reason %s comes with status True, something else wrote this condition", cond.Reason)
	}
	return fmt.Sprintf("unknown: reason %q is not one podlb writes", cond.Reason)
}
