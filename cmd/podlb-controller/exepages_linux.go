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
// uses a small part of it. Those pages are clean copies of the file, but
// while mapped they count in the resident set and the container's
// working set. So every minute podlb marks the executable's read-only
// pages as the first to reclaim (MADV_COLD) and unmaps them
// (MADV_DONTNEED): they stay in the page cache, and what the controller
// still runs maps back in without reading the disk. MADV_PAGEOUT would
// evict them outright, but the kernel does that only for a file the
// process could write, and the image's binary belongs to root.

// mapping is an address range of the process.
type mapping struct{ start, end uintptr }

// cleanReadOnlyMappings returns the ranges of a /proc/<pid>/smaps listing
// that map the file exe, cannot be written and hold no page of their own:
// code and read-only data, whose every page the file can give back. A
// page written since it was mapped (relocated data of a position
// independent binary, a debugger's breakpoint) exists nowhere else, so a
// mapping holding one is left alone.
func cleanReadOnlyMappings(smaps []byte, exe string) []mapping {
	var out []mapping
	var cur *mapping
	for _, line := range bytes.Split(smaps, []byte("\n")) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if key := f[0]; key[len(key)-1] == ':' {
			// "Anonymous:   4 kB": pages of the last mapping written
			// since (Private_Dirty counts the page cache's unwritten
			// pages too, as after a fresh build).
			if cur != nil && len(f) >= 2 && string(key) == "Anonymous:" && string(f[1]) != "0" {
				out, cur = out[:len(out)-1], nil
			}
			continue
		}
		cur = nil
		// address perms offset dev inode path; the path may hold spaces.
		if len(f) < 6 || len(f[1]) < 2 || f[1][0] != 'r' || f[1][1] == 'w' {
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
		cur = &out[len(out)-1]
	}
	return out
}

// releaseExecutablePages marks the resident pages of the executable's
// clean read-only mappings cold and unmaps them, and returns how many
// bytes of address space it covered.
func releaseExecutablePages() (uintptr, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	ranges := cleanReadOnlyMappings(smaps, exe)
	if len(ranges) == 0 {
		return 0, fmt.Errorf("no clean read-only mapping of %s in /proc/self/smaps", exe)
	}
	var covered uintptr
	for _, m := range ranges {
		// Linux before 5.4 has no MADV_COLD: the pages are unmapped all the same.
		syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_COLD)
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return covered, fmt.Errorf("madvise(MADV_DONTNEED): %w", errno)
		}
		covered += m.end - m.start
	}
	return covered, nil
}

// executablePagesEvery is how often the pages are released. What runs
// all the time at rest (health reads, watches, the collector) maps back
// in within seconds of a release; the rest (a resync pass, a burst of
// writes) is kept out until it runs again, for a few hundred minor faults
// a release. The guide gives the measured gain and cost.
const executablePagesEvery = 15 * time.Second

// releaseExecutablePagesUntil releases the executable's pages every
// executablePagesEvery until ctx ends; after a failure nothing more is
// tried.
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
