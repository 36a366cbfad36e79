package loadbalancers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// ServiceFinalizer holds a Service of type LoadBalancer podlb serves
// until its load balancer has let go of it: its listeners' targets
// deregistered and, for the last Service of a group, the load balancer
// deleted. It is the Ingresses' finalizer: one name for "podlb provisions
// a load balancer for this object".
const ServiceFinalizer = IngressFinalizer

// serviceBalancerPrefix keeps the balancers of Services apart from those
// of Ingresses in the registry and the ledger: an Ingress group and a
// Service group may share a name.
const serviceBalancerPrefix = "service:"

// ServiceBalancer is the owner of a Service load balancer's bindings
// (BindingKey.Balancer): "service:" and the balancer key.
func ServiceBalancer(key providers.BalancerKey) string {
	return ServiceBalancerKey(key).String()
}

// IsServiceBalancer reports whether a BindingKey.Balancer is a Service
// load balancer's.
func IsServiceBalancer(balancer string) bool {
	return strings.HasPrefix(balancer, serviceBalancerPrefix)
}

// L4Cloud is one cloud that provisions TCP/UDP load balancers: its target
// provider (which registers the listeners' pods) and its balancers.
type L4Cloud struct {
	Provider  providers.Provider
	Balancers providers.L4Balancers
}

// L4Clouds picks the providers that also provision TCP/UDP load
// balancers.
func L4Clouds(provs []providers.Provider) map[string]L4Cloud {
	out := map[string]L4Cloud{}
	for _, p := range provs {
		if lb, ok := p.(providers.L4Balancers); ok {
			out[p.Name()] = L4Cloud{Provider: p, Balancers: lb}
		}
	}
	return out
}

// ServiceReconciler provisions the load balancer of each group of
// Services of type LoadBalancer podlb serves (ServesService), on every
// cloud the group asks for, and hands its listeners' Service ports to
// the target machinery as bindings. A request names one Service; the
// reconciler works on its whole group (and on the group it left, if any).
type ServiceReconciler struct {
	Client   client.Client
	Registry *targets.Registry
	Ledger   *targets.Ledger
	Clouds   map[string]L4Cloud
	Cluster  string
	Recorder record.EventRecorder
	Timing   targets.Timing
	// EnqueueBinding schedules a binding reconcile.
	EnqueueBinding func(providers.BindingKey)
	// SelectionChanged is told which pods' gates may change.
	SelectionChanged func(namespace string, selectors ...labels.Selector)

	mu     sync.Mutex
	groups map[providers.BalancerKey]*serviceGroup
	// memberOf remembers each Service's group, so the group it leaves
	// (edited group, type or class, deletion) is reconciled too.
	memberOf map[types.NamespacedName]providers.BalancerKey
	warned   map[types.NamespacedName]string
}

// serviceGroup is what the reconciler keeps of one group between passes.
type serviceGroup struct {
	model    *ServiceLoadBalancer
	specs    map[string]any        // last good load-balancer spec per cloud
	ensured  map[string]*l4Ensured // per cloud
	bindings map[string]cloudPart  // per cloud, as last put in force
	members  []types.NamespacedName
	// failed holds the last error per cloud, for status.
	failed map[string]string
}

type l4Ensured struct {
	sig string
	at  time.Time
	res *providers.L4Result
}

func (r *ServiceReconciler) state(key providers.BalancerKey) *serviceGroup {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.groups == nil {
		r.groups = map[providers.BalancerKey]*serviceGroup{}
	}
	st := r.groups[key]
	if st == nil {
		st = &serviceGroup{specs: map[string]any{}, ensured: map[string]*l4Ensured{}, bindings: map[string]cloudPart{}, failed: map[string]string{}}
		r.groups[key] = st
	}
	return st
}

func (r *ServiceReconciler) servedClouds() []string {
	return slices.Sorted(maps.Keys(r.Clouds))
}

func (r *ServiceReconciler) binder() backendBinder {
	provs := map[string]providers.Provider{}
	for name, c := range r.Clouds {
		provs[name] = c.Provider
	}
	return backendBinder{Client: r.Client, Registry: r.Registry, Ledger: r.Ledger, Providers: provs, Timing: r.Timing,
		EnqueueBinding: r.EnqueueBinding, SelectionChanged: r.SelectionChanged}
}

