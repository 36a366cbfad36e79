package computesim

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// Health states, as backendServices.getHealth reports them.
const (
	StateUnknown   = "UNKNOWN"
	StateHealthy   = "HEALTHY"
	StateUnhealthy = "UNHEALTHY"
	StateDraining  = "DRAINING"
)

// target is one endpoint as seen by one backend service: it carries the
// health state machine and the proxied connections to that endpoint. A
// re-attached endpoint gets a new target (back to UNKNOWN).
type target struct {
	key      string
	bsPath   string
	negPath  string
	zone     string
	instance string
	ip       string
	port     int32

	attachedAt   time.Time
	state        string
	succ, fail   int
	firstHealthy time.Time
	lastChange   time.Time
	drainUntil   time.Time
	detachedAt   time.Time
	// servingUntil is when a detached HEALTHY endpoint stops getting new
	// traffic (Options.DetachProgrammingDelay); zero when it stopped at
	// its detach.
	servingUntil time.Time
	retired      bool // detached: no probes, no new connections
	conns        map[*proxyConn]struct{}
	served       int64
}

func (t *target) closeConnsLocked(reason string) int {
	n := len(t.conns)
	for pc := range t.conns {
		endConnLocked(pc.rec, t, reason)
		pc.close()
	}
	clear(t.conns)
	return n
}

// syncTargetsLocked reconciles health targets with the resources: every
// endpoint of every NEG that is a backend of a backend service has exactly
// one active target. Targets that are no longer wanted start draining (or go
// at once without connection draining). Cheap enough to run after every
// mutation: it is linear in the number of endpoints.
func (s *Server) syncTargetsLocked() {
	type want struct {
		n  *neg
		ep *endpoint
	}
	desired := map[string]want{}
	for bsPath, bs := range s.backendServices {
		for _, b := range bs.pb.GetBackends() {
			np := ResourcePath(b.GetGroup())
			n := s.negs[np]
			if n == nil {
				continue
			}
			for k, ep := range n.endpoints {
				desired[bsPath+"|"+np+"|"+k] = want{n, ep}
			}
		}
	}
	for key, t := range s.targets {
		if w, ok := desired[key]; ok && w.ep.attachedAt.Equal(t.attachedAt) {
			continue
		}
		delete(s.targets, key)
		s.retireTargetLocked(t)
	}
	now := time.Now()
	for key, w := range desired {
		if s.targets[key] != nil {
			continue
		}
		bsPath, _, _ := strings.Cut(key, "|")
		t := &target{
			key: key, bsPath: bsPath, negPath: w.n.path, zone: w.n.zone,
			instance: w.ep.instance, ip: w.ep.ip, port: w.ep.port,
			attachedAt: w.ep.attachedAt, state: StateUnknown, lastChange: now,
			conns: map[*proxyConn]struct{}{},
		}
		s.targets[key] = t
		// First probe once the endpoint is programmed, at a random point
		// of the first interval, so that a batch of new endpoints does not
		// probe in lockstep.
		interval, _ := s.probeTimingLocked(t)
		first := w.ep.attachedAt.Add(s.opts.ProgrammingDelay)
		if first.Before(now) {
			first = now
		}
		s.sched.schedule(t, first.Add(time.Duration(rand.Int64N(int64(interval)/2+1))))
	}
}

// takesNewTraffic reports whether new connections and requests may go to
// the target: it is attached, or detached so recently that the load
// balancer does not know yet (Options.DetachProgrammingDelay).
func (t *target) takesNewTraffic(now time.Time) bool {
	return !t.retired || now.Before(t.servingUntil)
}

// retireTargetLocked stops probing a target and, when its backend service
// drains connections, keeps its connections (reported DRAINING) until the
// draining timeout; otherwise it closes them now.
func (s *Server) retireTargetLocked(t *target) {
	t.retired = true
	t.detachedAt = time.Now()
	var drain time.Duration
	if bs := s.backendServices[t.bsPath]; bs != nil {
		if sec := bs.pb.GetConnectionDraining().GetDrainingTimeoutSec(); sec > 0 {
			drain = time.Duration(sec) * time.Second
			if s.opts.DrainingTimeout > 0 {
				drain = s.opts.DrainingTimeout
			}
		}
	}
	tail := s.opts.DetachProgrammingDelay
	if t.state != StateHealthy || s.closing {
		tail = 0
	}
	if (drain <= 0 && tail <= 0) || s.closing {
		t.closeConnsLocked(ConnDetached)
		return
	}
	if tail > 0 {
		t.servingUntil = t.detachedAt.Add(tail)
	}
	t.state = StateDraining
	t.lastChange = t.detachedAt
	t.drainUntil = t.lastChange.Add(tail + drain)
	s.draining[t] = struct{}{}
	time.AfterFunc(tail+drain, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.draining[t]; !ok {
			return
		}
		delete(s.draining, t)
		n := t.closeConnsLocked(ConnDrained)
		s.stats.proxyAdd(func(p *ProxyStats) { p.Drained += int64(n) })
	})
}

