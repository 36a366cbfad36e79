package elbv2sim

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	elbVersion = "2015-12-01"
	elbXMLNS   = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
	ec2Version = "2016-11-15"
	ec2XMLNS   = "http://ec2.amazonaws.com/doc/2016-11-15/"
)

// apiError is an error answer: its code is what the SDK maps to a typed
// error, its status what the retryer looks at.
type apiError struct {
	code   string
	msg    string
	status int
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func newErr(code, format string, args ...any) *apiError {
	st := http.StatusBadRequest
	switch code {
	case "HealthUnavailable", "InternalFailure", "InternalError":
		st = http.StatusInternalServerError
	case "ServiceUnavailable", "Unavailable":
		st = http.StatusServiceUnavailable
	}
	return &apiError{code: code, msg: fmt.Sprintf(format, args...), status: st}
}

func validation(format string, args ...any) *apiError {
	return newErr("ValidationError", format, args...)
}

// errThrottled is the throttling answer of op's service. ELBv2 answers
// "Throttling: Rate exceeded" with HTTP 400 (its common errors page names
// ThrottlingException, but the service sends Throttling, as in
// kubernetes-sigs/aws-load-balancer-controller#1871); EC2 answers
// RequestLimitExceeded, as listed in
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
// The SDK's retryer treats both as throttling.
func errThrottled(op string) *apiError {
	if ec2Ops[op] != nil {
		return newErr("RequestLimitExceeded", "Request limit exceeded.")
	}
	return newErr("Throttling", "Rate exceeded")
}

// params reads an AWS Query request: scalars by name, lists as
// Name.member.N (ELBv2) or Name.N (EC2).
type params struct{ v url.Values }

func (p params) get(k string) string { return p.v.Get(k) }

func (p params) has(k string) bool { _, ok := p.v[k]; return ok }

// indices returns the sorted distinct N of keys "prefix.N" or "prefix.N.*".
func (p params) indices(prefix string) []int {
	prefix += "."
	seen := map[int]bool{}
	var out []int
	for k := range p.v {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := k[len(prefix):]
		if i := strings.IndexByte(rest, '.'); i >= 0 {
			rest = rest[:i]
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// members returns the key prefixes of the elements of list name, in order
// ("Name.member.1", ...).
// attributes reads a Modify*Attributes request's Attributes, every one
// checked (known to attrs, what names the resource in the error, and
// check's verdict on its value) before any is applied, so a request with
// one bad attribute changes nothing.
func (p params) attributes(attrs map[string]string, what string, check func(k, v string) *apiError) (map[string]string, *apiError) {
	members := p.members("Attributes")
	if len(members) == 0 {
		return nil, validation("At least one attribute must be specified")
	}
	set := map[string]string{}
	for _, m := range members {
		k, v := p.get(m+".Key"), p.get(m+".Value")
		if _, known := attrs[k]; !known {
			return nil, newErr("InvalidConfigurationRequest", "The attribute key '%s' is not recognized for this %s", k, what)
		}
		if err := check(k, v); err != nil {
			return nil, err
		}
		set[k] = v
	}
	return set, nil
}

func (p params) members(name string) []string {
	var out []string
	for _, n := range p.indices(name + ".member") {
		out = append(out, name+".member."+strconv.Itoa(n))
	}
	return out
}

// strings returns the values of a list of scalars.
func (p params) strings(name string) []string {
	var out []string
	for _, m := range p.members(name) {
		out = append(out, p.get(m))
	}
	return out
}

// int32 parses an optional integer; ok is false when absent.
func (p params) int32(k string) (v int32, ok bool, err *apiError) {
	s := p.get(k)
	if !p.has(k) || s == "" {
		return 0, false, nil
	}
	n, e := strconv.ParseInt(s, 10, 32)
	if e != nil {
		return 0, false, validation("Value '%s' at '%s' is not a valid integer", s, k)
	}
	return int32(n), true, nil
}

func (p params) boolean(k string) (v bool, ok bool, err *apiError) {
	s := p.get(k)
	if !p.has(k) || s == "" {
		return false, false, nil
	}
	b, e := strconv.ParseBool(s)
	if e != nil {
		return false, false, validation("Value '%s' at '%s' is not a valid boolean", s, k)
	}
	return b, true, nil
}

// page applies Marker/PageSize to n items: it returns the range to answer
// and the next marker ("" on the last page). Markers are opaque offsets.
func (p params) page(n int) (from, to int, next string, err *apiError) {
	size := int32(400)
	if v, ok, e := p.int32("PageSize"); e != nil {
		return 0, 0, "", e
	} else if ok {
		if v < 1 || v > 400 {
			return 0, 0, "", validation("PageSize must be between 1 and 400")
		}
		size = v
	}
	if m := p.get("Marker"); m != "" {
		raw, e := base64.RawURLEncoding.DecodeString(m)
		off, e2 := strconv.Atoi(strings.TrimPrefix(string(raw), "o"))
		if e != nil || e2 != nil || off < 0 {
			return 0, 0, "", validation("Invalid marker '%s'", m)
		}
		from = off
	}
	from = min(from, n)
	to = min(from+int(size), n)
	if to < n {
		next = base64.RawURLEncoding.EncodeToString([]byte("o" + strconv.Itoa(to)))
	}
	return from, to, next, nil
}

func requestID() string {
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rand.Uint32(), rand.Uint32()&0xffff,
		rand.Uint32()&0xffff, rand.Uint32()&0xffff, rand.Uint64()&0xffffffffffff)
}

type opFunc func(s *Server, p params) (any, *apiError)

var elbOps = map[string]opFunc{
	"CreateTargetGroup":              (*Server).createTargetGroup,
	"DeleteTargetGroup":              (*Server).deleteTargetGroup,
	"DescribeTargetGroups":           (*Server).describeTargetGroups,
	"ModifyTargetGroup":              (*Server).modifyTargetGroup,
	"DescribeTargetGroupAttributes":  (*Server).describeTargetGroupAttributes,
	"ModifyTargetGroupAttributes":    (*Server).modifyTargetGroupAttributes,
	"RegisterTargets":                (*Server).registerTargets,
	"DeregisterTargets":              (*Server).deregisterTargets,
	"DescribeTargetHealth":           (*Server).describeTargetHealth,
	"AddTags":                        (*Server).addTags,
	"RemoveTags":                     (*Server).removeTags,
	"DescribeTags":                   (*Server).describeTags,
	"CreateLoadBalancer":             (*Server).createLoadBalancer,
	"DescribeLoadBalancers":          (*Server).describeLoadBalancers,
	"DeleteLoadBalancer":             (*Server).deleteLoadBalancer,
	"CreateListener":                 (*Server).createListener,
	"DescribeListeners":              (*Server).describeListeners,
	"DeleteListener":                 (*Server).deleteListener,
	"DescribeRules":                  (*Server).describeRules,
	"CreateRule":                     (*Server).createRule,
	"ModifyRule":                     (*Server).modifyRule,
	"DeleteRule":                     (*Server).deleteRule,
	"SetRulePriorities":              (*Server).setRulePriorities,
	"ModifyListener":                 (*Server).modifyListener,
	"AddListenerCertificates":        (*Server).addListenerCertificates,
	"RemoveListenerCertificates":     (*Server).removeListenerCertificates,
	"DescribeListenerCertificates":   (*Server).describeListenerCertificates,
	"DescribeLoadBalancerAttributes": (*Server).describeLoadBalancerAttributes,
	"ModifyLoadBalancerAttributes":   (*Server).modifyLoadBalancerAttributes,
}

var ec2Ops = map[string]opFunc{
	"DescribeVpcs":           (*Server).describeVpcs,
	"DescribeSubnets":        (*Server).describeSubnets,
	"DescribeSecurityGroups": (*Server).describeSecurityGroups,
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeELBError(w, validation("malformed request: %v", err), requestID())
		return
	}
	p := params{r.Form}
	action, version := p.get("Action"), p.get("Version")
	isEC2 := version == ec2Version || (version != elbVersion && ec2Ops[action] != nil)
	reqID := requestID()
	var fn opFunc
	if isEC2 {
		fn = ec2Ops[action]
	} else {
		fn = elbOps[action]
	}
	if fn == nil {
		s.stats.count(action, func(st *OpStats) { st.Calls++; st.Errors++; st.Unimplemented++ })
		e := newErr("InvalidAction", "Could not find operation %s for version %s", action, version)
		if isEC2 {
			writeEC2Error(w, e, reqID)
		} else {
			writeELBError(w, e, reqID)
		}
		return
	}
	s.stats.count(action, func(st *OpStats) { st.Calls++ })
	res, aerr := func() (any, *apiError) {
		if e := s.admit(r, action); e != nil {
			return nil, e
		}
		if e := s.authorize(r, action, isEC2, p); e != nil {
			s.stats.count(action, func(st *OpStats) { st.Denied++ })
			return nil, e
		}
		return fn(s, p)
	}()
	if aerr != nil {
		s.stats.count(action, func(st *OpStats) { st.Errors++ })
		s.logf("%s: %s", action, aerr)
		if isEC2 {
			writeEC2Error(w, aerr, reqID)
		} else {
			writeELBError(w, aerr, reqID)
		}
		return
	}
	call := Call{Op: action, TargetGroupArn: p.get("TargetGroupArn"), AccessKeyID: accessKeyID(r), At: time.Now()}
	if action == "RegisterTargets" || action == "DeregisterTargets" {
		for _, m := range p.members("Targets") {
			call.Targets = append(call.Targets, p.get(m+".Id"))
		}
	}
	s.journal.add(call)
	if action == "RegisterTargets" || action == "DeregisterTargets" {
		n := len(p.members("Targets"))
		s.stats.count(action, func(st *OpStats) {
			st.Targets += int64(n)
			st.MaxTargets = max(st.MaxTargets, n)
		})
	}
	if isEC2 {
		writeEC2Result(w, action, res, reqID)
	} else {
		writeELBResult(w, action, res, reqID)
	}
}

// writeELBResult writes <XResponse><XResult>res</XResult><ResponseMetadata/>.
// The Result element is always present: the SDK fails without it.
func writeELBResult(w http.ResponseWriter, action string, res any, reqID string) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	fmt.Fprintf(&buf, `<%sResponse xmlns="%s">`, action, elbXMLNS)
	if res == nil {
		res = struct{}{}
	}
	enc := xml.NewEncoder(&buf)
	if err := enc.EncodeElement(res, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
		writeELBError(w, newErr("InternalFailure", "encoding: %v", err), reqID)
		return
	}
	fmt.Fprintf(&buf, `<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, reqID, action)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", reqID)
	_, _ = w.Write(buf.Bytes())
}

func writeELBError(w http.ResponseWriter, e *apiError, reqID string) {
	typ := "Sender"
	if e.status >= 500 {
		typ = "Receiver"
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	fmt.Fprintf(&buf, `<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		elbXMLNS, typ, escape(e.code), escape(e.msg), reqID)
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("X-Amzn-Requestid", reqID)
	w.WriteHeader(e.status)
	_, _ = w.Write(buf.Bytes())
}

// writeEC2Result writes EC2's shape: no Result wrapper, a requestId element.
func writeEC2Result(w http.ResponseWriter, action string, res any, reqID string) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	fmt.Fprintf(&buf, `<%sResponse xmlns="%s"><requestId>%s</requestId>`, action, ec2XMLNS, reqID)
	enc := xml.NewEncoder(&buf)
	if err := enc.Encode(res); err != nil {
		writeEC2Error(w, newErr("InternalError", "encoding: %v", err), reqID)
		return
	}
	fmt.Fprintf(&buf, `</%sResponse>`, action)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write(buf.Bytes())
}

func writeEC2Error(w http.ResponseWriter, e *apiError, reqID string) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	fmt.Fprintf(&buf, `<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		escape(e.code), escape(e.msg), reqID)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write(buf.Bytes())
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// list is a Query-protocol list: <Name><member>..</member></Name>.
type list[T any] struct {
	Member []T `xml:"member"`
}

func listOf[T any](v []T) list[T] { return list[T]{Member: v} }

func itoa(n int) string { return strconv.Itoa(n) }
