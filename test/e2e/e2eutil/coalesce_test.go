package e2eutil

import (
	"testing"
	"time"
)

func TestCoalescedCalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	w := 200 * time.Millisecond
	for _, c := range []struct {
		name  string
		lists [][]time.Time
		want  int
	}{
		{"none", nil, 0},
		{"one change", [][]time.Time{at(0)}, 1},
		{"a burst: at once, then the rest a window later", [][]time.Time{at(0, 10, 50, 150)}, 2},
		{"apart by more than a window", [][]time.Time{at(0, 300, 600)}, 3},
		{"a trickle: a call a window while changes keep coming", [][]time.Time{at(0, 100, 250, 390, 450, 700)}, 5},
		{"out of order", [][]time.Time{at(150, 0, 50, 10)}, 2},
		{"lists add up", [][]time.Time{at(0, 10), at(5)}, 3},
	} {
		if got := CoalescedCalls(w, c.lists...); got != c.want {
			t.Errorf("%s: %d calls, want %d", c.name, got, c.want)
		}
	}
}
