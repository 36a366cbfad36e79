package computesim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// IAM permission checks (Options.Permissions).
//
// Each method needs the permission Compute Engine's IAM permissions
// reference lists for it
// (https://cloud.google.com/compute/docs/reference/rest/v1/permissions):
// compute.<collection>.<verb>, where insert is create, patch and update
// are update, and reads of a resource's parts (getHealth,
// listNetworkEndpoints) and waiting for an operation are get. A request
// that makes one resource refer to another also needs permission to use
// the other, as the IAM roles and permissions page explains with
// compute.instances.use and the like
// (https://cloud.google.com/compute/docs/access/iam): use on backend
// services, URL maps, target proxies, NEGs, networks, subnetworks,
// addresses and SSL policies, useReadOnly on health checks, get on SSL
// certificates, and attaching an endpoint needs use on the VM it names.

// requiredVerb maps a method's verb to the permission verb it needs, for
// those whose names differ.
var requiredVerb = map[string]string{
	"insert": "create", "patch": "update", "aggregatedList": "list",
	"getHealth": "get", "listNetworkEndpoints": "get", "wait": "get",
}

// Collections whose regional form is its own collection
// (regionBackendServices); the others keep their name in every scope.
var regionalCollections = map[string]bool{
	"healthChecks": true, "backendServices": true, "urlMaps": true, "targetHttpProxies": true,
	"targetHttpsProxies": true, "targetTcpProxies": true, "sslCertificates": true, "sslPolicies": true,
	"networkEndpointGroups": true,
}

// useVerb is the permission verb referring to a resource of a collection
// needs; use unless listed.
var useVerb = map[string]string{
	"healthChecks": "useReadOnly", "regionHealthChecks": "useReadOnly",
	"sslCertificates": "get", "regionSslCertificates": "get",
}

var standardVerbs = map[string]bool{"get": true, "list": true, "insert": true, "delete": true, "patch": true, "update": true, "aggregatedList": true}

// grant is one permission needed on one resource.
type grant struct {
	permission string
	resource   string // projects/... path
}

// authorize answers 403 forbidden, naming the first permission the
// caller lacks, as GCE does; nil when the caller holds them all or is not
// restricted.
func (s *Server) authorize(r *http.Request, method string) *apiError {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.permMu.Lock()
	granted, restricted := s.perms[token]
	s.permMu.Unlock()
	if !restricted {
		return nil
	}
	needed, err := requiredGrants(r, method)
	if err != nil {
		return err
	}
	needed = append(needed, s.addressGrants(r, method)...)
	for _, g := range needed {
		if !slices.Contains(granted, g.permission) {
			return &apiError{http.StatusForbidden, "forbidden",
				fmt.Sprintf("Required '%s' permission for '%s'", g.permission, g.resource)}
		}
	}
	return nil
}

