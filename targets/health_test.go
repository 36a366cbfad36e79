package targets

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

type scheduledRead struct {
	after    time.Duration
	priority int
}

// readScheduler builds a reconciler whose read requests are recorded, and
// a pass over pods a (ready 30 s ago) and b (ready 10 s ago).
func readScheduler(now time.Time) (*BindingReconciler, *pass, *[]scheduledRead) {
	var got []scheduledRead
	r := &BindingReconciler{Now: func() time.Time { return now },
		Timing: Timing{Poll: time.Second, Resync: 10 * time.Minute},
		ScheduleRead: func(_ providers.BindingKey, after time.Duration, priority int) {
			got = append(got, scheduledRead{after, priority})
		}}
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80}
	ps := &pass{key: key, binding: &providers.Binding{Key: key, Mode: providers.ReadyWhenHealthy},
		group: &providers.Group{Ref: "g", Display: "g", Serving: true, JudgeDelay: 10 * time.Second},
		entry: &LedgerEntry{Ref: "g", Targets: map[providers.TargetKey]types.UID{}}, pods: map[types.UID]*corev1.Pod{}}
	for i, name := range []string{"a", "b"} {
		ready := now.Add(-30 * time.Second)
		if name == "b" {
			ready = now.Add(-10 * time.Second)
		}
		p := pod(name, name, withCondition(corev1.ContainersReady, corev1.ConditionTrue), func(p *corev1.Pod) {
			p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(ready)
		})
		ps.pods[p.UID] = p
		ps.desired = append(ps.desired, Desired{Target: providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Port: 8080},
			Pod: types.NamespacedName{Namespace: "shop", Name: name}, UID: p.UID})
	}
	r.book(key, "g")
	return r, ps, &got
}

func healthOf(states map[types.UID]providers.State) *BindingHealth {
	h := &BindingHealth{Serving: true, Pods: map[types.UID]PodTarget{}}
	for uid, s := range states {
		h.Pods[uid] = PodTarget{State: s}
	}
	return h
}

// Reads follow the cloud's timeline: at most one per poll interval while
// a pod is pending, ranked by the longest wait; while every pending pod
// was registered less than the group's judge delay ago (the cloud cannot
// have judged it by its own settings), below every read that is due.
// Until the cloud's pace is learned, a pod registered less than three
// judge delays ago is read at a sixteenth of the judge delay.
func TestScheduleReadRanksByWaitAndTheCloudsTimeline(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, got := readScheduler(now)
	lastRead := now.Add(-500 * time.Millisecond)
	// Pods a and b registered 40 s ago (four judge delays).
	r.books[ps.key].at[ps.desired[0].Key()] = registration{uid: "a", at: now.Add(-40 * time.Second)}
	r.books[ps.key].at[ps.desired[1].Key()] = registration{uid: "b", at: now.Add(-40 * time.Second)}
	h := healthOf(map[types.UID]providers.State{"a": providers.Pending, "b": providers.Pending})
	r.scheduleRead(ps, h, observation{ref: "g", at: lastRead}, 0)
	// Both can be judged already: due, a poll interval after the last read,
	// ranked by the wait since that read (a and b waited longer, but were
	// looked at 500 ms ago).
	due := scheduledRead{after: 500 * time.Millisecond, priority: ReadPriority(500*time.Millisecond, false)}
	if len(*got) != 1 || (*got)[0] != due {
		t.Fatalf("scheduled %+v, want %+v", *got, due)
	}

	// Only a is pending, registered just now, within the judge delay: an
	// early read, at a sixteenth of the judge delay after the last read.
	*got = nil
	r.books[ps.key].at[ps.desired[0].Key()] = registration{uid: "a", at: now}
	h = healthOf(map[types.UID]providers.State{"a": providers.Pending, "b": providers.Healthy})
	r.scheduleRead(ps, h, observation{ref: "g", at: lastRead}, 0)
	early := (*got)[0]
	if early.after != 125*time.Millisecond || early.priority != ReadPriority(-10*time.Second, true) {
		t.Errorf("early read %+v, want after 125ms (625 ms after the last read), ranked early", early)
	}
	// Every due read outranks every early one, however long its pods
	// waited; every early one outranks the background.
	if ReadPriority(0, false) <= ReadPriority(100*time.Hour, true) || ReadPriority(0, true) <= BackgroundPriority {
		t.Errorf("read tiers out of order")
	}
	if ReadPriority(time.Minute, false) <= ReadPriority(10*time.Second, false) || ReadPriority(-time.Second, false) != ReadPriority(0, false) {
		t.Errorf("a longer wait does not rank higher")
	}
}

