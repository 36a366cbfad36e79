package providers

import (
	"context"
	"sync"
)

// Batcher turns many concurrent look-ups into few calls: a look-up made
// while no call is in flight goes out at once, and those arriving while
// one is in flight ride together in the next call, up to Max keys each.
// At start-up, when every binding resolves its group at once, a thousand
// look-ups become fifty calls of twenty.
type Batcher[K comparable, V any] struct {
	// Max is the most keys per call.
	Max int
	// Call looks up keys; keys missing from the result are not found. An
	// error fails every key of the call.
	Call func(ctx context.Context, keys []K) (map[K]V, error)
	// Hold, when set, waits for the call's budget before the batch is
	// filled, and returns the context the call spends it with (see
	// Caller.Hold): look-ups arriving while a call waits for its token
	// ride in it rather than in the next one.
	Hold func(ctx context.Context) (context.Context, error)

	mu      sync.Mutex
	waiting map[K][]chan batchResult[V]
	order   []K
	running bool
}

type batchResult[V any] struct {
	v     V
	found bool
	err   error
}

// Get looks key up, batched with concurrent look-ups.
func (b *Batcher[K, V]) Get(ctx context.Context, key K) (v V, found bool, err error) {
	ch := make(chan batchResult[V], 1)
	b.mu.Lock()
	if b.waiting == nil {
		b.waiting = map[K][]chan batchResult[V]{}
	}
	if _, ok := b.waiting[key]; !ok {
		b.order = append(b.order, key)
	}
	b.waiting[key] = append(b.waiting[key], ch)
	if !b.running {
		b.running = true
		// The calls run detached from any one caller, whose context may
		// end while others still wait.
		go b.run(context.WithoutCancel(ctx))
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.v, r.found, r.err
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
}

func (b *Batcher[K, V]) run(ctx context.Context) {
	for {
		b.mu.Lock()
		if len(b.order) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		// Only this loop takes keys out, so some are still waiting after
		// the budget's wait.
		callCtx := ctx
		if b.Hold != nil {
			// An error leaves the call to wait for its budget itself.
			callCtx, _ = b.Hold(ctx)
		}
		b.mu.Lock()
		n := min(max(b.Max, 1), len(b.order))
		keys := b.order[:n:n]
		b.order = b.order[n:]
		waiters := make(map[K][]chan batchResult[V], n)
		for _, k := range keys {
			waiters[k] = b.waiting[k]
			delete(b.waiting, k)
		}
		b.mu.Unlock()

		got, err := b.Call(callCtx, keys)
		for k, chans := range waiters {
			v, found := got[k]
			for _, ch := range chans {
				ch <- batchResult[V]{v: v, found: found, err: err}
			}
		}
	}
}
