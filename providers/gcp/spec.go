// Package gcp binds Service ports to zonal GCE_VM_IP_PORT network endpoint
// groups (one per zone with nodes, all of the same name) and, optionally,
// makes those NEGs backends of a backend service, through the Compute
// API's JSON client, google.golang.org/api/compute/v1.
package gcp

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/podlb/podlb/providers"
)

// AnnotationKey is the Service annotation this provider reads.
const AnnotationKey = "podlb.io/gcp-negs"

// Balancing defaults used when the annotation names a backend service but
// no balancing settings: the mode follows the backend service's protocol.
const (
	DefaultMaxRatePerEndpoint        = 100
	DefaultMaxConnectionsPerEndpoint = 100
)

// Spec is one port's value of podlb.io/gcp-negs. Every field is optional:
// {} gives NEGs with a generated name that no backend service uses yet.
type Spec struct {
	// Name of the zonal NEGs; empty generates one from cluster, namespace,
	// Service and port.
	Name string `json:"name,omitempty"`
	// BackendService the NEGs become backends of: a name (global) or a
	// resource path or URL, global or regional.
	BackendService string `json:"backendService,omitempty"`
	// BalancingMode is RATE (HTTP, HTTPS, HTTP2 services) or CONNECTION
	// (TCP, SSL services); empty derives it from the service's protocol.
	BalancingMode             string   `json:"balancingMode,omitempty"`
	MaxRatePerEndpoint        *float64 `json:"maxRatePerEndpoint,omitempty"`
	MaxConnectionsPerEndpoint *int32   `json:"maxConnectionsPerEndpoint,omitempty"`
	// CapacityScaler is 0 (no new traffic) or 0.1-1.0.
	CapacityScaler *float64 `json:"capacityScaler,omitempty"`

	bs *serviceRef
}

// Summary implements providers.Spec.
func (s *Spec) Summary() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// serviceRef locates a backend service (or its health check). An empty
// project means the provider's project.
type serviceRef struct {
	Project string
	Region  string // empty: global
	Name    string
}

// path is the relative resource path, with project filled in.
func (r serviceRef) path(defaultProject string) string {
	project := r.Project
	if project == "" {
		project = defaultProject
	}
	if r.Region == "" {
		return "projects/" + project + "/global/backendServices/" + r.Name
	}
	return "projects/" + project + "/regions/" + r.Region + "/backendServices/" + r.Name
}

var (
	rfc1035       = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	projectIDRE   = regexp.MustCompile(`^[a-z](?:[-a-z0-9.:]*[a-z0-9])?$`)
	urlPrefixRE   = regexp.MustCompile(`^https?://[^/]+/compute/(?:v1|beta|alpha)/`)
	balancingMode = []string{"RATE", "CONNECTION"}
)

// Limits of the annotation's fields, as Compute accepts them; validation
// and the guide's reference both read them.
const (
	maxNameLength = 63
	// A capacity scaler is 0 (no new traffic) or in this range.
	minCapacityScaler = 0.1
	maxCapacityScaler = 1.0
)

