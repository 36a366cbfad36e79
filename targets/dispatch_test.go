package targets

import (
	"context"
	"sync"
	"testing"
	"time"
)

// The write budget goes to the binding whose pods waited longest, not to
// whoever asked first: a burst of new work never starves older work.
func TestDispatcherGrantsOldestWaitFirst(t *testing.T) {
	d := NewDispatcher(1)
	hold, err := d.Acquire(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1000, 0)
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	// Arrival order 3, 1, 2; waits since base+3s, base+1s, base+2s; plus
	// a tie with 1 that arrives last.
	for i, n := range []int{3, 1, 2, 4} {
		since := base.Add(time.Duration(n) * time.Second)
		if n == 4 {
			since = base.Add(time.Second)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := d.Acquire(context.Background(), since)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, n)
			mu.Unlock()
			release()
		}()
		waitFor(t, func() bool { return d.Waiting() == i+1 })
	}
	hold()
	wg.Wait()
	want := []int{1, 4, 2, 3}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("grant order %v, want %v (oldest wait first, ties in arrival order)", order, want)
		}
	}
}

func TestDispatcherRunsSlotsConcurrently(t *testing.T) {
	d := NewDispatcher(2)
	r1, _ := d.Acquire(context.Background(), time.Now())
	r2, _ := d.Acquire(context.Background(), time.Now())
	got := make(chan struct{})
	go func() {
		r, _ := d.Acquire(context.Background(), time.Now())
		close(got)
		r()
	}()
	waitFor(t, func() bool { return d.Waiting() == 1 })
	select {
	case <-got:
		t.Fatal("a third writer got a slot while both were taken")
	case <-time.After(20 * time.Millisecond):
	}
	r1()
	<-got
	r2()
	// Every slot is free again: two more acquire without waiting.
	a, _ := d.Acquire(context.Background(), time.Now())
	b, _ := d.Acquire(context.Background(), time.Now())
	if d.Waiting() != 0 {
		t.Fatal("slots leaked")
	}
	a()
	b()
}

// A waiter that gives up leaves the queue, and a slot granted to it as it
// gives up is passed on rather than lost.
func TestDispatcherCancelledWaiterPassesItsSlotOn(t *testing.T) {
	d := NewDispatcher(1)
	hold, _ := d.Acquire(context.Background(), time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := d.Acquire(ctx, time.Unix(1, 0))
		errc <- err
	}()
	waitFor(t, func() bool { return d.Waiting() == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled waiter got a slot")
	}
	if d.Waiting() != 0 {
		t.Fatal("the cancelled waiter is still queued")
	}
	hold()
	r, err := d.Acquire(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