func serviceName(svc *corev1.Service) types.NamespacedName {
	return types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
}

// Reconcile implements reconcile.Reconciler.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var svc *corev1.Service
	var got corev1.Service
	if err := r.Client.Get(ctx, req.NamespacedName, &got); client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, err
	} else if err == nil {
		svc = &got
	}
	served := func(s *corev1.Service) bool { return s.DeletionTimestamp == nil && ServesService(s) }
	prev, wasMember := r.previousGroup(req.NamespacedName, svc)
	if (svc == nil || !served(svc)) && !wasMember && (svc == nil || !controllerutil.ContainsFinalizer(svc, ServiceFinalizer)) {
		return reconcile.Result{}, nil // not ours, and never was
	}
	var all corev1.ServiceList
	if err := r.Client.List(ctx, &all); err != nil {
		return reconcile.Result{}, err
	}
	groups := map[providers.BalancerKey]bool{}
	if svc != nil && served(svc) {
		groups[r.groupOf(svc)] = true
	}
	if wasMember {
		groups[prev] = true
	}
	res := reconcile.Result{RequeueAfter: r.Timing.Resync}
	settled := true
	deleted := false
	for _, key := range slices.SortedFunc(maps.Keys(groups), func(a, b providers.BalancerKey) int { return strings.Compare(a.String(), b.String()) }) {
		var members []*corev1.Service
		for i := range all.Items {
			if m := &all.Items[i]; served(m) && r.groupOf(m) == key {
				members = append(members, m)
			}
		}
		var after time.Duration
		var err error
		if len(members) == 0 {
			after, err = r.teardown(ctx, key)
			deleted = err == nil && after == 0
		} else {
			after, err = r.reconcileGroup(ctx, key, members)
		}
		if err != nil {
			return reconcile.Result{}, err
		}
		if after > 0 {
			settled = false
			res.RequeueAfter = min(res.RequeueAfter, after)
		}
	}
	switch {
	case svc == nil:
		r.forget(req.NamespacedName)
	case !served(svc):
		if !settled {
			return res, nil
		}
		return reconcile.Result{}, r.letGo(ctx, svc, prev, wasMember, deleted)
	}
	return res, nil
}

