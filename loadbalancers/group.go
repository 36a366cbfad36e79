package loadbalancers

import (
	"context"
	"encoding/json"
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

// The lifecycle the two kinds of load balancer groups share: Ingresses,
// and Services of type LoadBalancer. A request names one object; the
// group it is in (and the group it left) is reconciled as a whole, each
// cloud's spec is parsed with the last good one kept, the load balancer
// is ensured behind a signature cache, the backends are bound, an empty
// group is torn down and its last object let go. What is a kind's own
// (its model, its status, its gate) stays in ingress.go and service.go.

// balancingCloud is one cloud that provisions load balancers of one kind
// (B): its target provider, which registers the members' pods, and its
// balancers.
type balancingCloud[B any] struct {
	Provider  providers.Provider
	Balancers B
}

// balancingClouds picks the providers that also implement B, by name.
func balancingClouds[B any](provs []providers.Provider) map[string]balancingCloud[B] {
	out := map[string]balancingCloud[B]{}
	for _, p := range provs {
		if b, ok := p.(B); ok {
			out[p.Name()] = balancingCloud[B]{Provider: p, Balancers: b}
		}
	}
	return out
}

// targetProviders are the clouds' target providers, by name.
func targetProviders[B any](clouds map[string]balancingCloud[B]) map[string]providers.Provider {
	out := map[string]providers.Provider{}
	for name, c := range clouds {
		out[name] = c.Provider
	}
	return out
}

// groupKind is what one kind of member tells groupReconciler.
type groupKind[T client.Object, X any] interface {
	// owner is the key the registry and the ledger hold the group's
	// bindings under.
	owner(key providers.BalancerKey) providers.BalancerKey
	// reconcileGroup brings a group with members in line with them.
	reconcileGroup(ctx context.Context, g *groupReconciler[T, X], key providers.BalancerKey, members []T) (time.Duration, error)
	// writeStatuses writes every member's address and status annotation.
	writeStatuses(ctx context.Context, g *groupReconciler[T, X], key providers.BalancerKey, members []T, st *groupState[X], problems []Problem) error
	deleteBalancer(ctx context.Context, cloud string, key providers.BalancerKey) error
	// forgetSettled drops what the registry keeps of a member for the
	// gate.
	forgetSettled(nn types.NamespacedName)
	// clearAddress empties obj's status.loadBalancer, reporting whether
	// it held an address.
	clearAddress(obj T) bool
}

// groupKindNames are the words a kind's Events and errors use.
type groupKindNames struct {
	kind, plural string
	// invalidReason is the reason of a member's problem Warnings.
	invalidReason string
	// statusMarksServed: a status annotation alone says podlb served the
	// object. An Ingress's is only ever podlb's load balancer's; a
	// Service's may be the target machinery's.
	statusMarksServed bool
}

// groupDeps are what a reconciler of groups works with.
type groupDeps struct {
	Client   client.Client
	Registry *targets.Registry
	Ledger   *targets.Ledger
	Recorder record.EventRecorder
	Timing   targets.Timing
	Cluster  string
	// Providers are the target providers of the clouds served, by name.
	Providers        map[string]providers.Provider
	EnqueueBinding   func(providers.BindingKey)
	SelectionChanged func(namespace string, selectors ...labels.Selector)
}

// groupBook is what a reconciler keeps of its groups between passes. Its
// zero value is ready.
type groupBook[X any] struct {
	mu     sync.Mutex
	groups map[providers.BalancerKey]*groupState[X]
	// memberOf remembers each member's group, so the group it leaves
	// (edited group, class, deletion) is reconciled too.
	memberOf map[types.NamespacedName]providers.BalancerKey
	// warned is the last set of problem Warnings per member.
	warned map[types.NamespacedName]string
}

// groupState is what is kept of one group; own is the kind's part.
type groupState[X any] struct {
	specs    map[string]any       // last good load-balancer spec per cloud
	ensured  map[string]*ensured  // per cloud
	bindings map[string]cloudPart // per cloud, as last put in force
	members  []types.NamespacedName
	// failed holds the last error per cloud, for status.
	failed map[string]string
	own    X
}

// ensured is a cloud's last answer for the group's load balancer, and
// the signature of what it was asked.
type ensured struct {
	sig     string
	at      time.Time
	status  providers.BalancerStatus
	specs   map[string]providers.Spec // binding Specs by backend ID
	refused map[string]string         // listeners the cloud left out, with why
}

type cloudPart map[types.NamespacedName][]*providers.Binding

// groupReconciler runs the shared lifecycle for one pass; the reconciler
// of a kind builds it from its fields and its book.
type groupReconciler[T client.Object, X any] struct {
	groupDeps
	names groupKindNames
	kind  groupKind[T, X]
	book  *groupBook[X]
}

func nameOf(obj client.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// byName indexes objects by namespace/name.
func byName[T client.Object](objs []T) map[types.NamespacedName]T {
	out := make(map[types.NamespacedName]T, len(objs))
	for _, o := range objs {
		out[nameOf(o)] = o
	}
	return out
}

// pointers points at each item of a list, in order.
func pointers[E any](items []E) []*E {
	out := make([]*E, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

func (g *groupReconciler[T, X]) servedClouds() []string {
	return slices.Sorted(maps.Keys(g.Providers))
}

func (g *groupReconciler[T, X]) binder() backendBinder {
	return backendBinder{Client: g.Client, Registry: g.Registry, Ledger: g.Ledger, Providers: g.Providers, Timing: g.Timing,
		EnqueueBinding: g.EnqueueBinding, SelectionChanged: g.SelectionChanged}
}

func (g *groupReconciler[T, X]) state(key providers.BalancerKey) *groupState[X] {
	b := g.book
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.groups == nil {
		b.groups = map[providers.BalancerKey]*groupState[X]{}
	}
	st := b.groups[key]
	if st == nil {
		st = &groupState[X]{specs: map[string]any{}, ensured: map[string]*ensured{}, bindings: map[string]cloudPart{}, failed: map[string]string{}}
		b.groups[key] = st
	}
	return st
}

// reconcile works on the group of the requested object (obj, when it
// exists) and on the group it left, out of all objects of its kind;
// served says which of them podlb serves.
func (g *groupReconciler[T, X]) reconcile(ctx context.Context, nn types.NamespacedName, obj T, exists bool, all []T, served func(T) bool) (reconcile.Result, error) {
	groups := map[providers.BalancerKey]bool{}
	if exists && served(obj) {
		groups[g.groupOf(obj)] = true
	}
	prev, wasMember := g.previousGroup(nn, obj, exists)
	if wasMember {
		groups[prev] = true
	}
	res := reconcile.Result{RequeueAfter: g.Timing.Resync}
	settled := true
	deleted := false
	var kept []string
	for _, key := range slices.SortedFunc(maps.Keys(groups), func(a, b providers.BalancerKey) int { return strings.Compare(a.String(), b.String()) }) {
		var members []T
		for _, m := range all {
			if served(m) && g.groupOf(m) == key {
				members = append(members, m)
			}
		}
		var after time.Duration
		var err error
		if len(members) == 0 {
			var groupKept []string
			after, groupKept, err = g.teardown(ctx, key)
			deleted = err == nil && after == 0
			kept = append(kept, groupKept...)
		} else {
			after, err = g.kind.reconcileGroup(ctx, g, key, members)
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
	case !exists:
		// Forgotten once its group settled: a busy teardown (of an
		// object whose finalizer was removed by hand) is retried first.
		if settled {
			g.forget(nn)
		}
	case !served(obj):
		if !settled {
			return res, nil
		}
		return reconcile.Result{}, g.letGo(ctx, obj, prev, wasMember, deleted, kept)
	}
	return res, nil
}

// membersOf lists the members of a group as last reconciled.
func (g *groupBook[X]) membersOf(key providers.BalancerKey) []types.NamespacedName {
	g.mu.Lock()
	defer g.mu.Unlock()
	if st := g.groups[key]; st != nil {
		return slices.Clone(st.members)
	}
	return nil
}

// groupOf is the object's group; while its annotations cannot be read,
// the group it was in.
func (g *groupReconciler[T, X]) groupOf(obj T) providers.BalancerKey {
	if key, ok := groupOf(obj); ok {
		return key
	}
	if prev, ok := g.previousGroup(nameOf(obj), obj, true); ok {
		return prev
	}
	return providers.BalancerKey{Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// previousGroup is the group the object was last a member of: in memory,
// or after a restart, as its status annotation records it.
func (g *groupReconciler[T, X]) previousGroup(nn types.NamespacedName, obj T, exists bool) (providers.BalancerKey, bool) {
	g.book.mu.Lock()
	key, ok := g.book.memberOf[nn]
	g.book.mu.Unlock()
	if ok || !exists {
		return key, ok
	}
	if balancer, ok := g.recordedBalancer(obj); ok {
		return ParseBalancerKey(balancer)
	}
	return providers.BalancerKey{}, false
}

// recordedBalancer is the balancer key obj's status annotation names,
// which survives a restart; read only where the annotation says podlb
// served obj.
func (g *groupReconciler[T, X]) recordedBalancer(obj T) (string, bool) {
	raw, ok := obj.GetAnnotations()[targets.AnnotationStatus]
	if !ok || !g.names.statusMarksServed && !controllerutil.ContainsFinalizer(obj, IngressFinalizer) {
		return "", false
	}
	var st struct {
		Balancer string `json:"balancer"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return "", false
	}
	return st.Balancer, true
}

// begin starts a group's pass: the balancer in the log, the finalizer on
// every member, the group's state.
func (g *groupReconciler[T, X]) begin(ctx context.Context, key providers.BalancerKey, members []T) (context.Context, *groupState[X], error) {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("balancer", g.kind.owner(key).String()))
	for _, m := range members {
		if err := addFinalizer(ctx, g.Client, g.names.kind, m); err != nil {
			return ctx, nil, err
		}
	}
	return ctx, g.state(key), nil
}

// cloudSpecs decides which clouds serve the group and parses each one's
// load-balancer annotation, from the first member in order that carries
// it (from says which). A broken value keeps the last good one in force;
// without one the cloud is left out of specs and keeps what it has.
func (g *groupReconciler[T, X]) cloudSpecs(st *groupState[X], order []types.NamespacedName, byName map[types.NamespacedName]T, parse func(cloud, raw string) (any, error)) ([]string, map[string]any, map[string]types.NamespacedName, []Problem) {
	served := g.servedClouds()
	set := map[string]bool{}
	var problems []Problem
	for _, nn := range order {
		annotations := byName[nn].GetAnnotations()
		for _, c := range Clouds(annotations, served) {
			set[c] = true
		}
		for _, c := range UnservedClouds(annotations, served) {
			problems = append(problems, unservedCloud(nn, c, served))
		}
	}
	clouds := slices.Sorted(maps.Keys(set))
	specs := map[string]any{}
	from := map[string]types.NamespacedName{}
	for _, cloud := range clouds {
		annotation := CloudAnnotations[cloud]
		var raw string
		for _, nn := range order {
			if v, ok := byName[nn].GetAnnotations()[annotation]; ok {
				raw, from[cloud] = v, nn
				break
			}
		}
		spec, err := parse(cloud, raw)
		if err != nil {
			msg := providers.Bounded(strings.TrimPrefix(err.Error(), annotation+": "), providers.MaxMessage)
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

// heldUntilFixed covers a broken group just after a start: what its load
// balancer served before is unknown here, so nothing is changed until the
// input is fixed, unless nothing was provisioned yet. It reports whether
// the group is held; then its members are warned and their status
// written.
func (g *groupReconciler[T, X]) heldUntilFixed(ctx context.Context, key providers.BalancerKey, st *groupState[X], members []T, problems []Problem) (bool, error) {
	held, err := g.Ledger.BalancerBindings(ctx, g.kind.owner(key).String())
	if err != nil || len(held) == 0 {
		return false, err
	}
	g.warnProblems(members, problems, "; podlb changes nothing on this load balancer until it is fixed")
	return true, g.kind.writeStatuses(ctx, g, key, members, st, problems)
}

// balancerRequest is one cloud's load balancer as a kind asks for it.
type balancerRequest struct {
	// lb is what is asked (with spec, its cloud settings), for the
	// signature.
	lb, spec any
	ensure   func(context.Context) (*ensured, error)
}

// ensuredClouds is what the clouds answered in one pass.
type ensuredClouds struct {
	bound map[string]cloudPart
	// retry is when to try again after a cloud's error (0: none).
	retry time.Duration
	// complete: every cloud asked for has bindings.
	complete bool
	problems []Problem
}

// ensureClouds asks each cloud with a spec for the group's load balancer
// and turns each answer into bindings (and problems). A cloud that fails,
// or has no spec to ask with, keeps the bindings it had; a refusal is
// reported on warnTo(cloud) when it is news.
func (g *groupReconciler[T, X]) ensureClouds(ctx context.Context, st *groupState[X], clouds []string, specs map[string]any, warnTo func(cloud string) T,
	ask func(cloud string, spec any) balancerRequest, bind func(cloud string, e *ensured) (cloudPart, []Problem)) ensuredClouds {
	out := ensuredClouds{bound: map[string]cloudPart{}, complete: true}
	keepPrevious := func(cloud string) {
		if prev, had := st.bindings[cloud]; had {
			out.bound[cloud] = prev
		} else {
			out.complete = false
		}
	}
	for _, cloud := range clouds {
		spec, ok := specs[cloud]
		if !ok {
			// A broken annotation with no last good value: keep what is there.
			keepPrevious(cloud)
			continue
		}
		e, err := g.ensure(ctx, st, cloud, ask(cloud, spec))
		if err != nil {
			if st.failed[cloud] != err.Error() {
				g.warnEnsure(warnTo(cloud), cloud, err)
			}
			st.failed[cloud] = err.Error()
			out.retry = retryAfter(g.Timing, err)
			keepPrevious(cloud)
			continue
		}
		delete(st.failed, cloud)
		part, problems := bind(cloud, e)
		out.bound[cloud] = part
		out.problems = append(out.problems, problems...)
	}
	return out
}

// ensure asks the cloud unless the same load balancer was ensured within
// the resync interval: status-only passes cost no cloud calls.
func (g *groupReconciler[T, X]) ensure(ctx context.Context, st *groupState[X], cloud string, req balancerRequest) (*ensured, error) {
	raw, err := json.Marshal(struct {
		LB   any
		Spec any
	}{req.lb, req.spec})
	if err != nil {
		return nil, err
	}
	sig := string(raw)
	if e := st.ensured[cloud]; e != nil && e.sig == sig && time.Since(e.at) < g.Timing.Resync {
		return e, nil
	}
	e, err := req.ensure(ctx)
	if err != nil {
		return nil, err
	}
	e.sig, e.at = sig, time.Now()
	st.ensured[cloud] = e
	return e, nil
}

// putBindings puts the group's bindings in force and releases those it
// no longer has; then the clouds the group no longer asks for delete
// their load balancer, once their bindings are gone. It returns when to
// look again, starting from retry, and stop when a release failed and the
// pass ends here.
func (g *groupReconciler[T, X]) putBindings(ctx context.Context, key providers.BalancerKey, st *groupState[X], clouds []string, bound map[string]cloudPart, retry time.Duration) (after time.Duration, stop bool, err error) {
	var dropped []string
	for cloud := range st.bindings {
		if _, ok := bound[cloud]; !ok && !slices.Contains(clouds, cloud) {
			dropped = append(dropped, cloud)
		}
	}
	st.bindings = bound
	if after, err := g.binder().put(ctx, g.kind.owner(key), bound); err != nil || after > 0 {
		return max(after, retry), true, err
	}
	for _, cloud := range dropped {
		if err := g.kind.deleteBalancer(ctx, cloud, key); err != nil {
			retry = retryAfter(g.Timing, err)
			continue
		}
		delete(st.ensured, cloud)
	}
	return retry, false, nil
}

// finish records the group's members (names) and writes their status.
func (g *groupReconciler[T, X]) finish(ctx context.Context, key providers.BalancerKey, st *groupState[X], names []types.NamespacedName, members []T, problems []Problem) error {
	b := g.book
	b.mu.Lock()
	if b.memberOf == nil {
		b.memberOf = map[types.NamespacedName]providers.BalancerKey{}
	}
	for _, nn := range names {
		b.memberOf[nn] = key
	}
	st.members = names
	b.mu.Unlock()
	return g.kind.writeStatuses(ctx, g, key, members, st, problems)
}

// teardown runs when a group has no member left: its bindings go first
// (targets deregistered), then each cloud deletes the load balancer,
// tried again while a cloud answers that it is still busy. What a cloud
// keeps because resources podlb did not create depend on it (a user's
// rule on podlb's listener) is not retried: podlb never deletes those, and
// waiting for someone to would hold the member forever. It is answered,
// "cloud: what", for the Warning that lets the member go.
func (g *groupReconciler[T, X]) teardown(ctx context.Context, key providers.BalancerKey) (time.Duration, []string, error) {
	owner := g.kind.owner(key)
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("balancer", owner.String()))
	removed := g.Registry.RemoveBalancer(owner.String())
	if after, err := g.binder().release(ctx, owner, removed); err != nil || after > 0 {
		return after, nil, err
	}
	var retry time.Duration
	var kept []string
	for _, cloud := range g.servedClouds() {
		err := g.kind.deleteBalancer(ctx, cloud, key)
		if k, ok := providers.AsKept(err); ok {
			for _, what := range k.Kept {
				kept = append(kept, cloud+": "+what)
			}
			continue
		}
		if err != nil {
			log.FromContext(ctx).Info("deleting the load balancer", "cloud", cloud, "error", err.Error())
			retry = max(retry, retryAfter(g.Timing, err))
		}
	}
	if retry > 0 {
		return retry, nil, nil
	}
	b := g.book
	b.mu.Lock()
	if st := b.groups[key]; st != nil {
		for _, nn := range st.members {
			if b.memberOf[nn] == key {
				delete(b.memberOf, nn)
			}
		}
	}
	delete(b.groups, key)
	b.mu.Unlock()
	return 0, kept, nil
}

// forget drops what the reconciler and the registry keep of an object.
func (g *groupReconciler[T, X]) forget(nn types.NamespacedName) {
	g.kind.forgetSettled(nn)
	g.book.mu.Lock()
	delete(g.book.memberOf, nn)
	delete(g.book.warned, nn)
	g.book.mu.Unlock()
}

// letGo releases an object podlb no longer serves, once its group (key,
// when it was a member) has let go of it (deleted: the group's load
// balancer is gone with it, but for what kept names): finalizer, address
// and status annotation.
func (g *groupReconciler[T, X]) letGo(ctx context.Context, obj T, key providers.BalancerKey, wasMember, deleted bool, kept []string) error {
	g.forget(nameOf(obj))
	marked := g.names.statusMarksServed && obj.GetAnnotations()[targets.AnnotationStatus] != ""
	if !controllerutil.ContainsFinalizer(obj, IngressFinalizer) && !marked {
		return nil
	}
	switch {
	case !wasMember:
	case deleted && len(kept) > 0:
		g.Recorder.Eventf(obj, corev1.EventTypeWarning, "LoadBalancerKept", "deleted what podlb created for load balancer %s, except what resources podlb did not create still depend on; that stays, for you to delete once they are gone: %s",
			key, strings.Join(kept, "; "))
	case deleted:
		g.Recorder.Eventf(obj, corev1.EventTypeNormal, "LoadBalancerDeleted", "deleted load balancer %s after deregistering its targets", key)
	default:
		g.Recorder.Eventf(obj, corev1.EventTypeNormal, "LoadBalancerReleased", "left load balancer %s, which other %s keep", key, g.names.plural)
	}
	return dropFinalizer(ctx, g.Client, obj, func() bool { return g.kind.clearAddress(obj) })
}
