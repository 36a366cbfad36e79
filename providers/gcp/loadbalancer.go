package gcp

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/podlb/podlb/providers"
)

// LoadBalancerAnnotationKey is the Ingress (and Service) annotation whose
// value is a LoadBalancerSpec: the settings of the Application Load
// Balancer (URL map, target proxies, forwarding rules, backend services)
// or, for a Service of type LoadBalancer, the proxy Network Load Balancer
// podlb provisions on GCP.
const LoadBalancerAnnotationKey = "podlb.io/gcp-load-balancer"

// LoadBalancerSpec is the value of podlb.io/gcp-load-balancer. Every field
// is optional: {} (or an empty value) gives a global external Application
// Load Balancer with an ephemeral address.
type LoadBalancerSpec struct {
	// Scheme is external (default) or internal.
	Scheme string `json:"scheme,omitempty"`
	// Region makes the load balancer regional; internal ones always are.
	Region string `json:"region,omitempty"`
	// ProxySubnet is the region's proxy-only subnet, which regional load
	// balancers need.
	ProxySubnet string `json:"proxySubnet,omitempty"`
	// Address is a reserved static address (its name) or an IP address.
	Address string `json:"address,omitempty"`
	// SSLCertificates are the names of the HTTPS proxy's certificates (the
	// SSL proxies', for a Service).
	SSLCertificates []string `json:"sslCertificates,omitempty"`
	// TLSPorts (Services only) are the TCP ports served by a target SSL
	// proxy, which terminates TLS with SSLCertificates and forwards plain
	// TCP to the pods.
	TLSPorts []int32 `json:"tlsPorts,omitempty"`
	// SSLPolicy is the name of the HTTPS (or SSL) proxies' SSL policy.
	SSLPolicy string `json:"sslPolicy,omitempty"`
	// RedirectToHTTPS makes the HTTP side redirect to HTTPS.
	RedirectToHTTPS bool `json:"redirectToHTTPS,omitempty"`
	// TimeoutSec is the backend services' request timeout.
	TimeoutSec *int32 `json:"timeoutSec,omitempty"`
	// ProxyProtocol (Services only) makes the TCP and SSL proxies send a
	// PROXY v1 header, so the pods get the client's address.
	ProxyProtocol bool `json:"proxyProtocol,omitempty"`
	// Group names the load balancer Ingresses share: Ingresses with the
	// same group get one. Empty: the Ingress gets its own.
	Group string `json:"group,omitempty"`
	// Backends holds per-backend settings keyed by "service:port" (port
	// number or name, as the Ingress names it).
	Backends map[string]BackendSpec `json:"backends,omitempty"`
}

// BackendSpec holds the settings of the backend service podlb creates for
// one backend of a load balancer.
type BackendSpec struct {
	HealthCheck *HealthCheckSpec `json:"healthCheck,omitempty"`
	// BalancingMode is the only mode the load balancer's kind allows,
	// RATE for an Ingress and CONNECTION for a Service; it may be given
	// to say so, and anything else is refused naming the field.
	BalancingMode string `json:"balancingMode,omitempty"`
	// MaxRatePerEndpoint is the RATE balancing capacity of each endpoint.
	MaxRatePerEndpoint *float64 `json:"maxRatePerEndpoint,omitempty"`
	// DrainingTimeoutSec is connectionDraining.drainingTimeoutSec.
	DrainingTimeoutSec *int32 `json:"drainingTimeoutSec,omitempty"`
}

// HealthCheckSpec holds the HTTP health check of a backend; unset fields
// keep the defaults (the backend's readiness probe path when podlb can
// tell it, the serving port, Compute's interval).
type HealthCheckSpec struct {
	Path             string `json:"path,omitempty"`
	Port             *int32 `json:"port,omitempty"`
	CheckIntervalSec *int32 `json:"checkIntervalSec,omitempty"`
}

// Schemes of a GCP Application Load Balancer.
var loadBalancerSchemes = []string{"external", "internal"}

// Limits of the load-balancer fields, as Compute accepts them; validation
// and the guide's reference both read them.
const (
	maxSSLCertificates                           = 15
	minCheckIntervalSec, maxCheckIntervalSec     = 1, 300
	minDrainingTimeoutSec, maxDrainingTimeoutSec = 0, 3600
)

// ParseLoadBalancerSpec validates the value of podlb.io/gcp-load-balancer.
// Errors are classified Invalid, name the field (errors.As gives the
// *providers.Error) and read like
// `podlb.io/gcp-load-balancer: scheme: must be external or internal, got "public"`.
func ParseLoadBalancerSpec(raw string) (*LoadBalancerSpec, error) {
	return providers.ParseAnnotation(LoadBalancerAnnotationKey, raw, (*LoadBalancerSpec).validate, (*LoadBalancerSpec).validateHTTP)
}

