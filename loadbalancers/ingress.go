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
	networkingv1 "k8s.io/api/networking/v1"
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

// IngressFinalizer holds an Ingress podlb serves until its load balancer
// has let go of it: its backends' targets deregistered and, for the last
// Ingress of a group, the load balancer deleted.
const IngressFinalizer = "podlb.io/load-balancer"

// Cloud is one cloud that provisions HTTP load balancers: its target
// provider (which registers the backends' pods) and its balancers.
type Cloud struct {
	Provider  providers.Provider
	Balancers providers.HTTPBalancers
}

// HTTPClouds picks the providers that also provision HTTP load balancers.
func HTTPClouds(provs []providers.Provider) map[string]Cloud {
	out := map[string]Cloud{}
	for _, p := range provs {
		if hb, ok := p.(providers.HTTPBalancers); ok {
			out[p.Name()] = Cloud{Provider: p, Balancers: hb}
		}
	}
	return out
}

// IngressReconciler provisions the load balancer of each group of
// Ingresses podlb serves, on every cloud the group asks for, and hands
// its backends to the target machinery as bindings. A request names one
// Ingress; the reconciler works on its whole group (and on the group it
// left, if any).
type IngressReconciler struct {
	Client client.Client
	// Reader reads pods uncached: the cache keeps pods without their
	// readiness probes, which give the health check paths.
	Reader   client.Reader
	Registry *targets.Registry
	Ledger   *targets.Ledger
	Clouds   map[string]Cloud
	Cluster  string
	Recorder record.EventRecorder
	Timing   targets.Timing
	// EnqueueBinding schedules a binding reconcile.
	EnqueueBinding func(providers.BindingKey)
	// SelectionChanged is told which pods' gates may change.
	SelectionChanged func(namespace string, selectors ...labels.Selector)

	mu     sync.Mutex
	groups map[providers.BalancerKey]*groupState
	// memberOf remembers each Ingress's group, so the group it leaves
	// (edited group, class, deletion) is reconciled too.
	memberOf map[types.NamespacedName]providers.BalancerKey
	warned   map[types.NamespacedName]string
}

// groupState is what the reconciler keeps of one group between passes.
type groupState struct {
	lastGood *HTTPLoadBalancer
	// routed is the model last put in the clouds, switches held (see
	// HoldSwitches); held says what is held.
	routed   *HTTPLoadBalancer
	held     []string
	specs    map[string]any       // last good load-balancer spec per cloud
	ensured  map[string]*ensured  // per cloud
	bindings map[string]cloudPart // per cloud, as last put in force
	members  []types.NamespacedName
	// failed holds the last error per cloud, for status.
	failed map[string]string
}

type ensured struct {
	sig    string
	at     time.Time
	status *providers.BalancerStatus
	specs  map[string]providers.Spec
}

type cloudPart map[types.NamespacedName][]*providers.Binding

func (r *IngressReconciler) state(key providers.BalancerKey) *groupState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.groups == nil {
		r.groups = map[providers.BalancerKey]*groupState{}
	}
	st := r.groups[key]
	if st == nil {
		st = &groupState{specs: map[string]any{}, ensured: map[string]*ensured{}, bindings: map[string]cloudPart{}, failed: map[string]string{}}
		r.groups[key] = st
	}
	return st
}

func (r *IngressReconciler) servedClouds() []string {
	return slices.Sorted(maps.Keys(r.Clouds))
}

