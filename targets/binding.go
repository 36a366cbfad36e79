package targets

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
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
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Writes hands out each cloud's write budget, by provider name; a
	// cloud without one writes as soon as a pass plans.
	Writes map[string]*Dispatcher
	// ScheduleRead asks the health reader to read a binding's group after
	// a delay, at a priority (ReadPriority, BackgroundPriority).
	ScheduleRead func(key providers.BindingKey, after time.Duration, priority int)
	// Wake brings a binding back at once: its deregistrations held for
	// registrations still settling are due (see providers.Settler).
	Wake func(key providers.BindingKey)
	// Cached, when set, reads pods, nodes and EndpointSlices from the
	// cache without the copies Client's reads make: every pass reads
	// every pod of its Service and their nodes, most of what a
	// controller at rest allocates. Nil: Client reads them.
	Cached CachedReader

	mu       sync.Mutex
	failures map[providers.BindingKey]int
	warned   distinctWarnings
	books    map[providers.BindingKey]*registrations
	rejected map[providers.BindingKey]map[providers.TargetKey]*rejection
	views    map[providers.BindingKey]*view
	learned  map[string]*healthyTimes
}

// CachedReader reads cached objects as the cache holds them: what it
// returns is shared with the cache and read only.
type CachedReader interface {
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, bool)
	Node(ctx context.Context, name string) (*corev1.Node, bool)
	// Slices are the EndpointSlices of a Service.
	Slices(ctx context.Context, namespace, service string) ([]*Slice, error)
}

// registrations remembers, for the group a binding is in, when this
// process registered each target and for which pod: the cloud's health of
// a target counts for a pod only when observed after the target was
// registered for that pod.
type registrations struct {
	ref string
	at  map[providers.TargetKey]registration
	// deregistered is when this process asked to deregister each target,
	// so a read that began earlier does not bring it back.
	deregistered map[providers.TargetKey]time.Time
	// leaving holds each target the binding wants deregistered.
	leaving map[providers.TargetKey]leave
	// lastLate is when a deregistration last came after its pod was
	// killed.
	lastLate time.Time
	// watched holds the settling registrations a wake-up waits for (see
	// wakeWhenSettled).
	watched map[<-chan struct{}]bool
}

// leave is a target's way out of the group.
type leave struct {
	// since is when it was first planned to leave: how long it has
	// waited.
	since time.Time
	// killed is when its terminating pod is killed (the deletion
	// timestamp, as first seen); zero when no such pod was seen.
	killed time.Time
	// settled, on a providers.Settler, closes once the registrations
	// settling when the deregistration was first due have settled; nil
	// until then.
	settled <-chan struct{}
}

type registration struct {
	uid    types.UID
	at     time.Time
	target providers.Target
	// timed is set once the registration's time to healthy was learned
	// (when the ledger does not name its pod: see settle).
	timed bool
	// read is set once a read of the target's part of the group, begun
	// after the registration, is stored: from then on the observation
	// holds no older word on the target (see readScope).
	read bool
}

// rejection is a target the cloud refused: it is left out of plans until
// retry, so one bad target never holds up the others.
type rejection struct {
	err      string
	kind     string // providers.Kind of the error
	retry    time.Time
	failures int
}

func (r *BindingReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// pass is what one reconcile of a binding works with.
type pass struct {
	key     providers.BindingKey
	gen     uint64
	binding *providers.Binding
	prov    providers.Provider
	svcRef  *corev1.ObjectReference
	desired []Desired
	pods    map[types.UID]*corev1.Pod
	// stopping holds when each terminating pod's target is killed.
	stopping map[providers.TargetKey]time.Time
	group    *providers.Group
	entry    *LedgerEntry
}

// Reconcile implements reconcile.TypedReconciler: the write path. It
// plans from the desired targets, podlb's own record of what it wrote and
// the last health read, never waiting for a read of its own; reads run in
// the health reader (see HealthReader) on the cloud's timeline, and each
// completed read brings the binding back here to feed the gate.
func (r *BindingReconciler) Reconcile(ctx context.Context, key providers.BindingKey) (reconcile.Result, error) {
	logger := log.FromContext(ctx).WithValues("binding", key) // a Stringer: formatted only for a line written
	ctx = log.IntoContext(ctx, logger)
	b, gen := r.Registry.BindingAt(key)
	if b == nil {
		// The binding is gone; the Service reconciler releases its group.
		r.forget(key)
		return reconcile.Result{}, nil
	}
	ps := &pass{key: key, gen: gen, binding: b, prov: r.Providers[key.Provider],
		svcRef: &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: key.Namespace, Name: key.Service}}
	err := r.desired(ctx, ps)
	if err != nil {
		return r.fail(ctx, ps, fmt.Errorf("reading cluster state: %w", err))
	}
	ps.group, err = ps.prov.Ensure(ctx, b)
	if err != nil {
		return r.fail(ctx, ps, err)
	}
	if ps.group.Created {
		r.event(ps.svcRef, corev1.EventTypeNormal, "GroupCreated", "%s port %d: created %s", key.Provider, key.Port, ps.group.Display)
	}
	if err := r.record(ctx, ps); err != nil {
		return r.fail(ctx, ps, err)
	}
	obs := r.observation(ps)
	if obs.fresh {
		// A read just came in: let the gate see it before this pass
		// possibly waits for the write budget.
		r.publish(ps, obs.targets, obs.at)
	}
	observed, observedAt, gather, err := r.apply(ctx, ps, obs.targets, obs.at)
	if err != nil {
		return r.fail(ctx, ps, err)
	}
	health, status := r.publish(ps, observed, observedAt)
	if err := r.handOver(ctx, ps, health); err != nil {
		return r.fail(ctx, ps, err)
	}
	if err := r.Ledger.Put(ctx, key, ps.entry); err != nil {
		return r.fail(ctx, ps, err)
	}
	r.Registry.SetStatus(key, status)
	noGate := r.warnRolloutSafety(key, ps.svcRef, b, ps.group, ps.desired, ps.pods)
	// Series of a binding removed meanwhile must not come back.
	r.Registry.IfCurrent(key, gen, func() { r.recordGauges(key, len(ps.desired), observed, noGate) })
	r.warnRejected(ps)
	next := r.nextLook(ps, gather)
	if obs.err != nil {
		res, _ := r.fail(ctx, ps, obs.err)
		r.scheduleRead(ps, health, obs, res.RequeueAfter)
		return reconcile.Result{RequeueAfter: min(next, res.RequeueAfter)}, nil
	}
	if !obs.failed {
		r.resetFailures(key)
	}
	r.scheduleRead(ps, health, obs, 0)
	return reconcile.Result{RequeueAfter: next}, nil
}

