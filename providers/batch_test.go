package providers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// A look-up alone goes out at once; those arriving while a call is in
// flight ride together in the next, at most Max per call.
func TestBatcherGathersWhileACallIsInFlight(t *testing.T) {
	release := make(chan struct{})
	var (
		mu    sync.Mutex
		calls [][]string
	)
	b := &Batcher[string, int]{Max: 3, Call: func(_ context.Context, keys []string) (map[string]int, error) {
		mu.Lock()
		calls = append(calls, slices.Clone(keys))
		first := len(calls) == 1
		mu.Unlock()
		if first {
			<-release
		}
		out := map[string]int{}
		for _, k := range keys {
			if k != "missing" {
				out[k] = len(k)
			}
		}
		return out, nil
	}}
	var wg sync.WaitGroup
	get := func(k string) {
		defer wg.Done()
		v, found, err := b.Get(context.Background(), k)
		if err != nil || found != (k != "missing") || (found && v != len(k)) {
			t.Errorf("%s: %d %v %v", k, v, found, err)
		}
	}
	wg.Add(1)
	go get("first")
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	keys := []string{"a", "bb", "ccc", "dddd", "missing", "a"}
	for _, k := range keys {
		wg.Add(1)
		go get(k)
	}
	// Every look-up is waiting (six, "a" twice) before the first call ends.
	waitUntil(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		n := 0
		for _, chans := range b.waiting {
			n += len(chans)
		}
		return n == len(keys)
	})
	close(release)
	wg.Wait()
	if len(calls) != 3 || len(calls[1]) != 3 || len(calls[2]) != 2 {
		t.Fatalf("calls %v: want the first alone, then the five distinct keys waiting in calls of at most 3", calls)
	}
}

func TestBatcherFailsEveryKeyOfAFailedCall(t *testing.T) {
	b := &Batcher[string, int]{Max: 10, Call: func(context.Context, []string) (map[string]int, error) {
		return nil, errors.New("boom")
	}}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := b.Get(context.Background(), fmt.Sprint(i)); err == nil {
				t.Error("no error")
			}
		}()
	}
	wg.Wait()
}

// Look-ups arriving while a batch waits for its budget ride in it: the
// batch is filled when its token is in hand, not before. With a Caller
// behind it, the held token is the call's: it does not wait twice.
func TestBatcherFillsABatchWhenItsBudgetComes(t *testing.T) {
	// One token and no refill to speak of: a second wait for it fails at
	// once against the call's deadline.
	caller := NewCaller("test", map[string]Limit{"Describe": {QPS: 0.001, Burst: 1}}, Limit{QPS: 1, Burst: 1}, nil)
	budget := make(chan struct{})
	var (
		mu    sync.Mutex
		calls [][]string
	)
	b := &Batcher[string, int]{Max: 10,
		Hold: func(ctx context.Context) (context.Context, error) {
			<-budget
			return caller.Hold(ctx, "Describe")
		},
		Call: func(ctx context.Context, keys []string) (map[string]int, error) {
			out := map[string]int{}
			ctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			err := caller.Call(ctx, "Describe", func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, slices.Clone(keys))
				for _, k := range keys {
					out[k] = len(k)
				}
				return nil
			})
			return out, err
		}}
	var wg sync.WaitGroup
	for _, k := range []string{"a", "bb", "ccc"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, found, err := b.Get(context.Background(), k); err != nil || !found || v != len(k) {
				t.Errorf("%s: %d %v %v", k, v, found, err)
			}
		}()
	}
	waitUntil(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiting) == 3
	})
	close(budget)
	wg.Wait()
	if len(calls) != 1 || len(calls[0]) != 3 {
		t.Fatalf("calls %v: want the three look-ups that came while the budget was awaited in one call", calls)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for range 5000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached")
}

// A token held for one operation is spent by the first call of any
// operation drawing on the same bucket (ELBv2's RegisterTargets and
// DeregisterTargets, GCE's attach and detach), once; a call of another
// bucket does not take it.
func TestHeldTokenServesTheOperationsSharingItsBucket(t *testing.T) {
	caller := NewCaller("test", map[string]Limit{"Register": {QPS: 0.001, Burst: 1}, "Describe": {QPS: 0.001, Burst: 1}}, Limit{QPS: 0.001, Burst: 1}, nil)
	caller.Share("Register", "Deregister")
	ctx, err := caller.Hold(context.Background(), "Register")
	if err != nil {
		t.Fatal(err)
	}
	call := func(op string) error { return callSoon(ctx, caller, op) }
	if err := call("Deregister"); err != nil {
		t.Fatalf("a call sharing the held token's bucket waited for another: %v", err)
	}
	if err := call("Deregister"); err == nil {
		t.Fatal("the held token was spent twice")
	}
	if err := call("Describe"); err != nil {
		t.Fatalf("a call of another bucket: %v", err)
	}
}

// A plan's first call is its registration when it has one, else its
// deregistration: HoldPlan holds that call's bucket.
func TestHoldPlanHoldsTheFirstCallsBucket(t *testing.T) {
	caller := NewCaller("test", map[string]Limit{"Register": {QPS: 0.001, Burst: 1}, "Deregister": {QPS: 0.001, Burst: 1}}, Limit{QPS: 0.001, Burst: 1}, nil)
	ctx, err := caller.HoldPlan(context.Background(), Plan{Deregister: []Target{{Port: 80}}}, "Register", "Deregister")
	if err != nil {
		t.Fatal(err)
	}
	// The hold took the deregistration bucket's only token: a call
	// without the held context finds none.
	if err := callSoon(context.Background(), caller, "Deregister"); err == nil {
		t.Fatal("HoldPlan left the deregistration bucket's token in the bucket")
	}
	if err := callSoon(ctx, caller, "Deregister"); err != nil {
		t.Fatalf("a deregistration-only plan's call waited for a second token: %v", err)
	}
	if err := callSoon(ctx, caller, "Register"); err != nil {
		t.Fatalf("the registration bucket's token was taken: %v", err)
	}
}

// callSoon makes a call of op that fails unless its token comes within
// 100 ms (the test buckets refill a token every 1,000 s).
func callSoon(ctx context.Context, caller *Caller, op string) error {
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	return caller.Call(ctx, op, func(context.Context) error { return nil })
}