// MembersOf lists the Services of the group whose balancer reads
// balancer (ServiceBalancer), as last reconciled: whose status to write
// when a listener binding's status changes.
func (r *ServiceReconciler) MembersOf(balancer string) []types.NamespacedName {
	key, ok := ParseBalancerKey(strings.TrimPrefix(balancer, serviceBalancerPrefix))
	if !ok || !IsServiceBalancer(balancer) {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.groups[key]; st != nil {
		return slices.Clone(st.members)
	}
	return nil
}

// groupOf is the Service's group; while its annotations cannot be read,
// the group it was in.
func (r *ServiceReconciler) groupOf(svc *corev1.Service) providers.BalancerKey {
	if key, ok := ServiceGroupOf(svc); ok {
		return key
	}
	if prev, ok := r.previousGroup(serviceName(svc), svc); ok {
		return prev
	}
	return providers.BalancerKey{Namespace: svc.Namespace, Name: svc.Name}
}

// previousGroup is the group the Service was last a member of: in memory,
// or after a restart, as its status annotation records it.
func (r *ServiceReconciler) previousGroup(nn types.NamespacedName, svc *corev1.Service) (providers.BalancerKey, bool) {
	r.mu.Lock()
	key, ok := r.memberOf[nn]
	r.mu.Unlock()
	if ok || svc == nil || !controllerutil.ContainsFinalizer(svc, ServiceFinalizer) {
		return key, ok
	}
	if st, err := ServiceStatusOf(svc); err == nil {
		return ParseBalancerKey(st.Balancer)
	}
	return providers.BalancerKey{}, false
}

// reconcileGroup brings one group's load balancers and bindings in line
// with its members. It returns when to look again (0: at the resync).
func (r *ServiceReconciler) reconcileGroup(ctx context.Context, key providers.BalancerKey, members []*corev1.Service) (time.Duration, error) {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("balancer", ServiceBalancer(key)))
	for _, m := range members {
		if err := addFinalizer(ctx, r.Client, "Service", m); err != nil {
			return 0, err
		}
	}
	byName := map[types.NamespacedName]*corev1.Service{}
	for _, m := range members {
		byName[serviceName(m)] = m
	}
	model, problems := BuildServiceGroup(key.String(), members)
	st := r.state(key)
	clouds, specs, from, specProblems := r.cloudSpecs(model, byName, st)
	problems = append(problems, specProblems...)
	if len(specs) < len(clouds) && st.model == nil {
		// Just started with a broken annotation: what the load balancer
		// served before is unknown here, so nothing is changed until it
		// is fixed, unless nothing was provisioned yet.
		held, err := r.Ledger.BalancerBindings(ctx, ServiceBalancer(key))
		if err != nil {
			return 0, err
		}
		if len(held) > 0 {
			r.warnProblems(members, problems, "; podlb changes nothing on this load balancer until it is fixed")
			r.forgetSettled(model.Members)
			return r.Timing.MaxBackoff, r.writeStatuses(ctx, key, members, st, problems)
		}
	}
	st.model = model

	var retry time.Duration
	complete := true
	bound := map[string]cloudPart{}
	for _, cloud := range clouds {
		spec, ok := specs[cloud]
		if !ok {
			// A broken annotation with no last good value: keep what is there.
			if prev, had := st.bindings[cloud]; had {
				bound[cloud] = prev
			} else {
				complete = false
			}
			continue
		}
		e, err := r.ensure(ctx, r.Clouds[cloud], st, cloud, L4BalancerOf(key, r.Cluster, model, spec))
		if err != nil {
			if st.failed[cloud] != err.Error() {
				r.warnEnsure(byName[from[cloud]], members, cloud, err)
			}
			st.failed[cloud] = err.Error()
			retry = retryAfter(r.Timing, err)
			if prev, had := st.bindings[cloud]; had {
				bound[cloud] = prev
			} else {
				complete = false
			}
			continue
		}
		delete(st.failed, cloud)
		problems = append(problems, refusedProblems(cloud, model, e.res.Refused, byName)...)
		bound[cloud] = ListenerBindings(cloud, r.Cluster, ServiceBalancerKey(key), model, e.res.Specs)
	}
	// Clouds the group no longer asks for: their bindings go now, the
	// load balancer once they are gone.
	var dropped []string
	for cloud := range st.bindings {
		if _, ok := bound[cloud]; !ok && !slices.Contains(clouds, cloud) {
			dropped = append(dropped, cloud)
		}
	}
	st.bindings = bound
	if after, err := r.binder().put(ctx, ServiceBalancerKey(key), bound); err != nil || after > 0 {
		return max(after, retry), err
	}
	for _, cloud := range dropped {
		if err := r.Clouds[cloud].Balancers.DeleteL4(ctx, r.Cluster, key); err != nil {
			retry = retryAfter(r.Timing, err)
			continue
		}
		delete(st.ensured, cloud)
	}
	r.warnProblems(members, problems, "")

	for _, m := range members {
		var changed bool
		if complete {
			changed = r.Registry.SetLoadBalancerServiceSettled(serviceName(m), ServiceVersion(m))
		} else {
			// The gate waits: the Service's listeners are not bound yet.
			changed = r.Registry.ForgetLoadBalancerService(serviceName(m))
		}
		if changed && r.SelectionChanged != nil && len(m.Spec.Selector) > 0 {
			r.SelectionChanged(m.Namespace, labels.SelectorFromSet(m.Spec.Selector))
		}
	}
	r.mu.Lock()
	if r.memberOf == nil {
		r.memberOf = map[types.NamespacedName]providers.BalancerKey{}
	}
	for _, nn := range model.Members {
		r.memberOf[nn] = key
	}
	st.members = model.Members
	r.mu.Unlock()
	if err := r.writeStatuses(ctx, key, members, st, problems); err != nil {
		return 0, err
	}
	return retry, nil
}

