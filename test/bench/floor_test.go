package bench

import (
	"container/heap"
	"math"
	"slices"
	"sort"
	"time"
)

// budget is how many calls of one kind the emulated account or project
// allows: a refilling bucket (ELBv2's throttling buckets), or burst calls
// per fixed window (Compute Engine's per-100-s quotas) when window is set.
type budget struct {
	burst  float64
	perSec float64
	window time.Duration
}

// budgetClock spends a budget in time order.
type budgetClock struct {
	b      budget
	start  time.Time
	tokens float64   // bucket: tokens at last
	last   time.Time // bucket: when tokens was computed
	used   int       // window: calls spent in the current window
	window time.Time // window: start of the current window
}

// newBudgetClock starts a budget full at start: the most generous the
// account can be, so that what is computed from it stays a floor.
func newBudgetClock(b budget, start time.Time) *budgetClock {
	return &budgetClock{b: b, start: start, tokens: b.burst, last: start, window: start}
}

// next is the earliest time at or after t a call may go.
func (c *budgetClock) next(t time.Time) time.Time {
	if c.b.window > 0 {
		w := c.start.Add(t.Sub(c.start).Truncate(c.b.window))
		if w.After(c.window) || float64(c.used) < c.b.burst {
			return t
		}
		return w.Add(c.b.window)
	}
	tokens := math.Min(c.b.burst, c.tokens+t.Sub(c.last).Seconds()*c.b.perSec)
	if tokens >= 1-1e-9 { // float error of a refill computed to the nanosecond
		return t
	}
	return t.Add(time.Duration(math.Ceil((1 - tokens) / c.b.perSec * float64(time.Second))))
}

// take spends one call at t, which next allowed.
func (c *budgetClock) take(t time.Time) {
	if c.b.window > 0 {
		if w := c.start.Add(t.Sub(c.start).Truncate(c.b.window)); w.After(c.window) {
			c.window, c.used = w, 0
		}
		c.used++
		return
	}
	c.tokens = math.Min(c.b.burst, c.tokens+t.Sub(c.last).Seconds()*c.b.perSec) - 1
	c.last = t
}

// change is one target to register or deregister (or, for reads, one
// target whose health is to be seen), from at.
type change struct {
	group string
	dereg bool
	at    time.Time
}

// order is how an ideal dispatcher ranks what waits.
type order struct {
	// hold: no change goes before it has waited this long, so later
	// changes of its group join its call: when calls are what is scarce,
	// fewer and fuller calls can serve every change sooner than calls
	// sent at once.
	hold time.Duration
	// headStart is how much longer than it has a deregistration counts
	// as having waited, for headFor after it came (podlb's
	// --deregistration-head-start, which ends once the load balancer
	// sends the pod nothing); a call it wins ahead of an older change
	// owes the next call to the change that has waited longest by its
	// own wait, as podlb's dispatcher does. Zero: every change ranks by
	// its own wait.
	headStart, headFor time.Duration
}

// idealCalls is when an ideal dispatcher's calls carry each change: it
// sends a call the moment every budget has one, to the group (and
// direction) whose change has waited longest as ord ranks it, carrying
// everything that group has waiting (up to batch; 0 is no limit), and
// calls take no time. Changes come back in their order; start is when
// the budgets were last full.
func idealCalls(changes []change, budgets []budget, batch int, ord order, start time.Time) []time.Time {
	sorted := make([]int, len(changes))
	for i := range sorted {
		sorted[i] = i
	}
	sort.SliceStable(sorted, func(i, j int) bool { return changes[sorted[i]].at.Before(changes[sorted[j]].at) })
	out := make([]time.Time, len(changes))
	clocks := newBudgetClocks(budgets, start)
	d := newIdealDispatcher(changes, batch, ord)
	next := 0
	t := start
	for next < len(sorted) || d.waiting > 0 {
		if d.waiting == 0 && changes[sorted[next]].at.After(t) {
			t = changes[sorted[next]].at
		}
		t = nextOfAll(clocks, t)
		for next < len(sorted) && !changes[sorted[next]].at.After(t) {
			d.add(sorted[next])
			next++
		}
		sent, ready := d.serve(t, clocks)
		if sent == nil {
			t = ready
			continue
		}
		for _, i := range sent {
			out[i] = t
		}
	}
	return out
}

func newBudgetClocks(budgets []budget, start time.Time) []*budgetClock {
	clocks := make([]*budgetClock, len(budgets))
	for i, b := range budgets {
		clocks[i] = newBudgetClock(b, start)
	}
	return clocks
}

