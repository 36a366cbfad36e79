package elbv2sim

import (
	"regexp"
	"slices"
	"strconv"
)

// Listener and rule actions. A rule (and a listener's default rule) has
// exactly one action: forward, fixed-response or redirect.

type weightedGroup struct {
	arn    string
	g      *targetGroup // resolved under s.mu
	weight int32
}

type fixedResponse struct {
	status      int
	contentType string
	body        string
}

type redirect struct {
	protocol, port, host, path, query string
	status                            string // HTTP_301 or HTTP_302
}

type action struct {
	typ      string // forward, fixed-response, redirect
	forward  []weightedGroup
	fixed    *fixedResponse
	redirect *redirect
	rr       uint64 // weighted round-robin position across the groups
}

// maxGroupsPerAction is the quota "Target Groups per Action per Application
// Load Balancer" (5, not adjustable), from
// https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-limits.html
const maxGroupsPerAction = 5

var fixedContentTypes = []string{"text/plain", "text/css", "text/html", "application/javascript", "application/json"}

var fixedStatusRE = regexp.MustCompile(`^[245][0-9][0-9]$`)

// readActions reads Name.member.N as the single action the emulator
// supports; lbType decides which action types are allowed.
func readActions(p params, name, lbType string) (*action, *apiError) {
	ms := p.members(name)
	if len(ms) != 1 {
		return nil, newErr("InvalidLoadBalancerAction", "Exactly one action is supported by this emulator, got %d in %s", len(ms), name)
	}
	m := ms[0]
	a := &action{typ: p.get(m + ".Type")}
	if lbType != "application" && a.typ != "forward" {
		return nil, newErr("InvalidLoadBalancerAction", "Only forward actions are supported for network load balancers")
	}
	switch a.typ {
	case "forward":
		tgArn := p.get(m + ".TargetGroupArn")
		fwd := p.members(m + ".ForwardConfig.TargetGroups")
		if tgArn != "" {
			a.forward = []weightedGroup{{arn: tgArn, weight: 1}}
		}
		if len(fwd) > 0 {
			var tuples []weightedGroup
			for _, f := range fwd {
				w := int32(1)
				if v, ok, err := p.int32(f + ".Weight"); err != nil {
					return nil, err
				} else if ok {
					if v < 0 || v > 999 {
						return nil, validation("Target group weight %d in %s must be between 0 and 999", v, name)
					}
					w = v
				}
				arn := p.get(f + ".TargetGroupArn")
				if slices.ContainsFunc(tuples, func(t weightedGroup) bool { return t.arn == arn }) {
					return nil, newErr("InvalidLoadBalancerAction", "Target group '%s' is named twice in one forward action", arn)
				}
				tuples = append(tuples, weightedGroup{arn: arn, weight: w})
			}
			if tgArn != "" && (len(tuples) != 1 || tuples[0].arn != tgArn) {
				return nil, newErr("InvalidLoadBalancerAction", "TargetGroupArn and ForwardConfig name different target groups")
			}
			a.forward = tuples
		}
		if len(a.forward) == 0 {
			return nil, newErr("InvalidLoadBalancerAction", "A forward action needs a TargetGroupArn or ForwardConfig.TargetGroups")
		}
		if len(a.forward) > 1 && lbType != "application" {
			return nil, newErr("InvalidLoadBalancerAction", "Forwarding to more than one target group is not supported by this emulator for network load balancers")
		}
		if len(a.forward) > maxGroupsPerAction {
			return nil, newErr("TooManyTargetGroups", "A forward action can name at most %d target groups", maxGroupsPerAction)
		}
	case "fixed-response":
		f := m + ".FixedResponseConfig"
		code := p.get(f + ".StatusCode")
		if !fixedStatusRE.MatchString(code) {
			return nil, validation("FixedResponseConfig.StatusCode '%s' must be a 2XX, 4XX or 5XX code", code)
		}
		status, _ := strconv.Atoi(code)
		ct := p.get(f + ".ContentType")
		if ct != "" && !slices.Contains(fixedContentTypes, ct) {
			return nil, validation("FixedResponseConfig.ContentType '%s' must be one of %v", ct, fixedContentTypes)
		}
		body := p.get(f + ".MessageBody")
		if len(body) > 1024 {
			return nil, validation("FixedResponseConfig.MessageBody must be at most 1024 characters")
		}
		a.fixed = &fixedResponse{status: status, contentType: ct, body: body}
	case "redirect":
		f := m + ".RedirectConfig"
		r := &redirect{
			protocol: orDefault(p.get(f+".Protocol"), "#{protocol}"),
			port:     orDefault(p.get(f+".Port"), "#{port}"),
			host:     orDefault(p.get(f+".Host"), "#{host}"),
			path:     orDefault(p.get(f+".Path"), "/#{path}"),
			query:    orDefault(p.get(f+".Query"), "#{query}"),
			status:   p.get(f + ".StatusCode"),
		}
		if r.status != "HTTP_301" && r.status != "HTTP_302" {
			return nil, validation("RedirectConfig.StatusCode '%s' must be HTTP_301 or HTTP_302", r.status)
		}
		if r.protocol != "HTTP" && r.protocol != "HTTPS" && r.protocol != "#{protocol}" {
			return nil, validation("RedirectConfig.Protocol '%s' must be HTTP, HTTPS or #{protocol}", r.protocol)
		}
		if r.path[0] != '/' {
			return nil, validation("RedirectConfig.Path '%s' must start with '/'", r.path)
		}
		if r.protocol == "#{protocol}" && r.port == "#{port}" && r.host == "#{host}" && r.path == "/#{path}" && r.query == "#{query}" {
			return nil, newErr("InvalidLoadBalancerAction", "The redirect must change at least one of protocol, port, host, path or query; otherwise it loops")
		}
		a.redirect = r
	default:
		return nil, newErr("InvalidLoadBalancerAction", "Action type '%s' is not supported by this emulator", a.typ)
	}
	return a, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// resolve looks up the groups a forward action names and checks they may
// serve a listener of lb with protocol proto. Callers hold s.mu.
func (s *Server) resolve(a *action, lb *loadBalancer, proto string) *apiError {
	for i := range a.forward {
		g, err := s.group(a.forward[i].arn)
		if err != nil {
			return err
		}
		if !compatible(lb.typ, proto, g.protocol) {
			return newErr("IncompatibleProtocols", "The listener protocol '%s' is not compatible with the target group protocol '%s'", proto, g.protocol)
		}
		for _, other := range g.lbArns() {
			if other != lb.arn {
				return newErr("TargetGroupAssociationLimit", "The target group '%s' is already associated with a different load balancer", g.arn)
			}
		}
		a.forward[i].g = g
	}
	return nil
}

type xTargetGroupTuple struct {
	TargetGroupArn string
	Weight         int32
}

type xForwardConfig struct {
	TargetGroups list[xTargetGroupTuple]
}

type xFixedResponseConfig struct {
	StatusCode  string
	ContentType string `xml:",omitempty"`
	MessageBody string `xml:",omitempty"`
}

type xRedirectConfig struct {
	Protocol, Port, Host, Path, Query, StatusCode string
}

type xAction struct {
	Type                string
	TargetGroupArn      string `xml:",omitempty"`
	Order               int32  `xml:",omitempty"`
	ForwardConfig       *xForwardConfig
	FixedResponseConfig *xFixedResponseConfig
	RedirectConfig      *xRedirectConfig
}

func (a *action) xml() list[xAction] {
	x := xAction{Type: a.typ, Order: 1}
	switch {
	case a.fixed != nil:
		x.FixedResponseConfig = &xFixedResponseConfig{StatusCode: strconv.Itoa(a.fixed.status),
			ContentType: a.fixed.contentType, MessageBody: a.fixed.body}
	case a.redirect != nil:
		r := a.redirect
		x.RedirectConfig = &xRedirectConfig{Protocol: r.protocol, Port: r.port, Host: r.host, Path: r.path, Query: r.query, StatusCode: r.status}
	default:
		var tuples []xTargetGroupTuple
		for _, f := range a.forward {
			tuples = append(tuples, xTargetGroupTuple{TargetGroupArn: f.arn, Weight: f.weight})
		}
		if len(tuples) == 1 {
			x.TargetGroupArn = tuples[0].TargetGroupArn
		}
		x.ForwardConfig = &xForwardConfig{TargetGroups: listOf(tuples)}
	}
	return listOf([]xAction{x})
}

// pickGroup chooses the group for the next request of a forward action:
// weighted round robin, so weights 1 and 3 send one request in four to the
// first group. nil when every weight is zero. Callers hold s.mu.
func (a *action) pickGroup() *targetGroup {
	var total uint64
	for _, f := range a.forward {
		total += uint64(f.weight)
	}
	if total == 0 {
		return nil
	}
	n := a.rr % total
	a.rr++
	for _, f := range a.forward {
		if n < uint64(f.weight) {
			return f.g
		}
		n -= uint64(f.weight)
	}
	return nil
}