// publish summarizes the observation for the gate and returns the health
// and status it stored.
func (r *BindingReconciler) publish(ps *pass, observed []providers.Observed, observedAt time.Time) (*BindingHealth, *BindingStatus) {
	health, status := r.summarize(ps, observed, observedAt)
	carryHealthySince(health, r.Registry.Health(ps.key), r.now())
	r.Registry.SetHealth(ps.key, ps.gen, health)
	return health, status
}

// record brings the ledger entry in line with the binding and its group:
// the binding itself (to restore it while its annotation is broken), and,
// when the group changed, the old group kept as previous until the pods
// are healthy in the new one.
func (r *BindingReconciler) record(ctx context.Context, ps *pass) error {
	e, err := r.Ledger.Get(ctx, ps.key)
	if err != nil {
		return err
	}
	ps.entry = e
	if e.Ref != ps.group.Ref {
		if e.Ref != "" {
			e.Previous = append(e.Previous, PreviousGroup{Ref: e.Ref, Targets: slices.SortedFunc(maps.Keys(e.Targets), compareKeys)})
			r.event(ps.svcRef, corev1.EventTypeNormal, "GroupChanged", "%s port %d: moving to %s; the previous group keeps its targets until the pods are healthy in the new one",
				ps.key.Provider, ps.key.Port, ps.group.Display)
		}
		e.Ref, e.Targets = ps.group.Ref, map[providers.TargetKey]types.UID{}
		// Moving back to a group left earlier: it still holds our targets.
		e.Previous = slices.DeleteFunc(e.Previous, func(p PreviousGroup) bool {
			if p.Ref != ps.group.Ref {
				return false
			}
			for _, k := range p.Targets {
				e.Targets[k] = ""
			}
			return true
		})
	}
	e.Binding = StoreBinding(ps.binding)
	return r.Ledger.Put(ctx, ps.key, e)
}

func compareKeys(a, b providers.TargetKey) int {
	if c := a.IP.Compare(b.IP); c != 0 {
		return c
	}
	return int(a.Port - b.Port)
}

// apply plans from desired targets and the observation, records what it
// registers before registering it, applies the plan, and returns the
// observation as it stands after the plan. Targets the cloud refuses are
// set aside and reported; the rest of the plan goes on.
//
// A lone change goes out at once; changes arriving within the coalesce
// window after a write of this binding in their direction to their part
// of the group wait for the window's end and go out together (gather
// says how long), while the rest of the plan goes out. Writes then need
// a slot of the cloud's write budget (a Dispatcher, most waited-for
// first); without one the binding waits in line (gather is then a
// safety-net delay) and plans again once it holds one, so what arrived
// meanwhile rides in the same call.
//
// It returns the observation as the pass left it, with the time of the
// read it holds: a read stored meanwhile comes with its own time.
func (r *BindingReconciler) apply(ctx context.Context, ps *pass, observed []providers.Observed, at time.Time) (out []providers.Observed, outAt time.Time, gather time.Duration, err error) {
	plan := r.plan(ps, observed)
	if plan.Empty() {
		r.pruneLedger(ps, observed)
		return observed, at, 0, nil
	}
	book := r.book(ps.key, ps.group.Ref)
	r.noteLeaving(book, plan, ps.stopping)
	if s, ok := ps.prov.(providers.Settler); ok && len(plan.Register) == 0 && len(r.dueDeregistrations(ps.group, book, s, plan.Deregister)) == 0 {
		// Held behind registrations still settling: nothing to send.
		r.wakeWhenSettled(ps.key, book)
		return observed, at, heldLook, nil
	}
	if plan, gather = r.gather(ps, plan); plan.Empty() {
		return observed, at, gather, nil
	}
	if d := r.Writes[ps.key.Provider]; d != nil {
		release, owed, ok := d.TryAcquire(ps.key, r.rank(ps, book, plan))
		if !ok {
			// In line for a write slot; the dispatcher wakes the binding
			// when one is reserved for it. Looking again later is only a
			// safety net.
			return observed, at, queuedLook, nil
		}
		defer release()
		lead := r.deregistrationsLead(d, owed, ps, book, plan)
		if plan, gather = r.leaveBehind(lead, ps, plan, gather); plan.Empty() {
			return observed, at, gather, nil
		}
		var err error
		if h, ok := ps.prov.(providers.WriteHolder); ok {
			// The budget first, then the plan: under saturation the
			// call's token can be seconds away, and what arrives
			// meanwhile should ride in the call, not wait for the next.
			// (A plan that comes out empty leaves the token unused.)
			if ctx, err = h.HoldWrite(ctx, plan); err != nil {
				return nil, at, 0, err
			}
		}
		if err = r.desired(ctx, ps); err != nil {
			return nil, at, 0, fmt.Errorf("reading cluster state: %w", err)
		}
		// The observation may have been replaced by a read meanwhile; its
		// news (fresh, a failure) stays for the pass that reports it.
		observed, at = r.currentTargets(ps, at)
		if plan = r.plan(ps, observed); plan.Empty() {
			r.pruneLedger(ps, observed)
			return observed, at, 0, nil
		}
		r.noteLeaving(book, plan, ps.stopping)
		if plan, gather = r.gather(ps, plan); plan.Empty() {
			return observed, at, gather, nil
		}
		if plan, gather = r.leaveBehind(lead, ps, plan, gather); plan.Empty() {
			return observed, at, gather, nil
		}
	}
	now := r.now()
	r.noteWrite(ps, now, plan)
	uidOf := uidsOf(ps.desired)
	for _, t := range plan.Register {
		ps.entry.Targets[t.Key()] = uidOf[t.Key()]
	}
	if err := r.Ledger.Put(ctx, ps.key, ps.entry); err != nil {
		return nil, at, 0, err
	}
	var applied providers.Plan
	if settler, ok := ps.prov.(providers.Settler); ok {
		var held time.Duration
		applied, held, err = r.applySettling(ctx, ps, book, settler, plan, uidOf, now)
		gather = sooner(gather, held)
	} else {
		applied, err = r.applyOne(ctx, ps, book, plan, uidOf, now)
	}
	if err != nil {
		return nil, at, 0, err
	}
	observed, at = r.keepApplied(ps, observed, at, applied)
	r.pruneLedger(ps, observed)
	return observed, at, gather, nil
}

