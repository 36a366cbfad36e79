package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/gcp/computesim"
)

const (
	project = "sim-project"
	cluster = "test-cluster"
)

var zones3 = []string{"us-central1-a", "us-central1-b", "us-central1-c"}

// env is an emulator, a provider pointed at it, and Compute services of
// their own for arranging and inspecting the cloud behind the provider's
// back.
type env struct {
	t   *testing.T
	ctx context.Context
	srv *computesim.Server
	p   *Provider
	svc *compute.Service
	bs  *compute.BackendServicesService
	hcs *compute.HealthChecksService
	neg *compute.NetworkEndpointGroupsService
}

func newEnv(t *testing.T) *env { return newEnvWith(t, nil) }

// newEnvWith lets mutate adjust the emulator's options.
func newEnvWith(t *testing.T, mutate func(*computesim.Options)) *env {
	t.Helper()
	o := computesim.Options{
		Project:             project,
		HealthCheckInterval: 20 * time.Millisecond,
		HealthCheckTimeout:  100 * time.Millisecond,
		DrainingTimeout:     300 * time.Millisecond,
		OperationDelay:      2 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&o)
	}
	srv, err := computesim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, srv: srv}
	e.p = e.provider(srv.URL())
	if e.svc, err = testService(ctx, srv); err != nil {
		t.Fatal(err)
	}
	e.bs, e.hcs, e.neg = e.svc.BackendServices, e.svc.HealthChecks, e.svc.NetworkEndpointGroups
	for _, z := range zones3 {
		if err := srv.AddInstance(z, vm(z), "127.0.0.1", "127.0.0.0/8"); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// provider is a provider pointed at endpoint, unthrottled, closed with
// the test.
func (e *env) provider(endpoint string) *Provider {
	e.t.Helper()
	p, err := New(e.ctx, Options{Cluster: cluster, Project: project, Endpoint: endpoint, Limits: providers.Unthrottled(DefaultLimits())})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = p.Close() })
	return p
}

func vm(zone string) string { return "node-" + zone[len(zone)-1:] }

// done waits for an operation to end and fails the test if it or the
// call that started it failed.
func (e *env) done(op *compute.Operation, err error) {
	e.t.Helper()
	if err := waitOp(e.ctx, e.svc, op, err); err != nil {
		e.t.Fatal(err)
	}
}

// testService is a Compute service of the test's own on the emulator.
func testService(ctx context.Context, srv *computesim.Server) (*compute.Service, error) {
	return compute.NewService(ctx, option.WithEndpoint(srv.URL()+"/compute/v1/"), option.WithoutAuthentication())
}

// waitOp waits for an operation with its scope's wait method and returns
// its failure, or that of the call that started it.
func waitOp(ctx context.Context, svc *compute.Service, op *compute.Operation, err error) error {
	ops := &clients{zops: svc.ZoneOperations, rops: svc.RegionOperations, gops: svc.GlobalOperations}
	for err == nil && op.Status != "DONE" {
		op, err = ops.waitOnce(ctx, project, op)
	}
	if err != nil {
		return err
	}
	return opError(op)
}

// apply applies a plan as a pass does, then waits for the attach
// operations it left to be followed (see Apply), so that the emulator
// shows their result. What they left for the next Apply is returned as
// that Apply would return it, and kept.
func (e *env) apply(g *providers.Group, plan providers.Plan) error {
	err := e.p.Apply(e.ctx, g, plan)
	e.p.followers.Wait()
	if err != nil {
		return err
	}
	e.p.mu.Lock()
	negs := slices.Collect(maps.Values(e.p.negs))
	e.p.mu.Unlock()
	refused := map[providers.TargetKey]error{}
	for _, ns := range negs {
		ns.mu.Lock()
		failed := ns.failed
		for k, r := range ns.refused {
			refused[k] = r.err
		}
		ns.mu.Unlock()
		if failed != nil {
			return failed
		}
	}
	if len(refused) > 0 {
		return &providers.TargetErrors{Failed: refused}
	}
	return nil
}

// backendService creates a health check and a backend service of the
// protocol (TCP or HTTP) without backends.
func (e *env) backendService(name, protocol string, drainSec int32) {
	e.t.Helper()
	hc := &compute.HealthCheck{Name: name + "-hc", Type: protocol,
		HealthyThreshold: 2, UnhealthyThreshold: 2}
	if protocol == "TCP" {
		hc.TcpHealthCheck = &compute.TCPHealthCheck{PortSpecification: "USE_SERVING_PORT"}
	} else {
		hc.HttpHealthCheck = &compute.HTTPHealthCheck{PortSpecification: "USE_SERVING_PORT", RequestPath: "/"}
	}
	e.done(e.hcs.Insert(project, hc).Context(e.ctx).Do())
	e.done(e.bs.Insert(project, &compute.BackendService{
		Name: name, Protocol: protocol,
		HealthChecks:       []string{"global/healthChecks/" + name + "-hc"},
		ConnectionDraining: &compute.ConnectionDraining{DrainingTimeoutSec: int64(drainSec)},
	}).Context(e.ctx).Do())
}

func (e *env) getBS(name string) *compute.BackendService {
	e.t.Helper()
	bs, err := e.bs.Get(project, name).Context(e.ctx).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	return bs
}

func backendZones(bs *compute.BackendService) map[string]*compute.Backend {
	out := map[string]*compute.Backend{}
	for _, b := range bs.Backends {
		path := resourcePath(b.Group)
		out[lastSegment(path[:len(path)-len("/networkEndpointGroups/")-len(lastSegment(path))])+"/"+lastSegment(path)] = b
	}
	return out
}

func (e *env) negExists(zone, name string) (*compute.NetworkEndpointGroup, bool) {
	n, err := e.neg.Get(project, zone, name).Context(e.ctx).Do()
	if err != nil {
		if !isCode(err, 404) {
			e.t.Fatal(err)
		}
		return nil, false
	}
	return n, true
}

func binding(spec string, zones ...string) *providers.Binding {
	s, err := ParseSpec(json.RawMessage(spec))
	if err != nil {
		panic(err)
	}
	return &providers.Binding{
		Key:     providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80},
		Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy,
		Spec: s, Zones: zones,
	}
}

func (e *env) ensure(b *providers.Binding) *providers.Group {
	e.t.Helper()
	g, err := e.p.Ensure(e.ctx, b)
	if err != nil {
		e.t.Fatalf("Ensure: %v", err)
	}
	return g
}

func (e *env) observe(g *providers.Group) map[providers.TargetKey]providers.Observed {
	e.t.Helper()
	obs, err := e.p.Observe(e.ctx, g)
	if err != nil {
		e.t.Fatalf("Observe: %v", err)
	}
	return byKey(obs)
}

// byKey indexes an observation by target, a draining record of a target
// winning over another.
func byKey(obs []providers.Observed) map[providers.TargetKey]providers.Observed {
	out := map[providers.TargetKey]providers.Observed{}
	for _, o := range obs {
		if prev, dup := out[o.Key()]; dup && prev.State != providers.Draining {
			continue
		}
		out[o.Key()] = o
	}
	return out
}

func (e *env) calls(method string) int64 { return e.srv.Stats().Methods[method].Calls }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantClass(t *testing.T, err error, class providers.Class, field string) {
	t.Helper()
	var pe *providers.Error
	if err == nil || !errors.As(err, &pe) || providers.ClassOf(err) != class || pe.Field != field {
		t.Fatalf("got %v, want a %s error naming field %q", err, class, field)
	}
}

// tcpListener is a real backend on a loopback address.
func tcpListener(t *testing.T, ip string) (int32, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, ip+"\n")
			_ = c.Close()
		}
	}()
	var once atomic.Bool
	stop := func() {
		if once.CompareAndSwap(false, true) {
			_ = ln.Close()
		}
	}
	t.Cleanup(stop)
	return int32(ln.Addr().(*net.TCPAddr).Port), stop
}

func target(ip string, port int32, zone string) providers.Target {
	return providers.Target{IP: netip.MustParseAddr(ip), Port: port, Zone: zone, Node: vm(zone), Instance: vm(zone)}
}

func TestEnsureCreatesZonalNEGsAsBackends(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 30)
	b := binding(`{"backendService":"web"}`, zones3...)
	g := e.ensure(b)
	name := NEGName(cluster, b.Key)
	if g.Ref != name+"|projects/"+project+"/global/backendServices/web" || !g.Owned || !g.Created || !g.Serving || g.DrainSeconds != 30 {
		t.Fatalf("group %+v", g)
	}
	if g.Status["zones"] != "us-central1-a,us-central1-b,us-central1-c" || g.Status["negs"] != name {
		t.Fatalf("status %v", g.Status)
	}
	for _, z := range zones3 {
		n, ok := e.negExists(z, name)
		if !ok || !OwnedBy(n.Description, cluster, b.Key) || n.NetworkEndpointType != "GCE_VM_IP_PORT" {
			t.Fatalf("zone %s: NEG %v", z, n)
		}
	}
	backs := backendZones(e.getBS("web"))
	for _, z := range zones3 {
		bk := backs[z+"/"+name]
		if bk.BalancingMode != "CONNECTION" || bk.MaxConnectionsPerEndpoint != DefaultMaxConnectionsPerEndpoint {
			t.Fatalf("zone %s backend %v", z, bk)
		}
	}

	// Nothing changed: no calls at all.
	before := e.srv.Stats()
	g2 := e.ensure(b)
	if g2.Created || g2.Ref != g.Ref {
		t.Fatalf("second Ensure: %+v", g2)
	}
	after := e.srv.Stats()
	for m, s := range after.Methods {
		if s.Calls != before.Methods[m].Calls {
			t.Errorf("cached Ensure called %s", m)
		}
	}
}

