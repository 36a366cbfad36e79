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
// deregister counting a head start. A binding holds its
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

	mu       sync.Mutex
	slots    int
	busy     int
	waiting  waiters
	byKey    map[providers.BindingKey]*waiter
	reserved map[providers.BindingKey]time.Time
	seq      uint64
}

// NewDispatcher returns a dispatcher with slots concurrent writers.
func NewDispatcher(slots int, wake func(providers.BindingKey)) *Dispatcher {
	return &Dispatcher{slots: max(slots, 1), Wake: wake, Hold: 10 * time.Second, HeadStart: DefaultHeadStart,
		byKey: map[providers.BindingKey]*waiter{}, reserved: map[providers.BindingKey]time.Time{}}
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
// older change waits (see BindingReconciler.leaveBehind); and it ends
// once the load balancer sends the pod nothing (BindingReconciler.rank).
// The guide gives the measured trade-off.
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
// called once when ok.
func (d *Dispatcher) TryAcquire(key providers.BindingKey, rank Rank) (release func(), ok bool) {
	d.mu.Lock()
	woken := d.expireLocked()
	defer func() {
		d.mu.Unlock()
		d.wake(woken)
	}()
	if _, ok := d.reserved[key]; ok {
		delete(d.reserved, key)
		d.busy++
		d.dropWaiterLocked(key)
		return d.release, true
	}
	w := d.byKey[key]
	if d.busy+len(d.reserved) < d.slots && (len(d.waiting) == 0 || d.waiting[0] == w) {
		d.busy++
		d.dropWaiterLocked(key)
		return d.release, true
	}
	// The latest rank counts: the binding's changes may have gone, or a
	// deregistration's head start ended, since it last asked.
	switch at := d.counted(rank); {
	case w == nil:
		w = &waiter{key: key, at: at, seq: d.seq}
		d.seq++
		heap.Push(&d.waiting, w)
		d.byKey[key] = w
	case !at.Equal(w.at):
		w.at = at
		heap.Fix(&d.waiting, w.index)
	}
	return nil, false
}

// Outranked reports whether a binding waiting in line is more urgent
// than rank.
func (d *Dispatcher) Outranked(rank Rank) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.waiting) > 0 && d.waiting[0].at.Before(d.counted(rank))
}

func (d *Dispatcher) dropWaiterLocked(key providers.BindingKey) {
	if w := d.byKey[key]; w != nil {
		heap.Remove(&d.waiting, w.index)
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
	for d.busy+len(d.reserved) < d.slots && len(d.waiting) > 0 {
		w := heap.Pop(&d.waiting).(*waiter)
		delete(d.byKey, w.key)
		d.reserved[w.key] = d.now().Add(d.Hold)
		woken = append(woken, w.key)
	}
	return woken
}

// expireLocked frees reservations nobody came for and passes them on.
func (d *Dispatcher) expireLocked() []providers.BindingKey {
	now := d.now()
	expired := false
	for k, until := range d.reserved {
		if now.After(until) {
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
	return len(d.waiting)
}

type waiter struct {
	key providers.BindingKey
	// at is when the binding counts as having begun to wait.
	at    time.Time
	seq   uint64
	index int
}

type waiters []*waiter

func (h waiters) Len() int { return len(h) }
func (h waiters) Less(i, j int) bool {
	if a, b := h[i].at, h[j].at; !a.Equal(b) {
		return a.Before(b)
	}
	return h[i].seq < h[j].seq
}
func (h waiters) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiters) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}
