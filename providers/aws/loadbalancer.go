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
// ALB (for an Ingress) or Network Load Balancer (for a Service of type
// LoadBalancer) with the VPC's default security group, in the subnets
// tagged for load balancers.
type LoadBalancerSpec struct {
	// Scheme is internet-facing (default) or internal.
	Scheme string `json:"scheme,omitempty"`
	// Subnets are subnet IDs, in at least two Availability Zones.
	Subnets []string `json:"subnets,omitempty"`
	// SecurityGroups are security group IDs.
	SecurityGroups []string `json:"securityGroups,omitempty"`
	// CertificateARNs are ACM certificates of the HTTPS listener (of the
	// TLS listeners, for a Service); the first is the default certificate.
	CertificateARNs []string `json:"certificateArns,omitempty"`
	// TLSPorts (Services only) are the TCP ports whose listeners terminate
	// TLS with CertificateARNs and forward plain TCP to the pods.
	TLSPorts []int32 `json:"tlsPorts,omitempty"`
	// SSLPolicy is the HTTPS (or TLS) listeners' security policy.
	SSLPolicy string `json:"sslPolicy,omitempty"`
	// RedirectToHTTPS (Ingresses only) makes the HTTP listener redirect to
	// HTTPS.
	RedirectToHTTPS bool `json:"redirectToHTTPS,omitempty"`
	// IdleTimeoutSeconds (Ingresses only) is the ALB's
	// idle_timeout.timeout_seconds.
	IdleTimeoutSeconds *int32 `json:"idleTimeoutSeconds,omitempty"`
	// ElasticIPs (internet-facing Services only) are Elastic IP
	// allocation IDs, one per subnet in the order of Subnets, which then
	// must be listed: the Network Load Balancer's addresses. They are fixed
	// when it is created.
	ElasticIPs []string `json:"elasticIps,omitempty"`
	// CrossZone (Services only) sets the Network Load Balancer's
	// load_balancing.cross_zone.enabled; unset keeps AWS's default (off).
	CrossZone *bool `json:"crossZone,omitempty"`
	// ProxyProtocol (Services only) turns on proxy_protocol_v2.enabled on
	// every listener's target group: the pods get the client's address in
	// a PROXY v2 header.
	ProxyProtocol bool              `json:"proxyProtocol,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	// Group names the load balancer Ingresses (or Services) share: those
	// with the same group get one load balancer. Empty: each gets its own.
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
	allocationIDPattern    = regexp.MustCompile(`^eipalloc-([0-9a-f]{8}|[0-9a-f]{17})$`)
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
	// NLB target groups check by TCP or HTTP(S); a path and a matcher
	// only mean something to the latter.
	nlbHealthCheckProtos = []string{"TCP", "HTTP", "HTTPS"}
)

// ParseLoadBalancerSpec validates the value of podlb.io/aws-load-balancer.
// Errors are classified Invalid, name the field (errors.As gives the
// *providers.Error) and read like
// `podlb.io/aws-load-balancer: scheme: must be internet-facing or internal, got "public"`.
func ParseLoadBalancerSpec(raw string) (*LoadBalancerSpec, error) {
	return providers.ParseAnnotation(LoadBalancerAnnotationKey, raw, (*LoadBalancerSpec).validate, (*LoadBalancerSpec).validateALB)
}

// ParseNetworkLoadBalancerSpec validates the value of
// podlb.io/aws-load-balancer on a Service of type LoadBalancer, refusing
// the fields only an ALB has, by name.
func ParseNetworkLoadBalancerSpec(raw string) (*LoadBalancerSpec, error) {
	return providers.ParseAnnotation(LoadBalancerAnnotationKey, raw, (*LoadBalancerSpec).validate, (*LoadBalancerSpec).validateNLB)
}

// validateALB checks what only applies to an Ingress's ALB.
func (s *LoadBalancerSpec) validateALB() error {
	switch {
	case len(s.ElasticIPs) > 0:
		return providers.Errorf(providers.Invalid, "elasticIps", "applies to Services of type LoadBalancer only: an Application Load Balancer's addresses are AWS's")
	case s.CrossZone != nil:
		return providers.Errorf(providers.Invalid, "crossZone", "applies to Services of type LoadBalancer only: an Application Load Balancer always balances across zones")
	case s.ProxyProtocol:
		return providers.Errorf(providers.Invalid, "proxyProtocol", "applies to Services of type LoadBalancer only: an Application Load Balancer passes the client's address in X-Forwarded-For")
	}
	if len(s.TLSPorts) > 0 {
		return providers.Errorf(providers.Invalid, "tlsPorts", "applies to Services of type LoadBalancer only; an Ingress's ALB serves HTTPS on 443 when certificateArns are given")
	}
	if n := len(s.Subnets); n > 0 && n < minSubnets {
		return providers.Errorf(providers.Invalid, "subnets", "an Application Load Balancer needs subnets in at least %d Availability Zones; list at least %d", minSubnets, minSubnets)
	}
	for _, key := range sortedKeys(s.Backends) {
		if hc := s.Backends[key].HealthCheck; hc != nil && hc.Protocol != "" && !slices.Contains(albHealthCheckProtos, hc.Protocol) {
			return providers.Errorf(providers.Invalid, fmt.Sprintf("backends[%q].healthCheck.protocol", key), "%q does not apply to an ALB's target groups; use %s", hc.Protocol, strings.Join(albHealthCheckProtos, " or "))
		}
	}
	return nil
}

// validateNLB checks what only applies to a Service's Network Load
// Balancer, refusing the ALB's fields.
func (s *LoadBalancerSpec) validateNLB() error {
	switch {
	case len(s.ElasticIPs) > 0 && s.Scheme == "internal":
		return providers.Errorf(providers.Invalid, "elasticIps", "an internal load balancer has no public addresses; leave elasticIps out or make it internet-facing")
	case len(s.ElasticIPs) > 0 && len(s.ElasticIPs) != len(s.Subnets):
		return providers.Errorf(providers.Invalid, "elasticIps", "%d allocation IDs for %d subnets: list the subnets, and one allocation ID per subnet in the same order", len(s.ElasticIPs), len(s.Subnets))
	case s.RedirectToHTTPS:
		return providers.Errorf(providers.Invalid, "redirectToHTTPS", "applies to Ingresses only: a Network Load Balancer forwards TCP and UDP and sees no HTTP")
	case s.IdleTimeoutSeconds != nil:
		return providers.Errorf(providers.Invalid, "idleTimeoutSeconds", "applies to Ingresses only: a Network Load Balancer has no idle timeout setting")
	case len(s.CertificateARNs) > 0 && len(s.TLSPorts) == 0:
		return providers.Errorf(providers.Invalid, "certificateArns", "a Service's load balancer terminates TLS only on the ports listed in tlsPorts; list them")
	case len(s.TLSPorts) > 0 && len(s.CertificateARNs) == 0:
		return providers.Errorf(providers.Invalid, "tlsPorts", "TLS listeners need certificates: list them in certificateArns")
	case s.SSLPolicy != "" && len(s.TLSPorts) == 0:
		return providers.Errorf(providers.Invalid, "sslPolicy", "applies to TLS listeners only: list their ports in tlsPorts")
	}
	if err := providers.CheckPorts("tlsPorts", s.TLSPorts); err != nil {
		return err
	}
	for _, key := range sortedKeys(s.Backends) {
		hc := s.Backends[key].HealthCheck
		if hc == nil {
			continue
		}
		field := fmt.Sprintf("backends[%q].healthCheck", key)
		if hc.Protocol != "" && !slices.Contains(nlbHealthCheckProtos, hc.Protocol) {
			return providers.Errorf(providers.Invalid, field+".protocol", "%q does not apply to a Network Load Balancer's target groups; use %s", hc.Protocol, strings.Join(nlbHealthCheckProtos, ", "))
		}
		httpCheck := hc.Protocol == "HTTP" || hc.Protocol == "HTTPS"
		if hc.Path != "" && !httpCheck {
			return providers.Errorf(providers.Invalid, field+".path", "needs protocol HTTP or HTTPS: a Network Load Balancer checks by TCP otherwise")
		}
		if hc.Matcher != "" && !httpCheck {
			return providers.Errorf(providers.Invalid, field+".matcher", "needs protocol HTTP or HTTPS: a Network Load Balancer checks by TCP otherwise")
		}
	}
	return nil
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
		{"elasticIps", s.ElasticIPs, allocationIDPattern, "an Elastic IP allocation ID (eipalloc- and 8 or 17 hex digits)", 0},
	}
	for _, l := range lists {
		if err := providers.CheckList(l.field, l.values, l.pattern.MatchString, l.what, l.max); err != nil {
			return err
		}
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
	return providers.ValidateBackends(s.Backends, BackendSpec.validate)
}

func (b BackendSpec) validate(field string) error {
	if err := deregistrationDelayRange.check(field+".deregistrationDelaySeconds", b.DeregistrationDelaySeconds); err != nil {
		return err
	}
	if b.HealthCheck == nil {
		return nil
	}
	return b.HealthCheck.validate(field + ".healthCheck")
}
