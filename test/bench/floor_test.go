package bench

import (
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
	type key struct {
		group string
		dereg bool
	}
	sorted := make([]int, len(changes))
	for i := range sorted {
		sorted[i] = i
	}
	sort.SliceStable(sorted, func(i, j int) bool { return changes[sorted[i]].at.Before(changes[sorted[j]].at) })
	out := make([]time.Time, len(changes))
	clocks := make([]*budgetClock, len(budgets))
	for i, b := range budgets {
		clocks[i] = newBudgetClock(b, start)
	}
	pending := map[key][]int{}
	// rank is when a group's waiting changes count as having begun to
	// wait at t, and since when those ranked by their own wait have
	// (ok false: none is).
	rank := func(idx []int, t time.Time) (counted, own time.Time, ok bool) {
		counted = changes[idx[0]].at
		for _, i := range idx {
			c := changes[i]
			if c.dereg && ord.headStart > 0 && !t.After(c.at.Add(ord.headFor)) {
				if head := c.at.Add(-ord.headStart); head.Before(counted) {
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
	owed := false
	waiting, next := 0, 0
	t := start
	for next < len(sorted) || waiting > 0 {
		if waiting == 0 && changes[sorted[next]].at.After(t) {
			t = changes[sorted[next]].at
		}
		t = nextOfAll(clocks, t)
		for next < len(sorted) && !changes[sorted[next]].at.After(t) {
			c := changes[sorted[next]]
			k := key{c.group, c.dereg}
			pending[k] = append(pending[k], sorted[next])
			waiting++
			next++
		}
		// The most urgent group by its counted wait, and the one whose
		// change has waited longest by its own; ties go to the change
		// that came first in changes.
		var best, oldest key
		var bestAt, oldestAt time.Time
		foundBest, foundOldest := false, false
		for k, idx := range pending {
			counted, own, ok := rank(idx, t)
			if !foundBest || counted.Before(bestAt) || counted.Equal(bestAt) && idx[0] < pending[best][0] {
				best, bestAt, foundBest = k, counted, true
			}
			if ok && (!foundOldest || own.Before(oldestAt) || own.Equal(oldestAt) && idx[0] < pending[oldest][0]) {
				oldest, oldestAt, foundOldest = k, own, true
			}
		}
		chosen := best
		if owed && foundOldest {
			chosen = oldest
		}
		// Every later change is younger: none may go before this one.
		if ready := changes[pending[chosen][0]].at.Add(ord.hold); ready.After(t) {
			t = ready
			continue
		}
		if ord.headStart > 0 {
			owed = chosen != oldest && foundOldest && oldestAt.Before(changes[pending[chosen][0]].at)
		}
		n := len(pending[chosen])
		if batch > 0 {
			n = min(n, batch)
		}
		for _, i := range pending[chosen][:n] {
			out[i] = t
		}
		if pending[chosen] = pending[chosen][n:]; len(pending[chosen]) == 0 {
			delete(pending, chosen)
		}
		waiting -= n
		for _, c := range clocks {
			c.take(t)
		}
	}
	return out
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
	rate, burst := writes[0].perSec, writes[0].burst
	for _, w := range writes[1:] {
		rate, burst = math.Min(rate, w.perSec), math.Min(burst, w.burst)
	}
	first := true
	for _, hold := range floorHolds {
		for pace := 1.0; ; pace *= 2 {
			pace = math.Min(pace, burst)
			paced := append(slices.Clone(writes), budget{burst: pace, perSec: rate})
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
			if pace >= burst {
				break
			}
		}
	}
	return p50, p99, n
}

// floorHolds are the holds bestFloor tries: none, and doubling from a
// quarter second (podlb's default coalesce window is 200 ms) to past
// what a saturated budget makes a group wait anyway.
var floorHolds = []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
