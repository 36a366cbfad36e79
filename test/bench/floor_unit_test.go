package bench

import (
	"slices"
	"testing"
	"time"
)

func at(t0 time.Time, ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func offsets(t0 time.Time, ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(t0)
	}
	return out
}

// The ideal dispatcher sends a call as soon as the budget has one, to the
// longest-waiting group, carrying all that group has waiting.
func TestIdealCallsServeTheLongestWaitAndCarryAllItCan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	oneASecond := budget{burst: 1, perSec: 1}
	changes := []change{
		{group: "a", at: at(t0, 0)},
		{group: "a", at: at(t0, 100)},
		{group: "b", at: at(t0, 50)},
		{group: "a", at: at(t0, 200)},
		{group: "a", dereg: true, at: at(t0, 10)},
	}
	got := offsets(t0, idealCalls(changes, []budget{oneASecond}, 0, order{}, t0))
	// 0: a's first goes alone at once. 1 s: the oldest waiting is a's
	// deregistration (10 ms). 2 s: b (50 ms) before a's two later ones,
	// which share the call at 3 s.
	want := []time.Duration{0, 3 * time.Second, 2 * time.Second, 3 * time.Second, time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("call times %v, want %v", got, want)
	}
	// A batch limit of one splits a's last two.
	got = offsets(t0, idealCalls(changes, []budget{oneASecond}, 1, order{}, t0))
	want = []time.Duration{0, 3 * time.Second, 2 * time.Second, 4 * time.Second, time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("with batch 1: call times %v, want %v", got, want)
	}
}

func TestIdealCallsSpendABurstThenTheRefillOrTheNextWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var changes []change
	for _, g := range []string{"a", "b", "c", "d"} {
		changes = append(changes, change{group: g, at: t0})
	}
	got := offsets(t0, idealCalls(changes, []budget{{burst: 2, perSec: 4}}, 0, order{}, t0))
	want := []time.Duration{0, 0, 250 * time.Millisecond, 500 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("bucket: call times %v, want %v", got, want)
	}
	got = offsets(t0, idealCalls(changes, []budget{{burst: 3, perSec: 0.3, window: 10 * time.Second}}, 0, order{}, t0))
	want = []time.Duration{0, 0, 0, 10 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("window: call times %v, want %v", got, want)
	}
}

// In podlb's order a deregistration goes a head start ahead while its pod
// may still be sent connections, and a call it wins ahead of an older
// change owes the next one to the change that has waited longest.
func TestIdealCallsInPodlbsOrder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	oneASecond := budget{burst: 1, perSec: 1}
	changes := []change{
		{group: "a", at: at(t0, 0)},
		{group: "b", at: at(t0, 100)},
		{group: "c", dereg: true, at: at(t0, 200)},
		{group: "d", at: at(t0, 300)},
		{group: "e", dereg: true, at: at(t0, 400)},
	}
	s := time.Second
	got := offsets(t0, idealCalls(changes, []budget{oneASecond}, 0, order{}, t0))
	if want := []time.Duration{0, s, 2 * s, 3 * s, 4 * s}; !slices.Equal(got, want) {
		t.Fatalf("by their own wait: call times %v, want %v", got, want)
	}
	// 1 s: c by its head start, owing 2 s to b; 3 s: e, owing 4 s to d.
	headStart := order{headStart: time.Minute, headFor: 10 * s}
	got = offsets(t0, idealCalls(changes, []budget{oneASecond}, 0, headStart, t0))
	if want := []time.Duration{0, 2 * s, s, 4 * s, 3 * s}; !slices.Equal(got, want) {
		t.Fatalf("with a head start: call times %v, want %v", got, want)
	}
	// A head start over by the time the budget has a call ranks the
	// deregistration by its own wait again.
	headStart.headFor = 500 * time.Millisecond
	got = offsets(t0, idealCalls(changes[:3], []budget{oneASecond}, 0, headStart, t0))
	if want := []time.Duration{0, s, 2 * s}; !slices.Equal(got, want) {
		t.Fatalf("with a head start ended: call times %v, want %v", got, want)
	}
}

