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