// ServiceBalancerKey is the balancer key under which the registry and the
// ledger hold a Service load balancer's bindings (ServiceBalancer as its
// name), apart from an Ingress group of the same key.
func ServiceBalancerKey(key providers.BalancerKey) providers.BalancerKey {
	return providers.BalancerKey{Name: serviceBalancerPrefix + key.String()}
}

// cloudSpecs decides which clouds serve the group and parses each one's
// load-balancer annotation, from the first member (in group order) that
// carries it (from says which). A broken value keeps the last good one in
// force; without one the cloud is left out of specs and keeps what it
// has.
func (r *ServiceReconciler) cloudSpecs(model *ServiceLoadBalancer, byName map[types.NamespacedName]*corev1.Service, st *serviceGroup) ([]string, map[string]any, map[string]types.NamespacedName, []Problem) {
	served := r.servedClouds()
	set := map[string]bool{}
	var problems []Problem
	for _, nn := range model.Members {
		svc := byName[nn]
		for _, c := range Clouds(svc.Annotations, served) {
			set[c] = true
		}
		for _, c := range UnservedClouds(svc.Annotations, served) {
			problems = append(problems, unservedCloud(nn, c, served))
		}
	}
	clouds := slices.Sorted(maps.Keys(set))
	specs := map[string]any{}
	from := map[string]types.NamespacedName{}
	for _, cloud := range clouds {
		annotation := CloudAnnotations[cloud]
		var raw string
		for _, nn := range model.Members {
			if v, ok := byName[nn].Annotations[annotation]; ok {
				raw, from[cloud] = v, nn
				break
			}
		}
		spec, err := r.Clouds[cloud].Balancers.ParseL4Spec(raw)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), annotation+": ")
			if last, ok := st.specs[cloud]; ok {
				specs[cloud] = last
				msg += "; the last good value stays in force until this is fixed"
			}
			problems = append(problems, Problem{Object: from[cloud], Field: "metadata.annotations[" + annotation + "]", Message: msg})
			continue
		}
		specs[cloud] = spec
		st.specs[cloud] = spec
	}
	return clouds, specs, from, problems
}

// unservedCloud is the problem of an object naming a cloud this
// controller does not serve.
func unservedCloud(nn types.NamespacedName, cloud string, served []string) Problem {
	return Problem{Object: nn, Field: "metadata.annotations[podlb.io/" + cloud + "-load-balancer]",
		Message: fmt.Sprintf("this controller does not provision load balancers on %s (it serves %s)", cloud, strings.Join(served, ", "))}
}

// ensure calls EnsureL4 unless the same load balancer was ensured within
// the resync interval: status-only passes cost no cloud calls.
func (r *ServiceReconciler) ensure(ctx context.Context, c L4Cloud, st *serviceGroup, cloud string, lb *providers.L4Balancer) (*l4Ensured, error) {
	raw, err := json.Marshal(struct {
		LB   *providers.L4Balancer
		Spec any
	}{lb, lb.Spec})
	if err != nil {
		return nil, err
	}
	sig := string(raw)
	if e := st.ensured[cloud]; e != nil && e.sig == sig && time.Since(e.at) < r.Timing.Resync {
		return e, nil
	}
	res, err := c.Balancers.EnsureL4(ctx, lb)
	if err != nil {
		return nil, err
	}
	e := &l4Ensured{sig: sig, at: time.Now(), res: res}
	st.ensured[cloud] = e
	return e, nil
}