// Reconcile implements reconcile.Reconciler.
func (r *IngressReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var all networkingv1.IngressList
	if err := r.Client.List(ctx, &all); err != nil {
		return reconcile.Result{}, err
	}
	var classes networkingv1.IngressClassList
	if err := r.Client.List(ctx, &classes); err != nil {
		return reconcile.Result{}, err
	}
	var ing *networkingv1.Ingress
	for i := range all.Items {
		if all.Items[i].Namespace == req.Namespace && all.Items[i].Name == req.Name {
			ing = &all.Items[i]
		}
	}
	served := func(i *networkingv1.Ingress) bool {
		return i.DeletionTimestamp == nil && ServesIngress(i, classes.Items)
	}
	groups := map[providers.BalancerKey]bool{}
	if ing != nil && served(ing) {
		groups[r.groupOf(ing)] = true
	}
	if prev, ok := r.previousGroup(req.NamespacedName, ing); ok {
		groups[prev] = true
	}
	res := reconcile.Result{RequeueAfter: r.Timing.Resync}
	settled := true
	deleted := false
	var kept []string
	for _, key := range slices.SortedFunc(maps.Keys(groups), func(a, b providers.BalancerKey) int { return strings.Compare(a.String(), b.String()) }) {
		var members []*networkingv1.Ingress
		for i := range all.Items {
			if m := &all.Items[i]; served(m) && r.groupOf(m) == key {
				members = append(members, m)
			}
		}
		var after time.Duration
		var err error
		if len(members) == 0 {
			var groupKept []string
			after, groupKept, err = r.teardown(ctx, key)
			deleted = err == nil && after == 0
			kept = append(kept, groupKept...)
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
	if ing != nil && !served(ing) {
		if !settled {
			return res, nil
		}
		return reconcile.Result{}, r.letGo(ctx, ing, deleted, kept)
	}
	return res, nil
}

// MembersOf lists the Ingresses of the group whose balancer key reads
// balancer, as last reconciled: whose status to write when a backend
// binding's status changes.
func (r *IngressReconciler) MembersOf(balancer string) []types.NamespacedName {
	key, ok := ParseBalancerKey(balancer)
	if !ok {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.groups[key]; st != nil {
		return slices.Clone(st.members)
	}
	return nil
}

// groupOf is the Ingress's group; while its annotations cannot be read,
// the group it was in.
func (r *IngressReconciler) groupOf(ing *networkingv1.Ingress) providers.BalancerKey {
	if key, ok := GroupOf(ing); ok {
		return key
	}
	if prev, ok := r.previousGroup(types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}, ing); ok {
		return prev
	}
	return providers.BalancerKey{Namespace: ing.Namespace, Name: ing.Name}
}

// previousGroup is the group the Ingress was last a member of: in memory,
// or after a restart, as its status annotation records it.
func (r *IngressReconciler) previousGroup(nn types.NamespacedName, ing *networkingv1.Ingress) (providers.BalancerKey, bool) {
	r.mu.Lock()
	key, ok := r.memberOf[nn]
	r.mu.Unlock()
	if ok || ing == nil {
		return key, ok
	}
	if st, err := IngressStatusOf(ing); err == nil {
		return ParseBalancerKey(st.Balancer)
	}
	return providers.BalancerKey{}, false
}

// reconcileGroup brings one group's load balancers and bindings in line
// with its members. It returns when to look again (0: at the resync).
func (r *IngressReconciler) reconcileGroup(ctx context.Context, key providers.BalancerKey, members []*networkingv1.Ingress) (time.Duration, error) {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("balancer", key.String()))
	for _, m := range members {
		if err := addFinalizer(ctx, r.Client, "Ingress", m); err != nil {
			return 0, err
		}
	}
	services := r.serviceLookup(ctx)
	model, problems := BuildIngressGroup(key.String(), members, services)
	st := r.state(key)
	clouds, specs, specProblems := r.cloudSpecs(model, members, st)
	problems = append(problems, specProblems...)
	broken := map[types.NamespacedName]bool{}
	for _, p := range problems {
		broken[p.Object] = true
	}
	if len(broken) > 0 && st.lastGood == nil {
		// Just started with a broken Ingress: what its load balancer
		// routed before is unknown here, so nothing is changed until it is
		// fixed, unless nothing was provisioned yet.
		held, err := r.Ledger.BalancerBindings(ctx, key.String())
		if err != nil {
			return 0, err
		}
		if len(held) > 0 {
			r.warnProblems(members, problems, "; podlb changes nothing on this load balancer until it is fixed")
			r.writeStatuses(ctx, key, members, st, problems)
			return r.Timing.MaxBackoff, nil
		}
	}
	model = KeepLastGood(model, st.lastGood, broken)
	st.lastGood = model
	// Said like problems, but they break nothing: the routes stand.
	problems = append(problems, unusedTLSSecrets(members)...)
	r.warnProblems(members, problems, "")
	model, st.held = HoldSwitches(model, st.routed, r.servingOn(key, clouds))

	var retry time.Duration
	bound := map[string]cloudPart{}
	for _, cloud := range clouds {
		c := r.Clouds[cloud]
		spec, ok := specs[cloud]
		if !ok {
			// A broken annotation with no last good value: keep what is there.
			if prev, had := st.bindings[cloud]; had {
				bound[cloud] = prev
			}
			continue
		}
		lb := HTTPBalancerOf(key, r.Cluster, model, spec, r.healthCheckPaths(ctx, model, services))
		e, err := r.ensure(ctx, c, st, cloud, lb)
		if err != nil {
			if st.failed[cloud] != err.Error() {
				r.warnEnsure(members, cloud, err)
			}
			st.failed[cloud] = err.Error()
			retry = r.backoff(err)
			if prev, had := st.bindings[cloud]; had {
				bound[cloud] = prev
			}
			continue
		}
		delete(st.failed, cloud)
		bound[cloud] = BackendBindings(cloud, r.Cluster, key, model, e.specs)
	}
	st.routed = model
	// Clouds the group no longer asks for: their bindings go now, the
	// load balancer once they are gone.
	var dropped []string
	for cloud := range st.bindings {
		if _, ok := bound[cloud]; !ok && !slices.Contains(clouds, cloud) {
			dropped = append(dropped, cloud)
		}
	}
	if after, err := r.putBindings(ctx, key, st, bound); err != nil || after > 0 {
		return max(after, retry), err
	}
	for _, cloud := range dropped {
		if err := r.Clouds[cloud].Balancers.DeleteHTTP(ctx, r.Cluster, key); err != nil {
			retry = r.backoff(err)
			continue
		}
		delete(st.ensured, cloud)
	}

	found := FoundServices(members, services)
	names := make([]types.NamespacedName, len(members))
	for i, m := range members {
		names[i] = nameOf(m)
		r.Registry.SetIngressSettled(names[i], targets.IngressSettled{Generation: m.Generation, Services: found[names[i]]})
	}
	r.mu.Lock()
	if r.memberOf == nil {
		r.memberOf = map[types.NamespacedName]providers.BalancerKey{}
	}
	for _, nn := range names {
		r.memberOf[nn] = key
	}
	st.members = names
	r.mu.Unlock()
	if err := r.writeStatuses(ctx, key, members, st, problems); err != nil {
		return 0, err
	}
	return retry, nil
}

// cloudSpecs decides which clouds serve the group and parses each one's
// load-balancer annotation, from the first member (in group order) that
// carries it. A broken value keeps the last good one in force; without
// one the cloud is left out of specs and keeps what it has.
func (r *IngressReconciler) cloudSpecs(model *HTTPLoadBalancer, members []*networkingv1.Ingress, st *groupState) ([]string, map[string]any, []Problem) {
	byName := map[types.NamespacedName]*networkingv1.Ingress{}
	for _, m := range members {
		byName[nameOf(m)] = m
	}
	served := r.servedClouds()
	set := map[string]bool{}
	var problems []Problem
	for _, m := range model.Members {
		ing := byName[m.Ingress]
		for _, c := range Clouds(ing.Annotations, served) {
			set[c] = true
		}
		for _, c := range UnservedClouds(ing.Annotations, served) {
			problems = append(problems, unservedCloud(m.Ingress, c, served))
		}
	}
	clouds := slices.Sorted(maps.Keys(set))
	specs := map[string]any{}
	for _, cloud := range clouds {
		annotation := CloudAnnotations[cloud]
		var raw string
		var from types.NamespacedName
		for _, m := range model.Members {
			if v, ok := byName[m.Ingress].Annotations[annotation]; ok {
				raw, from = v, m.Ingress
				break
			}
		}
		spec, err := r.Clouds[cloud].Balancers.ParseBalancerSpec(raw)
		if err != nil {
			msg := providers.Bounded(strings.TrimPrefix(err.Error(), annotation+": "), providers.MaxMessage)
			if last, ok := st.specs[cloud]; ok {
				specs[cloud] = last
				msg += "; the last good value stays in force until this is fixed"
			}
			problems = append(problems, Problem{Object: from, Field: "metadata.annotations[" + annotation + "]", Message: msg})
			continue
		}
		specs[cloud] = spec
		st.specs[cloud] = spec
	}
	// Problems about annotations are not the model's: they hold the
	// Ingress's routes only through the spec kept above.
	return clouds, specs, problems
}

// ensure calls EnsureHTTP unless the same load balancer was ensured
// within the resync interval: status-only passes cost no cloud calls.
func (r *IngressReconciler) ensure(ctx context.Context, c Cloud, st *groupState, cloud string, lb *providers.HTTPBalancer) (*ensured, error) {
	raw, err := json.Marshal(struct {
		LB   *providers.HTTPBalancer
		Spec any
	}{lb, lb.Spec})
	if err != nil {
		return nil, err
	}
	sig := string(raw)
	if e := st.ensured[cloud]; e != nil && e.sig == sig && time.Since(e.at) < r.Timing.Resync {
		return e, nil
	}
	status, specs, err := c.Balancers.EnsureHTTP(ctx, lb)
	if err != nil {
		return nil, err
	}
	e := &ensured{sig: sig, at: time.Now(), status: status, specs: specs}
	st.ensured[cloud] = e
	return e, nil
}

func (r *IngressReconciler) backoff(err error) time.Duration {
	return retryAfter(r.Timing, err)
}

// binder hands the group's backends to the target machinery.
func (r *IngressReconciler) binder() backendBinder {
	provs := map[string]providers.Provider{}
	for name, c := range r.Clouds {
		provs[name] = c.Provider
	}
	return backendBinder{Client: r.Client, Registry: r.Registry, Ledger: r.Ledger, Providers: provs, Timing: r.Timing,
		EnqueueBinding: r.EnqueueBinding, SelectionChanged: r.SelectionChanged}
}

// putBindings puts the group's backend bindings in force and releases
// those it no longer has; it returns when to try again when a release
// failed.
func (r *IngressReconciler) putBindings(ctx context.Context, key providers.BalancerKey, st *groupState, bound map[string]cloudPart) (time.Duration, error) {
	st.bindings = bound
	return r.binder().put(ctx, key, bound)
}

// release deregisters the targets of bindings the balancer dropped, and
// of any its ledger still holds that it no longer has.
func (r *IngressReconciler) release(ctx context.Context, key providers.BalancerKey, removed []providers.BindingKey) (time.Duration, error) {
	return r.binder().release(ctx, key, removed)
}

// teardown runs when a group has no member left: its bindings go first
// (targets deregistered), then each cloud deletes the load balancer,
// tried again while a cloud answers that it is still busy. What a cloud
// keeps because resources podlb did not create depend on it (a user's
// rule on podlb's listener) is not retried: podlb never deletes those, and
// waiting for someone to would hold the Ingress forever. It is answered,
// "cloud: what", for the Warning that lets the Ingress go.
func (r *IngressReconciler) teardown(ctx context.Context, key providers.BalancerKey) (time.Duration, []string, error) {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("balancer", key.String()))
	removed := r.Registry.RemoveBalancer(key.String())
	if after, err := r.release(ctx, key, removed); err != nil || after > 0 {
		return after, nil, err
	}
	var retry time.Duration
	var kept []string
	for _, cloud := range r.servedClouds() {
		err := r.Clouds[cloud].Balancers.DeleteHTTP(ctx, r.Cluster, key)
		if k, ok := providers.AsKept(err); ok {
			for _, what := range k.Kept {
				kept = append(kept, cloud+": "+what)
			}
			continue
		}
		if err != nil {
			log.FromContext(ctx).Info("deleting the load balancer", "cloud", cloud, "error", err.Error())
			retry = max(retry, r.backoff(err))
		}
	}
	if retry > 0 {
		return retry, nil, nil
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
	return 0, kept, nil
}

// letGo releases an Ingress podlb no longer serves, once its group has
// let go of it (deleted: the group's load balancer is gone with it, but
// for what kept names): finalizer, address and status annotation.
func (r *IngressReconciler) letGo(ctx context.Context, ing *networkingv1.Ingress, deleted bool, kept []string) error {
	nn := nameOf(ing)
	r.Registry.ForgetIngress(nn)
	// A teardown forgets its members first: the status annotation still
	// names the group, for the Events.
	key, wasMember := r.previousGroup(nn, ing)
	r.mu.Lock()
	delete(r.memberOf, nn)
	delete(r.warned, nn)
	r.mu.Unlock()
	if !controllerutil.ContainsFinalizer(ing, IngressFinalizer) && ing.Annotations[targets.AnnotationStatus] == "" {
		return nil
	}
	switch {
	case !wasMember && ing.Annotations[targets.AnnotationStatus] == "":
	case deleted && len(kept) > 0:
		r.Recorder.Eventf(ing, corev1.EventTypeWarning, "LoadBalancerKept", "deleted what podlb created for load balancer %s, except what resources podlb did not create still depend on; that stays, for you to delete once they are gone: %s",
			key, strings.Join(kept, "; "))
	case deleted:
		r.Recorder.Eventf(ing, corev1.EventTypeNormal, "LoadBalancerDeleted", "deleted load balancer %s after deregistering its targets", key)
	default:
		r.Recorder.Eventf(ing, corev1.EventTypeNormal, "LoadBalancerReleased", "left load balancer %s, which other Ingresses keep", key)
	}
	return dropFinalizer(ctx, r.Client, ing, func() bool {
		had := len(ing.Status.LoadBalancer.Ingress) > 0
		ing.Status.LoadBalancer.Ingress = nil
		return had
	})
}

// unusedTLSSecrets names every spec.tls entry with a secretName: podlb
// does not upload Secrets to the clouds, so such a host is served with the
// certificates the cloud annotations name, if any.
func unusedTLSSecrets(members []*networkingv1.Ingress) []Problem {
	var out []Problem
	for _, m := range members {
		for i, t := range m.Spec.TLS {
			if t.SecretName != "" {
				out = append(out, Problem{Object: nameOf(m), Field: fmt.Sprintf("spec.tls[%d].secretName", i),
					Message: fmt.Sprintf("podlb does not upload Secret %s to the clouds; HTTPS is served with the certificates of the load-balancer annotations (certificateArns, sslCertificates)", t.SecretName)})
			}
		}
	}
	return out
}

// serviceLookup reads Services from the cache.
func (r *IngressReconciler) serviceLookup(ctx context.Context) ServiceLookup {
	return func(namespace, name string) (*corev1.Service, bool) {
		var svc corev1.Service
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &svc); err != nil {
			return nil, false
		}
		return &svc, true
	}
}

