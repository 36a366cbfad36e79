package cluster

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The kubelet's status rules, as NodeSim applies them. Reasons and messages
// match pkg/kubelet/status/generate.go so that code under test sees exactly
// what a real node would write.
const (
	reasonContainersNotReady     = "ContainersNotReady"
	reasonReadinessGatesNotReady = "ReadinessGatesNotReady"
	reasonPodCompleted           = "PodCompleted"
)

// kubeletConditions are the pod conditions the kubelet owns; NodeSim writes
// these and never touches any other (PodScheduled belongs to the scheduler,
// readiness gates to their controllers).
var kubeletConditions = []corev1.PodConditionType{
	corev1.PodReadyToStartContainers,
	corev1.PodInitialized,
	corev1.ContainersReady,
	corev1.PodReady,
}

// podRuntime is what the simulated kubelet knows about a pod's containers.
type podRuntime struct {
	podIP, hostIP string
	started       time.Time // sandbox and containers started
	ready         bool      // containers pass their readiness check
	finished      time.Time // non-zero once the containers have exited
}

// kubeletStatus returns pod's status with every kubelet-owned field set from
// rt and every other field, foreign conditions included, as it was.
func kubeletStatus(pod *corev1.Pod, rt podRuntime, now time.Time) corev1.PodStatus {
	status := *pod.Status.DeepCopy()
	started := metav1.NewTime(rt.started)
	running := rt.finished.IsZero()

	status.Phase = corev1.PodRunning
	if !running {
		// Containers that exit on SIGTERM with code 0 leave the pod Succeeded.
		status.Phase = corev1.PodSucceeded
	}
	status.HostIP = rt.hostIP
	status.HostIPs = []corev1.HostIP{{IP: rt.hostIP}}
	status.PodIP = rt.podIP
	status.PodIPs = []corev1.PodIP{{IP: rt.podIP}}
	if status.StartTime == nil {
		status.StartTime = &started
	}
	status.ObservedGeneration = pod.Generation

	containerState := func() corev1.ContainerState {
		if running {
			return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}
		}
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: metav1.NewTime(rt.finished),
		}}
	}
	containerStatus := func(c corev1.Container, ready bool, state corev1.ContainerState) corev1.ContainerStatus {
		startedFlag := state.Running != nil
		return corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ImageID:     "sim://" + c.Image,
			ContainerID: fmt.Sprintf("sim://%s/%s", pod.UID, c.Name),
			Ready:       ready,
			Started:     &startedFlag,
			State:       state,
		}
	}

	var unready []string
	status.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			// A sidecar: runs alongside the app containers and counts for readiness.
			ready := rt.ready && running
			if !ready {
				unready = append(unready, c.Name)
			}
			status.InitContainerStatuses = append(status.InitContainerStatuses, containerStatus(c, ready, containerState()))
			continue
		}
		done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started,
		}}
		status.InitContainerStatuses = append(status.InitContainerStatuses, containerStatus(c, true, done))
	}
	status.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		ready := rt.ready && running
		if !ready {
			unready = append(unready, c.Name)
		}
		status.ContainerStatuses = append(status.ContainerStatuses, containerStatus(c, ready, containerState()))
	}

	containersReady := corev1.PodCondition{Type: corev1.ContainersReady, Status: corev1.ConditionTrue}
	switch {
	case !running:
		containersReady.Status, containersReady.Reason = corev1.ConditionFalse, reasonPodCompleted
	case len(unready) > 0:
		containersReady.Status = corev1.ConditionFalse
		containersReady.Reason = reasonContainersNotReady
		containersReady.Message = fmt.Sprintf("containers with unready status: %s", unready)
	}
	desired := map[corev1.PodConditionType]corev1.PodCondition{
		corev1.PodReadyToStartContainers: {Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue},
		corev1.PodInitialized:            {Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		corev1.ContainersReady:           containersReady,
		corev1.PodReady:                  podReadyCondition(pod.Spec.ReadinessGates, status.Conditions, containersReady),
	}
	if !running {
		desired[corev1.PodReadyToStartContainers] = corev1.PodCondition{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse}
	}
	status.Conditions = mergeKubeletConditions(status.Conditions, desired, pod.Generation, now)
	return status
}

// podReadyCondition is the kubelet's Ready rule: if ContainersReady is not
// True, Ready copies it; otherwise every readiness gate's condition must be
// present and True.
func podReadyCondition(gates []corev1.PodReadinessGate, conditions []corev1.PodCondition, containersReady corev1.PodCondition) corev1.PodCondition {
	if containersReady.Status != corev1.ConditionTrue {
		return corev1.PodCondition{Type: corev1.PodReady, Status: containersReady.Status, Reason: containersReady.Reason, Message: containersReady.Message}
	}
	var unready []string
	for _, gate := range gates {
		c := findCondition(conditions, gate.ConditionType)
		switch {
		case c == nil:
			unready = append(unready, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(gate.ConditionType)))
		case c.Status != corev1.ConditionTrue:
			unready = append(unready, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(gate.ConditionType), c.Status))
		}
	}
	if len(unready) > 0 {
		return corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: reasonReadinessGatesNotReady, Message: strings.Join(unready, ", ")}
	}
	return corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
}

// mergeKubeletConditions replaces the kubelet-owned conditions in place,
// appends missing ones and keeps every other condition untouched. A
// condition's lastTransitionTime moves only when its status changes.
func mergeKubeletConditions(existing []corev1.PodCondition, desired map[corev1.PodConditionType]corev1.PodCondition, generation int64, now time.Time) []corev1.PodCondition {
	stamp := func(want corev1.PodCondition, old *corev1.PodCondition) corev1.PodCondition {
		want.ObservedGeneration = generation
		if old != nil && old.Status == want.Status {
			want.LastTransitionTime = old.LastTransitionTime
			want.LastProbeTime = old.LastProbeTime
		} else {
			want.LastTransitionTime = metav1.NewTime(now)
		}
		return want
	}
	out := make([]corev1.PodCondition, 0, len(existing)+len(desired))
	seen := map[corev1.PodConditionType]bool{}
	for i := range existing {
		old := &existing[i]
		if want, ours := desired[old.Type]; ours {
			out = append(out, stamp(want, old))
			seen[old.Type] = true
			continue
		}
		out = append(out, *old)
	}
	for _, t := range kubeletConditions {
		if !seen[t] {
			out = append(out, stamp(desired[t], nil))
		}
	}
	return out
}

func findCondition(conditions []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conditions {
		if conditions[i].Type == t {
			return &conditions[i]
		}
	}
	return nil
}
