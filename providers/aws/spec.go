// Package aws binds Service ports to AWS ELBv2 target groups of target
// type ip, through aws-sdk-go-v2.
package aws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/podlb/podlb/providers"
)

// AnnotationKey is the Service annotation this provider reads.
const AnnotationKey = "podlb.io/aws-target-groups"

// Spec is one port's value of podlb.io/aws-target-groups: exactly one of
// ARN, Name (an existing group podlb only registers into) or Create (a
// group podlb creates, owns and deletes). Balancer is never written by
// users: EnsureHTTP returns it for the backends of the load balancers
// podlb provisions.
type Spec struct {
	ARN      string         `json:"arn,omitempty"`
	Name     string         `json:"name,omitempty"`
	Create   *CreateSpec    `json:"create,omitempty"`
	Balancer *BalancerGroup `json:"balancer,omitempty"`
}

// BalancerGroup is a target group podlb created for one backend of a load
// balancer it provisions. Every target in it is podlb's; the balancer, not
// the binding, creates and deletes it.
type BalancerGroup struct {
	ARN string `json:"arn"`
	// Balancer is the providers.BalancerKey, as its String gives it, that
	// the group's tags must name.
	Balancer string `json:"balancer"`
}

// CreateSpec describes a target group podlb creates.
type CreateSpec struct {
	// Protocol of the group: TCP (default for TCP ports), UDP (default for
	// UDP ports), TCP_UDP, TLS, HTTP or HTTPS.
	Protocol    string           `json:"protocol,omitempty"`
	HealthCheck *HealthCheckSpec `json:"healthCheck,omitempty"`
	// DeregistrationDelaySeconds sets deregistration_delay.timeout_seconds
	// (0-3600; AWS's default is 300).
	DeregistrationDelaySeconds *int32            `json:"deregistrationDelaySeconds,omitempty"`
	Tags                       map[string]string `json:"tags,omitempty"`
}

// HealthCheckSpec holds the health check settings of a created group;
// unset fields keep AWS's defaults for the protocol.
type HealthCheckSpec struct {
	Protocol           string `json:"protocol,omitempty"`
	Port               string `json:"port,omitempty"`
	Path               string `json:"path,omitempty"`
	IntervalSeconds    *int32 `json:"intervalSeconds,omitempty"`
	TimeoutSeconds     *int32 `json:"timeoutSeconds,omitempty"`
	HealthyThreshold   *int32 `json:"healthyThreshold,omitempty"`
	UnhealthyThreshold *int32 `json:"unhealthyThreshold,omitempty"`
	// Matcher is the HTTP codes that mean healthy, e.g. "200" or "200-399".
	Matcher string `json:"matcher,omitempty"`
}

// Summary implements providers.Spec.
func (s *Spec) Summary() string {
	b, _ := json.Marshal(s)
	return string(b)
}

