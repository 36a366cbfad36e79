package computesim

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

type tcpProxy struct {
	pb   *computepb.TargetTcpProxy
	path string
}

type forwardingRule struct {
	pb   *computepb.ForwardingRule
	path string
	ln   net.Listener
	// httpSrv serves rules to target HTTP(S) proxies; nil for TCP.
	httpSrv *http.Server
	wg      sync.WaitGroup
	// ip is the IP the rule was given (zero when ephemeral) and
	// addressPath the reserved address it uses, if any; with the ports
	// they detect rules that would conflict.
	ip             netip.Addr
	addressPath    string
	portLo, portHi int
}

// close stops accepting and, for HTTP rules, closes client connections,
// without waiting.
func (fr *forwardingRule) close() {
	if fr.httpSrv != nil {
		_ = fr.httpSrv.Close()
	}
	if fr.ln != nil {
		_ = fr.ln.Close()
	}
}

// stop closes the rule and waits for its serving goroutines.
func (fr *forwardingRule) stop() {
	fr.close()
	fr.wg.Wait()
}

// proxyConn is one client connection spliced to one endpoint. It belongs
// to the endpoint's target from the moment the endpoint is chosen, before
// the dial completes, so that detaching the endpoint meanwhile drains it
// like any other connection. backend (nil while dialling) and closed are
// guarded by Server.mu until the splice starts.
//
// An HTTP request forwarded to an endpoint is a proxyConn too, without
// connections: closing it cancels the request (cancel), which is how
// draining and detaching end in-flight requests.
type proxyConn struct {
	rule            *forwardingRule
	client, backend net.Conn
	cancel          func()
	closed          bool
	once            sync.Once
	rec             *ConnRecord // nil without Options.ConnectionHistory
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		pc.closed = true
		if pc.client != nil {
			_ = pc.client.Close()
		}
		if pc.backend != nil {
			_ = pc.backend.Close()
		}
		if pc.cancel != nil {
			pc.cancel()
		}
	})
}

// ---- target TCP proxies ----

func tpPath(r *http.Request) string {
	return fmt.Sprintf("projects/%s/global/targetTcpProxies/%s", r.PathValue("project"), r.PathValue("tp"))
}