// TestReadPrioritiesStayWithinTheQueueMetricsLabels: controller-runtime's
// priority queue labels its depth gauge by priority for at most 25
// distinct priorities per queue; past that every level is counted under
// one placeholder and the series labelled before stop moving. A read is
// queued at BackgroundPriority or a ReadPriority, whatever the wait.
func TestReadPrioritiesStayWithinTheQueueMetricsLabels(t *testing.T) {
	levels := map[int]bool{BackgroundPriority: true}
	for waited := time.Duration(0); waited < 1000*time.Hour; waited = waited*5/4 + time.Second {
		levels[ReadPriority(waited, true)] = true
		levels[ReadPriority(waited, false)] = true
	}
	if len(levels) > 25 {
		t.Errorf("reads are queued at %d priorities, more than the queue's metrics label (25)", len(levels))
	}
	if ReadPriority(17*time.Minute, false) <= ReadPriority(8*time.Minute, false) {
		t.Errorf("waits up to 17 minutes are not told apart")
	}
}

func TestScheduleReadInTheBackgroundWhenSettled(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, got := readScheduler(now)
	settled := healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Healthy})

	// Never read since start: at once, but behind every pending read.
	r.scheduleRead(ps, settled, observation{ref: "g"}, 0)
	if s := (*got)[0]; s.after != 0 || s.priority != BackgroundPriority {
		t.Errorf("first read of a settled binding: %+v", s)
	}
	// Read before: at the resync, jittered by at most a tenth of it.
	*got = nil
	r.scheduleRead(ps, settled, observation{ref: "g", at: now}, 0)
	if s := (*got)[0]; s.after < 10*time.Minute || s.after > 11*time.Minute || s.priority != BackgroundPriority {
		t.Errorf("resync read: %+v", s)
	}
	// A failed read is retried after the given delay.
	*got = nil
	r.scheduleRead(ps, settled, observation{ref: "g", at: now}, 7*time.Second)
	if s := (*got)[0]; s.after != 7*time.Second {
		t.Errorf("retry: %+v", s)
	}
	// Unhealthy pods in healthy mode are looked at less often; pods in a
	// group nobody uses rarely.
	*got = nil
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Unhealthy, "b": providers.Healthy}), observation{ref: "g", at: now}, 0)
	if s := (*got)[0]; s.after != 5*time.Second {
		t.Errorf("unhealthy: %+v", s)
	}
	*got = nil
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Unused, "b": providers.Unused}), observation{ref: "g", at: now}, 0)
	if s := (*got)[0]; s.after != 30*time.Second {
		t.Errorf("unused: %+v", s)
	}
}

// At rest a resync read that brings news brings a binding back to the
// write path, so the write path's own look comes after the latest that
// read is due: a pass of its own just before the read would compare the
// same pods with the same observation, a second pass a resync for
// nothing.
func TestAtRestTheResyncReadComesBeforeTheWritePathsOwnLook(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, got := readScheduler(now)
	settled := healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Healthy})
	latest := time.Duration(0)
	for range 200 { // the read's due time is jittered
		*got = nil
		r.scheduleRead(ps, settled, observation{ref: "g", at: now}, 0)
		latest = max(latest, (*got)[0].after)
	}
	if look := r.nextLook(ps, 0); look <= latest {
		t.Errorf("the write path looks again after %v, before its resync read (due up to %v)", look, latest)
	}
	// Without reads of its own the write path is the resync.
	r.ScheduleRead = nil
	if look := r.nextLook(ps, 0); look != r.Timing.Resync {
		t.Errorf("without scheduled reads the write path looks again after %v, want the resync %v", look, r.Timing.Resync)
	}
}

// A read that began before a write cannot have seen it: storing it must
// not bring back a target just deregistered nor lose one just registered,
// or the next plan would undo or repeat the write.
func TestStoreReadKeepsWritesMadeDuringTheRead(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	a, b := ps.desired[0].Target, ps.desired[1].Target
	r.observation(ps) // the group the reader reads
	start := now.Add(-time.Second)
	book := r.books[ps.key]
	book.at[a.Key()] = registration{uid: "a", at: now, target: a}
	book.deregistered[b.Key()] = now
	read := []providers.Observed{{Target: b, State: providers.Healthy, CloudState: "healthy"}}
	r.storeRead(ps.key, "g", start, read, nil, nil)
	obs := r.observation(ps)
	if !obs.fresh || !obs.at.Equal(start) {
		t.Fatalf("stored read: %+v", obs)
	}
	states := map[providers.TargetKey]providers.State{}
	for _, o := range obs.targets {
		states[o.Key()] = o.State
	}
	if states[a.Key()] != providers.Pending || states[b.Key()] != providers.Draining {
		t.Errorf("writes during the read lost: %v", states)
	}
	// A read of a group the binding left meanwhile is dropped.
	r.storeRead(ps.key, "other", now, nil, nil, nil)
	if got := r.observation(ps); got.ref != "g" || len(got.targets) != 2 {
		t.Errorf("a read of another group replaced the observation: %+v", got)
	}
}

