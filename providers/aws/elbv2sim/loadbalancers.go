package elbv2sim

import (
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

type loadBalancer struct {
	arn, name string
	typ       string // network or application
	scheme    string
	dns       string
	vpcID     string
	created   time.Time
	listeners []*listener
}

type listener struct {
	arn      string
	lbArn    string
	protocol string
	port     int32
	tg       *targetGroup
	ln       net.Listener
	conns    map[*proxyConn]struct{}
}

// shutdown stops the data path and closes its connections. Callers hold s.mu.
func (l *listener) shutdown() {
	_ = l.ln.Close()
	for pc := range l.conns {
		pc.close()
	}
}

type xState struct {
	Code string
}

type xAZ struct {
	ZoneName string
	SubnetId string
}

type xLoadBalancer struct {
	LoadBalancerArn       string
	DNSName               string
	CanonicalHostedZoneId string
	CreatedTime           string
	LoadBalancerName      string
	Scheme                string
	VpcId                 string
	State                 xState
	Type                  string
	AvailabilityZones     list[xAZ]
	IpAddressType         string
}

type xLoadBalancers struct {
	LoadBalancers list[xLoadBalancer]
	NextMarker    string `xml:",omitempty"`
}

type xTargetGroupTuple struct {
	TargetGroupArn string
	Weight         int32
}

type xForwardConfig struct {
	TargetGroups list[xTargetGroupTuple]
}

type xAction struct {
	Type           string
	TargetGroupArn string
	Order          int32 `xml:",omitempty"`
	ForwardConfig  *xForwardConfig
}

type xListener struct {
	ListenerArn     string
	LoadBalancerArn string
	Port            int32
	Protocol        string
	DefaultActions  list[xAction]
}

type xListeners struct {
	Listeners  list[xListener]
	NextMarker string `xml:",omitempty"`
}

func (s *Server) lbXML(lb *loadBalancer) xLoadBalancer {
	return xLoadBalancer{
		LoadBalancerArn: lb.arn, DNSName: lb.dns, CanonicalHostedZoneId: "Z26RNL4JYFTOTI",
		CreatedTime:      lb.created.UTC().Format("2006-01-02T15:04:05.000Z"),
		LoadBalancerName: lb.name, Scheme: lb.scheme, VpcId: lb.vpcID,
		State: xState{Code: "active"}, Type: lb.typ,
		AvailabilityZones: listOf([]xAZ{{ZoneName: s.opts.Region + "a", SubnetId: "subnet-0sim0000000000001"}}),
		IpAddressType:     "ipv4",
	}
}

func (l *listener) xml() xListener {
	return xListener{
		ListenerArn: l.arn, LoadBalancerArn: l.lbArn, Port: l.port, Protocol: l.protocol,
		DefaultActions: listOf([]xAction{{
			Type: "forward", TargetGroupArn: l.tg.arn, Order: 1,
			ForwardConfig: &xForwardConfig{TargetGroups: listOf([]xTargetGroupTuple{{TargetGroupArn: l.tg.arn, Weight: 1}})},
		}}),
	}
}

var lbNameRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$`)

func (s *Server) createLoadBalancer(p params) (any, *apiError) {
	name := p.get("Name")
	if !lbNameRE.MatchString(name) || strings.HasPrefix(strings.ToLower(name), "internal-") {
		return nil, validation("Load balancer name '%s' can have a maximum of 32 characters, must contain only alphanumeric characters or hyphens, and must not begin or end with a hyphen", name)
	}
	typ := p.get("Type")
	if typ == "" {
		typ = "application"
	}
	if typ != "application" && typ != "network" {
		return nil, validation("Load balancer type '%s' is not supported by this emulator", typ)
	}
	scheme := p.get("Scheme")
	if scheme == "" {
		scheme = "internet-facing"
	}
	if scheme != "internet-facing" && scheme != "internal" {
		return nil, newErr("InvalidScheme", "Scheme '%s' is not valid", scheme)
	}
	tags, err := readTags(p)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lb := range s.lbs {
		if lb.name == name {
			if lb.typ == typ && lb.scheme == scheme {
				return xLoadBalancers{LoadBalancers: listOf([]xLoadBalancer{s.lbXML(lb)})}, nil
			}
			return nil, newErr("DuplicateLoadBalancerName", "A load balancer with the same name '%s' exists, but with different settings", name)
		}
	}
	kind := "app"
	if typ == "network" {
		kind = "net"
	}
	id := s.nextID()
	lb := &loadBalancer{
		arn:  s.arn("loadbalancer/" + kind + "/" + name + "/" + id),
		name: name, typ: typ, scheme: scheme,
		dns:     name + "-" + id[:10] + ".elb." + s.opts.Region + ".amazonaws.com",
		vpcID:   s.vpcs[0].id,
		created: time.Now(),
	}
	s.lbs[lb.arn] = lb
	if len(tags) > 0 {
		s.tags[lb.arn] = map[string]string{}
		for _, t := range tags {
			s.tags[lb.arn][t.Key] = t.Value
		}
	}
	return xLoadBalancers{LoadBalancers: listOf([]xLoadBalancer{s.lbXML(lb)})}, nil
}

func (s *Server) describeLoadBalancers(p params) (any, *apiError) {
	arns, names := p.strings("LoadBalancerArns"), p.strings("Names")
	s.mu.Lock()
	defer s.mu.Unlock()
	var lbs []*loadBalancer
	switch {
	case len(arns) > 0 && len(names) > 0:
		return nil, validation("Only one of LoadBalancerArns or Names can be specified")
	case len(arns) > 0:
		for _, a := range arns {
			lb := s.lbs[a]
			if lb == nil {
				return nil, newErr("LoadBalancerNotFound", "One or more load balancers not found: '%s'", a)
			}
			lbs = append(lbs, lb)
		}
	case len(names) > 0:
		for _, n := range names {
			var found *loadBalancer
			for _, lb := range s.lbs {
				if lb.name == n {
					found = lb
				}
			}
			if found == nil {
				return nil, newErr("LoadBalancerNotFound", "Load balancers '[%s]' not found", n)
			}
			lbs = append(lbs, found)
		}
	default:
		for _, lb := range s.lbs {
			lbs = append(lbs, lb)
		}
	}
	sort.Slice(lbs, func(i, j int) bool { return lbs[i].name < lbs[j].name })
	from, to, next, err := p.page(len(lbs))
	if err != nil {
		return nil, err
	}
	out := []xLoadBalancer{}
	for _, lb := range lbs[from:to] {
		out = append(out, s.lbXML(lb))
	}
	return xLoadBalancers{LoadBalancers: listOf(out), NextMarker: next}, nil
}

// deleteLoadBalancer deletes its listeners too, and succeeds for a load
// balancer that does not exist, as AWS documents.
func (s *Server) deleteLoadBalancer(p params) (any, *apiError) {
	arn := p.get("LoadBalancerArn")
	if !strings.HasPrefix(arn, "arn:") || !strings.Contains(arn, ":loadbalancer/") {
		return nil, validation("'%s' is not a valid load balancer ARN", arn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lb := s.lbs[arn]
	if lb == nil {
		return nil, nil
	}
	for _, l := range slices.Clone(lb.listeners) {
		s.removeListener(l)
	}
	delete(s.lbs, arn)
	delete(s.tags, arn)
	return nil, nil
}

var listenerProtocols = map[string][]string{
	"network":     {"TCP", "UDP", "TCP_UDP", "TLS"},
	"application": {"HTTP", "HTTPS"},
}

// compatible reports whether a listener protocol may forward to a group.
func compatible(lbType, listenerProto, tgProto string) bool {
	if lbType == "application" {
		return isHTTP(tgProto)
	}
	switch listenerProto {
	case "TCP":
		return tgProto == "TCP" || tgProto == "TCP_UDP"
	case "UDP":
		return tgProto == "UDP" || tgProto == "TCP_UDP"
	case "TCP_UDP":
		return tgProto == "TCP_UDP"
	case "TLS":
		return tgProto == "TCP" || tgProto == "TLS"
	}
	return false
}

// createListener accepts one default action, forward to one target group
// (as TargetGroupArn or a ForwardConfig with a single group). Its data path
// is plain TCP forwarding for both load balancer types.
func (s *Server) createListener(p params) (any, *apiError) {
	lbArn, proto := p.get("LoadBalancerArn"), p.get("Protocol")
	port, ok, err := p.int32("Port")
	if err != nil {
		return nil, err
	}
	if !ok || port < 1 || port > 65535 {
		return nil, validation("A listener port between 1 and 65535 must be specified")
	}
	actions := p.members("DefaultActions")
	if len(actions) != 1 {
		return nil, newErr("InvalidLoadBalancerAction", "Exactly one default action is supported by this emulator")
	}
	a := actions[0]
	if p.get(a+".Type") != "forward" {
		return nil, newErr("InvalidLoadBalancerAction", "Only forward actions are supported by this emulator")
	}
	tgArn := p.get(a + ".TargetGroupArn")
	fwd := p.members(a + ".ForwardConfig.TargetGroups")
	if len(fwd) > 1 {
		return nil, newErr("InvalidLoadBalancerAction", "Forwarding to more than one target group is not supported by this emulator")
	}
	if len(fwd) == 1 {
		f := p.get(fwd[0] + ".TargetGroupArn")
		if tgArn != "" && tgArn != f {
			return nil, newErr("InvalidLoadBalancerAction", "TargetGroupArn and ForwardConfig name different target groups")
		}
		tgArn = f
	}
	tags, aerr := readTags(p)
	if aerr != nil {
		return nil, aerr
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	lb := s.lbs[lbArn]
	if lb == nil {
		return nil, newErr("LoadBalancerNotFound", "Load balancer '%s' not found", lbArn)
	}
	if !slices.Contains(listenerProtocols[lb.typ], proto) {
		return nil, newErr("UnsupportedProtocol", "Protocol '%s' is not supported for %s load balancers", proto, lb.typ)
	}
	g, aerr := s.group(tgArn)
	if aerr != nil {
		return nil, aerr
	}
	if !compatible(lb.typ, proto, g.protocol) {
		return nil, newErr("IncompatibleProtocols", "The listener protocol '%s' is not compatible with the target group protocol '%s'", proto, g.protocol)
	}
	for _, other := range g.lbArns() {
		if other != lbArn {
			return nil, newErr("TargetGroupAssociationLimit", "The target group '%s' is already associated with a different load balancer", g.arn)
		}
	}
	for _, l := range lb.listeners {
		if l.port == port {
			return nil, newErr("DuplicateListener", "A listener already exists on port %d", port)
		}
	}
	if len(lb.listeners) >= 50 {
		return nil, newErr("TooManyListeners", "You've reached the limit on the number of listeners per load balancer")
	}
	ln, lerr := net.Listen("tcp", net.JoinHostPort(s.opts.ListenHost, "0"))
	if lerr != nil {
		return nil, newErr("InternalFailure", "cannot open the data path: %v", lerr)
	}
	kind := "app"
	if lb.typ == "network" {
		kind = "net"
	}
	lbID := lb.arn[strings.LastIndexByte(lb.arn, '/')+1:]
	l := &listener{
		arn:   s.arn("listener/" + kind + "/" + lb.name + "/" + lbID + "/" + s.nextID()),
		lbArn: lb.arn, protocol: proto, port: port, tg: g, ln: ln,
		conns: map[*proxyConn]struct{}{},
	}
	s.listeners[l.arn] = l
	lb.listeners = append(lb.listeners, l)
	wasUsed := g.inUse()
	g.listeners[l.arn] = l
	if !wasUsed {
		// A group coming into use starts health checking from scratch.
		now := time.Now()
		for _, t := range g.order {
			if t.phase != phaseDraining {
				t.restart(now)
			}
		}
		g.wake()
	}
	if len(tags) > 0 {
		s.tags[l.arn] = map[string]string{}
		for _, t := range tags {
			s.tags[l.arn][t.Key] = t.Value
		}
	}
	s.wg.Add(1)
	go s.serveListener(l)
	s.logf("listener %s forwards %s to %s", l.arn, ln.Addr(), g.name)
	return xListeners{Listeners: listOf([]xListener{l.xml()})}, nil
}

// removeListener stops l and detaches it. Callers hold s.mu.
func (s *Server) removeListener(l *listener) {
	l.shutdown()
	delete(s.listeners, l.arn)
	if lb := s.lbs[l.lbArn]; lb != nil {
		if i := slices.Index(lb.listeners, l); i >= 0 {
			lb.listeners = slices.Delete(lb.listeners, i, i+1)
		}
	}
	delete(s.tags, l.arn)
	g := l.tg
	delete(g.listeners, l.arn)
	if !g.inUse() {
		// Nothing to drain without a listener: draining targets go now.
		for _, t := range slices.Clone(g.order) {
			if t.phase == phaseDraining {
				s.removeTarget(g, t)
			}
		}
		g.wake()
	}
}

func (s *Server) describeListeners(p params) (any, *apiError) {
	arns, lbArn := p.strings("ListenerArns"), p.get("LoadBalancerArn")
	s.mu.Lock()
	defer s.mu.Unlock()
	var ls []*listener
	switch {
	case len(arns) > 0 && lbArn != "":
		return nil, validation("Only one of ListenerArns or LoadBalancerArn can be specified")
	case len(arns) > 0:
		for _, a := range arns {
			l := s.listeners[a]
			if l == nil {
				return nil, newErr("ListenerNotFound", "One or more listeners not found: '%s'", a)
			}
			ls = append(ls, l)
		}
	case lbArn != "":
		lb := s.lbs[lbArn]
		if lb == nil {
			return nil, newErr("LoadBalancerNotFound", "Load balancer '%s' not found", lbArn)
		}
		ls = append(ls, lb.listeners...)
	default:
		return nil, validation("You must specify either listener ARNs or a load balancer ARN")
	}
	from, to, next, err := p.page(len(ls))
	if err != nil {
		return nil, err
	}
	out := []xListener{}
	for _, l := range ls[from:to] {
		out = append(out, l.xml())
	}
	return xListeners{Listeners: listOf(out), NextMarker: next}, nil
}

func (s *Server) deleteListener(p params) (any, *apiError) {
	arn := p.get("ListenerArn")
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listeners[arn]
	if l == nil {
		return nil, newErr("ListenerNotFound", "Listener '%s' not found", arn)
	}
	s.removeListener(l)
	return nil, nil
}