// The floor of a registration is its wait for a write plus its wait, after
// the cloud's verdict, for a read of its group.
func TestAddedLatencyFloorAddsTheWriteAndTheReadWaits(t *testing.T) {
	t0 := time.Unix(1000, 0)
	changes := []change{
		{group: "a", at: t0},
		{group: "b", at: t0},
		{group: "b", dereg: true, at: t0},
		{group: "c", at: t0},
	}
	cloud := []time.Duration{time.Second, time.Second, 0, -1}
	writes := []budget{{burst: 1, perSec: 2}}
	// Plenty of reads: only the writes wait. Ties go in order: a at 0,
	// b at 0.5 s, b's deregistration at 1 s, c (cloud time unknown) last.
	got := addedLatencyFloor(changes, cloud, writes, budget{burst: 10, perSec: 10}, 0, order{}, t0)
	if want := []time.Duration{0, 500 * time.Millisecond}; !slices.Equal(got, want) {
		t.Fatalf("floors %v, want %v", got, want)
	}
	// One read per 10 s: a's verdict (1 s) is read at once, b's (1.5 s)
	// when the bucket has refilled (11 s).
	got = addedLatencyFloor(changes, cloud, writes, budget{burst: 1, perSec: 0.1}, 0, order{}, t0)
	if want := []time.Duration{0, 500*time.Millisecond + 9500*time.Millisecond}; !slices.Equal(got, want) {
		t.Fatalf("floors with scarce reads %v, want %v", got, want)
	}
}

// A project quota spent at once on single-target calls leaves the rest of
// its window to wait; a dispatcher keeping to the long-run rate carries
// the later changes together and waits less, and the floor is the better
// of the two.
func TestBestFloorPacesAWindowQuota(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var changes []change
	var cloud []time.Duration
	// Group a: one change every 100 ms for 1 s; quota: 5 calls per 10 s.
	for i := range 10 {
		changes = append(changes, change{group: "a", at: at(t0, 100*i)})
		cloud = append(cloud, 0)
	}
	quota := budget{burst: 5, perSec: 0.5, window: 10 * time.Second}
	plenty := budget{burst: 100, perSec: 100}
	greedy := addedLatencyFloor(changes, cloud, []budget{quota}, plenty, 0, order{}, t0)
	// Greedy: the first five go alone at 0-400 ms, the other five wait for
	// the next window (10 s).
	if g := percentile(greedy, 99); g < 9*time.Second {
		t.Fatalf("greedy p99 %v, want the next window's wait", g)
	}
	p50, p99, n := bestFloor(changes, cloud, []budget{quota}, plenty, 0, order{}, t0)
	if n != 10 || p99 >= percentile(greedy, 99) || p50 > percentile(greedy, 50) {
		t.Fatalf("best floor p50 %v p99 %v of %d, want below greedy's %v / %v", p50, p99, n, percentile(greedy, 50), percentile(greedy, 99))
	}
}

// When calls are scarce, holding a change lets its group's next changes
// join its call: fewer, fuller calls serve the last change sooner than
// calls sent the moment the budget allows, and the floor takes the
// better.
func TestBestFloorHoldsChangesForFullerCalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var changes []change
	var cloud []time.Duration
	for _, ms := range []int{0, 100, 200} {
		for _, g := range []string{"a", "b"} {
			changes = append(changes, change{group: g, at: at(t0, ms)})
			cloud = append(cloud, 0)
		}
	}
	oneASecond := budget{burst: 1, perSec: 1}
	plenty := budget{burst: 100, perSec: 100}
	// At once: a's first alone at 0, b's three at 1 s, a's last two at 2 s.
	called := idealCalls(changes, []budget{oneASecond}, 0, order{}, t0)
	got := offsets(t0, called)
	want := []time.Duration{0, time.Second, 2 * time.Second, time.Second, 2 * time.Second, time.Second}
	if n := callCount(changes, called); !slices.Equal(got, want) || n != 3 {
		t.Fatalf("at once: call times %v in %d calls, want %v in 3", got, n, want)
	}
	// Held 250 ms: a's three at 250 ms, b's three at 1.25 s.
	called = idealCalls(changes, []budget{oneASecond}, 0, order{hold: 250 * time.Millisecond}, t0)
	got = offsets(t0, called)
	held := 250 * time.Millisecond
	want = []time.Duration{held, time.Second + held, held, time.Second + held, held, time.Second + held}
	if n := callCount(changes, called); !slices.Equal(got, want) || n != 2 {
		t.Fatalf("held: call times %v in %d calls, want %v in 2", got, n, want)
	}
	atOnce := addedLatencyFloor(changes, cloud, []budget{oneASecond}, plenty, 0, order{}, t0)
	_, p99, _ := bestFloor(changes, cloud, []budget{oneASecond}, plenty, 0, order{}, t0)
	if p99 > 1250*time.Millisecond || p99 >= percentile(atOnce, 99) {
		t.Fatalf("best floor p99 %v, want the held dispatcher's 1.25 s at most (at once: %v)", p99, percentile(atOnce, 99))
	}
}