// At rest a read equal to the one before (in any order) is no news: the
// binding is not brought back for it. Anything else is: a target's
// state moving, a failed read, a read after a write, a read of a binding
// whose pods wait.
func TestAnUnchangedReadAtRestIsNoNews(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	a, b := ps.desired[0].Target, ps.desired[1].Target
	settled := healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Healthy})
	healthy := []providers.Observed{{Target: a, State: providers.Healthy, CloudState: "healthy"}, {Target: b, State: providers.Healthy, CloudState: "healthy"}}
	reordered := []providers.Observed{healthy[1], healthy[0]}
	r.observation(ps) // the group the reader reads
	read := func(at time.Duration, observed []providers.Observed, err error) bool {
		return r.storeRead(ps.key, "g", now.Add(at), observed, nil, err)
	}
	pass := func(h *BindingHealth) {
		obs := r.observation(ps)
		r.scheduleRead(ps, h, obs, 0)
	}

	if !read(0, healthy, nil) {
		t.Fatal("the first read was no news")
	}
	pass(settled)
	if read(time.Minute, reordered, nil) {
		t.Error("an unchanged read at rest was news")
	}
	if obs := r.observation(ps); obs.fresh || !obs.at.Equal(now.Add(time.Minute)) {
		t.Errorf("after an unchanged read: fresh %v, read at %v (want the read's start)", obs.fresh, obs.at)
	}

	unhealthy := slices.Clone(healthy)
	unhealthy[1].State, unhealthy[1].CloudState = providers.Unhealthy, "unhealthy"
	if !read(2*time.Minute, unhealthy, nil) {
		t.Error("a target turning unhealthy was no news")
	}
	pass(settled)
	if !read(3*time.Minute, healthy, nil) {
		t.Error("a read equal to one before the last was no news")
	}
	pass(settled)

	if !read(4*time.Minute, nil, errors.New("throttled")) {
		t.Error("a failed read was no news")
	}
	if !read(5*time.Minute, healthy, nil) {
		t.Error("the read after a failed one was no news")
	}
	pass(settled)

	r.noteWrite(ps, now.Add(5*time.Minute), providers.Plan{Register: []providers.Target{ps.desired[0].Target}})
	if !read(6*time.Minute, healthy, nil) {
		t.Error("the read after a write was no news")
	}
	pending := healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Pending})
	pass(pending)
	if !read(7*time.Minute, healthy, nil) {
		t.Error("a read of a binding whose pod waits was no news")
	}
	// Nor is a read when the last pass failed.
	pass(settled)
	r.noteFailure(ps.key)
	if !read(8*time.Minute, healthy, nil) {
		t.Error("a read after a failed pass was no news")
	}
}

