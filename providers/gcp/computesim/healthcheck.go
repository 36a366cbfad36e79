package computesim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type healthCheck struct {
	pb   *computepb.HealthCheck
	path string
}

// hcPath is the health check a request addresses, global or regional.
func hcPath(r *http.Request) (string, *apiError) {
	coll, _, e := scopedCollection(r, "healthChecks")
	if e != nil {
		return "", e
	}
	return coll + "/" + r.PathValue("hc"), nil
}

// normalizeHealthCheck fills GCE's defaults and validates. Only TCP and HTTP
// health checks are emulated; other types answer 400.
func normalizeHealthCheck(hc *computepb.HealthCheck) *apiError {
	if e := validateName(hc.GetName()); e != nil {
		return e
	}
	typ := hc.GetType()
	if typ == "" {
		switch {
		case hc.TcpHealthCheck != nil:
			typ = "TCP"
		case hc.HttpHealthCheck != nil:
			typ = "HTTP"
		}
	}
	switch typ {
	case "TCP":
		if hc.TcpHealthCheck == nil {
			hc.TcpHealthCheck = &computepb.TCPHealthCheck{}
		}
		if hc.HttpHealthCheck != nil {
			return errInvalid("Invalid value for field 'resource.httpHealthCheck': only tcpHealthCheck may be set for type TCP.")
		}
	case "HTTP":
		if hc.HttpHealthCheck == nil {
			hc.HttpHealthCheck = &computepb.HTTPHealthCheck{}
		}
		if hc.TcpHealthCheck != nil {
			return errInvalid("Invalid value for field 'resource.tcpHealthCheck': only httpHealthCheck may be set for type HTTP.")
		}
	case "":
		return errInvalid("Required field 'resource.type' not specified")
	default:
		return errInvalidField("resource.type", typ, "Only TCP and HTTP health checks are emulated.")
	}
	hc.Type = proto.String(typ)
	def := func(p **int32, v int32) {
		if *p == nil || **p == 0 {
			*p = proto.Int32(v)
		}
	}
	def(&hc.CheckIntervalSec, 5)
	def(&hc.TimeoutSec, 5)
	def(&hc.HealthyThreshold, 2)
	def(&hc.UnhealthyThreshold, 2)
	if v := hc.GetCheckIntervalSec(); v < 1 || v > 300 {
		return errInvalidField("resource.checkIntervalSec", fmt.Sprint(v), "Must be between 1 and 300.")
	}
	if v := hc.GetTimeoutSec(); v < 1 || v > 300 {
		return errInvalidField("resource.timeoutSec", fmt.Sprint(v), "Must be between 1 and 300.")
	}
	if hc.GetTimeoutSec() > hc.GetCheckIntervalSec() {
		return errInvalidField("resource.timeoutSec", fmt.Sprint(hc.GetTimeoutSec()),
			"Timeout sec must be less than or equal to check interval sec.")
	}
	for name, v := range map[string]int32{"healthyThreshold": hc.GetHealthyThreshold(), "unhealthyThreshold": hc.GetUnhealthyThreshold()} {
		if v < 1 || v > 10 {
			return errInvalidField("resource."+name, fmt.Sprint(v), "Must be between 1 and 10.")
		}
	}
	var port **int32
	var spec **string
	field := "resource.tcpHealthCheck"
	if typ == "TCP" {
		port, spec = &hc.TcpHealthCheck.Port, &hc.TcpHealthCheck.PortSpecification
	} else {
		field = "resource.httpHealthCheck"
		port, spec = &hc.HttpHealthCheck.Port, &hc.HttpHealthCheck.PortSpecification
		if hc.HttpHealthCheck.GetRequestPath() == "" {
			hc.HttpHealthCheck.RequestPath = proto.String("/")
		}
		if p := hc.HttpHealthCheck.GetRequestPath(); p[0] != '/' {
			return errInvalidField(field+".requestPath", p, "Must start with '/'.")
		}
	}
	switch s := derefString(*spec); s {
	case "":
		if *port == nil {
			*port = proto.Int32(80)
		}
		*spec = proto.String("USE_FIXED_PORT")
	case "USE_FIXED_PORT":
		if *port == nil {
			*port = proto.Int32(80)
		}
	case "USE_SERVING_PORT", "USE_NAMED_PORT":
		if *port != nil {
			return errInvalidField(field+".port", fmt.Sprint(**port), "Port must not be set when portSpecification is "+s+".")
		}
	default:
		return errInvalidField(field+".portSpecification", s, "Must be USE_FIXED_PORT, USE_NAMED_PORT or USE_SERVING_PORT.")
	}
	if *port != nil && (**port < 1 || **port > 65535) {
		return errInvalidField(field+".port", fmt.Sprint(**port), "Must be between 1 and 65535.")
	}
	return nil
}

