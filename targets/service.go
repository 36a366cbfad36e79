package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
)

// ServiceReconciler turns a Service's annotations into bindings, owns its
// finalizer and status annotation, and releases bindings that went away.
type ServiceReconciler struct {
	Client    client.Client
	Registry  *Registry
	Ledger    *Ledger
	Providers []providers.Provider
	Cluster   string
	Recorder  record.EventRecorder
	Timing    Timing

	// EnqueueBinding schedules a binding reconcile.
	EnqueueBinding func(providers.BindingKey)
	// SelectionChanged is told which pods may be selected by other
	// bindings now, so their gates are looked at again.
	SelectionChanged func(namespace string, selectors ...labels.Selector)
	// ProvisionedLoadBalancer reports Services of type LoadBalancer whose
	// load balancer podlb provisions: that balancer binds their ports and
	// owns their status annotation, so their own target annotations are
	// not read here. nil: none.
	ProvisionedLoadBalancer func(*corev1.Service) bool

	mu sync.Mutex
	// checked remembers, per Service, the binding set for which stale
	// ledger entries were last looked for; the ledger is listed again only
	// when that set changes.
	checked  map[types.NamespacedName]string
	problems map[types.NamespacedName]string
	// releaseWarned keeps a failing release to one Warning per message.
	releaseWarned distinctWarnings
}

// Status is the JSON written to the podlb.io/status annotation.
type Status struct {
	// Bindings by provider, then by Service port number.
	Bindings map[string]map[string]*BindingStatus `json:"bindings,omitempty"`
	Problems []string                             `json:"problems,omitempty"`
	Ignored  []string                             `json:"ignored,omitempty"`
}