// teardown runs when a group has no member left: its bindings go first
// (targets deregistered), then each cloud deletes the load balancer,
// tried again while a cloud answers that it is still busy.
func (r *ServiceReconciler) teardown(ctx context.Context, key providers.BalancerKey) (time.Duration, error) {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("balancer", ServiceBalancer(key)))
	removed := r.Registry.RemoveBalancer(ServiceBalancer(key))
	if after, err := r.binder().release(ctx, ServiceBalancerKey(key), removed); err != nil || after > 0 {
		return after, err
	}
	var retry time.Duration
	for _, cloud := range r.servedClouds() {
		if err := r.Clouds[cloud].Balancers.DeleteL4(ctx, r.Cluster, key); err != nil {
			log.FromContext(ctx).Info("deleting the load balancer", "cloud", cloud, "error", err.Error())
			retry = max(retry, retryAfter(r.Timing, err))
		}
	}
	if retry > 0 {
		return retry, nil
	}
	r.mu.Lock()
	if st := r.groups[key]; st != nil {
		for _, nn := range st.members {
			if r.memberOf[nn] == key {
				delete(r.memberOf, nn)
			}
		}
	}
	delete(r.groups, key)
	r.mu.Unlock()
	return 0, nil
}

// forget drops what the reconciler and the registry keep of a Service
// that is gone.
func (r *ServiceReconciler) forget(nn types.NamespacedName) {
	r.Registry.ForgetLoadBalancerService(nn)
	r.mu.Lock()
	delete(r.memberOf, nn)
	delete(r.warned, nn)
	r.mu.Unlock()
}

func (r *ServiceReconciler) forgetSettled(members []types.NamespacedName) {
	for _, nn := range members {
		r.Registry.ForgetLoadBalancerService(nn)
	}
}

// letGo releases a Service podlb no longer serves (deleted, or no longer
// of type LoadBalancer with podlb's class), once its group (key, when it
// was a member) has let go of it (deleted: the group's load balancer is
// gone with it): finalizer, address and status annotation.
func (r *ServiceReconciler) letGo(ctx context.Context, svc *corev1.Service, key providers.BalancerKey, wasMember, deleted bool) error {
	r.forget(serviceName(svc))
	if !controllerutil.ContainsFinalizer(svc, ServiceFinalizer) {
		return nil
	}
	switch {
	case !wasMember:
	case deleted:
		r.Recorder.Eventf(svc, corev1.EventTypeNormal, "LoadBalancerDeleted", "deleted load balancer %s after deregistering its targets", key)
	default:
		r.Recorder.Eventf(svc, corev1.EventTypeNormal, "LoadBalancerReleased", "left load balancer %s, which other Services keep", key)
	}
	return dropFinalizer(ctx, r.Client, svc, func() bool {
		had := len(svc.Status.LoadBalancer.Ingress) > 0
		svc.Status.LoadBalancer.Ingress = nil
		return had
	})
}

// warnProblems emits one Warning per problem on the Service it names,
// when that Service's set of problems changed.
func (r *ServiceReconciler) warnProblems(members []*corev1.Service, problems []Problem, suffix string) {
	bySvc := map[types.NamespacedName][]string{}
	for _, p := range problems {
		bySvc[p.Object] = append(bySvc[p.Object], problemText(p)+suffix)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warned == nil {
		r.warned = map[types.NamespacedName]string{}
	}
	for _, m := range members {
		nn := serviceName(m)
		msgs := bySvc[nn]
		sig := strings.Join(msgs, "\n")
		if r.warned[nn] == sig {
			continue
		}
		r.warned[nn] = sig
		for _, msg := range msgs {
			r.Recorder.Eventf(m, corev1.EventTypeWarning, "InvalidLoadBalancer", "%s", msg)
		}
	}
}

// problemText is "field: message".
func problemText(p Problem) string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// warnEnsure reports a cloud's refusal on the Service whose annotation
// the load balancer's settings came from (the group's first member when
// none carries one).
func (r *ServiceReconciler) warnEnsure(to *corev1.Service, members []*corev1.Service, cloud string, err error) {
	if providers.ClassOf(err) != providers.Invalid || len(members) == 0 {
		return
	}
	if to == nil {
		to = members[0]
	}
	var pe *providers.Error
	msg := err.Error()
	if errors.As(err, &pe) && pe.Field != "" && !strings.Contains(msg, CloudAnnotations[cloud]) {
		msg = "metadata.annotations[" + CloudAnnotations[cloud] + "]: " + msg
	}
	r.Recorder.Eventf(to, corev1.EventTypeWarning, "LoadBalancerFailed", "%s: %s", cloud, msg)
}
