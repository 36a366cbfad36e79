package elbv2sim

import (
	"maps"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

type healthCheck struct {
	protocol  string // TCP, HTTP, HTTPS
	port      string // "traffic-port" or a number
	path      string // HTTP(S) only
	matcher   string // HTTP(S) only: "200", "200,202", "200-399"
	interval  int32
	timeout   int32
	healthy   int32
	unhealthy int32
}

type targetGroup struct {
	arn, name  string
	protocol   string
	targetType string
	vpcID      string
	ipType     string
	port       int32
	hc         healthCheck
	attrs      map[string]string
	created    time.Time

	targets   map[targetKey]*target
	order     []*target            // registration order, for stable answers
	listeners map[string]*listener // listeners forwarding here
	changed   chan struct{}        // closed (and replaced) when checkers must look again
	rr        uint64               // round-robin position of the data path
}

func (g *targetGroup) inUse() bool { return len(g.listeners) > 0 }

// servesHTTP reports whether an application load balancer uses the group
// (so its traffic is HTTP requests, not TCP connections).
func (g *targetGroup) servesHTTP() bool {
	for _, l := range g.listeners {
		if l.lbType == "application" {
			return true
		}
	}
	return false
}

// wake tells every checker of the group to re-read its state.
func (g *targetGroup) wake() {
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *targetGroup) lbArns() []string {
	seen := map[string]bool{}
	out := []string{}
	for _, l := range g.listeners {
		if !seen[l.lbArn] {
			seen[l.lbArn] = true
			out = append(out, l.lbArn)
		}
	}
	sort.Strings(out)
	return out
}

func (g *targetGroup) deregistrationDelay() time.Duration {
	n, _ := strconv.Atoi(g.attrs["deregistration_delay.timeout_seconds"])
	return time.Duration(n) * time.Second
}

// XML shapes of the answers.

type xMatcher struct {
	HttpCode string `xml:",omitempty"`
}

type xTargetGroup struct {
	TargetGroupArn             string
	TargetGroupName            string
	Protocol                   string `xml:",omitempty"`
	Port                       int32  `xml:",omitempty"`
	VpcId                      string `xml:",omitempty"`
	HealthCheckProtocol        string
	HealthCheckPort            string
	HealthCheckEnabled         bool
	HealthCheckIntervalSeconds int32
	HealthCheckTimeoutSeconds  int32
	HealthyThresholdCount      int32
	UnhealthyThresholdCount    int32
	HealthCheckPath            string    `xml:",omitempty"`
	Matcher                    *xMatcher `xml:",omitempty"`
	LoadBalancerArns           list[string]
	TargetType                 string
	IpAddressType              string `xml:",omitempty"`
}

type xTargetGroups struct {
	TargetGroups list[xTargetGroup]
	NextMarker   string `xml:",omitempty"`
}

type xAttribute struct {
	Key   string
	Value string
}

type xAttributes struct {
	Attributes list[xAttribute]
}

func (g *targetGroup) xml() xTargetGroup {
	x := xTargetGroup{
		TargetGroupArn: g.arn, TargetGroupName: g.name,
		Protocol: g.protocol, Port: g.port, VpcId: g.vpcID,
		HealthCheckProtocol: g.hc.protocol, HealthCheckPort: g.hc.port,
		HealthCheckEnabled:         true,
		HealthCheckIntervalSeconds: g.hc.interval, HealthCheckTimeoutSeconds: g.hc.timeout,
		HealthyThresholdCount: g.hc.healthy, UnhealthyThresholdCount: g.hc.unhealthy,
		HealthCheckPath:  g.hc.path,
		LoadBalancerArns: listOf(g.lbArns()),
		TargetType:       g.targetType, IpAddressType: g.ipType,
	}
	if g.hc.matcher != "" {
		x.Matcher = &xMatcher{HttpCode: g.hc.matcher}
	}
	return x
}

func (g *targetGroup) xmlAttributes() xAttributes {
	keys := make([]string, 0, len(g.attrs))
	for k := range g.attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []xAttribute
	for _, k := range keys {
		out = append(out, xAttribute{Key: k, Value: g.attrs[k]})
	}
	return xAttributes{Attributes: listOf(out)}
}

var tgNameRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$`)

var protocols = map[string]bool{"TCP": true, "UDP": true, "TCP_UDP": true, "TLS": true, "HTTP": true, "HTTPS": true}

func isHTTP(proto string) bool { return proto == "HTTP" || proto == "HTTPS" }

// defaultHealthCheck follows AWS's defaults: application (HTTP/HTTPS)
// groups check HTTP on / every 30 s, timeout 5, thresholds 5/2, matcher
// 200; network groups check TCP every 30 s, timeout 10 (6 for HTTP), 5/2,
// HTTP matcher 200-399.
func defaultHealthCheck(protocol, hcProtocol string) healthCheck {
	if isHTTP(protocol) {
		if hcProtocol == "" {
			hcProtocol = protocol
		}
		return healthCheck{protocol: hcProtocol, port: "traffic-port", path: "/", matcher: "200",
			interval: 30, timeout: 5, healthy: 5, unhealthy: 2}
	}
	if hcProtocol == "" {
		hcProtocol = "TCP"
	}
	hc := healthCheck{protocol: hcProtocol, port: "traffic-port", interval: 30, timeout: 10, healthy: 5, unhealthy: 2}
	if isHTTP(hcProtocol) {
		hc.path, hc.matcher, hc.timeout = "/", "200-399", 6
		if hcProtocol == "HTTPS" {
			hc.timeout = 10
		}
	}
	return hc
}

// applyHealthParams overlays the request's HealthCheck* fields on hc and
// validates the result against the API's ranges.
func applyHealthParams(p params, hc *healthCheck) *apiError {
	if v := p.get("HealthCheckProtocol"); v != "" {
		if v != "TCP" && !isHTTP(v) {
			return validation("Health check protocol '%s' is not supported", v)
		}
		if hc.protocol != v && isHTTP(v) && hc.path == "" {
			hc.path, hc.matcher = "/", "200-399"
		}
		if !isHTTP(v) {
			hc.path, hc.matcher = "", ""
		}
		hc.protocol = v
	}
	if en, ok, e := p.boolean("HealthCheckEnabled"); e != nil {
		return e
	} else if ok && !en {
		// Only lambda groups may disable health checks.
		return validation("Health checks cannot be disabled for target groups with target type ip or instance")
	}
	if v := p.get("HealthCheckPort"); v != "" {
		if v != "traffic-port" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return validation("Health check port '%s' must be 'traffic-port' or a port between 1 and 65535", v)
			}
		}
		hc.port = v
	}
	if v := p.get("HealthCheckPath"); v != "" {
		if !isHTTP(hc.protocol) {
			return newErr("InvalidConfigurationRequest", "Health check path is only supported for HTTP and HTTPS health checks")
		}
		if !strings.HasPrefix(v, "/") || len(v) > 1024 {
			return validation("Health check path must begin with '/' and be at most 1024 characters")
		}
		hc.path = v
	}
	if v := p.get("Matcher.HttpCode"); v != "" {
		if !isHTTP(hc.protocol) {
			return newErr("InvalidConfigurationRequest", "Matcher is only supported for HTTP and HTTPS health checks")
		}
		if _, err := parseMatcher(v); err != nil {
			return validation("Invalid matcher '%s': %v", v, err)
		}
		hc.matcher = v
	}
	for _, f := range []struct {
		key    string
		dst    *int32
		lo, hi int32
	}{
		{"HealthCheckIntervalSeconds", &hc.interval, 5, 300},
		{"HealthCheckTimeoutSeconds", &hc.timeout, 2, 120},
		{"HealthyThresholdCount", &hc.healthy, 2, 10},
		{"UnhealthyThresholdCount", &hc.unhealthy, 2, 10},
	} {
		v, ok, e := p.int32(f.key)
		if e != nil {
			return e
		}
		if !ok {
			continue
		}
		if v < f.lo || v > f.hi {
			return validation("%s must be between %d and %d", f.key, f.lo, f.hi)
		}
		*f.dst = v
	}
	if hc.timeout >= hc.interval && isHTTP(hc.protocol) {
		return validation("Health check timeout '%d' must be smaller than the interval '%d'", hc.timeout, hc.interval)
	}
	return nil
}

// parseMatcher accepts "200", "200,202" and "200-399".
func parseMatcher(m string) (func(int) bool, error) {
	type rng struct{ lo, hi int }
	var rs []rng
	for part := range strings.SplitSeq(m, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, err
			}
		}
		if a < 100 || b > 599 || a > b {
			return nil, strconv.ErrRange
		}
		rs = append(rs, rng{a, b})
	}
	return func(code int) bool {
		for _, r := range rs {
			if code >= r.lo && code <= r.hi {
				return true
			}
		}
		return false
	}, nil
}

func defaultAttributes(protocol, targetType string) map[string]string {
	a := map[string]string{
		"deregistration_delay.timeout_seconds": "300",
		"stickiness.enabled":                   "false",
		"load_balancing.cross_zone.enabled":    "use_load_balancer_configuration",
	}
	if isHTTP(protocol) {
		a["stickiness.type"] = "lb_cookie"
		a["load_balancing.algorithm.type"] = "round_robin"
		a["slow_start.duration_seconds"] = "0"
	} else {
		a["stickiness.type"] = "source_ip"
		a["proxy_protocol_v2.enabled"] = "false"
		a["preserve_client_ip.enabled"] = strconv.FormatBool(targetType == "instance")
		udp := protocol == "UDP" || protocol == "TCP_UDP"
		a["deregistration_delay.connection_termination.enabled"] = strconv.FormatBool(udp)
		a["target_health_state.unhealthy.connection_termination.enabled"] = "true"
		a["target_health_state.unhealthy.draining_interval_seconds"] = "0"
	}
	return a
}

func (s *Server) createTargetGroup(p params) (any, *apiError) {
	name := p.get("Name")
	if !tgNameRE.MatchString(name) || strings.HasPrefix(strings.ToLower(name), "internal-") {
		return nil, validation("Target group name '%s' can have a maximum of 32 characters, must contain only alphanumeric characters or hyphens, and must not begin or end with a hyphen", name)
	}
	targetType := p.get("TargetType")
	if targetType == "" {
		targetType = "instance"
	}
	if targetType != "ip" && targetType != "instance" {
		return nil, validation("Target type '%s' is not supported by this emulator", targetType)
	}
	protocol := p.get("Protocol")
	if protocol == "" || !protocols[protocol] {
		return nil, validation("A valid protocol must be specified for target type '%s'", targetType)
	}
	port, ok, e := p.int32("Port")
	if e != nil {
		return nil, e
	}
	if !ok {
		return nil, validation("A port must be specified for target type '%s'", targetType)
	}
	if port < 1 || port > 65535 {
		return nil, validation("Port must be between 1 and 65535")
	}
	vpcID := p.get("VpcId")
	if vpcID == "" {
		return nil, validation("A VPC ID must be specified for target type '%s'", targetType)
	}
	if !wellFormed("vpc", vpcID) {
		return nil, validation("The VPC ID '%s' is malformed", vpcID)
	}
	ipType := p.get("IpAddressType")
	if ipType == "" {
		ipType = "ipv4"
	}
	if ipType != "ipv4" {
		return nil, validation("IP address type '%s' is not supported by this emulator", ipType)
	}
	hc := defaultHealthCheck(protocol, p.get("HealthCheckProtocol"))
	if err := applyHealthParams(p, &hc); err != nil {
		return nil, err
	}
	tags, err := readTags(p)
	if err != nil {
		return nil, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vpc(vpcID) == nil {
		return nil, validation("The VPC ID '%s' is not found", vpcID)
	}
	if old := s.tgByName[name]; old != nil {
		// Creating an identical group again succeeds and returns it; a
		// different one with the same name does not.
		if old.protocol == protocol && old.port == port && old.vpcID == vpcID &&
			old.targetType == targetType && old.hc == hc {
			return xTargetGroups{TargetGroups: listOf([]xTargetGroup{old.xml()})}, nil
		}
		return nil, newErr("DuplicateTargetGroupName", "A target group with the same name '%s' exists, but with different settings", name)
	}
	if len(s.tgs) >= 3000 {
		return nil, newErr("TooManyTargetGroups", "You have reached the limit on the number of target groups for your AWS account")
	}
	g := &targetGroup{
		arn:  s.arn("targetgroup/" + name + "/" + s.nextID()),
		name: name, protocol: protocol, targetType: targetType, vpcID: vpcID,
		ipType: ipType, port: port, hc: hc,
		attrs:     defaultAttributes(protocol, targetType),
		created:   time.Now(),
		targets:   map[targetKey]*target{},
		listeners: map[string]*listener{},
		changed:   make(chan struct{}),
	}
	s.tgs[g.arn] = g
	s.tgByName[name] = g
	s.setTags(g.arn, tags)
	s.logf("created target group %s", g.arn)
	return xTargetGroups{TargetGroups: listOf([]xTargetGroup{g.xml()})}, nil
}

func validTGArn(arn string) bool {
	return strings.HasPrefix(arn, "arn:") && strings.Contains(arn, ":targetgroup/")
}

// group finds a target group by ARN; callers hold s.mu.
func (s *Server) group(arn string) (*targetGroup, *apiError) {
	if arn == "" {
		return nil, validation("A target group ARN must be specified")
	}
	if !validTGArn(arn) {
		return nil, validation("'%s' is not a valid target group ARN", arn)
	}
	g := s.tgs[arn]
	if g == nil {
		return nil, newErr("TargetGroupNotFound", "Target groups '%s' not found", arn)
	}
	return g, nil
}

// deleteTargetGroup succeeds for an ARN that does not exist (the API
// declares no TargetGroupNotFound for it), like DeleteLoadBalancer.
func (s *Server) deleteTargetGroup(p params) (any, *apiError) {
	arn := p.get("TargetGroupArn")
	if !validTGArn(arn) {
		return nil, validation("'%s' is not a valid target group ARN", arn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.tgs[arn]
	if g == nil {
		return nil, nil
	}
	if g.inUse() {
		return nil, newErr("ResourceInUse", "Target group '%s' is currently in use by a listener or a rule", arn)
	}
	for _, t := range g.order {
		t.stop()
		t.closeConns()
	}
	g.targets, g.order = nil, nil
	delete(s.tgs, arn)
	delete(s.tgByName, g.name)
	delete(s.tags, arn)
	s.logf("deleted target group %s", arn)
	return nil, nil
}

func (s *Server) describeTargetGroups(p params) (any, *apiError) {
	arns, names, lbArn := p.strings("TargetGroupArns"), p.strings("Names"), p.get("LoadBalancerArn")
	n := 0
	for _, b := range []bool{len(arns) > 0, len(names) > 0, lbArn != ""} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, validation("Only one of TargetGroupArns, Names or LoadBalancerArn can be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var gs []*targetGroup
	switch {
	case len(arns) > 0:
		var missing []string
		for _, a := range arns {
			if !validTGArn(a) {
				return nil, validation("'%s' is not a valid target group ARN", a)
			}
			if g := s.tgs[a]; g != nil {
				gs = append(gs, g)
			} else {
				missing = append(missing, a)
			}
		}
		if len(missing) > 0 {
			return nil, newErr("TargetGroupNotFound", "One or more target groups not found: '%s'", strings.Join(missing, "', '"))
		}
	case len(names) > 0:
		var missing []string
		for _, nm := range names {
			if g := s.tgByName[nm]; g != nil {
				gs = append(gs, g)
			} else {
				missing = append(missing, nm)
			}
		}
		if len(missing) > 0 {
			return nil, newErr("TargetGroupNotFound", "One or more target groups not found: '%s'", strings.Join(missing, "', '"))
		}
	case lbArn != "":
		lb := s.lbs[lbArn]
		if lb == nil {
			return nil, newErr("LoadBalancerNotFound", "Load balancer '%s' not found", lbArn)
		}
		for _, g := range s.tgs {
			for _, l := range g.listeners {
				if l.lbArn == lbArn {
					gs = append(gs, g)
					break
				}
			}
		}
	default:
		for _, g := range s.tgs {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	from, to, next, err := p.page(len(gs))
	if err != nil {
		return nil, err
	}
	out := make([]xTargetGroup, 0, to-from)
	for _, g := range gs[from:to] {
		out = append(out, g.xml())
	}
	return xTargetGroups{TargetGroups: listOf(out), NextMarker: next}, nil
}

func (s *Server) modifyTargetGroup(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.group(p.get("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	hc := g.hc
	if err := applyHealthParams(p, &hc); err != nil {
		return nil, err
	}
	g.hc = hc
	g.wake()
	return xTargetGroups{TargetGroups: listOf([]xTargetGroup{g.xml()})}, nil
}

func (s *Server) describeTargetGroupAttributes(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.group(p.get("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	return g.xmlAttributes(), nil
}

func (s *Server) modifyTargetGroupAttributes(p params) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.group(p.get("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	set, err := p.attributes(g.attrs, "target group", func(k, v string) *apiError {
		switch {
		case k == "target_health_state.unhealthy.draining_interval_seconds":
			if n, e := strconv.Atoi(v); e != nil || n < 0 || n > 360000 {
				return validation("Attribute '%s' must be between 0 and 360000, got '%s'", k, v)
			}
		case k == "deregistration_delay.timeout_seconds" || k == "slow_start.duration_seconds":
			n, e := strconv.Atoi(v)
			if e != nil || n < 0 || n > 3600 || (k == "slow_start.duration_seconds" && n != 0 && n < 30) {
				return validation("Attribute '%s' has an invalid value '%s'", k, v)
			}
		case strings.HasSuffix(k, ".enabled") && k != "load_balancing.cross_zone.enabled":
			if v != "true" && v != "false" {
				return validation("Attribute '%s' must be 'true' or 'false'", k)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	maps.Copy(g.attrs, set)
	return g.xmlAttributes(), nil
}