// deregistrationsLead reports whether the binding holds its write slot
// for its deregistrations alone: the plan deregisters, and a binding
// waiting in line is more urgent than the plan's registrations of pods
// podlb's gate holds. Those then wait for a pass of their own (see
// leaveBehind). Otherwise a Service whose old pods terminate keeps the
// budget for its next waves, its deregistrations' head start carrying
// them, while another Service's first wave waits out the head start.
// A slot owed to the binding's own wait (see Dispatcher) is the
// registrations': leaving them behind would hand it back to the head
// start, and with pods deleted in a stream the deregistrations would
// take most of the budget.
func (r *BindingReconciler) deregistrationsLead(d *Dispatcher, owed bool, ps *pass, book *registrations, plan providers.Plan) bool {
	if owed || len(plan.Deregister) == 0 {
		return false
	}
	var held []providers.Target
	isHeld := heldByGate(ps)
	for _, t := range plan.Register {
		if isHeld(t) {
			held = append(held, t)
		}
	}
	return len(held) > 0 && d.Outranked(r.rank(ps, book, providers.Plan{Register: held}))
}

// leaveBehind takes out of plan, when its deregistrations lead, the
// registrations of pods podlb's gate holds, and has the binding look
// again right after the pass to queue for them by their own wait.
// Deferring them leaves no group with fewer healthy targets: a pod the
// gate holds is not counted available by its Deployment, so no pod
// terminates for it, and a target just registered is not healthy before
// the cloud's judge delay in any order. Registrations of pods without
// the gate still go with the deregistrations, as before.
func (r *BindingReconciler) leaveBehind(lead bool, ps *pass, plan providers.Plan, gather time.Duration) (providers.Plan, time.Duration) {
	if !lead || len(plan.Deregister) == 0 {
		// Planned again, a plan without deregistrations is led by none.
		return plan, gather
	}
	kept := slices.DeleteFunc(slices.Clone(plan.Register), heldByGate(ps))
	if len(kept) == len(plan.Register) {
		return plan, gather
	}
	plan.Register = kept
	return plan, sooner(gather, leftBehindLook)
}

// leftBehindLook is when a binding that left registrations behind plans
// again, to queue for them.
const leftBehindLook = 50 * time.Millisecond

// heldByGate returns whether podlb's readiness gate holds a target's
// pod of the pass: it is not True yet, so the pod's controller does not
// count the pod available.
func heldByGate(ps *pass) func(providers.Target) bool {
	uidOf := uidsOf(ps.desired)
	return func(t providers.Target) bool {
		p := ps.pods[uidOf[t.Key()]]
		return p != nil && HasGate(p) && !conditionTrue(p, GateConditionType)
	}
}

// applyOne applies a plan planned at planned and books what the cloud
// took: every target but those it refused one by one, which are set
// aside. It returns the plan as applied.
func (r *BindingReconciler) applyOne(ctx context.Context, ps *pass, book *registrations, plan providers.Plan, uidOf map[providers.TargetKey]types.UID, planned time.Time) (providers.Plan, error) {
	log.FromContext(ctx).Info("applying plan", "group", ps.group.Display, "register", len(plan.Register), "deregister", len(plan.Deregister))
	err := ps.prov.Apply(ctx, ps.group, plan)
	// Writes are stamped when the calls returned: a read that began before
	// then may not have seen them, so its health counts for no pod
	// registered here (judged) and it cannot undo them (storeRead).
	done := r.now()
	refused, isolated := providers.AsTargetErrors(err)
	if err != nil && !isolated {
		return providers.Plan{}, err
	}
	if isolated {
		r.reject(ps.key, refused.Failed, planned)
		plan.Register = slices.DeleteFunc(plan.Register, func(t providers.Target) bool { return refused.Failed[t.Key()] != nil })
	}
	r.recordApplied(ps, book, plan, uidOf, done)
	targetsChanged.WithLabelValues(ps.key.Provider, "register").Add(float64(len(plan.Register)))
	targetsChanged.WithLabelValues(ps.key.Provider, "deregister").Add(float64(len(plan.Deregister)))
	r.observeRegistrationLatency(ps.key.Provider, plan.Register, ps.desired, ps.pods)
	return plan, nil
}

// applySettling applies the plan of a providers.Settler: its
// registrations at once, and each deregistration only once the
// registrations that were settling when it was first due (the same
// pass's included) have settled; until then it is held, and the binding
// is woken when they have. Registrations sent later do not hold it, so a
// steady stream of new pods cannot keep a leaving one registered. A
// failed Apply holds the plan's deregistrations again behind the next
// registrations, as a failed attach must. held is the safety-net delay
// before the binding looks again when some are held.
func (r *BindingReconciler) applySettling(ctx context.Context, ps *pass, book *registrations, s providers.Settler, plan providers.Plan, uidOf map[providers.TargetKey]types.UID, planned time.Time) (applied providers.Plan, held time.Duration, err error) {
	if len(plan.Register) > 0 {
		if applied, err = r.applyOne(ctx, ps, book, providers.Plan{Register: plan.Register}, uidOf, planned); err != nil {
			r.unsettle(book, plan.Deregister)
			return providers.Plan{}, 0, err
		}
		r.holdBehind(book, plan.Deregister, s, ps.group)
	}
	due := r.dueDeregistrations(ps.group, book, s, plan.Deregister)
	if len(due) > 0 {
		gone, err := r.applyOne(ctx, ps, book, providers.Plan{Deregister: due}, uidOf, planned)
		if err != nil {
			r.unsettle(book, due)
			return applied, 0, err
		}
		applied.Deregister = gone.Deregister
	}
	if len(due) < len(plan.Deregister) {
		r.wakeWhenSettled(ps.key, book)
		held = heldLook
	}
	return applied, held, nil
}

