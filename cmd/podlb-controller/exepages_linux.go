package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

// Start-up runs code the controller never runs again (every package's
// init, every API group's registration, the clients' construction), and
// the kernel maps the executable in runs around each page touched, so
// once started most of the binary is resident, and a controller at rest
// uses a small part of it. Those pages are clean: the kernel would reclaim
// them under memory pressure, but until then they count in the resident
// set and the container's charge. So podlb asks the kernel to reclaim the
// executable's read-only mappings every minute; what the controller still
// runs faults back in.

// mapping is an address range of the process.
type mapping struct{ start, end uintptr }

// readOnlyMappings returns the ranges of a /proc/<pid>/maps listing that
// map the file exe and cannot be written: code and read-only data. A
// writable mapping holds variables and is never touched.
func readOnlyMappings(maps []byte, exe string) []mapping {
	var out []mapping
	for _, line := range bytes.Split(maps, []byte("\n")) {
		// address perms offset dev inode path; the path may hold spaces.
		f := bytes.Fields(line)
		if len(f) < 6 || f[1][1] == 'w' || f[1][0] != 'r' {
			continue
		}
		if path := bytes.Join(f[5:], []byte(" ")); string(path) != exe {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		out = append(out, mapping{uintptr(start), uintptr(end)})
	}
	return out
}

// releaseExecutablePages asks the kernel to reclaim the resident pages of
// the executable's read-only mappings and returns how many bytes of
// address space it covered.
func releaseExecutablePages() (uintptr, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	ranges := readOnlyMappings(maps, exe)
	if len(ranges) == 0 {
		return 0, fmt.Errorf("no read-only mapping of %s in /proc/self/maps", exe)
	}
	var covered uintptr
	for _, m := range ranges {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_PAGEOUT); errno != 0 {
			return covered, fmt.Errorf("madvise(MADV_PAGEOUT): %w", errno)
		}
		covered += m.end - m.start
	}
	return covered, nil
}

// executablePagesEvery is how often the pages are released: the resync
// period's default, so what a controller at rest runs comes back once a
// pass, and what a burst of writes ran stays a minute at most. The guide
// gives the measured gain and cost.
const executablePagesEvery = time.Minute

// releaseExecutablePagesUntil releases the executable's pages every
// executablePagesEvery until ctx ends. A kernel without MADV_PAGEOUT
// (before Linux 5.4) refuses the first: nothing more is tried.
func releaseExecutablePagesUntil(ctx context.Context, logger logr.Logger) {
	tick := time.NewTicker(executablePagesEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		covered, err := releaseExecutablePages()
		if err != nil {
			logger.Info("executable's pages left resident", "reason", err.Error())
			return
		}
		logger.V(1).Info("executable's pages released", "mapped bytes", covered)
	}
}
