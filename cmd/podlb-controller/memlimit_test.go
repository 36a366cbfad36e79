package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

const mib = 1 << 20

func TestMemoryPolicyReadsRequestAndContainerLimit(t *testing.T) {
	os.Unsetenv("GOMEMLIMIT")
	dir := t.TempDir()
	file := filepath.Join(dir, "memory.max")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, max, request string
		want               memoryPolicy
		ok                 bool
	}{
		{"container limit only", "536870912\n", "", memoryPolicy{ceiling: 512 * mib / 10 * 9}, true},
		{"request and limit", "536870912\n", "134217728", memoryPolicy{request: 128 * mib, ceiling: 512 * mib / 10 * 9}, true},
		{"request without a container limit", "max\n", "134217728", memoryPolicy{request: 128 * mib}, true},
		{"request of none (0) is ignored", "536870912\n", "0", memoryPolicy{ceiling: 512 * mib / 10 * 9}, true},
		{"request at the limit is no request", "134217728\n", "134217728", memoryPolicy{ceiling: 128 * mib / 10 * 9}, true},
		{"nothing known", "max\n", "", memoryPolicy{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.max)
			t.Setenv("PODLB_MEMORY_REQUEST", tc.request)
			got, ok := readMemoryPolicy(file)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	t.Run("GOMEMLIMIT given", func(t *testing.T) {
		write("536870912\n")
		t.Setenv("PODLB_MEMORY_REQUEST", "134217728")
		t.Setenv("GOMEMLIMIT", "100MiB")
		if p, ok := readMemoryPolicy(file); ok {
			t.Errorf("GOMEMLIMIT given, but a policy was read: %+v", p)
		}
	})
}

func TestMemoryPolicyFollowsTheLiveHeap(t *testing.T) {
	p := memoryPolicy{request: 128 * mib, ceiling: 460 * mib}
	for _, tc := range []struct {
		use  memoryUse
		want int64
	}{
		{memoryUse{live: 40 * mib, overhead: 20 * mib}, 128 * mib},  // small heap: the request bounds it
		{memoryUse{live: 100 * mib}, 150 * mib},                     // near the request: 1.5x live
		{memoryUse{live: 80 * mib, overhead: 25 * mib}, 145 * mib},  // and the runtime's own memory beside it
		{memoryUse{live: 400 * mib, overhead: 20 * mib}, 460 * mib}, // never past 90% of the container's limit
		// The executable's resident pages come out of the request and
		// the ceiling alike: the container is charged for them too.
		{memoryUse{live: 40 * mib, overhead: 20 * mib, outside: 25 * mib}, 103 * mib},
		{memoryUse{live: 60 * mib, overhead: 20 * mib, outside: 25 * mib}, 110 * mib},  // but the heap's room comes first
		{memoryUse{live: 400 * mib, overhead: 20 * mib, outside: 25 * mib}, 435 * mib}, // and so the ceiling
	} {
		if got := p.limitFor(tc.use); got != tc.want {
			t.Errorf("live %d, overhead %d MiB: limit %d MiB, want %d MiB", tc.use.live/mib, tc.use.overhead/mib, got/mib, tc.want/mib)
		}
	}
	if got := (memoryPolicy{ceiling: 460 * mib}).limitFor(memoryUse{live: 10 * mib}); got != 460*mib {
		t.Errorf("without a request the limit is the ceiling, got %d MiB", got/mib)
	}
	if got := (memoryPolicy{ceiling: 460 * mib}).limitFor(memoryUse{live: 10 * mib, outside: 30 * mib}); got != 430*mib {
		t.Errorf("without a request the limit is the ceiling less the executable's pages, got %d MiB", got/mib)
	}
	if got := (memoryPolicy{request: 128 * mib}).limitFor(memoryUse{live: 300 * mib}); got != 450*mib {
		t.Errorf("without a ceiling the limit follows the heap, got %d MiB", got/mib)
	}
}

func TestMemoryPolicyAppliesTheLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	prevGC := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prevGC)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Setenv("GOGC", "")
	p := memoryPolicy{request: 1 << 40}
	// The request less this process's executable pages (under a GiB).
	if got := p.apply(ctx); got > 1<<40 || got <= 1<<40-1<<30 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("applied %d, runtime has %d, want the request %d less the executable's pages", got, debug.SetMemoryLimit(-1), int64(1<<40))
	}
	if got := debug.SetGCPercent(100); got != containerGCPercent {
		t.Errorf("GOGC %d in a container, want %d", got, containerGCPercent)
	}
	t.Setenv("GOGC", "200")
	p.apply(ctx)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC given: the collector's pace changed to %d", got)
	}
}
