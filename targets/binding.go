package targets

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
)

// Timing controls how often a binding is looked at again.
type Timing struct {
	// Poll is the health polling interval while a target is pending.
	Poll time.Duration
	// Resync is the slow periodic look that repairs drift made by hand.
	Resync time.Duration
	// Coalesce is how long an event waits for others before its binding is
	// reconciled, so bursts of pod events cost one cloud call.
	Coalesce time.Duration
	// MaxBackoff caps the retry delay of a failing binding.
	MaxBackoff time.Duration
}

// BindingReconciler reconciles one binding: desired targets vs the cloud.
type BindingReconciler struct {
	Client    client.Client
	Registry  *Registry
	Ledger    *Ledger
	Providers map[string]providers.Provider
	Recorder  record.EventRecorder
	Timing    Timing

	mu       sync.Mutex
	failures map[providers.BindingKey]int
	warned   map[providers.BindingKey]map[string]string // kind -> last message
}

// Reconcile implements reconcile.TypedReconciler.
func (r *BindingReconciler) Reconcile(ctx context.Context, key providers.BindingKey) (reconcile.Result, error) {
	logger := log.FromContext(ctx).WithValues("binding", key.String())
	ctx = log.IntoContext(ctx, logger)
	b := r.Registry.Binding(key)
	if b == nil {
		// The binding is gone; the Service reconciler releases its group.
		r.forget(key)
		return reconcile.Result{}, nil
	}
	prov := r.Providers[key.Provider]
	svcRef := &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: key.Namespace, Name: key.Service}

	desired, pods, err := r.desired(ctx, b)
	if err != nil {
		return r.fail(ctx, key, svcRef, nil, len(desired), fmt.Errorf("reading cluster state: %w", err))
	}
	group, err := prov.Ensure(ctx, b)
	if err != nil {
		return r.fail(ctx, key, svcRef, nil, len(desired), err)
	}
	if group.Created {
		r.event(svcRef, corev1.EventTypeNormal, "GroupCreated", "%s port %d: created %s", key.Provider, key.Port, group.Display)
	}
	entry, err := r.Ledger.Get(ctx, key)
	if err != nil {
		return r.fail(ctx, key, svcRef, group, len(desired), err)
	}
	if entry.Ref != group.Ref {
		if entry.Ref != "" {
			// The annotation now names another group: take this cluster's
			// targets out of the old one first.
			ours, err := r.Ledger.OursAlone(ctx, key, entry)
			if err == nil {
				err = prov.Release(ctx, key, entry.Ref, ours)
			}
			if err != nil {
				return r.fail(ctx, key, svcRef, group, len(desired), fmt.Errorf("releasing previous group %s: %w", entry.Ref, err))
			}
			r.event(svcRef, corev1.EventTypeNormal, "GroupReleased", "%s port %d: released %s", key.Provider, key.Port, entry.Ref)
		}
		entry = &LedgerEntry{Ref: group.Ref, Targets: map[providers.TargetKey]bool{}}
		if err := r.Ledger.Put(ctx, key, entry); err != nil {
			return r.fail(ctx, key, svcRef, group, len(desired), err)
		}
	}

	observed, err := prov.Observe(ctx, group)
	if err != nil {
		return r.fail(ctx, key, svcRef, group, len(desired), err)
	}
	plan := ComputePlan(desired, observed, group.Owned, entry.Targets)
	if !group.Owned && recordWanted(entry, desired) {
		if err := r.Ledger.Put(ctx, key, entry); err != nil {
			return r.fail(ctx, key, svcRef, group, len(desired), err)
		}
	}
	if !plan.Empty() {
		logger.Info("applying plan", "group", group.Display, "register", len(plan.Register), "deregister", len(plan.Deregister))
		if err := prov.Apply(ctx, group, plan); err != nil {
			return r.fail(ctx, key, svcRef, group, len(desired), err)
		}
		targetsChanged.WithLabelValues(key.Provider, "register").Add(float64(len(plan.Register)))
		targetsChanged.WithLabelValues(key.Provider, "deregister").Add(float64(len(plan.Deregister)))
		r.observeRegistrationLatency(key.Provider, plan.Register, desired, pods)
		observed = applyPlanToObserved(observed, plan, group.Display)
	}
	if !group.Owned {
		// Forget targets that are neither wanted nor registered any more, so
		// the ledger only ever holds what might still be in the group.
		if pruneLedger(entry, desired, observed) {
			if err := r.Ledger.Put(ctx, key, entry); err != nil {
				return r.fail(ctx, key, svcRef, group, len(desired), err)
			}
		}
	}

	health, status := summarize(desired, observed, group)
	carryHealthySince(health, r.Registry.Health(key), time.Now())
	r.Registry.SetHealth(key, health)
	r.Registry.SetStatus(key, status)
	r.recordGauges(key, len(desired), observed)
	r.warnRolloutSafety(key, svcRef, b, group, desired, pods)
	r.resetFailures(key)

	return reconcile.Result{RequeueAfter: r.nextLook(b, desired, health)}, nil
}

