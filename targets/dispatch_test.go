package targets

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

func bkey(n int) providers.BindingKey {
	return providers.BindingKey{Namespace: "ns", Service: fmt.Sprintf("svc-%d", n), Provider: "aws", Port: 80}
}

// The write budget goes to the binding whose pods waited longest, not to
// whoever asked first: a burst of new work never starves older work.
// Waiting bindings are woken one per freed slot, in that order.
func TestDispatcherWakesOldestWaitFirst(t *testing.T) {
	var woken []providers.BindingKey
	d := NewDispatcher(1, func(k providers.BindingKey) { woken = append(woken, k) })
	release, _, ok := d.TryAcquire(bkey(0), Rank{Since: time.Now()})
	if !ok {
		t.Fatal("a free slot was refused")
	}
	base := time.Unix(1000, 0)
	// Arrival order 3, 1, 2, 4; 4 ties with 1 and arrives later.
	for _, n := range []int{3, 1, 2, 4} {
		since := base.Add(time.Duration(n) * time.Second)
		if n == 4 {
			since = base.Add(time.Second)
		}
		if _, _, ok := d.TryAcquire(bkey(n), Rank{Since: since}); ok {
			t.Fatalf("binding %d got a taken slot", n)
		}
	}
	// Asking again while waiting ranks by the latest ask: svc-3's change
	// now waits since much later (its older one went), so it goes last.
	if _, _, ok := d.TryAcquire(bkey(3), Rank{Since: base.Add(time.Hour)}); ok {
		t.Fatal("a waiting binding took a taken slot")
	}
	var order []int
	for i := range 5 {
		release()
		if len(woken) != 1 {
			t.Fatalf("woken %v after one release, want one binding", woken)
		}
		k := woken[0]
		woken = nil
		if i == 0 {
			// Another binding cannot take the slot reserved for the
			// woken one; it joins the line, last.
			if _, _, ok := d.TryAcquire(bkey(99), Rank{Since: base.Add(10 * time.Second)}); ok {
				t.Fatal("a reserved slot went to another binding")
			}
		}
		if release, _, ok = d.TryAcquire(k, Rank{Since: time.Now()}); !ok {
			t.Fatalf("the woken binding %v found no slot", k)
		}
		var n int
		fmt.Sscanf(k.Service, "svc-%d", &n)
		order = append(order, n)
	}
	if want := []int{1, 4, 2, 99, 3}; !slices.Equal(order, want) {
		t.Fatalf("grant order %v, want %v (oldest wait first, ties in arrival order, by the latest ask)", order, want)
	}
	release()
	if len(woken) != 0 || d.busy != 0 {
		t.Fatalf("after the last release: woken %v, busy %d", woken, d.busy)
	}
}

func TestDispatcherRunsSlotsConcurrently(t *testing.T) {
	d := NewDispatcher(2, nil)
	r1, _, ok1 := d.TryAcquire(bkey(1), Rank{Since: time.Now()})
	r2, _, ok2 := d.TryAcquire(bkey(2), Rank{Since: time.Now()})
	if !ok1 || !ok2 {
		t.Fatal("two slots, two writers: refused")
	}
	if _, _, ok := d.TryAcquire(bkey(3), Rank{Since: time.Now()}); ok {
		t.Fatal("a third writer got a slot while both were taken")
	}
	r1()
	r3, _, ok := d.TryAcquire(bkey(3), Rank{Since: time.Now()})
	if !ok {
		t.Fatal("the slot freed for the waiting writer was not given to it")
	}
	r2()
	r3()
	if d.Waiting() != 0 || d.busy != 0 || len(d.reserved) != 0 {
		t.Fatalf("slots leaked: busy %d reserved %d waiting %d", d.busy, len(d.reserved), d.Waiting())
	}
}

