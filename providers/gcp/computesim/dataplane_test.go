package computesim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

func TestDataPath(t *testing.T) {
	e := newEnv(t, computesim.Options{DrainingTimeout: 400 * time.Millisecond})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	_ = e.srv.AddInstance(zoneB, "node-2", "10.0.0.2", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	e.createNEG(zoneB, "neg-b", 80)
	e.createHC("hc", "TCP", 2, 2)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project,
		BackendServiceResource: tcpBackendService("bs", "hc", 60, negURL(zoneA, "neg-a"), negURL(zoneB, "neg-b"))}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/bs"),
	}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("projects/" + project + "/global/targetTcpProxies/tp"), PortRange: proto.String("80"),
	}}))
	addr := e.srv.ForwardingRuleAddr("fr")
	if addr == "" {
		t.Fatal("no forwarding rule address")
	}
	fr, err := e.frs.Get(e.ctx, &computepb.GetGlobalForwardingRuleRequest{Project: project, ForwardingRule: "fr"})
	if err != nil || fr.GetPortRange() != "80-80" || !strings.HasPrefix(addr, fr.GetIPAddress()+":") ||
		!strings.HasSuffix(fr.GetTarget(), "/global/targetTcpProxies/tp") {
		t.Fatalf("forwarding rule: %v %v (addr %s)", fr, err, addr)
	}

	// No endpoint at all: the connection is closed.
	if who, _, _ := dialLB(t, addr); who != "" {
		t.Fatalf("reached %q with no endpoints", who)
	}

	a1, a2 := startTCPBackend(t, "127.27.0.1"), startTCPBackend(t, "127.27.0.2")
	b1 := startTCPBackend(t, "127.27.1.1")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", a1.ip, a1.port), ep("node-1", a2.ip, a2.port)))
	e.done(e.attach(zoneB, "neg-b", ep("node-2", b1.ip, b1.port)))
	eventually(t, "three HEALTHY", 5*time.Second, func() bool {
		n := 0
		for _, h := range e.srv.Health("bs") {
			if h.State == computesim.StateHealthy {
				n++
			}
		}
		return n == 3
	})

	// Round-robin over HEALTHY endpoints of both NEGs.
	count := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			who, c, _ := dialLB(t, addr)
			if c != nil {
				_ = c.Close()
			}
			seen[who]++
		}
		return seen
	}
	if seen := count(12); seen[a1.ip] != 4 || seen[a2.ip] != 4 || seen[b1.ip] != 4 {
		t.Fatalf("round robin: %v", seen)
	}

	// capacityScaler 0 takes a NEG out of rotation.
	cur, _ := e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "bs"})
	cur.Backends[1].CapacityScaler = proto.Float32(0)
	e.done(e.bs.Patch(e.ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: "bs",
		BackendServiceResource: &computepb.BackendService{Fingerprint: cur.Fingerprint, Backends: cur.Backends}}))
	if seen := count(8); seen[b1.ip] != 0 || seen[a1.ip] != 4 || seen[a2.ip] != 4 {
		t.Fatalf("capacityScaler 0: %v", seen)
	}

	// A new endpoint gets nothing while UNKNOWN (a high healthy threshold
	// keeps it there for a while), then its share once HEALTHY.
	e.done(e.hcs.Patch(e.ctx, &computepb.PatchHealthCheckRequest{Project: project, HealthCheck: "hc",
		HealthCheckResource: &computepb.HealthCheck{HealthyThreshold: proto.Int32(10)}}))
	a3 := startTCPBackend(t, "127.27.0.3")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", a3.ip, a3.port)))
	seen := count(10)
	if st := e.simState("bs", a3.ip+":"+itoa(a3.port)); st != "UNKNOWN" {
		t.Fatalf("new endpoint is %s already; the test needs it UNKNOWN", st)
	}
	if st, listed := e.getHealth("bs", negURL(zoneA, "neg-a"))[a3.ip+":"+itoa(a3.port)]; listed {
		t.Fatalf("getHealth lists an endpoint not judged yet as %q", st)
	}
	if seen[a3.ip] != 0 {
		t.Fatalf("UNKNOWN endpoint got traffic: %v", seen)
	}
	eventually(t, "a3 HEALTHY", 5*time.Second, func() bool {
		return e.getHealth("bs", negURL(zoneA, "neg-a"))[a3.ip+":"+itoa(a3.port)] == "HEALTHY"
	})
	if seen := count(6); seen[a3.ip] != 2 {
		t.Fatalf("after HEALTHY: %v", seen)
	}

	// Draining: a detached endpoint keeps its open connections until the
	// draining timeout, reports DRAINING, and gets no new connections.
	var held net.Conn
	var heldR interface{ ReadString(byte) (string, error) }
	for range 10 {
		who, c, r := dialLB(t, addr)
		if who == a1.ip {
			held, heldR = c, r
			break
		}
		if c != nil {
			_ = c.Close()
		}
	}
	if held == nil {
		t.Fatal("never reached a1")
	}
	defer held.Close()
	e.done(e.detach(zoneA, "neg-a", ep("node-1", a1.ip, a1.port)))
	if st := e.simState("bs", a1.ip+":"+itoa(a1.port)); st != "DRAINING" {
		t.Fatalf("detached endpoint is %q, want DRAINING", st)
	}
	// getHealth answers only HEALTHY and UNHEALTHY: a draining endpoint
	// is not in its answer.
	if st, listed := e.getHealth("bs", negURL(zoneA, "neg-a"))[a1.ip+":"+itoa(a1.port)]; listed {
		t.Fatalf("getHealth lists the detached endpoint as %q", st)
	}
	if seen := count(8); seen[a1.ip] != 0 {
		t.Fatalf("draining endpoint got new connections: %v", seen)
	}
	if _, err := io.WriteString(held, "still there\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := heldR.ReadString('\n'); err != nil || line != "still there\n" {
		t.Fatalf("draining connection broken: %q %v", line, err)
	}
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := heldR.ReadString('\n'); err == nil {
		t.Fatal("draining connection not closed")
	}
	if _, ok := e.getHealth("bs", negURL(zoneA, "neg-a"))[a1.ip+":"+itoa(a1.port)]; ok {
		t.Fatal("endpoint still reported after draining")
	}
	st := e.srv.Stats().Proxy
	if st.Drained < 1 || st.Rejected < 1 || st.Forwarded < 40 {
		t.Fatalf("proxy stats: %+v", st)
	}

	// A backend going down stops getting connections once UNHEALTHY.
	_ = a2.ln.Close()
	eventually(t, "a2 UNHEALTHY", 5*time.Second, func() bool {
		return e.getHealth("bs", negURL(zoneA, "neg-a"))[a2.ip+":"+itoa(a2.port)] == "UNHEALTHY"
	})
	if seen := count(4); seen[a3.ip] != 4 {
		t.Fatalf("after a2 went down: %v", seen)
	}

	// Deleting the forwarding rule closes its listener.
	e.done(e.frs.Delete(e.ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: project, ForwardingRule: "fr"}))
	if e.srv.ForwardingRuleAddr("fr") != "" {
		t.Fatal("address of a deleted rule")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("deleted forwarding rule still proxies")
		}
		_ = c.Close()
	}
}