// ParseSpec validates one port's annotation value. Errors name the field
// to fix.
func ParseSpec(raw json.RawMessage) (*Spec, error) {
	var s Spec
	if err := providers.DecodeStrict(raw, &s); err != nil {
		return nil, providers.Errorf(providers.Invalid, "", `want {"name", "backendService", "balancingMode", "maxRatePerEndpoint", "maxConnectionsPerEndpoint", "capacityScaler"} (all optional): %v`, err)
	}
	if s.Name != "" && !isName(s.Name) {
		return nil, providers.Errorf(providers.Invalid, "name", "%q is not a NEG name (1-%d lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen)", s.Name, maxNameLength)
	}
	if s.BackendService != "" {
		ref, err := parseServiceRef(s.BackendService)
		if err != nil {
			return nil, providers.Errorf(providers.Invalid, "backendService", "%v", err)
		}
		s.bs = &ref
	}
	if err := s.validateBalancing(); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *Spec) validateBalancing() error {
	if s.bs == nil {
		for _, f := range []struct {
			field string
			set   bool
		}{
			{"balancingMode", s.BalancingMode != ""},
			{"maxRatePerEndpoint", s.MaxRatePerEndpoint != nil},
			{"maxConnectionsPerEndpoint", s.MaxConnectionsPerEndpoint != nil},
			{"capacityScaler", s.CapacityScaler != nil},
		} {
			if f.set {
				return providers.Errorf(providers.Invalid, f.field, "balancing settings only apply to a backend service; set backendService too")
			}
		}
		return nil
	}
	switch s.BalancingMode {
	case "", "RATE", "CONNECTION":
	case "UTILIZATION":
		return providers.Errorf(providers.Invalid, "balancingMode", "UTILIZATION is for instance group backends only; NEG backends use RATE (HTTP, HTTPS, HTTP2) or CONNECTION (TCP, SSL)")
	default:
		return providers.Errorf(providers.Invalid, "balancingMode", "%q is not one of %s", s.BalancingMode, strings.Join(balancingMode, ", "))
	}
	if r := s.MaxRatePerEndpoint; r != nil && !validRate(*r) {
		return providers.Errorf(providers.Invalid, "maxRatePerEndpoint", "%v must be a positive number of requests per second", *r)
	}
	if c := s.MaxConnectionsPerEndpoint; c != nil && *c <= 0 {
		return providers.Errorf(providers.Invalid, "maxConnectionsPerEndpoint", "%d must be positive", *c)
	}
	if s.MaxRatePerEndpoint != nil && s.MaxConnectionsPerEndpoint != nil {
		return providers.Errorf(providers.Invalid, "maxConnectionsPerEndpoint", "set maxRatePerEndpoint (RATE) or maxConnectionsPerEndpoint (CONNECTION), not both")
	}
	switch s.BalancingMode {
	case "RATE":
		if s.MaxConnectionsPerEndpoint != nil {
			return providers.Errorf(providers.Invalid, "maxConnectionsPerEndpoint", "does not apply to balancing mode RATE; use maxRatePerEndpoint")
		}
		if s.MaxRatePerEndpoint == nil {
			return providers.Errorf(providers.Invalid, "maxRatePerEndpoint", "balancing mode RATE needs maxRatePerEndpoint > 0")
		}
	case "CONNECTION":
		if s.MaxRatePerEndpoint != nil {
			return providers.Errorf(providers.Invalid, "maxRatePerEndpoint", "does not apply to balancing mode CONNECTION; use maxConnectionsPerEndpoint")
		}
		if s.MaxConnectionsPerEndpoint == nil {
			return providers.Errorf(providers.Invalid, "maxConnectionsPerEndpoint", "balancing mode CONNECTION needs maxConnectionsPerEndpoint > 0")
		}
	}
	if c := s.CapacityScaler; c != nil && (math.IsNaN(*c) || (*c != 0 && (*c < minCapacityScaler || *c > maxCapacityScaler))) {
		return providers.Errorf(providers.Invalid, "capacityScaler", "%v must be 0 or between %.1f and %.1f", *c, minCapacityScaler, maxCapacityScaler)
	}
	return nil
}

// validRate reports whether r is a usable requests-per-second capacity.
func validRate(r float64) bool {
	return !math.IsNaN(r) && !math.IsInf(r, 0) && r > 0 && r <= math.MaxFloat32
}

// isName reports whether s is a Compute resource name: RFC 1035, at most
// 63 characters.
func isName(s string) bool {
	return len(s) <= maxNameLength && rfc1035.MatchString(s)
}

// mode is the balancing mode the user asked for, explicitly or through
// the capacity field they set; "" leaves it to the service's protocol.
func (s *Spec) mode() string {
	switch {
	case s.BalancingMode != "":
		return s.BalancingMode
	case s.MaxRatePerEndpoint != nil:
		return "RATE"
	case s.MaxConnectionsPerEndpoint != nil:
		return "CONNECTION"
	}
	return ""
}