// A slot reserved for a binding that never comes back (deleted meanwhile)
// goes to the next one after the hold time instead of being lost.
func TestDispatcherPassesOnAnUnclaimedReservation(t *testing.T) {
	now := time.Unix(5000, 0)
	var woken []providers.BindingKey
	d := NewDispatcher(1, func(k providers.BindingKey) { woken = append(woken, k) })
	d.Now = func() time.Time { return now }
	release, _, _ := d.TryAcquire(bkey(0), Rank{Since: now})
	d.TryAcquire(bkey(1), Rank{Since: now.Add(-2 * time.Second)})
	d.TryAcquire(bkey(2), Rank{Since: now.Add(-time.Second)})
	release()
	if len(woken) != 1 || woken[0] != bkey(1) {
		t.Fatalf("woken %v, want svc-1", woken)
	}
	now = now.Add(d.Hold + time.Second)
	// Any call notices the stale reservation and passes the slot on.
	if _, _, ok := d.TryAcquire(bkey(3), Rank{Since: now}); ok {
		t.Fatal("svc-3 jumped the line")
	}
	if len(woken) != 2 || woken[1] != bkey(2) {
		t.Fatalf("woken %v, want svc-2 next", woken)
	}
	if _, _, ok := d.TryAcquire(bkey(2), Rank{Since: now}); !ok {
		t.Fatal("svc-2 found no slot")
	}
}

// rankingPass returns a reconciler whose clock reads *now, and a pass and
// book of one binding whose group calls a target unhealthy after 10 s.
func rankingPass(now *time.Time) (*BindingReconciler, *pass, *registrations) {
	r := &BindingReconciler{Now: func() time.Time { return *now }}
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80}
	ps := &pass{key: key, pods: map[types.UID]*corev1.Pod{}, group: &providers.Group{FailDelay: 10 * time.Second}}
	return r, ps, r.book(key, "g")
}

// A deregistration ranks for the write budget by how long it has waited
// since it was first planned, as a registration ranks by its pod's
// ContainersReady, so it does not wait behind every registration while
// the budget stays saturated. A target no longer leaving is forgotten.
func TestDeregistrationsRankByTheirOwnWait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0
	r, ps, book := rankingPass(&now)
	old := providers.Target{IP: netip.MustParseAddr("10.0.0.9"), Port: 8080}
	leave := providers.Plan{Deregister: []providers.Target{old}}

	r.noteLeaving(book, leave, nil)
	now = t0.Add(30 * time.Second)
	r.noteLeaving(book, leave, nil)
	if got := r.rank(ps, book, leave); !got.Leaving.Equal(t0) || !got.Since.IsZero() {
		t.Fatalf("a deregistration planned 30 s ago ranks %+v, want leaving since %v and no registration", got, t0)
	}
	r.noteLeaving(book, providers.Plan{}, nil)
	r.noteLeaving(book, leave, nil)
	if got := r.rank(ps, book, leave); !got.Leaving.Equal(now) {
		t.Fatalf("a target planned to leave again waits since %v, want now (%v)", got.Leaving.Sub(t0), now.Sub(t0))
	}
}

