package elbv2sim

import (
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

type loadBalancer struct {
	arn, name string
	typ       string // network or application
	scheme    string
	dns       string
	vpcID     string
	subnets   []Subnet
	// eips maps a subnet ID to the Elastic IP allocation of the load
	// balancer's node in it.
	eips           map[string]string
	securityGroups []string
	attrs          map[string]string
	created        time.Time
	activeAt       time.Time // provisioning until then
	listeners      []*listener
}

func (lb *loadBalancer) active(now time.Time) bool { return !now.Before(lb.activeAt) }

// groups are the target groups the load balancer's listeners and rules
// forward to.
func (lb *loadBalancer) groups() map[*targetGroup]bool {
	out := map[*targetGroup]bool{}
	for _, l := range lb.listeners {
		maps.Copy(out, l.groups)
	}
	return out
}

type listener struct {
	arn       string
	lbArn     string
	lbType    string
	protocol  string
	port      int32
	act       *action // the default rule's action
	rules     []*rule // by priority
	certs     []string
	sslPolicy string
	// groups are the target groups act and rules forward to; each has l
	// in its listeners.
	groups map[*targetGroup]bool
	ln     net.Listener
	srv    *http.Server // application load balancers' HTTP data path
	conns  map[*proxyConn]struct{}
	// udp is a network listener's datagram socket, on ln's port; flows
	// are its client addresses' sessions.
	udp   *net.UDPConn
	flows map[string]*udpFlow
}

// shutdown stops the data path and closes its connections. Callers hold s.mu.
func (l *listener) shutdown() {
	_ = l.ln.Close()
	if l.srv != nil {
		_ = l.srv.Close()
	}
	for pc := range l.conns {
		pc.close()
	}
	if l.udp != nil {
		_ = l.udp.Close()
	}
	for _, f := range l.flows {
		f.close()
	}
}

type xState struct {
	Code string
}

type xAZ struct {
	ZoneName              string
	SubnetId              string
	LoadBalancerAddresses *list[xLBAddress] `xml:",omitempty"`
}

type xLBAddress struct {
	IpAddress    string
	AllocationId string
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
	SecurityGroups        *list[string] `xml:",omitempty"`
	IpAddressType         string
}

type xLoadBalancers struct {
	LoadBalancers list[xLoadBalancer]
	NextMarker    string `xml:",omitempty"`
}

type xCertificate struct {
	CertificateArn string
	IsDefault      bool
}

type xListener struct {
	ListenerArn     string
	LoadBalancerArn string
	Port            int32
	Protocol        string
	Certificates    *list[xCertificate] `xml:",omitempty"`
	SslPolicy       string              `xml:",omitempty"`
	DefaultActions  list[xAction]
}

type xListeners struct {
	Listeners  list[xListener]
	NextMarker string `xml:",omitempty"`
}

func (s *Server) lbXML(lb *loadBalancer) xLoadBalancer {
	state := "active"
	if !lb.active(time.Now()) {
		state = "provisioning"
	}
	var azs []xAZ
	for _, sn := range lb.subnets {
		az := xAZ{ZoneName: sn.AvailabilityZone, SubnetId: sn.ID}
		if alloc := lb.eips[sn.ID]; alloc != "" {
			addrs := listOf([]xLBAddress{{IpAddress: s.eipAddress(alloc), AllocationId: alloc}})
			az.LoadBalancerAddresses = &addrs
		}
		azs = append(azs, az)
	}
	x := xLoadBalancer{
		LoadBalancerArn: lb.arn, DNSName: lb.dns, CanonicalHostedZoneId: "Z26RNL4JYFTOTI",
		CreatedTime:      lb.created.UTC().Format("2006-01-02T15:04:05.000Z"),
		LoadBalancerName: lb.name, Scheme: lb.scheme, VpcId: lb.vpcID,
		State: xState{Code: state}, Type: lb.typ,
		AvailabilityZones: listOf(azs),
		IpAddressType:     "ipv4",
	}
	if lb.typ == "application" {
		sgs := listOf(lb.securityGroups)
		x.SecurityGroups = &sgs
	}
	return x
}

func (l *listener) xml() xListener {
	x := xListener{
		ListenerArn: l.arn, LoadBalancerArn: l.lbArn, Port: l.port, Protocol: l.protocol,
		DefaultActions: l.act.xml(), SslPolicy: l.sslPolicy,
	}
	if len(l.certs) > 0 {
		// DescribeListeners shows only the default certificate.
		cs := listOf([]xCertificate{{CertificateArn: l.certs[0], IsDefault: true}})
		x.Certificates = &cs
	}
	return x
}

// defaultGroup is the group a network load balancer listener forwards to.
func (l *listener) defaultGroup() *targetGroup { return l.act.forward[0].g }

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
	sgs := p.strings("SecurityGroups")
	if len(sgs) > 0 && typ != "application" {
		return nil, validation("SecurityGroups are only supported by this emulator for application load balancers")
	}
	subnetIDs, eips, err := subnetMappings(p, typ, scheme)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	vpc, subnets, err := s.lbSubnets(subnetIDs, typ)
	if err != nil {
		return nil, err
	}
	if err := s.checkEIPs(eips, name); err != nil {
		return nil, err
	}
	for _, sg := range sgs {
		if !vpc.hasSecurityGroup(sg) {
			return nil, newErr("InvalidSecurityGroup", "The security group '%s' does not exist in VPC '%s'", sg, vpc.id)
		}
	}
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
	now := time.Now()
	lb := &loadBalancer{
		arn:  s.arn("loadbalancer/" + kind + "/" + name + "/" + id),
		name: name, typ: typ, scheme: scheme,
		dns:     name + "-" + id[:10] + ".elb." + s.opts.Region + ".amazonaws.com",
		vpcID:   vpc.id,
		subnets: subnets, eips: eips, securityGroups: sgs,
		attrs:   defaultLBAttributes(typ),
		created: now, activeAt: now,
	}
	if s.opts.ProvisioningDelay > 0 {
		lb.activeAt = now.Add(s.opts.ProvisioningDelay)
	}
	s.lbs[lb.arn] = lb
	s.setTags(lb.arn, tags)
	return xLoadBalancers{LoadBalancers: listOf([]xLoadBalancer{s.lbXML(lb)})}, nil
}

