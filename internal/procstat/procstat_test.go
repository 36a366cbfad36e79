package procstat

import (
	"runtime"
	"testing"
)

func TestParseReadsAFieldInBytes(t *testing.T) {
	status := "Name:\tpodlb\nVmRSS:\t  140000 kB\nRssAnon:\t  113664 kB\nRssFile:\t   25600 kB\n"
	for field, want := range map[string]int64{"RssAnon": 113664 << 10, "RssFile": 25600 << 10, "VmRSS": 140000 << 10} {
		if got, err := parse(status, field); err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", field, got, err, want)
		}
	}
	if _, err := parse(status, "RssShmem"); err == nil {
		t.Error("a field the status lacks read without an error")
	}
	if _, err := parse("RssFile:\n", "RssFile"); err == nil {
		t.Error("a field without a figure read without an error")
	}
}

func TestBytesReadsThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	if rss, err := Bytes("self", "VmRSS"); err != nil || rss <= 0 {
		t.Errorf("this process's VmRSS: %d, %v", rss, err)
	}
}