// Once the cloud has been seen to judge registrations, reads of a newer
// one wait until it can have been judged: four fifths of the fastest
// recent time from registration to a healthy read.
func TestScheduleReadLearnsTheCloudsPace(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, got := readScheduler(now)
	a, b := ps.desired[0], ps.desired[1]
	r.books[ps.key].at[a.Key()] = registration{uid: "a", at: now.Add(-5 * time.Second), target: a.Target}
	r.summarize(ps, []providers.Observed{{Target: a.Target, State: providers.Healthy, CloudState: "healthy"}}, now)
	if fastest, ok := r.fastestHealthy("aws"); !ok || healthyAfter(fastest) != 4*time.Second {
		t.Fatalf("learned %v %v, want 4s (4/5 of 5s)", healthyAfter(fastest), ok)
	}
	// The same registration seen healthy again teaches nothing more.
	r.summarize(ps, []providers.Observed{{Target: a.Target, State: providers.Healthy, CloudState: "healthy"}}, now.Add(time.Minute))
	if fastest, _ := r.fastestHealthy("aws"); healthyAfter(fastest) != 4*time.Second {
		t.Fatalf("a repeated sighting changed the estimate to %v", healthyAfter(fastest))
	}
	r.books[ps.key].at[b.Key()] = registration{uid: "b", at: now, target: b.Target}
	h := healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Pending})
	r.scheduleRead(ps, h, observation{ref: "g", at: now.Add(-time.Second)}, 0)
	if s := (*got)[0]; s.after != 4*time.Second {
		t.Errorf("read of a fresh registration due after %v, want 4s", s.after)
	}

	// Past the earliest verdict, the registration is read every
	// sixteenth of the estimate (250 ms here), not every poll interval;
	// from three estimates on, at the poll interval again. Once a read
	// has looked at the estimate, the next waits for the fastest time
	// seen (5 s).
	for _, c := range []struct {
		registered, lastRead, want time.Duration
	}{
		{registered: 4 * time.Second, lastRead: time.Second, want: 0},
		{registered: 4 * time.Second, lastRead: 0, want: time.Second},
		{registered: 4500 * time.Millisecond, lastRead: 0, want: 500 * time.Millisecond},
		{registered: 5 * time.Second, lastRead: 100 * time.Millisecond, want: 150 * time.Millisecond},
		{registered: 11 * time.Second, lastRead: 0, want: 250 * time.Millisecond},
		{registered: 12 * time.Second, lastRead: 0, want: time.Second},
	} {
		*got = nil
		r.books[ps.key].at[b.Key()] = registration{uid: "b", at: now.Add(-c.registered), target: b.Target}
		r.scheduleRead(ps, h, observation{ref: "g", at: now.Add(-c.lastRead)}, 0)
		if s := (*got)[0]; s.after != c.want {
			t.Errorf("registered %v ago, read %v ago: next read after %v, want %v", c.registered, c.lastRead, s.after, c.want)
		}
	}
	if p := verdictPoll(30*time.Second, time.Second); p != time.Second {
		t.Errorf("a cloud judging in 30 s is read every %v, want the poll interval", p)
	}
	if p := verdictPoll(time.Second, time.Second); p != 100*time.Millisecond {
		t.Errorf("a cloud judging in 1 s is read every %v, want the 100 ms floor", p)
	}
}

// A registration seen healthy by a read begun after it leaves the book
// when the ledger names its pod: the ledger speaks for the pod from then
// on, as after a restart, and the cloud's pace is learned once. Without
// the ledger's word the note stays, so the pod is never judged by an
// earlier pod's health.
func TestASettledRegistrationLeavesTheBookForTheLedger(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	a, b := ps.desired[0], ps.desired[1]
	ps.entry.Targets[a.Key()] = "a"
	for _, d := range []Desired{a, b} {
		r.books[ps.key].at[d.Key()] = registration{uid: d.UID, at: now.Add(-5 * time.Second), target: d.Target}
	}
	healthy := []providers.Observed{{Target: a.Target, State: providers.Healthy, CloudState: "healthy"}, {Target: b.Target, State: providers.Healthy, CloudState: "healthy"}}

	h, _ := r.summarize(ps, healthy, now)
	if h.Pods["a"].State != providers.Healthy || h.Pods["b"].State != providers.Healthy {
		t.Fatalf("registrations seen healthy after them: %+v", h.Pods)
	}
	if reg, ok := r.books[ps.key].at[a.Key()]; ok {
		t.Errorf("a settled registration the ledger names is still in the book: %+v", reg)
	}
	if reg, ok := r.books[ps.key].at[b.Key()]; !ok || !reg.timed {
		t.Errorf("a registration the ledger does not name left the book or was not timed: %+v %v", reg, ok)
	}
	if h := r.learned["aws"]; h == nil || h.n != 2 {
		t.Fatalf("learned %+v, want one sample a registration", h)
	}

	// Later reads: the ledger speaks for a, the book still for b, and
	// neither is learned again.
	h, _ = r.summarize(ps, healthy, now.Add(time.Minute))
	if h.Pods["a"].State != providers.Healthy || h.Pods["b"].State != providers.Healthy {
		t.Errorf("a settled pod no longer healthy once its note left the book: %+v", h.Pods)
	}
	if n := r.learned["aws"].n; n != 2 {
		t.Errorf("%d samples after a second sighting, want 2", n)
	}
}

// After a start every group's targets are known only from the ledger, not
// read yet. Pods whose gates opened long ago wait for that first read in
// the background; a pod whose gate still waits ranks its group above them.
func TestScheduleReadAfterStartPutsOpenGatesBehindWaitingOnes(t *testing.T) {
	now := time.Unix(100_000, 0)
	unreadHealth := func() *BindingHealth {
		h := &BindingHealth{Serving: true, Pods: map[types.UID]PodTarget{}}
		for _, uid := range []types.UID{"a", "b"} {
			h.Pods[uid] = PodTarget{State: providers.Pending, CloudState: unread}
		}
		return h
	}
	r, ps, got := readScheduler(now)
	for _, p := range ps.pods {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: GateConditionType, Status: corev1.ConditionTrue})
	}
	r.scheduleRead(ps, unreadHealth(), observation{ref: "g"}, 0)
	if s := (*got)[0]; s.after != 0 || s.priority != BackgroundPriority {
		t.Errorf("first read of a group whose gates are all open: %+v, want at once in the background", s)
	}
	*got = nil
	r, ps, got = readScheduler(now)
	ps.pods["a"].Status.Conditions = append(ps.pods["a"].Status.Conditions, corev1.PodCondition{Type: GateConditionType, Status: corev1.ConditionTrue})
	r.scheduleRead(ps, unreadHealth(), observation{ref: "g"}, 0)
	if s := (*got)[0]; s.priority <= BackgroundPriority {
		t.Errorf("first read of a group with a waiting gate: %+v, want above the background", s)
	}
}

