package targets

import (
	"container/heap"
	"sync"
	"time"

	"github.com/podlb/podlb/providers"
)

// Dispatcher hands out a cloud's write budget: at most slots bindings
// write at once, and when bindings wait for a slot, the binding whose
// oldest change has waited longest goes next, a binding with targets to
// deregister counting a head start; but a slot that went ahead of an
// older change by a head start owes the next to the change that has
// waited longest by its own wait, so that while deregistrations keep
// coming (pods deleted in a stream) registrations still get every other
// slot rather than waiting out the head start. A binding holds its
// slot while its calls wait on the provider's client-side buckets, so
// under saturation bindings queue here, in the order of their pods'
// waits, not in the order their events arrived.
//
// Waiting costs no worker: a binding that finds no slot is queued and its
// reconcile ends; when a slot frees up it is reserved for the most urgent
// binding, which Wake brings back. Since a binding plans when it holds
// the slot, whatever arrived meanwhile rides in the same call.
type Dispatcher struct {
	// Wake brings a binding back for the slot reserved for it.
	Wake func(providers.BindingKey)
	// Hold is how long a reserved slot waits for its binding before it
	// goes to the next (the binding may have gone).
	Hold time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// HeadStart is how much longer than it has a deregistration counts
	// as having waited (see DefaultHeadStart).
	HeadStart time.Duration

	mu    sync.Mutex
	slots int
	busy  int
	// waiting ranks bindings in line by their counted wait (head start
	// included), own by their own wait (bindings with such a change).
	waiting, own *line
	// owed says the next slot goes to own's head: the last went ahead of
	// it by a head start.
	owed     bool
	byKey    map[providers.BindingKey]*waiter
	reserved map[providers.BindingKey]reservation
	seq      uint64
}

// reservation is a slot kept for a woken binding until a time, and
// whether it is the slot owed to the binding's own wait.
type reservation struct {
	until time.Time
	owed  bool
}

// NewDispatcher returns a dispatcher with slots concurrent writers.
func NewDispatcher(slots int, wake func(providers.BindingKey)) *Dispatcher {
	return &Dispatcher{slots: max(slots, 1), Wake: wake, Hold: 10 * time.Second, HeadStart: DefaultHeadStart,
		waiting: newLine(func(w *waiter) time.Time { return w.at }, func(w *waiter) *int { return &w.index }),
		own:     newLine(func(w *waiter) time.Time { return w.since }, func(w *waiter) *int { return &w.ownIndex }),
		byKey:   map[providers.BindingKey]*waiter{}, reserved: map[providers.BindingKey]reservation{}}
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Rank is how urgent a binding's writes are: how long its oldest
// registration and its oldest deregistration have waited (zero: none).
type Rank struct {
	// Since is when the binding's oldest registration began to wait.
	Since time.Time
	// Leaving is when its oldest deregistration was first planned.
	Leaving time.Time
}

// DefaultHeadStart is how much longer than it has a deregistration
// counts as having waited. A terminating pod still registered is sent
// new connections, which fail once it stops, while a registration only
// slows a rollout the gate holds; but strictly first, deregistrations
// starve registrations while the write budget stays spent, and a head
// start shorter than the budget's cycle (about a minute at 50 Services)
// protects neither. The head start is the deregistration's alone: a
// binding's registrations rank by their own wait, and those of pods the
// gate holds do not ride in a pass its deregistrations won while an
// older change waits (see BindingReconciler.leaveBehind); it ends once
// the load balancer sends the pod nothing (BindingReconciler.rank); and
// a slot it wins ahead of an older change owes the next one to the
// change that has waited longest by its own wait. Pods deleted in a
// stream each bring a fresh deregistration, and by the head start alone
// their replacements would wait out all of it; with every other
// contested slot, each direction gets at least half the budget, which
// is what a deletion and its replacement each need. The guide gives the
// measured trade-off.
const DefaultHeadStart = time.Minute

// counted is when r counts as having begun to wait.
func (d *Dispatcher) counted(r Rank) time.Time {
	if r.Leaving.IsZero() {
		return r.Since
	}
	return earliest(r.Since, r.Leaving.Add(-d.HeadStart))
}

// TryAcquire takes a slot for key: the one reserved for it, or a free one
// when no more urgent binding waits. Otherwise key waits in line, ranked
// by the rank it last asked with (ties in arrival order), and Wake(key)
// is called when a slot is reserved for it. The returned release must be
// called once when ok. owed says the slot is the one a head start owed
// to the change that has waited longest by its own wait, key's: the pass
// is to serve that change, not only deregistrations ranked ahead of it.
func (d *Dispatcher) TryAcquire(key providers.BindingKey, rank Rank) (release func(), owed, ok bool) {
	d.mu.Lock()
	woken := d.expireLocked()
	defer func() {
		d.mu.Unlock()
		d.wake(woken)
	}()
	if r, ok := d.reserved[key]; ok {
		delete(d.reserved, key)
		d.busy++
		d.dropWaiterLocked(key)
		return d.release, r.owed, true
	}
	w := d.byKey[key]
	if d.busy+len(d.reserved) < d.slots && (d.waiting.Len() == 0 || d.nextLocked() == w) {
		d.busy++
		if w != nil {
			owed = d.grantedLocked(w)
		}
		return d.release, owed, true
	}
	// The latest rank counts: the binding's changes may have gone, or a
	// deregistration's head start ended, since it last asked.
	at := d.counted(rank)
	if w == nil {
		w = &waiter{key: key, at: at, seq: d.seq, ownIndex: -1}
		d.seq++
		heap.Push(d.waiting, w)
		d.byKey[key] = w
	} else if !at.Equal(w.at) {
		w.at = at
		heap.Fix(d.waiting, w.index)
	}
	w.first = earliest(rank.Since, rank.Leaving)
	if !rank.Since.Equal(w.since) {
		if w.ownIndex >= 0 {
			heap.Remove(d.own, w.ownIndex)
		}
		if w.since = rank.Since; !w.since.IsZero() {
			heap.Push(d.own, w)
		}
	}
	return nil, false, false
}

// nextLocked is the binding in line whose turn is next: the one owed a
// slot, or the most urgent.
func (d *Dispatcher) nextLocked() *waiter {
	if d.owed && d.own.Len() > 0 {
		return d.own.ws[0]
	}
	return d.waiting.ws[0]
}

// grantedLocked takes w, whose turn it was, out of line, and owes the
// next slot to the change that has waited longest by its own wait when
// w went ahead of it by a head start (w's changes all came later). It
// reports whether w's turn was such an owed slot.
func (d *Dispatcher) grantedLocked(w *waiter) (owed bool) {
	owed = d.owed && d.own.Len() > 0 && d.own.ws[0] == w
	d.dropWaiterLocked(w.key)
	if owed {
		d.owed = false
		return true
	}
	d.owed = d.own.Len() > 0 && d.own.ws[0].since.Before(w.first)
	return false
}

// Outranked reports whether a binding waiting in line is more urgent
// than rank.
func (d *Dispatcher) Outranked(rank Rank) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting.Len() > 0 && d.waiting.ws[0].at.Before(d.counted(rank))
}