func (r *ServiceReconciler) providerByName(name string) providers.Provider {
	for _, p := range r.Providers {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Reconcile implements reconcile.Reconciler.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	nn := req.NamespacedName
	var svc corev1.Service
	err := r.Client.Get(ctx, nn, &svc)
	if apierrors.IsNotFound(err) {
		// Deleted without our finalizer (or after it): release whatever the
		// ledger still holds.
		r.forgetService(nn)
		if err := r.releaseStale(ctx, nn, nil, nil); err != nil {
			return reconcile.Result{RequeueAfter: r.Timing.MaxBackoff}, nil
		}
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}

	parsed := ParseService(&svc, r.Cluster, r.Providers)
	if svc.DeletionTimestamp != nil || !parsed.Annotated || r.provisioned(&svc) {
		return r.cleanup(ctx, &svc)
	}

	bindings, problems, err := r.keepLastGood(ctx, nn, parsed)
	if err != nil {
		// Without knowing the last good bindings nothing may be released.
		log.FromContext(ctx).Info("reading the last good bindings failed; retrying", "error", err.Error())
		return reconcile.Result{RequeueAfter: r.Timing.MaxBackoff}, nil
	}
	parsed.Bindings, parsed.Problems = bindings, problems

	if !controllerutil.ContainsFinalizer(&svc, Finalizer) {
		patch := client.MergeFromWithOptions(svc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(&svc, Finalizer)
		if err := r.Client.Patch(ctx, &svc, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	entry := &ServiceEntry{Name: nn, Problems: parsed.Problems, Ignored: parsed.Ignored}
	if len(svc.Spec.Selector) > 0 {
		entry.Selector = labels.SelectorFromSet(svc.Spec.Selector)
	}
	prev := r.Registry.Service(nn)
	changed, removed := r.Registry.SetService(entry, parsed.Bindings)
	for _, k := range changed {
		r.EnqueueBinding(k)
	}
	for _, k := range removed {
		DeleteBindingMetrics(k)
	}
	if r.SelectionChanged != nil && (prev == nil || len(changed) > 0 || len(removed) > 0 ||
		selectorString(prev.Selector) != selectorString(entry.Selector) || problemsString(prev.Problems) != problemsString(entry.Problems)) {
		sels := []labels.Selector{entry.Selector}
		if prev != nil {
			sels = append(sels, prev.Selector)
		}
		r.SelectionChanged(nn.Namespace, sels...)
	}

	r.warnProblems(&svc, parsed.Problems)

	want := map[providers.BindingKey]bool{}
	for _, b := range parsed.Bindings {
		want[b.Key] = true
	}
	if r.needsStaleCheck(nn, want) {
		if err := r.releaseStale(ctx, nn, &svc, want); err != nil {
			log.FromContext(ctx).Info("releasing removed bindings failed; retrying", "error", err.Error())
			return reconcile.Result{RequeueAfter: r.Timing.MaxBackoff}, nil
		}
	}

	if err := r.writeStatus(ctx, &svc, entry); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

// keepLastGood keeps a Service's bindings in force while its annotation
// is broken: a typo must never release a load balancer's targets. For
// every cloud whose annotation has problems, the bindings the Service had
// (in memory, or in the ledger after a restart) that the broken value no
// longer yields are kept, and the problems they cover say so. Only a
// clear removal releases a binding: the annotation key deleted, or the
// port's entry deleted from an otherwise valid value.
func (r *ServiceReconciler) keepLastGood(ctx context.Context, nn types.NamespacedName, parsed ParsedService) ([]*providers.Binding, []Problem, error) {
	broken := map[string]bool{}
	for _, p := range parsed.Problems {
		if p.Provider != "" && !p.Kept {
			broken[p.Provider] = true
		}
	}
	if len(broken) == 0 {
		return parsed.Bindings, parsed.Problems, nil
	}
	have := map[providers.BindingKey]bool{}
	for _, b := range parsed.Bindings {
		have[b.Key] = true
	}
	wanted := func(k providers.BindingKey) bool { return broken[k.Provider] && !have[k] }
	var kept []*providers.Binding
	if r.Registry.Service(nn) != nil {
		for _, k := range r.Registry.BindingsOfService(nn) {
			if b := r.Registry.Binding(k); b != nil && k.Balancer == "" && wanted(k) {
				kept = append(kept, b)
			}
		}
	} else {
		// Just started: the ledger remembers what the bindings were.
		keys, err := r.Ledger.Bindings(ctx, nn.Namespace, nn.Name)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range keys {
			p := r.providerByName(k.Provider)
			if p == nil || k.Balancer != "" || !wanted(k) {
				continue
			}
			e, err := r.Ledger.Get(ctx, k)
			if err != nil {
				return nil, nil, err
			}
			if e.Binding == nil {
				continue
			}
			b, err := e.Binding.Restore(k, r.Cluster, p)
			if err != nil {
				continue // stored by a version that parsed differently; nothing to keep
			}
			kept = append(kept, b)
		}
	}
	if len(kept) == 0 {
		return parsed.Bindings, parsed.Problems, nil
	}
	keptPorts := map[string]map[int32]bool{}
	for _, b := range kept {
		if keptPorts[b.Key.Provider] == nil {
			keptPorts[b.Key.Provider] = map[int32]bool{}
		}
		keptPorts[b.Key.Provider][b.Key.Port] = true
	}
	problems := append([]Problem(nil), parsed.Problems...)
	for i, p := range problems {
		ports := keptPorts[p.Provider]
		if p.Kept || len(ports) == 0 || (p.Port != 0 && !ports[p.Port]) {
			continue
		}
		problems[i].Kept = true
		problems[i].Message += fmt.Sprintf("; the last good binding of port%s %s stays in force until this is fixed", plural(len(ports)), portList(ports))
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Key.String() < kept[j].Key.String() })
	return append(append([]*providers.Binding(nil), parsed.Bindings...), kept...), problems, nil
}

func portList(ports map[int32]bool) string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(ports)) {
		out = append(out, strconv.Itoa(int(p)))
	}
	return strings.Join(out, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (r *ServiceReconciler) provisioned(svc *corev1.Service) bool {
	return r.ProvisionedLoadBalancer != nil && r.ProvisionedLoadBalancer(svc)
}

// cleanup runs when a Service is deleted or loses its annotations (or
// becomes a load balancer podlb provisions, whose status annotation is
// then its balancer's): deregister this cluster's targets, delete owned
// groups, then let go.
func (r *ServiceReconciler) cleanup(ctx context.Context, svc *corev1.Service) (reconcile.Result, error) {
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	if old := r.Registry.Service(nn); old != nil && old.Annotated {
		for _, k := range r.Registry.RemoveService(nn) {
			DeleteBindingMetrics(k)
		}
		if r.SelectionChanged != nil {
			r.SelectionChanged(nn.Namespace, old.Selector)
		}
	}
	if err := r.releaseStale(ctx, nn, svc, nil); err != nil {
		log.FromContext(ctx).Info("cleanup failed; retrying", "error", err.Error())
		return reconcile.Result{RequeueAfter: r.Timing.MaxBackoff}, nil
	}
	r.forgetService(nn)
	ownStatus := !r.provisioned(svc)
	if controllerutil.ContainsFinalizer(svc, Finalizer) || (ownStatus && svc.Annotations[AnnotationStatus] != "") {
		patch := client.MergeFromWithOptions(svc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.RemoveFinalizer(svc, Finalizer)
		if svc.DeletionTimestamp == nil && ownStatus {
			delete(svc.Annotations, AnnotationStatus)
		}
		if err := r.Client.Patch(ctx, svc, patch); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("releasing Service: %w", err)
		}
	}
	return reconcile.Result{}, nil
}

// releaseStale releases every ledger binding of the Service's own
// annotation that is not in keep, for the providers this controller
// serves. Bindings of load balancers' backends are their balancer's to
// release.
func (r *ServiceReconciler) releaseStale(ctx context.Context, nn types.NamespacedName, svc *corev1.Service, keep map[providers.BindingKey]bool) error {
	keys, err := r.Ledger.Bindings(ctx, nn.Namespace, nn.Name)
	if err != nil {
		return err
	}
	var failed []string
	for _, k := range keys {
		p := r.providerByName(k.Provider)
		if keep[k] || p == nil || k.Balancer != "" {
			continue
		}
		ref, err := ReleaseBinding(ctx, r.Ledger, p, k)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s port %d: %v", k.Provider, k.Port, err))
			if ref == "" {
				continue
			}
			if msg := releaseFailedMessage(k, ref, err); svc != nil && r.releaseWarned.novel(k, "release", msg) {
				r.Recorder.Eventf(svc, corev1.EventTypeWarning, "ReleaseFailed", "%s", msg)
			}
			continue
		}
		r.releaseWarned.clear(k, "release")
		if ref != "" && svc != nil {
			r.Recorder.Eventf(svc, corev1.EventTypeNormal, "GroupReleased", "%s port %d: released %s", k.Provider, k.Port, ref)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}

// ReleaseBinding releases what the ledger records for a binding that
// went away: the groups it was moving away from, then its group
// (Provider.Release, with the targets no other binding of the group
// records), then the entry. It returns the group's reference, "" when
// none was recorded; on failure the reference is returned only when
// releasing the group itself failed (the failure users can act on).
func ReleaseBinding(ctx context.Context, l *Ledger, p providers.Provider, k providers.BindingKey) (string, error) {
	entry, err := l.Get(ctx, k)
	if err != nil {
		return "", err
	}
	if err := releasePrevious(ctx, l, p, k, entry); err != nil {
		return "", err
	}
	if entry.Ref != "" {
		ours, err := l.OursAlone(ctx, k, entry.Ref, keysOf(entry.Targets))
		if err == nil {
			err = p.Release(ctx, k, entry.Ref, ours)
		}
		if err != nil {
			return entry.Ref, err
		}
	}
	if err := l.Delete(ctx, k); err != nil {
		return "", err
	}
	return entry.Ref, nil
}

// releasePrevious releases the groups a binding was moving away from.
func releasePrevious(ctx context.Context, l *Ledger, p providers.Provider, k providers.BindingKey, e *LedgerEntry) error {
	for _, prev := range e.Previous {
		ours, err := l.OursAlone(ctx, k, prev.Ref, prev.Targets)
		if err == nil {
			err = p.Release(ctx, k, prev.Ref, ours)
		}
		if err != nil {
			return fmt.Errorf("releasing previous group %s: %w", prev.Ref, err)
		}
	}
	return nil
}

func (r *ServiceReconciler) needsStaleCheck(nn types.NamespacedName, want map[providers.BindingKey]bool) bool {
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k.String())
	}
	sort.Strings(keys)
	sig := strings.Join(keys, ",")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checked == nil {
		r.checked = map[types.NamespacedName]string{}
	}
	if prev, ok := r.checked[nn]; ok && prev == sig {
		return false
	}
	r.checked[nn] = sig
	return true
}

func (r *ServiceReconciler) forgetService(nn types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.checked, nn)
	delete(r.problems, nn)
}

// warnProblems emits one Warning per problem when the set of problems
// changes, not on every reconcile.
func (r *ServiceReconciler) warnProblems(svc *corev1.Service, problems []Problem) {
	nn := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	sig := problemsString(problems)
	r.mu.Lock()
	if r.problems == nil {
		r.problems = map[types.NamespacedName]string{}
	}
	same := r.problems[nn] == sig
	r.problems[nn] = sig
	r.mu.Unlock()
	if same {
		return
	}
	for _, p := range problems {
		r.Recorder.Eventf(svc, corev1.EventTypeWarning, "InvalidAnnotation", "%s", p.String())
	}
}

func (r *ServiceReconciler) writeStatus(ctx context.Context, svc *corev1.Service, e *ServiceEntry) error {
	st := Status{Bindings: map[string]map[string]*BindingStatus{}}
	reported, unreported := 0, 0
	for _, k := range e.Bindings {
		if k.Balancer != "" {
			continue // shown on the load balancer's object
		}
		bs := r.Registry.Status(k)
		if bs == nil {
			bs = &BindingStatus{}
			unreported++
		} else {
			reported++
		}
		if st.Bindings[k.Provider] == nil {
			st.Bindings[k.Provider] = map[string]*BindingStatus{}
		}
		st.Bindings[k.Provider][strconv.Itoa(int(k.Port))] = bs
	}
	for _, p := range e.Problems {
		st.Problems = append(st.Problems, p.String())
	}
	for _, key := range e.Ignored {
		st.Ignored = append(st.Ignored, fmt.Sprintf("%s: this controller does not serve %s", key, KnownCloudAnnotations[key]))
	}
	if reported == 0 && unreported > 0 && sameProblems(svc, &st) {
		// Just started: no binding has reported yet, and writing now would
		// only blank what the last controller wrote, a thousand Services
		// over, before the bindings write it again.
		return nil
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if svc.Annotations[AnnotationStatus] == string(raw) {
		return nil
	}
	patch := client.MergeFrom(svc.DeepCopy())
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[AnnotationStatus] = string(raw)
	if err := r.Client.Patch(ctx, svc, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing status: %w", err)
	}
	return nil
}

// sameProblems reports whether the status svc carries says the same
// problems and ignored annotations as st.
func sameProblems(svc *corev1.Service, st *Status) bool {
	cur, err := StatusOf(svc)
	return err == nil && slices.Equal(cur.Problems, st.Problems) && slices.Equal(cur.Ignored, st.Ignored)
}

func selectorString(s labels.Selector) string {
	if s == nil {
		return ""
	}
	return s.String()
}

func problemsString(ps []Problem) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, "\n")
}

// StatusOf parses a Service's podlb.io/status annotation.
func StatusOf(svc *corev1.Service) (*Status, error) {
	raw, ok := svc.Annotations[AnnotationStatus]
	if !ok {
		return nil, fmt.Errorf("no %s annotation", AnnotationStatus)
	}
	var st Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, err
	}
	return &st, nil
}
