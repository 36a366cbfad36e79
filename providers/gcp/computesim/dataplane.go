package computesim

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// tcpProxy is a target TCP proxy (global or regional) or a target SSL
// proxy (global), which terminates TLS and forwards plain TCP. Both are
// kept as a TargetSslProxy (a superset of TargetTcpProxy's fields) so that
// one code path serves the three collections.
type tcpProxy struct {
	pb     *computepb.TargetSslProxy
	path   string
	region string
	ssl    bool
}

// regionLink is the URL of a regional proxy's region, which only
// TargetTcpProxy has a field for.
func (tp *tcpProxy) regionLink() string {
	i := strings.Index(tp.path, "/targetTcpProxies/")
	return selfLink(tp.path[:i])
}

// message is the proxy as its own collection reports it.
func (tp *tcpProxy) message() proto.Message {
	if tp.ssl {
		return proto.CloneOf(tp.pb)
	}
	return tp.tcpMessage()
}

// tcpMessage is the proxy as a TargetTcpProxy. Lists call it for every
// proxy before selecting those of their collection, so it must not fail
// for SSL proxies.
func (tp *tcpProxy) tcpMessage() *computepb.TargetTcpProxy {
	out := &computepb.TargetTcpProxy{}
	b, _ := protojson.Marshal(tp.pb)
	_ = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, out)
	if tp.region != "" && !tp.ssl {
		out.Region = proto.String(tp.regionLink())
	}
	return out
}

func tcpProxyCollection(ssl bool) string {
	if ssl {
		return "targetSslProxies"
	}
	return "targetTcpProxies"
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

// ---- target TCP and SSL proxies ----

func tpPath(r *http.Request, ssl bool) (string, *apiError) {
	coll, _, e := scopedCollection(r, tcpProxyCollection(ssl))
	if e != nil {
		return "", e
	}
	return coll + "/" + r.PathValue("tp"), nil
}

// readTCPProxy decodes an insert body of either kind into a
// TargetSslProxy.
func readTCPProxy(r *http.Request, ssl bool) (*computepb.TargetSslProxy, *apiError) {
	out := &computepb.TargetSslProxy{}
	if ssl {
		_, e := readBody(r, out)
		return out, e
	}
	in := &computepb.TargetTcpProxy{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	// region and proxyBind have no place in a TargetSslProxy: the region
	// comes from the path, and proxyBind is not emulated.
	b, _ := protojson.Marshal(in)
	_ = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, out)
	return out, nil
}

func (s *Server) tpInsert(ssl bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		project := r.PathValue("project")
		coll, region, e := scopedCollection(r, tcpProxyCollection(ssl))
		if e != nil {
			return nil, e
		}
		in, e := readTCPProxy(r, ssl)
		if e != nil {
			return nil, e
		}
		if e := validateName(in.GetName()); e != nil {
			return nil, e
		}
		if in.GetService() == "" {
			return nil, errInvalid("Required field 'resource.service' not specified")
		}
		if in.CertificateMap != nil || in.SslPolicy != nil {
			return nil, errInvalid("Invalid value for field 'resource': certificate maps and SSL policies are not emulated.")
		}
		switch in.GetProxyHeader() {
		case "":
			in.ProxyHeader = proto.String("NONE")
		case "NONE", "PROXY_V1":
		default:
			return nil, errInvalidField("resource.proxyHeader", in.GetProxyHeader(), "Must be NONE or PROXY_V1.")
		}
		svc := qualify(project, in.GetService(), scopePrefix(region)+"/backendServices")
		path := coll + "/" + in.GetName()
		in.Service = proto.String(selfLink(svc))
		// Both kinds are kept as a TargetSslProxy, which has no region
		// field (see readTCPProxy).
		stampNew(in, "compute#"+strings.TrimSuffix(tcpProxyCollection(ssl), "ies")+"y", project, "", path)
		s.mu.Lock()
		defer s.mu.Unlock()
		check := func() *apiError {
			bs := s.backendServices[svc]
			if bs == nil {
				return errNotFound(svc)
			}
			if bs.region != region {
				return errInvalidField("resource.service", in.GetService(), "The backend service must be in the same scope (global or region) as the target proxy.")
			}
			if p := bs.pb.GetProtocol(); p != "TCP" && p != "SSL" {
				return errInvalidField("resource.service", in.GetService(), "A target TCP or SSL proxy needs a backend service with protocol TCP or SSL.")
			}
			if ssl {
				certs, e := s.resolveCertsLocked(project, region, "resource.sslCertificates", in.GetSslCertificates())
				if e != nil {
					return e
				}
				in.SslCertificates = certs
			}
			return nil
		}
		if e := check(); e != nil {
			return nil, e
		}
		if s.tcpProxies[path] != nil {
			return nil, errAlreadyExists(path)
		}
		return s.startOpLocked(r, scopeOf(r), "insert", path, in.GetId(), func() *apiError {
			if s.tcpProxies[path] != nil {
				return errAlreadyExists(path)
			}
			if e := check(); e != nil {
				return e
			}
			s.tcpProxies[path] = &tcpProxy{pb: in, path: path, region: region, ssl: ssl}
			return nil
		}), nil
	}
}