// groupTargetsLocked lists the targets of one NEG for one backend service,
// active ones and draining ones whose endpoint has not come back, sorted.
func (s *Server) groupTargetsLocked(bsPath, negPath string) []*target {
	pfx := bsPath + "|" + negPath + "|"
	var out []*target
	seen := map[string]bool{}
	for key, t := range s.targets {
		if strings.HasPrefix(key, pfx) {
			out = append(out, t)
			seen[key] = true
		}
	}
	for t := range s.draining {
		if strings.HasPrefix(t.key, pfx) && !seen[t.key] {
			out = append(out, t)
		}
	}
	sortTargets(out)
	return out
}

func sortTargets(ts []*target) {
	sort.Slice(ts, func(i, j int) bool {
		a, _ := netip.ParseAddr(ts[i].ip)
		b, _ := netip.ParseAddr(ts[j].ip)
		if c := a.Compare(b); c != 0 {
			return c < 0
		}
		if ts[i].port != ts[j].port {
			return ts[i].port < ts[j].port
		}
		return ts[i].key < ts[j].key
	})
}

// healthIndexLocked groups the active targets of one NEG by endpoint, for
// listNetworkEndpoints' healths[] (one pass instead of one per endpoint).
func (s *Server) healthIndexLocked(negPath string) map[string][]*target {
	idx := map[string][]*target{}
	mid := "|" + negPath + "|"
	for key, t := range s.targets {
		if i := strings.Index(key, mid); i >= 0 {
			ek := key[i+len(mid):]
			idx[ek] = append(idx[ek], t)
		}
	}
	for _, ts := range idx {
		sort.Slice(ts, func(i, j int) bool { return ts[i].bsPath < ts[j].bsPath })
	}
	return idx
}

// endpointHealthsLocked is listNetworkEndpoints' healths[]: one entry per
// backend service that has the endpoint's NEG as a backend.
func (s *Server) endpointHealthsLocked(idx map[string][]*target, ep *endpoint) []*computepb.HealthStatusForNetworkEndpoint {
	var out []*computepb.HealthStatusForNetworkEndpoint
	for _, t := range idx[epKey(ep.ip, ep.port)] {
		h := &computepb.HealthStatusForNetworkEndpoint{
			BackendService: &computepb.BackendServiceReference{BackendService: proto.String(selfLink(t.bsPath))},
			HealthState:    proto.String(t.state),
		}
		if bs := s.backendServices[t.bsPath]; bs != nil && len(bs.pb.GetHealthChecks()) > 0 {
			h.HealthCheck = &computepb.HealthCheckReference{HealthCheck: proto.String(bs.pb.GetHealthChecks()[0])}
		}
		out = append(out, h)
	}
	return out
}

// ---- probing ----

type probeSpec struct {
	typ      string
	addr     string
	timeout  time.Duration
	path     string
	host     string
	request  string
	response string
	healthy  int
	sick     int
}

func (s *Server) healthCheckOfLocked(t *target) *healthCheck {
	bs := s.backendServices[t.bsPath]
	if bs == nil || len(bs.pb.GetHealthChecks()) == 0 {
		return nil
	}
	return s.healthChecks[ResourcePath(bs.pb.GetHealthChecks()[0])]
}

// probeTimingLocked is the probe cadence of a target: the health check's,
// unless the Options override it.
func (s *Server) probeTimingLocked(t *target) (interval, timeout time.Duration) {
	interval, timeout = 5*time.Second, 5*time.Second
	if hc := s.healthCheckOfLocked(t); hc != nil {
		interval = time.Duration(hc.pb.GetCheckIntervalSec()) * time.Second
		timeout = time.Duration(hc.pb.GetTimeoutSec()) * time.Second
	}
	if s.opts.HealthCheckInterval > 0 {
		interval = s.opts.HealthCheckInterval
	}
	if s.opts.HealthCheckTimeout > 0 {
		timeout = s.opts.HealthCheckTimeout
	}
	return interval, timeout
}