// A terminating pod's deregistration keeps its head start until the pod
// has been killed for as long as the load balancer needs to call it
// unhealthy, when it is sent no more connections; then it ranks by its
// own wait, as a registration does.
func TestDeregistrationHeadStartEndsOnceTheKilledPodIsJudged(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0
	r, ps, book := rankingPass(&now)
	dying := providers.Target{IP: netip.MustParseAddr("10.0.0.9"), Port: 8080}
	gone := providers.Target{IP: netip.MustParseAddr("10.0.0.8"), Port: 8080}
	leave := providers.Plan{Deregister: []providers.Target{dying, gone}}
	// dying's pod is killed 5 s from now; gone's pod no one saw stop.
	r.noteLeaving(book, leave, map[providers.TargetKey]time.Time{dying.Key(): t0.Add(5 * time.Second)})
	now = t0.Add(15 * time.Second)
	if got := r.rank(ps, book, providers.Plan{Deregister: []providers.Target{dying}}); !got.Leaving.Equal(t0) || !got.Since.IsZero() {
		t.Fatalf("killed exactly the fail delay ago: ranks %+v, want the head start (leaving since t0)", got)
	}
	now = t0.Add(16 * time.Second)
	if got := r.rank(ps, book, providers.Plan{Deregister: []providers.Target{dying}}); !got.Since.Equal(t0) || !got.Leaving.IsZero() {
		t.Fatalf("killed longer than the fail delay ago: ranks %+v, want since t0 with no head start", got)
	}
	if got := r.rank(ps, book, leave); !got.Since.Equal(t0) || !got.Leaving.Equal(t0) {
		t.Fatalf("with a target whose pod was not seen stopping: ranks %+v, want both since t0", got)
	}
	d := NewDispatcher(1, nil)
	d.Now = func() time.Time { return now }
	if got := d.counted(r.rank(ps, book, providers.Plan{Deregister: []providers.Target{dying}})); !got.Equal(t0) {
		t.Fatalf("a judged pod's deregistration counts from %v, want its own wait (%v)", got.Sub(t0), time.Duration(0))
	}
}

// Bindings with targets to deregister get the write budget before those
// that only register, unless a registration has waited more than the
// head start longer: a terminating pod still registered is sent new
// connections, but registrations must not starve.
func TestDispatcherServesDeregistrationsFirstWithinAHeadStart(t *testing.T) {
	var woken []providers.BindingKey
	base := time.Unix(1000, 0)
	d := NewDispatcher(1, func(k providers.BindingKey) { woken = append(woken, k) })
	release, _, _ := d.TryAcquire(bkey(0), Rank{Since: base})
	d.TryAcquire(bkey(1), Rank{Since: base.Add(-DefaultHeadStart / 2)})
	d.TryAcquire(bkey(2), Rank{Leaving: base})
	d.TryAcquire(bkey(3), Rank{Since: base.Add(-DefaultHeadStart - time.Second)})
	next := func(want providers.BindingKey, why string) {
		t.Helper()
		release()
		if woken[len(woken)-1] != want {
			t.Fatalf("woken %v, want %v next: %s", woken, want, why)
		}
		release, _, _ = d.TryAcquire(want, Rank{})
	}
	next(bkey(3), "a registration older than the head start goes first")
	next(bkey(2), "then the deregistration, ahead of a registration half a head start older")
	next(bkey(1), "then the rest")
}