// callKey is what one call carries: a group's changes in one direction.
type callKey struct {
	group string
	dereg bool
}

// idealDispatcher is the choice of idealCalls: which group's changes the
// next call carries.
type idealDispatcher struct {
	changes []change
	batch   int
	ord     order
	pending map[callKey][]int // changes waiting, oldest first
	waiting int
	// owed says the next call goes to the change that has waited longest
	// by its own wait: the last went ahead of it by a head start.
	owed bool
}

func newIdealDispatcher(changes []change, batch int, ord order) *idealDispatcher {
	return &idealDispatcher{changes: changes, batch: batch, ord: ord, pending: map[callKey][]int{}}
}

// add makes change i wait; changes come in the order of their at.
func (d *idealDispatcher) add(i int) {
	k := callKey{d.changes[i].group, d.changes[i].dereg}
	d.pending[k] = append(d.pending[k], i)
	d.waiting++
}

// rank is when a group's waiting changes count as having begun to wait
// at t, and since when those ranked by their own wait have (ok false:
// none is).
func (d *idealDispatcher) rank(idx []int, t time.Time) (counted, own time.Time, ok bool) {
	counted = d.changes[idx[0]].at
	for _, i := range idx {
		c := d.changes[i]
		if c.dereg && d.ord.headStart > 0 && !t.After(c.at.Add(d.ord.headFor)) {
			if head := c.at.Add(-d.ord.headStart); head.Before(counted) {
				counted = head
			}
			continue
		}
		if !ok {
			own, ok = c.at, true
		}
	}
	return counted, own, ok
}

// pick is the call due at t (something must wait), when its hold lets it
// go, and whether sending it owes the next call to the longest own wait.
func (d *idealDispatcher) pick(t time.Time) (chosen callKey, ready time.Time, owes bool) {
	// The most urgent group by its counted wait, and the one whose
	// change has waited longest by its own; ties go to the change that
	// came first in changes.
	var best, oldest callKey
	var bestAt, oldestAt time.Time
	foundBest, foundOldest := false, false
	for k, idx := range d.pending {
		counted, own, ok := d.rank(idx, t)
		if !foundBest || counted.Before(bestAt) || counted.Equal(bestAt) && idx[0] < d.pending[best][0] {
			best, bestAt, foundBest = k, counted, true
		}
		if ok && (!foundOldest || own.Before(oldestAt) || own.Equal(oldestAt) && idx[0] < d.pending[oldest][0]) {
			oldest, oldestAt, foundOldest = k, own, true
		}
	}
	chosen = best
	if d.owed && foundOldest {
		chosen = oldest
	}
	first := d.changes[d.pending[chosen][0]].at
	owes = d.ord.headStart > 0 && chosen != oldest && foundOldest && oldestAt.Before(first)
	return chosen, first.Add(d.ord.hold), owes
}

// serve makes the call due at t, which the clocks allow, and returns what
// it carries; or, when its hold keeps it back, nothing and when it may
// go (every later change is younger: none may go before it).
func (d *idealDispatcher) serve(t time.Time, clocks []*budgetClock) (sent []int, ready time.Time) {
	k, ready, owes := d.pick(t)
	if ready.After(t) {
		return nil, ready
	}
	for _, c := range clocks {
		c.take(t)
	}
	return d.send(k, owes), t
}

// send takes what a call to k carries out of the wait.
func (d *idealDispatcher) send(k callKey, owes bool) []int {
	n := len(d.pending[k])
	if d.batch > 0 {
		n = min(n, d.batch)
	}
	sent := d.pending[k][:n]
	if d.pending[k] = d.pending[k][n:]; len(d.pending[k]) == 0 {
		delete(d.pending, k)
	}
	d.waiting -= n
	d.owed = owes
	return sent
}

// callCount is how many calls carry changes sent at the times called
// (see idealCalls): one per group, direction and time.
func callCount(changes []change, called []time.Time) int {
	type call struct {
		group string
		dereg bool
		at    int64
	}
	calls := map[call]bool{}
	for i, c := range changes {
		calls[call{c.group, c.dereg, called[i].UnixNano()}] = true
	}
	return len(calls)
}

// nextOfAll is the earliest time at or after t every clock allows a call.
func nextOfAll(clocks []*budgetClock, t time.Time) time.Time {
	for {
		later := t
		for _, c := range clocks {
			later = c.next(later)
		}
		if later.Equal(t) {
			return t
		}
		t = later
	}
}