// desired reads the Service's slices and pods from the cache.
func (r *BindingReconciler) desired(ctx context.Context, b *providers.Binding) ([]Desired, map[types.UID]*corev1.Pod, error) {
	var slices discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &slices, client.InNamespace(b.Key.Namespace),
		client.MatchingLabels{discoveryv1.LabelServiceName: b.Key.Service}); err != nil {
		return nil, nil, err
	}
	ptrs := make([]*discoveryv1.EndpointSlice, len(slices.Items))
	for i := range slices.Items {
		ptrs[i] = &slices.Items[i]
	}
	pods := map[types.UID]*corev1.Pod{}
	look := Lookups{
		Pod: func(ns, name string) *corev1.Pod {
			var p corev1.Pod
			if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
				return nil
			}
			pods[p.UID] = &p
			return &p
		},
		Node: func(name string) (NodeInfo, bool) {
			var n corev1.Node
			if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
				return NodeInfo{}, false
			}
			return NodeInfoOf(&n), true
		},
	}
	return DesiredTargets(b, ptrs, look), pods, nil
}

// applyPlanToObserved reflects a just-applied plan so the gate and status
// see the registration at once instead of at the next poll.
func applyPlanToObserved(observed []providers.Observed, plan providers.Plan, group string) []providers.Observed {
	gone := map[providers.TargetKey]bool{}
	for _, t := range plan.Deregister {
		gone[t.Key()] = true
	}
	out := make([]providers.Observed, 0, len(observed)+len(plan.Register))
	for _, o := range observed {
		if gone[o.Key()] {
			o.State, o.CloudState, o.Reason = providers.Draining, "draining", "deregistration requested"
		}
		if o.State == providers.Draining && !gone[o.Key()] {
			// A draining target being registered again is replaced below.
			if containsTarget(plan.Register, o.Key()) {
				continue
			}
		}
		out = append(out, o)
	}
	for _, t := range plan.Register {
		out = append(out, providers.Observed{Target: t, State: providers.Pending, CloudState: "registering", Reason: "registration requested", Group: group})
	}
	return out
}

func containsTarget(ts []providers.Target, k providers.TargetKey) bool {
	for _, t := range ts {
		if t.Key() == k {
			return true
		}
	}
	return false
}

func pruneLedger(e *LedgerEntry, desired []Desired, observed []providers.Observed) bool {
	keep := map[providers.TargetKey]bool{}
	for _, d := range desired {
		keep[d.Key()] = true
	}
	for _, o := range observed {
		keep[o.Key()] = true
	}
	changed := false
	for k := range e.Targets {
		if !keep[k] {
			delete(e.Targets, k)
			changed = true
		}
	}
	return changed
}

// summarize maps observed targets to the pods that want them.
func summarize(desired []Desired, observed []providers.Observed, g *providers.Group) (*BindingHealth, *BindingStatus) {
	byKey := make(map[providers.TargetKey]providers.Observed, len(observed))
	for _, o := range observed {
		if prev, ok := byKey[o.Key()]; ok && prev.State != providers.Draining {
			continue // an active registration wins over a draining one
		}
		byKey[o.Key()] = o
	}
	h := &BindingHealth{Group: g.Display, Serving: g.Serving, NotServingWhy: g.NotServingWhy, Pods: map[types.UID]PodTarget{}}
	st := &BindingStatus{Group: g.Display, Owned: g.Owned, Desired: len(desired), Details: g.Status}
	for _, d := range desired {
		o, ok := byKey[d.Key()]
		if !ok || o.State == providers.Draining {
			continue
		}
		grp := o.Group
		if grp == "" {
			grp = g.Display
		}
		h.Pods[d.UID] = PodTarget{Pod: d.Pod, State: o.State, CloudState: o.CloudState, Reason: o.Reason, Group: grp}
	}
	for _, o := range observed {
		if o.State == providers.Draining {
			continue
		}
		st.Registered++
		if o.State == providers.Healthy {
			st.Healthy++
		}
	}
	return h, st
}

// carryHealthySince stamps when each healthy target was first seen
// healthy, keeping earlier stamps.
func carryHealthySince(h, prev *BindingHealth, now time.Time) {
	for uid, t := range h.Pods {
		if t.State != providers.Healthy {
			continue
		}
		t.HealthySince = now
		if prev != nil {
			if o, ok := prev.Pods[uid]; ok && o.State == providers.Healthy && !o.HealthySince.IsZero() {
				t.HealthySince = o.HealthySince
			}
		}
		h.Pods[uid] = t
	}
}