// The head start is the deregistration's alone: a binding whose old
// registration rides with a fresh deregistration ranks by the earlier of
// the registration's wait and the deregistration's counted wait, not by
// the registration's wait with the head start added on top.
func TestDispatcherHeadStartCountsForDeregistrationsOnly(t *testing.T) {
	base := time.Unix(1000, 0)
	d, woken, release := lineUp(base,
		// Counts as waiting since base-20s (its registration).
		Rank{Since: base.Add(-20 * time.Second), Leaving: base.Add(50 * time.Second)},
		// Only registers, since base-30s.
		Rank{Since: base.Add(-30 * time.Second)},
		// Counts as waiting since base-40s (its deregistration's head start).
		Rank{Since: base.Add(-5 * time.Second), Leaving: base.Add(20 * time.Second)})
	order, _, release := servedInTurn(d, woken, release, 3)
	if want := []providers.BindingKey{bkey(3), bkey(2), bkey(1)}; !slices.Equal(order, want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	release()
}

func TestDispatcherOutranked(t *testing.T) {
	base := time.Unix(1000, 0)
	d := NewDispatcher(1, nil)
	release, _, _ := d.TryAcquire(bkey(0), Rank{Since: base})
	if d.Outranked(Rank{Since: base}) {
		t.Fatal("outranked with nobody in line")
	}
	d.TryAcquire(bkey(1), Rank{Since: base.Add(-30 * time.Second)})
	if !d.Outranked(Rank{Since: base.Add(-10 * time.Second)}) {
		t.Error("a change of 10 s is not outranked by one in line of 30 s")
	}
	if d.Outranked(Rank{Since: base.Add(-40 * time.Second)}) {
		t.Error("a change of 40 s is outranked by one in line of 30 s")
	}
	if d.Outranked(Rank{Since: base.Add(-30 * time.Second)}) {
		t.Error("a tie outranks")
	}
	release()
}

// A pass that holds its slot for its deregistrations' sake leaves the
// registrations of pods podlb's gate holds for a pass of their own, so
// they queue by their own wait behind older ones of other bindings;
// pods without the gate, or whose gate is already True, still ride.
func TestALeadingDeregistrationLeavesGateHeldRegistrationsBehind(t *testing.T) {
	now := time.Unix(1000, 0)
	r, ps, book := rankingPass(&now)
	var plan providers.Plan
	for i, gate := range []string{"held", "none", "open"} {
		tg := providers.Target{IP: netip.MustParseAddr(fmt.Sprintf("10.0.0.%d", i+1)), Port: 8080}
		uid := types.UID(gate)
		pod := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-5 * time.Second))}}}}
		if gate != "none" {
			pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: GateConditionType}}
		}
		if gate == "open" {
			pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: GateConditionType, Status: corev1.ConditionTrue})
		}
		ps.pods[uid] = pod
		ps.desired = append(ps.desired, Desired{Target: tg, UID: uid})
		plan.Register = append(plan.Register, tg)
	}
	leaving := providers.Target{IP: netip.MustParseAddr("10.0.0.9"), Port: 8080}
	plan.Deregister = []providers.Target{leaving}
	r.noteLeaving(book, plan, nil)

	d := NewDispatcher(1, nil)
	release, _, _ := d.TryAcquire(bkey(0), Rank{Since: now})
	if r.deregistrationsLead(d, false, ps, book, plan) {
		t.Fatal("nobody in line, yet the deregistrations lead")
	}
	d.TryAcquire(bkey(1), Rank{Since: now.Add(-20 * time.Second)})
	if r.deregistrationsLead(d, false, ps, book, providers.Plan{Register: plan.Register}) {
		t.Fatal("a plan with no deregistration is led by them")
	}
	if !r.deregistrationsLead(d, false, ps, book, plan) {
		t.Fatal("registrations of 5 s with a binding of 20 s in line: the deregistrations do not lead")
	}
	if r.deregistrationsLead(d, true, ps, book, plan) {
		t.Fatal("the slot owed to the registrations' own wait went to the deregistrations alone")
	}
	got, gather := r.leaveBehind(true, ps, plan, 0)
	if want := plan.Register[1:]; !slices.Equal(got.Register, want) || !slices.Equal(got.Deregister, plan.Deregister) || gather != leftBehindLook {
		t.Fatalf("left %v, gather %s; want registrations %v with the deregistration, back in %s", got, gather, want, leftBehindLook)
	}
	if got, gather := r.leaveBehind(false, ps, plan, 0); !slices.Equal(got.Register, plan.Register) || gather != 0 {
		t.Fatalf("not leading: left %v, gather %s; want the plan whole", got, gather)
	}
	// Planned again after the deregistration went (another pass sent it).
	if got, gather := r.leaveBehind(true, ps, providers.Plan{Register: plan.Register}, 0); !slices.Equal(got.Register, plan.Register) || gather != 0 {
		t.Fatalf("no deregistration left: left %v, gather %s; want the registrations whole", got, gather)
	}
	release()
}

