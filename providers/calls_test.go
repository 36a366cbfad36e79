package providers

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A call at rest spends only tokens beyond half its bucket's burst and
// never waits: the reserve stays for calls that pods wait for.
func TestACallAtRestSpendsOnlySpareTokens(t *testing.T) {
	caller := NewCaller("test", map[string]Limit{"Read": {QPS: 0.001, Burst: 4}}, Limit{QPS: 0.001, Burst: 1}, nil)
	rest := AtRest(context.Background())
	made := 0
	call := func(ctx context.Context) error {
		return caller.Call(ctx, "Read", func(context.Context) error { made++; return nil })
	}
	for i := range 2 {
		if err := call(rest); err != nil {
			t.Fatalf("call at rest %d of a full bucket of 4: %v", i+1, err)
		}
	}
	start := time.Now()
	err := call(rest)
	var po *PutOffError
	if !errors.As(err, &po) || ClassOf(err) != Throttled || made != 2 {
		t.Fatalf("a call at rest into the reserve: %v (class %s), %d calls made; want a PutOffError, throttled, 2 calls", err, ClassOf(err), made)
	}
	// Two tokens of reserve and one spare at 0.001/s.
	if po.Refill != 3000*time.Second {
		t.Errorf("put off until the reserve refills in %v, want 3000 s", po.Refill)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("a call at rest waited %v for a token", waited)
	}
	// The reserve serves calls that wait.
	for i := range 2 {
		if err := callSoon(context.Background(), caller, "Read"); err != nil {
			t.Fatalf("call %d from the reserve: %v", i+1, err)
		}
	}
}

// HoldSpare takes a read's tokens at rest all at once, from every bucket
// its calls draw on, or none; its Calls spend them and then draw on the
// bucket as usual. Outside rest it holds nothing.
func TestHoldSpareTakesAllOfARestingReadsTokensOrNone(t *testing.T) {
	caller := NewCaller("test", map[string]Limit{"Read": {QPS: 0.001, Burst: 10}, "List": {QPS: 0.001, Burst: 4}}, Limit{QPS: 0.001, Burst: 1}, nil)
	tokens := func(op string) int { return int(caller.limiter(op).Tokens()) }
	made := 0
	call := func(ctx context.Context, op string) error {
		return caller.Call(ctx, op, func(context.Context) error { made++; return nil })
	}
	if ctx, err := caller.HoldSpare(context.Background(), "Read", "Read", "Read"); err != nil || ctx != context.Background() || tokens("Read") != 10 {
		t.Fatalf("outside rest HoldSpare took tokens or failed: %v, %d left", err, tokens("Read"))
	}
	rest := AtRest(context.Background())
	held, err := caller.HoldSpare(rest, "Read", "List", "Read", "Read")
	if err != nil || tokens("Read") != 7 || tokens("List") != 3 {
		t.Fatalf("HoldSpare of 3 reads and a list: %v, %d and %d left, want 7 and 3", err, tokens("Read"), tokens("List"))
	}
	for _, op := range []string{"Read", "Read", "List", "Read"} {
		if err := call(held, op); err != nil {
			t.Fatal(err)
		}
	}
	if made != 4 || tokens("Read") != 7 || tokens("List") != 3 {
		t.Fatalf("four calls on four held tokens: %d made, %d and %d left, want 4, 7 and 3", made, tokens("Read"), tokens("List"))
	}
	// A call beyond the held tokens takes a spare token of its own.
	if err := call(held, "Read"); err != nil || tokens("Read") != 6 {
		t.Fatalf("a call beyond the held tokens: %v, %d left, want 6", err, tokens("Read"))
	}
	// The list bucket has one token beyond its reserve of 2: a read that
	// wants two lists takes nothing from either bucket.
	_, err = caller.HoldSpare(rest, "Read", "List", "List")
	var po *PutOffError
	if !errors.As(err, &po) || ClassOf(err) != Throttled || po.Op != "List" || tokens("Read") != 6 || tokens("List") != 3 {
		t.Fatalf("HoldSpare of two lists with one spare: %v (class %s), %d and %d left; want a PutOffError of List, throttled, 6 and 3 left", err, ClassOf(err), tokens("Read"), tokens("List"))
	}
	// The reserve of 2 and the 2 tokens wanted, at 0.001/s.
	if po.Refill != 4000*time.Second {
		t.Errorf("put off until the bucket refills in %v, want 4000 s", po.Refill)
	}
	// One spare token beyond the read bucket's reserve of 5: three reads
	// are not there either.
	if _, err := caller.HoldSpare(rest, "Read", "Read", "Read", "Read", "Read", "Read"); !errors.As(err, &po) || po.Op != "Read" || tokens("Read") != 6 {
		t.Fatalf("HoldSpare of 6 reads with one spare: %v, %d left; want a PutOffError of Read, 6 left", err, tokens("Read"))
	}
}