// nextLook decides when to look at the binding again: poll fast while a
// wanted target waits for the load balancer, slowly otherwise.
func (r *BindingReconciler) nextLook(b *providers.Binding, desired []Desired, h *BindingHealth) time.Duration {
	pending, unhealthy := false, false
	for _, d := range desired {
		t, ok := h.Pods[d.UID]
		switch {
		case !ok || t.State == providers.Pending:
			pending = true
		case t.State == providers.Unhealthy:
			unhealthy = true
		}
	}
	switch {
	case !h.Serving:
		// Nothing will change until a load balancer uses the group.
		return min(r.Timing.Resync, 30*time.Second)
	case pending:
		return r.Timing.Poll
	case unhealthy && b.Mode == providers.ReadyWhenHealthy:
		return 5 * r.Timing.Poll
	}
	return r.Timing.Resync
}

// fail classifies an error: user errors warn once per distinct message and
// retry slowly; throttling backs off quietly; anything else retries with
// capped exponential backoff and warns once it persists.
func (r *BindingReconciler) fail(ctx context.Context, key providers.BindingKey, svcRef *corev1.ObjectReference, g *providers.Group, desired int, err error) (reconcile.Result, error) {
	class := providers.ClassOf(err)
	reconcileErrors.WithLabelValues(key.Provider, string(class)).Inc()
	n := r.noteFailure(key)
	st := r.Registry.Status(key)
	if st == nil {
		st = &BindingStatus{Desired: desired}
	}
	if g != nil {
		st.Group, st.Owned, st.Details = g.Display, g.Owned, g.Status
	}
	st.Error = fmt.Sprintf("%s: %v", class, err)
	r.Registry.SetStatus(key, st)

	logger := log.FromContext(ctx)
	delay := backoff(n, r.Timing.MaxBackoff)
	switch class {
	case providers.Throttled:
		logger.V(1).Info("cloud API throttled; backing off", "after", delay)
		return reconcile.Result{RequeueAfter: max(delay, 5*time.Second)}, nil
	case providers.NotFound, providers.Invalid:
		logger.Info("binding needs attention", "error", err.Error())
		r.warnOnce(key, svcRef, "error", "BindingFailed", fmt.Sprintf("%s port %d: %v", key.Provider, key.Port, err))
		// People fix these by editing the Service (which triggers a
		// reconcile) or the cloud (which nothing tells us about): retry
		// slowly.
		return reconcile.Result{RequeueAfter: max(delay, r.Timing.MaxBackoff)}, nil
	default:
		logger.Info("binding reconcile failed; retrying", "error", err.Error(), "after", delay)
		if n >= 3 {
			r.warnOnce(key, svcRef, "error", "SyncFailed", fmt.Sprintf("%s port %d: %v", key.Provider, key.Port, err))
		}
		return reconcile.Result{RequeueAfter: delay}, nil
	}
}

func backoff(failures int, ceiling time.Duration) time.Duration {
	d := time.Second
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

func (r *BindingReconciler) noteFailure(key providers.BindingKey) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures == nil {
		r.failures = map[providers.BindingKey]int{}
	}
	r.failures[key]++
	return r.failures[key]
}

func (r *BindingReconciler) resetFailures(key providers.BindingKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, key)
	// A later failure with the same message is news again.
	delete(r.warned[key], "error")
}

func (r *BindingReconciler) forget(key providers.BindingKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, key)
	delete(r.warned, key)
}

// warnOnce emits a Warning only when the message for this kind of problem
// differs from the last one, so a persistent problem is one Event, not a
// flood.
func (r *BindingReconciler) warnOnce(key providers.BindingKey, ref *corev1.ObjectReference, kind, reason, msg string) {
	r.mu.Lock()
	if r.warned == nil {
		r.warned = map[providers.BindingKey]map[string]string{}
	}
	if r.warned[key] == nil {
		r.warned[key] = map[string]string{}
	}
	if r.warned[key][kind] == msg {
		r.mu.Unlock()
		return
	}
	r.warned[key][kind] = msg
	r.mu.Unlock()
	r.event(ref, corev1.EventTypeWarning, reason, "%s", msg)
}

func (r *BindingReconciler) clearWarning(key providers.BindingKey, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.warned[key], kind)
}

func (r *BindingReconciler) event(ref *corev1.ObjectReference, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(ref, typ, reason, format, args...)
	}
}