// validateHTTP refuses what only a Service's load balancer has.
func (s *LoadBalancerSpec) validateHTTP() error {
	if s.ProxyProtocol {
		return providers.Errorf(providers.Invalid, "proxyProtocol", "applies to Services of type LoadBalancer only: an Application Load Balancer passes the client's address in X-Forwarded-For")
	}
	if len(s.TLSPorts) > 0 {
		return providers.Errorf(providers.Invalid, "tlsPorts", "applies to Services of type LoadBalancer only; an Ingress's load balancer serves HTTPS on 443 when sslCertificates are given")
	}
	for _, key := range slices.Sorted(maps.Keys(s.Backends)) {
		if s.Backends[key].BalancingMode == "CONNECTION" {
			return providers.Errorf(providers.Invalid, fmt.Sprintf("backends[%q].balancingMode", key), "an Application Load Balancer balances HTTP requests: its backends use RATE (with maxRatePerEndpoint); CONNECTION is for a Service's TCP and SSL proxy load balancers")
		}
	}
	return nil
}

const nameRule = "1-63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen"

func (s *LoadBalancerSpec) validate() error {
	switch s.Scheme {
	case "", "external", "internal":
	default:
		return providers.Errorf(providers.Invalid, "scheme", "must be %s, got %q", strings.Join(loadBalancerSchemes, " or "), s.Scheme)
	}
	names := []struct{ field, value, what string }{
		{"region", s.Region, "a region name"},
		{"proxySubnet", s.ProxySubnet, "a subnet name"},
		{"sslPolicy", s.SSLPolicy, "an SSL policy name"},
		{"group", s.Group, "a group name"},
	}
	for _, n := range names {
		if n.value != "" && !isName(n.value) {
			return providers.Errorf(providers.Invalid, n.field, "%q is not %s (%s)", n.value, n.what, nameRule)
		}
	}
	if s.Scheme == "internal" {
		if s.Region == "" {
			return providers.Errorf(providers.Invalid, "region", "an internal load balancer is regional; set its region")
		}
		if s.ProxySubnet == "" {
			return providers.Errorf(providers.Invalid, "proxySubnet", "an internal load balancer needs the proxy-only subnet of its region")
		}
	}
	if s.ProxySubnet != "" && s.Region == "" {
		return providers.Errorf(providers.Invalid, "proxySubnet", "applies only to regional load balancers; set region too")
	}
	if a := s.Address; a != "" && !isName(a) {
		if _, err := netip.ParseAddr(a); err != nil {
			return providers.Errorf(providers.Invalid, "address", "%q is neither an address name (%s) nor an IP address", a, nameRule)
		}
	}
	if err := providers.CheckList("sslCertificates", s.SSLCertificates, isName, "a certificate name ("+nameRule+")", maxSSLCertificates); err != nil {
		return err
	}
	if t := s.TimeoutSec; t != nil && *t < 1 {
		return providers.Errorf(providers.Invalid, "timeoutSec", "%d must be at least 1", *t)
	}
	return providers.ValidateBackends(s.Backends, BackendSpec.validate)
}

func (b BackendSpec) validate(field string) error {
	switch b.BalancingMode {
	case "", "RATE", "CONNECTION":
	case "UTILIZATION":
		return providers.Errorf(providers.Invalid, field+".balancingMode", "UTILIZATION is for instance group backends only; podlb's NEG backends use RATE (Ingresses) or CONNECTION (Services)")
	default:
		return providers.Errorf(providers.Invalid, field+".balancingMode", "%q is not one of %s", b.BalancingMode, strings.Join(balancingMode, ", "))
	}
	if r := b.MaxRatePerEndpoint; r != nil && !validRate(*r) {
		return providers.Errorf(providers.Invalid, field+".maxRatePerEndpoint", "%v must be a positive number of requests per second", *r)
	}
	if d := b.DrainingTimeoutSec; d != nil && (*d < minDrainingTimeoutSec || *d > maxDrainingTimeoutSec) {
		return providers.Errorf(providers.Invalid, field+".drainingTimeoutSec", "%d is outside %d-%d", *d, minDrainingTimeoutSec, maxDrainingTimeoutSec)
	}
	hc := b.HealthCheck
	if hc == nil {
		return nil
	}
	if hc.Path != "" && !strings.HasPrefix(hc.Path, "/") {
		return providers.Errorf(providers.Invalid, field+".healthCheck.path", "%q must start with /", hc.Path)
	}
	if p := hc.Port; p != nil && (*p < 1 || *p > 65535) {
		return providers.Errorf(providers.Invalid, field+".healthCheck.port", "%d is outside 1-65535", *p)
	}
	if i := hc.CheckIntervalSec; i != nil && (*i < minCheckIntervalSec || *i > maxCheckIntervalSec) {
		return providers.Errorf(providers.Invalid, field+".healthCheck.checkIntervalSec", "%d is outside %d-%d", *i, minCheckIntervalSec, maxCheckIntervalSec)
	}
	return nil
}