// heldLook is when a binding whose deregistrations are held looks again
// should its wake-up be lost.
const heldLook = 5 * time.Second

// dueDeregistrations returns the deregistrations whose registrations have
// settled; one not held yet is held behind those settling now.
func (r *BindingReconciler) dueDeregistrations(g *providers.Group, book *registrations, s providers.Settler, deregister []providers.Target) []providers.Target {
	r.holdBehind(book, deregister, s, g)
	r.mu.Lock()
	defer r.mu.Unlock()
	var due []providers.Target
	for _, t := range deregister {
		l, ok := book.leaving[t.Key()]
		if !ok {
			continue // noteLeaving records every deregistration planned
		}
		select {
		case <-l.settled:
			due = append(due, t)
		default:
		}
	}
	return due
}

// settledAlready is a closed channel: nothing was settling.
var settledAlready = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// holdBehind makes the deregistrations not yet held wait for the
// registrations settling now. The provider is asked only when one is not
// held yet: with several operations running, its answer costs a
// goroutine until they end.
func (r *BindingReconciler) holdBehind(book *registrations, deregister []providers.Target, s providers.Settler, g *providers.Group) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var settled <-chan struct{}
	for _, t := range deregister {
		l, ok := book.leaving[t.Key()]
		if !ok || l.settled != nil {
			continue
		}
		if settled == nil {
			if settled = s.Settling(g); settled == nil {
				settled = settledAlready
			}
		}
		l.settled = settled
		book.leaving[t.Key()] = l
	}
}

// unsettle makes deregistrations wait again, behind the registrations
// of the next pass that sends any.
func (r *BindingReconciler) unsettle(book *registrations, deregister []providers.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range deregister {
		if l, ok := book.leaving[t.Key()]; ok {
			l.settled = nil
			book.leaving[t.Key()] = l
		}
	}
}

// wakeWhenSettled wakes the binding as each set of registrations its
// held deregistrations wait for settles, watching each set once.
func (r *BindingReconciler) wakeWhenSettled(key providers.BindingKey, book *registrations) {
	if r.Wake == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range book.leaving {
		if l.settled == nil || book.watched[l.settled] {
			continue
		}
		if book.watched == nil {
			book.watched = map[<-chan struct{}]bool{}
		}
		settled := l.settled
		book.watched[settled] = true
		go func() {
			<-settled
			r.mu.Lock()
			delete(book.watched, settled)
			r.mu.Unlock()
			r.Wake(key)
		}()
	}
}

// recordApplied books the plan's calls, which returned at done, and
// tells of deregistrations that came after their pods were killed: once
// for a run of them, a Warning again only after lateQuiet without one.
func (r *BindingReconciler) recordApplied(ps *pass, book *registrations, plan providers.Plan, uidOf map[providers.TargetKey]types.UID, done time.Time) {
	var late lateness
	r.mu.Lock()
	for _, t := range plan.Register {
		book.at[t.Key()] = registration{uid: uidOf[t.Key()], at: done, target: t}
		delete(book.deregistered, t.Key())
	}
	for _, t := range plan.Deregister {
		delete(book.at, t.Key())
		book.deregistered[t.Key()] = done
		if l, ok := book.leaving[t.Key()]; ok {
			deregistrationLatency.WithLabelValues(ps.key.Provider).Observe(done.Sub(l.since).Seconds())
			if !l.killed.IsZero() && done.After(l.killed.Add(lateMargin)) {
				late.add(done.Sub(l.killed), done.Sub(l.since))
			}
			delete(book.leaving, t.Key())
		}
	}
	warnLate := late.n > 0 && done.Sub(book.lastLate) > lateQuiet
	if late.n > 0 {
		book.lastLate = done
	}
	r.mu.Unlock()
	if late.n > 0 {
		deregistrationsLate.WithLabelValues(ps.key.Provider).Add(float64(late.n))
		if warnLate {
			r.event(ps.svcRef, corev1.EventTypeWarning, "TargetsDeregisteredLate",
				"%s port %d: %d target(s) left %s only after their pods were killed (up to %s after, %s after podlb planned it): until then the load balancer could send them connections no one served. The write budget was spent or the cloud slow; a longer preStop hook and terminationGracePeriodSeconds cover such waits",
				ps.key.Provider, ps.key.Port, late.n, ps.group.Display, late.worst.Round(time.Second), late.waited.Round(time.Second))
		}
	}
}

// uidsOf maps each desired target to the pod that wants it.
func uidsOf(desired []Desired) map[providers.TargetKey]types.UID {
	out := make(map[providers.TargetKey]types.UID, len(desired))
	for _, d := range desired {
		out[d.Key()] = d.UID
	}
	return out
}

// queuedLook is when a binding waiting for a write slot looks again
// should its wake-up be lost.
const queuedLook = 30 * time.Second

// plan diffs the desired targets, less those refused and not yet due for
// a retry, against the observation and the ledger, and records every
// desired target in the ledger.
func (r *BindingReconciler) plan(ps *pass, observed []providers.Observed) providers.Plan {
	want := r.withoutRejected(ps.key, ps.desired, r.now())
	plan := ComputePlan(want, observed, ps.group.Owned, ps.entry.Targets)
	recordWanted(ps.entry, ps.desired)
	return plan
}

// noteLeaving records when each target the plan deregisters was first
// planned to leave and, for a terminating pod's, when the pod is killed
// (stopping), and forgets targets no longer leaving.
func (r *BindingReconciler) noteLeaving(book *registrations, plan providers.Plan, stopping map[providers.TargetKey]time.Time) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	leaving := make(map[providers.TargetKey]leave, len(plan.Deregister))
	for _, t := range plan.Deregister {
		k := t.Key()
		l, ok := book.leaving[k]
		if !ok {
			l.since = now
		}
		if l.killed.IsZero() {
			l.killed = stopping[k]
		}
		leaving[k] = l
	}
	book.leaving = leaving
}

// lateMargin is how much after its pod's deletion timestamp a
// deregistration counts as late: the API server's clock, which set it,
// and podlb's may differ a little, and the kubelet starts the grace
// period when it sees the deletion, a little after.
const lateMargin = time.Second

