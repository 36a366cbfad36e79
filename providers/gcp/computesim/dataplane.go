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

// ---- forwarding rules, global and regional ----

func frPath(r *http.Request) (string, *apiError) {
	coll, _, e := scopedCollection(r, "forwardingRules")
	if e != nil {
		return "", e
	}
	return coll + "/" + r.PathValue("fr"), nil
}

var portRangeRE = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)

// targetKind is the collection of a forwarding rule target the emulator
// serves: targetTcpProxies, targetHttpProxies or targetHttpsProxies.
func targetKind(path string) string {
	parts := strings.Split(path, "/")
	if len(parts) < 2 {
		return ""
	}
	switch k := parts[len(parts)-2]; k {
	case "targetTcpProxies", "targetHttpProxies", "targetHttpsProxies":
		return k
	}
	return ""
}

// parsePortRange reads "80", "80-80" or "1000-2000"; empty takes def.
func parsePortRange(pr string, def int) (lo, hi int, e *apiError) {
	if pr == "" {
		return def, def, nil
	}
	m := portRangeRE.FindStringSubmatch(pr)
	if m == nil {
		return 0, 0, errInvalidField("resource.portRange", pr, "Must be a port or a port range like 80-80.")
	}
	lo, _ = strconv.Atoi(m[1])
	hi = lo
	if m[2] != "" {
		hi, _ = strconv.Atoi(m[2])
	}
	if lo < 1 || hi > 65535 || hi < lo {
		return 0, 0, errInvalidField("resource.portRange", pr, "Ports must be between 1 and 65535.")
	}
	return lo, hi, nil
}

// targetServicesLocked lists the backend services a forwarding rule's
// target sends traffic to.
func (s *Server) targetServicesLocked(target string) []string {
	if tp := s.tcpProxies[target]; tp != nil {
		return []string{ResourcePath(tp.pb.GetService())}
	}
	if hp := s.httpProxies[target]; hp != nil {
		if um := s.urlMaps[ResourcePath(hp.pb.GetUrlMap())]; um != nil {
			return urlMapServices(um.pb)
		}
	}
	return nil
}