func TestDataPathResources(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "TCP", 2, 2)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("tcp", "hc", 0, negURL(zoneA, "neg"))}))
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("http"), Protocol: proto.String("HTTP")}}))

	_, err := e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/http")}})
	expectErr(t, err, http.StatusBadRequest, "invalid")
	_, err = e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/nope")}})
	expectErr(t, err, http.StatusNotFound, "notFound")
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/tcp")}}))
	tp, err := e.tps.Get(e.ctx, &computepb.GetTargetTcpProxyRequest{Project: project, TargetTcpProxy: "tp"})
	if err != nil || tp.GetService() != "https://www.googleapis.com/compute/v1/projects/"+project+"/global/backendServices/tcp" || tp.GetProxyHeader() != "NONE" {
		t.Fatalf("proxy: %v %v", tp, err)
	}
	_, err = e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project,
		ForwardingRuleResource: &computepb.ForwardingRule{Name: proto.String("fr"), Target: proto.String("global/targetTcpProxies/nope")}})
	expectErr(t, err, http.StatusNotFound, "notFound")
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project,
		ForwardingRuleResource: &computepb.ForwardingRule{Name: proto.String("fr"), Target: proto.String("global/targetTcpProxies/tp"), IPAddress: proto.String("127.28.0.1")}}))
	if addr := e.srv.ForwardingRuleAddr("fr"); !strings.HasPrefix(addr, "127.28.0.1:") {
		t.Fatalf("loopback IPAddress not honoured: %s", addr)
	}

	_, err = e.bs.Delete(e.ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: "tcp"})
	expectErr(t, err, http.StatusBadRequest, "resourceInUseByAnotherResource")
	_, err = e.tps.Delete(e.ctx, &computepb.DeleteTargetTcpProxyRequest{Project: project, TargetTcpProxy: "tp"})
	expectErr(t, err, http.StatusBadRequest, "resourceInUseByAnotherResource")
	e.done(e.frs.Delete(e.ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: project, ForwardingRule: "fr"}))
	e.done(e.tps.Delete(e.ctx, &computepb.DeleteTargetTcpProxyRequest{Project: project, TargetTcpProxy: "tp"}))
	e.done(e.bs.Delete(e.ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: "tcp"}))
	_, err = e.frs.Get(e.ctx, &computepb.GetGlobalForwardingRuleRequest{Project: project, ForwardingRule: "fr"})
	expectErr(t, err, http.StatusNotFound, "notFound")
	_, err = e.tps.Get(e.ctx, &computepb.GetTargetTcpProxyRequest{Project: project, TargetTcpProxy: "tp"})
	expectErr(t, err, http.StatusNotFound, "notFound")
}