// addedLatencyFloor is, for each registration among changes (dereg
// false) whose cloud time is known (cloudTime[i] >= 0), its added latency
// under an ideal dispatcher within the write budgets: from its change to
// the registration call, plus from the cloud's verdict (that call plus
// the cloud's own time) to an ideal health read of its group. Reads here
// know when the cloud turns a target healthy, which no controller does,
// so the read share of the floor is near zero unless reads are scarce.
// ord ranks only the writes (see idealCalls); the reads' replay serves
// the longest wait at once.
func addedLatencyFloor(changes []change, cloudTime []time.Duration, writes []budget, reads budget, batch int, ord order, start time.Time) []time.Duration {
	called := idealCalls(changes, writes, batch, ord, start)
	var verdicts []change
	var registered []int
	for i, c := range changes {
		if c.dereg || cloudTime[i] < 0 {
			continue
		}
		verdicts = append(verdicts, change{group: c.group, at: called[i].Add(cloudTime[i])})
		registered = append(registered, i)
	}
	read := idealCalls(verdicts, []budget{reads}, 0, order{}, start)
	out := make([]time.Duration, len(registered))
	for j, i := range registered {
		out[j] = called[i].Sub(changes[i].at) + read[j].Sub(verdicts[j].at)
	}
	return out
}

// bestFloor is the added-latency floor within the write budgets: the
// best p50 and the best p99 of ideal dispatchers that differ in how they
// spend them. Spending a burst at once is not always best: calls sent the
// moment a change comes carry one target each, and a project's
// per-window quota spent that way leaves the rest of the window to wait.
// So each dispatcher also keeps to a bucket of its own at the budgets'
// long-run rate, of every size from one call to the burst, and holds
// each change for one of floorHolds before it may go. No one dispatcher
// need reach both figures; each is reached by one of them. ord's head
// start, if any, applies to every one (its hold is theirs).
func bestFloor(changes []change, cloudTime []time.Duration, writes []budget, reads budget, batch int, ord order, start time.Time) (p50, p99 time.Duration, n int) {
	first := true
	for _, hold := range floorHolds {
		for _, paced := range pacedBudgets(writes) {
			ord.hold = hold
			floor := addedLatencyFloor(changes, cloudTime, paced, reads, batch, ord, start)
			a, b := percentile(floor, 50), percentile(floor, 99)
			if first || a < p50 {
				p50 = a
			}
			if first || b < p99 {
				p99 = b
			}
			first, n = false, len(floor)
		}
	}
	return p50, p99, n
}

// pacedBudgets are writes with a bucket of a dispatcher's own added at
// their long-run rate, one for each size doubling from one call to their
// burst.
func pacedBudgets(writes []budget) [][]budget {
	rate, burst := writes[0].perSec, writes[0].burst
	for _, w := range writes[1:] {
		rate, burst = math.Min(rate, w.perSec), math.Min(burst, w.burst)
	}
	var out [][]budget
	for pace := 1.0; ; pace *= 2 {
		pace = math.Min(pace, burst)
		out = append(out, append(slices.Clone(writes), budget{burst: pace, perSec: rate}))
		if pace >= burst {
			return out
		}
	}
}

// floorHolds are the holds bestFloor tries: none, and doubling from a
// quarter second (podlb's default coalesce window is 200 ms) to past
// what a saturated budget makes a group wait anyway.
var floorHolds = []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}

// loopService is one Deployment's rolling update as closedLoop replays
// it: its new pods in the order they were created, its old pods in the
// order they left.
type loopService struct {
	surge int
	news  []loopPod
	olds  []loopOld
}

// loopPod is a new pod of a rolling update (maxSurge surge,
// maxUnavailable 0). The first surge turn ContainersReady at at; each
// later one, the j-th, after the (j-surge)-th of its Deployment's new
// pods turned available (its gate True), which let the Deployment create
// it, and the measured delay after from that to its ContainersReady.
type loopPod struct {
	group string
	at    time.Time
	after time.Duration
	cloud time.Duration // registration -> healthy
}

// loopOld is an old pod: the i-th leaves (a deregistration) after the
// i-th of its Deployment's new pods turned available, which let the
// Deployment delete it, and the measured delay after.
type loopOld struct {
	group string
	after time.Duration
}