// healthCheckPathSample bounds how many pods of a backend are read for
// its health check path: they come from one pod template, bar rollouts.
const healthCheckPathSample = 20

// healthCheckPaths finds, per backend ID, the path the backend's pods'
// readiness probes check on the traffic port.
func (r *IngressReconciler) healthCheckPaths(ctx context.Context, lb *HTTPLoadBalancer, services ServiceLookup) map[string]string {
	out := map[string]string{}
	for _, be := range lb.Backends {
		svc, ok := services(be.Namespace, be.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		var pods corev1.PodList
		if err := r.Reader.List(ctx, &pods, client.InNamespace(be.Namespace), client.MatchingLabels(svc.Spec.Selector), client.Limit(healthCheckPathSample)); err != nil {
			continue
		}
		ptrs := make([]*corev1.Pod, 0, len(pods.Items))
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil {
				ptrs = append(ptrs, &pods.Items[i])
			}
		}
		if path, ok := HealthCheckPath(ptrs, be.TargetPort); ok {
			out[httpBackend(be).ID()] = path
		}
	}
	return out
}

// warnProblems emits one Warning per problem on the Ingress it names,
// when that Ingress's set of problems changed.
func (r *IngressReconciler) warnProblems(members []*networkingv1.Ingress, problems []Problem, suffix string) {
	byIngress := map[types.NamespacedName][]string{}
	for _, p := range problems {
		msg := p.Message + suffix
		if p.Field != "" {
			msg = p.Field + ": " + msg
		}
		byIngress[p.Object] = append(byIngress[p.Object], msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.warned == nil {
		r.warned = map[types.NamespacedName]string{}
	}
	for _, m := range members {
		nn := nameOf(m)
		msgs := byIngress[nn]
		sig := strings.Join(msgs, "\n")
		if r.warned[nn] == sig {
			continue
		}
		r.warned[nn] = sig
		for _, msg := range msgs {
			r.Recorder.Eventf(m, corev1.EventTypeWarning, "InvalidIngress", "%s", msg)
		}
	}
}

// warnEnsure reports a cloud's refusal on the group's first member.
func (r *IngressReconciler) warnEnsure(members []*networkingv1.Ingress, cloud string, err error) {
	if providers.ClassOf(err) != providers.Invalid || len(members) == 0 {
		return
	}
	first := members[0]
	for _, m := range members[1:] {
		if nameOf(m).String() < nameOf(first).String() {
			first = m
		}
	}
	var pe *providers.Error
	msg := err.Error()
	if errors.As(err, &pe) && pe.Field != "" && !strings.Contains(msg, CloudAnnotations[cloud]) {
		msg = "metadata.annotations[" + CloudAnnotations[cloud] + "]: " + msg
	}
	r.Recorder.Eventf(first, corev1.EventTypeWarning, "LoadBalancerFailed", "%s: %s", cloud, msg)
}
