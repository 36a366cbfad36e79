package loadgen

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The failure span covers every failed request, also those past the
// first ones kept for messages.
func TestFailureSpanCoversEveryFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pod")) }))
	l := Start(strings.TrimPrefix(srv.URL, "http://"), 1, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	closing := time.Now()
	srv.Close()
	for l.Snapshot().Failed <= maxErrors {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	r := l.Stop()
	if r.OK == 0 || r.Backends["pod"] != r.OK {
		t.Fatalf("before the close: %d ok, backends %v", r.OK, r.Backends)
	}
	if len(r.Failures) != maxErrors {
		t.Fatalf("%d failures kept, want %d", len(r.Failures), maxErrors)
	}
	if r.FirstFailure.Before(closing) || !r.FirstFailure.Equal(r.Failures[0].At) {
		t.Errorf("first failure at %v, server closing at %v, first kept at %v", r.FirstFailure, closing, r.Failures[0].At)
	}
	if !r.LastFailure.After(r.Failures[maxErrors-1].At) {
		t.Errorf("last failure at %v, not after the last kept (%v) of %d failures", r.LastFailure, r.Failures[maxErrors-1].At, r.Failed)
	}
}
