package computesim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// GCE refills a spent rate quota at the start of the next synchronized
// interval, not one window after the first call: calls late in one
// window and early in the next both get their full quota.
func TestSynchronizedQuotaWindowsRefillOnTheClock(t *testing.T) {
	const window = time.Second
	e := newEnv(t, computesim.Options{RateLimits: map[string]int{"networkEndpointGroups.get": 3}, RateWindow: window, SynchronizedWindows: true})
	e.createNEG(zoneA, "neg", 80)
	get := func() error {
		_, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg"})
		return err
	}
	// Late in a window: the quota is spent, as it would be all window.
	time.Sleep(time.Until(time.Now().Truncate(window).Add(window + window*3/5)))
	for range 3 {
		if err := get(); err != nil {
			t.Fatal(err)
		}
	}
	err := get()
	expectErr(t, err, http.StatusForbidden, "rateLimitExceeded")
	// The next interval starts on the clock: the quota is back well before
	// a window has passed since the first call.
	time.Sleep(time.Until(time.Now().Truncate(window).Add(window + window/10)))
	for i := range 3 {
		if err := get(); err != nil {
			t.Fatalf("call %d at the start of the next interval: %v", i, err)
		}
	}
	expectErr(t, get(), http.StatusForbidden, "rateLimitExceeded")
}

// Unsynchronized windows (the default) start at the first call: the same
// calls late in one interval wait a whole window.
func TestUnsynchronizedQuotaWindowsFollowTheFirstCall(t *testing.T) {
	const window = time.Second
	e := newEnv(t, computesim.Options{RateLimits: map[string]int{"networkEndpointGroups.get": 3}, RateWindow: window})
	e.createNEG(zoneA, "neg", 80)
	get := func() error {
		_, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg"})
		return err
	}
	time.Sleep(time.Until(time.Now().Truncate(window).Add(window + window*3/5)))
	e.srv.SetRateWindow(window)
	for range 3 {
		if err := get(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Until(time.Now().Truncate(window).Add(window + window/10)))
	expectErr(t, get(), http.StatusForbidden, "rateLimitExceeded")
}

// Mutations beyond the concurrent operation limit answer 403
// rateLimitExceeded until operations finish; reads are not limited.
func TestConcurrentOperationsQuota(t *testing.T) {
	e := newEnv(t, computesim.Options{OperationDelay: 400 * time.Millisecond, MaxConcurrentOperations: 2})
	insert := func(name string) error {
		_, err := e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
			NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String(name), NetworkEndpointType: proto.String("GCE_VM_IP_PORT"),
				DefaultPort: proto.Int32(80), Network: proto.String("default")}})
		return err
	}
	if err := insert("neg-1"); err != nil {
		t.Fatal(err)
	}
	if err := insert("neg-2"); err != nil {
		t.Fatal(err)
	}
	err := insert("neg-3")
	expectErr(t, err, http.StatusForbidden, "rateLimitExceeded")
	if !strings.Contains(err.Error(), "Quota on concurrent operations exceeded for project "+project) {
		t.Fatalf("message: %v", err)
	}
	if _, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-1"}); err == nil || strings.Contains(err.Error(), "rateLimitExceeded") {
		t.Fatalf("a read while operations run: %v (want notFound: the insert is not done)", err)
	}
	refused := 1
	eventually(t, "operations done, quota free", 5*time.Second, func() bool {
		if insert("neg-3") != nil {
			refused++
			return false
		}
		return true
	})
	if st := e.srv.Stats().Methods["networkEndpointGroups.insert"]; st.RateLimited != int64(refused) {
		t.Errorf("stats count %d rate-limited inserts, want %d", st.RateLimited, refused)
	}
}