// A read whose calls do not fit beside a bucket's reserve waits for a
// full bucket; one whose calls are more than the bucket ever holds is
// made as a read that waits, not put off for ever.
func TestHoldSpareOfMoreCallsThanTheBucketSpares(t *testing.T) {
	caller := NewCaller("test", map[string]Limit{"Small": {QPS: 0.001, Burst: 4}, "One": {QPS: 0.001, Burst: 2}}, Limit{QPS: 0.001, Burst: 1}, nil)
	tokens := func(op string) int { return int(caller.limiter(op).Tokens()) }
	rest := AtRest(context.Background())
	// Three calls beside a reserve of 2 in a bucket of 4: taken from the
	// full bucket, and put off once it is not full.
	if _, err := caller.HoldSpare(rest, "Small", "Small", "Small"); err != nil || tokens("Small") != 1 {
		t.Fatalf("three calls from a full bucket of 4: %v, %d left, want 1", err, tokens("Small"))
	}
	var po *PutOffError
	if _, err := caller.HoldSpare(rest, "Small", "Small", "Small"); !errors.As(err, &po) || tokens("Small") != 1 {
		t.Fatalf("three calls from 1 token: %v, %d left; want a put-off, 1 left", err, tokens("Small"))
	}
	// Three calls on a bucket of 2: no longer at rest, nothing taken.
	ctx, err := caller.HoldSpare(rest, "One", "One", "One")
	if err != nil || IsAtRest(ctx) || tokens("One") != 2 {
		t.Fatalf("three calls on a bucket of 2: %v, at rest %v, %d left; want a read that waits, 2 left", err, IsAtRest(ctx), tokens("One"))
	}
}

// Call sends again what the cloud throttled and what the provider says
// may be retried, up to the attempts in all, each time with a token of
// its own; anything else goes back after one call.
func TestCallRetriesWithATokenEach(t *testing.T) {
	again := errors.New("worth sending again")
	for _, c := range []struct {
		name  string
		err   error
		sends int
	}{
		{"throttled", Classify(Throttled, "", errors.New("slow down")), 3},
		{"retryable by the provider", Classify(Transient, "", again), 3},
		{"transient", Classify(Transient, "", errors.New("broken")), 1},
		{"invalid", Classify(Invalid, "", errors.New("bad")), 1},
		{"ok", nil, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			const burst = 10
			caller := NewCaller("test", map[string]Limit{"Op": {QPS: 0.001, Burst: burst}}, Limit{QPS: 0.001, Burst: 1}, nil)
			caller.Retry(3, func(op string, err error) bool { return op == "Op" && errors.Is(err, again) })
			sends := 0
			err := caller.Call(context.Background(), "Op", func(context.Context) error { sends++; return c.err })
			if sends != c.sends || !errors.Is(err, c.err) {
				t.Errorf("sent %d times, returned %v; want %d, %v", sends, err, c.sends, c.err)
			}
			if left := int(caller.limiter("Op").Tokens()); left != burst-c.sends {
				t.Errorf("%d tokens left of %d after %d sends, want one spent a send", left, burst, sends)
			}
		})
	}
}