func (d *Dispatcher) dropWaiterLocked(key providers.BindingKey) {
	if w := d.byKey[key]; w != nil {
		heap.Remove(d.waiting, w.index)
		if w.ownIndex >= 0 {
			heap.Remove(d.own, w.ownIndex)
		}
		delete(d.byKey, key)
	}
}

func (d *Dispatcher) release() {
	d.mu.Lock()
	d.busy--
	woken := d.grantLocked()
	d.mu.Unlock()
	d.wake(woken)
}

// grantLocked reserves free slots for the most urgent waiters.
func (d *Dispatcher) grantLocked() []providers.BindingKey {
	var woken []providers.BindingKey
	for d.busy+len(d.reserved) < d.slots && d.waiting.Len() > 0 {
		w := d.nextLocked()
		owed := d.grantedLocked(w)
		d.reserved[w.key] = reservation{until: d.now().Add(d.Hold), owed: owed}
		woken = append(woken, w.key)
	}
	return woken
}

// expireLocked frees reservations nobody came for and passes them on.
func (d *Dispatcher) expireLocked() []providers.BindingKey {
	now := d.now()
	expired := false
	for k, r := range d.reserved {
		if now.After(r.until) {
			delete(d.reserved, k)
			expired = true
		}
	}
	if !expired {
		return nil
	}
	return d.grantLocked()
}

func (d *Dispatcher) wake(keys []providers.BindingKey) {
	if d.Wake == nil {
		return
	}
	for _, k := range keys {
		d.Wake(k)
	}
}

// Waiting reports how many bindings wait for a slot.
func (d *Dispatcher) Waiting() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting.Len()
}

type waiter struct {
	key providers.BindingKey
	// at is when the binding counts as having begun to wait, since when
	// its oldest change ranked by its own wait began to (zero: none), and
	// first when its oldest change of all did, head start aside.
	at, since, first time.Time
	seq              uint64
	index, ownIndex  int
}

// line is a heap of waiters by one of their times (ties in arrival
// order), keeping each waiter's index in it.
type line struct {
	ws    []*waiter
	time  func(*waiter) time.Time
	index func(*waiter) *int
}

func newLine(time func(*waiter) time.Time, index func(*waiter) *int) *line {
	return &line{time: time, index: index}
}

func (l *line) Len() int { return len(l.ws) }
func (l *line) Less(i, j int) bool {
	if a, b := l.time(l.ws[i]), l.time(l.ws[j]); !a.Equal(b) {
		return a.Before(b)
	}
	return l.ws[i].seq < l.ws[j].seq
}
func (l *line) Swap(i, j int) {
	l.ws[i], l.ws[j] = l.ws[j], l.ws[i]
	*l.index(l.ws[i]), *l.index(l.ws[j]) = i, j
}
func (l *line) Push(x any) {
	w := x.(*waiter)
	*l.index(w) = len(l.ws)
	l.ws = append(l.ws, w)
}
func (l *line) Pop() any {
	w := l.ws[len(l.ws)-1]
	l.ws[len(l.ws)-1] = nil
	*l.index(w) = -1
	l.ws = l.ws[:len(l.ws)-1]
	return w
}