func TestHTTPBackendServiceDefaultsToRate(t *testing.T) {
	e := newEnv(t)
	e.backendService("api", "HTTP", 0)
	b := binding(`{"backendService":"api","capacityScaler":0.5}`, zones3[:1]...)
	g := e.ensure(b)
	bk := backendZones(e.getBS("api"))[zones3[0]+"/"+NEGName(cluster, b.Key)]
	if bk.BalancingMode != "RATE" || bk.MaxRatePerEndpoint != DefaultMaxRatePerEndpoint || bk.CapacityScaler != 0.5 || !g.Serving {
		t.Fatalf("backend %v", bk)
	}
	// A stated rate is enforced on the existing backend.
	g = e.ensure(binding(`{"backendService":"api","balancingMode":"RATE","maxRatePerEndpoint":7}`, zones3[:1]...))
	bk = backendZones(e.getBS("api"))[zones3[0]+"/"+NEGName(cluster, b.Key)]
	if bk.MaxRatePerEndpoint != 7 || bk.CapacityScaler != 0.5 {
		t.Fatalf("backend after change %v", bk)
	}
}

// The JSON client leaves zero values out of a request unless told to
// send them. A capacityScaler of 0 (no new traffic) must survive podlb's
// writes of the backend list, on a backend of another tool's as on its
// own, and a scaler that a 32-bit float cannot hold exactly must not be
// written again on every pass.
func TestCapacityScalerZeroSurvivesBackendWrites(t *testing.T) {
	e := newEnv(t)
	e.backendService("api", "HTTP", 0)
	e.done(e.neg.Insert(project, zones3[0], &compute.NetworkEndpointGroup{Name: "theirs"}).Context(e.ctx).Do())
	e.done(e.bs.Patch(project, "api", &compute.BackendService{
		Fingerprint: e.getBS("api").Fingerprint,
		Backends: []*compute.Backend{{Group: "zones/" + zones3[0] + "/networkEndpointGroups/theirs",
			BalancingMode: "RATE", MaxRatePerEndpoint: 1, ForceSendFields: []string{"CapacityScaler"}}},
	}).Context(e.ctx).Do())
	if theirs := backendZones(e.getBS("api"))[zones3[0]+"/theirs"]; theirs == nil || theirs.CapacityScaler != 0 {
		t.Fatalf("setup: %+v", theirs)
	}
	b := binding(`{"backendService":"api","capacityScaler":0}`, zones3[:2]...)
	e.ensure(b)
	backends := backendZones(e.getBS("api"))
	if theirs := backends[zones3[0]+"/theirs"]; theirs.CapacityScaler != 0 {
		t.Errorf("the other tool's backend: capacityScaler %v, want 0 as it was", theirs.CapacityScaler)
	}
	for _, zone := range zones3[:2] {
		if ours := backends[zone+"/"+NEGName(cluster, b.Key)]; ours == nil || ours.CapacityScaler != 0 {
			t.Errorf("%s: podlb's backend %+v, want capacityScaler 0", zone, ours)
		}
	}
	// 0.3 is no 32-bit float: once written, it reads back as what Compute
	// keeps, and the next Ensure writes nothing.
	e.ensure(binding(`{"backendService":"api","capacityScaler":0.3}`, zones3[:2]...))
	if ours := backendZones(e.getBS("api"))[zones3[0]+"/"+NEGName(cluster, b.Key)]; float32(ours.CapacityScaler) != 0.3 {
		t.Fatalf("podlb's backend: capacityScaler %v, want 0.3", ours.CapacityScaler)
	}
	e.p.invalidate(b.Key, false) // read the backend service again
	e.srv.ResetStats()
	e.ensure(binding(`{"backendService":"api","capacityScaler":0.3}`, zones3[:2]...))
	if n := e.srv.Stats().Methods["backendServices.get"].Calls; n == 0 {
		t.Fatal("the Ensure after invalidate did not read the backend service")
	}
	if n := e.srv.Stats().Methods["backendServices.patch"].Calls; n != 0 {
		t.Errorf("%d backend writes for a scaler already set, want 0", n)
	}
	if theirs := backendZones(e.getBS("api"))[zones3[0]+"/theirs"]; theirs.CapacityScaler != 0 {
		t.Errorf("after the second write the other tool's backend has capacityScaler %v", theirs.CapacityScaler)
	}
}

func TestApplyAttachesInBatchesAndReportsUnused(t *testing.T) {
	e := newEnv(t)
	b := binding(`{"name":"bulk"}`, zones3...)
	g := e.ensure(b)
	if g.Serving || g.NotServingWhy != "NEG is in no backend service" {
		t.Fatalf("group %+v", g)
	}
	var plan providers.Plan
	perZone := map[string]int{zones3[0]: 700, zones3[1]: 300, zones3[2]: 200}
	i := 0
	for _, z := range zones3 {
		for n := 0; n < perZone[z]; n++ {
			i++
			plan.Register = append(plan.Register, target(fmt.Sprintf("127.1.%d.%d", i/250, i%250+1), 8080, z))
		}
	}
	e.srv.ResetStats()
	if err := e.apply(g, plan); err != nil {
		t.Fatal(err)
	}
	st := e.srv.Stats().Methods["networkEndpointGroups.attachNetworkEndpoints"]
	if st.Calls != 4 || st.Endpoints != 1200 || st.MaxEndpointsCall > 500 || st.Errors != 0 {
		t.Fatalf("attach stats %+v", st)
	}
	for _, z := range zones3 {
		if got := len(e.srv.Endpoints(z, "bulk")); got != perZone[z] {
			t.Fatalf("zone %s has %d endpoints", z, got)
		}
	}
	obs := e.observe(g)
	if len(obs) != 1200 {
		t.Fatalf("observed %d", len(obs))
	}
	for _, o := range obs {
		if o.State != providers.Unused || o.Reason != "NEG is in no backend service" || o.Instance != vm(o.Zone) {
			t.Fatalf("observed %+v", o)
		}
	}
	// Detach everything, using what Observe reported.
	plan = providers.Plan{}
	for _, o := range obs {
		plan.Deregister = append(plan.Deregister, o.Target)
	}
	if err := e.apply(g, plan); err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Stats().Methods["networkEndpointGroups.detachNetworkEndpoints"]; st.Calls != 4 || st.MaxEndpointsCall > 500 {
		t.Fatalf("detach stats %+v", st)
	}
	if obs := e.observe(g); len(obs) != 0 {
		t.Fatalf("%d left", len(obs))
	}
}

func TestObservePendingHealthyUnhealthyAndDetached(t *testing.T) {
	e := newEnv(t)
	e.backendService("tcp", "TCP", 10)
	b := binding(`{"backendService":"tcp"}`, zones3...)
	g := e.ensure(b)
	var plan providers.Plan
	stops := map[string]func(){}
	for i, z := range zones3 {
		ip := fmt.Sprintf("127.0.20.%d", i+1)
		port, stop := tcpListener(t, ip)
		stops[ip] = stop
		plan.Register = append(plan.Register, target(ip, port, z))
	}
	if err := e.apply(g, plan); err != nil {
		t.Fatal(err)
	}
	obs := e.observe(g)
	if len(obs) != 3 {
		t.Fatalf("observed %v", obs)
	}
	for _, o := range obs {
		if o.State != providers.Pending && o.State != providers.Healthy {
			t.Fatalf("just attached: %+v", o)
		}
		if o.Group != "zones/"+o.Zone+"/networkEndpointGroups/"+NEGName(cluster, b.Key) {
			t.Fatalf("group %q", o.Group)
		}
	}
	eventually(t, "all healthy", func() bool {
		for _, o := range e.observe(g) {
			if o.State != providers.Healthy || o.CloudState != "HEALTHY" {
				return false
			}
		}
		return true
	})
	// Steady polling costs one getHealth per zone and nothing else.
	before := e.srv.Stats()
	e.observe(g)
	after := e.srv.Stats()
	for m, s := range after.Methods {
		want := before.Methods[m].Calls
		if m == "backendServices.getHealth" {
			want += 3
		}
		if s.Calls != want {
			t.Errorf("%s: %d calls, want %d", m, s.Calls-before.Methods[m].Calls, want-before.Methods[m].Calls)
		}
	}

	failing := plan.Register[0]
	stops[failing.IP.String()]()
	eventually(t, "unhealthy", func() bool { return e.observe(g)[failing.Key()].State == providers.Unhealthy })

	leaving := plan.Register[1]
	if err := e.apply(g, providers.Plan{Deregister: []providers.Target{leaving}}); err != nil {
		t.Fatal(err)
	}
	// getHealth answers HEALTHY and UNHEALTHY only: a detached endpoint
	// drains unseen, so it is gone from the observation at once (the core
	// counts it as draining from its own deregistration).
	if o, ok := e.observe(g)[leaving.Key()]; ok {
		t.Fatalf("detached, still observed: %+v", o)
	}
}

