// Package readiness drives the pod condition podlb.io/load-balancer-ready:
// True once the pod is healthy (or registered, per the binding's mode) in
// every load balancer group that selects it.
package readiness

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// Reasons of the gate condition.
const (
	ReasonReady          = "LoadBalancerReady"
	ReasonNotSelected    = "NoLoadBalancer"
	ReasonNotRegistered  = "TargetNotRegistered"
	ReasonPending        = "TargetPending"
	ReasonUnhealthy      = "TargetUnhealthy"
	ReasonUnused         = "TargetGroupUnused"
	ReasonInvalid        = "BindingInvalid"
	ReasonError          = "BindingError"
	ReasonRejected       = "TargetRejected"
	ReasonCloudNotServed = "CloudNotServed"
)

var (
	gateLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "podlb_gate_latency_seconds",
		Help:    "From podlb first seeing the cloud report a pod healthy in its last group to the gate turning True.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	})
	gateWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_gate_writes_total",
		Help: "Gate condition writes by resulting status.",
	}, []string{"status"})
	gateNotesDeferred = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podlb_gate_false_writes_deferred_total",
		Help: "False gate writes put off because their budget was spent.",
	})
)

func init() { metrics.Registry.MustRegister(gateLatency, gateWrites, gateNotesDeferred) }

// falseMessageEvery is how often a False gate's message is rewritten
// while its reason stays the same.
const falseMessageEvery = 5 * time.Second

// Verdict is the gate condition a pod should carry.
type Verdict struct {
	Status  corev1.ConditionStatus
	Reason  string
	Message string
	// Known is false while some binding selecting the pod has not been
	// observed since start: podlb then leaves the condition alone rather
	// than flip a Ready pod after a restart.
	Known bool
	// Unobserved are the bindings that make Known false.
	Unobserved []providers.BindingKey
	// HealthySince is the latest time a selecting group first reported the
	// pod healthy, for the gate latency metric.
	HealthySince time.Time
}

// Evaluate decides the gate of one pod from the registry.
func Evaluate(pod *corev1.Pod, reg *targets.Registry) Verdict {
	services := reg.SelectingServices(pod.Namespace, pod.Labels)
	if len(services) == 0 {
		return Verdict{Status: corev1.ConditionTrue, Reason: ReasonNotSelected, Known: true,
			Message: "no Service with podlb annotations selects this pod"}
	}
	var blocking []string
	reason := ""
	v := Verdict{Known: true}
	note := func(r, msg string) {
		if reason == "" {
			reason = r
		}
		blocking = append(blocking, msg)
	}
	bound := 0
	kept := ""
	for _, svc := range services {
		for _, p := range svc.Problems {
			switch {
			case p.Provider == "":
			case p.Kept:
				kept = fmt.Sprintf("; Service %s's annotation has problems, its last good bindings are in force", svc.Name.Name)
			default:
				note(ReasonInvalid, fmt.Sprintf("Service %s: %s", svc.Name.Name, p.String()))
			}
		}
		for _, key := range svc.Bindings {
			bound++
			h := reg.Health(key)
			if h == nil {
				if st := reg.Status(key); st != nil && st.Error != "" {
					note(ReasonError, fmt.Sprintf("%s port %d: %s", key.Provider, key.Port, st.Error))
					continue
				}
				v.Known = false
				v.Unobserved = append(v.Unobserved, key)
				continue
			}
			mode := providers.ReadyWhenHealthy
			if b := reg.Binding(key); b != nil {
				mode = b.Mode
			}
			t, ok := h.Pods[pod.UID]
			if !ok {
				why := "waiting for the pod's containers to be ready"
				if targets.HeldOnlyByGate(pod) {
					why = "registration pending"
				}
				note(ReasonNotRegistered, fmt.Sprintf("not registered in %s: %s", h.Group, why))
				continue
			}
			if t.Rejected {
				note(ReasonRejected, fmt.Sprintf("%s refused the target: %s", t.Group, t.Reason))
				continue
			}
			ready := t.State == providers.Healthy ||
				(mode == providers.ReadyWhenRegistered && t.State != providers.Draining)
			if ready {
				if t.HealthySince.After(v.HealthySince) {
					v.HealthySince = t.HealthySince
				}
				continue
			}
			msg := fmt.Sprintf("%s: %s in %s", t.CloudState, t.Reason, t.Group)
			switch t.State {
			case providers.Unused:
				why := h.NotServingWhy
				if why == "" {
					why = "no load balancer uses it"
				}
				note(ReasonUnused, fmt.Sprintf("%s (%s; set podlb.io/readiness: registered to not wait for health checks)", msg, why))
			case providers.Unhealthy:
				note(ReasonUnhealthy, msg)
			default:
				note(ReasonPending, msg)
			}
		}
	}
	if len(blocking) > 0 {
		v.Status, v.Reason, v.Known = corev1.ConditionFalse, reason, true
		v.Message = blocking[0]
		if len(blocking) > 1 {
			v.Message += fmt.Sprintf(" (and %d more)", len(blocking)-1)
		}
		return v
	}
	if !v.Known {
		return v
	}
	v.Status, v.Reason = corev1.ConditionTrue, ReasonReady
	v.Message = fmt.Sprintf("ready in all %d load balancer groups selecting the pod", bound)
	if bound == 1 {
		v.Message = "ready in the load balancer group selecting the pod"
	}
	v.Message += kept
	return v
}