func derefString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *Server) hcInsert(r *http.Request) (proto.Message, *apiError) {
	coll, region, e := scopedCollection(r, "healthChecks")
	if e != nil {
		return nil, e
	}
	in := &computepb.HealthCheck{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := normalizeHealthCheck(in); e != nil {
		return nil, e
	}
	path := coll + "/" + in.GetName()
	stampNew(in, "compute#healthCheck", r.PathValue("project"), region, path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.healthChecks[path] != nil {
		return nil, errAlreadyExists(path)
	}
	return s.startOpLocked(r, scopeOf(r), "insert", path, in.GetId(), func() *apiError {
		if s.healthChecks[path] != nil {
			return errAlreadyExists(path)
		}
		s.healthChecks[path] = &healthCheck{pb: in, path: path}
		return nil
	}), nil
}

func (s *Server) hcGet(r *http.Request) (proto.Message, *apiError) {
	path, e := hcPath(r)
	if e != nil {
		return nil, e
	}
	return getResource(s, path, s.healthChecks, func(hc *healthCheck) *computepb.HealthCheck { return hc.pb })
}

func (s *Server) hcList(r *http.Request) (proto.Message, *apiError) {
	coll, _, e := scopedCollection(r, "healthChecks")
	if e != nil {
		return nil, e
	}
	items, next, e := listPage(s, r, s.healthChecks, func(hc *healthCheck) *computepb.HealthCheck { return hc.pb }, under[*healthCheck](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.HealthCheckList{Kind: proto.String("compute#healthCheckList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) hcDelete(r *http.Request) (proto.Message, *apiError) {
	path, e := hcPath(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hc := s.healthChecks[path]
	if hc == nil {
		return nil, errNotFound(path)
	}
	if user := s.hcUserLocked(path); user != "" {
		return nil, errInUse(path, user)
	}
	return s.startOpLocked(r, scopeOf(r), "delete", path, hc.pb.GetId(), func() *apiError {
		if s.healthChecks[path] == nil {
			return errNotFound(path)
		}
		if user := s.hcUserLocked(path); user != "" {
			return errInUse(path, user)
		}
		delete(s.healthChecks, path)
		return nil
	}), nil
}

func (s *Server) hcUserLocked(path string) string {
	var users []string
	for bsPath, bs := range s.backendServices {
		for _, h := range bs.pb.GetHealthChecks() {
			if ResourcePath(h) == path {
				users = append(users, bsPath)
			}
		}
	}
	sort.Strings(users)
	if len(users) == 0 {
		return ""
	}
	return users[0]
}

func (s *Server) hcPatch(r *http.Request) (proto.Message, *apiError) { return s.hcModify(r, true) }

func (s *Server) hcUpdate(r *http.Request) (proto.Message, *apiError) { return s.hcModify(r, false) }

// hcModify implements patch (JSON merge semantics) and update (replace).
func (s *Server) hcModify(r *http.Request, patch bool) (proto.Message, *apiError) {
	path, e := hcPath(r)
	if e != nil {
		return nil, e
	}
	in := &computepb.HealthCheck{}
	raw, e := readBody(r, in)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hc := s.healthChecks[path]
	if hc == nil {
		return nil, errNotFound(path)
	}
	if in.Name != nil && in.GetName() != hc.pb.GetName() {
		return nil, errInvalidField("resource.name", in.GetName(), "The name of a resource cannot be changed.")
	}
	var next *computepb.HealthCheck
	if patch {
		next = proto.CloneOf(hc.pb)
		if e := mergePatch(next, raw, in); e != nil {
			return nil, e
		}
		// Switching type through patch replaces the type-specific block.
		if in.Type != nil && in.GetType() != hc.pb.GetType() {
			if in.GetType() != "TCP" {
				next.TcpHealthCheck = in.TcpHealthCheck
			}
			if in.GetType() != "HTTP" {
				next.HttpHealthCheck = in.HttpHealthCheck
			}
		}
	} else {
		next = in
		next.Name = hc.pb.Name
	}
	next.Kind, next.Id, next.CreationTimestamp, next.SelfLink, next.Region = hc.pb.Kind, hc.pb.Id, hc.pb.CreationTimestamp, hc.pb.SelfLink, hc.pb.Region
	if e := normalizeHealthCheck(next); e != nil {
		return nil, e
	}
	opType := "update"
	if patch {
		opType = "patch"
	}
	return s.startOpLocked(r, scopeOf(r), opType, path, hc.pb.GetId(), func() *apiError {
		cur := s.healthChecks[path]
		if cur == nil {
			return errNotFound(path)
		}
		cur.pb = next
		return nil
	}), nil
}

// mergePatch applies the fields present in raw (a JSON object whose decoded
// form is src) onto dst: nested objects merge recursively, everything else
// (scalars, lists, maps) replaces, and null clears — JSON merge patch, which
// is how GCE's PATCH methods behave.
func mergePatch(dst proto.Message, raw []byte, src proto.Message) *apiError {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return errInvalid("Invalid JSON payload received. %v", err)
	}
	mergeFields(dst.ProtoReflect(), src.ProtoReflect(), fields)
	return nil
}

func mergeFields(dst, src protoreflect.Message, fields map[string]json.RawMessage) {
	desc := dst.Descriptor().Fields()
	for name, val := range fields {
		fd := desc.ByJSONName(name)
		if fd == nil {
			fd = desc.ByTextName(name)
		}
		if fd == nil {
			continue
		}
		if string(val) == "null" {
			dst.Clear(fd)
			continue
		}
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() && len(val) > 0 && val[0] == '{' {
			var sub map[string]json.RawMessage
			if json.Unmarshal(val, &sub) == nil {
				mergeFields(dst.Mutable(fd).Message(), src.Get(fd).Message(), sub)
				continue
			}
		}
		if src.Has(fd) {
			dst.Set(fd, src.Get(fd))
		} else {
			dst.Clear(fd)
		}
	}
}
