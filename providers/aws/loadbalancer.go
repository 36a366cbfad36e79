package aws

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/podlb/podlb/providers"
)

// LoadBalancerAnnotationKey is the Ingress (and Service) annotation whose
// value is a LoadBalancerSpec: the settings of the Application Load
// Balancer podlb provisions on AWS.
const LoadBalancerAnnotationKey = "podlb.io/aws-load-balancer"

// LoadBalancerSpec is the value of podlb.io/aws-load-balancer. Every field
// is optional for parsing: {} (or an empty value) gives an internet-facing
// ALB with the VPC's default security group. podlb does not discover
// subnets yet, so on AWS Subnets must be listed.
type LoadBalancerSpec struct {
	// Scheme is internet-facing (default) or internal.
	Scheme string `json:"scheme,omitempty"`
	// Subnets are subnet IDs, in at least two Availability Zones.
	Subnets []string `json:"subnets,omitempty"`
	// SecurityGroups are security group IDs.
	SecurityGroups []string `json:"securityGroups,omitempty"`
	// CertificateARNs are ACM certificates of the HTTPS listener; the
	// first is its default certificate.
	CertificateARNs []string `json:"certificateArns,omitempty"`
	// SSLPolicy is the HTTPS listener's security policy.
	SSLPolicy string `json:"sslPolicy,omitempty"`
	// RedirectToHTTPS makes the HTTP listener redirect to HTTPS.
	RedirectToHTTPS bool `json:"redirectToHTTPS,omitempty"`
	// IdleTimeoutSeconds is the ALB's idle_timeout.timeout_seconds.
	IdleTimeoutSeconds *int32            `json:"idleTimeoutSeconds,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
	// Group names the load balancer Ingresses share: Ingresses with the
	// same group get one ALB. Empty: the Ingress gets its own.
	Group string `json:"group,omitempty"`
	// Backends holds per-backend settings keyed by "service:port" (port
	// number or name, as the Ingress names it).
	Backends map[string]BackendSpec `json:"backends,omitempty"`
}

// BackendSpec holds the settings of the target group podlb creates for one
// backend of an ALB.
type BackendSpec struct {
	HealthCheck *HealthCheckSpec `json:"healthCheck,omitempty"`
	// DeregistrationDelaySeconds sets deregistration_delay.timeout_seconds.
	DeregistrationDelaySeconds *int32 `json:"deregistrationDelaySeconds,omitempty"`
}

// Schemes of an ALB.
var loadBalancerSchemes = []string{"internet-facing", "internal"}

var (
	subnetIDPattern        = regexp.MustCompile(`^subnet-([0-9a-f]{8}|[0-9a-f]{17})$`)
	securityGroupIDPattern = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)
	acmARNPattern          = regexp.MustCompile(`^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	sslPolicyPattern       = regexp.MustCompile(`^ELBSecurityPolicy-[A-Za-z0-9-]+$`)
	groupPattern           = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// Limits of the load-balancer fields, as ELBv2 accepts them (default
// quotas); validation and the guide's reference both read them.
var (
	idleTimeoutRange     = intRange{1, 4000}
	minSubnets           = 2
	maxSecurityGroups    = 5
	maxCertificates      = 25
	albHealthCheckProtos = []string{"HTTP", "HTTPS"}
)

// ParseLoadBalancerSpec validates the value of podlb.io/aws-load-balancer.
// Errors are classified Invalid, name the field (errors.As gives the
// *providers.Error) and read like
// `podlb.io/aws-load-balancer: scheme: must be internet-facing or internal, got "public"`.
func ParseLoadBalancerSpec(raw string) (*LoadBalancerSpec, error) {
	var s LoadBalancerSpec
	if strings.TrimSpace(raw) != "" {
		if err := providers.DecodeAnnotation([]byte(raw), &s); err != nil {
			return nil, annotationError(err)
		}
	}
	if err := s.validate(); err != nil {
		return nil, annotationError(err)
	}
	return &s, nil
}

func annotationError(err error) error {
	return fmt.Errorf("%s: %w", LoadBalancerAnnotationKey, err)
}

func (s *LoadBalancerSpec) validate() error {
	if s.Scheme != "" && s.Scheme != loadBalancerSchemes[0] && s.Scheme != loadBalancerSchemes[1] {
		return providers.Errorf(providers.Invalid, "scheme", "must be %s, got %q", strings.Join(loadBalancerSchemes, " or "), s.Scheme)
	}
	lists := []struct {
		field   string
		values  []string
		pattern *regexp.Regexp
		what    string
		max     int
	}{
		{"subnets", s.Subnets, subnetIDPattern, "a subnet ID (subnet- and 8 or 17 hex digits)", 0},
		{"securityGroups", s.SecurityGroups, securityGroupIDPattern, "a security group ID (sg- and 8 or 17 hex digits)", maxSecurityGroups},
		{"certificateArns", s.CertificateARNs, acmARNPattern, "an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/UUID)", maxCertificates},
	}
	for _, l := range lists {
		if err := providers.CheckList(l.field, l.values, l.pattern.MatchString, l.what, l.max); err != nil {
			return err
		}
	}
	if n := len(s.Subnets); n > 0 && n < minSubnets {
		return providers.Errorf(providers.Invalid, "subnets", "an Application Load Balancer needs subnets in at least %d Availability Zones; list at least %d", minSubnets, minSubnets)
	}
	if s.SSLPolicy != "" && !sslPolicyPattern.MatchString(s.SSLPolicy) {
		return providers.Errorf(providers.Invalid, "sslPolicy", "%q is not an ELB security policy name (ELBSecurityPolicy-...)", s.SSLPolicy)
	}
	if err := idleTimeoutRange.check("idleTimeoutSeconds", s.IdleTimeoutSeconds); err != nil {
		return err
	}
	if err := validateTags("tags", s.Tags); err != nil {
		return err
	}
	if s.Group != "" && !groupPattern.MatchString(s.Group) {
		return providers.Errorf(providers.Invalid, "group", "%q is not a group name (1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen)", s.Group)
	}
	for _, key := range sortedKeys(s.Backends) {
		field := fmt.Sprintf("backends[%q]", key)
		if _, _, err := providers.ParseServicePortKey(key); err != nil {
			return providers.Errorf(providers.Invalid, field, "%v", err)
		}
		if err := s.Backends[key].validate(field); err != nil {
			return err
		}
	}
	return nil
}

func (b BackendSpec) validate(field string) error {
	if err := deregistrationDelayRange.check(field+".deregistrationDelaySeconds", b.DeregistrationDelaySeconds); err != nil {
		return err
	}
	hc := b.HealthCheck
	if hc == nil {
		return nil
	}
	if err := hc.validate(field + ".healthCheck"); err != nil {
		return err
	}
	if hc.Protocol != "" && !slices.Contains(albHealthCheckProtos, hc.Protocol) {
		return providers.Errorf(providers.Invalid, field+".healthCheck.protocol", "%q does not apply to an ALB's target groups; use %s", hc.Protocol, strings.Join(albHealthCheckProtos, " or "))
	}
	return nil
}