// GateReconciler writes the gate condition of pods that list it.
type GateReconciler struct {
	Client   client.Client
	Registry *targets.Registry
	// Services finds Services in the cache, to find Services that select
	// a pod but are not in the registry yet.
	Services ServicesUnder
	// Annotations are the cloud annotation keys this controller serves.
	Annotations []string
	// IgnoreUnservedClouds lets pods through that a Service binds only on
	// clouds this controller does not serve. By default such pods are held
	// with reason CloudNotServed: nothing would check those load balancers.
	IgnoreUnservedClouds bool
	// Ingresses reads Ingresses and IngressClasses from the cache, to find
	// Services selecting a pod that an Ingress podlb serves sends traffic
	// to before their load balancer's bindings are in the registry; nil
	// when this controller provisions no HTTP load balancers.
	Ingresses client.Reader
	// LoadBalancerServices holds pods selected by a Service of type
	// LoadBalancer podlb serves until that Service's balancer has put the
	// bindings of its current version in the registry; false when this
	// controller provisions no TCP/UDP load balancers.
	LoadBalancerServices bool
	// Notes writes False gates, what a held pod waits for, each admitted
	// by NoteBudget without waiting. A missing condition holds a pod as
	// a False one does, so under load these writes give way to the ones
	// that open gates (through Client) instead of queueing ahead of them
	// in one client budget. Nil: Client writes both, and NoteBudget
	// still admits the False ones when set.
	Notes      client.Client
	NoteBudget *rate.Limiter
	// Hurry asks for bindings a waiting pod needs observed to be
	// reconciled before others: after a start or a failover every binding
	// is queued at once, and a pod turning ready meanwhile should not wait
	// behind a thousand settled ones. Nil: no hurry.
	Hurry func([]providers.BindingKey)

	// latched remembers pods whose gate this controller turned True until
	// the cache shows it, so a stale cache can never make it write the
	// gate again.
	latched sync.Map // types.NamespacedName -> types.UID
}

