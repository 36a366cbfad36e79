package loadbalancers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// What the reconcilers of both kinds of groups tell about a group: the
// Warnings of its problems and its clouds' refusals, and each member's
// address and status annotation.

// warnProblems emits one Warning per problem on the member it names,
// when that member's set of problems changed.
func (g *groupReconciler[T, X]) warnProblems(members []T, problems []Problem, suffix string) {
	b := g.book
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.warned == nil {
		b.warned = map[types.NamespacedName]string{}
	}
	for _, m := range members {
		nn := nameOf(m)
		msgs := problemTexts(nn, problems, suffix)
		sig := strings.Join(msgs, "\n")
		if b.warned[nn] == sig {
			continue
		}
		b.warned[nn] = sig
		for _, msg := range msgs {
			g.Recorder.Eventf(m, corev1.EventTypeWarning, g.names.invalidReason, "%s", msg)
		}
	}
}

// problemTexts are the problems of nn, each "field: message" and suffix.
func problemTexts(nn types.NamespacedName, problems []Problem, suffix string) []string {
	var out []string
	for _, p := range problems {
		if p.Object == nn {
			out = append(out, problemText(p)+suffix)
		}
	}
	return out
}

// problemText is "field: message".
func problemText(p Problem) string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// warnEnsure reports a cloud's refusal of the load balancer on to.
func (g *groupReconciler[T, X]) warnEnsure(to T, cloud string, err error) {
	if providers.ClassOf(err) != providers.Invalid {
		return
	}
	var pe *providers.Error
	msg := err.Error()
	if errors.As(err, &pe) && pe.Field != "" && !strings.Contains(msg, CloudAnnotations[cloud]) {
		msg = "metadata.annotations[" + CloudAnnotations[cloud] + "]: " + msg
	}
	g.Recorder.Eventf(to, corev1.EventTypeWarning, "LoadBalancerFailed", "%s: %s", cloud, msg)
}

// cloudStatuses calls each for every served cloud the group has anything
// on (an answer, bindings, an error), in name order.
func (g *groupReconciler[T, X]) cloudStatuses(st *groupState[X], each func(cloud string, e *ensured, part cloudPart, failure string)) {
	for _, cloud := range g.servedClouds() {
		e := st.ensured[cloud]
		part, bound := st.bindings[cloud]
		msg, failed := st.failed[cloud]
		if e == nil && !bound && !failed {
			continue
		}
		each(cloud, e, part, msg)
	}
}

// bindingStatus is a binding's status as the registry has it, empty
// before its first pass.
func (g *groupReconciler[T, X]) bindingStatus(k providers.BindingKey) *targets.BindingStatus {
	if st := g.Registry.Status(k); st != nil {
		return st
	}
	return &targets.BindingStatus{}
}

// replaceAddresses sets *cur to addrs unless there are none or same
// finds them equal; first: *cur was empty.
func replaceAddresses[A any](cur *[]A, addrs []A, same func(a, b []A) bool) (changed, first bool) {
	if len(addrs) == 0 || same(*cur, addrs) {
		return false, false
	}
	first = len(*cur) == 0
	*cur = addrs
	return true, first
}

// clearAddresses empties *cur, reporting whether it held any.
func clearAddresses[A any](cur *[]A) bool {
	had := len(*cur) > 0
	*cur = nil
	return had
}

// writeMemberStatus writes one member's address, when setAddress (which
// changes obj) reports it changed, with provisioned as a Normal Event the
// first time; then its status annotation (raw) where it changed.
func (g *groupReconciler[T, X]) writeMemberStatus(ctx context.Context, obj T, setAddress func() (changed, first bool), provisioned, raw string) error {
	nn := nameOf(obj)
	base := obj.DeepCopyObject().(client.Object)
	if changed, first := setAddress(); changed {
		if err := g.Client.Status().Patch(ctx, obj, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("writing the address of %s %s: %w", g.names.kind, nn, err)
		}
		if first {
			g.Recorder.Eventf(obj, corev1.EventTypeNormal, "LoadBalancerProvisioned", "%s", provisioned)
		}
	}
	if obj.GetAnnotations()[targets.AnnotationStatus] == raw {
		return nil
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[targets.AnnotationStatus] = raw
	obj.SetAnnotations(annotations)
	if err := g.Client.Patch(ctx, obj, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("writing the status of %s %s: %w", g.names.kind, nn, err)
	}
	return nil
}
