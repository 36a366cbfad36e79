package gcp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podlb/podlb/providers"
)

// Expired groups are renewed with one list of backend services and one of
// health checks, not reads of each, and a group whose backend service or
// health check changed meanwhile is resolved in full: its new draining
// timeout or judge delay is seen.
func TestExpiredGroupsAreRenewedWithOneList(t *testing.T) {
	const n = 12
	e := newEnv(t)
	const ttl = 5 * time.Minute
	clock := clocktesting.NewFakeClock(time.Now())
	p, err := New(e.ctx, Options{Cluster: cluster, Project: project, Endpoint: e.srv.URL(),
		Limits: providers.Unthrottled(DefaultLimits()), GroupCacheTTL: ttl, clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	e.p = p
	bindings := make([]*providers.Binding, n)
	for i := range bindings {
		name := fmt.Sprintf("web-%02d", i)
		e.backendService(name, "TCP", 30)
		b := binding(`{"backendService":"`+name+`"}`, zones3[:1]...)
		b.Key.Service = name
		bindings[i] = b
		if g := e.ensure(b); !g.Serving || g.JudgeDelay != 10*time.Second {
			t.Fatalf("%s: serving %v (%s), judge delay %s; want serving, 10 s (2 checks 5 s apart)", name, g.Serving, g.NotServingWhy, g.JudgeDelay)
		}
	}

	// Adding the NEGs as backends changed every backend service, so the
	// first expiry reads each again; from then on they are renewed.
	clock.Step(ttl + ttl/5 + time.Second)
	for _, b := range bindings {
		e.ensure(b)
	}

	// While cached, one backend service changes its draining timeout.
	changed := bindings[5]
	bs := e.getBS(changed.Key.Service)
	e.done(e.bs.Patch(project, changed.Key.Service, &compute.BackendService{Fingerprint: bs.Fingerprint,
		ConnectionDraining: &compute.ConnectionDraining{DrainingTimeoutSec: 60}}).Context(e.ctx).Do())
	// Another's health check comes to judge in 3 checks 7 s apart.
	slower := bindings[8]
	e.done(e.hcs.Patch(project, slower.Key.Service+"-hc", &compute.HealthCheck{CheckIntervalSec: 7, TimeoutSec: 5, HealthyThreshold: 3}).Context(e.ctx).Do())
	// A third's comes to call an endpoint that stops answering unhealthy
	// after 4 checks rather than 2, judging one that starts as before.
	patient := bindings[9]
	e.done(e.hcs.Patch(project, patient.Key.Service+"-hc", &compute.HealthCheck{UnhealthyThreshold: 4}).Context(e.ctx).Do())

	clock.Step(ttl + ttl/5 + time.Second) // every entry has expired; none expires again
	before := e.srv.Stats()
	for _, b := range bindings {
		g := e.ensure(b)
		drain, judge, fail := int64(30), 10*time.Second, 10*time.Second
		switch b {
		case changed:
			drain = 60
		case slower:
			judge, fail = 21*time.Second, 14*time.Second
		case patient:
			fail = 20 * time.Second
		}
		if g.DrainSeconds != drain || g.JudgeDelay != judge || g.FailDelay != fail || !strings.Contains(g.Ref, b.Key.Service) {
			t.Errorf("%s: group %s drains %d s and judges in %s / %s, want %d s and %s / %s", b.Key.Service, g.Ref, g.DrainSeconds, g.JudgeDelay, g.FailDelay, drain, judge, fail)
		}
	}
	after := e.srv.Stats()
	calls := map[string]int64{}
	for m, s := range after.Methods {
		if d := s.Calls - before.Methods[m].Calls; d > 0 {
			calls[m] = d
		}
	}
	opHCGet, opHCList := healthChecks.op(scope{}, "get"), healthChecks.op(scope{}, "list")
	// One list of each renews the unchanged groups; the three changed
	// ones are read again in full.
	if calls[opBSList] != 1 || calls[opHCList] != 1 || calls[opBSGet] != 3 || calls[opHCGet] != 3 || len(calls) != 4 {
		t.Errorf("calls for %d expired groups: %v; want one %s and one %s, three %s and three %s", n, calls, opBSList, opHCList, opBSGet, opHCGet)
	}
}

// After a start, one list of every NEG answers the first Ensure of every
// binding whose NEGs it holds, not one list per batch of waiting
// look-ups; a binding that lost a zone's NEG before the start makes it
// again.
func TestStartLooksUpNEGsWithOneList(t *testing.T) {
	const n = 24
	e := newEnv(t)
	bindings := make([]*providers.Binding, n)
	for i := range bindings {
		b := binding(`{}`, zones3[:2]...)
		b.Key.Service = fmt.Sprintf("web-%02d", i)
		bindings[i] = b
		e.ensure(b)
	}
	gone := bindings[n-1]
	e.done(e.neg.Delete(project, zones3[1], NEGName(cluster, gone.Key)).Context(e.ctx).Do())

	// A restart: a new provider, every binding ensured at once, a few at
	// a time as the controller's workers would.
	p, err := New(e.ctx, Options{Cluster: cluster, Project: project, Endpoint: e.srv.URL(), Limits: providers.Unthrottled(DefaultLimits())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	before := e.srv.Stats()
	work := make(chan *providers.Binding)
	errs := make(chan error, n)
	for range 4 {
		go func() {
			for b := range work {
				g, err := p.Ensure(e.ctx, b)
				if err == nil && len(g.Provider.(*groupState).zones) != 2 {
					err = fmt.Errorf("%s: zones %v", b.Key.Service, g.Provider.(*groupState).zones)
				}
				errs <- err
			}
		}()
	}
	for _, b := range bindings[:n-1] {
		work <- b
	}
	work <- gone
	close(work)
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	after := e.srv.Stats()
	lists := after.Methods[opNEGAggregated].Calls - before.Methods[opNEGAggregated].Calls
	inserts := after.Methods[opNEGInsert].Calls - before.Methods[opNEGInsert].Calls
	if lists != 1 {
		t.Errorf("%d NEG lists for %d bindings, want 1", lists, n)
	}
	if inserts != 1 {
		t.Errorf("%d NEG inserts, want 1 (the NEG deleted meanwhile)", inserts)
	}
}

// The list of every NEG is dropped once it is stale, and only the list
// it was made for: a later list stays while it is fresh.
func TestListOfEveryNEGIsDroppedWhenStale(t *testing.T) {
	p := &Provider{opts: Options{Cluster: cluster}}
	ours := map[string]map[string]*compute.NetworkEndpointGroup{
		"neg-a": {zones3[0]: {Name: "neg-a", Description: Description(cluster, binding(`{}`).Key)}},
	}
	held := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.listed.byName)
	}
	older := time.Now().Add(-listedFor + 50*time.Millisecond)
	p.keepListed(older, ours)
	if held() != 1 {
		t.Fatalf("the list holds %d names, want 1", held())
	}
	for deadline := time.Now().Add(5 * time.Second); held() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the list still holds %d names %v after it went stale", held(), time.Since(older))
		}
	}

	p.keepListed(time.Now().Add(-listedFor+50*time.Millisecond), ours)
	p.keepListed(time.Now(), ours)
	time.Sleep(200 * time.Millisecond)
	if held() != 1 {
		t.Errorf("a fresh list was dropped with the stale one before it")
	}
}
