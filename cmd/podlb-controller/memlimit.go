package main

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"github.com/podlb/podlb/internal/procstat"
)

// memoryPolicy sets the Go runtime's soft memory limit. Without one the
// heap may grow to twice what is live before it is collected, so the
// process sits far above its memory request. The limit is the container's
// memory request when the manifests pass it in (PODLB_MEMORY_REQUEST, from
// the downward API), else 90% of the container's limit (cgroup v2
// memory.max), less what the process holds resident outside the Go
// runtime (the executable's pages): the container is charged both, the
// soft limit counts the runtime's memory only, and the runtime returns
// free heap pages to the kernel only as it nears the limit. A limit the
// live heap nears makes the collector run without pause (a cluster grown
// past what the request was sized for), so it follows the live heap:
// never below the runtime's own memory (stacks, metadata, fragmentation)
// and 1.5x the live heap, and never above 90% of the container's limit,
// where the kernel would kill the process.
//
// In a container the collector also runs when the heap has grown by half
// of what is live (GOGC 50) rather than by all of it: podlb at rest
// allocates little, so the extra collections cost about a tenth of a
// percent of a core and spare a fifth of the anonymous memory (figures
// in the guide's Memory section). GOGC, when set, decides instead.
type memoryPolicy struct {
	request int64 // 0: none given
	ceiling int64 // 90% of the container's limit; 0: none
}

// memoryUse is what the limit is set from.
type memoryUse struct {
	live     int64 // the live heap after the last collection
	overhead int64 // what the runtime holds beside heap objects and free pages
	outside  int64 // resident memory outside the runtime: the executable's pages
}

// limitFor is the soft limit for the memory in use.
func (p memoryPolicy) limitFor(m memoryUse) int64 {
	limit := max(p.request-m.outside, m.overhead+m.live/2*3)
	if ceiling := p.ceiling - m.outside; p.ceiling > 0 && (p.request == 0 || limit > ceiling) {
		limit = ceiling
	}
	return limit
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

// containerGCPercent is GOGC in a container; see memoryPolicy.
const containerGCPercent = 50

// apply sets the collector's pace and the limit for the heap live now
// and, with a request to follow, keeps the limit in step with the live
// heap until ctx ends.
func (p memoryPolicy) apply(ctx context.Context) int64 {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(containerGCPercent)
	}
	samples := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	limit := func() int64 {
		metrics.Read(samples)
		v := make([]int64, len(samples))
		for i, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				v[i] = int64(s.Value.Uint64())
			}
		}
		// Off Linux, or should the status not say, nothing is counted
		// outside the runtime.
		outside, _ := procstat.Bytes("self", "RssFile")
		return p.limitFor(memoryUse{live: v[0], overhead: max(v[1]-v[2]-v[3]-v[4], 0), outside: outside})
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