// While fresh deregistrations keep coming, a slot that went to one ahead
// of an older registration by its head start owes the next slot to that
// registration: pods deleted in a stream do not hold their replacements
// back for the whole head start.
func TestDispatcherOwesAHeadStartsSlotToTheOldestOwnWait(t *testing.T) {
	base := time.Unix(1000, 0)
	for _, tc := range []struct {
		name  string
		ranks []Rank
		want  []int
		owed  []bool
	}{{
		// 2 by its head start, then the registration of 10 s it went
		// ahead of; 3 by its head start, then the registration of 5 s.
		name: "fresh deregistrations",
		ranks: []Rank{{Since: base.Add(-10 * time.Second)}, {Leaving: base},
			{Leaving: base.Add(time.Second)}, {Since: base.Add(-5 * time.Second)}},
		want: []int{2, 1, 3, 4},
		owed: []bool{false, true, false, true},
	}, {
		// Older than the registration by its own wait, 2 went ahead of
		// nothing: the next slot still goes by the head start.
		name:  "an older deregistration",
		ranks: []Rank{{Since: base.Add(-10 * time.Second)}, {Leaving: base.Add(-20 * time.Second)}, {Leaving: base.Add(time.Second)}},
		want:  []int{2, 3, 1},
		owed:  []bool{false, false, true},
	}} {
		d, woken, release := lineUp(base, tc.ranks...)
		order, owed, release := servedInTurn(d, woken, release, len(tc.ranks))
		release()
		var want []providers.BindingKey
		for _, i := range tc.want {
			want = append(want, bkey(i))
		}
		if !slices.Equal(order, want) || !slices.Equal(owed, tc.owed) {
			t.Errorf("%s: served %v, owed %v; want %v, %v", tc.name, order, owed, want, tc.owed)
		}
		if d.Waiting() != 0 {
			t.Errorf("%s: %d still in line", tc.name, d.Waiting())
		}
	}
}

// A binding whose own wait goes (its registrations went with another
// pass) leaves the line of own waits, and one that gains one joins it.
func TestDispatcherFollowsAWaitersOwnWait(t *testing.T) {
	base := time.Unix(1000, 0)
	d, woken, release := lineUp(base,
		Rank{Since: base.Add(-10 * time.Second)},
		Rank{Leaving: base},
		Rank{Leaving: base.Add(time.Second)})
	// 1 now only deregisters, between 2 and 3 by their head starts; 3
	// gains a registration, younger than 1's was.
	d.TryAcquire(bkey(1), Rank{Leaving: base.Add(500 * time.Millisecond)})
	d.TryAcquire(bkey(3), Rank{Since: base.Add(-5 * time.Second), Leaving: base.Add(time.Second)})
	order, _, release := servedInTurn(d, woken, release, 3)
	if want := []providers.BindingKey{bkey(2), bkey(3), bkey(1)}; !slices.Equal(order, want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	release()
}

// lineUp returns a dispatcher of one slot, held by bkey(0) since at,
// with bkey(1), bkey(2)... in line by ranks, what it wakes, and the
// held slot's release.
func lineUp(at time.Time, ranks ...Rank) (*Dispatcher, *[]providers.BindingKey, func()) {
	woken := new([]providers.BindingKey)
	d := NewDispatcher(1, func(k providers.BindingKey) { *woken = append(*woken, k) })
	release, _, _ := d.TryAcquire(bkey(0), Rank{Since: at})
	for i, r := range ranks {
		d.TryAcquire(bkey(i+1), r)
	}
	return d, woken, release
}

// servedInTurn releases the slot n times, each time taking the slot
// reserved for the binding woken for it, and returns those bindings in
// order, whether each slot was owed to its own wait, and the release of
// the last.
func servedInTurn(d *Dispatcher, woken *[]providers.BindingKey, release func(), n int) (order []providers.BindingKey, owed []bool, _ func()) {
	for range n {
		release()
		k := (*woken)[len(*woken)-1]
		order = append(order, k)
		var o bool
		release, o, _ = d.TryAcquire(k, Rank{})
		owed = append(owed, o)
	}
	return order, owed, release
}
