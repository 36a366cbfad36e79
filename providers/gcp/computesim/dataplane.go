package computesim

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
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
	wg   sync.WaitGroup
}

// stop closes the listener and waits for the accept loop.
func (fr *forwardingRule) stop() {
	if fr.ln != nil {
		_ = fr.ln.Close()
	}
	fr.wg.Wait()
}

// proxyConn is one client connection spliced to one endpoint. It belongs
// to the endpoint's target from the moment the endpoint is chosen, before
// the dial completes, so that detaching the endpoint meanwhile drains it
// like any other connection. backend (nil while dialling) and closed are
// guarded by Server.mu until the splice starts.
type proxyConn struct {
	client, backend net.Conn
	closed          bool
	once            sync.Once
	rec             *ConnRecord // nil without Options.ConnectionHistory
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		pc.closed = true
		_ = pc.client.Close()
		if pc.backend != nil {
			_ = pc.backend.Close()
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
	tp := s.tcpProxies[path]
	if tp == nil {
		return nil, errNotFound(path)
	}
	user := func() string {
		var users []string
		for p, fr := range s.forwardingRules {
			if ResourcePath(fr.pb.GetTarget()) == path {
				users = append(users, p)
			}
		}
		sort.Strings(users)
		if len(users) == 0 {
			return ""
		}
		return users[0]
	}
	if u := user(); u != "" {
		return nil, errInUse(path, u)
	}
	return s.startOpLocked(r, opScope{project: r.PathValue("project")}, "delete", path, tp.pb.GetId(), func() *apiError {
		if s.tcpProxies[path] == nil {
			return errNotFound(path)
		}
		if u := user(); u != "" {
			return errInUse(path, u)
		}
		delete(s.tcpProxies, path)
		return nil
	}), nil
}

// ---- global forwarding rules ----

func frPath(r *http.Request) string {
	return fmt.Sprintf("projects/%s/global/forwardingRules/%s", r.PathValue("project"), r.PathValue("fr"))
}

var portRangeRE = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)

