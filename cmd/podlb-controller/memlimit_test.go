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
	for _, tc := range []struct{ live, file, want int64 }{
		{40 * mib, 0, 128 * mib},         // small heap: the request bounds it
		{40 * mib, 48 * mib, 80 * mib},   // less the executable's resident pages
		{60 * mib, 48 * mib, 90 * mib},   // but never below 1.5x live
		{100 * mib, 48 * mib, 150 * mib}, // near the request: 1.5x live, the collector is not driven to run all the time
		{400 * mib, 0, 460 * mib},        // never past 90% of the container's limit
	} {
		if got := p.limitFor(tc.live, tc.file); got != tc.want {
			t.Errorf("live %d MiB, %d MiB of files: limit %d MiB, want %d MiB", tc.live/mib, tc.file/mib, got/mib, tc.want/mib)
		}
	}
	if got := (memoryPolicy{ceiling: 460 * mib}).limitFor(10*mib, 48*mib); got != 460*mib {
		t.Errorf("without a request the limit is the ceiling, got %d MiB", got/mib)
	}
	if got := (memoryPolicy{request: 128 * mib}).limitFor(300*mib, 0); got != 450*mib {
		t.Errorf("without a ceiling the limit follows the heap, got %d MiB", got/mib)
	}
}

func TestResidentFileBytesReadsProcStatus(t *testing.T) {
	file := filepath.Join(t.TempDir(), "status")
	status := "Name:\tpodlb-controller\nVmRSS:\t  170000 kB\nRssAnon:\t  121000 kB\nRssFile:\t   49152 kB\nRssShmem:\t       0 kB\n"
	if err := os.WriteFile(file, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := residentFileBytes(file); got != 48*mib {
		t.Errorf("RssFile read as %d bytes, want 48 MiB", got)
	}
	if got := residentFileBytes(filepath.Join(t.TempDir(), "none")); got != 0 {
		t.Errorf("a missing file reads as %d, want 0", got)
	}
	if got := residentFileBytes("/proc/self/status"); got <= 0 {
		t.Errorf("this process's own RssFile read as %d", got)
	}
}

func TestMemoryPolicyAppliesTheLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := memoryPolicy{request: 1 << 40}
	// The request less this process's resident file pages.
	got := p.apply(ctx)
	if got >= 1<<40 || got < 1<<40-1<<30 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("applied %d, runtime has %d", got, debug.SetMemoryLimit(-1))
	}
}