// lateQuiet is how long deregistrations must all come in time before a
// late one is news again: one Warning for a rollout, not one per wave.
const lateQuiet = 10 * time.Minute

// lateness sums deregistrations that came after their pods were killed.
type lateness struct {
	n             int
	worst, waited time.Duration // the most after the kill, and after the plan
}

func (l *lateness) add(afterKill, afterPlan time.Duration) {
	l.n++
	l.worst, l.waited = max(l.worst, afterKill), max(l.waited, afterPlan)
}

// rank is how long the plan's oldest changes have waited: the earliest
// ContainersReady of the pods it registers, and the earliest time a
// target it deregisters was planned to leave (now, for a change with no
// such record). Deregistrations rank by their own wait, not behind every
// registration: while the write budget is saturated they would otherwise
// wait for as long as it stays so, and a terminating pod still
// registered is sent new connections. A deregistration counts the head
// start only while its pod may still be sent them: once the pod has been
// killed for as long as the load balancer needs to call it unhealthy
// (FailDelay), it is sent none, and going first would only slow the
// registrations a rollout waits for, so it ranks as a registration does.
func (r *BindingReconciler) rank(ps *pass, book *registrations, plan providers.Plan) Rank {
	now := r.now()
	var rank Rank
	if len(plan.Deregister) > 0 {
		r.mu.Lock()
		for _, t := range plan.Deregister {
			l, ok := book.leaving[t.Key()]
			since := now
			if ok && l.since.Before(now) {
				since = l.since
			}
			if ok && !l.killed.IsZero() && now.After(l.killed.Add(ps.group.FailDelay)) {
				rank.Since = earliest(rank.Since, since)
			} else {
				rank.Leaving = earliest(rank.Leaving, since)
			}
		}
		r.mu.Unlock()
	}
	if len(plan.Register) > 0 {
		uidOf := uidsOf(ps.desired)
		for _, t := range plan.Register {
			since := now
			if p := ps.pods[uidOf[t.Key()]]; p != nil {
				if c := PodCondition(p, corev1.ContainersReady); c != nil && c.Status == corev1.ConditionTrue && c.LastTransitionTime.Time.Before(now) {
					since = c.LastTransitionTime.Time
				}
			}
			rank.Since = earliest(rank.Since, since)
		}
	}
	return rank
}

// earliest is the earlier of a and b, a zero time being none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// book returns the binding's registrations in group ref, starting afresh
// when the binding moved to another group.
func (r *BindingReconciler) book(key providers.BindingKey, ref string) *registrations {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.books == nil {
		r.books = map[providers.BindingKey]*registrations{}
	}
	b := r.books[key]
	if b == nil || b.ref != ref {
		b = &registrations{ref: ref, at: map[providers.TargetKey]registration{}, deregistered: map[providers.TargetKey]time.Time{}}
		r.books[key] = b
	}
	return b
}

// registration is this process's registration of target k in book, read
// under the lock (a pass reads a few; copying the book would copy all).
func (r *BindingReconciler) registration(book *registrations, k providers.TargetKey) (registration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := book.at[k]
	return reg, ok
}

// withoutRejected leaves out targets refused by the cloud whose retry is
// not due, and forgets refusals of targets no longer wanted.
func (r *BindingReconciler) withoutRejected(key providers.BindingKey, desired []Desired, now time.Time) []Desired {
	r.mu.Lock()
	defer r.mu.Unlock()
	rej := r.rejected[key]
	if len(rej) == 0 {
		return desired
	}
	wanted := map[providers.TargetKey]bool{}
	out := make([]Desired, 0, len(desired))
	for _, d := range desired {
		wanted[d.Key()] = true
		if x := rej[d.Key()]; x != nil && now.Before(x.retry) {
			continue
		}
		out = append(out, d)
	}
	for k := range rej {
		if !wanted[k] {
			delete(rej, k)
		}
	}
	return out
}

// reject sets refused targets aside, retrying each later with its own
// backoff: a full group or a bad address is not fixed by asking again at
// once.
func (r *BindingReconciler) reject(key providers.BindingKey, failed map[providers.TargetKey]error, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rejected == nil {
		r.rejected = map[providers.BindingKey]map[providers.TargetKey]*rejection{}
	}
	if r.rejected[key] == nil {
		r.rejected[key] = map[providers.TargetKey]*rejection{}
	}
	for k, err := range failed {
		x := r.rejected[key][k]
		if x == nil {
			x = &rejection{}
			r.rejected[key][k] = x
		}
		x.failures++
		x.err, x.kind = err.Error(), providers.Kind(err)
		x.retry = now.Add(max(5*time.Second, backoff(x.failures+2, r.Timing.MaxBackoff)))
	}
}

// rejections returns a copy of the binding's refused targets.
func (r *BindingReconciler) rejections(key providers.BindingKey) map[providers.TargetKey]rejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[providers.TargetKey]rejection, len(r.rejected[key]))
	for k, x := range r.rejected[key] {
		out[k] = *x
	}
	return out
}

// pruneLedger forgets targets that are neither wanted nor registered any
// more, so the ledger only ever holds what might still be in the group.
func (r *BindingReconciler) pruneLedger(ps *pass, observed []providers.Observed) {
	keep := map[providers.TargetKey]bool{}
	for _, d := range ps.desired {
		keep[d.Key()] = true
	}
	for _, o := range observed {
		keep[o.Key()] = true
	}
	maps.DeleteFunc(ps.entry.Targets, func(k providers.TargetKey, _ types.UID) bool { return !keep[k] })
}

// SliceServiceIndex indexes the cached EndpointSlices by their Service
// ("namespace/name"): a label selector would test every slice of the
// namespace, on every binding reconcile, a thousand times over in a
// namespace of a thousand Services.
const SliceServiceIndex = "podlb.io/endpointslice-service"

// SliceIndexers are the cache's EndpointSlice indexes: SliceServiceIndex.
func SliceIndexers() toolscache.Indexers {
	return toolscache.Indexers{SliceServiceIndex: func(obj any) ([]string, error) {
		m, ok := obj.(metav1.Object)
		if !ok {
			return nil, nil
		}
		if name := m.GetLabels()[discoveryv1.LabelServiceName]; name != "" {
			return []string{m.GetNamespace() + "/" + name}, nil
		}
		return nil, nil
	}}
}