func (s *Server) probeSpecLocked(t *target) *probeSpec {
	hc := s.healthCheckOfLocked(t)
	if hc == nil {
		return nil
	}
	_, timeout := s.probeTimingLocked(t)
	sp := &probeSpec{
		typ: hc.pb.GetType(), timeout: timeout,
		healthy: int(hc.pb.GetHealthyThreshold()), sick: int(hc.pb.GetUnhealthyThreshold()),
	}
	port := t.port
	switch sp.typ {
	case "TCP":
		c := hc.pb.GetTcpHealthCheck()
		if c.GetPortSpecification() == "USE_FIXED_PORT" {
			port = c.GetPort()
		}
		sp.request, sp.response = c.GetRequest(), c.GetResponse()
	case "HTTP":
		c := hc.pb.GetHttpHealthCheck()
		if c.GetPortSpecification() == "USE_FIXED_PORT" {
			port = c.GetPort()
		}
		sp.path, sp.host, sp.response = c.GetRequestPath(), c.GetHost(), c.GetResponse()
	}
	sp.addr = s.dialAddr(net.JoinHostPort(t.ip, fmt.Sprint(port)))
	return sp
}

// dialAddr is where the emulator connects to reach an endpoint address.
func (s *Server) dialAddr(addr string) string {
	if s.opts.TargetAddr != nil {
		return s.opts.TargetAddr(addr)
	}
	return addr
}

// reachable reports whether an endpoint IP maps to a loopback address,
// the only kind the emulator ever contacts.
func (s *Server) reachable(ip netip.Addr) bool {
	host, _, err := net.SplitHostPort(s.dialAddr(net.JoinHostPort(ip.String(), "1")))
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

var probeTransport = &http.Transport{DisableKeepAlives: true, Proxy: nil}

// run probes once. Only loopback addresses are ever contacted.
func (sp *probeSpec) run() bool {
	host, _, _ := net.SplitHostPort(sp.addr)
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), sp.timeout)
	defer cancel()
	switch sp.typ {
	case "TCP":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", sp.addr)
		if err != nil {
			return false
		}
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = c.SetDeadline(dl)
		}
		if sp.request != "" {
			if _, err := io.WriteString(c, sp.request); err != nil {
				return false
			}
		}
		if sp.response != "" {
			buf := make([]byte, len(sp.response))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != sp.response {
				return false
			}
		}
		return true
	case "HTTP":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sp.addr+sp.path, nil)
		if err != nil {
			return false
		}
		if sp.host != "" {
			req.Host = sp.host
		}
		req.Header.Set("User-Agent", "GoogleHC/1.0")
		resp, err := probeTransport.RoundTrip(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		ok := resp.StatusCode == http.StatusOK
		if ok && sp.response != "" {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			ok = strings.Contains(string(b), sp.response)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return ok
	}
	return false
}

func (s *Server) probeTarget(t *target) {
	s.mu.Lock()
	if t.retired || s.closing {
		s.mu.Unlock()
		return
	}
	sp := s.probeSpecLocked(t)
	interval, _ := s.probeTimingLocked(t)
	s.mu.Unlock()

	start := time.Now()
	ok := sp != nil && sp.run()

	s.mu.Lock()
	defer s.mu.Unlock()
	if t.retired || s.closing {
		return
	}
	if sp != nil {
		s.recordProbeLocked(t, ok, sp)
	}
	// ±10% jitter keeps thousands of endpoints from synchronising.
	next := start.Add(interval + time.Duration((rand.Float64()-0.5)*0.2*float64(interval)))
	if now := time.Now(); next.Before(now) {
		next = now
	}
	s.sched.schedule(t, next)
}

func (s *Server) recordProbeLocked(t *target, ok bool, sp *probeSpec) {
	if ok {
		t.succ++
		t.fail = 0
	} else {
		t.fail++
		t.succ = 0
	}
	now := time.Now()
	switch {
	case ok && t.state != StateHealthy && t.succ >= sp.healthy:
		t.state = StateHealthy
		t.lastChange = now
		if t.firstHealthy.IsZero() {
			t.firstHealthy = now
		}
		s.logf("computesim: %s %s -> HEALTHY", lastSegment(t.bsPath), epKey(t.ip, t.port))
	case !ok && t.state != StateUnhealthy && t.fail >= sp.sick:
		t.state = StateUnhealthy
		t.lastChange = now
		s.logf("computesim: %s %s -> UNHEALTHY", lastSegment(t.bsPath), epKey(t.ip, t.port))
	}
}

// scheduler runs probes at their due times: one goroutine keeps a heap of
// due times and hands due targets to a bounded pool of workers, so probing
// thousands of endpoints costs a few goroutines, not one per endpoint.
type scheduler struct {
	s    *Server
	mu   sync.Mutex
	h    probeHeap
	wake chan struct{}
	work chan *target
	quit chan struct{}
	wg   sync.WaitGroup
}