// Under a saturated read budget, reads go to the pods the cloud has been
// able to judge longest ago: a read made before a pod could be judged
// does not send its group to the back of the line, and time spent in the
// write line before the registration does not rank a pod first.
func TestScheduleReadRanksByTimeSinceTheCloudCouldJudge(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, got := readScheduler(now)
	r.learned = map[string]*healthyTimes{"aws": {}}
	r.learned["aws"].add(5 * time.Second)
	a, b := ps.desired[0], ps.desired[1] // ready 30 s and 10 s ago

	// a: registered 10 s ago, judgeable 5 s ago, read 6 s ago (too soon).
	r.books[ps.key].at[a.Key()] = registration{uid: "a", at: now.Add(-10 * time.Second), target: a.Target, timed: true}
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Pending, "b": providers.Healthy}),
		observation{ref: "g", at: now.Add(-6 * time.Second)}, 0)
	// b: registered 6 s ago after a wait for the write budget, judgeable
	// 1 s ago, its group last read 20 s ago.
	delete(r.books[ps.key].at, a.Key())
	r.books[ps.key].at[b.Key()] = registration{uid: "b", at: now.Add(-6 * time.Second), target: b.Target, timed: true}
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Pending}),
		observation{ref: "g", at: now.Add(-20 * time.Second)}, 0)

	if len(*got) != 2 {
		t.Fatalf("scheduled %+v", *got)
	}
	judgedLong, judgedJustNow := (*got)[0], (*got)[1]
	if want := ReadPriority(5*time.Second, false); judgedLong.priority != want {
		t.Errorf("pod judgeable 5 s ago, read before that: priority %d, want %d (5 s waited)", judgedLong.priority, want)
	}
	if want := ReadPriority(time.Second, false); judgedJustNow.priority != want {
		t.Errorf("pod judgeable 1 s ago: priority %d, want %d (1 s waited)", judgedJustNow.priority, want)
	}
	if judgedLong.priority <= judgedJustNow.priority {
		t.Errorf("the pod judgeable longer ago does not rank first: %+v", *got)
	}
}

// partReader is a provider read in parts; the core only asks it whether
// it is one.
type partReader struct{ stubProvider }

func (partReader) ObserveParts(context.Context, *providers.Group, []providers.Target) ([]providers.Observed, func(providers.Observed) bool, error) {
	panic("unused")
}

