package elbv2sim

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy is a parsed IAM identity-based policy document. The emulator
// evaluates it as IAM's policy evaluation logic describes for a single
// identity-based policy
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):
// an explicit Deny wins, then an Allow, and anything else is denied by
// default.
type Policy struct {
	statements []statement
}

type statement struct {
	sid         string
	deny        bool
	actions     []string
	notAction   bool // actions came from NotAction
	resources   []string
	notResource bool // resources came from NotResource
	conditions  []policyCondition
}

// policyCondition is one key under one operator of a statement's Condition
// block. Several values of one key are ORed; keys and operators are ANDed.
type policyCondition struct {
	op       string // StringEquals, StringLike, Null, ...
	set      string // "", "ForAnyValue" or "ForAllValues"
	ifExists bool
	key      string // lower case: condition keys are case-insensitive
	values   []string
}

// conditionOps are the operators the emulator evaluates, from
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
var conditionOps = map[string]bool{
	"StringEquals": true, "StringNotEquals": true, "StringEqualsIgnoreCase": true,
	"StringNotEqualsIgnoreCase": true, "StringLike": true, "StringNotLike": true, "Null": true, "Bool": true,
}

// strList is a policy element that is either one string or a list.
type strList []string

func (l *strList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("must be a string or a list of strings")
	}
	*l = many
	return nil
}

type rawStatement struct {
	Sid         string
	Effect      string
	Action      strList
	NotAction   strList
	Resource    strList
	NotResource strList
	Condition   map[string]map[string]strList
}

// ParsePolicy reads an IAM policy document (Version 2012-10-17; Statement
// one object or a list). Errors name the element at fault.
func ParsePolicy(doc []byte) (*Policy, error) {
	var raw struct {
		Version   string
		Statement json.RawMessage
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if raw.Version != "2012-10-17" {
		return nil, fmt.Errorf("policy: Version %q: want 2012-10-17", raw.Version)
	}
	var stmts []rawStatement
	if err := json.Unmarshal(raw.Statement, &stmts); err != nil {
		var one rawStatement
		if err2 := json.Unmarshal(raw.Statement, &one); err2 != nil {
			return nil, fmt.Errorf("policy: Statement: %w", err)
		}
		stmts = []rawStatement{one}
	}
	p := &Policy{}
	for i, rs := range stmts {
		field := fmt.Sprintf("policy: Statement[%d]", i)
		if rs.Sid != "" {
			field = fmt.Sprintf("policy: Statement %q", rs.Sid)
		}
		st := statement{sid: rs.Sid}
		switch rs.Effect {
		case "Allow":
		case "Deny":
			st.deny = true
		default:
			return nil, fmt.Errorf("%s: Effect %q: want Allow or Deny", field, rs.Effect)
		}
		switch {
		case (len(rs.Action) == 0) == (len(rs.NotAction) == 0):
			return nil, fmt.Errorf("%s: exactly one of Action and NotAction must be given", field)
		case len(rs.Action) > 0:
			st.actions = rs.Action
		default:
			st.actions, st.notAction = rs.NotAction, true
		}
		switch {
		case (len(rs.Resource) == 0) == (len(rs.NotResource) == 0):
			return nil, fmt.Errorf("%s: exactly one of Resource and NotResource must be given", field)
		case len(rs.Resource) > 0:
			st.resources = rs.Resource
		default:
			st.resources, st.notResource = rs.NotResource, true
		}
		for opName, keys := range rs.Condition {
			c := policyCondition{op: opName}
			if set, rest, ok := strings.Cut(c.op, ":"); ok {
				if set != "ForAnyValue" && set != "ForAllValues" {
					return nil, fmt.Errorf("%s: Condition operator %q: unknown set qualifier %q", field, opName, set)
				}
				c.set, c.op = set, rest
			}
			if base, ok := strings.CutSuffix(c.op, "IfExists"); ok {
				c.op, c.ifExists = base, true
			}
			if !conditionOps[c.op] {
				return nil, fmt.Errorf("%s: Condition operator %q is not supported", field, opName)
			}
			for k, vals := range keys {
				cc := c
				cc.key, cc.values = strings.ToLower(k), vals
				st.conditions = append(st.conditions, cc)
			}
		}
		p.statements = append(p.statements, st)
	}
	return p, nil
}

// MustParsePolicy is ParsePolicy for documents known to be valid; it
// panics on an error.
func MustParsePolicy(doc []byte) *Policy {
	p, err := ParsePolicy(doc)
	if err != nil {
		panic(err)
	}
	return p
}

// Statements returns the Sid of each statement, in order ("" for one
// without).
func (p *Policy) Statements() []string {
	out := make([]string, len(p.statements))
	for i, st := range p.statements {
		out[i] = st.sid
	}
	return out
}

// Without returns a copy of the policy lacking the statement with the
// given Sid.
func (p *Policy) Without(sid string) *Policy {
	out := &Policy{}
	for _, st := range p.statements {
		if st.sid != sid {
			out.statements = append(out.statements, st)
		}
	}
	return out
}

// request is what one authorisation decision is about: an action
// (service:Name) on one resource ARN ("*" for actions without
// resource-level permissions), with the request context's condition keys
// (lower case) and their values.
type request struct {
	action   string
	resource string
	context  map[string][]string
}

type decision int

const (
	implicitDeny decision = iota
	allowed
	explicitDeny
)

func (p *Policy) decide(r request) decision {
	d := implicitDeny
	for _, st := range p.statements {
		if !st.applies(r) {
			continue
		}
		if st.deny {
			return explicitDeny
		}
		d = allowed
	}
	return d
}

func (st statement) applies(r request) bool {
	if anyMatch(st.actions, r.action, true) == st.notAction {
		return false
	}
	if anyMatch(st.resources, r.resource, false) == st.notResource {
		return false
	}
	for _, c := range st.conditions {
		if !c.holds(r.context) {
			return false
		}
	}
	return true
}

func anyMatch(patterns []string, s string, foldCase bool) bool {
	for _, p := range patterns {
		if wildcard(p, foldCase).MatchString(s) {
			return true
		}
	}
	return false
}

// holds evaluates the condition against the request context. A missing
// key fails positive operators and satisfies negated ones (as a Deny with
// StringNotEquals on an absent key applies), ...IfExists makes a missing
// key pass, ForAllValues passes on a missing key and ForAnyValue fails,
// as the condition operators and multivalued keys pages describe
// (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html).
func (c policyCondition) holds(ctx map[string][]string) bool {
	vals, present := ctx[c.key]
	if c.op == "Null" {
		want := len(c.values) > 0 && strings.EqualFold(c.values[0], "true")
		return want != present
	}
	if !present {
		switch {
		case c.ifExists, c.set == "ForAllValues":
			return true
		case c.set == "ForAnyValue":
			return false
		}
		return c.negated()
	}
	if c.set == "ForAllValues" {
		for _, v := range vals {
			if !c.matchOne(v) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if c.matchOne(v) {
			return true
		}
	}
	return false
}

func (c policyCondition) negated() bool { return strings.Contains(c.op, "Not") }

// matchOne reports whether one context value satisfies the operator
// against the condition's values (any of which may match).
func (c policyCondition) matchOne(v string) bool {
	hit := false
	for _, want := range c.values {
		switch c.op {
		case "StringEquals", "StringNotEquals":
			hit = v == want
		case "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "Bool":
			hit = strings.EqualFold(v, want)
		case "StringLike", "StringNotLike":
			hit = wildcard(want, false).MatchString(v)
		}
		if hit {
			break
		}
	}
	return hit != c.negated()
}
