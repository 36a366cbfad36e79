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
	for _, tc := range []struct{ live, files, want int64 }{
		{40 * mib, 0, 128 * mib},         // small heap: the request bounds it
		{40 * mib, 50 * mib, 78 * mib},   // less the executable's resident pages
		{60 * mib, 50 * mib, 90 * mib},   // but the collector is not driven to run all the time
		{100 * mib, 0, 150 * mib},        // near the request: 1.5x live
		{400 * mib, 50 * mib, 460 * mib}, // never past 90% of the container's limit
	} {
		if got := p.limitFor(tc.live, tc.files); got != tc.want {
			t.Errorf("live %d MiB, files %d MiB: limit %d MiB, want %d MiB", tc.live/mib, tc.files/mib, got/mib, tc.want/mib)
		}
	}
	if got := (memoryPolicy{ceiling: 460 * mib}).limitFor(10*mib, 50*mib); got != 460*mib {
		t.Errorf("without a request the limit is the ceiling, got %d MiB", got/mib)
	}
	if got := (memoryPolicy{request: 128 * mib}).limitFor(300*mib, 0); got != 450*mib {
		t.Errorf("without a ceiling the limit follows the heap, got %d MiB", got/mib)
	}
}

func TestResidentFilesReadsRssFile(t *testing.T) {
	status := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(status, []byte("Name:\tpodlb-controller\nVmRSS:\t  172032 kB\nRssAnon:\t  120832 kB\nRssFile:\t   51200 kB\nRssShmem:\t       0 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := residentFiles(status); got != 50*mib {
		t.Errorf("resident files %d bytes, want 50 MiB", got)
	}
	if got := residentFiles(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Errorf("without a status file: %d, want 0", got)
	}
	if got := residentFiles("/proc/self/status"); got <= 0 {
		t.Errorf("this process's resident file pages: %d, want some", got)
	}
}

func TestMemoryPolicyAppliesTheLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := memoryPolicy{request: 1 << 40}
	// The request less this process's resident file pages (some MiB).
	if got := p.apply(ctx); got >= 1<<40 || got < 1<<40-1<<30 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("applied %d, runtime has %d, want the request (%d) less the resident file pages", got, debug.SetMemoryLimit(-1), int64(1<<40))
	}
}