// A group read in parts is read where targets wait for a read or were
// registered since their part was last read; the whole group is read
// every fullReadEvery; a read of parts replaces only those parts of the
// observation. A provider that cannot read in parts reads the whole.
func TestAReadInPartsReadsWhereTargetsWaitOrWereRegistered(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	ps.desired[0].Zone, ps.desired[1].Zone = "za", "zb"
	a, b := ps.desired[0].Target, ps.desired[1].Target
	c := providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, 3}), Port: 8080, Zone: "zc"}
	d := providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, 4}), Port: 8080, Zone: "zd"}
	parts := partReader{stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}}
	r.observation(ps) // the group the reader reads
	r.storeRead(ps.key, "g", now, []providers.Observed{
		{Target: a, State: providers.Healthy}, {Target: b, State: providers.Pending}, {Target: c, State: providers.Healthy},
	}, nil, nil)
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Pending}), r.observation(ps), 0)

	later := now.Add(time.Second)
	if _, of := r.readScope(ps.key, parts, later); !slices.Equal(of, []providers.Target{b}) {
		t.Fatalf("read in parts of %v, want b's, where a pod waits", of)
	}
	r.books[ps.key].at[d.Key()] = registration{uid: "d", at: now.Add(500 * time.Millisecond), target: d}
	if _, of := r.readScope(ps.key, parts, later); !slices.Equal(of, []providers.Target{b, d}) {
		t.Fatalf("read in parts of %v, want b's and d's, registered since the whole was read", of)
	}
	inRead := func(o providers.Observed) bool { return o.Zone == "zb" || o.Zone == "zd" }
	e := providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, 5}), Port: 8080, Zone: "ze"}
	r.books[ps.key].at[e.Key()] = registration{uid: "e", at: now.Add(600 * time.Millisecond), target: e}
	r.storeRead(ps.key, "g", later, []providers.Observed{{Target: b, State: providers.Healthy}, {Target: d, State: providers.Pending}}, inRead, nil)
	// d's part was read since its registration: only b, where a pod
	// waits, and e, whose part was not read, remain.
	if _, of := r.readScope(ps.key, parts, later.Add(time.Millisecond)); !slices.Equal(of, []providers.Target{b, e}) {
		t.Fatalf("after d's part was read: read in parts of %v, want b's and e's", of)
	}
	delete(r.books[ps.key].at, e.Key())
	states := map[providers.TargetKey]providers.State{}
	for _, o := range r.observation(ps).targets {
		states[o.Key()] = o.State
	}
	want := map[providers.TargetKey]providers.State{a.Key(): providers.Healthy, b.Key(): providers.Healthy, c.Key(): providers.Healthy, d.Key(): providers.Pending}
	if !maps.Equal(states, want) {
		t.Fatalf("after a read of parts the observation is %v, want %v", states, want)
	}

	if _, of := r.readScope(ps.key, parts, now.Add(r.fullReadEvery())); of != nil {
		t.Errorf("%v after the whole group was read: read in parts of %v, want the whole", r.fullReadEvery(), of)
	}
	whole := stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}
	if _, of := r.readScope(ps.key, whole, later); of != nil {
		t.Errorf("a provider that cannot read in parts: read in parts of %v", of)
	}
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Healthy}), r.observation(ps), 0)
	if _, of := r.readScope(ps.key, parts, later); of != nil {
		t.Errorf("nothing waiting: read in parts of %v, want the whole", of)
	}
}

// A registration of this process is read in parts only once its read is
// due within one read interval: while the cloud cannot have judged it,
// reads of other zones leave its zone out. A target registered before
// (by an earlier process, for an earlier pod) is read with every read.
func TestARegistrationIsReadInPartsWhenItsReadIsDue(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	r.learned = map[string]*healthyTimes{"aws": {}}
	r.learned["aws"].add(5 * time.Second)
	ps.desired[0].Zone, ps.desired[1].Zone = "za", "zb"
	a, b := ps.desired[0].Target, ps.desired[1].Target
	parts := partReader{stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}}
	r.observation(ps)
	r.books[ps.key].at[a.Key()] = registration{uid: "a", at: now.Add(-2 * time.Second), target: a}
	r.storeRead(ps.key, "g", now, []providers.Observed{{Target: a, State: providers.Pending}, {Target: b, State: providers.Pending}}, nil, nil)
	r.scheduleRead(ps, healthOf(map[types.UID]providers.State{"a": providers.Pending, "b": providers.Pending}), r.observation(ps), 0)

	// The cloud was seen to judge in 5 s: a, registered 2 s ago, is read
	// at four fifths of that (2 s from now), its read interval a
	// sixteenth of those four fifths (250 ms).
	if _, of := r.readScope(ps.key, parts, now.Add(100*time.Millisecond)); !slices.Equal(of, []providers.Target{b}) {
		t.Errorf("before a's read is due: read in parts of %v, want b's alone", of)
	}
	if _, of := r.readScope(ps.key, parts, now.Add(1750*time.Millisecond)); !slices.Equal(of, []providers.Target{a, b}) {
		t.Errorf("a's read due within its read interval: read in parts of %v, want a's and b's", of)
	}
}