// desired reads the Service's slices and pods from the cache.
func (r *BindingReconciler) desired(ctx context.Context, ps *pass) error {
	b := ps.binding
	slices, err := r.slices(ctx, b.Key.Namespace, b.Key.Service)
	if err != nil {
		return err
	}
	pods := map[types.UID]*corev1.Pod{}
	var stopping map[providers.TargetKey]time.Time
	look := Lookups{
		Pod: func(ns, name string) *corev1.Pod {
			p, ok := r.pod(ctx, ns, name)
			if !ok {
				return nil
			}
			pods[p.UID] = p
			return p
		},
		Node: func(name string) (NodeInfo, bool) {
			n, ok := r.node(ctx, name)
			if !ok {
				return NodeInfo{}, false
			}
			return NodeInfoOf(n), true
		},
		Stopping: func(k providers.TargetKey, p *corev1.Pod) {
			if p.DeletionTimestamp != nil {
				if stopping == nil {
					stopping = map[providers.TargetKey]time.Time{}
				}
				stopping[k] = p.DeletionTimestamp.Time
			}
		},
	}
	ps.desired = DesiredTargets(b, slices, look)
	ps.pods, ps.stopping = pods, stopping
	return nil
}

// slices reads a Service's EndpointSlices from the cache, through Cached
// when set: read them only.
func (r *BindingReconciler) slices(ctx context.Context, namespace, service string) ([]*Slice, error) {
	if r.Cached != nil {
		return r.Cached.Slices(ctx, namespace, service)
	}
	var list discoveryv1.EndpointSliceList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
		return nil, err
	}
	out := make([]*Slice, len(list.Items))
	for i := range list.Items {
		out[i] = SliceOf(&list.Items[i])
	}
	return out, nil
}

// pod reads a pod from the cache, through Cached when set: read it only.
func (r *BindingReconciler) pod(ctx context.Context, namespace, name string) (*corev1.Pod, bool) {
	if r.Cached != nil {
		return r.Cached.Pod(ctx, namespace, name)
	}
	var p corev1.Pod
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &p); err != nil {
		return nil, false
	}
	return &p, true
}

// node reads a node from the cache, through Cached when set: read it
// only.
func (r *BindingReconciler) node(ctx context.Context, name string) (*corev1.Node, bool) {
	if r.Cached != nil {
		return r.Cached.Node(ctx, name)
	}
	var n corev1.Node
	if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, &n); err != nil {
		return nil, false
	}
	return &n, true
}

// applyPlanToObserved reflects a just-applied plan so the gate and status
// see the registration at once instead of at the next poll. A target the
// observation already holds registered is left as it is.
func applyPlanToObserved(observed []providers.Observed, plan providers.Plan, group string) []providers.Observed {
	gone := map[providers.TargetKey]bool{}
	for _, t := range plan.Deregister {
		gone[t.Key()] = true
	}
	registering := make(map[providers.TargetKey]bool, len(plan.Register))
	for _, t := range plan.Register {
		registering[t.Key()] = true
	}
	out := make([]providers.Observed, 0, len(observed)+len(plan.Register))
	for _, o := range observed {
		k := o.Key()
		if gone[k] {
			o.State, o.CloudState, o.Reason = providers.Draining, "draining", "deregistration requested"
		}
		if registering[k] {
			if o.State == providers.Draining && !gone[k] {
				continue // a draining target being registered again is replaced below
			}
			if o.State != providers.Draining {
				registering[k] = false // registered already (a read's fold)
			}
		}
		out = append(out, o)
	}
	for _, t := range plan.Register {
		if registering[t.Key()] {
			registering[t.Key()] = false
			out = append(out, providers.Observed{Target: t, State: providers.Pending, CloudState: "registering", Reason: "registration requested", Group: group})
		}
	}
	return out
}

// stateRank orders target states from serving to far from it: a pod with
// several targets in one binding (dual-stack) is as ready as its least
// ready target.
var stateRank = map[providers.State]int{providers.Healthy: 0, providers.Pending: 1, providers.Unhealthy: 2, providers.Unused: 3}