// subnetMappings reads Subnets, or SubnetMappings with their Elastic IP
// allocations, which only internet-facing network load balancers take
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_SubnetMapping.html).
func subnetMappings(p params, typ, scheme string) ([]string, map[string]string, *apiError) {
	ids := p.strings("Subnets")
	maps := p.members("SubnetMappings")
	if len(maps) == 0 {
		return ids, nil, nil
	}
	if len(ids) > 0 {
		return nil, nil, validation("You can specify subnets or subnet mappings, not both")
	}
	eips := map[string]string{}
	for _, m := range maps {
		id, alloc := p.get(m+".SubnetId"), p.get(m+".AllocationId")
		ids = append(ids, id)
		if alloc == "" {
			continue
		}
		if typ != "network" || scheme != "internet-facing" {
			return nil, nil, newErr("InvalidConfigurationRequest", "Elastic IP addresses can only be used with internet-facing network load balancers")
		}
		if !wellFormed("eipalloc", alloc) {
			return nil, nil, validation("The allocation ID '%s' is malformed", alloc)
		}
		eips[id] = alloc
	}
	return ids, eips, nil
}

// checkEIPs refuses an allocation the account does not have, or one
// another load balancer uses. AWS answers AllocationIdNotFound for the
// first; for the second this emulator answers InvalidConfigurationRequest.
// Callers hold s.mu.
func (s *Server) checkEIPs(eips map[string]string, name string) *apiError {
	for _, alloc := range eips {
		if !slices.ContainsFunc(s.opts.ElasticIPs, func(e ElasticIP) bool { return e.AllocationID == alloc }) {
			return newErr("AllocationIdNotFound", "The allocation ID '%s' does not exist", alloc)
		}
		for _, lb := range s.lbs {
			if lb.name == name {
				continue
			}
			for _, used := range lb.eips {
				if used == alloc {
					return newErr("InvalidConfigurationRequest", "The allocation ID '%s' is already associated with load balancer %s", alloc, lb.name)
				}
			}
		}
	}
	return nil
}

