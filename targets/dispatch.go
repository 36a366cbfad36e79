package targets

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Dispatcher hands out a cloud's write budget: at most Slots target-write
// passes run at once, and when bindings wait for one, the binding whose
// oldest waiting pod has waited longest goes first. A binding holds its
// slot while its calls wait on the provider's client-side buckets, so
// under saturation bindings queue here, in the order of their pods'
// waits, instead of in the order their events arrived; and since a
// binding plans again once it holds a slot, what arrived meanwhile rides
// in the same call.
type Dispatcher struct {
	mu      sync.Mutex
	slots   int
	busy    int
	waiting waiters
	seq     uint64
}

// NewDispatcher returns a dispatcher with slots concurrent writers.
func NewDispatcher(slots int) *Dispatcher {
	return &Dispatcher{slots: max(slots, 1)}
}

// Acquire waits for a slot. since is how long the work has waited (the
// oldest pod's ContainersReady time); earlier goes first, equal times in
// arrival order. The returned release must be called once.
func (d *Dispatcher) Acquire(ctx context.Context, since time.Time) (release func(), err error) {
	d.mu.Lock()
	if d.busy < d.slots && len(d.waiting) == 0 {
		d.busy++
		d.mu.Unlock()
		return d.release, nil
	}
	w := &waiter{since: since, seq: d.seq, ready: make(chan struct{})}
	d.seq++
	heap.Push(&d.waiting, w)
	d.mu.Unlock()
	select {
	case <-w.ready:
		return d.release, nil
	case <-ctx.Done():
		d.mu.Lock()
		defer d.mu.Unlock()
		if w.index < 0 {
			// Granted while giving up: pass the slot on.
			d.releaseLocked()
		} else {
			heap.Remove(&d.waiting, w.index)
		}
		return nil, ctx.Err()
	}
}

func (d *Dispatcher) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.releaseLocked()
}

func (d *Dispatcher) releaseLocked() {
	if len(d.waiting) > 0 {
		// The slot goes straight to the most urgent waiter.
		w := heap.Pop(&d.waiting).(*waiter)
		close(w.ready)
		return
	}
	d.busy--
}

// Waiting reports how many bindings wait for a slot.
func (d *Dispatcher) Waiting() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.waiting)
}

type waiter struct {
	since time.Time
	seq   uint64
	index int
	ready chan struct{}
}

type waiters []*waiter

func (h waiters) Len() int { return len(h) }
func (h waiters) Less(i, j int) bool {
	if !h[i].since.Equal(h[j].since) {
		return h[i].since.Before(h[j].since)
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
