package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// memoryPolicy sets the Go runtime's soft memory limit. Without one the
// heap may grow to twice what is live before it is collected, so the
// process sits far above its memory request. The limit is the container's
// memory request when the manifests pass it in (PODLB_MEMORY_REQUEST, from
// the downward API), less the executable's resident pages, which count
// against the request but not against the Go runtime's limit; else 90% of
// the container's limit (cgroup v2 memory.max). A limit at the request
// would make the collector run without pause once the live heap nears it
// (a cluster grown past what the request was sized for), so it follows
// the live heap: never below 1.5x of it, and never above 90% of the
// container's limit, where the kernel would kill the process.
type memoryPolicy struct {
	request int64 // 0: none given
	ceiling int64 // 90% of the container's limit; 0: none
}

// limitFor is the soft limit for a live heap of live bytes while files
// bytes of the process's resident memory are file pages.
func (p memoryPolicy) limitFor(live, files int64) int64 {
	limit := max(p.request-files, live/2*3)
	if p.ceiling > 0 && (p.request == 0 || limit > p.ceiling) {
		limit = p.ceiling
	}
	return limit
}

// residentFiles reads how much of the process's resident memory is file
// pages, its executable's code and read-only data (RssFile in status).
func residentFiles(status string) int64 {
	raw, err := os.ReadFile(status)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// readMemoryPolicy reads the request from its environment variable and
// the container's limit from cgroupMax. ok is false when GOMEMLIMIT is
// set (the operator decides) or neither is known.
func readMemoryPolicy(cgroupMax string) (p memoryPolicy, ok bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return p, false
	}
	if raw, err := os.ReadFile(cgroupMax); err == nil {
		if limit, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64); err == nil && limit > 0 {
			p.ceiling = limit / 10 * 9 // "max" fails to parse: no limit
		}
	}
	// A request under 32 MiB is a mistake (or the downward API's 0 for
	// none): a limit that low would keep the collector running.
	if req, err := strconv.ParseInt(strings.TrimSpace(os.Getenv("PODLB_MEMORY_REQUEST")), 10, 64); err == nil && req >= 32<<20 {
		p.request = req
	}
	if p.ceiling > 0 && p.request >= p.ceiling {
		p.request = 0
	}
	return p, p.request > 0 || p.ceiling > 0
}

// apply sets the limit for the heap live now and, with a request to
// follow, keeps it in step with the live heap and the resident file
// pages until ctx ends.
func (p memoryPolicy) apply(ctx context.Context) int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	limit := func() int64 {
		metrics.Read(sample)
		var live int64
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = int64(sample[0].Value.Uint64())
		}
		return p.limitFor(live, residentFiles("/proc/self/status"))
	}
	first := limit()
	debug.SetMemoryLimit(first)
	if p.request > 0 {
		go func() {
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					debug.SetMemoryLimit(limit())
				}
			}
		}()
	}
	return first
}