// The targets of one zone share the words of their health state: an
// observation is kept until the next, and ten thousand targets would
// each keep a copy.
func TestObservedTargetsShareTheirWords(t *testing.T) {
	e := newEnv(t)
	e.backendService("tcp", "TCP", 10)
	g := e.ensure(binding(`{"backendService":"tcp"}`, zones3...))
	var plan providers.Plan
	for i := range 3 {
		ip := fmt.Sprintf("127.0.21.%d", i+1)
		port, stop := tcpListener(t, ip)
		t.Cleanup(stop)
		plan.Register = append(plan.Register, target(ip, port, zones3[0]))
	}
	if err := e.apply(g, plan); err != nil {
		t.Fatal(err)
	}
	var obs map[providers.TargetKey]providers.Observed
	eventually(t, "all healthy", func() bool {
		obs = e.observe(g)
		for _, tg := range plan.Register {
			if obs[tg.Key()].State != providers.Healthy {
				return false
			}
		}
		return true
	})
	first := obs[plan.Register[0].Key()]
	for _, tg := range plan.Register[1:] {
		o := obs[tg.Key()]
		if o.Reason != first.Reason || unsafe.StringData(o.Reason) != unsafe.StringData(first.Reason) ||
			unsafe.StringData(o.CloudState) != unsafe.StringData(first.CloudState) {
			t.Fatalf("%v holds its own copy of the zone's words (%q, %q)", tg.Key(), o.CloudState, o.Reason)
		}
	}
}

// Endpoints on one VM share one copy of its name, and none keeps the URL
// it was cut from.
func TestInstanceNamesAreSharedCopies(t *testing.T) {
	url := func() string {
		return strings.Join([]string{"https://compute.googleapis.com/compute/v1/projects/p/zones", zones3[0], "instances", "vm-7"}, "/")
	}
	a, b := url(), url()
	na, nb := instanceName(a), instanceName(b)
	if na != "vm-7" || nb != "vm-7" {
		t.Fatalf("names %q, %q", na, nb)
	}
	if unsafe.StringData(na) != unsafe.StringData(nb) {
		t.Fatal("two endpoints on one VM hold two copies of its name")
	}
	for _, u := range []string{a, b} {
		start := uintptr(unsafe.Pointer(unsafe.StringData(u)))
		if at := uintptr(unsafe.Pointer(unsafe.StringData(na))); at >= start && at < start+uintptr(len(u)) {
			t.Fatal("the name is a slice of the URL, which it keeps alive")
		}
	}
	if instanceName("vm-8") != "vm-8" {
		t.Fatal("a bare name must stay as it is")
	}
}