// frInsert creates a forwarding rule to a target TCP proxy. Its listener
// binds IPAddress:port when IPAddress is a loopback address and portRange a
// single port; otherwise it binds Options.ListenHost on a free port. The
// reported IPAddress is the bound one; ForwardingRuleAddr gives host:port.
func (s *Server) frInsert(r *http.Request) (proto.Message, *apiError) {
	project := r.PathValue("project")
	in := &computepb.ForwardingRule{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := validateName(in.GetName()); e != nil {
		return nil, e
	}
	if in.GetTarget() == "" {
		return nil, errInvalid("Required field 'resource.target' not specified")
	}
	target := qualify(project, in.GetTarget(), "global/targetTcpProxies")
	if !strings.Contains(target, "/targetTcpProxies/") {
		return nil, errInvalidField("resource.target", in.GetTarget(), "Only target TCP proxies are emulated as forwarding rule targets.")
	}
	if p := in.GetIPProtocol(); p != "" && p != "TCP" {
		return nil, errInvalidField("resource.IPProtocol", p, "Must be TCP for a target TCP proxy.")
	}
	in.IPProtocol = proto.String("TCP")
	if in.LoadBalancingScheme == nil {
		in.LoadBalancingScheme = proto.String("EXTERNAL")
	}
	bindPort := 0
	if pr := in.GetPortRange(); pr != "" {
		m := portRangeRE.FindStringSubmatch(pr)
		if m == nil {
			return nil, errInvalidField("resource.portRange", pr, "Must be a port or a port range like 80-80.")
		}
		lo, _ := strconv.Atoi(m[1])
		hi := lo
		if m[2] != "" {
			hi, _ = strconv.Atoi(m[2])
		}
		if lo < 1 || hi > 65535 || hi < lo {
			return nil, errInvalidField("resource.portRange", pr, "Ports must be between 1 and 65535.")
		}
		if lo == hi {
			bindPort = lo
			in.PortRange = proto.String(fmt.Sprintf("%d-%d", lo, hi))
		}
	}
	bindHost := s.opts.ListenHost
	if a, err := netip.ParseAddr(in.GetIPAddress()); err == nil && a.IsLoopback() {
		bindHost = a.String()
	} else {
		bindPort = 0
	}
	path := fmt.Sprintf("projects/%s/global/forwardingRules/%s", project, in.GetName())
	in.Target = proto.String(selfLink(target))
	in.Kind = proto.String("compute#forwardingRule")
	in.Id = proto.Uint64(newID())
	in.CreationTimestamp = proto.String(nowStamp())
	in.SelfLink = proto.String(selfLink(path))
	in.Fingerprint = proto.String(fmt.Sprintf("%x", newID()))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpProxies[target] == nil {
		return nil, errNotFound(target)
	}
	if s.forwardingRules[path] != nil {
		return nil, errAlreadyExists(path)
	}
	return s.startOpLocked(r, opScope{project: project}, "insert", path, in.GetId(), func() *apiError {
		if s.forwardingRules[path] != nil {
			return errAlreadyExists(path)
		}
		if s.tcpProxies[target] == nil {
			return errNotFound(target)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(bindHost, strconv.Itoa(bindPort)))
		if err != nil {
			return errInvalidField("resource.IPAddress", in.GetIPAddress(), "The address and port are already in use: "+err.Error())
		}
		in.IPAddress = proto.String(ln.Addr().(*net.TCPAddr).IP.String())
		fr := &forwardingRule{pb: in, path: path, ln: ln}
		s.forwardingRules[path] = fr
		fr.wg.Add(1)
		go s.acceptLoop(fr)
		return nil
	}), nil
}

func (s *Server) frGet(r *http.Request) (proto.Message, *apiError) {
	return getResource(s, frPath(r), s.forwardingRules, func(fr *forwardingRule) *computepb.ForwardingRule { return fr.pb })
}

func (s *Server) frList(r *http.Request) (proto.Message, *apiError) {
	coll := fmt.Sprintf("projects/%s/global/forwardingRules", r.PathValue("project"))
	items, next, e := listPage(s, r, s.forwardingRules, func(fr *forwardingRule) *computepb.ForwardingRule { return fr.pb }, under[*forwardingRule](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.ForwardingRuleList{Kind: proto.String("compute#forwardingRuleList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) frDelete(r *http.Request) (proto.Message, *apiError) {
	path := frPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	fr := s.forwardingRules[path]
	if fr == nil {
		return nil, errNotFound(path)
	}
	return s.startOpLocked(r, opScope{project: r.PathValue("project")}, "delete", path, fr.pb.GetId(), func() *apiError {
		fr := s.forwardingRules[path]
		if fr == nil {
			return errNotFound(path)
		}
		delete(s.forwardingRules, path)
		// Closing the listener does not wait here (we hold s.mu); the
		// accept loop exits on its own. Open connections end with it.
		_ = fr.ln.Close()
		for _, t := range s.targets {
			s.closeRuleConnsLocked(t, fr)
		}
		for t := range s.draining {
			s.closeRuleConnsLocked(t, fr)
		}
		return nil
	}), nil
}

func (s *Server) closeRuleConnsLocked(t *target, fr *forwardingRule) {
	laddr := fr.ln.Addr().String()
	for pc := range t.conns {
		if pc.client.LocalAddr().String() == laddr {
			endConnLocked(pc.rec, t, ConnRuleDeleted)
			pc.close()
			delete(t.conns, pc)
		}
	}
}

// ForwardingRuleAddr is the host:port a global forwarding rule listens on,
// or "" when there is no such rule (yet: it appears when its insert
// operation completes).
func (s *Server) ForwardingRuleAddr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var paths []string
	for p, fr := range s.forwardingRules {
		if fr.pb.GetName() == name {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return ""
	}
	sort.Strings(paths)
	return s.forwardingRules[paths[0]].ln.Addr().String()
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

// pickTargetsLocked lists the endpoints a new connection may go to, in the
// order to try them: HEALTHY, not detached, in a backend whose
// capacityScaler is not 0, rotated round-robin per backend service.
func (s *Server) pickTargetsLocked(fr *forwardingRule) ([]*target, string) {
	if s.forwardingRules[fr.path] != fr {
		return nil, ""
	}
	tp := s.tcpProxies[ResourcePath(fr.pb.GetTarget())]
	if tp == nil {
		return nil, ""
	}
	bsPath := ResourcePath(tp.pb.GetService())
	bs := s.backendServices[bsPath]
	if bs == nil {
		return nil, ""
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
		return nil, tp.pb.GetProxyHeader()
	}
	sortTargets(cands)
	n := s.rr[bsPath]
	s.rr[bsPath] = n + 1
	k := int(n % uint64(len(cands)))
	return append(cands[k:], cands[:k]...), tp.pb.GetProxyHeader()
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
	pc := &proxyConn{client: c, rec: rec}
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