func (s *Server) tpGet(ssl bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		path, e := tpPath(r, ssl)
		if e != nil {
			return nil, e
		}
		return getResource(s, path, s.tcpProxies, func(tp *tcpProxy) proto.Message { return tp.message() })
	}
}

func (s *Server) tpList(ssl bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		coll, _, e := scopedCollection(r, tcpProxyCollection(ssl))
		if e != nil {
			return nil, e
		}
		if ssl {
			items, next, e := listPage(s, r, s.tcpProxies, func(tp *tcpProxy) *computepb.TargetSslProxy { return tp.pb }, under[*tcpProxy](coll))
			if e != nil {
				return nil, e
			}
			return &computepb.TargetSslProxyList{Kind: proto.String("compute#targetSslProxyList"), Id: proto.String(coll),
				SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
		}
		items, next, e := listPage(s, r, s.tcpProxies, func(tp *tcpProxy) *computepb.TargetTcpProxy { return tp.tcpMessage() }, under[*tcpProxy](coll))
		if e != nil {
			return nil, e
		}
		return &computepb.TargetTcpProxyList{Kind: proto.String("compute#targetTcpProxyList"), Id: proto.String(coll),
			SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
	}
}

func (s *Server) tpDelete(ssl bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		path, e := tpPath(r, ssl)
		if e != nil {
			return nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return deleteLocked(s, r, path, s.tcpProxies, func(tp *tcpProxy) uint64 { return tp.pb.GetId() },
			func() string { return s.frUserLocked(path) }, nil)
	}
}

// tpSetCertificates replaces a target SSL proxy's certificates; new
// connections present the new ones.
func (s *Server) tpSetCertificates(r *http.Request) (proto.Message, *apiError) {
	in := &computepb.TargetSslProxiesSetSslCertificatesRequest{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	path, e := tpPath(r, true)
	if e != nil {
		return nil, e
	}
	project := r.PathValue("project")
	s.mu.Lock()
	defer s.mu.Unlock()
	set := func() *apiError {
		tp := s.tcpProxies[path]
		if tp == nil {
			return errNotFound(path)
		}
		certs, e := s.resolveCertsLocked(project, "", "sslCertificates", in.GetSslCertificates())
		if e != nil {
			return e
		}
		next := proto.CloneOf(tp.pb)
		next.SslCertificates = certs
		tp.pb = next
		return nil
	}
	tp := s.tcpProxies[path]
	if tp == nil {
		return nil, errNotFound(path)
	}
	if _, e := s.resolveCertsLocked(project, "", "sslCertificates", in.GetSslCertificates()); e != nil {
		return nil, e
	}
	return s.startOpLocked(r, scopeOf(r), "setSslCertificates", path, tp.pb.GetId(), set), nil
}

// ---- proxying ----

// acceptLoop proxies the connections ln (the rule's listener, or a TLS
// listener over it for target SSL proxies) accepts.
func (s *Server) acceptLoop(fr *forwardingRule, ln net.Listener) {
	defer fr.wg.Done()
	for {
		c, err := ln.Accept()
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
	// Detached endpoints whose detach the load balancer has not learnt
	// yet (Options.DetachProgrammingDelay).
	now := time.Now()
	for t := range s.draining {
		if t.bsPath == bsPath && now.Before(t.servingUntil) && serving[t.negPath] {
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
		if !t.takesNewTraffic(time.Now()) || s.closing || s.forwardingRules[fr.path] != fr {
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