// warnRolloutSafety tells users when their pods are not protected: no
// gate, no load balancer using the group, or a termination grace shorter
// than the group's deregistration delay.
func (r *BindingReconciler) warnRolloutSafety(key providers.BindingKey, ref *corev1.ObjectReference, b *providers.Binding, g *providers.Group, desired []Desired, pods map[types.UID]*corev1.Pod) {
	port := strconv.Itoa(int(key.Port))
	if !g.Serving {
		r.warnOnce(key, ref, "unused", "TargetGroupUnused", fmt.Sprintf("%s port %d: %s is used by no load balancer (%s); gates stay False in %q mode, use podlb.io/readiness: registered to not wait for health checks",
			key.Provider, key.Port, g.Display, g.NotServingWhy, providers.ReadyWhenHealthy))
	} else {
		r.clearWarning(key, "unused")
	}
	noGate, shortGrace := 0, 0
	var example string
	var grace int64
	for _, d := range desired {
		p := pods[d.UID]
		if p == nil {
			continue
		}
		if !HasGate(p) {
			noGate++
		}
		if g.DrainSeconds > 0 {
			if s := StopDelaySeconds(p); s < g.DrainSeconds {
				shortGrace++
				example, grace = p.Name, s
			}
		}
	}
	podsWithoutGate.WithLabelValues(key.Namespace, key.Service, port, key.Provider).Set(float64(noGate))
	if noGate > 0 {
		r.warnOnce(key, ref, "nogate", "PodsWithoutGate", fmt.Sprintf("%s port %d: %d of %d pods lack readinessGates %s: their rollouts do not wait for %s",
			key.Provider, key.Port, noGate, len(desired), GateConditionType, g.Display))
	} else {
		r.clearWarning(key, "nogate")
	}
	if shortGrace > 0 {
		r.warnOnce(key, ref, "grace", "TerminationShorterThanDrain", fmt.Sprintf("%s port %d: %d pods (e.g. %s) stop serving %ds after termination starts, but %s drains for %ds: give them a preStop sleep and terminationGracePeriodSeconds of at least the drain time",
			key.Provider, key.Port, shortGrace, example, grace, g.Display, g.DrainSeconds))
	} else {
		r.clearWarning(key, "grace")
	}
}

// StopDelaySeconds is how long a pod keeps serving once termination
// starts: its preStop sleep, capped by terminationGracePeriodSeconds.
func StopDelaySeconds(p *corev1.Pod) int64 {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	var sleep int64
	for _, c := range p.Spec.Containers {
		if s := preStopSleep(c.Lifecycle); s > sleep {
			sleep = s
		}
	}
	return min(sleep, grace)
}

func preStopSleep(l *corev1.Lifecycle) int64 {
	if l == nil || l.PreStop == nil {
		return 0
	}
	if l.PreStop.Sleep != nil {
		return l.PreStop.Sleep.Seconds
	}
	if e := l.PreStop.Exec; e != nil {
		// Recognise the common `sleep N` and `sh -c "sleep N"` forms.
		for i, arg := range e.Command {
			var n int64
			if _, err := fmt.Sscanf(arg, "sleep %d", &n); err == nil {
				return n
			}
			if arg == "sleep" && i+1 < len(e.Command) {
				if v, err := strconv.ParseFloat(e.Command[i+1], 64); err == nil {
					return int64(v)
				}
			}
		}
	}
	return 0
}

func (r *BindingReconciler) recordGauges(key providers.BindingKey, desired int, observed []providers.Observed) {
	port := strconv.Itoa(int(key.Port))
	counts := map[providers.State]int{}
	for _, o := range observed {
		counts[o.State]++
	}
	for _, s := range []providers.State{providers.Healthy, providers.Pending, providers.Unhealthy, providers.Unused, providers.Draining} {
		targetsByState.WithLabelValues(key.Namespace, key.Service, port, key.Provider, string(s)).Set(float64(counts[s]))
	}
	desiredTargets.WithLabelValues(key.Namespace, key.Service, port, key.Provider).Set(float64(desired))
}

func (r *BindingReconciler) observeRegistrationLatency(provider string, registered []providers.Target, desired []Desired, pods map[types.UID]*corev1.Pod) {
	uidByKey := map[providers.TargetKey]types.UID{}
	for _, d := range desired {
		uidByKey[d.Key()] = d.UID
	}
	now := time.Now()
	for _, t := range registered {
		p := pods[uidByKey[t.Key()]]
		if p == nil {
			continue
		}
		if c := PodCondition(p, corev1.ContainersReady); c != nil && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			registrationLatency.WithLabelValues(provider).Observe(now.Sub(c.LastTransitionTime.Time).Seconds())
		}
	}
}

// DeleteBindingMetrics drops a removed binding's series.
func DeleteBindingMetrics(key providers.BindingKey) {
	port := strconv.Itoa(int(key.Port))
	for _, s := range []providers.State{providers.Healthy, providers.Pending, providers.Unhealthy, providers.Unused, providers.Draining} {
		targetsByState.DeleteLabelValues(key.Namespace, key.Service, port, key.Provider, string(s))
	}
	desiredTargets.DeleteLabelValues(key.Namespace, key.Service, port, key.Provider)
	podsWithoutGate.DeleteLabelValues(key.Namespace, key.Service, port, key.Provider)
}
