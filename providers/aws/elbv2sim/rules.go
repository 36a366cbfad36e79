package elbv2sim

import "strings"

// Listeners here have exactly one rule, their default action; rules with
// conditions and priorities are not emulated. DescribeRules still answers
// in AWS's shape, so clients that look for what forwards to a group find
// the default rule.

type xRule struct {
	RuleArn    string
	Priority   string
	Conditions list[struct{}]
	Actions    list[xAction]
	IsDefault  bool
}

type xRules struct {
	Rules      list[xRule]
	NextMarker string `xml:",omitempty"`
}

// defaultRuleArn derives the default rule's ARN from its listener's, as
// AWS does (listener-rule/ in place of listener/, plus a rule id).
func defaultRuleArn(listenerArn string) string {
	return strings.Replace(listenerArn, ":listener/", ":listener-rule/", 1) + "/0000000000000000"
}

func (l *listener) defaultRule() xRule {
	return xRule{RuleArn: defaultRuleArn(l.arn), Priority: "default", Actions: l.xml().DefaultActions, IsDefault: true}
}

func (s *Server) describeRules(p params) (any, *apiError) {
	listenerArn, ruleArns := p.get("ListenerArn"), p.strings("RuleArns")
	s.mu.Lock()
	defer s.mu.Unlock()
	var rules []xRule
	switch {
	case listenerArn != "" && len(ruleArns) > 0:
		return nil, validation("Only one of ListenerArn or RuleArns can be specified")
	case listenerArn != "":
		l := s.listeners[listenerArn]
		if l == nil {
			return nil, newErr("ListenerNotFound", "Listener '%s' not found", listenerArn)
		}
		rules = append(rules, l.defaultRule())
	case len(ruleArns) > 0:
		for _, a := range ruleArns {
			var found *listener
			for _, l := range s.listeners {
				if defaultRuleArn(l.arn) == a {
					found = l
				}
			}
			if found == nil {
				return nil, newErr("RuleNotFound", "One or more rules not found: '%s'", a)
			}
			rules = append(rules, found.defaultRule())
		}
	default:
		return nil, validation("You must specify either listener ARN or rule ARNs")
	}
	from, to, next, err := p.page(len(rules))
	if err != nil {
		return nil, err
	}
	return xRules{Rules: listOf(rules[from:to]), NextMarker: next}, nil
}
