package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestCleanReadOnlyMappingsKeepsTheExecutablesCodeAndReadOnlyData(t *testing.T) {
	const exe = "/opt/podlb bin/podlb-controller"
	smaps := `00400000-020da000 r-xp 00000000 fe:00 9977986                            /opt/podlb bin/podlb-controller
Rss:               20456 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
020da000-04482000 r--p 01cda000 fe:00 9977986                            /opt/podlb bin/podlb-controller
Rss:               22816 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
04482000-04534000 rw-p 04082000 fe:00 9977986                            /opt/podlb bin/podlb-controller
Private_Dirty:       172 kB
04534000-045d0000 r--p 04134000 fe:00 9977986                            /opt/podlb bin/podlb-controller
Private_Dirty:        12 kB
Anonymous:            12 kB
045d0000-045e0000 r--p 041d0000 fe:00 9977986                            /opt/podlb bin/podlb-controller
Private_Dirty:         0 kB
Anonymous:             4 kB
045e0000-045f0000 r--p 041e0000 fe:00 9977986                            /opt/podlb bin/podlb-controller
Private_Dirty:        64 kB
Anonymous:             0 kB
c000000000-c004000000 rw-p 00000000 00:00 0
Anonymous:         65536 kB
7f0000000000-7f0000001000 r--p 00000000 fe:00 12                         /etc/hosts
Private_Dirty:         0 kB
7ffd4a1f2000-7ffd4a1f4000 r-xp 00000000 00:00 0                          [vdso]
`
	got := cleanReadOnlyMappings([]byte(smaps), exe)
	want := []mapping{{0x400000, 0x20da000}, {0x20da000, 0x4482000}, {0x45e0000, 0x45f0000}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %x, want %x (the writable mapping, the ones holding written pages and other files left out)", got, want)
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

// mapExecutable reads the executable's clean read-only mappings through
// /proc/self/mem, which maps every page of them in, as start-up does.
func mapExecutable(t *testing.T) {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	page := make([]byte, 1)
	for _, m := range cleanReadOnlyMappings(smaps, exe) {
		for at := m.start; at < m.end; at += 4096 {
			if _, err := mem.ReadAt(page, int64(at)); err != nil {
				t.Fatalf("reading the executable's page at %#x: %v", at, err)
			}
		}
	}
}

func TestReleaseExecutablePagesShrinksTheResidentSet(t *testing.T) {
	mapExecutable(t)
	before := rssFile(t)
	covered, err := releaseExecutablePages()
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
