package providers

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
	"testing"
)

// allOrNothing is a group that, like the clouds, applies a call's targets
// only when it can take every one of them.
type allOrNothing struct {
	bad     map[TargetKey]bool
	room    int
	applied map[TargetKey]bool
	calls   int
}

var (
	errFull  = errors.New("group full")
	errCall  = errors.New("throttled")
	badClass = func(err error) Refusal {
		switch {
		case errors.Is(err, errFull):
			return GroupFull
		case errors.Is(err, errCall):
			return WholeCall
		}
		return SomeTargets
	}
)

func (g *allOrNothing) apply(ts []Target) error {
	g.calls++
	for _, t := range ts {
		if g.bad[t.Key()] {
			return fmt.Errorf("refused %s", t.Key())
		}
	}
	if len(g.applied)+len(ts) > g.room {
		return errFull
	}
	for _, t := range ts {
		g.applied[t.Key()] = true
	}
	return nil
}

func targetsN(n int) []Target {
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{IP: netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)}), Port: 80}
	}
	return ts
}

// callBound is the most calls isolating k refused targets among n may cost.
func callBound(n, k int) int { return 1 + 2*k*bits.Len(uint(n-1)) }

func TestIsolatorAppliesEveryGoodTargetAndNamesEachBadOne(t *testing.T) {
	for _, badAt := range [][]int{{0}, {199}, {3, 17, 40}, {100, 101}, {0, 50, 99, 150, 199}} {
		ts := targetsN(200)
		g := &allOrNothing{bad: map[TargetKey]bool{}, room: 1000, applied: map[TargetKey]bool{}}
		for _, i := range badAt {
			g.bad[ts[i].Key()] = true
		}
		iso := &Isolator{Apply: g.apply, Judge: badClass}
		if err := iso.Run(ts, nil); err != nil {
			t.Fatalf("bad %v: %v", badAt, err)
		}
		if len(g.applied) != len(ts)-len(badAt) || len(iso.Refused) != len(badAt) {
			t.Fatalf("bad %v: %d applied, refused %v", badAt, len(g.applied), iso.Refused)
		}
		for k := range g.bad {
			if err := iso.Refused[k]; err == nil || err.Error() != "refused "+k.String() {
				t.Errorf("bad %v: %s refused with %v, want its own error", badAt, k, err)
			}
		}
		if limit := callBound(len(ts), len(badAt)); g.calls > limit {
			t.Errorf("bad %v: %d calls, want at most %d", badAt, g.calls, limit)
		}
	}
}

func TestIsolatorFillsAFullGroupAndStopsAtTheFirstTargetThatDoesNotFit(t *testing.T) {
	ts := targetsN(200)
	g := &allOrNothing{bad: map[TargetKey]bool{ts[2].Key(): true}, room: 37, applied: map[TargetKey]bool{}}
	iso := &Isolator{Apply: g.apply, Judge: badClass}
	if err := iso.Run(ts[:100], nil); err != nil {
		t.Fatal(err)
	}
	// A second batch of the same pass costs nothing once the group is full.
	calls := g.calls
	if err := iso.Run(ts[100:], nil); err != nil {
		t.Fatal(err)
	}
	if g.calls != calls {
		t.Errorf("%d calls into a full group", g.calls-calls)
	}
	if len(g.applied) != 37 || len(iso.Refused) != 200-37 {
		t.Fatalf("%d applied, %d refused", len(g.applied), len(iso.Refused))
	}
	if !strings.HasPrefix(iso.Refused[ts[2].Key()].Error(), "refused") || !errors.Is(iso.Refused[ts[199].Key()], errFull) {
		t.Errorf("errors %v, %v", iso.Refused[ts[2].Key()], iso.Refused[ts[199].Key()])
	}
	if limit := 1 + 2*2*bits.Len(uint(99)); calls > limit {
		t.Errorf("%d calls to fill the group, want at most %d", calls, limit)
	}
}

// A retry whose first attempt went through unseen meets targets already
// applied: the cloud refuses the batch for them. Each such target counts
// as applied, and the rest of the batch is still sent, not taken for the
// culprit.
func TestIsolatorAppliesTheRestBesideTargetsAlreadyApplied(t *testing.T) {
	ts := targetsN(4)
	applied := map[TargetKey]bool{ts[0].Key(): true}
	errApplied := errors.New("already attached")
	calls := 0
	iso := &Isolator{
		Apply: func(batch []Target) error {
			calls++
			for _, t := range batch {
				if applied[t.Key()] {
					return errApplied
				}
			}
			for _, t := range batch {
				applied[t.Key()] = true
			}
			return nil
		},
		Judge: func(err error) Refusal {
			if errors.Is(err, errApplied) {
				return AlreadyApplied
			}
			return WholeCall
		},
	}
	if err := iso.Run(ts, nil); err != nil {
		t.Fatal(err)
	}
	if len(iso.Refused) != 0 {
		t.Errorf("refused %v, want none", iso.Refused)
	}
	for _, tg := range ts {
		if !applied[tg.Key()] {
			t.Errorf("%s not applied", tg.Key())
		}
	}
	if calls > callBound(len(ts), 1) {
		t.Errorf("%d calls, bound %d", calls, callBound(len(ts), 1))
	}
}

func TestIsolatorDoesNotSplitAWholeCallFailure(t *testing.T) {
	calls := 0
	iso := &Isolator{Apply: func([]Target) error { calls++; return errCall }, Judge: badClass}
	if err := iso.Run(targetsN(50), nil); !errors.Is(err, errCall) {
		t.Fatalf("got %v", err)
	}
	if calls != 1 || len(iso.Refused) != 0 {
		t.Errorf("%d calls, refused %v", calls, iso.Refused)
	}
	// A failure already seen is not sent again.
	calls = 0
	if err := iso.Run(targetsN(50), errCall); !errors.Is(err, errCall) || calls != 0 {
		t.Errorf("known failure: %v after %d calls", err, calls)
	}
}

func TestTargetErrorsReadTheSameEveryTimeAndAreInvalid(t *testing.T) {
	failed := map[TargetKey]error{}
	for i, tg := range targetsN(13) {
		failed[tg.Key()] = fmt.Errorf("no %d", i)
	}
	te := &TargetErrors{Failed: failed}
	want := "13 targets refused: 10.0.0.1:80 (no 0), 10.0.0.2:80 (no 1), 10.0.0.3:80 (no 2), 10.0.0.4:80, 10.0.0.5:80, 10.0.0.6:80, " +
		"10.0.0.7:80, 10.0.0.8:80, 10.0.0.9:80, 10.0.0.10:80 and 3 more"
	for range 5 {
		if got := te.Error(); got != want {
			t.Fatalf("got  %q\nwant %q", got, want)
		}
	}
	one := &TargetErrors{Failed: map[TargetKey]error{targetsN(1)[0].Key(): errors.New("bad")}}
	if one.Error() != "1 target refused: 10.0.0.1:80 (bad)" {
		t.Errorf("one: %q", one.Error())
	}
	wrapped := fmt.Errorf("applying: %w", te)
	if got, ok := AsTargetErrors(wrapped); !ok || got != te {
		t.Error("AsTargetErrors does not find a wrapped *TargetErrors")
	}
	if ClassOf(te) != Invalid || ClassOf(wrapped) != Invalid || !IsUserError(te) {
		t.Errorf("class %s", ClassOf(te))
	}
	if Classify(Transient, "", te) != error(te) {
		t.Error("Classify replaced the class of a *TargetErrors")
	}
	if _, ok := AsTargetErrors(errors.New("x")); ok {
		t.Error("AsTargetErrors found one where there is none")
	}
}