func TestRateLimitsAndFaults(t *testing.T) {
	e := newEnv(t, computesim.Options{RateLimits: map[string]int{"networkEndpointGroups.get": 2}, RateWindow: 300 * time.Millisecond})
	e.createNEG(zoneA, "neg", 80)
	get := func() error {
		_, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg"})
		return err
	}
	// Start a fresh window so the two calls fall in the same one.
	e.srv.SetRateWindow(300 * time.Millisecond)
	if err := get(); err != nil {
		t.Fatal(err)
	}
	if err := get(); err != nil {
		t.Fatal(err)
	}
	expectErr(t, get(), http.StatusForbidden, "rateLimitExceeded")
	eventually(t, "window to pass", 5*time.Second, func() bool { return get() == nil })

	// Class limits, set and cleared at run time.
	e.srv.SetRateLimit("write", 0)
	_, err := e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("other")}})
	expectErr(t, err, http.StatusForbidden, "rateLimitExceeded")
	e.srv.SetRateLimit("write", -1)
	e.srv.SetRateLimit("networkEndpointGroups.get", -1)

	// Stats, in process and over HTTP.
	st := e.srv.Stats().Methods["networkEndpointGroups.get"]
	if st.RateLimited < 1 || st.Calls < 4 || st.Errors != st.RateLimited {
		t.Fatalf("stats: %+v", st)
	}
	resp, err := http.Get(e.srv.URL() + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var wire computesim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&wire); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if wire.Methods["networkEndpointGroups.get"].RateLimited != st.RateLimited || wire.Methods["networkEndpointGroups.insert"].RateLimited != 1 {
		t.Fatalf("wire stats: %+v", wire)
	}

	// Injected 5xx answers (insert is not retried by the client).
	e.srv.SetErrorRate(1)
	_, err = e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("other")}})
	if c, _ := apiCode(t, err); c != 500 && c != 503 {
		t.Fatalf("injected error code %d", c)
	}
	// Faults over HTTP.
	resp, err = http.Post(e.srv.URL()+"/_sim/faults", "application/json", strings.NewReader(`{"errorRate":0,"latency":30000000}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if f := e.srv.Faults(); f.ErrorRate != 0 || f.Latency != 30*time.Millisecond {
		t.Fatalf("faults: %+v", f)
	}
	start := time.Now()
	if err := get(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("latency not added")
	}
	e.srv.SetLatency(0)

	e.srv.ResetStats()
	if n := len(e.srv.Stats().Methods); n != 0 {
		t.Fatalf("stats after reset: %d methods", n)
	}
}

func TestRateLimitRate(t *testing.T) {
	e := newEnv(t, computesim.Options{RateLimitRate: 1})
	get := func() error {
		_, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg"})
		return err
	}
	expectErr(t, get(), http.StatusForbidden, "rateLimitExceeded")
	e.srv.SetRateLimitRate(0)
	e.createNEG(zoneA, "neg", 80)
	e.srv.SetRateLimitRate(0.5)
	limited := 0
	for range 200 {
		if err := get(); err != nil {
			expectErr(t, err, http.StatusForbidden, "rateLimitExceeded")
			limited++
		}
	}
	// 200 draws at one half: far outside [60, 140] is not chance.
	if limited < 60 || limited > 140 {
		t.Errorf("%d of 200 calls rate limited at rate 0.5", limited)
	}
	if st := e.srv.Stats().Methods["networkEndpointGroups.get"]; st.RateLimited != int64(limited)+1 || st.Errors != st.RateLimited {
		t.Errorf("stats %+v, want %d rate limited", st, limited+1)
	}
	if f := e.srv.Faults(); f.RateLimitRate != 0.5 {
		t.Errorf("faults %+v", f)
	}
	e.srv.SetRateLimitRate(0)
	if err := get(); err != nil {
		t.Errorf("rate 0: %v", err)
	}
}

// TestUnknownPath makes sure unemulated methods answer a Compute-shaped 404.
func TestUnknownPath(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	resp, err := http.Get(e.srv.URL() + "/compute/v1/projects/" + project + "/global/backendBuckets")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct {
			Code   int
			Errors []struct{ Reason string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 404 || body.Error.Code != 404 || body.Error.Errors[0].Reason != "notFound" {
		t.Fatalf("unknown path: %d %+v %v", resp.StatusCode, body, err)
	}
}

func TestProxyHeader(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "TCP", 1, 1)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("bs", "hc", 0, negURL(zoneA, "neg"))}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("bs"), ProxyHeader: proto.String("PROXY_V1")}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project,
		ForwardingRuleResource: &computepb.ForwardingRule{Name: proto.String("fr"), Target: proto.String("tp")}}))
	b := startTCPBackend(t, "127.29.0.1")
	e.done(e.attach(zoneA, "neg", ep("node-1", b.ip, b.port)))
	eventually(t, "HEALTHY", 5*time.Second, func() bool {
		h := e.srv.Health("bs")
		return len(h) == 1 && h[0].State == computesim.StateHealthy
	})
	who, c, r := dialLB(t, e.srv.ForwardingRuleAddr("fr"))
	if who != b.ip {
		t.Fatalf("reached %q", who)
	}
	defer c.Close()
	// The backend echoes what it got: first the PROXY line.
	// From the client to the rule's own ephemeral IP.
	line, err := r.ReadString('\n')
	ruleIP, _, _ := net.SplitHostPort(e.srv.ForwardingRuleAddr("fr"))
	if err != nil || !strings.HasPrefix(line, "PROXY TCP4 127.0.0.1 "+ruleIP+" ") || ruleIP == "127.0.0.1" {
		t.Fatalf("proxy header: %q %v (rule on %s)", line, err, ruleIP)
	}
}

// An endpoint detached while the proxy is connecting a client to it
// drains that connection like any other: the client is served, not
// reset. (The proxy had already sent the connection to the endpoint; a
// reset here failed one request in a gated rollout now and then.)
func TestDetachWhileConnectingDrains(t *testing.T) {
	var servingPort atomic.Int32
	var armed atomic.Bool
	connecting, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, computesim.Options{DrainingTimeout: 5 * time.Second, TargetAddr: func(addr string) string {
		// Health checks use a fixed port of their own; only traffic to
		// the serving port waits here, while the test detaches.
		if _, port, _ := net.SplitHostPort(addr); port == fmt.Sprint(servingPort.Load()) && armed.CompareAndSwap(true, false) {
			close(connecting)
			<-release
		}
		return addr
	}})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	web, health := startTCPBackend(t, "127.27.2.1"), startTCPBackend(t, "127.27.2.1")
	servingPort.Store(web.port)
	e.done(e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: &computepb.HealthCheck{
		Name: proto.String("hc"), Type: proto.String("TCP"), HealthyThreshold: proto.Int32(1), UnhealthyThreshold: proto.Int32(2),
		TcpHealthCheck: &computepb.TCPHealthCheck{PortSpecification: proto.String("USE_FIXED_PORT"), Port: proto.Int32(health.port)},
	}}))
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project,
		BackendServiceResource: tcpBackendService("bs", "hc", 60, negURL(zoneA, "neg-a"))}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/bs"),
	}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("projects/" + project + "/global/targetTcpProxies/tp"),
	}}))
	addr := e.srv.ForwardingRuleAddr("fr")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", web.ip, web.port)))
	eventually(t, "HEALTHY", 5*time.Second, func() bool {
		h := e.srv.Health("bs")
		return len(h) == 1 && h[0].State == computesim.StateHealthy
	})

	armed.Store(true)
	got := make(chan string, 1)
	go func() {
		who, c, _ := dialLB(t, addr)
		if c != nil {
			_ = c.Close()
		}
		got <- who
	}()
	<-connecting
	e.done(e.detach(zoneA, "neg-a", ep("node-1", web.ip, web.port)))
	if h := e.srv.Health("bs"); len(h) != 1 || h[0].State != computesim.StateDraining {
		t.Fatalf("after detach: %+v, want the endpoint DRAINING", h)
	}
	close(release)
	if who := <-got; who != web.ip {
		t.Fatalf("a connection being made when its endpoint was detached reached %q, want %s (draining)", who, web.ip)
	}
}
