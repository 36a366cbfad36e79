package computesim

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// CanonicalPrefix is the prefix of every selfLink and URL the emulator
// emits, the same as GCE's, so code that compares links behaves the same
// against the emulator and the cloud.
const CanonicalPrefix = "https://www.googleapis.com/compute/v1/"

// ResourcePath reduces any form of a Compute resource reference to its
// relative path "projects/p/zones/z/networkEndpointGroups/n": it strips
// https://www.googleapis.com/compute/v1/, https://compute.googleapis.com/...,
// the emulator's own http://127.0.0.1:port/compute/v1/ prefix, or nothing
// when the reference is already relative. Compare references through it.
func ResourcePath(ref string) string {
	ref = strings.TrimSpace(ref)
	if i := strings.Index(ref, "projects/"); i >= 0 && (i == 0 || ref[i-1] == '/') {
		ref = ref[i:]
	}
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		ref = ref[:i]
	}
	return strings.TrimSuffix(ref, "/")
}

func selfLink(path string) string { return CanonicalPrefix + path }

// qualify turns a reference into a resource path: full URLs and
// "projects/..." paths as ResourcePath does, "global/healthChecks/x" style
// paths within project, and bare names within defaultCollection.
func qualify(project, ref, defaultCollection string) string {
	p := ResourcePath(ref)
	switch {
	case strings.HasPrefix(p, "projects/"):
		return p
	case strings.Contains(p, "/"):
		return "projects/" + project + "/" + strings.TrimPrefix(p, "/")
	}
	return "projects/" + project + "/" + defaultCollection + "/" + p
}

// resourceKind names the collection of a path for messages, like GCE's
// "The network_endpoint_group resource ...".
func resourceKind(path string) string {
	parts := strings.Split(path, "/")
	if len(parts) < 2 {
		return "resource"
	}
	switch parts[len(parts)-2] {
	case "networkEndpointGroups":
		return "network_endpoint_group"
	case "backendServices":
		return "backend_service"
	case "healthChecks":
		return "health_check"
	case "targetTcpProxies":
		return "target_tcp_proxy"
	case "forwardingRules":
		return "forwarding_rule"
	case "instances":
		return "instance"
	case "urlMaps":
		return "url_map"
	case "sslCertificates":
		return "ssl_certificate"
	case "targetHttpProxies":
		return "target_http_proxy"
	case "targetHttpsProxies":
		return "target_https_proxy"
	case "addresses":
		return "address"
	}
	return "resource"
}

// scopedCollection is the collection a request addresses: global, or
// regional when the request path has a region (which must look valid).
func scopedCollection(r *http.Request, collection string) (coll, region string, e *apiError) {
	project, region := r.PathValue("project"), r.PathValue("region")
	if region == "" {
		return fmt.Sprintf("projects/%s/global/%s", project, collection), "", nil
	}
	if e := validateRegion(region); e != nil {
		return "", "", e
	}
	return fmt.Sprintf("projects/%s/regions/%s/%s", project, region, collection), region, nil
}

// scopeOf is the operation scope of a global or regional request.
func scopeOf(r *http.Request) opScope {
	return opScope{project: r.PathValue("project"), region: r.PathValue("region")}
}

// scopePrefix is "global" or "regions/r", for qualifying bare names.
func scopePrefix(region string) string {
	if region == "" {
		return "global"
	}
	return "regions/" + region
}

// sameScope reports whether a resource path lies in the given scope: global
// when region is empty, else that region.
func sameScope(path, region string) bool {
	if region == "" {
		return strings.Contains(path, "/global/")
	}
	return strings.Contains(path, "/regions/"+region+"/")
}

// lastSegment is the resource name at the end of a path.
func lastSegment(path string) string {
	if i := strings.LastIndex(path, "/"); i >= 0 {
		return path[i+1:]
	}
	return path
}

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