func TestForeignNEGIsNeverTouched(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	b := binding(`{"name":"shared","backendService":"web"}`, zones3...)
	e.done(e.neg.Insert(project, zones3[1], &compute.NetworkEndpointGroup{Name: "shared", Description: "made by hand"}).Context(e.ctx).Do())
	_, err := e.p.Ensure(e.ctx, b)
	wantClass(t, err, providers.Invalid, "name")
	if len(e.getBS("web").Backends) != 0 {
		t.Fatal("a backend was added despite the foreign NEG")
	}
	if n, ok := e.negExists(zones3[1], "shared"); !ok || n.Description != "made by hand" {
		t.Fatal("foreign NEG changed")
	}
	// Another cluster's NEG of the same name is foreign too.
	other := e.p.opts
	other.Cluster = "other"
	p2, err := New(e.ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.Ensure(e.ctx, binding(`{"name":"mine"}`, zones3[0])); err != nil {
		t.Fatal(err)
	}
	_, err = e.p.Ensure(e.ctx, binding(`{"name":"mine"}`, zones3[0]))
	wantClass(t, err, providers.Invalid, "name")
	// Release of our ref leaves both alone.
	if err := e.p.Release(e.ctx, b.Key, Ref("shared", "projects/"+project+"/global/backendServices/web"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Release(e.ctx, b.Key, Ref("mine", ""), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.negExists(zones3[1], "shared"); !ok {
		t.Fatal("Release deleted a foreign NEG")
	}
	if _, ok := e.negExists(zones3[0], "mine"); !ok {
		t.Fatal("Release deleted another cluster's NEG")
	}
}

func TestZoneWithoutNodesLosesItsNEG(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	b := binding(`{"backendService":"web"}`, zones3...)
	name := NEGName(cluster, b.Key)
	g := e.ensure(b)
	port, _ := tcpListener(t, "127.0.30.1")
	if err := e.apply(g, providers.Plan{Register: []providers.Target{target("127.0.30.1", port, zones3[0])}}); err != nil {
		t.Fatal(err)
	}
	// A target in a zone the binding does not know yet waits; the others
	// are attached.
	early := target("127.0.30.9", port, "us-central1-f")
	err := e.apply(g, providers.Plan{Register: []providers.Target{early, target("127.0.30.2", port, zones3[0])}})
	te, ok := providers.AsTargetErrors(err)
	if !ok || len(te.Failed) != 1 || !strings.Contains(te.Failed[early.Key()].Error(), `zone "us-central1-f"`) {
		t.Fatalf("got %v, want the target in us-central1-f refused", err)
	}
	wantClass(t, te.Failed[early.Key()], providers.Transient, "")
	if len(e.srv.Endpoints(zones3[0], name)) != 2 {
		t.Fatal("the target in a zone with a NEG was not attached")
	}

	g = e.ensure(binding(`{"backendService":"web"}`, zones3[:2]...))
	if _, ok := e.negExists(zones3[2], name); ok {
		t.Fatal("NEG of the zone without nodes still exists")
	}
	backs := backendZones(e.getBS("web"))
	if len(backs) != 2 || backs[zones3[2]+"/"+name] != nil || g.Status["zones"] != "us-central1-a,us-central1-b" {
		t.Fatalf("backends %v, status %v", backs, g.Status)
	}
	if len(e.srv.Endpoints(zones3[0], name)) != 2 {
		t.Fatal("a remaining zone lost its endpoints")
	}
	// The zone comes back.
	e.ensure(binding(`{"backendService":"web"}`, zones3...))
	if _, ok := e.negExists(zones3[2], name); !ok || len(backendZones(e.getBS("web"))) != 3 {
		t.Fatal("zone not restored")
	}
}

func TestReleaseRemovesOnlyOurs(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	b := binding(`{"backendService":"web"}`, zones3...)
	name := NEGName(cluster, b.Key)
	// A foreign backend in the same service, and a foreign NEG of our name
	// in a zone without nodes.
	e.done(e.neg.Insert(project, "us-central1-f", &compute.NetworkEndpointGroup{Name: name, Description: "not podlb"}).Context(e.ctx).Do())
	e.done(e.neg.Insert(project, zones3[0], &compute.NetworkEndpointGroup{Name: "legacy"}).Context(e.ctx).Do())
	bs := e.getBS("web")
	e.done(e.bs.Patch(project, "web", &compute.BackendService{
		Fingerprint: bs.Fingerprint,
		Backends: []*compute.Backend{{Group: "zones/" + zones3[0] + "/networkEndpointGroups/legacy",
			BalancingMode: "CONNECTION", MaxConnectionsPerEndpoint: 1}},
	}).Context(e.ctx).Do())
	g := e.ensure(b)
	port, _ := tcpListener(t, "127.0.40.1")
	if err := e.apply(g, providers.Plan{Register: []providers.Target{target("127.0.40.1", port, zones3[1])}}); err != nil {
		t.Fatal(err)
	}
	if len(e.getBS("web").Backends) != 4 {
		t.Fatal("setup")
	}
	if err := e.p.Release(e.ctx, b.Key, g.Ref, nil); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones3 {
		if _, ok := e.negExists(z, name); ok {
			t.Fatalf("our NEG in %s survived", z)
		}
	}
	backs := e.getBS("web").Backends
	if len(backs) != 1 || lastSegment(backs[0].Group) != "legacy" {
		t.Fatalf("backends after release: %v", backs)
	}
	if _, ok := e.negExists("us-central1-f", name); !ok {
		t.Fatal("foreign NEG deleted")
	}
	// Releasing again, or a service that is gone, succeeds.
	if err := e.p.Release(e.ctx, b.Key, g.Ref, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.p.Release(e.ctx, b.Key, Ref(name, "projects/"+project+"/global/backendServices/gone"), nil); err != nil {
		t.Fatal(err)
	}
}

func TestBackendServiceChangeReleasesTheOldOne(t *testing.T) {
	e := newEnv(t)
	e.backendService("old", "TCP", 0)
	e.backendService("new", "TCP", 0)
	old := e.ensure(binding(`{"backendService":"old"}`, zones3...))
	port, _ := tcpListener(t, "127.0.50.1")
	if err := e.apply(old, providers.Plan{Register: []providers.Target{target("127.0.50.1", port, zones3[0])}}); err != nil {
		t.Fatal(err)
	}
	b := binding(`{"backendService":"new"}`, zones3...)
	g := e.ensure(b)
	if g.Ref == old.Ref {
		t.Fatal("Ref did not change with the backend service")
	}
	// What the core does when Ref changes.
	if err := e.p.Release(e.ctx, b.Key, old.Ref, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(e.getBS("old").Backends); n != 0 {
		t.Fatalf("old service keeps %d backends", n)
	}
	if n := len(e.getBS("new").Backends); n != 3 {
		t.Fatalf("new service has %d backends", n)
	}
	name := NEGName(cluster, b.Key)
	if len(e.srv.Endpoints(zones3[0], name)) != 1 {
		t.Fatal("endpoints lost with the backend service change")
	}
	// A new NEG name deletes the old NEGs.
	renamed := e.ensure(binding(`{"name":"renamed","backendService":"new"}`, zones3...))
	if err := e.p.Release(e.ctx, b.Key, g.Ref, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.negExists(zones3[0], name); ok {
		t.Fatal("old NEG kept after rename")
	}
	backs := backendZones(e.getBS("new"))
	if len(backs) != 3 || backs[zones3[0]+"/renamed"] == nil {
		t.Fatalf("backends %v", backs)
	}
	if !renamed.Serving {
		t.Fatal("renamed group not serving")
	}
}

func TestEnsureErrorsNameTheField(t *testing.T) {
	e := newEnv(t)
	_, err := e.p.Ensure(e.ctx, binding(`{"backendService":"missing"}`, zones3...))
	wantClass(t, err, providers.NotFound, "backendService")
	_, err = e.p.Ensure(e.ctx, binding(`{"backendService":"regions/us-central1/backendServices/missing"}`, zones3...))
	wantClass(t, err, providers.NotFound, "backendService")

	e.backendService("tcp", "TCP", 0)
	_, err = e.p.Ensure(e.ctx, binding(`{"backendService":"tcp","balancingMode":"RATE","maxRatePerEndpoint":10}`, zones3...))
	wantClass(t, err, providers.Invalid, "balancingMode")
	e.backendService("http", "HTTP", 0)
	_, err = e.p.Ensure(e.ctx, binding(`{"backendService":"http","maxConnectionsPerEndpoint":10}`, zones3...))
	wantClass(t, err, providers.Invalid, "balancingMode")
}

func TestRateLimitedIsThrottled(t *testing.T) {
	e := newEnv(t)
	g := e.ensure(binding(`{}`, zones3[:1]...))
	e.srv.SetRateLimit("networkEndpointGroups.attachNetworkEndpoints", 0)
	err := e.apply(g, providers.Plan{Register: []providers.Target{target("127.0.60.1", 80, zones3[0])}})
	if providers.ClassOf(err) != providers.Throttled {
		t.Fatalf("got %v (%s)", err, providers.ClassOf(err))
	}
	e.srv.SetRateLimit("networkEndpointGroups.attachNetworkEndpoints", -1)
	if err := e.apply(g, providers.Plan{Register: []providers.Target{target("127.0.60.1", 80, zones3[0])}}); err != nil {
		t.Fatal(err)
	}
}

// A project at its concurrent operation limit refuses mutations with 403
// rateLimitExceeded: podlb backs off as for a spent rate quota, and the
// endpoints are attached once operations finish.
func TestConcurrentOperationLimitIsThrottled(t *testing.T) {
	// Operations last long enough that the three zones' attaches overlap
	// even on a loaded machine: with 300 ms, a stall between two calls
	// let the first finish and nothing was throttled.
	e := newEnvWith(t, func(o *computesim.Options) { o.OperationDelay = 2 * time.Second })
	g := e.ensure(binding(`{}`, zones3...))
	f := e.srv.Faults()
	f.MaxConcurrentOperations = 1
	e.srv.SetFaults(f)
	plan := providers.Plan{Register: []providers.Target{target("127.0.61.1", 80, zones3[0]), target("127.0.61.2", 80, zones3[1]), target("127.0.61.3", 80, zones3[2])}}
	err := e.apply(g, plan)
	if providers.ClassOf(err) != providers.Throttled {
		t.Fatalf("three zones' attaches at a limit of one operation: got %v (%s), want throttled", err, providers.ClassOf(err))
	}
	// The plan is sent again whole, as after any failed pass: zones already
	// attached must not spend the one operation slot on an attach that
	// fails with RESOURCE_ALREADY_EXISTS.
	eventually(t, "every endpoint attached once operations finish", func() bool {
		_ = e.apply(g, plan)
		return len(e.observe(g)) == 3
	})
	if st := e.srv.Stats().Methods["networkEndpointGroups.attachNetworkEndpoints"]; st.Operations != 3 || st.OperationsFailed != 0 {
		t.Fatalf("attach operations: %d, failed %d; want one per zone, none failed", st.Operations, st.OperationsFailed)
	}
}

func TestStaleFingerprintIsRetried(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	e.done(e.neg.Insert(project, zones3[0], &compute.NetworkEndpointGroup{Name: "theirs"}).Context(e.ctx).Do())
	raced := 0
	e.p.beforeBackendWrite = func() {
		if raced > 0 {
			return
		}
		raced++
		// Another tool adds its backend between podlb's read and write.
		bs := e.getBS("web")
		e.done(e.bs.Patch(project, "web", &compute.BackendService{
			Fingerprint: bs.Fingerprint,
			Backends: append(bs.Backends, &compute.Backend{Group: "zones/" + zones3[0] + "/networkEndpointGroups/theirs",
				BalancingMode: "CONNECTION", MaxConnectionsPerEndpoint: 1}),
		}).Context(e.ctx).Do())
	}
	g := e.ensure(binding(`{"backendService":"web"}`, zones3...))
	if !g.Serving || raced != 1 {
		t.Fatalf("group %+v, raced %d", g, raced)
	}
	if st := e.srv.Stats().Methods["backendServices.patch"]; st.Errors < 1 {
		t.Fatalf("no conflict happened: %+v", st)
	}
	if n := len(e.getBS("web").Backends); n != 4 {
		t.Fatalf("%d backends; the concurrent change was lost or ours not added", n)
	}
}

func TestAttachHealsAfterOthersAttachedTheSameEndpoint(t *testing.T) {
	e := newEnv(t)
	b := binding(`{"name":"heal"}`, zones3[:1]...)
	g := e.ensure(b)
	e.observe(g) // learn the (empty) NEG
	// Someone attaches one of our endpoints behind podlb's back: the
	// attach operation fails as a whole, podlb lists and retries the rest.
	e.done(e.neg.AttachNetworkEndpoints(project, zones3[0], "heal", &compute.NetworkEndpointGroupsAttachEndpointsRequest{NetworkEndpoints: []*compute.NetworkEndpoint{
		{IpAddress: "127.0.70.1", Port: 80, Instance: vm(zones3[0])},
	}}).Context(e.ctx).Do())
	plan := providers.Plan{Register: []providers.Target{target("127.0.70.1", 80, zones3[0]), target("127.0.70.2", 80, zones3[0])}}
	if err := e.apply(g, plan); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Endpoints(zones3[0], "heal")); n != 2 {
		t.Fatalf("%d endpoints", n)
	}
	if n := len(e.observe(g)); n != 2 {
		t.Fatalf("observed %d", n)
	}
}

// An attach or detach podlb could not follow to its end (its operation's
// poll was throttled) is sent again and meets its own result: the
// endpoint already attached, or already gone. With the listing that
// would tell throttled too, each such endpoint is still applied, not
// refused.
func TestRetryMeetingItsOwnResultIsNoRefusal(t *testing.T) {
	e := newEnv(t)
	b := binding(`{"name":"again"}`, zones3[:1]...)
	g := e.ensure(b)
	e.observe(g) // learn the (empty) NEG
	change := func(attach bool, ip string) {
		eps := []*compute.NetworkEndpoint{{IpAddress: ip, Port: 80, Instance: vm(zones3[0])}}
		if attach {
			e.done(e.neg.AttachNetworkEndpoints(project, zones3[0], "again", &compute.NetworkEndpointGroupsAttachEndpointsRequest{NetworkEndpoints: eps}).Context(e.ctx).Do())
			return
		}
		e.done(e.neg.DetachNetworkEndpoints(project, zones3[0], "again", &compute.NetworkEndpointGroupsDetachEndpointsRequest{NetworkEndpoints: eps}).Context(e.ctx).Do())
	}
	change(true, "127.0.71.1")
	e.srv.SetRateLimit("networkEndpointGroups.listNetworkEndpoints", 0)
	plan := providers.Plan{Register: []providers.Target{target("127.0.71.1", 80, zones3[0]), target("127.0.71.2", 80, zones3[0])}}
	if err := e.apply(g, plan); err != nil {
		t.Fatalf("attach meeting an attached endpoint: %v", err)
	}
	if n := len(e.srv.Endpoints(zones3[0], "again")); n != 2 {
		t.Fatalf("%d endpoints, want 2", n)
	}
	change(false, "127.0.71.1")
	if err := e.apply(g, providers.Plan{Deregister: plan.Register}); err != nil {
		t.Fatalf("detach meeting a detached endpoint: %v", err)
	}
	if n := len(e.srv.Endpoints(zones3[0], "again")); n != 0 {
		t.Fatalf("%d endpoints left", n)
	}
}

func TestRegionalBackendService(t *testing.T) {
	e := newEnv(t)
	e.done(e.hcs.Insert(project, &compute.HealthCheck{
		Name: "rhc", Type: "TCP", TcpHealthCheck: &compute.TCPHealthCheck{PortSpecification: "USE_SERVING_PORT"},
		CheckIntervalSec: 4, TimeoutSec: 4, HealthyThreshold: 3, UnhealthyThreshold: 5,
	}).Context(e.ctx).Do())
	rbs := e.svc.RegionBackendServices
	e.done(rbs.Insert(project, "us-central1", &compute.BackendService{
		Name: "internal", Protocol: "TCP", HealthChecks: []string{"global/healthChecks/rhc"},
	}).Context(e.ctx).Do())
	b := binding(`{"backendService":"regions/us-central1/backendServices/internal"}`, zones3...)
	g := e.ensure(b)
	if !g.Serving {
		t.Fatalf("group %+v", g)
	}
	// The regional service's global health check: 3 checks 4 s apart to
	// call an endpoint healthy, 5 to call it unhealthy.
	if g.JudgeDelay != 12*time.Second || g.FailDelay != 20*time.Second {
		t.Errorf("judge delays %s / %s, want 12s / 20s", g.JudgeDelay, g.FailDelay)
	}
	port, _ := tcpListener(t, "127.0.80.1")
	tg := target("127.0.80.1", port, zones3[2])
	if err := e.apply(g, providers.Plan{Register: []providers.Target{tg}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "healthy", func() bool { return e.observe(g)[tg.Key()].State == providers.Healthy })
	if err := e.p.Release(e.ctx, b.Key, g.Ref, nil); err != nil {
		t.Fatal(err)
	}
	got, err := rbs.Get(project, "us-central1", "internal").Context(e.ctx).Do()
	if err != nil || len(got.Backends) != 0 {
		t.Fatalf("after release: %v %v", got.Backends, err)
	}
}

func TestRestartAdoptsOwnNEGsAndEndpoints(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	b := binding(`{"backendService":"web"}`, zones3...)
	g := e.ensure(b)
	port, _ := tcpListener(t, "127.0.90.1")
	tg := target("127.0.90.1", port, zones3[1])
	if err := e.apply(g, providers.Plan{Register: []providers.Target{tg}}); err != nil {
		t.Fatal(err)
	}
	restarted, err := New(e.ctx, e.p.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer restarted.Close()
	e.srv.ResetStats()
	g2, err := restarted.Ensure(e.ctx, b)
	if err != nil || g2.Created || g2.Ref != g.Ref || !g2.Serving {
		t.Fatalf("after restart: %+v, %v", g2, err)
	}
	if st := e.srv.Stats().Methods; st["networkEndpointGroups.insert"].Calls != 0 || st["backendServices.patch"].Calls != 0 || st["networkEndpointGroups.aggregatedList"].Calls != 1 {
		t.Fatalf("restart Ensure calls: %v", e.srv.Stats().MethodNames())
	}
	obs, err := restarted.Observe(e.ctx, g2)
	if err != nil || len(obs) != 1 || obs[0].Key() != tg.Key() || obs[0].Instance != vm(zones3[1]) {
		t.Fatalf("observed %+v, %v", obs, err)
	}
}

func TestNEGUsedElsewhereIsReported(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	e.backendService("other", "TCP", 0)
	b := binding(`{"backendService":"web"}`, zones3...)
	name := NEGName(cluster, b.Key)
	e.ensure(b)
	// Someone adds our zone c NEG to a service podlb does not manage.
	bs := e.getBS("other")
	e.done(e.bs.Patch(project, "other", &compute.BackendService{
		Fingerprint: bs.Fingerprint,
		Backends: []*compute.Backend{{Group: "zones/" + zones3[2] + "/networkEndpointGroups/" + name,
			BalancingMode: "CONNECTION", MaxConnectionsPerEndpoint: 1}},
	}).Context(e.ctx).Do())
	// Zone c loses its nodes: the live zones carry on, the failure shows.
	g := e.ensure(binding(`{"backendService":"web"}`, zones3[:2]...))
	if !g.Serving || g.Status["cleanup"] == "" {
		t.Fatalf("group %+v", g)
	}
	if _, ok := e.negExists(zones3[2], name); !ok {
		t.Fatal("NEG in use was deleted")
	}
	if len(backendZones(e.getBS("web"))) != 2 {
		t.Fatal("zone c still a backend of web")
	}
	err := e.p.Release(e.ctx, b.Key, g.Ref, nil)
	wantClass(t, err, providers.Invalid, "")
	if _, ok := e.negExists(zones3[0], name); ok {
		t.Fatal("NEGs not in use elsewhere should be deleted")
	}
}

// A call answered 403 rateLimitExceeded did nothing: the provider retries
// it a couple of times before giving the binding's pass up, and reports a
// throttle that outlasts the retries as Throttled.
func TestThrottledCallsAreRetried(t *testing.T) {
	e := newEnv(t)
	e.backendService("web", "TCP", 0)
	g := e.ensure(binding(`{"backendService":"web"}`, zones3[0]))
	port, _ := tcpListener(t, "127.0.0.1")
	plan := providers.Plan{Register: []providers.Target{target("127.0.0.1", port, zones3[0])}}

	e.srv.SetRateLimitRate(1)
	err := e.apply(g, plan)
	if providers.ClassOf(err) != providers.Throttled {
		t.Fatalf("Apply under a lasting throttle: %v, want Throttled", err)
	}
	if st := e.srv.Stats().Methods[opNEGAttach]; st.Calls != callAttempts || st.RateLimited != st.Calls {
		t.Fatalf("attach stats %+v, want %d rate-limited calls", st, callAttempts)
	}

	// Lift the throttle as soon as the next attach has been turned away:
	// the retry goes through.
	e.srv.ResetStats()
	lifted := make(chan struct{})
	go func() {
		defer close(lifted)
		for e.srv.Stats().Methods[opNEGAttach].RateLimited == 0 {
			time.Sleep(time.Millisecond)
		}
		e.srv.SetRateLimitRate(0)
	}()
	if err := e.apply(g, plan); err != nil {
		t.Fatalf("Apply with one throttled attach: %v", err)
	}
	<-lifted
	if eps := e.srv.Endpoints(zones3[0], g.Status["negs"]); len(eps) != 1 {
		t.Fatalf("endpoints %+v", eps)
	}
	if st := e.srv.Stats().Methods[opNEGAttach]; st.RateLimited != 1 || st.Calls != 2 {
		t.Fatalf("attach stats %+v, want one throttled call and its retry", st)
	}
}

// refusedWith is the error a refused target should get: its class and
// words of its text.
type refusedWith struct {
	class providers.Class
	words string
}

// wantRefused checks that err is a *TargetErrors naming exactly the keys
// of want, each with the error want describes.
func wantRefused(t *testing.T, err error, want map[providers.Target]refusedWith) {
	t.Helper()
	te, ok := providers.AsTargetErrors(err)
	if !ok || providers.ClassOf(err) != providers.Invalid {
		t.Fatalf("got %v (%s), want an invalid *TargetErrors", err, providers.ClassOf(err))
	}
	if len(te.Failed) != len(want) {
		t.Errorf("refused %v, want %d targets", te.Keys(), len(want))
	}
	for tg, w := range want {
		ferr := te.Failed[tg.Key()]
		if ferr == nil || providers.ClassOf(ferr) != w.class || !strings.Contains(ferr.Error(), w.words) {
			t.Errorf("%s refused with %v, want a %s error saying %q", tg.Key(), ferr, w.class, w.words)
		}
	}
}

// splitBound is the most calls isolating k refused endpoints in one batch
// of n may cost.
func splitBound(n, k int) int64 { return int64(1 + 2*k*bits.Len(uint(n-1))) }

func targets(format string, n int, zone string) []providers.Target {
	ts := make([]providers.Target, n)
	for i := range ts {
		ts[i] = target(fmt.Sprintf(format, i+1), 8080, zone)
	}
	return ts
}

func TestApplyAttachesEveryGoodEndpointAndNamesEachRefusedOne(t *testing.T) {
	e := newEnv(t)
	b := binding(`{"name":"mixed"}`, zones3[:2]...)
	g := e.ensure(b)
	old := targets("127.0.9.%d", 3, zones3[0])
	if err := e.apply(g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}
	// node-b gets a pod range; an IP outside it is not the VM's.
	if err := e.srv.SetAliasRanges(zones3[1], vm(zones3[1]), "127.2.0.0/24"); err != nil {
		t.Fatal(err)
	}
	goodA := targets("127.1.0.%d", 100, zones3[0])
	goodB := targets("127.2.0.%d", 20, zones3[1])
	ipv6 := target("fd00::1", 8080, zones3[0])
	foreign := target("10.9.9.9", 8080, zones3[0])
	notVMs := target("127.3.0.1", 8080, zones3[1])
	noNEG := target("127.1.1.1", 8080, zones3[2])
	noVM := target("127.1.1.2", 8080, zones3[0])
	noVM.Instance = ""
	// Never attached, so GCE refuses to detach it.
	gone := target("fd00::9", 8080, zones3[0])
	plan := providers.Plan{
		Register:   append(append(append([]providers.Target{}, goodA...), goodB...), ipv6, foreign, notVMs, noNEG, noVM),
		Deregister: append(append([]providers.Target{}, old...), gone),
	}
	e.srv.ResetStats()
	err := e.apply(g, plan)
	wantRefused(t, err, map[providers.Target]refusedWith{
		ipv6:    {providers.Invalid, "Must be a valid IPv4 address"},
		foreign: {providers.Invalid, "Specified IP address 10.9.9.9 doesn't belong"},
		notVMs:  {providers.Invalid, "Specified IP address 127.3.0.1 doesn't belong"},
		noNEG:   {providers.Transient, `zone "us-central1-c", which has no NEG mixed yet`},
		noVM:    {providers.Invalid, "has no GCE instance"},
		gone:    {providers.Invalid, "Must be a valid IPv4 address"},
	})
	for zone, want := range map[string][]providers.Target{zones3[0]: goodA, zones3[1]: goodB} {
		eps := e.srv.Endpoints(zone, "mixed")
		if len(eps) != len(want) {
			t.Errorf("zone %s has %d endpoints, want %d: deregistration or attach missing", zone, len(eps), len(want))
		}
		attached := map[string]bool{}
		for _, ep := range eps {
			attached[ep.IPAddress] = true
		}
		for _, tg := range want {
			if !attached[tg.IP.String()] {
				t.Errorf("%s not attached", tg.Key())
			}
		}
	}
	// Zone a: one batch of 102 with 2 refused; zone b: 21 with 1.
	limit := splitBound(102, 2) + splitBound(21, 1)
	if n := e.calls(opNEGAttach); n > limit {
		t.Errorf("%d attach calls, want at most %d", n, limit)
	}
	if n, limit := e.calls(opNEGDetach), splitBound(4, 1); n > limit {
		t.Errorf("%d detach calls, want at most %d", n, limit)
	}
	// What Observe reports agrees: podlb's record of the NEG was kept.
	if n := len(e.observe(g)); n != len(goodA)+len(goodB) {
		t.Errorf("observed %d", n)
	}
}

func TestFullNEGAttachesWhatFitsReportsTheRestAndStillDetaches(t *testing.T) {
	e := newEnvWith(t, func(o *computesim.Options) { o.MaxEndpointsPerNEG = 20 })
	g := e.ensure(binding(`{"name":"full"}`, zones3[0]))
	old := targets("127.0.9.%d", 15, zones3[0])
	if err := e.apply(g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}
	// A rollout: ten new pods, five old ones leave.
	fresh := targets("127.1.0.%d", 10, zones3[0])
	e.srv.ResetStats()
	err := e.apply(g, providers.Plan{Register: fresh, Deregister: old[:5]})
	want := map[providers.Target]refusedWith{}
	for _, tg := range fresh[5:] {
		want[tg] = refusedWith{providers.Invalid, "quotaExceeded"}
	}
	wantRefused(t, err, want)
	if n := len(e.srv.Endpoints(zones3[0], "full")); n != 15 {
		t.Errorf("%d endpoints, want 15 after detaching 5", n)
	}
	// Once a single endpoint does not fit, the rest is not sent.
	if n, limit := e.calls(opNEGAttach), splitBound(len(fresh), 1); n > limit {
		t.Errorf("%d attach calls, want at most %d", n, limit)
	}
	if err := e.apply(g, providers.Plan{Register: fresh[5:]}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Endpoints(zones3[0], "full")); n != 20 {
		t.Errorf("%d endpoints, want 20", n)
	}
}

func TestFailuresOfAWholeAttachAreNotSplitAndHoldDetaches(t *testing.T) {
	e := newEnv(t)
	g := e.ensure(binding(`{"name":"whole"}`, zones3[0]))
	old := targets("127.0.9.%d", 2, zones3[0])
	if err := e.apply(g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}
	plan := providers.Plan{Register: append(targets("127.1.0.%d", 50, zones3[0]), target("fd00::1", 8080, zones3[0])), Deregister: old}
	for _, c := range []struct {
		name  string
		fault func(on bool)
		class providers.Class
		calls int64
	}{
		{"rate limited", func(on bool) {
			if on {
				e.srv.SetRateLimit(opNEGAttach, 0)
			} else {
				e.srv.SetRateLimit(opNEGAttach, -1)
			}
		}, providers.Throttled, callAttempts},
		// The IPv6 endpoint fails the first call at once; the operation of
		// the first half then fails as a whole, which ends the pass.
		{"operation failed", func(on bool) {
			if on {
				e.srv.SetOperationFailureRate(1)
			} else {
				e.srv.SetOperationFailureRate(0)
			}
		}, providers.Transient, 2},
	} {
		e.srv.ResetStats()
		c.fault(true)
		err := e.apply(g, plan)
		c.fault(false)
		if _, ok := providers.AsTargetErrors(err); ok || providers.ClassOf(err) != c.class {
			t.Errorf("%s: got %v (%s), want a %s error", c.name, err, providers.ClassOf(err), c.class)
		}
		if n := e.calls(opNEGAttach); n != c.calls {
			t.Errorf("%s: %d attach calls, want %d", c.name, n, c.calls)
		}
		if n := e.calls(opNEGDetach); n != 0 {
			t.Errorf("%s: %d detach calls after a failed attach", c.name, n)
		}
		if n := len(e.srv.Endpoints(zones3[0], "whole")); n != len(old) {
			t.Errorf("%s: %d endpoints, want the %d old ones", c.name, n, len(old))
		}
	}
}

func TestOperationsWaitKeepsUpWithTheWriteShare(t *testing.T) {
	if !maps.Equal(effectiveLimits(nil), DefaultLimits()) {
		t.Error("without limits of the user's own, the limits are not the defaults")
	}
	def := DefaultLimits()[opOperationsWait]
	for _, tc := range []struct {
		name string
		own  map[string]providers.Limit
		want providers.Limit
	}{
		{"defaults", nil, def},
		{"a smaller write share keeps the default", map[string]providers.Limit{opNEGAttach: {QPS: 2, Burst: 5}}, def},
		{"a larger write share raises the waits", map[string]providers.Limit{opNEGAttach: {QPS: 20, Burst: 40}}, providers.Limit{QPS: 20, Burst: 40}},
		{"detach in a bucket of its own adds to it", map[string]providers.Limit{opNEGAttach: {QPS: 10, Burst: 20}, opNEGDetach: {QPS: 6, Burst: 10}}, providers.Limit{QPS: 16, Burst: 30}},
		{"waits set by the user are kept", map[string]providers.Limit{opNEGAttach: {QPS: 20, Burst: 40}, opOperationsWait: {QPS: 3, Burst: 6}}, providers.Limit{QPS: 3, Burst: 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := effectiveLimits(tc.own)[opOperationsWait]
			if got != tc.want {
				t.Errorf("operations.wait = %v, want %v", got, tc.want)
			}
		})
	}
}

// A pass returns once GCE accepted its calls and their operations are
// followed in the background: a pod that turns ready while one runs goes
// out in the next pass, and what is being changed is not sent twice.
// Settling tells of the attaches still followed until they end, and one
// of them that failed as a whole holds the next plan's detaches.
func TestOperationsAreFollowedOutsideThePass(t *testing.T) {
	e := newEnv(t)
	g := e.ensure(binding(`{"name":"follow"}`, zones3[0]))
	old := targets("127.0.9.%d", 2, zones3[0])
	if err := e.apply(g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}
	e.srv.ResetStats()
	// Operations held: a pass that awaited its attach would not end.
	e.srv.SetOperationDelay(time.Hour)
	first := targets("127.1.0.%d", 3, zones3[0])
	if err := e.p.Apply(e.ctx, g, providers.Plan{Register: first}); err != nil {
		t.Fatal(err)
	}
	more := append(slices.Clone(first), targets("127.2.0.%d", 2, zones3[0])...)
	if err := e.p.Apply(e.ctx, g, providers.Plan{Register: more}); err != nil {
		t.Fatal(err)
	}
	if n := e.calls(opNEGAttach); n != 2 {
		t.Errorf("%d attach calls, want 2: one per pass, the endpoints being attached not sent again", n)
	}
	if n := len(e.observe(g)); n != len(old)+len(more) {
		t.Errorf("observed %d, want %d: endpoints being attached count as attached", n, len(old)+len(more))
	}
	settling := e.p.Settling(g)
	select {
	case <-settling:
		t.Fatal("Settling closed while the attach operations ran")
	case <-time.After(100 * time.Millisecond):
	}
	e.srv.SetOperationDelay(2 * time.Millisecond)
	select {
	case <-settling:
	case <-time.After(10 * time.Second):
		t.Fatal("Settling did not close once the attach operations ended")
	}
	e.p.followers.Wait()
	if e.p.Settling(g) != nil {
		t.Error("Settling once the operations ended: want nil")
	}
	if n := len(e.srv.Endpoints(zones3[0], "follow")); n != len(old)+len(more) {
		t.Fatalf("%d endpoints once the operations ended, want %d", n, len(old)+len(more))
	}

	// An attach whose operation fails as a whole: its pass has returned,
	// the next plan that detaches reports the failure and detaches nothing.
	late := targets("127.3.0.%d", 2, zones3[0])
	e.srv.FailNextOperation(computesim.OperationFailure{Method: opNEGAttach, Code: 503})
	if err := e.p.Apply(e.ctx, g, providers.Plan{Register: late}); err != nil {
		t.Fatal(err)
	}
	e.p.followers.Wait()
	e.srv.ResetStats()
	err := e.p.Apply(e.ctx, g, providers.Plan{Deregister: old[:1]})
	if _, ok := providers.AsTargetErrors(err); ok || providers.ClassOf(err) != providers.Transient || !strings.Contains(err.Error(), "an earlier operation") {
		t.Fatalf("a detach after a failed attach: got %v (%s), want the attach's transient failure, named as an earlier operation's", err, providers.ClassOf(err))
	}
	if n := e.calls(opNEGDetach); n != 0 {
		t.Fatalf("%d detach calls after a failed attach", n)
	}
	// The pass is retried: the endpoints go out again, then the detach.
	if err := e.apply(g, providers.Plan{Register: late, Deregister: old[:1]}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Endpoints(zones3[0], "follow")); n != len(old)+len(more)+len(late)-1 {
		t.Fatalf("%d endpoints, want %d", n, len(old)+len(more)+len(late)-1)
	}

	// A detach is followed too: it counts as gone at once, is not sent
	// twice, and the same endpoint is attached again only once it ended.
	e.srv.SetOperationDelay(time.Hour)
	e.srv.ResetStats()
	leaving := old[1:]
	for range 2 {
		if err := e.p.Apply(e.ctx, g, providers.Plan{Deregister: leaving}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.calls(opNEGDetach); n != 1 {
		t.Errorf("%d detach calls, want 1: the endpoint being detached not sent again", n)
	}
	if o, ok := e.observe(g)[leaving[0].Key()]; ok && o.State != providers.Draining {
		t.Errorf("an endpoint being detached observed %s, want it gone or draining", o.State)
	}
	short, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
	err = e.p.Apply(short, g, providers.Plan{Register: leaving})
	cancel()
	if err == nil || e.calls(opNEGAttach) != 0 {
		t.Fatalf("attaching an endpoint being detached: %v, %d attach calls; want it to wait for the detach", err, e.calls(opNEGAttach))
	}
	e.srv.SetOperationDelay(2 * time.Millisecond)
	if err := e.apply(g, providers.Plan{Register: leaving}); err != nil {
		t.Fatal(err)
	}
	if st := e.srv.Stats().Methods[opNEGDetach]; st.Operations != 1 || st.OperationsFailed != 0 {
		t.Errorf("detach operations %d, failed %d; want 1 that succeeded", st.Operations, st.OperationsFailed)
	}
	if st := e.srv.Stats().Methods[opNEGAttach]; st.Operations != 1 || st.OperationsFailed != 0 {
		t.Errorf("attach operations %d, failed %d; want 1 after the detach, which succeeded", st.Operations, st.OperationsFailed)
	}
}

// answerHolder stands between the provider and the emulator and can hold
// one answer, already given, until released: what a slow network does to
// a read that the cloud answered before an operation ended.
type answerHolder struct {
	mu      sync.Mutex
	suffix  string // the path of the call to hold ends so; "" holds none
	held    chan struct{}
	release chan struct{}
}

// throughHolder points a new provider at the emulator through an
// answerHolder.
func (e *env) throughHolder() *answerHolder {
	e.t.Helper()
	h := &answerHolder{}
	to, err := url.Parse(e.srv.URL())
	if err != nil {
		e.t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(to)
	rp.ModifyResponse = func(resp *http.Response) error {
		h.mu.Lock()
		hold := h.suffix != "" && strings.HasSuffix(resp.Request.URL.Path, h.suffix)
		held, release := h.held, h.release
		if hold {
			h.suffix = ""
		}
		h.mu.Unlock()
		if hold {
			close(held)
			<-release
		}
		return nil
	}
	front := httptest.NewServer(rp)
	e.t.Cleanup(front.Close)
	e.p = e.provider(front.URL)
	return h
}

// hold arms h for the next call whose path ends with suffix: held closes
// once its answer is held, and closing release lets it go.
func (h *answerHolder) hold(suffix string) (held, release chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.suffix, h.held, h.release = suffix, make(chan struct{}), make(chan struct{})
	return h.held, h.release
}

// observeAcrossOperationEnd reads g with the answer of its call whose
// path ends with call held until the followed operations, delayed until
// then, have ended.
func (e *env) observeAcrossOperationEnd(h *answerHolder, g *providers.Group, call string) map[providers.TargetKey]providers.Observed {
	e.t.Helper()
	held, release := h.hold(call)
	type result struct {
		obs []providers.Observed
		err error
	}
	read := make(chan result, 1)
	go func() {
		obs, err := e.p.Observe(e.ctx, g)
		read <- result{obs, err}
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		e.t.Fatalf("no %s call to hold", call)
	}
	e.srv.SetOperationDelay(2 * time.Millisecond)
	e.p.followers.Wait()
	close(release)
	r := <-read
	if r.err != nil {
		e.t.Fatalf("Observe: %v", r.err)
	}
	return byKey(r.obs)
}

// A read the cloud answered before a detach ended, and taken in after
// the detach's operation ended, shows the endpoint gone: neither
// getHealth's answer nor a list's brings it back, or the next plan would
// detach it again and its operation fail as a whole.
func TestAReadAnsweredBeforeADetachEndedKeepsItGone(t *testing.T) {
	for _, call := range []string{"/getHealth", "/listNetworkEndpoints"} {
		t.Run(strings.TrimPrefix(call, "/"), func(t *testing.T) {
			e := newEnv(t)
			h := e.throughHolder()
			e.backendService("tcp", "TCP", 0)
			b := binding(`{"backendService":"tcp"}`, zones3[0])
			g := e.ensure(b)
			ip := "127.0.21.1"
			port, _ := tcpListener(t, ip)
			leaving := target(ip, port, zones3[0])
			if err := e.apply(g, providers.Plan{Register: []providers.Target{leaving}}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "healthy", func() bool { return e.observe(g)[leaving.Key()].State == providers.Healthy })

			e.srv.SetOperationDelay(time.Hour)
			if err := e.p.Apply(e.ctx, g, providers.Plan{Deregister: []providers.Target{leaving}}); err != nil {
				t.Fatal(err)
			}
			if call == "/listNetworkEndpoints" {
				e.p.neg(negPath(project, zones3[0], NEGName(cluster, b.Key))).expire()
			}
			if o, ok := e.observeAcrossOperationEnd(h, g, call)[leaving.Key()]; ok && o.State != providers.Draining {
				t.Errorf("detached while %s answered, observed %s (%s) once read", call, o.State, o.CloudState)
			}
			if o, ok := e.observe(g)[leaving.Key()]; ok && o.State != providers.Draining {
				t.Errorf("detached, observed %s (%s) in the next read", o.State, o.CloudState)
			}
			if attached, _ := e.p.neg(negPath(project, zones3[0], NEGName(cluster, b.Key))).snapshot(time.Hour); attached[leaving.Key()] != "" {
				t.Errorf("detached, still in the NEG's record")
			}
		})
	}
}

// A list the cloud answered before an attach's operation ended, taken in
// after it, keeps the endpoint in the NEG's record: the record stays
// trusted, and the same endpoint planned again spends no operation.
func TestAListAnsweredBeforeAnAttachEndedKeepsItAttached(t *testing.T) {
	e := newEnv(t)
	h := e.throughHolder()
	e.backendService("tcp", "TCP", 0)
	b := binding(`{"backendService":"tcp"}`, zones3[0])
	g := e.ensure(b)
	ns := e.p.neg(negPath(project, zones3[0], NEGName(cluster, b.Key)))
	ip := "127.0.22.1"
	port, _ := tcpListener(t, ip)
	joining := target(ip, port, zones3[0])

	e.srv.SetOperationDelay(time.Hour)
	if err := e.p.Apply(e.ctx, g, providers.Plan{Register: []providers.Target{joining}}); err != nil {
		t.Fatal(err)
	}
	ns.expire()
	if _, ok := e.observeAcrossOperationEnd(h, g, "/listNetworkEndpoints")[joining.Key()]; !ok {
		t.Error("attached while the list answered, not observed once read")
	}
	if attached, fresh := ns.snapshot(time.Hour); !fresh || attached[joining.Key()] == "" {
		t.Errorf("attached, not in the NEG's record (record trusted: %v)", fresh)
	}
	e.srv.ResetStats()
	if err := e.apply(g, providers.Plan{Register: []providers.Target{joining}}); err != nil {
		t.Fatal(err)
	}
	if n := e.calls(opNEGAttach); n != 0 {
		t.Errorf("%d attach calls for an endpoint attached", n)
	}
}

// threeZoneGroup is a group of a TCP backend service in zones3 with
// perZone targets attached in each zone, read once (each NEG listed).
func threeZoneGroup(t *testing.T, perZone int) (*env, *providers.Group, []providers.Target) {
	t.Helper()
	e := newEnv(t)
	e.backendService("web", "TCP", 30)
	g := e.ensure(binding(`{"backendService":"web"}`, zones3...))
	var all []providers.Target
	for i, z := range zones3 {
		all = append(all, targets(fmt.Sprintf("127.4.%d.%%d", i), perZone, z)...)
	}
	if err := e.apply(g, providers.Plan{Register: all}); err != nil {
		t.Fatal(err)
	}
	e.observe(g)
	return e, g, all
}

// A read of parts reads only the zones of the targets named, one
// getHealth each, and reports exactly what lies in them.
func TestObservePartsReadsOnlyTheZonesNamed(t *testing.T) {
	e, g, all := threeZoneGroup(t, 2)
	e.srv.ResetStats()
	waiting := all[len(all)-1] // in zones3[2]
	observed, in, err := e.p.ObserveParts(e.ctx, g, []providers.Target{waiting})
	if err != nil {
		t.Fatal(err)
	}
	if n := e.calls(opBSGetHealth); n != 1 {
		t.Errorf("%d getHealth calls for one zone, want 1", n)
	}
	var got []providers.TargetKey
	for _, o := range observed {
		got = append(got, o.Key())
	}
	var want []providers.TargetKey
	for _, tg := range all {
		if tg.Zone == zones3[2] {
			want = append(want, tg.Key())
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("observed %v, want the zone's %v", got, want)
	}
	for _, tg := range all {
		if in(providers.Observed{Target: tg}) != (tg.Zone == zones3[2]) {
			t.Errorf("in(%s in %s) = %v", tg.Key(), tg.Zone, tg.Zone != zones3[2])
		}
	}
	full, err := e.p.Observe(e.ctx, g)
	if err != nil || len(full) != len(all) || e.calls(opBSGetHealth) != 1+int64(len(zones3)) {
		t.Errorf("a full read: %d targets, %v, %d getHealth calls in all; want %d and one per zone more", len(full), err, e.calls(opBSGetHealth), len(all))
	}
}

// A read at rest takes its zones' getHealth tokens at once: with fewer
// spare tokens than zones it is put off before its first call, not after
// some zones spent tokens on an answer the put-off zone throws away.
func TestAReadAtRestIsPutOffWholeBeforeItsFirstCall(t *testing.T) {
	e, g, all := threeZoneGroup(t, 1)
	limits := providers.Unthrottled(DefaultLimits())
	limits[opBSGetHealth] = providers.Limit{QPS: 0.001, Burst: 10} // a reserve of 5
	e.p.calls = newCaller(limits)
	e.srv.ResetStats()
	rest := providers.AtRest(e.ctx)

	// Ten tokens: a read of three zones, seven left.
	if obs, err := e.p.Observe(rest, g); err != nil || len(obs) != len(all) || e.calls(opBSGetHealth) != 3 {
		t.Fatalf("a read at rest from a full bucket: %d targets, %v, %d getHealth calls; want %d and 3", len(obs), err, e.calls(opBSGetHealth), len(all))
	}
	// Two spare tokens for three zones: put off whole.
	_, err := e.p.Observe(rest, g)
	var po *providers.PutOffError
	if !errors.As(err, &po) || providers.ClassOf(err) != providers.Throttled || po.Op != opBSGetHealth {
		t.Fatalf("a read at rest of three zones with two spare tokens: %v, want a getHealth put-off", err)
	}
	if n := e.calls(opBSGetHealth); n != 3 {
		t.Fatalf("the put-off read made %d getHealth calls, want none", n-3)
	}
	// The two spare tokens are still there for a read of one zone.
	if _, _, err := e.p.ObserveParts(rest, g, all[:1]); err != nil || e.calls(opBSGetHealth) != 4 {
		t.Fatalf("a read at rest of one zone with two spare tokens: %v, %d getHealth calls in all, want 4", err, e.calls(opBSGetHealth))
	}
	// A read that pods wait for is served from the reserve.
	if obs, err := e.p.Observe(e.ctx, g); err != nil || len(obs) != len(all) || e.calls(opBSGetHealth) != 7 {
		t.Fatalf("a read that waits: %d targets, %v, %d getHealth calls in all, want 7", len(obs), err, e.calls(opBSGetHealth))
	}

	// With the attached endpoints not known (as after a failed
	// operation), a read lists each zone as well: the list bucket is
	// counted in, and a read whose lists are short sends neither a list
	// nor a getHealth.
	forget := func() {
		for _, z := range zones3 {
			e.p.neg(negPath(project, z, g.Provider.(*groupState).name)).expire()
		}
	}
	limits[opBSGetHealth] = providers.Limit{QPS: 0.001, Burst: 100}
	limits[opNEGList] = providers.Limit{QPS: 0.001, Burst: 10} // a reserve of 5
	e.p.calls = newCaller(limits)
	e.srv.ResetStats()
	forget()
	if _, err := e.p.Observe(rest, g); err != nil || e.calls(opNEGList) != 3 || e.calls(opBSGetHealth) != 3 {
		t.Fatalf("a read at rest with records not known: %v, %d lists and %d getHealth calls, want 3 of each", err, e.calls(opNEGList), e.calls(opBSGetHealth))
	}
	forget()
	if _, err := e.p.Observe(rest, g); !errors.As(err, &po) || po.Op != opNEGList || e.calls(opNEGList) != 3 || e.calls(opBSGetHealth) != 3 {
		t.Fatalf("a read at rest with two spare list tokens for three zones: %v, %d lists and %d getHealth calls in all; want a list put-off and 3 of each", err, e.calls(opNEGList), e.calls(opBSGetHealth))
	}
}

// A record of attached endpoints older than EndpointResync is checked
// by the getHealth the read makes anyway: when it reports exactly the
// recorded endpoints, nothing is listed; an endpoint attached or
// detached behind podlb's back makes that zone's read list it.
func TestAStaleRecordBorneOutByGetHealthIsNotListed(t *testing.T) {
	e, g, all := threeZoneGroup(t, 2)
	judged := func() bool {
		for _, o := range e.observe(g) {
			if o.CloudState != "UNHEALTHY" {
				return false
			}
		}
		return true
	}
	eventually(t, "every endpoint judged", judged)
	e.p.opts.EndpointResync = time.Nanosecond
	read := func(what string, lists int64, want []providers.TargetKey) {
		t.Helper()
		e.srv.ResetStats()
		obs, err := e.p.Observe(providers.AtRest(e.ctx), g)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var got []providers.TargetKey
		for _, o := range obs {
			got = append(got, o.Key())
		}
		byAddr := func(a, b providers.TargetKey) int { return strings.Compare(a.String(), b.String()) }
		slices.SortFunc(want, byAddr)
		slices.SortFunc(got, byAddr)
		if e.calls(opBSGetHealth) != 3 || e.calls(opNEGList) != lists || !slices.Equal(got, want) {
			t.Fatalf("%s: %d getHealth, %d lists, observed %v; want 3, %d and %v", what, e.calls(opBSGetHealth), e.calls(opNEGList), got, lists, want)
		}
	}
	var want []providers.TargetKey
	for _, tg := range all {
		want = append(want, tg.Key())
	}
	read("nothing changed", 0, want)

	name := g.Provider.(*groupState).name
	foreign := target("127.4.0.99", 80, zones3[0])
	e.done(e.neg.AttachNetworkEndpoints(project, zones3[0], name, &compute.NetworkEndpointGroupsAttachEndpointsRequest{NetworkEndpoints: []*compute.NetworkEndpoint{
		{IpAddress: foreign.IP.String(), Port: int64(foreign.Port), Instance: vm(zones3[0])},
	}}).Context(e.ctx).Do())
	eventually(t, "the foreign endpoint judged", func() bool {
		for _, h := range e.srv.Health("web") {
			if h.IPAddress == foreign.IP.String() && h.State == computesim.StateUnhealthy {
				return true
			}
		}
		return false
	})
	read("an endpoint attached behind podlb's back", 1, append(slices.Clone(want), foreign.Key()))
	read("nothing changed since", 0, append(slices.Clone(want), foreign.Key()))

	gone := all[2] // in zones3[1]
	e.done(e.neg.DetachNetworkEndpoints(project, gone.Zone, name, &compute.NetworkEndpointGroupsDetachEndpointsRequest{NetworkEndpoints: []*compute.NetworkEndpoint{
		{IpAddress: gone.IP.String(), Port: int64(gone.Port), Instance: vm(gone.Zone)},
	}}).Context(e.ctx).Do())
	want = slices.DeleteFunc(append(want, foreign.Key()), func(k providers.TargetKey) bool { return k == gone.Key() })
	eventually(t, "the detached endpoint drained", func() bool {
		for _, h := range e.srv.Health("web") {
			if h.IPAddress == gone.IP.String() {
				return false
			}
		}
		return true
	})
	read("an endpoint detached behind podlb's back", 1, want)
	read("nothing changed since", 0, want)
}

func TestInParallelCallsEachZoneOnceAndGathersEveryError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	workers := newZoneWorkers(ctx, 1)
	if err := workers.inParallel(nil, func(int, string) error { return errors.New("called") }); err != nil {
		t.Errorf("no zones: %v", err)
	}
	zones := []string{"z-a", "z-b", "z-c"}
	var mu sync.Mutex
	seen := map[string]int{}
	err := workers.inParallel(zones, func(i int, zone string) error {
		mu.Lock()
		seen[zone]++
		mu.Unlock()
		if zones[i] != zone {
			t.Errorf("index %d given with zone %s", i, zone)
		}
		if zone != "z-b" {
			return errors.New(zone + " failed")
		}
		return nil
	})
	if len(seen) != 3 || seen["z-a"] != 1 || seen["z-b"] != 1 || seen["z-c"] != 1 {
		t.Errorf("calls by zone %v, want one each", seen)
	}
	if err == nil || !strings.Contains(err.Error(), "z-a failed") || !strings.Contains(err.Error(), "z-c failed") || strings.Contains(err.Error(), "z-b") {
		t.Errorf("error %v, want z-a's and z-c's", err)
	}

	// Every zone runs at once though one worker at most is idle: the
	// others get goroutines of their own rather than waiting.
	four := []string{"z-a", "z-b", "z-c", "z-d"}
	started, together := make(chan struct{}, len(four)), make(chan struct{})
	go func() {
		for range four {
			<-started
		}
		close(together)
	}()
	err = workers.inParallel(four, func(int, string) error {
		started <- struct{}{}
		select {
		case <-together:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("waited for another zone")
		}
	})
	if err != nil {
		t.Error(err)
	}
}
