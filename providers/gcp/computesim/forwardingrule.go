package computesim

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

func frPath(r *http.Request) (string, *apiError) {
	coll, _, e := scopedCollection(r, "forwardingRules")
	if e != nil {
		return "", e
	}
	return coll + "/" + r.PathValue("fr"), nil
}

var portRangeRE = regexp.MustCompile(`^(\d+)(?:-(\d+))?$`)

// targetKind is the collection of a forwarding rule target the emulator
// serves: targetTcpProxies, targetSslProxies, targetHttpProxies or
// targetHttpsProxies.
func targetKind(path string) string {
	parts := strings.Split(path, "/")
	if len(parts) < 2 {
		return ""
	}
	switch k := parts[len(parts)-2]; k {
	case "targetTcpProxies", "targetSslProxies", "targetHttpProxies", "targetHttpsProxies":
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
// free port of the same IP for reserved addresses; an ephemeral rule gets
// an IP of its own from Options.AddressRange, bound the same way;
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
		return nil, errInvalidField("resource.target", in.GetTarget(), "Only target TCP, SSL, HTTP and HTTPS proxies are emulated as forwarding rule targets.")
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
		if (kind == "targetHttpProxies" || kind == "targetHttpsProxies") && lo != hi {
			return nil, errInvalidField("resource.portRange", in.GetPortRange(), "A forwarding rule to a target HTTP(S) proxy takes a single port.")
		}
		in.PortRange = proto.String(fmt.Sprintf("%d-%d", lo, hi))
	}
	path := coll + "/" + in.GetName()
	in.Target = proto.String(selfLink(target))
	stampNew(in, "compute#forwardingRule", project, region, path)
	in.Fingerprint = proto.String(fmt.Sprintf("%x", newID()))
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
		if !ip.IsValid() {
			// An ephemeral IP of its own, as GCE gives every rule without
			// one: rules of different load balancers never share an IP.
			if ip, e = s.allocateIPLocked(); e != nil {
				return e
			}
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
			go s.acceptLoop(fr, fr.ln)
		case "targetSslProxies":
			fr.wg.Add(1)
			go s.acceptLoop(fr, s.tlsListener(fr, nil))
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
	if err != nil && (reserved || s.opts.AddressRange.Contains(ip)) && port != 0 {
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