// closedLoop is an ideal dispatcher (see idealCalls) in the loop of a
// rolling update: a new pod is available the moment the cloud calls it
// healthy (reads and gates take no time), and the Deployments' next pods
// come and old pods leave that much sooner than they did for podlb, each
// after its own measured delay. Replaying podlb's arrivals instead (as
// addedLatencyFloor does) leaves out that the next wave of a Service
// served sooner comes sooner: when the write budget paces a rollout,
// each wave waits for a full cycle of every other Service's writes,
// whoever dispatches them. It returns each registration's wait for its
// call, the calls' count and when the last new pod turned available.
func closedLoop(services []loopService, budgets []budget, batch int, ord order, start time.Time) (waits []time.Duration, calls int, end time.Time) {
	type pod struct{ service, index int }
	var changes []change
	var of []pod // of each change: its service and, for a new pod, its index
	base := make([][2]int, len(services))
	for s, svc := range services {
		base[s] = [2]int{len(changes), len(changes) + len(svc.news)}
		for i, p := range svc.news {
			changes = append(changes, change{group: p.group})
			of = append(of, pod{s, i})
		}
		for _, o := range svc.olds {
			changes = append(changes, change{group: o.group, dereg: true})
			of = append(of, pod{s, -1})
		}
	}
	var events loopEvents
	for s, svc := range services {
		for j := range min(svc.surge, len(svc.news)) {
			heap.Push(&events, loopEvent{at: svc.news[j].at, change: base[s][0] + j})
		}
	}
	available := make([]int, len(services))
	called := make([]time.Time, len(changes))
	clocks := newBudgetClocks(budgets, start)
	d := newIdealDispatcher(changes, batch, ord)
	t := start
	for events.Len() > 0 || d.waiting > 0 {
		if d.waiting == 0 && events[0].at.After(t) {
			t = events[0].at
		}
		t = nextOfAll(clocks, t)
		for events.Len() > 0 && !events[0].at.After(t) {
			ev := heap.Pop(&events).(loopEvent)
			if ev.change >= 0 {
				changes[ev.change].at = ev.at
				d.add(ev.change)
				continue
			}
			s := ev.available
			svc, k := services[s], available[s]
			available[s]++
			end = later(end, ev.at)
			if j := k + svc.surge; j < len(svc.news) {
				heap.Push(&events, loopEvent{at: ev.at.Add(svc.news[j].after), change: base[s][0] + j})
			}
			if k < len(svc.olds) {
				heap.Push(&events, loopEvent{at: ev.at.Add(svc.olds[k].after), change: base[s][1] + k})
			}
		}
		if d.waiting == 0 {
			continue
		}
		sent, ready := d.serve(t, clocks)
		if sent == nil {
			t = ready
			continue
		}
		for _, i := range sent {
			called[i] = t
			if p := of[i]; p.index >= 0 {
				heap.Push(&events, loopEvent{at: t.Add(services[p.service].news[p.index].cloud), change: -1, available: p.service})
			}
		}
	}
	for i, c := range changes {
		if !c.dereg {
			waits = append(waits, called[i].Sub(c.at))
		}
	}
	return waits, callCount(changes, called), end
}

// bestLoop is closedLoop's floor as bestFloor takes it: the best p50 and
// p99 of the registrations' waits, and the earliest end, over ideal
// dispatchers that keep to a bucket of their own at the budgets' long-run
// rate, of every size from one call to the burst (a project's quota per
// window, spent at once, leaves the rest of the window to wait); calls
// are the fewest any made.
func bestLoop(services []loopService, writes []budget, batch int, ord order, start time.Time) (p50, p99 time.Duration, calls int, end time.Time) {
	first := true
	for _, paced := range pacedBudgets(writes) {
		waits, n, last := closedLoop(services, paced, batch, ord, start)
		a, b := percentile(waits, 50), percentile(waits, 99)
		if first || a < p50 {
			p50 = a
		}
		if first || b < p99 {
			p99 = b
		}
		if first || n < calls {
			calls = n
		}
		if first || last.Before(end) {
			end = last
		}
		first = false
	}
	return p50, p99, calls, end
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// loopEvent is a change's arrival (change >= 0) or a new pod of service
// available turning available (change < 0).
type loopEvent struct {
	at        time.Time
	change    int
	available int
}

// loopEvents is a heap of events by time.
type loopEvents []loopEvent

func (h loopEvents) Len() int { return len(h) }
func (h loopEvents) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].change < h[j].change || h[i].change == h[j].change && h[i].available < h[j].available
}
func (h loopEvents) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *loopEvents) Push(x any)   { *h = append(*h, x.(loopEvent)) }
func (h *loopEvents) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