// The tail is told by when its pods became ready, in the pods' order,
// whatever sorting the latencies meet afterwards.
func TestSlowestNamesWhenTheTailsPodsBecameReady(t *testing.T) {
	s := time.Second
	added := make([]time.Duration, 200)
	at := make([]time.Duration, 200)
	for i := range added {
		added[i], at[i] = time.Duration(i%50)*s, time.Duration(200-i)*s
	}
	// The three pods at p99 (the 198th of 200) and above.
	added[7], added[60], added[120] = 90*s, 85*s, 80*s
	kept := slices.Clone(added)
	got := slowest(added, at)
	if want := []time.Duration{80 * s, 140 * s, 193 * s}; !slices.Equal(got, want) {
		t.Fatalf("slowest = %v, want %v", got, want)
	}
	if !slices.Equal(added, kept) {
		t.Fatal("slowest reordered the latencies")
	}
}

// In the loop of a rolling update, a Service's next pod comes once its
// last turned available, and its old pod leaves then: the order of the
// calls decides when the next changes come at all.
func TestClosedLoopBringsTheNextPodsWhenTheLastAreAvailable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	half := 500 * time.Millisecond
	service := func(name string) loopService {
		return loopService{surge: 1,
			news: []loopPod{{group: name, at: t0, cloud: half}, {group: name, cloud: half}},
			olds: []loopOld{{group: name}, {group: name}}}
	}
	services := []loopService{service("a"), service("b")}
	oneASecond := []budget{{burst: 1, perSec: 1}}
	s := time.Second
	// By their own wait: a's first at 0 (available at 0.5 s, which brings
	// a's second pod and a's first old one's deregistration), b's first at
	// 1 s, a's second at 2 s, a's two deregistrations in one call at 3 s
	// (the second came at 2.5 s), b's second at 4 s (available at 4.5 s,
	// the last), b's two deregistrations at 5 s.
	waits, calls, end := closedLoop(services, oneASecond, 0, order{}, t0)
	if want := []time.Duration{0, 1500 * time.Millisecond, s, 2500 * time.Millisecond}; !slices.Equal(waits, want) || calls != 6 || !end.Equal(t0.Add(4*s+half)) {
		t.Fatalf("by own wait: waits %v, %d calls, end %v; want %v, 6, 4.5s", waits, calls, end.Sub(t0), want)
	}
	// Deregistrations ahead, each owing the next call: a's at 1 s, b's
	// first pod at 2 s, b's deregistration at 3 s, a's second pod at 4 s,
	// a's second deregistration at 5 s, b's second pod at 6 s (available
	// at 6.5 s).
	waits, calls, end = closedLoop(services, oneASecond, 0, order{headStart: time.Minute, headFor: 10 * s}, t0)
	if want := []time.Duration{0, 3500 * time.Millisecond, 2 * s, 3500 * time.Millisecond}; !slices.Equal(waits, want) || calls != 8 || !end.Equal(t0.Add(6*s+half)) {
		t.Fatalf("deregistrations ahead: waits %v, %d calls, end %v; want %v, 8, 6.5s", waits, calls, end.Sub(t0), want)
	}
}
