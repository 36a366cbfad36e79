package elbv2sim

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

type targetKey struct {
	id   string
	port int32
}

type phase int

const (
	phaseRegistering phase = iota // initial / Elb.RegistrationInProgress
	phaseInitial                  // initial / Elb.InitialHealthChecking
	phaseHealthy
	phaseUnhealthy
	phaseDraining
)

type target struct {
	key          targetKey
	az           string // AvailabilityZone as registered (reported back)
	zone         string // effective zone, or "all"
	phase        phase
	regStart     time.Time // the registration delay runs from here
	registeredAt time.Time
	healthyAt    time.Time
	drainUntil   time.Time
	okRun        int // consecutive passed checks
	failRun      int // consecutive failed checks
	failReason   string
	failDesc     string
	nextProbe    time.Time
	// epoch changes whenever the target's health restarts, so a probe
	// result that was in flight across the change is dropped.
	epoch      uint64
	cancel     context.CancelFunc // stops the checker
	drainTimer *time.Timer
	// unhealthyTimer closes the connections when unhealthy.draining ends.
	unhealthyTimer *time.Timer
	conns          map[*proxyConn]struct{}
	inflight       int // proxied HTTP requests not yet answered
}

// stop ends the target's checker and drain timer. Callers hold s.mu.
func (t *target) stop() {
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
	if t.drainTimer != nil {
		t.drainTimer.Stop()
		t.drainTimer = nil
	}
	t.stopUnhealthyDraining()
}

// closeConns resets every proxied connection of t. Callers hold s.mu.
func (t *target) closeConns() {
	for pc := range t.conns {
		pc.close()
	}
}

// unhealthyDraining reports whether t is unhealthy.draining: until its
// timer has closed the connections, so no caller ever sees the state
// "unhealthy" while they are still open. Callers hold s.mu.
func (t *target) unhealthyDraining() bool { return t.unhealthyTimer != nil }

// stopUnhealthyDraining ends unhealthy.draining without closing anything.
// Callers hold s.mu.
func (t *target) stopUnhealthyDraining() {
	if t.unhealthyTimer != nil {
		t.unhealthyTimer.Stop()
		t.unhealthyTimer = nil
	}
}

// served reports whether a load balancer using g has t's zone enabled;
// a target in a zone none of them has is unused, with reason
// Target.NotInUse, as documented in
// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetHealth.html
// Callers hold s.mu.
func (s *Server) served(g *targetGroup, t *target) bool {
	if t.zone == "all" || t.zone == "" {
		return g.inUse()
	}
	for _, l := range g.listeners {
		if lb := s.lbs[l.lbArn]; lb != nil && slices.ContainsFunc(lb.subnets, func(sn Subnet) bool { return sn.AvailabilityZone == t.zone }) {
			return true
		}
	}
	return false
}

// restart puts the target back at the start of registration. Callers hold s.mu.
func (t *target) restart(now time.Time) {
	t.phase = phaseRegistering
	t.regStart = now
	t.okRun, t.failRun = 0, 0
	t.failReason, t.failDesc = "", ""
	t.healthyAt = time.Time{}
	t.drainUntil = time.Time{}
	t.stopUnhealthyDraining()
	t.epoch++
}

// health is what DescribeTargetHealth reports. Callers hold s.mu.
func (s *Server) health(g *targetGroup, t *target, now time.Time) (state, reason, desc string) {
	if t.phase == phaseDraining {
		return "draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"
	}
	if !g.inUse() {
		return "unused", "Target.NotInUse", "Target group is not configured to receive traffic from the load balancer"
	}
	if !s.served(g, t) {
		return "unused", "Target.NotInUse", "Target is in an Availability Zone that is not enabled for the load balancer"
	}
	switch t.phase {
	case phaseRegistering:
		if now.Before(t.regStart.Add(s.opts.RegistrationDelay)) {
			return "initial", "Elb.RegistrationInProgress", "Target registration is in progress"
		}
		return "initial", "Elb.InitialHealthChecking", "Initial health checks in progress"
	case phaseInitial:
		return "initial", "Elb.InitialHealthChecking", "Initial health checks in progress"
	case phaseHealthy:
		return "healthy", "", ""
	default:
		if t.unhealthyDraining() {
			return "unhealthy.draining", t.failReason, t.failDesc
		}
		return "unhealthy", t.failReason, t.failDesc
	}
}

// healthCheckPort is the port the checks of t go to.
func (g *targetGroup) healthCheckPort(t *target) int32 {
	if g.hc.port == "traffic-port" || g.hc.port == "" {
		return t.key.port
	}
	n, _ := strconv.Atoi(g.hc.port)
	return int32(n)
}