type probeItem struct {
	at time.Time
	t  *target
}

func newScheduler(s *Server, workers int) *scheduler {
	sc := &scheduler{s: s, wake: make(chan struct{}, 1), work: make(chan *target, 1024), quit: make(chan struct{})}
	sc.wg.Add(1 + workers)
	go sc.run()
	for range workers {
		go func() {
			defer sc.wg.Done()
			for {
				select {
				case t := <-sc.work:
					s.probeTarget(t)
				case <-sc.quit:
					return
				}
			}
		}()
	}
	return sc
}

func (sc *scheduler) schedule(t *target, at time.Time) {
	sc.mu.Lock()
	heap.Push(&sc.h, probeItem{at, t})
	first := sc.h[0].t == t
	sc.mu.Unlock()
	if first {
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

func (sc *scheduler) stop() {
	close(sc.quit)
	sc.wg.Wait()
}

func (sc *scheduler) run() {
	defer sc.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		sc.mu.Lock()
		var due []*target
		now := time.Now()
		for len(sc.h) > 0 && !sc.h[0].at.After(now) && len(due) < 256 {
			due = append(due, heap.Pop(&sc.h).(probeItem).t)
		}
		wait := time.Hour
		if len(sc.h) > 0 {
			wait = max(time.Until(sc.h[0].at), 0)
		}
		sc.mu.Unlock()
		for _, t := range due {
			select {
			case sc.work <- t:
			case <-sc.quit:
				return
			}
		}
		if len(due) > 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-sc.quit:
			return
		case <-sc.wake:
		case <-timer.C:
		}
	}
}

type probeHeap []probeItem

func (h probeHeap) Len() int           { return len(h) }
func (h probeHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h probeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *probeHeap) Push(x any)        { *h = append(*h, x.(probeItem)) }
func (h *probeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// ---- views ----

// EndpointHealth is an emulator-side view of one endpoint's health in one
// backend service.
type EndpointHealth struct {
	BackendService string    `json:"backendService"` // resource path
	NEG            string    `json:"neg"`            // resource path
	Zone           string    `json:"zone"`
	Instance       string    `json:"instance"`
	IPAddress      string    `json:"ipAddress"`
	Port           int32     `json:"port"`
	State          string    `json:"state"`
	AttachedAt     time.Time `json:"attachedAt"`
	FirstHealthyAt time.Time `json:"firstHealthyAt,omitzero"`
	LastChange     time.Time `json:"lastChange"`
	DrainUntil     time.Time `json:"drainUntil,omitzero"`
	// ActiveConnections are proxied connections open now; Connections
	// counts all connections ever forwarded to this endpoint.
	ActiveConnections int   `json:"activeConnections"`
	Connections       int64 `json:"connections"`
}

// Health reports every endpoint's health in a backend service, named by
// name (global first, then any region), resource path or URL; "" reports all
// backend services. Draining endpoints are included.
func (s *Server) Health(backendService string) []EndpointHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	match := func(p string) bool { return true }
	if backendService != "" {
		want := s.resolveBackendServiceLocked(backendService)
		match = func(p string) bool { return p == want }
	}
	var ts []*target
	for _, t := range s.targets {
		if match(t.bsPath) {
			ts = append(ts, t)
		}
	}
	for t := range s.draining {
		if match(t.bsPath) {
			ts = append(ts, t)
		}
	}
	sortTargets(ts)
	out := make([]EndpointHealth, 0, len(ts))
	for _, t := range ts {
		out = append(out, EndpointHealth{
			BackendService: t.bsPath, NEG: t.negPath, Zone: t.zone, Instance: t.instance,
			IPAddress: t.ip, Port: t.port, State: t.state,
			AttachedAt: t.attachedAt, FirstHealthyAt: t.firstHealthy, LastChange: t.lastChange, DrainUntil: t.drainUntil,
			ActiveConnections: len(t.conns), Connections: t.served,
		})
	}
	return out
}

func (s *Server) resolveBackendServiceLocked(ref string) string {
	if strings.Contains(ref, "/") {
		return ResourcePath(ref)
	}
	var cands []string
	for p, bs := range s.backendServices {
		if bs.pb.GetName() == ref {
			cands = append(cands, p)
		}
	}
	sort.Slice(cands, func(i, j int) bool {
		gi, gj := strings.Contains(cands[i], "/global/"), strings.Contains(cands[j], "/global/")
		if gi != gj {
			return gi
		}
		return cands[i] < cands[j]
	})
	if len(cands) == 0 {
		return "\x00none"
	}
	return cands[0]
}