// A read stored while a pass applied its plan is kept: the plan is
// applied to it rather than the observation the plan was made from put
// back, which would drop the read's news (a pod's verdict waited for the
// next read) and label the older states with the read's time. A read
// whose fold already holds the plan's registration holds it once.
func TestAReadStoredWhileAPlanIsAppliedIsKept(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	a, b := ps.desired[0].Target, ps.desired[1].Target
	r.observation(ps)
	r.storeRead(ps.key, "g", now, []providers.Observed{{Target: a, State: providers.Pending, CloudState: "initial"}}, nil, nil)

	// A pass plans b's registration from that observation; while it is
	// applied, a read that began after a's registration finds a healthy.
	planned, plannedAt := r.currentTargets(ps, time.Time{})
	read := now.Add(time.Second)
	r.storeRead(ps.key, "g", read, []providers.Observed{{Target: a, State: providers.Healthy, CloudState: "healthy"}}, nil, nil)
	plan := providers.Plan{Register: []providers.Target{b}}
	observed, observedAt := r.keepApplied(ps, planned, plannedAt, plan)

	states := func(obs []providers.Observed) map[providers.TargetKey][]providers.State {
		out := map[providers.TargetKey][]providers.State{}
		for _, o := range obs {
			out[o.Key()] = append(out[o.Key()], o.State)
		}
		return out
	}
	want := map[providers.TargetKey][]providers.State{a.Key(): {providers.Healthy}, b.Key(): {providers.Pending}}
	if got := states(observed); !maps.EqualFunc(got, want, slices.Equal) || !observedAt.Equal(read) {
		t.Fatalf("after the pass: %v read at %v, want %v at the read's time %v", got, observedAt, want, read)
	}
	if obs := r.observation(ps); !obs.at.Equal(read) || !maps.EqualFunc(states(obs.targets), want, slices.Equal) {
		t.Fatalf("the binding's observation: %v at %v, want %v at the read's time", states(obs.targets), obs.at, want)
	}

	// A read that saw b registered: applying the plan again adds nothing.
	r.storeRead(ps.key, "g", read.Add(time.Second), []providers.Observed{{Target: a, State: providers.Healthy}, {Target: b, State: providers.Pending, CloudState: "initial"}}, nil, nil)
	if got, _ := r.keepApplied(ps, planned, plannedAt, plan); !maps.EqualFunc(states(got), want, slices.Equal) {
		t.Fatalf("a plan applied to a read that holds it: %v, want %v", states(got), want)
	}
}

// A change waits for the coalesce window after the binding's last write
// in its direction to its part of the group, while the rest of the plan
// goes out: registrations and deregistrations, and each zone of a GCP
// group, go out in calls of their own, so a call just sent is no company
// for them.
func TestTheCoalesceWindowIsKeptPerDirectionAndPart(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, _ := readScheduler(now)
	r.Timing.Coalesce = 200 * time.Millisecond
	ps.prov = partWriter{}
	inA := func(i byte) providers.Target {
		return providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 1, i}), Port: 8080, Zone: "za"}
	}
	inB := providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 2, 1}), Port: 8080, Zone: "zb"}
	check := func(when string, plan, wantNow providers.Plan, wantWait time.Duration) {
		t.Helper()
		got, wait := r.gather(ps, plan)
		if !slices.Equal(got.Register, wantNow.Register) || !slices.Equal(got.Deregister, wantNow.Deregister) || wait != wantWait {
			t.Errorf("%s: plan %+v goes out as %+v and the rest waits %v; want %+v and %v", when, plan, got, wait, wantNow, wantWait)
		}
	}
	registerA := providers.Plan{Register: []providers.Target{inA(2)}}
	deregisterA := providers.Plan{Deregister: []providers.Target{inA(3)}}
	check("before any write", registerA, registerA, 0)

	r.noteWrite(ps, now.Add(-50*time.Millisecond), providers.Plan{Deregister: []providers.Target{inA(9)}})
	check("50 ms after a deregistration in the part", registerA, registerA, 0)
	check("50 ms after a deregistration in the part", deregisterA, providers.Plan{}, 150*time.Millisecond)

	r.noteWrite(ps, now.Add(-20*time.Millisecond), providers.Plan{Register: []providers.Target{inA(1)}})
	mixed := providers.Plan{Register: []providers.Target{inA(2), inB}, Deregister: []providers.Target{inA(3)}}
	check("20 ms after a registration in the part", mixed, providers.Plan{Register: []providers.Target{inB}}, 150*time.Millisecond)

	r.Now = func() time.Time { return now.Add(time.Second) }
	check("a second later", mixed, mixed, 0)
	if v := r.viewLocked(ps.key); v.writes != nil {
		t.Errorf("writes of past windows are kept: %+v", v.writes)
	}

	// A provider that writes a group in one call: a registration waits
	// for the last registration, whatever its zone.
	r, ps, _ = readScheduler(now)
	r.Timing.Coalesce = 200 * time.Millisecond
	r.noteWrite(ps, now.Add(-20*time.Millisecond), providers.Plan{Register: []providers.Target{inA(1)}})
	check("one call a group", providers.Plan{Register: []providers.Target{inB}}, providers.Plan{}, 180*time.Millisecond)
}

type partWriter struct{ stubProvider }

func (partWriter) WritePart(t providers.Target) string { return t.Zone }

// restProbe reads through a real Caller whose bucket holds two tokens and
// does not refill within a test, and records whether each read was made
// at rest.
type restProbe struct {
	stubProvider
	caller   *providers.Caller
	observed []providers.Observed
	atRest   []bool
	calls    int
}

func (p *restProbe) Observe(ctx context.Context, _ *providers.Group) ([]providers.Observed, error) {
	p.atRest = append(p.atRest, providers.IsAtRest(ctx))
	err := p.caller.Call(ctx, "Describe", func(context.Context) error { p.calls++; return nil })
	return p.observed, err
}