var (
	arnPattern     = regexp.MustCompile(`^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}$`)
	tgNamePattern  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,30}[A-Za-z0-9])?$`)
	matcherPattern = regexp.MustCompile(`^\d{3}(-\d{3})?(,\d{3}(-\d{3})?)*$`)
	protocols      = []string{"TCP", "UDP", "TCP_UDP", "TLS", "HTTP", "HTTPS"}
	hcProtocols    = []string{"TCP", "HTTP", "HTTPS"}
)

// Limits of the create fields, as ELBv2 accepts them; validation and the
// guide's reference both read them.
var (
	deregistrationDelayRange = intRange{0, 3600}
	intervalRange            = intRange{5, 300}
	timeoutRange             = intRange{2, 120}
	thresholdRange           = intRange{2, 10}
	// maxTags leaves room for podlb's own tags within ELBv2's 50.
	maxTags             = 40
	reservedTagPrefixes = []string{"podlb.io/", "aws:"}
)

// intRange is an inclusive range of allowed values.
type intRange struct{ min, max int32 }

func (r intRange) contains(v int32) bool { return v >= r.min && v <= r.max }

// ParseSpec validates one port's annotation value.
func ParseSpec(raw json.RawMessage) (*Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, providers.Errorf(providers.Invalid, "", `want {"arn": ...}, {"name": ...} or {"create": {...}}: %v`, err)
	}
	if s.Balancer != nil {
		return nil, providers.Errorf(providers.Invalid, "balancer", `is set by podlb for the backends of the load balancers it provisions; use "arn", "name" or "create"`)
	}
	set := 0
	for _, v := range []bool{s.ARN != "", s.Name != "", s.Create != nil} {
		if v {
			set++
		}
	}
	if set != 1 {
		return nil, providers.Errorf(providers.Invalid, "", `set exactly one of "arn", "name" or "create"`)
	}
	switch {
	case s.ARN != "":
		if !arnPattern.MatchString(s.ARN) {
			return nil, providers.Errorf(providers.Invalid, "arn", "%q is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)", s.ARN)
		}
	case s.Name != "":
		if !tgNamePattern.MatchString(s.Name) {
			return nil, providers.Errorf(providers.Invalid, "name", "%q is not a target group name (1-32 letters, digits and hyphens, not starting or ending with a hyphen)", s.Name)
		}
	default:
		if err := s.Create.validate(); err != nil {
			return nil, err
		}
	}
	return &s, nil
}

func (c *CreateSpec) validate() error {
	if c.Protocol != "" && !slices.Contains(protocols, c.Protocol) {
		return providers.Errorf(providers.Invalid, "create.protocol", "%q is not one of %s", c.Protocol, strings.Join(protocols, ", "))
	}
	if err := deregistrationDelayRange.check("create.deregistrationDelaySeconds", c.DeregistrationDelaySeconds); err != nil {
		return err
	}
	if err := validateTags("create.tags", c.Tags); err != nil {
		return err
	}
	if c.HealthCheck == nil {
		return nil
	}
	return c.HealthCheck.validate("create.healthCheck")
}

// check returns an error naming field when v is set and out of range.
func (r intRange) check(field string, v *int32) error {
	if v != nil && !r.contains(*v) {
		return providers.Errorf(providers.Invalid, field, "%d is outside %d-%d", *v, r.min, r.max)
	}
	return nil
}

// validateTags checks user tags against ELBv2's room and podlb's own keys.
func validateTags(field string, tags map[string]string) error {
	if len(tags) > maxTags {
		return providers.Errorf(providers.Invalid, field, "%d tags; at most %d fit beside podlb's own", len(tags), maxTags)
	}
	for _, k := range sortedKeys(tags) {
		for _, prefix := range reservedTagPrefixes {
			if strings.HasPrefix(k, prefix) {
				return providers.Errorf(providers.Invalid, field, "tag key %q is reserved", k)
			}
		}
	}
	return nil
}

// validate checks a health check; field is its path, e.g.
// create.healthCheck.
func (hc *HealthCheckSpec) validate(field string) error {
	if hc.Protocol != "" && !slices.Contains(hcProtocols, hc.Protocol) {
		return providers.Errorf(providers.Invalid, field+".protocol", "%q is not one of %s", hc.Protocol, strings.Join(hcProtocols, ", "))
	}
	if hc.Port != "" && hc.Port != "traffic-port" {
		var n int
		if _, err := fmt.Sscanf(hc.Port, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != hc.Port {
			return providers.Errorf(providers.Invalid, field+".port", `%q is neither "traffic-port" nor a port number`, hc.Port)
		}
	}
	if hc.Path != "" && !strings.HasPrefix(hc.Path, "/") {
		return providers.Errorf(providers.Invalid, field+".path", "%q must start with /", hc.Path)
	}
	ranges := []struct {
		field string
		v     *int32
		intRange
	}{
		{"intervalSeconds", hc.IntervalSeconds, intervalRange},
		{"timeoutSeconds", hc.TimeoutSeconds, timeoutRange},
		{"healthyThreshold", hc.HealthyThreshold, thresholdRange},
		{"unhealthyThreshold", hc.UnhealthyThreshold, thresholdRange},
	}
	for _, r := range ranges {
		if err := r.check(field+"."+r.field, r.v); err != nil {
			return err
		}
	}
	if hc.IntervalSeconds != nil && hc.TimeoutSeconds != nil && *hc.TimeoutSeconds >= *hc.IntervalSeconds {
		return providers.Errorf(providers.Invalid, field+".timeoutSeconds", "%d must be less than intervalSeconds (%d)", *hc.TimeoutSeconds, *hc.IntervalSeconds)
	}
	if hc.Matcher != "" && !matcherPattern.MatchString(hc.Matcher) {
		return providers.Errorf(providers.Invalid, field+".matcher", `%q is not an HTTP code list like "200" or "200-399"`, hc.Matcher)
	}
	return nil
}

// OwnedName is the deterministic name of the group podlb creates for a
// binding: readable prefixes of namespace and Service, then a hash of
// cluster, namespace, Service and port so names never collide, within
// AWS's 32 characters.
func OwnedName(cluster string, key providers.BindingKey) string {
	return "pl-" + namePart(key.Namespace, 7) + "-" + namePart(key.Service, 8) + "-" + providers.BindingHash(cluster, key, 10)
}

// namePart is providers.NamePart, never empty so the name keeps its shape.
func namePart(s string, n int) string {
	if out := providers.NamePart(s, n); out != "" {
		return out
	}
	return "x"
}

// protocolServes reports whether a target group protocol can carry a
// Service port protocol.
func protocolServes(groupProtocol, servicePortProtocol string) bool {
	switch servicePortProtocol {
	case "UDP":
		return groupProtocol == "UDP" || groupProtocol == "TCP_UDP"
	case "TCP", "":
		return slices.Contains([]string{"TCP", "TCP_UDP", "TLS", "HTTP", "HTTPS"}, groupProtocol)
	}
	return false
}

// Tag keys podlb writes on groups it creates; together they are the
// ownership record checked before any modification or deletion.
const (
	TagCluster   = "podlb.io/cluster"
	TagNamespace = "podlb.io/namespace"
	TagService   = "podlb.io/service"
	TagPort      = "podlb.io/port"
)

func ownerTags(cluster string, key providers.BindingKey) map[string]string {
	return map[string]string{
		TagCluster:   cluster,
		TagNamespace: key.Namespace,
		TagService:   key.Service,
		TagPort:      fmt.Sprint(key.Port),
	}
}

// ownedBy reports whether tags mark a group as created by podlb for this
// exact binding.
func ownedBy(tags map[string]string, cluster string, key providers.BindingKey) bool {
	for k, v := range ownerTags(cluster, key) {
		if tags[k] != v {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