// eipAddress is the public IP of an allocation. Callers hold s.mu.
func (s *Server) eipAddress(alloc string) string {
	for _, e := range s.opts.ElasticIPs {
		if e.AllocationID == alloc {
			return e.PublicIP
		}
	}
	return ""
}

// lbSubnets finds the VPC of the given subnets. Without subnets the load
// balancer goes into every subnet of the first VPC. An application load
// balancer needs two zones, as AWS requires. Callers hold s.mu.
func (s *Server) lbSubnets(ids []string, typ string) (*vpcInfo, []Subnet, *apiError) {
	if len(ids) == 0 {
		v := &s.vpcs[0]
		var out []Subnet
		zones := map[string]bool{}
		for _, sn := range v.subnets {
			if !zones[sn.AvailabilityZone] {
				zones[sn.AvailabilityZone] = true
				out = append(out, sn.Subnet)
			}
		}
		return v, out, nil
	}
	var vpc *vpcInfo
	var out []Subnet
	zones := map[string]bool{}
	for _, id := range ids {
		if !wellFormed("subnet", id) {
			return nil, nil, validation("The subnet ID '%s' is malformed", id)
		}
		var in *vpcInfo
		var sn Subnet
		for i := range s.vpcs {
			v := &s.vpcs[i]
			if j := slices.IndexFunc(v.subnets, func(x subnetInfo) bool { return x.ID == id }); j >= 0 {
				in, sn = v, v.subnets[j].Subnet
			}
		}
		if in == nil {
			return nil, nil, newErr("SubnetNotFound", "The subnet ID '%s' is not valid", id)
		}
		if vpc != nil && in != vpc {
			return nil, nil, newErr("InvalidSubnet", "The subnets '%s' and '%s' are in different VPCs", out[0].ID, id)
		}
		if zones[sn.AvailabilityZone] {
			return nil, nil, newErr("InvalidConfigurationRequest", "A load balancer cannot be attached to multiple subnets in the same Availability Zone (%s)", sn.AvailabilityZone)
		}
		zones[sn.AvailabilityZone] = true
		vpc = in
		out = append(out, sn)
	}
	if typ == "application" && len(out) < 2 {
		return nil, nil, validation("At least two subnets in two different Availability Zones must be specified")
	}
	return vpc, out, nil
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
	if lb.attrs["deletion_protection.enabled"] == "true" {
		return nil, newErr("OperationNotPermitted", "Load balancer '%s' cannot be deleted because deletion protection is enabled", arn)
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

// createListener accepts one default action. Network load balancer
// listeners forward TCP connections; application load balancer listeners
// serve HTTP (HTTPS terminates TLS with the listener's certificates).
func (s *Server) createListener(p params) (any, *apiError) {
	lbArn, proto := p.get("LoadBalancerArn"), p.get("Protocol")
	port, ok, err := p.int32("Port")
	if err != nil {
		return nil, err
	}
	if !ok || port < 1 || port > 65535 {
		return nil, validation("A listener port between 1 and 65535 must be specified")
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
	act, aerr := readActions(p, "DefaultActions", lb.typ)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := s.resolve(act, lb, proto); aerr != nil {
		return nil, aerr
	}
	certs, policy, aerr := s.readTLS(p, lb.typ, proto, nil, "")
	if aerr != nil {
		return nil, aerr
	}
	for _, l := range lb.listeners {
		if l.port == port {
			return nil, newErr("DuplicateListener", "A listener already exists on port %d", port)
		}
	}
	if len(lb.listeners) >= 50 {
		return nil, newErr("TooManyListeners", "You've reached the limit on the number of listeners per load balancer")
	}
	if lb.typ == "application" && lb.uniqueGroups(nil, act) > maxUniqueGroupsPerALB {
		return nil, newErr("TooManyUniqueTargetGroupsPerLoadBalancer", "You've reached the limit of %d target groups per load balancer", maxUniqueGroupsPerALB)
	}
	var ln net.Listener
	var udp *net.UDPConn
	var lerr error
	if lb.typ == "network" {
		// Network listeners take TCP and UDP on one port whatever their
		// protocol, so ModifyListener can switch between them.
		ln, udp, lerr = listenTCPAndUDP(s.opts.ListenHost)
	} else {
		ln, lerr = net.Listen("tcp", net.JoinHostPort(s.opts.ListenHost, "0"))
	}
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
		lbArn: lb.arn, lbType: lb.typ, protocol: proto, port: port, act: act, ln: ln, udp: udp,
		certs: certs, sslPolicy: policy,
		groups: map[*targetGroup]bool{},
		conns:  map[*proxyConn]struct{}{},
	}
	s.listeners[l.arn] = l
	lb.listeners = append(lb.listeners, l)
	s.relink(l)
	s.setTags(l.arn, tags)
	s.wg.Add(1)
	if lb.typ == "application" {
		go s.serveHTTP(l)
	} else {
		go s.serveListener(l)
		s.wg.Add(1)
		go s.serveUDP(l)
	}
	s.logf("listener %s serves %s on %s", l.arn, proto, ln.Addr())
	return xListeners{Listeners: listOf([]xListener{l.xml()})}, nil
}

// secureProtocol reports whether listeners of proto terminate TLS: HTTPS on
// application load balancers, TLS on network load balancers.
func secureProtocol(lbType, proto string) bool {
	return (lbType == "application" && proto == "HTTPS") || (lbType == "network" && proto == "TLS")
}

// readTLS reads Certificates and SslPolicy for a listener of protocol
// proto, keeping certs and policy when the request names none. HTTPS and
// TLS need exactly one (default) certificate; others come from
// AddListenerCertificates. Callers hold s.mu.
func (s *Server) readTLS(p params, lbType, proto string, certs []string, policy string) ([]string, string, *apiError) {
	given, err := s.readCertificates(p)
	if err != nil {
		return nil, "", err
	}
	if v := p.get("SslPolicy"); v != "" {
		if _, ok := sslPolicies[v]; !ok {
			return nil, "", newErr("SSLPolicyNotFound", "SSL policy '%s' not found", v)
		}
		policy = v
	}
	if !secureProtocol(lbType, proto) {
		if len(given) > 0 {
			return nil, "", newErr("InvalidConfigurationRequest", "Certificates can only be specified for HTTPS and TLS listeners")
		}
		return nil, "", nil
	}
	switch {
	case len(given) > 1:
		return nil, "", validation("You must provide exactly one certificate if the listener protocol is %s", proto)
	case len(given) == 1 && len(certs) > 0:
		certs = append([]string{given[0]}, slices.DeleteFunc(slices.Clone(certs[1:]), func(c string) bool { return c == given[0] })...)
	case len(given) == 1:
		certs = given
	case len(certs) == 0:
		return nil, "", newErr("CertificateNotFound", "A certificate must be specified for %s listeners", proto)
	}
	if policy == "" {
		policy = defaultSSLPolicy
	}
	return certs, policy, nil
}

// relink brings the listeners map of every target group in line with what
// l's default action and rules forward to: a group coming into use starts
// health checking from scratch, one going out of use drops its draining
// targets. Callers hold s.mu.
func (s *Server) relink(l *listener) {
	now := map[*targetGroup]bool{}
	if _, live := s.listeners[l.arn]; live {
		for _, f := range l.act.forward {
			now[f.g] = true
		}
		for _, r := range l.rules {
			for _, f := range r.act.forward {
				now[f.g] = true
			}
		}
	}
	for g := range l.groups {
		if now[g] {
			continue
		}
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
	at := time.Now()
	for g := range now {
		if l.groups[g] {
			continue
		}
		wasUsed := g.inUse()
		g.listeners[l.arn] = l
		if !wasUsed {
			// A group coming into use starts health checking from scratch.
			for _, t := range g.order {
				if t.phase != phaseDraining {
					t.restart(at)
				}
			}
			g.wake()
		}
	}
	l.groups = now
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
	for _, ru := range slices.Clone(l.rules) {
		s.dropRule(ru)
	}
	delete(s.tags, l.arn)
	s.relink(l)
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

// modifyListener changes the port, protocol, TLS settings and default
// action of a listener. The data path keeps its address; switching
// between HTTP and HTTPS takes effect for new connections.
func (s *Server) modifyListener(p params) (any, *apiError) {
	port, hasPort, err := p.int32("Port")
	if err != nil {
		return nil, err
	}
	if hasPort && (port < 1 || port > 65535) {
		return nil, validation("A listener port between 1 and 65535 must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listeners[p.get("ListenerArn")]
	if l == nil {
		return nil, newErr("ListenerNotFound", "Listener '%s' not found", p.get("ListenerArn"))
	}
	lb := s.lbs[l.lbArn]
	proto := l.protocol
	if v := p.get("Protocol"); v != "" {
		if !slices.Contains(listenerProtocols[lb.typ], v) {
			return nil, newErr("UnsupportedProtocol", "Protocol '%s' is not supported for %s load balancers", v, lb.typ)
		}
		proto = v
	}
	act := l.act
	if len(p.members("DefaultActions")) > 0 {
		if act, err = readActions(p, "DefaultActions", lb.typ); err != nil {
			return nil, err
		}
	}
	// Every action must still suit the (possibly new) protocol.
	actions := []*action{act}
	for _, r := range l.rules {
		actions = append(actions, r.act)
	}
	for _, a := range actions {
		if err := s.resolve(a, lb, proto); err != nil {
			return nil, err
		}
	}
	certs, policy := l.certs, l.sslPolicy
	if proto != l.protocol && !secureProtocol(lb.typ, proto) {
		certs, policy = nil, ""
	}
	if certs, policy, err = s.readTLS(p, lb.typ, proto, certs, policy); err != nil {
		return nil, err
	}
	if !hasPort {
		port = l.port
	}
	for _, o := range lb.listeners {
		if o != l && o.port == port {
			return nil, newErr("DuplicateListener", "A listener already exists on port %d", port)
		}
	}
	if lb.typ == "application" && lb.uniqueGroups(nil, act) > maxUniqueGroupsPerALB {
		return nil, newErr("TooManyUniqueTargetGroupsPerLoadBalancer", "You've reached the limit of %d target groups per load balancer", maxUniqueGroupsPerALB)
	}
	l.port, l.protocol, l.act, l.certs, l.sslPolicy = port, proto, act, certs, policy
	s.relink(l)
	return xListeners{Listeners: listOf([]xListener{l.xml()})}, nil
}

// maxListenerCertificates is the quota "Certificates per Application Load
// Balancer (excluding default certificates)", 25, from
// https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-limits.html
const maxListenerCertificates = 25

type xCertificates struct {
	Certificates list[xCertificate]
	NextMarker   string `xml:",omitempty"`
}

func certsXML(certs []string) xCertificates {
	out := []xCertificate{}
	for i, c := range certs {
		out = append(out, xCertificate{CertificateArn: c, IsDefault: i == 0})
	}
	return xCertificates{Certificates: listOf(out)}
}

// secureListener finds an HTTPS or TLS listener for the certificate
// calls. Callers hold s.mu.
func (s *Server) secureListener(arn string) (*listener, *apiError) {
	l := s.listeners[arn]
	if l == nil {
		return nil, newErr("ListenerNotFound", "Listener '%s' not found", arn)
	}
	if !secureProtocol(l.lbType, l.protocol) {
		return nil, newErr("InvalidConfigurationRequest", "Listener '%s' is not an HTTPS or TLS listener", arn)
	}
	return l, nil
}

func (s *Server) addListenerCertificates(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.secureListener(p.get("ListenerArn"))
	if err != nil {
		return nil, err
	}
	given, err := s.readCertificates(p)
	if err != nil {
		return nil, err
	}
	if len(given) == 0 {
		return nil, validation("At least one certificate must be specified")
	}
	certs := slices.Clone(l.certs)
	for _, c := range given {
		if !slices.Contains(certs, c) {
			certs = append(certs, c)
		}
	}
	extra := 0
	for _, o := range s.lbs[l.lbArn].listeners {
		if o != l {
			extra += max(len(o.certs)-1, 0)
		}
	}
	if extra+len(certs)-1 > maxListenerCertificates {
		return nil, newErr("TooManyCertificates", "You've reached the limit of %d certificates per load balancer", maxListenerCertificates)
	}
	l.certs = certs
	x := certsXML(l.certs)
	x.Certificates.Member = x.Certificates.Member[1:]
	return x, nil
}

func (s *Server) removeListenerCertificates(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, err := s.secureListener(p.get("ListenerArn"))
	if err != nil {
		return nil, err
	}
	for _, m := range p.members("Certificates") {
		if arn := p.get(m + ".CertificateArn"); arn == l.certs[0] {
			return nil, newErr("OperationNotPermitted", "The default certificate cannot be removed; use ModifyListener to replace it")
		}
	}
	for _, m := range p.members("Certificates") {
		arn := p.get(m + ".CertificateArn")
		l.certs = slices.DeleteFunc(l.certs, func(c string) bool { return c == arn })
	}
	return nil, nil
}

func (s *Server) describeListenerCertificates(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listeners[p.get("ListenerArn")]
	if l == nil {
		return nil, newErr("ListenerNotFound", "Listener '%s' not found", p.get("ListenerArn"))
	}
	x := certsXML(l.certs)
	from, to, next, err := p.page(len(x.Certificates.Member))
	if err != nil {
		return nil, err
	}
	x.Certificates.Member, x.NextMarker = x.Certificates.Member[from:to], next
	return x, nil
}

// defaultLBAttributes are AWS's defaults for the attributes the emulator
// knows.
func defaultLBAttributes(typ string) map[string]string {
	a := map[string]string{
		"deletion_protection.enabled": "false",
		"access_logs.s3.enabled":      "false",
		"access_logs.s3.bucket":       "",
		"access_logs.s3.prefix":       "",
	}
	if typ == "application" {
		a["idle_timeout.timeout_seconds"] = "60"
		a["routing.http2.enabled"] = "true"
		a["routing.http.drop_invalid_header_fields.enabled"] = "false"
		a["routing.http.xff_header_processing.mode"] = "append"
	} else {
		a["load_balancing.cross_zone.enabled"] = "false"
	}
	return a
}

func lbAttributesXML(lb *loadBalancer) xAttributes {
	keys := slices.Sorted(maps.Keys(lb.attrs))
	out := []xAttribute{}
	for _, k := range keys {
		out = append(out, xAttribute{Key: k, Value: lb.attrs[k]})
	}
	return xAttributes{Attributes: listOf(out)}
}

func (s *Server) lbByArn(arn string) (*loadBalancer, *apiError) {
	lb := s.lbs[arn]
	if lb == nil {
		return nil, newErr("LoadBalancerNotFound", "Load balancer '%s' not found", arn)
	}
	return lb, nil
}

func (s *Server) describeLoadBalancerAttributes(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lb, err := s.lbByArn(p.get("LoadBalancerArn"))
	if err != nil {
		return nil, err
	}
	return lbAttributesXML(lb), nil
}

// modifyLoadBalancerAttributes validates every attribute before changing
// any. idle_timeout.timeout_seconds is stored and reported; the data path
// does not close idle connections by it.
func (s *Server) modifyLoadBalancerAttributes(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lb, err := s.lbByArn(p.get("LoadBalancerArn"))
	if err != nil {
		return nil, err
	}
	set, err := p.attributes(lb.attrs, "load balancer", func(k, v string) *apiError {
		switch {
		case k == "idle_timeout.timeout_seconds":
			if n, e := strconv.Atoi(v); e != nil || n < 1 || n > 4000 {
				return validation("Attribute '%s' must be between 1 and 4000 seconds, got '%s'", k, v)
			}
		case k == "routing.http.xff_header_processing.mode":
			if v != "append" && v != "preserve" && v != "remove" {
				return validation("Attribute '%s' must be append, preserve or remove", k)
			}
		case strings.HasSuffix(k, ".enabled"):
			if v != "true" && v != "false" {
				return validation("Attribute '%s' must be 'true' or 'false'", k)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	maps.Copy(lb.attrs, set)
	return lbAttributesXML(lb), nil
}