func (s *Server) tpInsert(r *http.Request) (proto.Message, *apiError) {
	project := r.PathValue("project")
	in := &computepb.TargetTcpProxy{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := validateName(in.GetName()); e != nil {
		return nil, e
	}
	if in.GetService() == "" {
		return nil, errInvalid("Required field 'resource.service' not specified")
	}
	switch in.GetProxyHeader() {
	case "":
		in.ProxyHeader = proto.String("NONE")
	case "NONE", "PROXY_V1":
	default:
		return nil, errInvalidField("resource.proxyHeader", in.GetProxyHeader(), "Must be NONE or PROXY_V1.")
	}
	svc := qualify(project, in.GetService(), "global/backendServices")
	path := fmt.Sprintf("projects/%s/global/targetTcpProxies/%s", project, in.GetName())
	in.Service = proto.String(selfLink(svc))
	in.Kind = proto.String("compute#targetTcpProxy")
	in.Id = proto.Uint64(newID())
	in.CreationTimestamp = proto.String(nowStamp())
	in.SelfLink = proto.String(selfLink(path))
	s.mu.Lock()
	defer s.mu.Unlock()
	check := func() *apiError {
		bs := s.backendServices[svc]
		if bs == nil || bs.region != "" {
			return errNotFound(svc)
		}
		if p := bs.pb.GetProtocol(); p != "TCP" && p != "SSL" {
			return errInvalidField("resource.service", in.GetService(), "A target TCP proxy needs a backend service with protocol TCP.")
		}
		return nil
	}
	if e := check(); e != nil {
		return nil, e
	}
	if s.tcpProxies[path] != nil {
		return nil, errAlreadyExists(path)
	}
	return s.startOpLocked(r, opScope{project: project}, "insert", path, in.GetId(), func() *apiError {
		if s.tcpProxies[path] != nil {
			return errAlreadyExists(path)
		}
		if e := check(); e != nil {
			return e
		}
		s.tcpProxies[path] = &tcpProxy{pb: in, path: path}
		return nil
	}), nil
}

func (s *Server) tpGet(r *http.Request) (proto.Message, *apiError) {
	return getResource(s, tpPath(r), s.tcpProxies, func(tp *tcpProxy) *computepb.TargetTcpProxy { return tp.pb })
}

func (s *Server) tpList(r *http.Request) (proto.Message, *apiError) {
	coll := fmt.Sprintf("projects/%s/global/targetTcpProxies", r.PathValue("project"))
	items, next, e := listPage(s, r, s.tcpProxies, func(tp *tcpProxy) *computepb.TargetTcpProxy { return tp.pb }, under[*tcpProxy](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.TargetTcpProxyList{Kind: proto.String("compute#targetTcpProxyList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) tpDelete(r *http.Request) (proto.Message, *apiError) {
	path := tpPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	return deleteLocked(s, r, path, s.tcpProxies, func(tp *tcpProxy) uint64 { return tp.pb.GetId() },
		func() string { return s.frUserLocked(path) }, nil)
}

// ---- proxying ----

func (s *Server) acceptLoop(fr *forwardingRule) {
	defer fr.wg.Done()
	for {
		c, err := fr.ln.Accept()
		if err != nil {
			return
		}
		go s.proxy(fr, c)
	}
}

// pickTargetsLocked lists the endpoints a new connection to a TCP proxy
// rule may go to (see healthyTargetsLocked), and the proxy header to send.
func (s *Server) pickTargetsLocked(fr *forwardingRule) ([]*target, string) {
	if s.forwardingRules[fr.path] != fr {
		return nil, ""
	}
	tp := s.tcpProxies[ResourcePath(fr.pb.GetTarget())]
	if tp == nil {
		return nil, ""
	}
	return s.healthyTargetsLocked(ResourcePath(tp.pb.GetService())), tp.pb.GetProxyHeader()
}

// healthyTargetsLocked lists the endpoints of a backend service that may
// take new traffic, in the order to try them: HEALTHY, not detached, in a
// backend whose capacityScaler is not 0, rotated round-robin.
func (s *Server) healthyTargetsLocked(bsPath string) []*target {
	bs := s.backendServices[bsPath]
	if bs == nil {
		return nil
	}
	serving := map[string]bool{}
	for _, b := range bs.pb.GetBackends() {
		if b.GetCapacityScaler() > 0 {
			serving[ResourcePath(b.GetGroup())] = true
		}
	}
	var cands []*target
	for _, t := range s.targets {
		if t.bsPath == bsPath && !t.retired && t.state == StateHealthy && serving[t.negPath] {
			cands = append(cands, t)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	sortTargets(cands)
	n := s.rr[bsPath]
	s.rr[bsPath] = n + 1
	k := int(n % uint64(len(cands)))
	return append(cands[k:], cands[:k]...)
}

// proxy forwards one client connection to a HEALTHY endpoint. When none is
// healthy or reachable the client connection is closed, which is what a
// client of a GCE TCP proxy sees as a connection failure.
func (s *Server) proxy(fr *forwardingRule, c net.Conn) {
	s.stats.proxyAdd(func(p *ProxyStats) { p.Accepted++ })
	s.mu.Lock()
	rec := s.newConnRecordLocked(c)
	cands, header := s.pickTargetsLocked(fr)
	timeout := 2 * time.Second
	if s.opts.HealthCheckTimeout > 0 {
		timeout = max(s.opts.HealthCheckTimeout, 100*time.Millisecond)
	}
	if len(cands) == 0 {
		endConnLocked(rec, nil, ConnNoEndpoint)
	}
	s.mu.Unlock()
	pc := &proxyConn{rule: fr, client: c, rec: rec}
	var chosen *target
	for i, t := range cands {
		if i >= 3 {
			break // like a proxy's retry budget
		}
		s.mu.Lock()
		if t.retired || s.closing || s.forwardingRules[fr.path] != fr {
			// Detached before this connection was sent to it: a
			// detached endpoint gets no new connections.
			s.mu.Unlock()
			continue
		}
		t.conns[pc] = struct{}{}
		s.mu.Unlock()
		bc, err := net.DialTimeout("tcp", s.dialAddr(epKey(t.ip, t.port)), timeout)
		s.mu.Lock()
		if rec != nil {
			if err != nil {
				rec.Tried = append(rec.Tried, epKey(t.ip, t.port)+" ("+err.Error()+")")
			} else {
				rec.Tried = append(rec.Tried, epKey(t.ip, t.port))
			}
		}
		if pc.closed {
			// Closed while dialling, as a draining connection of the
			// endpoint (its draining ended, or it was detached without
			// draining) or because the rule went: it has its outcome.
			s.mu.Unlock()
			if bc != nil {
				_ = bc.Close()
			}
			s.stats.proxyAdd(func(p *ProxyStats) { p.Rejected++ })
			return
		}
		if err != nil {
			delete(t.conns, pc)
			s.mu.Unlock()
			continue
		}
		pc.backend, chosen = bc, t
		t.served++
		s.mu.Unlock()
		break
	}
	if chosen == nil {
		s.mu.Lock()
		endConnLocked(rec, nil, ConnDialFailed)
		s.mu.Unlock()
		s.stats.proxyAdd(func(p *ProxyStats) { p.Rejected++ })
		_ = c.Close()
		return
	}
	bc := pc.backend
	s.stats.proxyAdd(func(p *ProxyStats) { p.Forwarded++ })

	if header == "PROXY_V1" {
		src := c.RemoteAddr().(*net.TCPAddr)
		dst := c.LocalAddr().(*net.TCPAddr)
		_, _ = fmt.Fprintf(bc, "PROXY TCP4 %s %s %d %d\r\n", src.IP, dst.IP, src.Port, dst.Port)
	}
	var wg sync.WaitGroup
	var backendErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(bc, c)
		closeWrite(bc)
	}()
	go func() {
		defer wg.Done()
		_, backendErr = io.Copy(c, bc)
		closeWrite(c)
	}()
	wg.Wait()
	pc.close()
	s.mu.Lock()
	if rec != nil && backendErr != nil && rec.BackendErr == "" {
		rec.BackendErr = backendErr.Error()
	}
	endConnLocked(rec, chosen, ConnCompleted)
	delete(chosen.conns, pc)
	s.mu.Unlock()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = c.Close()
	}
}
