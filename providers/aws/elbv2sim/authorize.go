package elbv2sim

import (
	"fmt"
	"net/http"
	"strings"
)

// Authorisation of API calls against Options.Policies.
//
// Which resources each action is authorised on follows the Service
// Authorization Reference for Elastic Load Balancing V2
// (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html):
// Describe* actions have no resource-level permissions ("*"); the others
// act on the ARNs they name. A Create* call is authorised on the ARN the
// new resource will have, its ID not yet known ("targetgroup/name/*"), and
// CreateListener and CreateRule also on the load balancer or listener
// they add to. A Create* call carrying Tags is also authorised as AddTags
// on the new resource, with the condition key
// elasticloadbalancing:CreateAction naming the create action, as the
// Elastic Load Balancing user guide's "Grant permissions to tag resources
// during creation" describes
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-tags.html).
//
// Condition keys: aws:RequestTag/<key> and aws:TagKeys for the tags in a
// Create* or AddTags request (aws:TagKeys also for RemoveTags),
// aws:ResourceTag/<key> for the current tags of an existing resource.
// EC2's Describe* actions have no resource-level permissions either.

// ec2ActionPrefix and elbActionPrefix are the IAM service prefixes.
const (
	ec2ActionPrefix = "ec2:"
	elbActionPrefix = "elasticloadbalancing:"
)

// authorize checks the call against the caller's policy, if it has one:
// nil when every request the call makes is allowed, else the first
// refusal in AWS's words. Each service answers with its own code and 403
// (ELBv2 AccessDenied, EC2 UnauthorizedOperation).
func (s *Server) authorize(r *http.Request, action string, isEC2 bool, p params) *apiError {
	key := accessKeyID(r)
	pol := s.opts.Policies[key]
	if pol == nil {
		return nil
	}
	user := fmt.Sprintf("arn:aws:iam::%s:user/%s", s.opts.AccountID, key)
	if isEC2 {
		req := request{action: ec2ActionPrefix + action, resource: "*"}
		switch pol.decide(req) {
		case explicitDeny:
			return denied("UnauthorizedOperation", "You are not authorized to perform this operation. User: %s is not authorized to perform: %s with an explicit deny in an identity-based policy", user, req.action)
		case implicitDeny:
			return denied("UnauthorizedOperation", "You are not authorized to perform this operation. User: %s is not authorized to perform: %s because no identity-based policy allows the %s action", user, req.action, req.action)
		}
		return nil
	}
	for _, req := range s.requests(action, p) {
		switch pol.decide(req) {
		case explicitDeny:
			return denied("AccessDenied", "User: %s is not authorized to perform: %s on resource: %s with an explicit deny in an identity-based policy", user, req.action, req.resource)
		case implicitDeny:
			return denied("AccessDenied", "User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action", user, req.action, req.resource, req.action)
		}
	}
	return nil
}

func denied(code, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...), status: http.StatusForbidden}
}

// requests lists the authorisation requests an ELBv2 call makes.
func (s *Server) requests(action string, p params) []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	full := elbActionPrefix + action
	on := func(arns ...string) []request {
		var out []request
		for _, a := range arns {
			out = append(out, request{action: full, resource: a, context: s.resourceContext(a)})
		}
		return out
	}
	var out []request
	created := ""
	switch action {
	case "CreateTargetGroup":
		created = s.arn("targetgroup/" + p.get("Name") + "/*")
	case "CreateLoadBalancer":
		kind := "app"
		if p.get("Type") == "network" {
			kind = "net"
		}
		created = s.arn("loadbalancer/" + kind + "/" + p.get("Name") + "/*")
	case "CreateListener":
		lbArn := p.get("LoadBalancerArn")
		out = on(lbArn)
		created = strings.Replace(lbArn, ":loadbalancer/", ":listener/", 1) + "/*"
	case "CreateRule":
		listenerArn := p.get("ListenerArn")
		out = on(listenerArn)
		created = strings.Replace(listenerArn, ":listener/", ":listener-rule/", 1) + "/*"
	case "RegisterTargets", "DeregisterTargets", "ModifyTargetGroup", "ModifyTargetGroupAttributes", "DeleteTargetGroup":
		return on(p.get("TargetGroupArn"))
	case "DeleteLoadBalancer", "ModifyLoadBalancerAttributes":
		return on(p.get("LoadBalancerArn"))
	case "ModifyListener", "DeleteListener", "AddListenerCertificates", "RemoveListenerCertificates":
		return on(p.get("ListenerArn"))
	case "ModifyRule", "DeleteRule":
		return on(p.get("RuleArn"))
	case "SetRulePriorities":
		var arns []string
		for _, m := range p.members("RulePriorities") {
			arns = append(arns, p.get(m+".RuleArn"))
		}
		return on(arns...)
	case "AddTags", "RemoveTags":
		out = on(p.strings("ResourceArns")...)
		for i := range out {
			addRequestTags(out[i].context, p, action == "AddTags")
		}
		return out
	default:
		// Describe*: no resource-level permissions.
		return []request{{action: full, resource: "*"}}
	}
	// A create: the parent (if any) and the new resource carry the
	// request's tags; tags make it an AddTags as well.
	for i := range out {
		addRequestTags(out[i].context, p, true)
	}
	newRes := request{action: full, resource: created, context: map[string][]string{}}
	addRequestTags(newRes.context, p, true)
	out = append(out, newRes)
	if len(p.members("Tags")) > 0 {
		tagging := request{action: elbActionPrefix + "AddTags", resource: created,
			context: map[string][]string{"elasticloadbalancing:createaction": {action}}}
		addRequestTags(tagging.context, p, true)
		out = append(out, tagging)
	}
	return out
}

// resourceContext holds aws:ResourceTag/<key> for an existing resource's
// tags. Callers hold s.mu.
func (s *Server) resourceContext(arn string) map[string][]string {
	ctx := map[string][]string{}
	for k, v := range s.tags[arn] {
		ctx["aws:resourcetag/"+strings.ToLower(k)] = []string{v}
	}
	return ctx
}

// addRequestTags adds aws:TagKeys and, when the request carries tag values
// (Tags.member.N), aws:RequestTag/<key>; RemoveTags names keys only
// (TagKeys.member.N).
func addRequestTags(ctx map[string][]string, p params, withValues bool) {
	var keys []string
	if withValues {
		for _, m := range p.members("Tags") {
			k := p.get(m + ".Key")
			keys = append(keys, k)
			ctx["aws:requesttag/"+strings.ToLower(k)] = []string{p.get(m + ".Value")}
		}
	} else {
		keys = p.strings("TagKeys")
	}
	if len(keys) > 0 {
		ctx["aws:tagkeys"] = keys
	}
}