// Reconcile implements reconcile.Reconciler.
func (r *GateReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pod corev1.Pod
	if err := r.Client.Get(ctx, req.NamespacedName, &pod); err != nil {
		if apierrors.IsNotFound(err) {
			r.latched.Delete(req.NamespacedName)
		}
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !targets.HasGate(&pod) || pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" {
		return reconcile.Result{}, nil
	}
	cur := targets.PodCondition(&pod, targets.GateConditionType)
	if cur != nil && cur.Status == corev1.ConditionTrue {
		// The gate latches: it protects the rollout that created the pod.
		// Taking a serving pod's readiness away later, because a load
		// balancer flaps or an annotation is added, would take it out of
		// every other Service path too, all replicas at once. Later health
		// shows in status, metrics and Events instead. The cache shows
		// the gate now, so this process's own note of it can go: kept for
		// every gated pod, the notes were megabytes at rest.
		r.latched.Delete(req.NamespacedName)
		return reconcile.Result{}, nil
	}
	if uid, ok := r.latched.Load(req.NamespacedName); ok {
		if uid == pod.UID {
			// Written True, not yet in the cache.
			return reconcile.Result{}, nil
		}
		// An earlier pod of that name.
		r.latched.Delete(req.NamespacedName)
	}
	scan, err := r.scanServices(ctx, &pod)
	if err != nil {
		return reconcile.Result{}, err
	}
	if scan.unknown {
		// An annotated Service, or an Ingress's backend, selects the pod
		// but is not reconciled yet (just created or edited, or podlb just
		// started): whatever the others say, it may still hold the pod.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	v := Evaluate(&pod, r.Registry)
	if !v.Known {
		if r.Hurry != nil && targets.HeldOnlyByGate(&pod) {
			r.Hurry(v.Unobserved)
		}
		return reconcile.Result{}, nil
	}
	if scan.unserved != "" && !r.IgnoreUnservedClouds {
		v = Verdict{Status: corev1.ConditionFalse, Reason: ReasonCloudNotServed, Known: true, Message: scan.unserved +
			": this controller does not serve that cloud, so nothing checks the pod there (run podlb for it, or start this one with --gate-ignores-unserved-clouds)"}
	}
	if cur != nil && cur.Status == v.Status && cur.Reason == v.Reason && cur.Message == v.Message {
		return reconcile.Result{}, nil
	}
	if cur != nil && cur.Status == corev1.ConditionFalse && v.Status == corev1.ConditionFalse && cur.Reason == v.Reason {
		// Only the message moved on (registering, then the first health
		// checks): it is refreshed at most every falseMessageEvery, so a
		// rollout of a thousand pods spends the gate's client budget on
		// the writes that open gates, not on several per pod that do not.
		if wait := time.Until(cur.LastProbeTime.Add(falseMessageEvery)); wait > 0 {
			return reconcile.Result{RequeueAfter: wait}, nil
		}
	}
	writer := r.Client
	if v.Status == corev1.ConditionFalse {
		if r.NoteBudget != nil && !r.NoteBudget.Allow() {
			// Written when the budget has room again, or sooner by the
			// registry's news of the pod.
			gateNotesDeferred.Inc()
			return reconcile.Result{RequeueAfter: falseMessageEvery}, nil
		}
		if r.Notes != nil {
			writer = r.Notes
		}
	}
	cond := corev1.PodCondition{Type: targets.GateConditionType, Status: v.Status, Reason: v.Reason, Message: v.Message,
		LastProbeTime: metav1.Now(), LastTransitionTime: metav1.Now()}
	if cur != nil && cur.Status == v.Status {
		cond.LastTransitionTime = cur.LastTransitionTime
	}
	if err := patchCondition(ctx, writer, &pod, cond); err != nil {
		if apierrors.IsConflict(err) {
			// The cached pod is behind: look again once the cache has
			// caught up, the gate may have been written meanwhile.
			return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) {
			// Gone or replaced under the same name: the UID precondition
			// did its job.
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if v.Status == corev1.ConditionTrue {
		r.latched.Store(req.NamespacedName, pod.UID)
	}
	gateWrites.WithLabelValues(string(v.Status)).Inc()
	if v.Status == corev1.ConditionTrue && !v.HealthySince.IsZero() {
		gateLatency.Observe(time.Since(v.HealthySince).Seconds())
	}
	log.FromContext(ctx).V(1).Info("gate written", "status", v.Status, "reason", v.Reason, "message", v.Message)
	return reconcile.Result{}, nil
}

// serviceScan is what the Services selecting a pod say beyond the
// registry.
type serviceScan struct {
	// unknown: an annotated Service selects the pod but is not in the
	// registry yet, a Service selecting it is a backend of an Ingress
	// whose current generation its balancer has not settled, or a Service
	// of type LoadBalancer podlb serves selects it and its balancer has
	// not settled its current version.
	unknown bool
	// unserved names a Service that binds the pod only on clouds this
	// controller does not serve, "" when none does.
	unserved string
}

func (r *GateReconciler) scanServices(ctx context.Context, pod *corev1.Pod) (serviceScan, error) {
	var out serviceScan
	candidates, err := r.servicesSelecting(ctx, pod)
	if err != nil {
		return out, err
	}
	selecting := map[string]bool{}
	for _, svc := range candidates {
		if svc.DeletionTimestamp != nil {
			continue
		}
		selecting[svc.Name] = true
		if r.LoadBalancerServices && loadbalancers.ServesService(svc) {
			// Its own target annotations are not read (the targets
			// ServiceReconciler leaves such Services to their balancer).
			if !r.Registry.LoadBalancerServiceSettled(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, loadbalancers.ServiceVersion(svc)) {
				out.unknown = true
			}
			continue
		}
		if hasAny(svc.Annotations, r.Annotations) {
			if r.Registry.Service(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}) == nil {
				out.unknown = true
			}
			continue
		}
		if out.unserved != "" {
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(targets.KnownCloudAnnotations)) {
			if _, ok := svc.Annotations[key]; ok {
				out.unserved = fmt.Sprintf("Service %s binds the pod on %s (%s)", svc.Name, targets.KnownCloudAnnotations[key], key)
				break
			}
		}
	}
	if !out.unknown && r.Ingresses != nil && len(selecting) > 0 {
		unsettled, err := r.unsettledIngressBackend(ctx, pod.Namespace, selecting)
		if err != nil {
			return out, err
		}
		out.unknown = unsettled
	}
	return out, nil
}

// unsettledIngressBackend reports whether one of the selecting Services
// is a backend of an Ingress podlb serves whose current generation the
// Ingress's balancer has not yet settled in the registry.
func (r *GateReconciler) unsettledIngressBackend(ctx context.Context, namespace string, selecting map[string]bool) (bool, error) {
	var ings networkingv1.IngressList
	if err := r.Ingresses.List(ctx, &ings, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	if len(ings.Items) == 0 {
		return false, nil
	}
	var classes networkingv1.IngressClassList
	if err := r.Ingresses.List(ctx, &classes, client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	for i := range ings.Items {
		ing := &ings.Items[i]
		// An Ingress being deleted takes its bindings away; nothing to wait for.
		if ing.DeletionTimestamp != nil || !loadbalancers.ServesIngress(ing, classes.Items) {
			continue
		}
		nn := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		for _, svc := range loadbalancers.BackendServices(ing) {
			if selecting[svc] && !r.Registry.IngressSettledFor(nn, ing.Generation, svc) {
				return true, nil
			}
		}
	}
	return false, nil
}

func hasAny(m map[string]string, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; ok {
			return true
		}
	}
	return false
}

func selects(selector, podLabels map[string]string) bool {
	for k, v := range selector {
		if pv, ok := podLabels[k]; !ok || pv != v {
			return false
		}
	}
	return true
}

// ServiceSelectorIndex indexes the cached Services by their selector's
// targets.SelectorPair, the registry's index too: a pod's candidates are
// the Services under its own labels' pairs. Listing every Service of the
// namespace for each pod, as often as gates are reconciled, copied a
// thousand Services per pod in a namespace of a thousand.
const ServiceSelectorIndex = "podlb.io/service-selector-pair"

// ServiceSelectorPair is ServiceSelectorIndex's index function.
func ServiceSelectorPair(o client.Object) []string {
	svc, ok := o.(*corev1.Service)
	if !ok || len(svc.Spec.Selector) == 0 {
		return nil
	}
	pair, _ := targets.SelectorPair(labels.SelectorFromSet(svc.Spec.Selector))
	return []string{pair}
}

// ServiceSelectorIndexers index Services by namespace and
// ServiceSelectorPair, for IndexedServices.
func ServiceSelectorIndexers() toolscache.Indexers {
	return toolscache.Indexers{ServiceSelectorIndex: func(obj any) ([]string, error) {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			return nil, nil
		}
		pairs := ServiceSelectorPair(svc)
		for i, pair := range pairs {
			pairs[i] = svc.Namespace + "/" + pair
		}
		return pairs, nil
	}}
}

// IndexedServices finds Services under a pair in an indexer with
// ServiceSelectorIndexers, such as the cache's Service informer's.
func IndexedServices(idx toolscache.Indexer) ServicesUnder {
	return func(_ context.Context, namespace, pair string) ([]*corev1.Service, error) {
		objs, err := idx.ByIndex(ServiceSelectorIndex, namespace+"/"+pair)
		if err != nil {
			return nil, err
		}
		out := make([]*corev1.Service, 0, len(objs))
		for _, o := range objs {
			if svc, ok := o.(*corev1.Service); ok {
				out = append(out, svc)
			}
		}
		return out, nil
	}
}

// ServicesUnder finds the Services of a namespace indexed under one
// ServiceSelectorPair. They are the cache's own objects: read them, never
// change them. A List through the cache would do, but it copies every
// Service found into a new list and builds an object of the kind to learn
// it, for each of a pod's labels, as often as gates are reconciled.
type ServicesUnder func(ctx context.Context, namespace, pair string) ([]*corev1.Service, error)

// servicesSelecting returns the Services of the pod's namespace whose
// selector selects it, in name order. They are the cache's own objects:
// read them, never change them.
func (r *GateReconciler) servicesSelecting(ctx context.Context, pod *corev1.Pod) ([]*corev1.Service, error) {
	var out []*corev1.Service
	for k, v := range pod.Labels {
		under, err := r.Services(ctx, pod.Namespace, k+"="+v)
		if err != nil {
			return nil, err
		}
		for _, svc := range under {
			if selects(svc.Spec.Selector, pod.Labels) {
				out = append(out, svc)
			}
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// patchCondition writes one condition through pods/status with a
// strategic merge patch keyed on the condition type, so conditions owned
// by the kubelet and others are untouched. The UID in the patch is a
// precondition: a pod recreated under the same name is not written.
func patchCondition(ctx context.Context, c client.Client, pod *corev1.Pod, cond corev1.PodCondition) error {
	patch := map[string]any{
		// The resourceVersion makes the write conditional on the pod as
		// read: a gate written True meanwhile is never overwritten.
		"metadata": map[string]any{"uid": pod.UID, "resourceVersion": pod.ResourceVersion},
		"status":   map[string]any{"conditions": []corev1.PodCondition{cond}},
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return c.Status().Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, raw))
}

// String summarises a verdict for logs and tests.
func (v Verdict) String() string {
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", v.Status, v.Reason, v.Message))
}
