package computesim

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"regexp"
	"slices"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

const maxNEGBackends = 50

type backendService struct {
	pb     *computepb.BackendService
	path   string
	region string // empty for global
	gen    uint64
}

// bsLocation resolves a request to the backend service collection it
// addresses: global, or regional when the path has a region.
func bsLocation(r *http.Request) (collection, region string) {
	project, region := r.PathValue("project"), r.PathValue("region")
	if region != "" {
		return fmt.Sprintf("projects/%s/regions/%s/backendServices", project, region), region
	}
	return fmt.Sprintf("projects/%s/global/backendServices", project), ""
}

func bsPath(r *http.Request) string {
	c, _ := bsLocation(r)
	return c + "/" + r.PathValue("bs")
}

func bsScope(r *http.Request) opScope {
	return opScope{project: r.PathValue("project"), region: r.PathValue("region")}
}

// fingerprint is a base64 hash of the resource and its generation, so it
// changes on every mutation, even one that leaves the content equal.
func fingerprint(pb proto.Message, gen uint64) string {
	c := proto.Clone(pb)
	if fd := c.ProtoReflect().Descriptor().Fields().ByName("fingerprint"); fd != nil {
		c.ProtoReflect().Clear(fd)
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	h := sha256.New()
	h.Write(b)
	var g [8]byte
	binary.BigEndian.PutUint64(g[:], gen)
	h.Write(g[:])
	return base64.StdEncoding.EncodeToString(h.Sum(nil)[:8])
}

var negPathRE = regexp.MustCompile(`^projects/[^/]+/zones/([^/]+)/networkEndpointGroups/[^/]+$`)

func isHTTPFamily(protocol string) bool {
	return protocol == "HTTP" || protocol == "HTTPS" || protocol == "HTTP2"
}

// normalizeBackendServiceLocked fills defaults, canonicalises references
// and validates a backend service against the current resources.
func (s *Server) normalizeBackendServiceLocked(bs *computepb.BackendService, project, region string) *apiError {
	if e := validateName(bs.GetName()); e != nil {
		return e
	}
	if bs.Protocol == nil {
		bs.Protocol = proto.String("HTTP")
	}
	protocol := bs.GetProtocol()
	switch protocol {
	case "HTTP", "HTTPS", "HTTP2", "TCP", "SSL":
	default:
		return errInvalidField("resource.protocol", protocol, "Only HTTP, HTTPS, HTTP2, TCP and SSL backend services are emulated.")
	}
	if bs.LoadBalancingScheme == nil {
		if region == "" {
			bs.LoadBalancingScheme = proto.String("EXTERNAL")
		} else {
			bs.LoadBalancingScheme = proto.String("INTERNAL_MANAGED")
		}
	}
	switch scheme := bs.GetLoadBalancingScheme(); scheme {
	case "EXTERNAL", "EXTERNAL_MANAGED", "INTERNAL_MANAGED", "INTERNAL_SELF_MANAGED":
	case "INTERNAL":
		if isHTTPFamily(protocol) {
			return errInvalidField("resource.protocol", protocol, "Load balancing scheme INTERNAL supports protocols TCP, UDP and UNSPECIFIED only.")
		}
	default:
		return errInvalidField("resource.loadBalancingScheme", scheme, "Must be EXTERNAL, EXTERNAL_MANAGED, INTERNAL, INTERNAL_MANAGED or INTERNAL_SELF_MANAGED.")
	}
	if bs.SessionAffinity == nil {
		bs.SessionAffinity = proto.String("NONE")
	}
	if bs.TimeoutSec == nil {
		bs.TimeoutSec = proto.Int32(30)
	}
	if bs.ConnectionDraining == nil {
		bs.ConnectionDraining = &computepb.ConnectionDraining{}
	}
	if bs.ConnectionDraining.DrainingTimeoutSec == nil {
		bs.ConnectionDraining.DrainingTimeoutSec = proto.Int32(0)
	}
	if d := bs.ConnectionDraining.GetDrainingTimeoutSec(); d < 0 || d > 3600 {
		return errInvalidField("resource.connectionDraining.drainingTimeoutSec", fmt.Sprint(d), "Must be between 0 and 3600.")
	}
	if len(bs.GetBackends()) > maxNEGBackends {
		return errInvalid("Invalid value for field 'resource.backends': exceeded the maximum of %d network endpoint group backends per backend service.", maxNEGBackends)
	}
	seen := map[string]bool{}
	for i, b := range bs.GetBackends() {
		field := fmt.Sprintf("resource.backends[%d]", i)
		if b.GetGroup() == "" {
			return errInvalid("Required field '%s.group' not specified", field)
		}
		g := qualify(project, b.GetGroup(), "zones/-/networkEndpointGroups")
		m := negPathRE.FindStringSubmatch(g)
		if m == nil {
			return errInvalidField(field+".group", b.GetGroup(), "Only zonal network endpoint groups are emulated as backends.")
		}
		if s.negs[g] == nil {
			return errNotFound(g)
		}
		if region != "" && regionOfZone(m[1]) != region {
			return errInvalidField(field+".group", b.GetGroup(), "The network endpoint group must be in the region of the backend service.")
		}
		if seen[g] {
			return errInvalidField(field+".group", b.GetGroup(), "Duplicate backend group.")
		}
		seen[g] = true
		b.Group = proto.String(selfLink(g))
		mode := b.GetBalancingMode()
		if mode == "" {
			mode = "UTILIZATION" // GCE's default, which NEG backends reject
		}
		b.BalancingMode = proto.String(mode)
		hasRate := b.MaxRatePerEndpoint != nil || b.MaxRate != nil || b.MaxRatePerInstance != nil
		hasConn := b.MaxConnectionsPerEndpoint != nil || b.MaxConnections != nil || b.MaxConnectionsPerInstance != nil
		switch mode {
		case "RATE":
			if !isHTTPFamily(protocol) {
				return errInvalidField(field, b.GetGroup(), fmt.Sprintf("RATE balancing mode is not supported for protocol %s.", protocol))
			}
			if !hasRate {
				return errInvalid("Invalid value for field '%s': RATE balancing mode requires one of maxRate, maxRatePerInstance or maxRatePerEndpoint.", field)
			}
			if hasConn {
				return errInvalid("Invalid value for field '%s': maxConnections* may not be set with balancing mode RATE.", field)
			}
		case "CONNECTION":
			if isHTTPFamily(protocol) {
				// GCE's wording, field and all.
				return errInvalidField(field, b.GetGroup(), fmt.Sprintf("CONNECTION balancing mode is not supported for protocol %s.", protocol))
			}
			if !hasConn {
				return errInvalid("Invalid value for field '%s': CONNECTION balancing mode requires one of maxConnections, maxConnectionsPerInstance or maxConnectionsPerEndpoint.", field)
			}
			if hasRate {
				return errInvalid("Invalid value for field '%s': maxRate* may not be set with balancing mode CONNECTION.", field)
			}
		case "UTILIZATION":
			return errInvalidField(field+".balancingMode", mode, "UTILIZATION balancing mode is not supported for network endpoint groups.")
		default:
			return errInvalidField(field+".balancingMode", mode, "Must be RATE, CONNECTION or UTILIZATION.")
		}
		if b.CapacityScaler == nil {
			b.CapacityScaler = proto.Float32(1)
		}
		if c := b.GetCapacityScaler(); c != 0 && (c < 0.1 || c > 1) {
			return errInvalidField(field+".capacityScaler", fmt.Sprint(c), "Must be 0 or between 0.1 and 1.0.")
		}
	}
	if len(bs.GetHealthChecks()) > 1 {
		return errInvalid("Invalid value for field 'resource.healthChecks': at most one health check is allowed for network endpoint group backends.")
	}
	if len(bs.GetBackends()) > 0 && len(bs.GetHealthChecks()) == 0 {
		return errInvalid("Invalid value for field 'resource.healthChecks': a health check is required for network endpoint group backends.")
	}
	for i, h := range bs.GetHealthChecks() {
		p := qualify(project, h, scopePrefix(region)+"/healthChecks")
		if s.healthChecks[p] == nil {
			return errNotFound(p)
		}
		bs.HealthChecks[i] = selfLink(p)
	}
	return nil
}

func (s *Server) bsInsert(r *http.Request) (proto.Message, *apiError) {
	project := r.PathValue("project")
	coll, region := bsLocation(r)
	if region != "" {
		if e := validateRegion(region); e != nil {
			return nil, e
		}
	}
	in := &computepb.BackendService{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.normalizeBackendServiceLocked(in, project, region); e != nil {
		return nil, e
	}
	path := coll + "/" + in.GetName()
	if s.backendServices[path] != nil {
		return nil, errAlreadyExists(path)
	}
	stampNew(in, "compute#backendService", project, region, path)
	in.Fingerprint = proto.String(fingerprint(in, 1))
	return s.startOpLocked(r, bsScope(r), "insert", path, in.GetId(), func() *apiError {
		if s.backendServices[path] != nil {
			return errAlreadyExists(path)
		}
		s.backendServices[path] = &backendService{pb: in, path: path, region: region, gen: 1}
		s.syncTargetsLocked()
		return nil
	}), nil
}

func (s *Server) bsGet(r *http.Request) (proto.Message, *apiError) {
	return getResource(s, bsPath(r), s.backendServices, func(bs *backendService) *computepb.BackendService { return bs.pb })
}

func (s *Server) bsList(r *http.Request) (proto.Message, *apiError) {
	coll, _ := bsLocation(r)
	items, next, e := listPage(s, r, s.backendServices, func(bs *backendService) *computepb.BackendService { return bs.pb }, under[*backendService](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.BackendServiceList{Kind: proto.String("compute#backendServiceList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) bsDelete(r *http.Request) (proto.Message, *apiError) {
	path := bsPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.backendServices[path]
	if bs == nil {
		return nil, errNotFound(path)
	}
	if user := s.bsUserLocked(path); user != "" {
		return nil, errInUse(path, user)
	}
	return s.startOpLocked(r, bsScope(r), "delete", path, bs.pb.GetId(), func() *apiError {
		if s.backendServices[path] == nil {
			return errNotFound(path)
		}
		if user := s.bsUserLocked(path); user != "" {
			return errInUse(path, user)
		}
		delete(s.backendServices, path)
		s.syncTargetsLocked()
		return nil
	}), nil
}

// bsUserLocked names one resource that refers to a backend service (a
// target TCP proxy or a URL map), or "".
func (s *Server) bsUserLocked(path string) string {
	var users []string
	for p, tp := range s.tcpProxies {
		if ResourcePath(tp.pb.GetService()) == path {
			users = append(users, p)
		}
	}
	for p, um := range s.urlMaps {
		if slices.Contains(urlMapServices(um.pb), path) {
			users = append(users, p)
		}
	}
	return firstUser(users)
}

// firstUser is the least of the users of a resource, so messages naming
// one of them are deterministic; "" when there are none.
func firstUser(users []string) string {
	if len(users) == 0 {
		return ""
	}
	return slices.Min(users)
}

func (s *Server) bsPatch(r *http.Request) (proto.Message, *apiError) { return s.bsModify(r, true) }

func (s *Server) bsUpdate(r *http.Request) (proto.Message, *apiError) { return s.bsModify(r, false) }

// bsModify implements patch (merge) and update (replace). The body must
// carry the current fingerprint, else the call answers 412
// conditionNotMet: the BackendService reference documents that "an
// up-to-date fingerprint must be provided in order to update the
// BackendService, otherwise the request will fail with error 412
// conditionNotMet"
// (https://cloud.google.com/compute/docs/reference/rest/v1/backendServices,
// field fingerprint). A missing fingerprint is not up to date.
func (s *Server) bsModify(r *http.Request, patch bool) (proto.Message, *apiError) {
	project := r.PathValue("project")
	_, region := bsLocation(r)
	path := bsPath(r)
	in := &computepb.BackendService{}
	raw, e := readBody(r, in)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.backendServices[path]
	if bs == nil {
		return nil, errNotFound(path)
	}
	if in.GetFingerprint() != bs.pb.GetFingerprint() {
		return nil, errConditionNotMet("backend service " + path)
	}
	if in.Name != nil && in.GetName() != bs.pb.GetName() {
		return nil, errInvalidField("resource.name", in.GetName(), "The name of a resource cannot be changed.")
	}
	var next *computepb.BackendService
	if patch {
		next = proto.CloneOf(bs.pb)
		if e := mergePatch(next, raw, in); e != nil {
			return nil, e
		}
	} else {
		next = in
	}
	next.Name = bs.pb.Name
	next.Kind, next.Id, next.CreationTimestamp, next.SelfLink, next.Region = bs.pb.Kind, bs.pb.Id, bs.pb.CreationTimestamp, bs.pb.SelfLink, bs.pb.Region
	if e := s.normalizeBackendServiceLocked(next, project, region); e != nil {
		return nil, e
	}
	opType := "update"
	if patch {
		opType = "patch"
	}
	return s.startOpLocked(r, bsScope(r), opType, path, bs.pb.GetId(), func() *apiError {
		cur := s.backendServices[path]
		if cur == nil {
			return errNotFound(path)
		}
		// References may have gone while the operation was pending.
		if e := s.normalizeBackendServiceLocked(next, project, region); e != nil {
			return e
		}
		cur.gen++
		next.Fingerprint = proto.String(fingerprint(next, cur.gen))
		cur.pb = next
		s.syncTargetsLocked()
		return nil
	}), nil
}

// bsGetHealth answers the health of one backend group's endpoints as this
// backend service's health checks see them. The group must be a backend of
// the service (400 otherwise).
func (s *Server) bsGetHealth(r *http.Request) (proto.Message, *apiError) {
	path := bsPath(r)
	in := &computepb.ResourceGroupReference{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	group := qualify(r.PathValue("project"), in.GetGroup(), "zones/-/networkEndpointGroups")
	s.mu.Lock()
	defer s.mu.Unlock()
	bs := s.backendServices[path]
	if bs == nil {
		return nil, errNotFound(path)
	}
	if in.GetGroup() == "" {
		return nil, errInvalid("Required field 'resource.group' not specified")
	}
	found := false
	for _, b := range bs.pb.GetBackends() {
		if ResourcePath(b.GetGroup()) == group {
			found = true
		}
	}
	if !found {
		return nil, errInvalidField("resource.group", in.GetGroup(), "The group is not a backend of backend service '"+path+"'.")
	}
	out := &computepb.BackendServiceGroupHealth{Kind: proto.String("compute#backendServiceGroupHealth")}
	project := r.PathValue("project")
	for _, t := range s.groupTargetsLocked(path, group) {
		// HealthStatus.healthState has two documented values, HEALTHY and
		// UNHEALTHY (https://cloud.google.com/compute/docs/reference/rest/v1/backendServices/getHealth,
		// response body BackendServiceGroupHealth): endpoints not judged
		// yet and detached ones that drain are left out here; only
		// listNetworkEndpoints documents UNKNOWN and DRAINING.
		if t.state != StateHealthy && t.state != StateUnhealthy {
			continue
		}
		out.HealthStatus = append(out.HealthStatus, &computepb.HealthStatus{
			IpAddress:   proto.String(t.ip),
			Port:        proto.Int32(t.port),
			Instance:    proto.String(selfLink(fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, t.zone, t.instance))),
			HealthState: proto.String(t.state),
		})
	}
	return out, nil
}
