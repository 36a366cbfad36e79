package targets

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/podlb/podlb/providers"
)

// A cloud outage fails every retry with a message that varies (zones
// answer in any order, the reason alternates): the Service gets one
// SyncFailed Warning for the streak, and one again only for a new streak
// after a success.
func TestTransientFailureStreakWarnsOnce(t *testing.T) {
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80}
	rec := record.NewFakeRecorder(100)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: rec}
	ps := &pass{key: key, svcRef: &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}}
	outage := []error{
		errors.New("zone a: backendError; zone b: internalError"),
		errors.New("zone b: internalError; zone a: backendError"),
		errors.New("zone a: internalError; zone b: internalError"),
		errors.New("zone b: backendError; zone a: internalError"),
		errors.New("zone a: backendError; zone b: backendError"),
		errors.New("zone b: internalError; zone a: internalError"),
	}
	warnings := func() []string {
		var out []string
		for {
			select {
			case e := <-rec.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	for _, err := range outage {
		if _, ferr := r.fail(context.Background(), ps, err); ferr != nil {
			t.Fatal(ferr)
		}
	}
	if ws := warnings(); len(ws) != 1 || !strings.HasPrefix(ws[0], "Warning SyncFailed gcp port 80: ") {
		t.Fatalf("one outage of %d failed retries gave Warnings %q, want one SyncFailed", len(outage), ws)
	}
	r.resetFailures(key) // a success ends the streak
	for _, err := range outage[:3] {
		_, _ = r.fail(context.Background(), ps, err)
	}
	if ws := warnings(); len(ws) != 1 {
		t.Fatalf("a second outage gave Warnings %q, want one", ws)
	}
}
