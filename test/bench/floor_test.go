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

// idealCalls is when an ideal dispatcher's calls carry each change: it
// sends a call the moment every budget has one, to the group (and
// direction) whose change has waited longest, carrying everything that
// group has waiting (up to batch; 0 is no limit), and calls take no time.
// With a hold, no change goes before it has waited that long, so later
// changes of its group join its call: when calls are what is scarce,
// fewer and fuller calls can serve every change sooner than calls sent
// at once. Changes come back in their order; start is when the budgets
// were last full.
func idealCalls(changes []change, budgets []budget, batch int, hold time.Duration, start time.Time) []time.Time {
	type key struct {
		group string
		dereg bool
	}
	order := make([]int, len(changes))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return changes[order[i]].at.Before(changes[order[j]].at) })
	out := make([]time.Time, len(changes))
	clocks := make([]*budgetClock, len(budgets))
	for i, b := range budgets {
		clocks[i] = newBudgetClock(b, start)
	}
	pending := map[key][]int{}
	waiting, next := 0, 0
	t := start
	for next < len(order) || waiting > 0 {
		if waiting == 0 && changes[order[next]].at.After(t) {
			t = changes[order[next]].at
		}
		t = nextOfAll(clocks, t)
		for next < len(order) && !changes[order[next]].at.After(t) {
			c := changes[order[next]]
			k := key{c.group, c.dereg}
			pending[k] = append(pending[k], order[next])
			waiting++
			next++
		}
		var oldest key
		found := false
		for k, idx := range pending {
			if !found || earlier(changes, idx[0], pending[oldest][0]) {
				oldest, found = k, true
			}
		}
		// Every later change is younger: none may go before this one.
		if ready := changes[pending[oldest][0]].at.Add(hold); ready.After(t) {
			t = ready
			continue
		}
		n := len(pending[oldest])
		if batch > 0 {
			n = min(n, batch)
		}
		for _, i := range pending[oldest][:n] {
			out[i] = t
		}
		if pending[oldest] = pending[oldest][n:]; len(pending[oldest]) == 0 {
			delete(pending, oldest)
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

// earlier orders changes by time, then by their order in changes.
func earlier(changes []change, i, j int) bool {
	if !changes[i].at.Equal(changes[j].at) {
		return changes[i].at.Before(changes[j].at)
	}
	return i < j
}

// addedLatencyFloor is, for each registration among changes (dereg
// false) whose cloud time is known (cloudTime[i] >= 0), its added latency
// under an ideal dispatcher within the write budgets: from its change to
// the registration call, plus from the cloud's verdict (that call plus
// the cloud's own time) to an ideal health read of its group. Reads here
// know when the cloud turns a target healthy, which no controller does,
// so the read share of the floor is near zero unless reads are scarce.
// hold delays only the writes (see idealCalls); the reads' replay never
// holds one.
func addedLatencyFloor(changes []change, cloudTime []time.Duration, writes []budget, reads budget, batch int, hold time.Duration, start time.Time) []time.Duration {
	called := idealCalls(changes, writes, batch, hold, start)
	var verdicts []change
	var registered []int
	for i, c := range changes {
		if c.dereg || cloudTime[i] < 0 {
			continue
		}
		verdicts = append(verdicts, change{group: c.group, at: called[i].Add(cloudTime[i])})
		registered = append(registered, i)
	}
	read := idealCalls(verdicts, []budget{reads}, 0, 0, start)
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
// need reach both figures; each is reached by one of them.
func bestFloor(changes []change, cloudTime []time.Duration, writes []budget, reads budget, batch int, start time.Time) (p50, p99 time.Duration, n int) {
	rate, burst := writes[0].perSec, writes[0].burst
	for _, w := range writes[1:] {
		rate, burst = math.Min(rate, w.perSec), math.Min(burst, w.burst)
	}
	first := true
	for _, hold := range floorHolds {
		for pace := 1.0; ; pace *= 2 {
			pace = math.Min(pace, burst)
			paced := append(slices.Clone(writes), budget{burst: pace, perSec: rate})
			floor := addedLatencyFloor(changes, cloudTime, paced, reads, batch, hold, start)
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
