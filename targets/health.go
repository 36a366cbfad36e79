package targets

import (
	"context"
	"errors"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
)

// BackgroundPriority is the read priority of bindings with nothing
// pending: start-up reads and the slow resync go after every read a pod
// waits for.
const BackgroundPriority = 0

// ReadPriority ranks the read of a binding whose oldest pending pod has
// waited for waited: the longer, the higher (in doubling steps, so the
// queue keeps few priority levels, each a metrics series), always above
// BackgroundPriority. Reads made before the group's own settings say the
// cloud can have judged the pod (early) rank below every read that is due:
// they only use budget nothing due needs, and catch clouds that judge
// faster than they declare.
func ReadPriority(waited time.Duration, early bool) int {
	step := min(bits.Len64(uint64(max(waited/time.Second, 0))), readSteps-1)
	if early {
		return 1 + step
	}
	return 1 + readSteps + step
}

// readSteps is how many doubling steps of waiting ReadPriority tells
// apart: up to about half an hour (waits longer than 17 minutes rank
// alike). With BackgroundPriority that makes 25 levels in all, the most
// controller-runtime's priority queue labels its depth metric by: past
// that it folds every level into one placeholder series, and the series
// it labelled before stop moving.
const readSteps = 12

// unread is the cloud state of targets known only from the ledger: what
// podlb wrote before it started, not read since.
const unread = "not read yet"

// view is what the write path and the health reader share of a binding.
type view struct {
	group *providers.Group
	obs   observation
	// writes are the binding's writes of the last coalesce window: when
	// it last wrote in each direction to each part of its group.
	writes []recentWrite
	// resting is set by a pass that left no pod waiting for a read;
	// lastRead fingerprints the last read. A resting binding's read that
	// equals the one before brings no news: the binding is not brought
	// back for it, its own resync pass comes on its timer (nextLook).
	resting  bool
	lastRead readPrint
	// waiting holds the targets the last pass left waiting for a read,
	// and fullAt is when the last read of the whole group began: a
	// providers.PartReader then reads only where targets wait (see
	// HealthReader).
	waiting []waitingTarget
	fullAt  time.Time
	// putOffs counts the reads at rest put off in a row for want of a
	// spare token (see putOff).
	putOffs int
}

// waitingTarget is a target left waiting for a read, and from when a
// read of other parts takes its part along: zero for a target any read
// is to look at.
type waitingTarget struct {
	target providers.Target
	due    time.Time
}

// readPrint fingerprints a read, whatever the order of its targets; the
// zero value matches no read.
type readPrint struct {
	taken bool
	n     int
	sum   uint64
}

var readSeed = maphash.MakeSeed()

func printRead(observed []providers.Observed) readPrint {
	p := readPrint{taken: true, n: len(observed)}
	for _, o := range observed {
		p.sum += maphash.Comparable(readSeed, o)
	}
	return p
}

// observation is the last health read of a binding's group with podlb's
// own writes since folded in.
type observation struct {
	ref string
	// at is when the read began; zero when the group was not read since
	// start and targets come from the ledger.
	at      time.Time
	targets []providers.Observed
	// fresh is true until the write path has published the read.
	fresh bool
	// err is a read failure the write path has not reported yet; failed
	// stays true until a read succeeds.
	err    error
	failed bool
}

func (r *BindingReconciler) viewLocked(key providers.BindingKey) *view {
	if r.views == nil {
		r.views = map[providers.BindingKey]*view{}
	}
	v := r.views[key]
	if v == nil {
		v = &view{}
		r.views[key] = v
	}
	return v
}

// observation hands the write path the binding's observation, taking
// its news (a fresh read, a failure) so it is reported once. Before the
// group's first read it is what the ledger says podlb registered, as not
// read yet: enough to plan, never enough to open a gate.
func (r *BindingReconciler) observation(ps *pass) observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(ps.key)
	v.group = ps.group
	r.forgetOldWrites(v, r.now())
	if v.obs.ref != ps.group.Ref {
		v.obs = observation{ref: ps.group.Ref}
		for _, k := range keysOf(ps.entry.Targets) {
			v.obs.targets = append(v.obs.targets, providers.Observed{Target: providers.Target{IP: k.IP, Port: k.Port},
				State: providers.Pending, CloudState: unread, Reason: "not read since podlb started", Group: ps.group.Display})
		}
	}
	out := v.obs
	out.targets = slices.Clone(v.obs.targets)
	v.obs.fresh, v.obs.err = false, nil
	return out
}

