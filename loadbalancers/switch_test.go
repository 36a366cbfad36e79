package loadbalancers

import (
	"strings"
	"testing"

	"github.com/podlb/podlb/targets"
)

func TestHoldSwitchesKeepsARouteOnItsBackendUntilTheNewOneServes(t *testing.T) {
	web := Backend{Namespace: "shop", Service: "web", Port: 80}
	api := Backend{Namespace: "shop", Service: "api", Port: 80}
	api2 := Backend{Namespace: "shop", Service: "api2", Port: 80}
	model := func(def *Backend, routes ...Route) *HTTPLoadBalancer {
		lb := &HTTPLoadBalancer{Routes: routes, DefaultBackend: def}
		lb.Backends = distinctBackends(lb)
		return lb
	}
	route := func(path string, be Backend) Route {
		return Route{Host: "shop.example.com", Path: path, PathType: Prefix, Backend: be}
	}
	routed := model(&web, route("/api", api), route("/", web))
	cur := model(&api2, route("/api", api2), route("/", web), route("/new", api2))

	serving := map[string]bool{web.String(): true, api.String(): true}
	got, held := HoldSwitches(cur, routed, func(be Backend) bool { return serving[be.String()] })
	if r := got.Routes[0]; !r.Backend.same(api) || r.Warming == nil || !r.Warming.same(api2) {
		t.Errorf("switched route: backend %s warming %v, want api warming api2", r.Backend, r.Warming)
	}
	if r := got.Routes[1]; !r.Backend.same(web) || r.Warming != nil {
		t.Errorf("unchanged route: backend %s warming %v", r.Backend, r.Warming)
	}
	// A new route has nowhere it went before.
	if r := got.Routes[2]; !r.Backend.same(api2) || r.Warming != nil {
		t.Errorf("new route: backend %s warming %v, want api2 at once", r.Backend, r.Warming)
	}
	if !got.DefaultBackend.same(web) || got.DefaultWarming == nil || !got.DefaultWarming.same(api2) {
		t.Errorf("default: %v warming %v, want web warming api2", got.DefaultBackend, got.DefaultWarming)
	}
	var ids []string
	for _, be := range got.Backends {
		ids = append(ids, be.String())
	}
	if strings.Join(ids, " ") != "shop/api:80 shop/api2:80 shop/web:80" {
		t.Errorf("backends %v: the old and the warming backend are both needed", ids)
	}
	if len(held) != 2 || !strings.Contains(held[0], "/api stays on shop/api:80 until shop/api2:80 serves") {
		t.Errorf("held %q", held)
	}
	if cur.Routes[0].Warming != nil || !cur.Routes[0].Backend.same(api2) {
		t.Error("HoldSwitches changed its input")
	}

	// Once the new backend serves, the switch goes through.
	serving[api2.String()] = true
	if got, held := HoldSwitches(cur, got, func(be Backend) bool { return serving[be.String()] }); got != cur || held != nil {
		t.Errorf("with api2 serving: held %q", held)
	}
	// An old backend that serves nothing is not worth waiting for.
	serving = map[string]bool{web.String(): true}
	if got, _ := HoldSwitches(cur, routed, func(be Backend) bool { return serving[be.String()] }); !got.Routes[0].Backend.same(api2) {
		t.Errorf("route held on a backend that does not serve: %s", got.Routes[0].Backend)
	}
	// Nothing routed yet: nothing to hold.
	if got, held := HoldSwitches(cur, nil, func(Backend) bool { return false }); got != cur || held != nil {
		t.Errorf("first pass held %q", held)
	}
}

func TestServesNeedsHalfTheTargetsHealthy(t *testing.T) {
	for _, c := range []struct {
		st   *targets.BindingStatus
		want bool
	}{
		{nil, false},
		{&targets.BindingStatus{Desired: 0, Healthy: 0}, false},
		{&targets.BindingStatus{Desired: 4, Healthy: 1}, false},
		{&targets.BindingStatus{Desired: 4, Healthy: 2}, true},
		{&targets.BindingStatus{Desired: 1, Healthy: 1}, true},
	} {
		if got := Serves(c.st); got != c.want {
			t.Errorf("Serves(%+v) = %v, want %v", c.st, got, c.want)
		}
	}
}