// frInsert creates a forwarding rule to a target TCP, HTTP or HTTPS proxy.
// Its listener binds the rule's IP (a reserved address's own loopback IP,
// or a loopback literal) at its port when that port is free, else at a
// free port of the same IP for reserved addresses; ephemeral rules and
// non-loopback literals bind Options.ListenHost at a free port. The
// reported IPAddress is the bound IP; ForwardingRuleAddr gives host:port.
func (s *Server) frInsert(r *http.Request) (proto.Message, *apiError) {
	project := r.PathValue("project")
	coll, region, e := scopedCollection(r, "forwardingRules")
	if e != nil {
		return nil, e
	}
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
	defaultTarget := "global/targetTcpProxies"
	if region != "" {
		defaultTarget = scopePrefix(region) + "/targetHttpProxies"
	}
	target := qualify(project, in.GetTarget(), defaultTarget)
	kind := targetKind(target)
	if kind == "" {
		return nil, errInvalidField("resource.target", in.GetTarget(), "Only target TCP, HTTP and HTTPS proxies are emulated as forwarding rule targets.")
	}
	if !sameScope(target, region) {
		return nil, errInvalidField("resource.target", in.GetTarget(), "The target must be in the same scope (global or region) as the forwarding rule.")
	}
	if p := in.GetIPProtocol(); p != "" && p != "TCP" {
		return nil, errInvalidField("resource.IPProtocol", p, "Must be TCP for a target proxy.")
	}
	in.IPProtocol = proto.String("TCP")
	if in.LoadBalancingScheme == nil {
		in.LoadBalancingScheme = proto.String("EXTERNAL")
	}
	scheme := in.GetLoadBalancingScheme()
	switch scheme {
	case "EXTERNAL", "EXTERNAL_MANAGED", "INTERNAL_MANAGED", "INTERNAL_SELF_MANAGED":
	default:
		return nil, errInvalidField("resource.loadBalancingScheme", scheme, "Must be EXTERNAL, EXTERNAL_MANAGED, INTERNAL_MANAGED or INTERNAL_SELF_MANAGED for a target proxy.")
	}
	defPort := 0
	switch kind {
	case "targetHttpProxies":
		defPort = 80
	case "targetHttpsProxies":
		defPort = 443
	}
	lo, hi, e := parsePortRange(in.GetPortRange(), defPort)
	if e != nil {
		return nil, e
	}
	if lo != 0 {
		if kind != "targetTcpProxies" && lo != hi {
			return nil, errInvalidField("resource.portRange", in.GetPortRange(), "A forwarding rule to a target HTTP(S) proxy takes a single port.")
		}
		in.PortRange = proto.String(fmt.Sprintf("%d-%d", lo, hi))
	}
	path := coll + "/" + in.GetName()
	in.Target = proto.String(selfLink(target))
	in.Kind = proto.String("compute#forwardingRule")
	in.Id = proto.Uint64(newID())
	in.CreationTimestamp = proto.String(nowStamp())
	in.SelfLink = proto.String(selfLink(path))
	in.Fingerprint = proto.String(fmt.Sprintf("%x", newID()))
	if region != "" {
		in.Region = proto.String(selfLink(fmt.Sprintf("projects/%s/regions/%s", project, region)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// check validates against the current resources, at the call and again
	// when the operation runs, and resolves the address.
	check := func() (netip.Addr, string, *apiError) {
		if s.tcpProxies[target] == nil && s.httpProxies[target] == nil {
			return netip.Addr{}, "", errNotFound(target)
		}
		for _, svc := range s.targetServicesLocked(target) {
			if bs := s.backendServices[svc]; bs != nil && bs.pb.GetLoadBalancingScheme() != scheme {
				return netip.Addr{}, "", errInvalidField("resource.loadBalancingScheme", scheme,
					fmt.Sprintf("The backend service '%s' has load balancing scheme %s; a forwarding rule and its backend services must have the same scheme.",
						svc, bs.pb.GetLoadBalancingScheme()))
			}
		}
		ip, addrPath, e := s.resolveAddressLocked(project, region, in.GetIPAddress())
		if e != nil {
			return netip.Addr{}, "", e
		}
		if ip.IsValid() {
			for p, other := range s.forwardingRules {
				if other.ip == ip && other.portLo <= hi && lo <= other.portHi {
					return netip.Addr{}, "", errInvalidField("resource.IPAddress", ip.String(),
						"Specified IP address is in-use and would result in a conflict (forwarding rule '"+p+"').")
				}
			}
		}
		return ip, addrPath, nil
	}
	if _, _, e := check(); e != nil {
		return nil, e
	}
	if s.forwardingRules[path] != nil {
		return nil, errAlreadyExists(path)
	}
	return s.startOpLocked(r, scopeOf(r), "insert", path, in.GetId(), func() *apiError {
		if s.forwardingRules[path] != nil {
			return errAlreadyExists(path)
		}
		ip, addrPath, e := check()
		if e != nil {
			return e
		}
		ln, err := s.listenRule(ip, addrPath != "", lo, hi)
		if err != nil {
			return errInvalidField("resource.IPAddress", in.GetIPAddress(), "The address and port are already in use: "+err.Error())
		}
		pb := proto.CloneOf(in)
		pb.IPAddress = proto.String(ln.Addr().(*net.TCPAddr).IP.String())
		fr := &forwardingRule{pb: pb, path: path, ln: ln, ip: ip, addressPath: addrPath, portLo: lo, portHi: hi}
		s.forwardingRules[path] = fr
		switch kind {
		case "targetTcpProxies":
			fr.wg.Add(1)
			go s.acceptLoop(fr)
		default:
			s.serveHTTPRule(fr, kind == "targetHttpsProxies")
		}
		return nil
	}), nil
}

// listenRule opens a forwarding rule's listener; see frInsert.
func (s *Server) listenRule(ip netip.Addr, reserved bool, lo, hi int) (net.Listener, error) {
	if !ip.IsValid() || !ip.IsLoopback() {
		return net.Listen("tcp", net.JoinHostPort(s.opts.ListenHost, "0"))
	}
	port := 0
	if lo == hi {
		port = lo
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err != nil && reserved && port != 0 {
		// The emulator already keeps rules on one address from sharing a
		// port; the port is held outside it (or privileged), so serve on
		// another port of the address's own IP.
		return net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	}
	return ln, err
}

func (s *Server) frGet(r *http.Request) (proto.Message, *apiError) {
	path, e := frPath(r)
	if e != nil {
		return nil, e
	}
	return getResource(s, path, s.forwardingRules, func(fr *forwardingRule) *computepb.ForwardingRule { return fr.pb })
}

func (s *Server) frList(r *http.Request) (proto.Message, *apiError) {
	coll, _, e := scopedCollection(r, "forwardingRules")
	if e != nil {
		return nil, e
	}
	items, next, e := listPage(s, r, s.forwardingRules, func(fr *forwardingRule) *computepb.ForwardingRule { return fr.pb }, under[*forwardingRule](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.ForwardingRuleList{Kind: proto.String("compute#forwardingRuleList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) frDelete(r *http.Request) (proto.Message, *apiError) {
	path, e := frPath(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return deleteLocked(s, r, path, s.forwardingRules, func(fr *forwardingRule) uint64 { return fr.pb.GetId() },
		func() string { return "" }, func(fr *forwardingRule) {
			// Closing does not wait here (we hold s.mu); the serving
			// goroutines exit on their own. Open connections end with it.
			fr.close()
			for _, t := range s.targets {
				s.closeRuleConnsLocked(t, fr)
			}
			for t := range s.draining {
				s.closeRuleConnsLocked(t, fr)
			}
		})
}

func (s *Server) closeRuleConnsLocked(t *target, fr *forwardingRule) {
	for pc := range t.conns {
		if pc.rule == fr {
			endConnLocked(pc.rec, t, ConnRuleDeleted)
			pc.close()
			delete(t.conns, pc)
		}
	}
}

// ForwardingRuleAddr is the host:port a forwarding rule listens on (a
// global one when a regional rule has the same name), or "" when there is
// no such rule (yet: it appears when its insert operation completes).
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