// currentTargets is the binding's observation as it stands and the time
// of its read, leaving its news for the pass that takes it (observation);
// none, and at, when the binding moved to another group meanwhile.
func (r *BindingReconciler) currentTargets(ps *pass, at time.Time) ([]providers.Observed, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.viewLocked(ps.key); v.obs.ref == ps.group.Ref {
		return slices.Clone(v.obs.targets), v.obs.at
	}
	return nil, at
}

// keepApplied reflects a plan the pass applied in the binding's
// observation as it stands now, and returns it with the time of its read;
// planned, read at at, is what the plan was made from. A read stored
// while the plan was applied is kept, the plan applied to it (its fold of
// later writes may hold the plan's registrations already): putting back
// what the plan was made from would drop the read's news and label older
// states with the read's time.
func (r *BindingReconciler) keepApplied(ps *pass, planned []providers.Observed, at time.Time, applied providers.Plan) ([]providers.Observed, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(ps.key)
	if v.obs.ref != ps.group.Ref {
		return applyPlanToObserved(planned, applied, ps.group.Display), at
	}
	v.obs.targets = applyPlanToObserved(v.obs.targets, applied, ps.group.Display)
	return slices.Clone(v.obs.targets), v.obs.at
}

// recentWrite is when a binding last wrote in one direction to one part
// of its group (see providers.PartWriter; one part for other providers).
type recentWrite struct {
	part       string
	deregister bool
	at         time.Time
}

// writeParts returns how prov splits a group's writes into calls: by
// providers.PartWriter, or one part for the whole group.
func writeParts(prov providers.Provider) func(providers.Target) string {
	if w, ok := prov.(providers.PartWriter); ok {
		return w.WritePart
	}
	return func(providers.Target) string { return "" }
}

// writeOf is the binding's recent write in one direction to one part, nil
// when there was none within the coalesce window.
func (v *view) writeOf(part string, deregister bool) *recentWrite {
	for i := range v.writes {
		if w := &v.writes[i]; w.deregister == deregister && w.part == part {
			return w
		}
	}
	return nil
}