// parseServiceRef accepts a bare name (global), "global/backendServices/X",
// "regions/R/backendServices/X", the same under "projects/P/", or any of
// those as a Compute URL.
func parseServiceRef(v string) (serviceRef, error) {
	rest := urlPrefixRE.ReplaceAllString(v, "")
	if strings.Contains(v, "://") && rest == v {
		return serviceRef{}, fmt.Errorf("%q is not a Compute API URL (https://www.googleapis.com/compute/v1/...)", v)
	}
	var ref serviceRef
	parts := strings.Split(rest, "/")
	if len(parts) >= 2 && parts[0] == "projects" {
		ref.Project = parts[1]
		if !projectIDRE.MatchString(ref.Project) {
			return serviceRef{}, fmt.Errorf("%q has an invalid project %q", v, ref.Project)
		}
		parts = parts[2:]
	}
	switch {
	case len(parts) == 1 && ref.Project == "" && !strings.Contains(rest, "/"):
		ref.Name = parts[0]
	case len(parts) == 3 && parts[0] == "global" && parts[1] == "backendServices":
		ref.Name = parts[2]
	case len(parts) == 4 && parts[0] == "regions" && parts[2] == "backendServices":
		if !rfc1035.MatchString(parts[1]) {
			return serviceRef{}, fmt.Errorf("%q has an invalid region %q", v, parts[1])
		}
		ref.Region, ref.Name = parts[1], parts[3]
	default:
		return serviceRef{}, fmt.Errorf("%q is neither a backend service name nor a path like projects/P/global/backendServices/NAME or regions/R/backendServices/NAME", v)
	}
	if !isName(ref.Name) {
		return serviceRef{}, fmt.Errorf("%q is not a valid backend service name", ref.Name)
	}
	return ref, nil
}

// NEGName is the deterministic name of a binding's NEGs when the
// annotation gives none: pl-<cluster>-<namespace>-<service>-<port>-<hash>,
// readable prefixes with a hash of all four so names that truncate alike
// (and equal names in other clusters) never collide. At most 63
// characters, RFC 1035.
func NEGName(cluster string, key providers.BindingKey) string {
	hash := providers.BindingHash(cluster, key, 8)
	port := strconv.Itoa(int(key.Port))
	c := providers.NamePart(cluster, 8)
	// 63 minus "pl-", the hash, the port and the five separators.
	room := 63 - 3 - len(hash) - len(port) - len(c) - 4
	ns, svc := providers.NamePart(key.Namespace, room), providers.NamePart(key.Service, room)
	// Share the room, giving what one side leaves unused to the other.
	for len(ns)+len(svc) > room {
		if len(ns) >= len(svc) {
			ns = strings.TrimRight(ns[:len(ns)-1], "-")
		} else {
			svc = strings.TrimRight(svc[:len(svc)-1], "-")
		}
	}
	parts := []string{"pl"}
	for _, p := range []string{c, ns, svc} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, port, hash), "-")
}

// owner is the ownership record podlb writes as the description of every
// NEG it creates; a NEG is only ever touched when its description decodes
// to exactly this binding's record.
type owner struct {
	ManagedBy string `json:"managedBy"`
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Port      int32  `json:"port"`
	// Balancer is set for the NEGs of a load balancer's backend, so they
	// are never taken for those of the Service's own annotation.
	Balancer string `json:"balancer,omitempty"`
}

const managedBy = "podlb.io"

func ownerOf(cluster string, key providers.BindingKey) owner {
	return owner{ManagedBy: managedBy, Cluster: cluster, Namespace: key.Namespace, Service: key.Service, Port: key.Port, Balancer: key.Balancer}
}

// Description is the NEG description recording podlb's ownership.
func Description(cluster string, key providers.BindingKey) string {
	b, _ := json.Marshal(ownerOf(cluster, key))
	return string(b)
}

// OwnedBy reports whether a NEG description marks it as podlb's for this
// exact cluster and Service port.
func OwnedBy(description, cluster string, key providers.BindingKey) bool {
	var o owner
	if err := json.Unmarshal([]byte(description), &o); err != nil {
		return false
	}
	return o == ownerOf(cluster, key)
}

// mapState turns a getHealth healthState into the core's state.
func mapState(healthState string) providers.State {
	switch healthState {
	case "HEALTHY":
		return providers.Healthy
	case "UNHEALTHY":
		return providers.Unhealthy
	case "DRAINING":
		return providers.Draining
	}
	// UNKNOWN, absent and anything new: not judged yet.
	return providers.Pending
}

// stateReason explains a healthState in the gate message.
func stateReason(healthState, service string) string {
	switch healthState {
	case "HEALTHY":
		return "passing the health check of " + service
	case "UNHEALTHY":
		return "failing the health check of " + service
	case "DRAINING":
		return "detached; " + service + " drains its connections"
	case "UNKNOWN":
		return "not yet health-checked by " + service
	}
	return "attached; " + service + " reports no health for it yet"
}
