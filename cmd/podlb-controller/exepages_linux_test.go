package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestReadOnlyMappingsKeepsTheExecutablesCodeAndReadOnlyData(t *testing.T) {
	maps := `00400000-020da000 r-xp 00000000 fe:00 9977986                            /opt/podlb bin/podlb-controller
020da000-04482000 r--p 01cda000 fe:00 9977986                            /opt/podlb bin/podlb-controller
04482000-04534000 rw-p 04082000 fe:00 9977986                            /opt/podlb bin/podlb-controller
04534000-065dd000 rw-p 00000000 00:00 0
c000000000-c004000000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:00 12                         /etc/hosts
7ffd4a1f2000-7ffd4a1f4000 r-xp 00000000 00:00 0                          [vdso]
`
	got := readOnlyMappings([]byte(maps), "/opt/podlb bin/podlb-controller")
	want := []mapping{{0x400000, 0x20da000}, {0x20da000, 0x4482000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %x, want %x", got, want)
	}
}

// rssFile is the resident set's file-backed part, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestReleaseExecutablePagesShrinksTheResidentSet(t *testing.T) {
	before := rssFile(t)
	covered, err := releaseExecutablePages()
	if errors.Is(err, syscall.EINVAL) {
		t.Skipf("the kernel has no MADV_PAGEOUT: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("executable mapped %d MiB; file-backed resident set %d -> %d MiB", covered>>20, before>>20, after>>20)
	// The test's own code, running, faults a few pages back in at once.
	if after > before/2 {
		t.Errorf("file-backed resident set went from %d to %d KiB; want it at least halved", before>>10, after>>10)
	}
}