func validateName(name string) *apiError {
	if name == "" {
		return errInvalid("Invalid value for field 'resource.name': ''. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
	}
	if len(name) > 63 || !nameRE.MatchString(name) {
		return errInvalidField("resource.name", name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
	}
	return nil
}

var zoneRE = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+-[a-z]$`)
var regionRE = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]+$`)

func validateZone(zone string) *apiError {
	if !zoneRE.MatchString(zone) {
		return errInvalidField("zone", zone, "Unknown zone.")
	}
	return nil
}

func validateRegion(region string) *apiError {
	if !regionRE.MatchString(region) {
		return errInvalidField("region", region, "Unknown region.")
	}
	return nil
}

func regionOfZone(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

func nowStamp() string { return time.Now().Format("2006-01-02T15:04:05.000-07:00") }

func newID() uint64 { return rand.Uint64() >> 1 }

// stampNew sets the output fields GCE gives a resource it creates: its
// kind, a new id, the creation time, its selfLink and, for a regional
// one, its region's link. Every one must be a field of m (a name that is
// not panics, so no misspelt field goes unset unnoticed).
func stampNew(m proto.Message, kind, project, region, path string) {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	set := func(name string, v protoreflect.Value) { r.Set(fields.ByName(protoreflect.Name(name)), v) }
	set("kind", protoreflect.ValueOfString(kind))
	set("id", protoreflect.ValueOfUint64(newID()))
	set("creation_timestamp", protoreflect.ValueOfString(nowStamp()))
	set("self_link", protoreflect.ValueOfString(selfLink(path)))
	if region != "" {
		set("region", protoreflect.ValueOfString(selfLink(fmt.Sprintf("projects/%s/regions/%s", project, region))))
	}
}

// normalizeNetworkRef turns "default", "global/networks/x", a relative or a
// full URL into the canonical URL of a network or subnetwork.
func normalizeRef(project, ref, collection string, scope string) string {
	if ref == "" {
		return ""
	}
	if strings.Contains(ref, "projects/") {
		return selfLink(ResourcePath(ref))
	}
	if strings.Contains(ref, "/") {
		return selfLink("projects/" + project + "/" + strings.TrimPrefix(ref, "/"))
	}
	return selfLink(fmt.Sprintf("projects/%s/%s/%s/%s", project, scope, collection, ref))
}

// ---- pagination ----

// getResource answers a get call with a copy of the resource at path.
func getResource[R any, T proto.Message](s *Server, path string, resources map[string]R, message func(R) T) (proto.Message, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := resources[path]
	if !ok {
		return nil, errNotFound(path)
	}
	return proto.CloneOf(message(res)), nil
}

// deleteLocked answers a delete call for a resource that other resources
// may use: 404 when it is missing, 400 resourceInUseByAnotherResource while
// user() names a user (checked again when the operation runs). after, if
// set, runs once the resource is gone. Callers hold s.mu.
func deleteLocked[R any](s *Server, r *http.Request, path string, resources map[string]R, id func(R) uint64, user func() string, after func(R)) (proto.Message, *apiError) {
	res, ok := resources[path]
	if !ok {
		return nil, errNotFound(path)
	}
	if u := user(); u != "" {
		return nil, errInUse(path, u)
	}
	return s.startOpLocked(r, scopeOf(r), "delete", path, id(res), func() *apiError {
		cur, ok := resources[path]
		if !ok {
			return errNotFound(path)
		}
		if u := user(); u != "" {
			return errInUse(path, u)
		}
		delete(resources, path)
		if after != nil {
			after(cur)
		}
		return nil
	}), nil
}

// listed is what a list call returns items of.
type listed interface {
	proto.Message
	GetName() string
}

// listPage answers a list call: the resources in the listed collection
// that pass the request's filter, copied under s.mu, in name order, one
// page of them and the token of the next.
func listPage[R any, T listed](s *Server, r *http.Request, resources map[string]R, message func(R) T, in func(path string, res R) bool) ([]T, *string, *apiError) {
	q := r.URL.Query()
	cs, e := parseFilter(q.Get("filter"))
	if e != nil {
		return nil, nil, e
	}
	var items []T
	s.mu.Lock()
	for path, res := range resources {
		if pb := message(res); in(path, res) && matchFilter(cs, pb) {
			items = append(items, proto.CloneOf(pb))
		}
	}
	s.mu.Unlock()
	sort.Slice(items, func(i, j int) bool { return items[i].GetName() < items[j].GetName() })
	start, end, next, e := pageBounds(len(items), q.Get("maxResults"), q.Get("pageToken"))
	if e != nil {
		return nil, nil, e
	}
	var token *string
	if next != "" {
		token = proto.String(next)
	}
	return items[start:end], token, nil
}

// under selects resources whose path lies in a collection.
func under[R any](collection string) func(string, R) bool {
	return func(path string, _ R) bool { return strings.HasPrefix(path, collection+"/") }
}

func pageBounds(n int, maxResults, pageToken string) (start, end int, next string, e *apiError) {
	size := 500
	if maxResults != "" {
		v, err := strconv.Atoi(maxResults)
		if err != nil || v < 0 {
			return 0, 0, "", errInvalidField("maxResults", maxResults, "Must be a non-negative integer.")
		}
		if v > 0 && v < 500 {
			size = v
		}
	}
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		v, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "offset:"))
		if err != nil || err2 != nil || v < 0 || !strings.HasPrefix(string(b), "offset:") {
			return 0, 0, "", errInvalidField("pageToken", pageToken, "Invalid page token.")
		}
		start = v
	}
	if start > n {
		start = n
	}
	end = start + size
	if end >= n {
		end = n
	} else {
		next = base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
	}
	return start, end, next, nil
}