type xTarget struct {
	Id               string
	Port             int32  `xml:",omitempty"`
	AvailabilityZone string `xml:",omitempty"`
}

type xTargetHealth struct {
	State       string
	Reason      string `xml:",omitempty"`
	Description string `xml:",omitempty"`
}

type xTargetHealthDescription struct {
	Target          xTarget
	HealthCheckPort string `xml:",omitempty"`
	TargetHealth    xTargetHealth
}

type xTargetHealthDescriptions struct {
	TargetHealthDescriptions list[xTargetHealthDescription]
}

type reqTarget struct {
	id   string
	port int32  // 0: not given
	az   string // as given
	zone string // effective: detected from the subnet, or az
}

func readTargets(p params) ([]reqTarget, *apiError) {
	var out []reqTarget
	for _, m := range p.members("Targets") {
		t := reqTarget{id: p.get(m + ".Id"), az: p.get(m + ".AvailabilityZone")}
		if t.id == "" {
			return nil, validation("A target ID must be specified")
		}
		if v, ok, err := p.int32(m + ".Port"); err != nil {
			return nil, err
		} else if ok {
			if v < 1 || v > 65535 {
				return nil, validation("Port %d of target '%s' must be between 1 and 65535", v, t.id)
			}
			t.port = v
		}
		out = append(out, t)
	}
	return out, nil
}

// ipTarget reads the Id of a target of an ip group. Every group is ipv4
// (CreateTargetGroup refuses ipv6), and AWS documents that all IP
// addresses of a group have the group's IP address type; it answers an
// IPv6 address ValidationError "The IP address '…' is not a valid IPv4
// address" (as reported in kube-ingress-aws-controller #495 and
// community.aws #1441). Anything that is no address at all is
// InvalidTarget.
func ipTarget(id string) (netip.Addr, *apiError) {
	addr, err := netip.ParseAddr(id)
	switch {
	case err != nil:
		return netip.Addr{}, newErr("InvalidTarget", "The IP address '%s' is not a valid IPv4 address", id)
	case !addr.Is4():
		return netip.Addr{}, validation("The IP address '%s' is not a valid IPv4 address", id)
	}
	return addr, nil
}

// The IP ranges AWS accepts for ip targets outside the group's VPC: RFC
// 1918 and RFC 6598 (publicly routable addresses are refused), from
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-register-targets.html
// The emulator adds 127.0.0.0/8, where test backends live.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
}

// ipTargetZone decides the zone of an ip target, following the
// AvailabilityZone rules of
// https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetDescription.html
// An IP in a subnet of the group's VPC has its zone detected: the request
// may leave AvailabilityZone out or name that zone. An IP outside the VPC
// needs one: "all" or a zone of the VPC. An IP inside the VPC's CIDRs but
// in no subnet needs a zone of the VPC. "all" is only for IPs outside the
// VPC. Callers hold s.mu.
func (s *Server) ipTargetZone(g *targetGroup, t *reqTarget) (string, *apiError) {
	addr, e := ipTarget(t.id)
	if e != nil {
		return "", e
	}
	v := s.vpc(g.vpcID)
	if v == nil {
		return "", newErr("InvalidTarget", "The VPC '%s' of the target group no longer exists", g.vpcID)
	}
	if !v.contains(addr) {
		if !slices.ContainsFunc(privateRanges, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			return "", newErr("InvalidTarget", "The IP address '%s' is publicly routable; only addresses of VPC '%s', RFC 1918 and RFC 6598 can be registered", t.id, g.vpcID)
		}
		switch {
		case t.az == "":
			return "", validation("The IP address '%s' is not within the CIDR blocks of VPC '%s'; AvailabilityZone must be specified ('all' or a zone of the VPC)", t.id, g.vpcID)
		case t.az != "all" && !v.hasZone(t.az):
			return "", validation("AvailabilityZone '%s' of target '%s' is not a zone of VPC '%s'", t.az, t.id, g.vpcID)
		}
		return t.az, nil
	}
	if t.az == "all" {
		return "", validation("AvailabilityZone 'all' is only valid for IP addresses outside VPC '%s'; '%s' is inside it", g.vpcID, t.id)
	}
	if sn := v.subnetOf(addr); sn != nil {
		if t.az != "" && t.az != sn.AvailabilityZone {
			return "", validation("The IP address '%s' is in subnet '%s' of zone '%s', not in '%s'", t.id, sn.ID, sn.AvailabilityZone, t.az)
		}
		return sn.AvailabilityZone, nil
	}
	switch {
	case t.az == "":
		return "", validation("The IP address '%s' is in VPC '%s' but in none of its subnets; AvailabilityZone must be specified", t.id, g.vpcID)
	case !v.hasZone(t.az):
		return "", validation("AvailabilityZone '%s' of target '%s' is not a zone of VPC '%s'", t.az, t.id, g.vpcID)
	}
	return t.az, nil
}