// A read nothing waits for (every pod has its verdict) is made only from
// tokens beyond half the bucket: without one it is put off, neither
// stored nor handed on, and comes back in the background a little later;
// a read a pod waits for is not put off.
func TestAReadAtRestIsPutOffWithoutASpareToken(t *testing.T) {
	now := time.Unix(100_000, 0)
	r, ps, got := readScheduler(now)
	a, b := ps.desired[0].Target, ps.desired[1].Target
	healthy := []providers.Observed{{Target: a, State: providers.Healthy, CloudState: "healthy"}, {Target: b, State: providers.Healthy, CloudState: "healthy"}}
	// The bucket refills its reserve and a spare token in 200 s.
	probe := &restProbe{caller: providers.NewCaller("test", map[string]providers.Limit{"Describe": {QPS: 0.01, Burst: 2}}, providers.Limit{QPS: 0.01, Burst: 1}, nil), observed: healthy}
	r.Providers = map[string]providers.Provider{ps.key.Provider: probe}
	done := 0
	// A call that would wait for a token fails at once instead.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h := &HealthReader{Bindings: r, Done: func(providers.BindingKey) { done++ }}
	r.observation(ps)
	r.storeRead(ps.key, "g", now.Add(-time.Minute), healthy, nil, nil)
	pass := func(health *BindingHealth) {
		r.scheduleRead(ps, health, r.observation(ps), 0)
	}
	pass(healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Healthy}))

	// Two tokens of a burst of two: one is spare.
	*got = nil
	if _, err := h.Reconcile(ctx, ps.key); err != nil {
		t.Fatal(err)
	}
	if probe.calls != 1 || !slices.Equal(probe.atRest, []bool{true}) {
		t.Fatalf("the first read at rest: %d calls, at rest %v; want one call at rest", probe.calls, probe.atRest)
	}
	if len(*got) != 1 || (*got)[0].priority != BackgroundPriority || (*got)[0].after < r.Timing.Resync {
		t.Fatalf("an unchanged read at rest scheduled %+v, want the next at the resync", *got)
	}

	// One token left: the reserve. The read is put off without a call.
	*got = nil
	before := r.observation(ps)
	if _, err := h.Reconcile(ctx, ps.key); err != nil {
		t.Fatal(err)
	}
	if probe.calls != 1 {
		t.Fatalf("a read at rest without a spare token made a call")
	}
	if len(*got) != 1 || (*got)[0].priority != BackgroundPriority || (*got)[0].after < 100*time.Second || (*got)[0].after >= 300*time.Second {
		t.Fatalf("a put-off read scheduled %+v, want one in the background in 100-300 s (the reserve's refill, jittered)", *got)
	}
	if after := r.observation(ps); after.failed || after.err != nil || !after.at.Equal(before.at) || done != 0 {
		t.Fatalf("a put-off read was stored or handed on: failed %v, err %v, read at %v (want %v), handed on %d times", after.failed, after.err, after.at, before.at, done)
	}
	// Put off again in a row: it waits twice as long, so that reads at
	// rest that alone keep the bucket at its reserve spread out.
	*got = nil
	if _, err := h.Reconcile(ctx, ps.key); err != nil {
		t.Fatal(err)
	}
	if probe.calls != 1 || len(*got) != 1 || (*got)[0].after < 200*time.Second || (*got)[0].after >= 600*time.Second {
		t.Fatalf("a read put off twice in a row: %d calls, scheduled %+v; want none and one in 200-600 s", probe.calls, *got)
	}

	// A pod waits: the read takes the reserve's token.
	pass(healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Pending}))
	if _, err := h.Reconcile(ctx, ps.key); err != nil {
		t.Fatal(err)
	}
	if probe.calls != 2 || probe.atRest[len(probe.atRest)-1] || done != 1 {
		t.Fatalf("a read a pod waits for: %d calls (want 2), at rest %v, handed on %d times (want 1)", probe.calls, probe.atRest, done)
	}
	// A read made ends the row: the next put-off waits one refill again.
	pass(healthOf(map[types.UID]providers.State{"a": providers.Healthy, "b": providers.Healthy}))
	*got = nil
	if _, err := h.Reconcile(ctx, ps.key); err != nil {
		t.Fatal(err)
	}
	if probe.calls != 2 || len(*got) != 1 || (*got)[0].after < 100*time.Second || (*got)[0].after >= 300*time.Second {
		t.Fatalf("a read at rest put off after a read was made: %d calls, scheduled %+v; want none and one in 100-300 s", probe.calls, *got)
	}
}