// summarize maps observed targets to the pods that want them. A pod
// counts as healthy only when every one of its targets is, each observed
// healthy after it was registered for this pod: health a target had for
// an earlier pod with the same IP:port counts only once the group has had
// its judge delay to check the new pod.
func (r *BindingReconciler) summarize(ps *pass, observed []providers.Observed, observedAt time.Time) (*BindingHealth, *BindingStatus) {
	g := ps.group
	byKey := make(map[providers.TargetKey]providers.Observed, len(observed))
	for _, o := range observed {
		if prev, ok := byKey[o.Key()]; ok && prev.State != providers.Draining {
			continue // an active registration wins over a draining one
		}
		byKey[o.Key()] = o
	}
	book := r.book(ps.key, g.Ref)
	rejected := r.rejections(ps.key)

	h := &BindingHealth{Group: g.Display, Serving: g.Serving, NotServingWhy: g.NotServingWhy, Pods: map[types.UID]PodTarget{}}
	st := &BindingStatus{Group: g.Display, Owned: g.Owned, Desired: len(ps.desired), Details: g.Status}
	missing := map[types.UID]bool{}
	for _, d := range ps.desired {
		o, ok := byKey[d.Key()]
		if x, refused := rejected[d.Key()]; refused && (!ok || o.State == providers.Draining) {
			h.Pods[d.UID] = PodTarget{Pod: d.Pod, State: providers.Pending, CloudState: "refused", Reason: x.err, Group: g.Display, Rejected: true}
			continue
		}
		if !ok || o.State == providers.Draining {
			missing[d.UID] = true
			continue
		}
		grp := o.Group
		if grp == "" {
			grp = g.Display
		}
		t := PodTarget{Pod: d.Pod, State: o.State, CloudState: o.CloudState, Reason: o.Reason, Group: grp}
		if t.State == providers.Healthy {
			reg, ok := r.registration(book, d.Key())
			mine := ok && reg.uid == d.UID
			if judged, why := r.judged(ps, d, reg, mine, observedAt); !judged {
				t.State, t.Reason = providers.Pending, why
			} else if mine {
				r.settle(ps, d.Key(), reg, observedAt)
			}
		}
		if prev, ok := h.Pods[d.UID]; ok && (prev.Rejected || stateRank[prev.State] >= stateRank[t.State]) {
			continue
		}
		h.Pods[d.UID] = t
	}
	for uid := range missing {
		if !h.Pods[uid].Rejected {
			delete(h.Pods, uid)
		}
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
	for k, x := range rejected {
		if st.Rejected == nil {
			st.Rejected = map[string]string{}
		}
		if len(st.Rejected) < maxListedRejections {
			st.Rejected[k.String()] = x.err
		}
	}
	return h, st
}

const maxListedRejections = 10

// judged reports whether a healthy target's health speaks for the pod
// that wants it now, and why not; reg is this process's registration of
// d's target when mine (made for d's pod).
func (r *BindingReconciler) judged(ps *pass, d Desired, reg registration, mine bool, observedAt time.Time) (bool, string) {
	if mine {
		return observedAt.After(reg.at), "registration in progress"
	}
	if uid := ps.entry.Targets[d.Key()]; uid == d.UID && uid != "" {
		return true, "" // registered for this pod before a restart
	}
	// Registered for an earlier pod with this IP:port, or by a version
	// that did not record pods: give the group time to check this one.
	pod := ps.pods[d.UID]
	var ready time.Time
	if pod != nil {
		if c := PodCondition(pod, corev1.ContainersReady); c != nil && c.Status == corev1.ConditionTrue {
			ready = c.LastTransitionTime.Time
		}
	}
	due := ready.Add(ps.group.JudgeDelay)
	if ready.IsZero() || !observedAt.After(due) {
		return false, fmt.Sprintf("the target was registered for an earlier pod at this address; waiting until %s for the load balancer to check this one", due.UTC().Format(time.RFC3339))
	}
	ps.entry.Targets[d.Key()] = d.UID
	return true, ""
}

// handOver releases the groups the binding moved away from once every
// wanted pod is ready in the new group, so the load balancers still
// pointing at an old group never lose their targets first.
func (r *BindingReconciler) handOver(ctx context.Context, ps *pass, h *BindingHealth) error {
	if len(ps.entry.Previous) == 0 {
		return nil
	}
	for _, d := range ps.desired {
		t, ok := h.Pods[d.UID]
		if !ok || !(t.State == providers.Healthy || (ps.binding.Mode == providers.ReadyWhenRegistered && !t.Rejected)) {
			return nil
		}
	}
	for len(ps.entry.Previous) > 0 {
		prev := ps.entry.Previous[0]
		ours, err := r.Ledger.OursAlone(ctx, ps.key, prev.Ref, prev.Targets)
		if err == nil {
			err = ps.prov.Release(ctx, ps.key, prev.Ref, ours)
		}
		if err != nil {
			return fmt.Errorf("releasing previous group %s: %w", prev.Ref, err)
		}
		r.event(ps.svcRef, corev1.EventTypeNormal, "GroupReleased", "%s port %d: released %s now that the pods are ready in %s", ps.key.Provider, ps.key.Port, prev.Ref, ps.group.Display)
		ps.entry.Previous = ps.entry.Previous[1:]
		if err := r.Ledger.Put(ctx, ps.key, ps.entry); err != nil {
			return err
		}
	}
	return nil
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

// warnRejected names the targets the cloud refused, once per set of
// kinds of refusal (see providers.Kind): a rollout into a subnet the
// group cannot take refuses every new pod for one reason, which is one
// Warning, not one per pod; the status and each pod's gate name the
// refused targets as they are now.
func (r *BindingReconciler) warnRejected(ps *pass) {
	rej := r.rejections(ps.key)
	if len(rej) == 0 {
		r.clearWarning(ps.key, "rejected")
		return
	}
	kinds := map[string]bool{}
	for _, x := range rej {
		kinds[x.kind] = true
	}
	problem := strings.Join(slices.Sorted(maps.Keys(kinds)), ", ")
	r.warnOnce(ps.key, ps.svcRef, "rejected", problem, "TargetsRejected", "%s port %d: %s refused %d target(s) (%s); the others are served: %s",
		ps.key.Provider, ps.key.Port, ps.group.Display, len(rej), problem, refusedList{rej, ps.desired})
}

// refusedList names refused targets, their pods and errors, the first
// maxListedRejections of them; a fmt.Stringer, so that it is written out
// only for a Warning that goes out.
type refusedList struct {
	rej     map[providers.TargetKey]rejection
	desired []Desired
}

func (l refusedList) String() string {
	podOf := map[providers.TargetKey]types.NamespacedName{}
	for _, d := range l.desired {
		podOf[d.Key()] = d.Pod
	}
	keys := slices.SortedFunc(maps.Keys(l.rej), compareKeys)
	var parts []string
	for _, k := range keys[:min(len(keys), maxListedRejections)] {
		parts = append(parts, fmt.Sprintf("%s (pod %s): %s", k, podOf[k].Name, l.rej[k].err))
	}
	if len(keys) > maxListedRejections {
		parts = append(parts, fmt.Sprintf("and %d more", len(keys)-maxListedRejections))
	}
	return strings.Join(parts, "; ")
}

// nextLook decides when the write path looks at the binding again: at
// the end of a gathering window, when a refused target is due for a
// retry, and at the slow resync otherwise. Health reads bring it back
// too, and at rest the resync's read is what does (see scheduleRead): a
// pass of its own a few seconds before it would compare the same pods
// with the same observation, so with reads scheduled the write path's
// own look is only a safety net, at twice the resync.
func (r *BindingReconciler) nextLook(ps *pass, gather time.Duration) time.Duration {
	next := r.Timing.Resync
	if r.ScheduleRead != nil {
		next *= 2
	}
	if gather > 0 {
		next = gather
	}
	for _, x := range r.rejections(ps.key) {
		next = min(next, max(x.retry.Sub(r.now()), r.Timing.Poll))
	}
	return next
}

// fail classifies an error: user errors warn once per distinct message and
// retry slowly; throttling backs off quietly; anything else retries with
// capped exponential backoff and warns once it persists.
func (r *BindingReconciler) fail(ctx context.Context, ps *pass, err error) (reconcile.Result, error) {
	key, svcRef, g, desired := ps.key, ps.svcRef, ps.group, len(ps.desired)
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
		msg := fmt.Sprintf("%s port %d: %v", key.Provider, key.Port, err)
		r.warnOnce(key, svcRef, "error", msg, "BindingFailed", "%s", msg)
		// People fix these by editing the Service (which triggers a
		// reconcile) or the cloud (which nothing tells us about): retry
		// slowly.
		return reconcile.Result{RequeueAfter: max(delay, r.Timing.MaxBackoff)}, nil
	default:
		logger.Info("binding reconcile failed; retrying", "error", err.Error(), "after", delay)
		// One Warning per streak of failures, however the message varies
		// from retry to retry (zones answer in any order, the cloud's
		// reason changes): an outage is one problem, not one per retry.
		if n >= 3 {
			r.warnOnce(key, svcRef, "error", "SyncFailed", "SyncFailed", "%s port %d: %v", key.Provider, key.Port, err)
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
	// A failing binding is not at rest: every read is news to it.
	r.viewLocked(key).resting = false
	return r.failures[key]
}

func (r *BindingReconciler) resetFailures(key providers.BindingKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, key)
	// A later failure with the same message is news again.
	r.warned.clear(key, "error")
}

func (r *BindingReconciler) forget(key providers.BindingKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failures, key)
	r.warned.forget(key)
	delete(r.books, key)
	delete(r.rejected, key)
	delete(r.views, key)
}

// warnOnce emits a Warning only when the problem of this kind differs
// from the last one warned of, so a persistent problem is one Event, not a
// flood. problem is what identifies it; a message that also counts pods
// or names an example would otherwise be news at every change of pods.
// The message is formatted only when it goes out: most passes warn of
// nothing new.
func (r *BindingReconciler) warnOnce(key providers.BindingKey, ref *corev1.ObjectReference, kind, problem, reason, format string, args ...any) {
	if r.warned.novel(key, kind, problem) {
		r.event(ref, corev1.EventTypeWarning, reason, format, args...)
	}
}

func (r *BindingReconciler) clearWarning(key providers.BindingKey, kind string) {
	r.warned.clear(key, kind)
}

func (r *BindingReconciler) event(ref *corev1.ObjectReference, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(ref, typ, reason, format, args...)
	}
}

