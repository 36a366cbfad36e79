package bench

import (
	"math"
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

// idealCalls is when the soonest calls the budget allows could carry each
// change: an oracle dispatcher that sends a call the moment the budget has
// one, to the group (and direction) whose change has waited longest,
// carrying everything that group has waiting (up to batch; 0 is no
// limit), with calls taking no time. No controller can do better at
// that budget, so what it yields is a floor. Changes come back in their
// order; start is when the budget was last full.
func idealCalls(changes []change, b budget, batch int, start time.Time) []time.Time {
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
	clock := newBudgetClock(b, start)
	pending := map[key][]int{}
	waiting, next := 0, 0
	t := start
	for next < len(order) || waiting > 0 {
		if waiting == 0 && changes[order[next]].at.After(t) {
			t = changes[order[next]].at
		}
		if ready := clock.next(t); ready.After(t) {
			t = ready
		}
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
		clock.take(t)
	}
	return out
}

// earlier orders changes by time, then by their order in changes.
func earlier(changes []change, i, j int) bool {
	if !changes[i].at.Equal(changes[j].at) {
		return changes[i].at.Before(changes[j].at)
	}
	return i < j
}

// addedLatencyFloor is, for each registration among changes (dereg
// false) whose cloud time is known (cloudTime[i] >= 0), the least added
// latency the account's budgets allow: from its change to the ideal
// registration call, plus from the cloud's verdict (that call plus the
// cloud's own time) to an ideal health read of its group. Reads here know
// when the cloud turns a target healthy, which no controller does, so
// the read share of the floor is near zero unless reads are scarce.
func addedLatencyFloor(changes []change, cloudTime []time.Duration, writes, reads budget, batch int, start time.Time) []time.Duration {
	called := idealCalls(changes, writes, batch, start)
	var verdicts []change
	var registered []int
	for i, c := range changes {
		if c.dereg || cloudTime[i] < 0 {
			continue
		}
		verdicts = append(verdicts, change{group: c.group, at: called[i].Add(cloudTime[i])})
		registered = append(registered, i)
	}
	read := idealCalls(verdicts, reads, 0, start)
	out := make([]time.Duration, len(registered))
	for j, i := range registered {
		out[j] = called[i].Sub(changes[i].at) + read[j].Sub(verdicts[j].at)
	}
	return out
}
