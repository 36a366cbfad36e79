package computesim

import (
	"fmt"
	"net/http"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

type urlMap struct {
	pb     *computepb.UrlMap
	path   string
	region string // empty for global
	gen    uint64
}

func urlMapPath(r *http.Request) (string, string, *apiError) {
	coll, region, e := scopedCollection(r, "urlMaps")
	if e != nil {
		return "", "", e
	}
	return coll + "/" + r.PathValue("um"), region, nil
}

// urlMapServices lists the resource paths of every backend service a URL
// map routes to, in the order they appear.
func urlMapServices(um *computepb.UrlMap) []string {
	var out []string
	add := func(ref string) {
		if ref != "" {
			out = append(out, ResourcePath(ref))
		}
	}
	add(um.GetDefaultService())
	for _, pm := range um.GetPathMatchers() {
		add(pm.GetDefaultService())
		for _, pr := range pm.GetPathRules() {
			add(pr.GetService())
		}
	}
	return out
}

// normalizeURLMapLocked validates a URL map against the current resources
// and canonicalises its service references. Only the routing that podlb
// uses is emulated: host rules, path matchers, path rules and redirects;
// route rules and route actions answer 400 rather than being ignored.
func (s *Server) normalizeURLMapLocked(um *computepb.UrlMap, project, region string) *apiError {
	if e := validateName(um.GetName()); e != nil {
		return e
	}
	if um.DefaultRouteAction != nil || um.HeaderAction != nil || um.DefaultCustomErrorResponsePolicy != nil {
		return errInvalid("Invalid value for field 'resource': only defaultService, defaultUrlRedirect, hostRules, pathMatchers and tests are emulated in URL maps.")
	}
	scheme := ""
	service := func(field string, ref *string) *apiError {
		p := qualify(project, *ref, scopePrefix(region)+"/backendServices")
		if !strings.Contains(p, "/backendServices/") {
			return errInvalidField(field, *ref, "Only backend services are emulated as URL map services.")
		}
		bs := s.backendServices[p]
		if bs == nil {
			return errNotFound(p)
		}
		if !sameScope(p, region) {
			return errInvalidField(field, *ref, "The backend service must be in the same scope (global or region) as the URL map.")
		}
		if !isHTTPFamily(bs.pb.GetProtocol()) {
			return errInvalidField(field, *ref, "The backend service of a URL map must have protocol HTTP, HTTPS or HTTP2.")
		}
		if scheme == "" {
			scheme = bs.pb.GetLoadBalancingScheme()
		} else if bs.pb.GetLoadBalancingScheme() != scheme {
			return errInvalidField(field, *ref, fmt.Sprintf("All backend services of a URL map must have the same load balancing scheme; this one is %s, others are %s.",
				bs.pb.GetLoadBalancingScheme(), scheme))
		}
		*ref = selfLink(p)
		return nil
	}
	// target checks one place that routes: exactly one of service and
	// redirect, unless optional (the URL map's own default may be neither).
	target := func(field string, svc *string, redirect *computepb.HttpRedirectAction, optional bool) *apiError {
		switch {
		case svc != nil && redirect != nil:
			return errInvalid("Invalid value for field '%s': only one of service and urlRedirect may be set.", field)
		case svc != nil:
			return service(field+"Service", svc)
		case redirect != nil:
			return validateRedirect(field+"UrlRedirect", redirect)
		case !optional:
			return errInvalid("Invalid value for field '%s': one of service and urlRedirect must be set.", field)
		}
		return nil
	}
	if e := target("resource.default", um.DefaultService, um.DefaultUrlRedirect, true); e != nil {
		return e
	}
	matchers := map[string]bool{}
	for i, pm := range um.GetPathMatchers() {
		field := fmt.Sprintf("resource.pathMatchers[%d]", i)
		if pm.GetName() == "" {
			return errInvalid("Required field '%s.name' not specified", field)
		}
		if matchers[pm.GetName()] {
			return errInvalidField(field+".name", pm.GetName(), "Duplicate path matcher name.")
		}
		matchers[pm.GetName()] = true
		if len(pm.GetRouteRules()) > 0 || pm.DefaultRouteAction != nil || pm.HeaderAction != nil {
			return errInvalid("Invalid value for field '%s': route rules and route actions are not emulated.", field)
		}
		if e := target(field+".default", pm.DefaultService, pm.DefaultUrlRedirect, false); e != nil {
			return e
		}
		paths := map[string]bool{}
		for j, pr := range pm.GetPathRules() {
			rf := fmt.Sprintf("%s.pathRules[%d]", field, j)
			if pr.RouteAction != nil || pr.CustomErrorResponsePolicy != nil {
				return errInvalid("Invalid value for field '%s': route actions are not emulated.", rf)
			}
			if len(pr.GetPaths()) == 0 {
				return errInvalid("Required field '%s.paths' not specified", rf)
			}
			for k, p := range pr.GetPaths() {
				if e := validatePathPattern(fmt.Sprintf("%s.paths[%d]", rf, k), p); e != nil {
					return e
				}
				if paths[p] {
					return errInvalidField(fmt.Sprintf("%s.paths[%d]", rf, k), p, "Duplicate path in path matcher '"+pm.GetName()+"'.")
				}
				paths[p] = true
			}
			if pr.Service != nil && pr.UrlRedirect != nil || pr.Service == nil && pr.UrlRedirect == nil {
				return errInvalid("Invalid value for field '%s': exactly one of service and urlRedirect must be set.", rf)
			}
			if pr.Service != nil {
				if e := service(rf+".service", pr.Service); e != nil {
					return e
				}
			} else if e := validateRedirect(rf+".urlRedirect", pr.UrlRedirect); e != nil {
				return e
			}
		}
	}
	hosts := map[string]bool{}
	for i, hr := range um.GetHostRules() {
		field := fmt.Sprintf("resource.hostRules[%d]", i)
		if len(hr.GetHosts()) == 0 {
			return errInvalid("Required field '%s.hosts' not specified", field)
		}
		for j, h := range hr.GetHosts() {
			if e := validateHostPattern(fmt.Sprintf("%s.hosts[%d]", field, j), h); e != nil {
				return e
			}
			h = strings.ToLower(h)
			if hosts[h] {
				return errInvalidField(fmt.Sprintf("%s.hosts[%d]", field, j), h, "Duplicate host; a host may appear in one host rule only.")
			}
			hosts[h] = true
		}
		if !matchers[hr.GetPathMatcher()] {
			return errInvalidField(field+".pathMatcher", hr.GetPathMatcher(), "No path matcher of that name exists in the URL map.")
		}
	}
	for i, t := range um.GetTests() {
		if t.GetHost() == "" || t.GetPath() == "" {
			return errInvalid("Invalid value for field 'resource.tests[%d]': host and path are required.", i)
		}
		if t.Service != nil {
			t.Service = proto.String(selfLink(qualify(project, t.GetService(), scopePrefix(region)+"/backendServices")))
		}
	}
	return nil
}

// validatePathPattern accepts GCE's path rule paths: they start with '/',
// have no query or fragment, and '*' only as a final "/*".
func validatePathPattern(field, p string) *apiError {
	if !strings.HasPrefix(p, "/") {
		return errInvalidField(field, p, "Path must start with '/'.")
	}
	if strings.ContainsAny(p, "?#") {
		return errInvalidField(field, p, "Path must not contain '?' or '#'.")
	}
	if i := strings.Index(p, "*"); i >= 0 && (i != len(p)-1 || !strings.HasSuffix(p, "/*")) {
		return errInvalidField(field, p, "'*' is only allowed as the last character, following a '/'.")
	}
	return nil
}

// validateHostPattern accepts "*", "*.suffix" and plain host names.
func validateHostPattern(field, h string) *apiError {
	if h == "*" {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.ContainsAny(name, "*/:?# ") {
		return errInvalidField(field, h, "Host must be a host name, optionally starting with '*.', or '*'.")
	}
	return nil
}

var redirectCodes = map[string]int{
	"MOVED_PERMANENTLY_DEFAULT": http.StatusMovedPermanently,
	"FOUND":                     http.StatusFound,
	"SEE_OTHER":                 http.StatusSeeOther,
	"TEMPORARY_REDIRECT":        http.StatusTemporaryRedirect,
	"PERMANENT_REDIRECT":        http.StatusPermanentRedirect,
}

func validateRedirect(field string, rd *computepb.HttpRedirectAction) *apiError {
	if rd.PrefixRedirect != nil {
		return errInvalid("Invalid value for field '%s.prefixRedirect': prefix redirects are not emulated.", field)
	}
	if c := rd.GetRedirectResponseCode(); c != "" && redirectCodes[c] == 0 {
		return errInvalidField(field+".redirectResponseCode", c, "Must be MOVED_PERMANENTLY_DEFAULT, FOUND, SEE_OTHER, TEMPORARY_REDIRECT or PERMANENT_REDIRECT.")
	}
	if p := rd.GetPathRedirect(); p != "" && !strings.HasPrefix(p, "/") {
		return errInvalidField(field+".pathRedirect", p, "Must start with '/'.")
	}
	return nil
}

// ---- API ----

// prepareURLMapLocked normalises a URL map and runs its tests, which GCE
// does on every insert and update.
func (s *Server) prepareURLMapLocked(um *computepb.UrlMap, project, region string) *apiError {
	if e := s.normalizeURLMapLocked(um, project, region); e != nil {
		return e
	}
	if fs := runURLMapTests(um); len(fs) > 0 {
		return errInvalid("Invalid value for field 'resource.tests': %d URL map test(s) failed, the first for host '%s' path '%s'.",
			len(fs), fs[0].GetHost(), fs[0].GetPath())
	}
	return nil
}

func (s *Server) umInsert(r *http.Request) (proto.Message, *apiError) {
	coll, region, e := scopedCollection(r, "urlMaps")
	if e != nil {
		return nil, e
	}
	project := r.PathValue("project")
	in := &computepb.UrlMap{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.prepareURLMapLocked(in, project, region); e != nil {
		return nil, e
	}
	path := coll + "/" + in.GetName()
	if s.urlMaps[path] != nil {
		return nil, errAlreadyExists(path)
	}
	stampNew(in, "compute#urlMap", project, region, path)
	in.Fingerprint = proto.String(fingerprint(in, 1))
	return s.startOpLocked(r, scopeOf(r), "insert", path, in.GetId(), func() *apiError {
		if s.urlMaps[path] != nil {
			return errAlreadyExists(path)
		}
		if e := s.normalizeURLMapLocked(in, project, region); e != nil {
			return e
		}
		s.urlMaps[path] = &urlMap{pb: in, path: path, region: region, gen: 1}
		return nil
	}), nil
}

func (s *Server) umGet(r *http.Request) (proto.Message, *apiError) {
	path, _, e := urlMapPath(r)
	if e != nil {
		return nil, e
	}
	return getResource(s, path, s.urlMaps, func(um *urlMap) *computepb.UrlMap { return um.pb })
}

func (s *Server) umList(r *http.Request) (proto.Message, *apiError) {
	coll, _, e := scopedCollection(r, "urlMaps")
	if e != nil {
		return nil, e
	}
	items, next, e := listPage(s, r, s.urlMaps, func(um *urlMap) *computepb.UrlMap { return um.pb }, under[*urlMap](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.UrlMapList{Kind: proto.String("compute#urlMapList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) umDelete(r *http.Request) (proto.Message, *apiError) {
	path, _, e := urlMapPath(r)
	if e != nil {
		return nil, e
	}
	user := func() string {
		var users []string
		for p, hp := range s.httpProxies {
			if ResourcePath(hp.pb.GetUrlMap()) == path {
				users = append(users, p)
			}
		}
		return firstUser(users)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return deleteLocked(s, r, path, s.urlMaps, func(um *urlMap) uint64 { return um.pb.GetId() }, user, nil)
}

func (s *Server) umPatch(r *http.Request) (proto.Message, *apiError) { return s.umModify(r, true) }

func (s *Server) umUpdate(r *http.Request) (proto.Message, *apiError) { return s.umModify(r, false) }

// umModify implements patch (merge) and update (replace). GCE documents
// that an up-to-date fingerprint must be provided to change a URL map, so
// a missing or stale one answers 412 conditionNotMet.
func (s *Server) umModify(r *http.Request, patch bool) (proto.Message, *apiError) {
	project := r.PathValue("project")
	path, region, e := urlMapPath(r)
	if e != nil {
		return nil, e
	}
	in := &computepb.UrlMap{}
	raw, e := readBody(r, in)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	um := s.urlMaps[path]
	if um == nil {
		return nil, errNotFound(path)
	}
	if in.GetFingerprint() != um.pb.GetFingerprint() {
		return nil, errConditionNotMet("URL map " + path)
	}
	if in.Name != nil && in.GetName() != um.pb.GetName() {
		return nil, errInvalidField("resource.name", in.GetName(), "The name of a resource cannot be changed.")
	}
	next := in
	if patch {
		next = proto.CloneOf(um.pb)
		if e := mergePatch(next, raw, in); e != nil {
			return nil, e
		}
	}
	next.Name = um.pb.Name
	next.Kind, next.Id, next.CreationTimestamp, next.SelfLink, next.Region = um.pb.Kind, um.pb.Id, um.pb.CreationTimestamp, um.pb.SelfLink, um.pb.Region
	if e := s.prepareURLMapLocked(next, project, region); e != nil {
		return nil, e
	}
	opType := "update"
	if patch {
		opType = "patch"
	}
	return s.startOpLocked(r, scopeOf(r), opType, path, um.pb.GetId(), func() *apiError {
		cur := s.urlMaps[path]
		if cur == nil {
			return errNotFound(path)
		}
		if e := s.normalizeURLMapLocked(next, project, region); e != nil {
			return e
		}
		cur.gen++
		next.Fingerprint = proto.String(fingerprint(next, cur.gen))
		cur.pb = next
		return nil
	}), nil
}

// umValidate implements urlMaps.validate: it loads the given URL map as
// insert would (the URL map named in the path need not exist) and runs its
// tests, answering loadErrors or testFailures instead of an error.
func (s *Server) umValidate(r *http.Request) (proto.Message, *apiError) {
	_, region, e := urlMapPath(r)
	if e != nil {
		return nil, e
	}
	in := &computepb.UrlMapsValidateRequest{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if in.Resource == nil {
		return nil, errInvalid("Required field 'resource' not specified")
	}
	um := in.Resource
	res := &computepb.UrlMapValidationResult{}
	s.mu.Lock()
	le := s.normalizeURLMapLocked(um, r.PathValue("project"), region)
	s.mu.Unlock()
	if le != nil {
		res.LoadSucceeded = proto.Bool(false)
		res.LoadErrors = []string{le.message}
		return &computepb.UrlMapsValidateResponse{Result: res}, nil
	}
	res.LoadSucceeded = proto.Bool(true)
	res.TestFailures = runURLMapTests(um)
	res.TestPassed = proto.Bool(len(res.TestFailures) == 0)
	return &computepb.UrlMapsValidateResponse{Result: res}, nil
}