// warnRolloutSafety tells users when their pods are not protected: no
// gate, no load balancer using the group, or a termination grace shorter
// than the group's deregistration delay.
// It returns how many pods lack the gate.
func (r *BindingReconciler) warnRolloutSafety(key providers.BindingKey, ref *corev1.ObjectReference, b *providers.Binding, g *providers.Group, desired []Desired, pods map[types.UID]*corev1.Pod) int {
	if !g.Serving {
		msg := fmt.Sprintf("%s port %d: %s is used by no load balancer (%s); gates stay False in %q mode, use podlb.io/readiness: registered to not wait for health checks",
			key.Provider, key.Port, g.Display, g.NotServingWhy, providers.ReadyWhenHealthy)
		r.warnOnce(key, ref, "unused", msg, "TargetGroupUnused", "%s", msg)
	} else {
		r.clearWarning(key, "unused")
	}
	if g.Warning != "" {
		r.warnOnce(key, ref, "group", g.Warning, "GroupDegraded", "%s port %d: %s: %s", key.Provider, key.Port, g.Display, g.Warning)
	} else {
		r.clearWarning(key, "group")
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
	if noGate > 0 {
		// One Warning while pods lack the gate, however many come and go.
		r.warnOnce(key, ref, "nogate", g.Display, "PodsWithoutGate", "%s port %d: %d of %d pods lack readinessGates %s: their rollouts do not wait for %s",
			key.Provider, key.Port, noGate, len(desired), GateConditionType, g.Display)
	} else {
		r.clearWarning(key, "nogate")
	}
	if shortGrace > 0 {
		// One Warning while pods stop before the drain ends, whichever
		// pods they are; a new drain time is news.
		r.warnOnce(key, ref, "grace", fmt.Sprint(g.Display, " ", g.DrainSeconds), "TerminationShorterThanDrain", "%s port %d: %d pods (e.g. %s) stop serving %ds after termination starts, but %s drains for %ds: give them a preStop sleep and terminationGracePeriodSeconds of at least the drain time",
			key.Provider, key.Port, shortGrace, example, grace, g.Display, g.DrainSeconds)
	} else {
		r.clearWarning(key, "grace")
	}
	return noGate
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

func (r *BindingReconciler) recordGauges(key providers.BindingKey, desired int, observed []providers.Observed, noGate int) {
	port := portLabel(key)
	// Series that are zero in a settled fleet are reported only while
	// they are not: a thousand bindings would otherwise hold five
	// thousand series of zeros. Healthy and desired stay, so their
	// difference can be alerted on.
	setSparse := func(g *prometheus.GaugeVec, v int, labels ...string) {
		if v == 0 {
			g.DeleteLabelValues(labels...)
			return
		}
		g.WithLabelValues(labels...).Set(float64(v))
	}
	setSparse(podsWithoutGate, noGate, key.Namespace, key.Service, port, key.Provider)
	counts := map[providers.State]int{}
	for _, o := range observed {
		if o.CloudState == unread {
			continue
		}
		counts[o.State]++
	}
	targetsByState.WithLabelValues(key.Namespace, key.Service, port, key.Provider, string(providers.Healthy)).Set(float64(counts[providers.Healthy]))
	for _, s := range []providers.State{providers.Pending, providers.Unhealthy, providers.Unused, providers.Draining} {
		setSparse(targetsByState, counts[s], key.Namespace, key.Service, port, key.Provider, string(s))
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
	port := portLabel(key)
	for _, s := range []providers.State{providers.Healthy, providers.Pending, providers.Unhealthy, providers.Unused, providers.Draining} {
		targetsByState.DeleteLabelValues(key.Namespace, key.Service, port, key.Provider, string(s))
	}
	desiredTargets.DeleteLabelValues(key.Namespace, key.Service, port, key.Provider)
	podsWithoutGate.DeleteLabelValues(key.Namespace, key.Service, port, key.Provider)
}

func keysOf[V any](m map[providers.TargetKey]V) []providers.TargetKey {
	return slices.SortedFunc(maps.Keys(m), compareKeys)
}
