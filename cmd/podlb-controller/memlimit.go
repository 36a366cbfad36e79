package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// container's (cgroup v2 memory.max) unless GOMEMLIMIT is set, so the
// heap is collected harder before the kernel kills the process, instead
// of only when it doubled. It returns the limit set, 0 when none.
func setMemoryLimit(cgroupMax string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	raw, err := os.ReadFile(cgroupMax)
	if err != nil {
		return 0
	}
	v := strings.TrimSpace(string(raw))
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0 // "max": no limit
	}
	soft := limit / 10 * 9
	debug.SetMemoryLimit(soft)
	return soft
}