// sooner is the shorter of two waits, zero meaning none.
func sooner(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// gather returns the part of plan that may go out now, and how long the
// rest must wait to ride with others: a change waits until the coalesce
// window after the binding's last write in its direction to its part of
// the group has passed. Registrations and deregistrations, and changes to
// parts written apart, go out in calls of their own: a call just sent is
// no company for them, and a pod that turns ready then need not wait.
func (r *BindingReconciler) gather(ps *pass, plan providers.Plan) (now providers.Plan, wait time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(ps.key)
	at := r.now()
	if r.forgetOldWrites(v, at); len(v.writes) == 0 {
		return plan, 0
	}
	part := writeParts(ps.prov)
	held := func(t providers.Target, deregister bool) bool {
		w := v.writeOf(part(t), deregister)
		if w != nil {
			wait = sooner(wait, w.at.Add(r.Timing.Coalesce).Sub(at))
		}
		return w != nil
	}
	now.Register = slices.DeleteFunc(slices.Clone(plan.Register), func(t providers.Target) bool { return held(t, false) })
	now.Deregister = slices.DeleteFunc(slices.Clone(plan.Deregister), func(t providers.Target) bool { return held(t, true) })
	return now, wait
}

// forgetOldWrites drops the binding's writes whose coalesce window has
// passed: a binding at rest keeps none.
func (r *BindingReconciler) forgetOldWrites(v *view, at time.Time) {
	if v.writes = slices.DeleteFunc(v.writes, func(w recentWrite) bool { return !at.Before(w.at.Add(r.Timing.Coalesce)) }); len(v.writes) == 0 {
		v.writes = nil
	}
}

// noteWrite records the plan's writes, begun at at.
func (r *BindingReconciler) noteWrite(ps *pass, at time.Time, plan providers.Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(ps.key)
	part := writeParts(ps.prov)
	note := func(t providers.Target, deregister bool) {
		if w := v.writeOf(part(t), deregister); w != nil {
			w.at = at
			return
		}
		v.writes = append(v.writes, recentWrite{part: part(t), deregister: deregister, at: at})
	}
	for _, t := range plan.Register {
		note(t, false)
	}
	for _, t := range plan.Deregister {
		note(t, true)
	}
	// The first read after a write is always news, even one that looks
	// like the read before it: the cloud may not show the write yet.
	v.lastRead = readPrint{}
}

// scheduleRead asks for the binding's next health read: a poll interval
// after the last read while a pod is pending, ranked by how long the
// longest-waiting pod has waited unread, and below every due read while all
// pending pods were registered less than the group's judge delay ago
// (healthy threshold x interval: the cloud cannot have judged them by its
// own settings); with nothing pending, in the background at the resync,
// jittered so groups do not expire together. retry, when set, is the
// delay after a failed read.
func (r *BindingReconciler) scheduleRead(ps *pass, h *BindingHealth, obs observation, retry time.Duration) {
	if r.ScheduleRead == nil {
		return
	}
	now := r.now()
	book := r.book(ps.key, ps.group.Ref)
	// The cloud's learned pace, looked up once for the whole pass.
	fastest, learned := r.fastestHealthy(ps.key.Provider)
	est := healthyAfter(fastest)
	var due, since time.Time
	var waiting []waitingTarget
	early := true
	for _, d := range ps.desired {
		t, ok := h.Pods[d.UID]
		if !ok || t.Rejected || t.State == providers.Healthy {
			// Not registered yet (the write path's turn) or settled.
			continue
		}
		if p := ps.pods[d.UID]; t.CloudState == unread && p != nil && conditionTrue(p, GateConditionType) {
			// Known only from the ledger after a start, its gate long
			// open: reading it waits in the background, behind the pods
			// whose gates wait (a thousand settled groups would otherwise
			// rank by how long ago their pods turned ready, before them).
			continue
		}
		step := r.Timing.Poll
		at := obs.at.Add(step)
		switch {
		case t.State == providers.Unused:
			at = obs.at.Add(30 * time.Second)
		case t.State == providers.Unhealthy && ps.binding.Mode == providers.ReadyWhenHealthy:
			at = obs.at.Add(5 * r.Timing.Poll)
		case t.State == providers.Unhealthy:
			continue
		}
		reg, registered := r.registration(book, d.Key())
		registered = registered && reg.uid == d.UID
		// When the cloud can first have judged the pod: by the group's
		// settings, or sooner where this cloud was seen to judge faster.
		var judgeable time.Time
		if registered {
			judge := ps.group.JudgeDelay
			if learned {
				judge = min(judge, fastest)
			}
			judgeable = reg.at.Add(judge)
		}
		if !registered || !now.Before(judgeable) {
			early = false
		}
		if registered {
			// Around when the cloud may judge, read often enough that the
			// read adds a small fraction of the cloud's own time: as it
			// was seen to judge, and until it was, by the group's judge
			// delay (not as a floor: settings may overstate the time).
			pace := est
			if !learned {
				pace = ps.group.JudgeDelay
			}
			if pace > 0 && t.State == providers.Pending && now.Before(reg.at.Add(verdictSpan*pace)) {
				step = verdictPoll(pace, r.Timing.Poll)
				at = obs.at.Add(step)
			}
			if learned {
				// Not before this cloud has been seen to judge a target:
				// one read at healthyAfter looks for a cloud grown
				// faster, the next waits for the fastest time seen.
				at = later(at, reg.at.Add(est))
				if !obs.at.Before(reg.at.Add(est)) {
					at = later(at, reg.at.Add(fastest))
				}
			}
		}
		if due.IsZero() || at.Before(due) {
			due = at
		}
		// A registration of this process rides along with another
		// target's read once its own is due within one read interval,
		// not while the cloud cannot have judged it yet; a target
		// registered before (by an earlier process, for an earlier pod)
		// is read with every read, as its health counts by the time of
		// the read alone (judged).
		w := waitingTarget{target: d.Target}
		if registered {
			w.due = at.Add(-step)
		}
		waiting = append(waiting, w)
		// A pod's wait counts from its containers turning ready, or from
		// the group's last read when that came later: a group just read
		// goes behind groups whose pods waited unread, so a group that
		// stays pending for long cannot take the whole budget. A
		// registered pod waits from when the cloud can have judged it: a
		// read before then could not see it healthy and does not send it
		// to the back of the line, and under a saturated budget reads go
		// to the pods the cloud has judged longest ago.
		waited := now
		if p := ps.pods[d.UID]; p != nil {
			if c := PodCondition(p, corev1.ContainersReady); c != nil && c.Status == corev1.ConditionTrue {
				waited = c.LastTransitionTime.Time
				if registered {
					waited = later(waited, judgeable)
				}
				waited = later(waited, obs.at)
			}
		}
		if since.IsZero() || waited.Before(since) {
			since = waited
		}
	}
	priority := BackgroundPriority
	resting := false
	switch {
	case retry > 0:
		due = now.Add(retry)
	case !due.IsZero():
		priority = ReadPriority(now.Sub(since), early)
	case obs.at.IsZero():
		due = now
	default:
		due = obs.at.Add(r.restingReadAfter())
		resting = true
	}
	r.mu.Lock()
	v := r.viewLocked(ps.key)
	v.resting, v.waiting = resting, waiting
	r.mu.Unlock()
	r.ScheduleRead(ps.key, max(due.Sub(now), 0), priority)
}

// restingReadAfter is when a binding with nothing pending is read again:
// at the resync, jittered so groups do not expire together.
func (r *BindingReconciler) restingReadAfter() time.Duration {
	return r.Timing.Resync + time.Duration(rand.Int64N(int64(r.Timing.Resync/10)+1))
}

// verdictSpan is how many times the earliest expected verdict (see
// healthyAfter) a registration is read at verdictPoll's pace; later it
// goes back to the poll interval.
const verdictSpan = 3

// verdictPoll is the read interval around a registration's expected
// verdict: a sixteenth of the time the cloud takes, at least 100 ms, at
// most the poll interval. A cloud that takes a minute is read at the poll
// interval as before; one that judges in two seconds is read every
// 125 ms, so the read adds a few percent to its time, not half of it.
func verdictPoll(healthyAfter, poll time.Duration) time.Duration {
	return min(max(healthyAfter/16, 100*time.Millisecond), poll)
}

// healthyTimes keeps how long recent registrations took to be seen
// healthy on one cloud.
type healthyTimes struct {
	samples [32]time.Duration
	n, next int
}

func (h *healthyTimes) add(d time.Duration) {
	h.samples[h.next] = d
	h.next = (h.next + 1) % len(h.samples)
	h.n = min(h.n+1, len(h.samples))
}

// settle records how long the cloud took from the registration to the
// read that saw the target healthy, once per registration, and forgets
// the registration when the ledger names its pod (written before the
// call): from then on the ledger speaks for the pod, as it does after a
// restart, and a fleet at rest keeps no note of its settled targets.
func (r *BindingReconciler) settle(ps *pass, k providers.TargetKey, reg registration, seen time.Time) {
	if reg.timed {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.books[ps.key]
	if b == nil {
		return
	}
	cur, ok := b.at[k]
	if !ok || cur.timed || cur.uid != reg.uid || !cur.at.Equal(reg.at) {
		return
	}
	if ps.entry.Targets[k] == reg.uid {
		delete(b.at, k)
		if len(b.at) == 0 {
			// A map keeps the room it grew to: a settled binding's
			// book holds none.
			b.at = map[providers.TargetKey]registration{}
		}
	} else {
		cur.timed = true
		b.at[k] = cur
	}
	if r.learned == nil {
		r.learned = map[string]*healthyTimes{}
	}
	h := r.learned[ps.key.Provider]
	if h == nil {
		h = &healthyTimes{}
		r.learned[ps.key.Provider] = h
	}
	h.add(seen.Sub(reg.at))
}

// healthyAfter is the earliest a read can expect a new registration on
// the cloud to be healthy, from the fastest of its recent registrations
// as seen by reads: four fifths of it. Reading earlier spends budget on
// targets the cloud cannot have judged; the fifth off keeps looking for
// a faster cloud.
func healthyAfter(fastest time.Duration) time.Duration { return fastest * 4 / 5 }

// fastestHealthy is the shortest of the cloud's recent registrations,
// from the registration to the read that saw the target healthy.
func (r *BindingReconciler) fastestHealthy(provider string) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.learned[provider]
	if h == nil || h.n == 0 {
		return 0, false
	}
	return slices.Min(h.samples[:h.n]), true
}

// mergeParts returns the observation last with the parts read (those in
// holds) replaced by read.
func mergeParts(last, read []providers.Observed, in func(providers.Observed) bool) []providers.Observed {
	// The observation is kept until the next read, at rest for long: one
	// slice of its exact size.
	kept := 0
	for _, o := range last {
		if !in(o) {
			kept++
		}
	}
	out := make([]providers.Observed, 0, kept+len(read))
	for _, o := range last {
		if !in(o) {
			out = append(out, o)
		}
	}
	out = append(out, read...)
	providers.SortObserved(out)
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// HealthReader is the read path: it reads a binding's group when the
// write path scheduled it, stores the result for the write path and hands
// the binding back to it (Done), which feeds the gate at once.
type HealthReader struct {
	Bindings *BindingReconciler
	// Done is told when a read of a binding completed or failed.
	Done func(providers.BindingKey)
}

// Reconcile implements reconcile.TypedReconciler.
func (h *HealthReader) Reconcile(ctx context.Context, key providers.BindingKey) (reconcile.Result, error) {
	r := h.Bindings
	prov := r.Providers[key.Provider]
	start := r.now()
	g, of := r.readScope(key, prov, start)
	if g == nil || prov == nil {
		// Not ensured yet: the write path schedules the first read.
		return reconcile.Result{}, nil
	}
	rest := r.readAtRest(key)
	if rest {
		ctx = providers.AtRest(ctx)
	}
	var (
		observed []providers.Observed
		in       func(providers.Observed) bool
		err      error
	)
	if of != nil {
		observed, in, err = prov.(providers.PartReader).ObserveParts(ctx, g, of)
	} else {
		observed, err = prov.Observe(ctx, g)
	}
	if po := (*providers.PutOffError)(nil); rest && errors.As(err, &po) {
		// The bucket is down to the reserve kept for reads pods wait
		// for: no news, and the read comes back about when the bucket
		// can have refilled.
		if r.ScheduleRead != nil {
			r.ScheduleRead(key, r.putOff(po.Refill, r.notePutOff(key)), BackgroundPriority)
		}
		return reconcile.Result{}, nil
	}
	if err != nil {
		log.FromContext(ctx).V(1).Info("reading health failed", "binding", key.String(), "error", err.Error())
	}
	if !r.storeRead(key, g.Ref, start, observed, in, err) {
		// Nothing moved at rest: read again at the resync; the binding's
		// pass comes on its own timer.
		if r.ScheduleRead != nil {
			r.ScheduleRead(key, r.restingReadAfter(), BackgroundPriority)
		}
		return reconcile.Result{}, nil
	}
	if h.Done != nil {
		h.Done(key)
	}
	return reconcile.Result{}, nil
}

// putOff is when a read at rest put off for want of a spare token tries
// again, the n-th put off in a row: around the time its bucket takes to
// refill the reserve (at least 100 ms), twice as long at each put-off in
// a row, at most the resync; jittered by half either way so the reads put
// off together do not come back together. When reads at rest alone keep
// the bucket at its reserve (more bindings than the bucket can read every
// resync), the put-off reads spread out over the resync instead of all
// coming back at every refill.
func (r *BindingReconciler) putOff(refill time.Duration, n int) time.Duration {
	d := max(refill, 100*time.Millisecond)
	for i := 1; i < n && d < r.Timing.Resync; i++ {
		d *= 2
	}
	d = min(d, r.Timing.Resync)
	return d/2 + rand.N(d)
}

// notePutOff counts a read at rest of key put off and returns how many
// were put off in a row, this one included.
func (r *BindingReconciler) notePutOff(key providers.BindingKey) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(key)
	v.putOffs++
	return v.putOffs
}

// readAtRest reports whether the binding's next read is one nothing waits
// for: its last pass left no pod waiting for a read and its last read
// succeeded. Such a read is made only from spare tokens
// (providers.AtRest).
func (r *BindingReconciler) readAtRest(key providers.BindingKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.views[key]
	return v != nil && v.resting && v.obs.err == nil
}

// readScope returns the binding's group and, when only part of it is
// to be read, the targets whose parts to read (nil: the whole group).
// A providers.PartReader reads only the parts where targets wait for a
// read due within their read interval or were registered since their
// part was last read; the whole group is read at least every
// fullReadEvery. The parts left unread keep what their last read found,
// and nothing registered since lies in them, so no pod is judged by a
// read older than its registration.
func (r *BindingReconciler) readScope(key providers.BindingKey, prov providers.Provider, now time.Time) (*providers.Group, []providers.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.views[key]
	if v == nil || v.group == nil {
		return nil, nil
	}
	if _, ok := prov.(providers.PartReader); !ok || len(v.waiting) == 0 || v.fullAt.IsZero() ||
		now.Sub(v.fullAt) >= r.fullReadEvery() || v.obs.ref != v.group.Ref || v.obs.err != nil {
		return v.group, nil
	}
	var of []providers.Target
	for _, w := range v.waiting {
		if !w.due.After(now) {
			of = append(of, w.target)
		}
	}
	if len(of) == 0 {
		// Brought forward (a retry, a start): what waits.
		for _, w := range v.waiting {
			of = append(of, w.target)
		}
	}
	if book := r.books[key]; book != nil && book.ref == v.group.Ref {
		for _, reg := range book.at {
			if !reg.read {
				of = append(of, reg.target)
			}
		}
	}
	return v.group, of
}

// fullReadEvery is how long a group read in parts goes without a read of
// the whole: the parts where nothing waits are read as often as a group
// at rest, at the resync. More often, under a spent read budget, a read
// of every part holds a waiting pod's verdict until the last part's
// token comes.
func (r *BindingReconciler) fullReadEvery() time.Duration { return r.Timing.Resync }

// storeRead keeps a read of group ref begun at start, unless the binding
// moved to another group meanwhile. Writes this process made after the
// read began are folded in: the read cannot have seen them. A read of
// parts (in reports what lies in them) replaces only those parts of the
// observation. It reports whether the read is news for the binding's
// pass: anything but a successful read of a resting binding equal to the
// read before.
func (r *BindingReconciler) storeRead(key providers.BindingKey, ref string, start time.Time, observed []providers.Observed, in func(providers.Observed) bool, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.viewLocked(key)
	v.putOffs = 0
	if v.group == nil || v.group.Ref != ref {
		return true
	}
	if err != nil {
		if v.obs.ref == ref {
			v.obs.err, v.obs.failed = err, true
		}
		v.lastRead = readPrint{}
		return true
	}
	switch {
	case in == nil:
		v.fullAt = start
	case v.obs.ref != ref:
		// Parts of a group whose rest was never read: read it whole.
		v.fullAt = time.Time{}
		return true
	default:
		observed = mergeParts(v.obs.targets, observed, in)
	}
	if book := r.books[key]; book != nil && book.ref == ref {
		for k, reg := range book.at {
			if !reg.read && reg.at.Before(start) && (in == nil || in(providers.Observed{Target: reg.target})) {
				reg.read = true
				book.at[k] = reg
			}
		}
	}
	fp := printRead(observed)
	if v.resting && fp == v.lastRead && v.obs.ref == ref && !v.obs.fresh && !v.obs.failed && !v.obs.at.IsZero() {
		// The pass that made it resting saw this read's equal and kept
		// what it made of it; only the time of the read moves on.
		v.obs.at = start
		return false
	}
	if book := r.books[key]; book != nil && book.ref == ref {
		var plan providers.Plan
		for _, reg := range book.at {
			if reg.at.After(start) {
				plan.Register = append(plan.Register, reg.target)
			}
		}
		forgot := false
		for k, at := range book.deregistered {
			switch {
			case at.After(start):
				plan.Deregister = append(plan.Deregister, providers.Target{IP: k.IP, Port: k.Port})
			case start.Sub(at) > time.Minute:
				delete(book.deregistered, k)
				forgot = true
			}
		}
		if forgot && len(book.deregistered) == 0 {
			book.deregistered = map[providers.TargetKey]time.Time{} // without the room it grew to
		}
		if !plan.Empty() {
			observed = applyPlanToObserved(observed, plan, v.group.Display)
			// A read that may not have seen a write is no measure of
			// the next.
			fp = readPrint{}
		}
	}
	v.lastRead = fp
	v.obs = observation{ref: ref, at: start, targets: observed, fresh: true}
	return true
}