// validateTarget checks one target for RegisterTargets and sets its
// port and effective zone. Callers hold s.mu.
func (s *Server) validateTarget(g *targetGroup, t *reqTarget) *apiError {
	if t.port == 0 {
		if g.port == 0 {
			return validation("A port must be specified for target '%s'", t.id)
		}
		t.port = g.port
	}
	switch g.targetType {
	case "ip":
		zone, err := s.ipTargetZone(g, t)
		if err != nil {
			return err
		}
		t.zone = zone
	case "instance":
		if !strings.HasPrefix(t.id, "i-") {
			return newErr("InvalidTarget", "The following targets are not valid instances: '%s'", t.id)
		}
		if t.az != "" {
			return validation("AvailabilityZone is not supported for instance targets")
		}
		// Instances are not modelled: every instance is in the first zone.
		if v := s.vpc(g.vpcID); v != nil && len(v.subnets) > 0 {
			t.zone = v.subnets[0].AvailabilityZone
		}
	}
	return nil
}

// registerTargets is all-or-nothing: one invalid target fails the call.
// Registering a registered target changes nothing; registering a draining
// one cancels its deregistration and starts it again from
// initial/Elb.RegistrationInProgress (its open connections are kept).
func (s *Server) registerTargets(p params) (any, *apiError) {
	reqs, err := readTargets(p)
	if err != nil {
		return nil, err
	}
	if len(reqs) == 0 {
		return nil, validation("At least one target must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.group(p.get("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	added := 0
	seen := map[targetKey]bool{}
	for i := range reqs {
		if err := s.validateTarget(g, &reqs[i]); err != nil {
			return nil, err
		}
		k := targetKey{reqs[i].id, reqs[i].port}
		if g.targets[k] == nil && !seen[k] {
			added++
		}
		seen[k] = true
	}
	// Draining targets still count against the limits until they are gone.
	if len(g.targets)+added > s.opts.MaxTargetsPerGroup {
		return nil, newErr("TooManyTargets", "You've reached the limit on the number of targets per target group (%d)", s.opts.MaxTargetsPerGroup)
	}
	if err := s.checkLBQuotas(g, reqs); err != nil {
		return nil, err
	}
	now := time.Now()
	for _, r := range reqs {
		k := targetKey{r.id, r.port}
		t := g.targets[k]
		switch {
		case t == nil:
			t = &target{key: k, az: r.az, zone: r.zone, registeredAt: now, conns: map[*proxyConn]struct{}{}}
			t.restart(now)
			g.targets[k] = t
			g.order = append(g.order, t)
			s.startChecker(g, t)
		case t.phase == phaseDraining:
			t.stop()
			t.restart(now)
			t.registeredAt = now
			s.startChecker(g, t)
		}
	}
	return nil, nil
}

// checkLBQuotas applies the per-load-balancer quotas of
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/load-balancer-limits.html
// to the load balancers using g, counting a target once per group it is
// registered in: targets per zone and per network load balancer (with
// cross-zone load balancing on, the per-zone number bounds the whole load
// balancer) answer TooManyTargets; an IP registered too often across the
// groups of one load balancer answers TooManyRegistrationsForTargetId
// (the application load balancer quota, 100, applied to both types). A
// target registered with zone "all" counts in every enabled zone. Callers
// hold s.mu.
func (s *Server) checkLBQuotas(g *targetGroup, reqs []reqTarget) *apiError {
	for _, arn := range g.lbArns() {
		lb := s.lbs[arn]
		if lb == nil {
			continue
		}
		total := 0
		perZone := map[string]int{}
		perID := map[string]int{}
		count := func(id, zone string) {
			total++
			perID[id]++
			if zone != "all" {
				perZone[zone]++
				return
			}
			for _, sn := range lb.subnets {
				perZone[sn.AvailabilityZone]++
			}
		}
		for og := range lb.groups() {
			for _, t := range og.order {
				count(t.key.id, t.zone)
			}
		}
		seen := map[targetKey]bool{}
		for _, r := range reqs {
			k := targetKey{r.id, r.port}
			if g.targets[k] == nil && !seen[k] {
				seen[k] = true
				count(r.id, r.zone)
			}
		}
		for _, r := range reqs {
			if perID[r.id] > s.opts.MaxRegistrationsPerTarget {
				return newErr("TooManyRegistrationsForTargetId", "You've reached the limit on the number of times target '%s' can be registered with load balancer '%s' (%d)", r.id, lb.name, s.opts.MaxRegistrationsPerTarget)
			}
		}
		if lb.typ != "network" {
			continue
		}
		limit := s.opts.MaxTargetsPerNetworkLB
		if lb.attrs["load_balancing.cross_zone.enabled"] == "true" {
			limit = s.opts.MaxTargetsPerZone
		}
		if total > limit {
			return newErr("TooManyTargets", "You've reached the limit on the number of targets per network load balancer '%s' (%d)", lb.name, limit)
		}
		for zone, n := range perZone {
			if n > s.opts.MaxTargetsPerZone {
				return newErr("TooManyTargets", "You've reached the limit on the number of targets in Availability Zone %s of network load balancer '%s' (%d)", zone, lb.name, s.opts.MaxTargetsPerZone)
			}
		}
	}
	return nil
}

// deregisterTargets drains each named target for the group's
// deregistration delay; naming a target that is not registered is not an
// error. In a group no listener uses there is nothing to drain, so the
// target goes at once.
func (s *Server) deregisterTargets(p params) (any, *apiError) {
	reqs, err := readTargets(p)
	if err != nil {
		return nil, err
	}
	if len(reqs) == 0 {
		return nil, validation("At least one target must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.group(p.get("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, r := range reqs {
		if g.targetType == "ip" {
			if _, e := ipTarget(r.id); e != nil {
				return nil, e
			}
		}
		port := r.port
		if port == 0 {
			port = g.port
		}
		t := g.targets[targetKey{r.id, port}]
		if t == nil || t.phase == phaseDraining {
			continue
		}
		s.drain(g, t, now)
	}
	return nil, nil
}

// drain starts deregistration of t. Callers hold s.mu.
func (s *Server) drain(g *targetGroup, t *target, now time.Time) {
	t.stop()
	delay := g.deregistrationDelay()
	if s.opts.DeregistrationDelay > 0 {
		delay = s.opts.DeregistrationDelay
	}
	// An application load balancer completes deregistration at once when
	// the target has no request in flight, as documented in
	// https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-target-groups.html#deregistration-delay
	if !g.inUse() || delay <= 0 || (g.servesHTTP() && t.inflight == 0) {
		s.removeTarget(g, t)
		return
	}
	t.phase = phaseDraining
	t.epoch++
	t.drainUntil = now.Add(delay)
	epoch := t.epoch
	t.drainTimer = time.AfterFunc(delay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && g.targets != nil && g.targets[t.key] == t && t.phase == phaseDraining && t.epoch == epoch {
			s.removeTarget(g, t)
		}
	})
}

// removeTarget forgets t and closes its connections. Callers hold s.mu.
func (s *Server) removeTarget(g *targetGroup, t *target) {
	t.stop()
	delete(g.targets, t.key)
	if i := slices.Index(g.order, t); i >= 0 {
		g.order = slices.Delete(g.order, i, i+1)
	}
	t.closeConns()
	s.logf("target %s:%d left %s", t.key.id, t.key.port, g.name)
}

func (s *Server) describeTargetHealth(p params) (any, *apiError) {
	reqs, err := readTargets(p)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, err := s.group(p.get("TargetGroupArn"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	describe := func(t *target) xTargetHealthDescription {
		st, reason, desc := s.health(g, t, now)
		return xTargetHealthDescription{
			Target:          xTarget{Id: t.key.id, Port: t.key.port, AvailabilityZone: t.az},
			HealthCheckPort: strconv.Itoa(int(g.healthCheckPort(t))),
			TargetHealth:    xTargetHealth{State: st, Reason: reason, Description: desc},
		}
	}
	out := []xTargetHealthDescription{}
	if len(reqs) == 0 {
		for _, t := range g.order {
			out = append(out, describe(t))
		}
		return xTargetHealthDescriptions{TargetHealthDescriptions: listOf(out)}, nil
	}
	for _, r := range reqs {
		if g.targetType == "ip" {
			if _, e := ipTarget(r.id); e != nil {
				return nil, e
			}
		}
		found := false
		for _, t := range g.order {
			if t.key.id == r.id && (r.port == 0 || r.port == t.key.port) {
				out = append(out, describe(t))
				found = true
			}
		}
		if !found {
			port := r.port
			if port == 0 {
				port = g.port
			}
			out = append(out, xTargetHealthDescription{
				Target:       xTarget{Id: r.id, Port: port, AvailabilityZone: r.az},
				TargetHealth: xTargetHealth{State: "unused", Reason: "Target.NotRegistered", Description: "Target is not registered to the target group"},
			})
		}
	}
	return xTargetHealthDescriptions{TargetHealthDescriptions: listOf(out)}, nil
}
