package elbv2sim

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Rules of application load balancer listeners. Every listener has a
// default rule, which is its default action; network load balancer
// listeners have nothing else. DescribeRules answers both in AWS's shape.

// Quotas of https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-limits.html
// ("Rules"): 100 rules per application load balancer, excluding default
// rules; 5 condition values and 5 condition wildcards per rule.
const (
	maxRulesPerALB          = 100
	maxConditionValues      = 5
	maxConditionWildcards   = 5
	maxUniqueGroupsPerALB   = 100 // "Target Groups per Application Load Balancer"
	maxRulePriority         = 50000
	maxConditionValueLength = 128
)

type condition struct {
	field  string // host-header, path-pattern, http-header
	header string // http-header only
	values []string
	match  []*regexp.Regexp
}

type rule struct {
	arn      string
	l        *listener
	priority int
	conds    []condition
	act      *action
}

// wildcard compiles an AWS match value: * is any run of characters, ? is
// one character, everything else is literal.
func wildcard(v string, caseInsensitive bool) *regexp.Regexp {
	var b strings.Builder
	if caseInsensitive {
		b.WriteString("(?i)")
	}
	b.WriteString("^")
	for _, r := range v {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// matches reports whether r satisfies the condition: any of its values
// matches. Host names are compared without a port and case-insensitively,
// paths case-sensitively without the query string, header values
// case-insensitively.
func (c *condition) matches(r *http.Request) bool {
	var subjects []string
	switch c.field {
	case "host-header":
		host := r.Host
		if h, _, ok := strings.Cut(host, ":"); ok {
			host = h
		}
		subjects = []string{host}
	case "path-pattern":
		subjects = []string{r.URL.Path}
	case "http-header":
		subjects = r.Header.Values(c.header)
	}
	for _, s := range subjects {
		for _, m := range c.match {
			if m.MatchString(s) {
				return true
			}
		}
	}
	return false
}

func (ru *rule) matches(r *http.Request) bool {
	for i := range ru.conds {
		if !ru.conds[i].matches(r) {
			return false
		}
	}
	return true
}

// readConditions reads Conditions.member.N in both the old (Field,
// Values) and the new (HostHeaderConfig, ...) forms.
func readConditions(p params) ([]condition, *apiError) {
	var out []condition
	values, wildcards := 0, 0
	for _, m := range p.members("Conditions") {
		c := condition{field: p.get(m + ".Field")}
		old := p.strings(m + ".Values")
		var cfg []string
		switch c.field {
		case "host-header":
			cfg = p.strings(m + ".HostHeaderConfig.Values")
		case "path-pattern":
			cfg = p.strings(m + ".PathPatternConfig.Values")
		case "http-header":
			c.header = p.get(m + ".HttpHeaderConfig.HttpHeaderName")
			if c.header == "" {
				return nil, validation("Conditions: an http-header condition needs HttpHeaderConfig.HttpHeaderName")
			}
			cfg = p.strings(m + ".HttpHeaderConfig.Values")
			if len(old) > 0 {
				return nil, validation("Conditions: an http-header condition takes its values in HttpHeaderConfig, not Values")
			}
		default:
			return nil, validation("Conditions: field '%s' is not supported by this emulator (host-header, path-pattern, http-header)", c.field)
		}
		if len(old) > 0 && len(cfg) > 0 {
			return nil, validation("Conditions: specify the values of a %s condition in Values or in its config, not both", c.field)
		}
		c.values = append(old, cfg...)
		if len(c.values) == 0 {
			return nil, validation("Conditions: a %s condition needs at least one value", c.field)
		}
		if c.field != "http-header" && slices.ContainsFunc(out, func(o condition) bool { return o.field == c.field }) {
			return nil, validation("Conditions: a rule can have only one %s condition", c.field)
		}
		for _, v := range c.values {
			if v == "" || len(v) > maxConditionValueLength {
				return nil, validation("Conditions: %s value '%s' must be 1 to %d characters", c.field, v, maxConditionValueLength)
			}
			if c.field == "path-pattern" && !strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "*") {
				return nil, validation("Conditions: path pattern '%s' must start with '/' or '*'", v)
			}
			wildcards += strings.Count(v, "*") + strings.Count(v, "?")
			c.match = append(c.match, wildcard(v, c.field != "path-pattern"))
		}
		values += len(c.values)
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, validation("A rule needs at least one condition")
	}
	if values > maxConditionValues {
		return nil, validation("A rule can have at most %d condition values, got %d", maxConditionValues, values)
	}
	if wildcards > maxConditionWildcards {
		return nil, validation("A rule can have at most %d wildcards in its conditions, got %d", maxConditionWildcards, wildcards)
	}
	return out, nil
}

type xValues struct {
	Values list[string]
}

type xHTTPHeaderConfig struct {
	HttpHeaderName string
	Values         list[string]
}

type xCondition struct {
	Field             string
	Values            list[string]
	HostHeaderConfig  *xValues
	PathPatternConfig *xValues
	HttpHeaderConfig  *xHTTPHeaderConfig
}

type xRule struct {
	RuleArn    string
	Priority   string
	Conditions list[xCondition]
	Actions    list[xAction]
	IsDefault  bool
}

type xRules struct {
	Rules      list[xRule]
	NextMarker string `xml:",omitempty"`
}

func (ru *rule) xml() xRule {
	var cs []xCondition
	for _, c := range ru.conds {
		x := xCondition{Field: c.field}
		switch c.field {
		case "host-header":
			x.Values = listOf(c.values)
			x.HostHeaderConfig = &xValues{Values: listOf(c.values)}
		case "path-pattern":
			x.Values = listOf(c.values)
			x.PathPatternConfig = &xValues{Values: listOf(c.values)}
		case "http-header":
			x.HttpHeaderConfig = &xHTTPHeaderConfig{HttpHeaderName: c.header, Values: listOf(c.values)}
		}
		cs = append(cs, x)
	}
	return xRule{RuleArn: ru.arn, Priority: strconv.Itoa(ru.priority), Conditions: listOf(cs), Actions: ru.act.xml()}
}

// defaultRuleArn derives the default rule's ARN from its listener's, as
// AWS does (listener-rule/ in place of listener/, plus a rule id).
func defaultRuleArn(listenerArn string) string {
	return strings.Replace(listenerArn, ":listener/", ":listener-rule/", 1) + "/0000000000000000"
}

func (l *listener) defaultRule() xRule {
	return xRule{RuleArn: defaultRuleArn(l.arn), Priority: "default", Actions: l.act.xml(), IsDefault: true}
}

// sortRules orders l's rules by priority, the order they are evaluated in.
func (l *listener) sortRules() {
	sort.Slice(l.rules, func(i, j int) bool { return l.rules[i].priority < l.rules[j].priority })
}

// ruleCount is the number of non-default rules on lb's listeners.
func (lb *loadBalancer) ruleCount() int {
	n := 0
	for _, l := range lb.listeners {
		n += len(l.rules)
	}
	return n
}

// uniqueGroups counts the distinct groups lb would forward to with rule
// skip left out and action extra added (both may be nil). It errs on the
// high side when extra replaces an action that is still counted.
func (lb *loadBalancer) uniqueGroups(skip *rule, extra *action) int {
	seen := map[string]bool{}
	add := func(a *action) {
		for _, f := range a.forward {
			seen[f.arn] = true
		}
	}
	for _, l := range lb.listeners {
		add(l.act)
		for _, r := range l.rules {
			if r != skip {
				add(r.act)
			}
		}
	}
	if extra != nil {
		add(extra)
	}
	return len(seen)
}

func readPriority(p params, k string) (int, *apiError) {
	v, ok, err := p.int32(k)
	if err != nil {
		return 0, err
	}
	if !ok || v < 1 || v > maxRulePriority {
		return 0, validation("%s must be between 1 and %d", k, maxRulePriority)
	}
	return int(v), nil
}

// albListener finds a listener that may carry rules. Callers hold s.mu.
func (s *Server) albListener(arn string) (*listener, *loadBalancer, *apiError) {
	l := s.listeners[arn]
	if l == nil {
		return nil, nil, newErr("ListenerNotFound", "Listener '%s' not found", arn)
	}
	lb := s.lbs[l.lbArn]
	if lb.typ != "application" {
		return nil, nil, newErr("InvalidConfigurationRequest", "Rules other than the default rule are only supported on application load balancer listeners")
	}
	return l, lb, nil
}

func (s *Server) createRule(p params) (any, *apiError) {
	prio, err := readPriority(p, "Priority")
	if err != nil {
		return nil, err
	}
	conds, err := readConditions(p)
	if err != nil {
		return nil, err
	}
	act, err := readActions(p, "Actions", "application")
	if err != nil {
		return nil, err
	}
	tags, err := readTags(p)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l, lb, err := s.albListener(p.get("ListenerArn"))
	if err != nil {
		return nil, err
	}
	if err := s.resolve(act, lb, l.protocol); err != nil {
		return nil, err
	}
	for _, r := range l.rules {
		if r.priority == prio {
			return nil, newErr("PriorityInUse", "Priority '%d' is currently in use", prio)
		}
	}
	if lb.ruleCount() >= maxRulesPerALB {
		return nil, newErr("TooManyRules", "You've reached the limit of %d rules per load balancer", maxRulesPerALB)
	}
	if lb.uniqueGroups(nil, act) > maxUniqueGroupsPerALB {
		return nil, newErr("TooManyUniqueTargetGroupsPerLoadBalancer", "You've reached the limit of %d target groups per load balancer", maxUniqueGroupsPerALB)
	}
	ru := &rule{
		arn: strings.Replace(l.arn, ":listener/", ":listener-rule/", 1) + "/" + s.nextID(),
		l:   l, priority: prio, conds: conds, act: act,
	}
	s.rules[ru.arn] = ru
	l.rules = append(l.rules, ru)
	l.sortRules()
	s.setTags(ru.arn, tags)
	s.relink(l)
	return xRules{Rules: listOf([]xRule{ru.xml()})}, nil
}

// modifyRule replaces the conditions and/or actions of a rule. On a
// default rule only the actions may change (they are the listener's
// default actions).
func (s *Server) modifyRule(p params) (any, *apiError) {
	arn := p.get("RuleArn")
	var conds []condition
	var act *action
	var err *apiError
	if len(p.members("Conditions")) > 0 {
		if conds, err = readConditions(p); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ru, l := s.findRule(arn)
	if l == nil {
		return nil, newErr("RuleNotFound", "One or more rules not found: '%s'", arn)
	}
	lb := s.lbs[l.lbArn]
	if len(p.members("Actions")) > 0 {
		if act, err = readActions(p, "Actions", lb.typ); err != nil {
			return nil, err
		}
		if err := s.resolve(act, lb, l.protocol); err != nil {
			return nil, err
		}
		if lb.uniqueGroups(ru, act) > maxUniqueGroupsPerALB {
			return nil, newErr("TooManyUniqueTargetGroupsPerLoadBalancer", "You've reached the limit of %d target groups per load balancer", maxUniqueGroupsPerALB)
		}
	}
	if ru == nil {
		if conds != nil {
			return nil, newErr("OperationNotPermitted", "The conditions of a default rule cannot be modified")
		}
		if act != nil {
			l.act = act
			s.relink(l)
		}
		return xRules{Rules: listOf([]xRule{l.defaultRule()})}, nil
	}
	if conds != nil {
		ru.conds = conds
	}
	if act != nil {
		ru.act = act
	}
	s.relink(l)
	return xRules{Rules: listOf([]xRule{ru.xml()})}, nil
}

// findRule finds a rule by ARN: a non-default rule and its listener, or
// (nil, listener) for a default rule. Callers hold s.mu.
func (s *Server) findRule(arn string) (*rule, *listener) {
	if ru := s.rules[arn]; ru != nil {
		return ru, ru.l
	}
	for _, l := range s.listeners {
		if defaultRuleArn(l.arn) == arn {
			return nil, l
		}
	}
	return nil, nil
}

func (s *Server) deleteRule(p params) (any, *apiError) {
	arn := p.get("RuleArn")
	s.mu.Lock()
	defer s.mu.Unlock()
	ru, l := s.findRule(arn)
	switch {
	case l == nil:
		return nil, newErr("RuleNotFound", "One or more rules not found: '%s'", arn)
	case ru == nil:
		return nil, newErr("OperationNotPermitted", "A default rule cannot be deleted")
	}
	s.dropRule(ru)
	s.relink(l)
	return nil, nil
}

// dropRule forgets ru; the caller relinks its listener. Callers hold s.mu.
func (s *Server) dropRule(ru *rule) {
	l := ru.l
	if i := slices.Index(l.rules, ru); i >= 0 {
		l.rules = slices.Delete(l.rules, i, i+1)
	}
	delete(s.rules, ru.arn)
	delete(s.tags, ru.arn)
}

// setRulePriorities is all-or-nothing: the new priorities must be unique
// per listener once every change is applied.
func (s *Server) setRulePriorities(p params) (any, *apiError) {
	ms := p.members("RulePriorities")
	if len(ms) == 0 {
		return nil, validation("At least one rule priority must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[*rule]int{}
	var order []*rule
	for _, m := range ms {
		arn := p.get(m + ".RuleArn")
		prio, err := readPriority(p, m+".Priority")
		if err != nil {
			return nil, err
		}
		ru, l := s.findRule(arn)
		switch {
		case l == nil:
			return nil, newErr("RuleNotFound", "One or more rules not found: '%s'", arn)
		case ru == nil:
			return nil, newErr("OperationNotPermitted", "The priority of a default rule cannot be changed")
		}
		if _, dup := want[ru]; !dup {
			order = append(order, ru)
		}
		want[ru] = prio
	}
	prioOf := func(r *rule) int {
		if v, ok := want[r]; ok {
			return v
		}
		return r.priority
	}
	for _, ru := range order {
		for _, other := range ru.l.rules {
			if other != ru && prioOf(other) == want[ru] {
				return nil, newErr("PriorityInUse", "Priority '%d' is currently in use", want[ru])
			}
		}
	}
	out := []xRule{}
	for _, ru := range order {
		ru.priority = want[ru]
		ru.l.sortRules()
		out = append(out, ru.xml())
	}
	return xRules{Rules: listOf(out)}, nil
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
		for _, ru := range l.rules {
			rules = append(rules, ru.xml())
		}
		rules = append(rules, l.defaultRule())
	case len(ruleArns) > 0:
		for _, a := range ruleArns {
			ru, l := s.findRule(a)
			switch {
			case l == nil:
				return nil, newErr("RuleNotFound", "One or more rules not found: '%s'", a)
			case ru == nil:
				rules = append(rules, l.defaultRule())
			default:
				rules = append(rules, ru.xml())
			}
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