// addressGrants: a forwarding rule whose IPAddress is the literal IP of a
// reserved address uses that address (compute.addresses.use or
// compute.globalAddresses.use), as the static address page describes
// (https://cloud.google.com/compute/docs/ip-addresses/reserve-static-external-ip-address).
// A reference to the address by path is covered by requiredGrants.
func (s *Server) addressGrants(r *http.Request, method string) []grant {
	if method != "forwardingRules.insert" && method != "globalForwardingRules.insert" {
		return nil
	}
	b, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	var rule struct {
		IPAddress string
	}
	if err != nil || json.Unmarshal(b, &rule) != nil {
		return nil
	}
	ip, err := netip.ParseAddr(rule.IPAddress)
	if err != nil {
		return nil
	}
	perm, scope := "compute.globalAddresses.use", "/global/addresses/"
	if method == "forwardingRules.insert" {
		perm, scope = "compute.addresses.use", "/regions/"+r.PathValue("region")+"/addresses/"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for path, a := range s.addresses {
		if a.ip == ip && strings.Contains(path, scope) {
			return []grant{{permission: perm, resource: path}}
		}
	}
	return nil
}

// SetPermissions replaces the permissions of the caller with token (see
// Options.Permissions); nil lifts every restriction from it.
func (s *Server) SetPermissions(token string, permissions []string) {
	s.permMu.Lock()
	defer s.permMu.Unlock()
	if permissions == nil {
		delete(s.perms, token)
		return
	}
	s.perms[token] = slices.Clone(permissions)
}

// requiredGrants lists the permissions the call needs: its method's own
// on the resource it names (for insert, the resource it creates), then
// use of every resource its body refers to. The body is read and put
// back for the handler.
func requiredGrants(r *http.Request, method string) ([]grant, *apiError) {
	coll, methodVerb, _ := strings.Cut(method, ".")
	verb := cmp.Or(requiredVerb[methodVerb], methodVerb)
	self := ResourcePath(r.URL.Path)
	if !standardVerbs[methodVerb] {
		// A custom method's verb (…/getHealth) is not part of the resource.
		self = strings.TrimSuffix(self, "/"+methodVerb)
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			return nil, errInvalid("Invalid JSON payload received. %v", err)
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	var doc any
	if len(bytes.TrimSpace(body)) > 0 && json.Unmarshal(body, &doc) != nil {
		doc = nil // the handler answers the malformed body
	}
	if verb == "create" {
		if m, ok := doc.(map[string]any); ok {
			if name, ok := m["name"].(string); ok {
				self += "/" + name
			}
		}
	}
	out := []grant{{permission: "compute." + coll + "." + verb, resource: self}}
	seen := map[string]bool{}
	if m, ok := doc.(map[string]any); ok {
		// network and subnetwork may be bare names: qualify them so
		// using them needs permission too.
		parts := strings.Split(self, "/") // projects/p/{zones,regions}/x/...
		if n, _ := m["network"].(string); n != "" && !strings.Contains(n, "/") {
			m["network"] = "projects/" + parts[1] + "/global/networks/" + n
		}
		if n, _ := m["subnetwork"].(string); n != "" && !strings.Contains(n, "/") && len(parts) > 3 && parts[2] != "global" {
			region := parts[3]
			if i := strings.LastIndex(region, "-"); parts[2] == "zones" && i > 0 {
				region = region[:i] // us-central1-a is in us-central1
			}
			m["subnetwork"] = "projects/" + parts[1] + "/regions/" + region + "/subnetworks/" + n
		}
	}
	walkStrings(doc, func(v string) {
		ref, refColl, ok := resourceRef(v)
		if !ok || ref == self || seen[ref] {
			return
		}
		seen[ref] = true
		out = append(out, grant{permission: "compute." + refColl + "." + cmp.Or(useVerb[refColl], "use"), resource: ref})
	})
	// The body's map order is random: name the same missing grant
	// every time.
	slices.SortFunc(out[1:], func(a, b grant) int { return cmp.Compare(a.resource, b.resource) })
	if method == "networkEndpointGroups.attachNetworkEndpoints" {
		zone := strings.Split(self, "/")[3] // projects/p/zones/z/networkEndpointGroups/n
		project := strings.Split(self, "/")[1]
		if m, ok := doc.(map[string]any); ok {
			eps, _ := m["networkEndpoints"].([]any)
			for _, ep := range eps {
				m, _ := ep.(map[string]any)
				if inst, _ := m["instance"].(string); inst != "" && !strings.Contains(inst, "/") {
					ref := "projects/" + project + "/zones/" + zone + "/instances/" + inst
					if !seen[ref] {
						seen[ref] = true
						out = append(out, grant{permission: "compute.instances.use", resource: ref})
					}
				}
			}
		}
	}
	return out, nil
}

// resourceRef reads a resource URL or partial path
// (…projects/p/global/backendServices/b) and returns its path from
// "projects/" and the permission collection it belongs to (regional
// collections prefixed with region, global addresses as globalAddresses).
func resourceRef(v string) (string, string, bool) {
	if !strings.Contains(v, "projects/") {
		return "", "", false
	}
	path := ResourcePath(v)
	parts := strings.Split(path, "/")
	// projects/p/global/coll/name or projects/p/{regions,zones}/x/coll/name
	var coll string
	switch {
	case len(parts) == 5 && parts[2] == "global":
		coll = parts[3]
		if coll == "addresses" {
			coll = "globalAddresses"
		}
	case len(parts) == 6 && parts[2] == "regions":
		coll = parts[4]
		if regionalCollections[coll] {
			coll = "region" + strings.ToUpper(coll[:1]) + coll[1:]
		}
	case len(parts) == 6 && parts[2] == "zones":
		coll = parts[4]
	default:
		return "", "", false
	}
	if coll == "" || parts[len(parts)-1] == "" {
		return "", "", false
	}
	return path, coll, true
}

// walkStrings calls f with every string in a decoded JSON document.
func walkStrings(v any, f func(string)) {
	switch x := v.(type) {
	case string:
		f(x)
	case []any:
		for _, e := range x {
			walkStrings(e, f)
		}
	case map[string]any:
		for _, e := range x {
			walkStrings(e, f)
		}
	}
}

// AuthTransport sends every request through base (http.DefaultTransport
// when nil) with the Bearer token that Options.Permissions knows the
// caller by. Give it to a client with option.WithHTTPClient.
func AuthTransport(token string, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return bearer{token: token, base: base}
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}
