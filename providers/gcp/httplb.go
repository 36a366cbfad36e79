package gcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
)

var _ providers.HTTPBalancers = (*Provider)(nil)

// Defaults of the load-balancer resources, Compute's own, stated so that
// a resource can be compared with what podlb wants.
const (
	defaultCheckIntervalSec  = 5
	defaultCheckTimeoutSec   = 5
	defaultBackendTimeoutSec = 30
	defaultHealthCheckPath   = "/"
	// defaultDrainingTimeoutSec is podlb's, not Compute's: Compute's 0
	// cuts requests in flight to an endpoint the moment it is detached,
	// which a rolling update does to every old pod. Ten seconds lets them
	// finish; pods need a preStop at least that long (podlb warns when
	// they have less).
	defaultDrainingTimeoutSec = 10
)

// Suffixes of the resources of one load balancer, after its base name.
const (
	kindURLMap      = "um"
	kindRedirectMap = "rd" // the HTTP side's URL map with redirectToHTTPS
	kindHTTPProxy   = "hp"
	kindHTTPSProxy  = "sp"
	kindHTTPRule    = "fh"
	kindHTTPSRule   = "fs"
	kindNoMatch     = "nm" // the backend service of requests no route matches
	kindBackend     = "bs"
	kindHealthCheck = "hc"
	kindBackendNEG  = "neg"
)

const (
	// maxAttemptsOn412 bounds the read-and-retry after a stale fingerprint.
	maxAttemptsOn412 = 5
	hashLength       = 8
	generatedPrefix  = "pl"
	// Path matcher names: the routes for any host, and h<hash of host>.
	anyHostMatcher    = "any"
	hostMatcherPrefix = "h"
	// Backends a route is about to switch to (HTTPRoute.Warming) sit
	// behind a host of the reserved .invalid domain, which no client can
	// resolve: the URL map then uses their backend services, so their
	// endpoints are health-checked before the switch, and no request
	// reaches them early.
	warmingMatcher = "warming"
	warmingHost    = "warming.podlb.invalid"
)

// ParseBalancerSpec implements providers.HTTPBalancers.
func (p *Provider) ParseBalancerSpec(raw string) (any, error) {
	s, err := ParseLoadBalancerSpec(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// balancerOwner is the ownership record podlb writes as the description
// of every resource it creates for a load balancer; a resource is only
// modified or deleted when its description decodes to exactly the record
// of this cluster and key.
type balancerOwner struct {
	ManagedBy    string `json:"managedBy"`
	Cluster      string `json:"cluster"`
	Namespace    string `json:"namespace,omitempty"`
	LoadBalancer string `json:"loadBalancer"`
	// Kind is tcpKind for a Service's proxy Network Load Balancer, empty
	// for an Ingress's Application Load Balancer (whose resources predate
	// it): a Service and an Ingress of one key never take each other's
	// resources for their own.
	Kind string `json:"kind,omitempty"`
}

// tcpKind marks the resources of a Service's load balancer.
const tcpKind = "tcp"

// BalancerDescription is the description of the resources of an
// Application Load Balancer podlb created for key in cluster.
func BalancerDescription(cluster string, key providers.BalancerKey) string {
	return balancerDescription(cluster, key, "")
}

func balancerDescription(cluster string, key providers.BalancerKey, kind string) string {
	b, _ := json.Marshal(balancerOwner{ManagedBy: managedBy, Cluster: cluster, Namespace: key.Namespace, LoadBalancer: key.Name, Kind: kind})
	return string(b)
}

func ownedByBalancer(description, cluster string, key providers.BalancerKey) bool {
	return ownedAs(description, cluster, key, "")
}

// ownedAs reports whether description is the record of cluster's load
// balancer of key and kind.
func ownedAs(description, cluster string, key providers.BalancerKey, kind string) bool {
	var o balancerOwner
	if err := json.Unmarshal([]byte(description), &o); err != nil {
		return false
	}
	return o == balancerOwner{ManagedBy: managedBy, Cluster: cluster, Namespace: key.Namespace, LoadBalancer: key.Name, Kind: kind}
}

// balancerHash keeps generated names unique per cluster, load balancer
// and, with backend, per backend, however the readable parts truncate.
func balancerHash(cluster string, key providers.BalancerKey, backend string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{cluster, key.Namespace, key.Name, backend}, "/")))
	return hex.EncodeToString(sum[:])[:hashLength]
}

// generatedName is pl-<readable>-<hash>-<kind>, at most 63 characters and
// RFC 1035: the readable parts are cut to the room the rest leaves.
func generatedName(hash, suffix string, readable ...string) string {
	room := maxNameLength - len(generatedPrefix) - len(hash) - len(suffix) - 3
	r := providers.NamePart(strings.Join(readable, "-"), room)
	parts := []string{generatedPrefix}
	if r != "" {
		parts = append(parts, r)
	}
	return strings.Join(append(parts, hash, suffix), "-")
}

// BalancerResourceName names one resource of the load balancer of key:
// pl-<cluster>-<name>-<hash>-<kind>.
func BalancerResourceName(cluster string, key providers.BalancerKey, suffix string) string {
	return generatedName(balancerHash(cluster, key, ""), suffix, providers.NamePart(cluster, 8), key.Name)
}

// BackendResourceName names one resource of one backend of the load
// balancer of key (its backend service, health check or NEGs):
// pl-<cluster>-<service>-<port>-<hash>-<kind>.
func BackendResourceName(cluster string, key providers.BalancerKey, b providers.HTTPBackend, suffix string) string {
	return backendResourceName(cluster, key, b.ID(), b.Service, b.Port, suffix)
}

func backendResourceName(cluster string, key providers.BalancerKey, id, service string, port int32, suffix string) string {
	return generatedName(balancerHash(cluster, key, id), suffix, providers.NamePart(cluster, 8), service, strconv.Itoa(int(port)))
}

// balancer is one EnsureHTTP or DeleteHTTP at work: where the load
// balancer lives and how its resources are named and recognised.
type balancer struct {
	p       *Provider
	cluster string
	key     providers.BalancerKey
	sc      scope
	scheme  string
	// kind is the ownership record's (balancerOwner.Kind); protocol is
	// its backend services'.
	kind     string
	protocol string
}

func (p *Provider) balancer(cluster string, key providers.BalancerKey, sc scope, scheme string) *balancer {
	if cluster == "" {
		cluster = p.opts.Cluster
	}
	return &balancer{p: p, cluster: cluster, key: key, sc: sc, scheme: scheme, protocol: "HTTP"}
}

func (b *balancer) name(suffix string) string { return BalancerResourceName(b.cluster, b.key, suffix) }

// balancerRef tells a load balancer apart from one of another kind with
// the same key.
type balancerRef struct {
	key  providers.BalancerKey
	kind string
}

func (b *balancer) ref() balancerRef { return balancerRef{key: b.key, kind: b.kind} }

// in is the same load balancer in another scope, for deleting it there.
func (b *balancer) in(sc scope) *balancer {
	c := *b
	c.sc, c.scheme = sc, ""
	return &c
}

func (b *balancer) owns(description string) bool {
	return ownedAs(description, b.cluster, b.key, b.kind)
}

func (b *balancer) description() string {
	return balancerDescription(b.cluster, b.key, b.kind)
}

// link is the canonical URL of a resource of the load balancer's scope.
func (b *balancer) link(collection, name string) string {
	return canonicalPrefix + b.sc.path(b.p.opts.Project, collection, name)
}

// foreign refuses a resource with one of podlb's names that is not this
// load balancer's: podlb never modifies what it did not create.
func (b *balancer) foreign(what, name, description string) error {
	owner := "is not podlb's"
	var o balancerOwner
	if json.Unmarshal([]byte(description), &o) == nil && o.ManagedBy == managedBy {
		what := "load balancer"
		if o.Kind == tcpKind {
			what = "Service load balancer"
		}
		owner = fmt.Sprintf("belongs to podlb %s %s of cluster %s", what, providers.BalancerKey{Namespace: o.Namespace, Name: o.LoadBalancer}, o.Cluster)
	}
	return providers.Errorf(providers.Invalid, "", "%s %s exists and %s, not to load balancer %s of cluster %s; podlb will not modify it: delete or rename it",
		what, name, owner, b.key, b.cluster)
}

// lookup reads a resource of the load balancer, refusing one that exists
// under its name but is not its own.
func lookup[T comparable](ctx context.Context, b *balancer, k kind[T], name string) (T, bool, error) {
	cur, found, err := k.read(ctx, b.p, b.sc, name)
	if err != nil || !found {
		return cur, false, err
	}
	if description := k.description(cur); !b.owns(description) {
		return cur, false, b.foreign(k.what, name, description)
	}
	return cur, true, nil
}

// create inserts a resource of the load balancer. When one of that name
// appeared in between (409), it must be this load balancer's.
func create[T comparable](ctx context.Context, b *balancer, k kind[T], name string, r T) error {
	err := k.create(ctx, b.p, b.sc, r)
	if err == nil || !isCode(err, 409) {
		return err
	}
	_, found, err := lookup(ctx, b, k, name)
	if err == nil && !found {
		err = providers.Errorf(providers.Transient, "", "%s %s was created and deleted by someone else meanwhile", k.what, name)
	}
	return err
}

// remove deletes a resource of the load balancer when its description
// says it is this one's; gone or not ours, it is left alone.
func remove[T comparable](ctx context.Context, b *balancer, k kind[T], name string) error {
	cur, found, err := k.read(ctx, b.p, b.sc, name)
	if err != nil || !found || !b.owns(k.description(cur)) {
		return err
	}
	return k.del(ctx, b.p, b.sc, name)
}

// loadBalancerSpec is lb.Spec, or the defaults when the object carries no
// annotation.
func loadBalancerSpec(v any) (*LoadBalancerSpec, error) {
	switch s := v.(type) {
	case nil:
		return &LoadBalancerSpec{}, nil
	case *LoadBalancerSpec:
		if s == nil {
			return &LoadBalancerSpec{}, nil
		}
		return s, nil
	}
	return nil, providers.Errorf(providers.Invalid, "", "spec %T is not a %s value", v, LoadBalancerAnnotationKey)
}

// scopeOf places the load balancer: global unless the spec names a region
// (internal ones always do), with the managed scheme of its kind.
func scopeOf(s *LoadBalancerSpec) (scope, string) {
	scheme := "EXTERNAL_MANAGED"
	if s.Scheme == "internal" {
		scheme = "INTERNAL_MANAGED"
	}
	return scope{region: s.Region}, scheme
}

// backendSpec is the annotation's settings of one backend, keyed by
// "service:port" with the port's number (HTTPBackend carries no port name).
func backendSpec(s *LoadBalancerSpec, hb providers.HTTPBackend) BackendSpec {
	return s.Backends[hb.Service+":"+strconv.Itoa(int(hb.Port))]
}

// EnsureHTTP implements providers.HTTPBalancers. It brings up, in
// dependency order, one HTTP health check and one backend service per
// backend, the URL map, the target HTTP proxy (and HTTPS proxy with
// sslCertificates) and a forwarding rule per port, then removes what the
// load balancer no longer uses. Each resource is read first and written
// only when it differs from what lb wants, so an unchanged load balancer
// costs reads only and a changed route one URL map update.
func (p *Provider) EnsureHTTP(ctx context.Context, lb *providers.HTTPBalancer) (*providers.BalancerStatus, map[string]providers.Spec, error) {
	spec, err := loadBalancerSpec(lb.Spec)
	if err != nil {
		return nil, nil, err
	}
	if err := checkBalancer(lb, spec); err != nil {
		return nil, nil, err
	}
	sc, scheme := scopeOf(spec)
	b := p.balancer(lb.Cluster, lb.Key, sc, scheme)

	specs := map[string]providers.Spec{}
	services := map[string]string{} // backend ID -> backend service link
	keep := map[string]bool{}       // backend services and health checks in use
	for _, id := range slices.Sorted(maps.Keys(lb.Backends)) {
		hb := lb.Backends[id]
		bspec := backendSpec(spec, hb)
		hcName := BackendResourceName(b.cluster, b.key, hb, kindHealthCheck)
		if err := b.ensureHealthCheck(ctx, hcName, hb, bspec); err != nil {
			return nil, nil, fmt.Errorf("backend %s: %w", id, err)
		}
		bsName := BackendResourceName(b.cluster, b.key, hb, kindBackend)
		if err := b.ensureBackendService(ctx, bsName, hcName, spec, bspec); err != nil {
			return nil, nil, fmt.Errorf("backend %s: %w", id, err)
		}
		keep[hcName], keep[bsName] = true, true
		services[id] = b.link("backendServices", bsName)
		rate := float64(DefaultMaxRatePerEndpoint)
		if bspec.MaxRatePerEndpoint != nil {
			rate = *bspec.MaxRatePerEndpoint
		}
		specs[id] = &Spec{
			Name:               BackendResourceName(b.cluster, b.key, hb, kindBackendNEG),
			BackendService:     b.sc.path(p.opts.Project, "backendServices", bsName),
			BalancingMode:      "RATE",
			MaxRatePerEndpoint: &rate,
		}
	}
	fallback := services[lb.Default]
	if lb.Default == "" {
		// Requests no route matches must go somewhere: Compute wants a
		// default service or redirect on the URL map and on every path
		// matcher, and a redirect would be wrong. GCE could answer 404
		// itself through a default route action whose fault injection
		// aborts every request with 404, but route actions are not
		// emulated by computesim, so nothing could test it. podlb points
		// these requests at a backend service of its own that never gets
		// backends: clients get 503 ("no healthy upstream") where
		// Kubernetes would say 404, and no backend sees a request that
		// was not routed to it.
		name := b.name(kindNoMatch)
		if err := b.ensureBackendService(ctx, name, "", spec, BackendSpec{}); err != nil {
			return nil, nil, err
		}
		keep[name] = true
		fallback = b.link("backendServices", name)
	}
	umName := b.name(kindURLMap)
	if err := b.ensureURLMap(ctx, umName, wantedURLMap(lb, services, fallback)); err != nil {
		return nil, nil, err
	}
	httpMap := umName
	redirect := spec.RedirectToHTTPS
	if redirect {
		httpMap = b.name(kindRedirectMap)
		if err := b.ensureURLMap(ctx, httpMap, &compute.UrlMap{
			DefaultUrlRedirect: &compute.HttpRedirectAction{HttpsRedirect: true},
		}); err != nil {
			return nil, nil, err
		}
	}
	if err := b.ensureHTTPProxy(ctx, b.link("urlMaps", httpMap)); err != nil {
		return nil, nil, err
	}
	ip, err := b.wantedIP(ctx, spec)
	if err != nil {
		return nil, nil, err
	}
	httpIP, err := b.ensureRule(ctx, kindHTTPRule, ip, 80, b.link("targetHttpProxies", b.name(kindHTTPProxy)))
	if err != nil {
		return nil, nil, err
	}
	status := &providers.BalancerStatus{IP: httpIP, Details: map[string]string{
		"urlMap":   b.sc.path(p.opts.Project, "urlMaps", umName),
		"scheme":   scheme,
		"httpRule": b.sc.path(p.opts.Project, "forwardingRules", b.name(kindHTTPRule)),
	}}
	if len(spec.SSLCertificates) > 0 {
		if err := b.ensureHTTPSProxy(ctx, b.link("urlMaps", umName), spec); err != nil {
			return nil, nil, err
		}
		// Without a reserved address the HTTPS rule shares the HTTP
		// rule's ephemeral IP, so both ports answer on one address.
		if ip == "" {
			ip = httpIP
		}
		if _, err := b.ensureRule(ctx, kindHTTPSRule, ip, 443, b.link("targetHttpsProxies", b.name(kindHTTPSProxy))); err != nil {
			return nil, nil, err
		}
		status.Details["httpsRule"] = b.sc.path(p.opts.Project, "forwardingRules", b.name(kindHTTPSRule))
	} else {
		if err := remove(ctx, b, forwardingRules, b.name(kindHTTPSRule)); err != nil {
			return nil, nil, err
		}
		if err := remove(ctx, b, httpsProxies, b.name(kindHTTPSProxy)); err != nil {
			return nil, nil, err
		}
	}
	if !redirect {
		if err := remove(ctx, b, urlMaps, b.name(kindRedirectMap)); err != nil {
			return nil, nil, err
		}
	}
	if _, err := b.sweepBackends(ctx, keep); err != nil {
		return nil, nil, err
	}
	if err := p.moveBalancer(ctx, b); err != nil {
		return nil, nil, err
	}
	return status, specs, nil
}

// checkBalancer refuses a load balancer whose routes name backends it
// does not list, and settings that cannot work together.
func checkBalancer(lb *providers.HTTPBalancer, spec *LoadBalancerSpec) error {
	if lb.Default != "" {
		if _, ok := lb.Backends[lb.Default]; !ok {
			return providers.Errorf(providers.Invalid, "", "default backend %s is not among the load balancer's backends", lb.Default)
		}
	}
	for _, r := range lb.Routes {
		if _, ok := lb.Backends[r.Backend]; !ok {
			return providers.Errorf(providers.Invalid, "", "route %s%s names backend %s, which is not among the load balancer's backends", r.Host, r.Path, r.Backend)
		}
	}
	if spec.RedirectToHTTPS && len(spec.SSLCertificates) == 0 {
		return providers.Errorf(providers.Invalid, "redirectToHTTPS", "needs sslCertificates: without an HTTPS proxy there is nothing to redirect to")
	}
	return nil
}

// ensureHealthCheck keeps the backend's HTTP health check as the spec
// says: the path from the annotation, else the pods' readiness probe,
// else /; the serving port unless the annotation fixes one.
func (b *balancer) ensureHealthCheck(ctx context.Context, name string, hb providers.HTTPBackend, bs BackendSpec) error {
	path, interval := hb.HealthCheckPath, int32(defaultCheckIntervalSec)
	http := &compute.HTTPHealthCheck{PortSpecification: "USE_SERVING_PORT"}
	if hc := bs.HealthCheck; hc != nil {
		if hc.Path != "" {
			path = hc.Path
		}
		if hc.CheckIntervalSec != nil {
			interval = *hc.CheckIntervalSec
		}
		if hc.Port != nil {
			http.PortSpecification, http.Port = "USE_FIXED_PORT", int64(*hc.Port)
		}
	}
	if path == "" {
		path = defaultHealthCheckPath
	}
	http.RequestPath = path
	return b.applyHealthCheck(ctx, &compute.HealthCheck{
		Name: name, Description: b.description(), Type: "HTTP",
		// The timeout may not exceed the interval.
		CheckIntervalSec: int64(interval), TimeoutSec: int64(min(interval, defaultCheckTimeoutSec)),
		HttpHealthCheck: http,
	})
}

// applyHealthCheck creates the health check want or, when what podlb sets
// of it differs, replaces it.
func (b *balancer) applyHealthCheck(ctx context.Context, want *compute.HealthCheck) error {
	name := want.Name
	cur, found, err := lookup(ctx, b, healthChecks, name)
	switch {
	case err != nil:
		return err
	case !found:
		return create(ctx, b, healthChecks, name, want)
	case sameJSON(checkSettings(cur), checkSettings(want)):
		return nil
	}
	// Thresholds and the rest go back to Compute's defaults; the
	// health check is podlb's alone.
	return b.p.updateHealthCheck(ctx, b.sc, want)
}

// checkSettings is the part of a health check podlb writes, for
// comparing what is with what should be.
func checkSettings(hc *compute.HealthCheck) *compute.HealthCheck {
	out := &compute.HealthCheck{Type: hc.Type, CheckIntervalSec: hc.CheckIntervalSec, TimeoutSec: hc.TimeoutSec}
	switch {
	case hc.Type == "HTTP" && hc.HttpHealthCheck != nil:
		h := hc.HttpHealthCheck
		out.HttpHealthCheck = &compute.HTTPHealthCheck{RequestPath: h.RequestPath, PortSpecification: h.PortSpecification, Port: h.Port}
	case hc.Type == "TCP" && hc.TcpHealthCheck != nil:
		h := hc.TcpHealthCheck
		out.TcpHealthCheck = &compute.TCPHealthCheck{PortSpecification: h.PortSpecification, Port: h.Port}
	}
	return out
}

// ensureBackendService keeps one backend service as the spec says, hc
// empty for the fallback service, which has no backends to check. Its
// backends are the target bindings' (Provider.Ensure adds the NEGs), so
// they are never written here.
func (b *balancer) ensureBackendService(ctx context.Context, name, hc string, spec *LoadBalancerSpec, bs BackendSpec) error {
	timeout, draining := int32(defaultBackendTimeoutSec), int32(defaultDrainingTimeoutSec)
	if spec.TimeoutSec != nil {
		timeout = *spec.TimeoutSec
	}
	if bs.DrainingTimeoutSec != nil {
		draining = *bs.DrainingTimeoutSec
	}
	var checks []string
	if hc != "" {
		checks = []string{b.link("healthChecks", hc)}
	}
	want := &compute.BackendService{
		Name: name, Description: b.description(),
		Protocol: b.protocol, LoadBalancingScheme: b.scheme,
		HealthChecks: checks, TimeoutSec: int64(timeout),
		// Sent when 0 too: no draining is a setting, not an absent one.
		ConnectionDraining: &compute.ConnectionDraining{DrainingTimeoutSec: int64(draining), ForceSendFields: []string{"DrainingTimeoutSec"}},
	}
	for attempt := 1; ; attempt++ {
		cur, found, err := lookup(ctx, b, backendServices, name)
		switch {
		case err != nil:
			return err
		case !found:
			return create(ctx, b, backendServices, name, want)
		case cur.Protocol != b.protocol || cur.LoadBalancingScheme != b.scheme:
			// Neither can change in place; a deletion and a new Ensure
			// rebuild it.
			return providers.Errorf(providers.Invalid, "", "backend service %s has protocol %s and scheme %s, not %s and %s; delete the load balancer to rebuild it",
				name, cur.Protocol, cur.LoadBalancingScheme, b.protocol, b.scheme)
		}
		if samePaths(cur.HealthChecks, checks) && cur.TimeoutSec == int64(timeout) && drainingOf(cur) == int64(draining) {
			return nil
		}
		patch := &compute.BackendService{
			TimeoutSec: want.TimeoutSec, ConnectionDraining: want.ConnectionDraining,
			HealthChecks: checks, Fingerprint: cur.Fingerprint,
		}
		err = b.p.patchBackendService(ctx, b.sc, name, patch)
		if err == nil || !isCode(err, 412) || attempt == maxAttemptsOn412 {
			return err
		}
	}
}

// drainingOf is a backend service's connection draining timeout (0 when
// it has none).
func drainingOf(bs *compute.BackendService) int64 {
	if bs.ConnectionDraining == nil {
		return 0
	}
	return bs.ConnectionDraining.DrainingTimeoutSec
}

// sameJSON compares two resources as their request bodies: fields left
// out and empty lists alike.
func sameJSON(a, b any) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}

// samePaths compares two lists of resource references, in order.
func samePaths(a, b []string) bool {
	return slices.EqualFunc(a, b, func(x, y string) bool { return resourcePath(x) == resourcePath(y) })
}

// wantedURLMap turns the routes into host rules and path matchers. Each
// host of the routes gets a path matcher with its own routes and then the
// routes for any host (Kubernetes applies those to every host), walked in
// lb.Routes order, so a path two routes give (Exact /a and Prefix /a both
// give /a) goes to the first, as Kubernetes decides. A Prefix / route
// becomes the matcher's default service; without one the matcher, like
// the URL map itself, defaults to fallback. Matcher names come from the
// host, so a new host does not rename the others.
func wantedURLMap(lb *providers.HTTPBalancer, services map[string]string, fallback string) *compute.UrlMap {
	um := &compute.UrlMap{DefaultService: fallback}
	var hosts []string
	byHost := map[string][]providers.HTTPRoute{}
	for _, r := range lb.Routes {
		if _, seen := byHost[r.Host]; !seen {
			hosts = append(hosts, r.Host)
		}
		byHost[r.Host] = append(byHost[r.Host], r)
	}
	for _, host := range hosts {
		routes := byHost[host]
		matcher, pattern := anyHostMatcher, "*"
		if host != "" {
			sum := sha256.Sum256([]byte(host))
			matcher, pattern = hostMatcherPrefix+hex.EncodeToString(sum[:])[:hashLength], host
			routes = append(slices.Clone(routes), byHost[""]...)
		}
		pm := &compute.PathMatcher{Name: matcher}
		used := map[string]bool{}
		for _, r := range routes {
			pathType := loadbalancers.Prefix
			if r.Exact {
				pathType = loadbalancers.Exact
			}
			paths := loadbalancers.GCPPathRules(loadbalancers.Route{Path: r.Path, PathType: pathType})
			if paths == nil {
				if pm.DefaultService == "" {
					pm.DefaultService = services[r.Backend]
				}
				continue
			}
			var free []string
			for _, path := range paths {
				if !used[path] {
					used[path] = true
					free = append(free, path)
				}
			}
			if len(free) > 0 {
				pm.PathRules = append(pm.PathRules, &compute.PathRule{Paths: free, Service: services[r.Backend]})
			}
		}
		if pm.DefaultService == "" {
			pm.DefaultService = fallback
		}
		um.HostRules = append(um.HostRules, &compute.HostRule{Hosts: []string{pattern}, PathMatcher: matcher})
		um.PathMatchers = append(um.PathMatchers, pm)
	}
	warming := map[string]bool{}
	for _, r := range lb.Routes {
		warming[r.Warming] = r.Warming != ""
	}
	warming[lb.DefaultWarming] = lb.DefaultWarming != ""
	var ids []string
	for _, id := range slices.Sorted(maps.Keys(warming)) {
		if warming[id] {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		pm := &compute.PathMatcher{Name: warmingMatcher, DefaultService: services[ids[0]]}
		for i, id := range ids[1:] {
			pm.PathRules = append(pm.PathRules, &compute.PathRule{Paths: []string{"/" + strconv.Itoa(i+1)}, Service: services[id]})
		}
		um.HostRules = append(um.HostRules, &compute.HostRule{Hosts: []string{warmingHost}, PathMatcher: warmingMatcher})
		um.PathMatchers = append(um.PathMatchers, pm)
	}
	return um
}

// routing is the part of a URL map podlb writes, with references reduced
// to resource paths, for comparing what is with what should be.
func routing(um *compute.UrlMap) *compute.UrlMap {
	redirect := func(r *compute.HttpRedirectAction) *compute.HttpRedirectAction {
		if r == nil {
			return nil
		}
		return &compute.HttpRedirectAction{HttpsRedirect: r.HttpsRedirect}
	}
	out := &compute.UrlMap{DefaultService: resourcePath(um.DefaultService), DefaultUrlRedirect: redirect(um.DefaultUrlRedirect)}
	for _, hr := range um.HostRules {
		out.HostRules = append(out.HostRules, &compute.HostRule{Hosts: hr.Hosts, PathMatcher: hr.PathMatcher})
	}
	for _, pm := range um.PathMatchers {
		m := &compute.PathMatcher{Name: pm.Name, DefaultService: resourcePath(pm.DefaultService), DefaultUrlRedirect: redirect(pm.DefaultUrlRedirect)}
		for _, pr := range pm.PathRules {
			m.PathRules = append(m.PathRules, &compute.PathRule{Paths: pr.Paths, Service: resourcePath(pr.Service)})
		}
		out.PathMatchers = append(out.PathMatchers, m)
	}
	return out
}

// ensureURLMap creates the URL map or, when its routing differs, replaces
// it under the fingerprint it was read with; a 412 means someone changed
// it in between: read again and retry.
func (b *balancer) ensureURLMap(ctx context.Context, name string, want *compute.UrlMap) error {
	want.Name, want.Description = name, b.description()
	for attempt := 1; ; attempt++ {
		cur, found, err := lookup(ctx, b, urlMaps, name)
		switch {
		case err != nil:
			return err
		case !found:
			return create(ctx, b, urlMaps, name, want)
		case sameJSON(routing(cur), routing(want)):
			return nil
		}
		next := *want
		next.Fingerprint = cur.Fingerprint
		if b.p.beforeURLMapWrite != nil {
			b.p.beforeURLMapWrite()
		}
		err = b.p.updateURLMap(ctx, b.sc, &next)
		if err == nil || !isCode(err, 412) || attempt == maxAttemptsOn412 {
			return err
		}
	}
}

// ensureHTTPProxy keeps the target HTTP proxy pointed at urlMap.
func (b *balancer) ensureHTTPProxy(ctx context.Context, urlMap string) error {
	name := b.name(kindHTTPProxy)
	cur, found, err := lookup(ctx, b, httpProxies, name)
	switch {
	case err != nil:
		return err
	case !found:
		return create(ctx, b, httpProxies, name, &compute.TargetHttpProxy{Name: name, Description: b.description(), UrlMap: urlMap})
	case resourcePath(cur.UrlMap) != resourcePath(urlMap):
		return b.p.setProxyURLMap(ctx, b.sc, false, name, urlMap)
	}
	return nil
}

// ensureHTTPSProxy keeps the target HTTPS proxy pointed at urlMap with the
// spec's certificates. A certificate Compute does not know is the user's
// to fix: the error names sslCertificates.
func (b *balancer) ensureHTTPSProxy(ctx context.Context, urlMap string, spec *LoadBalancerSpec) error {
	name := b.name(kindHTTPSProxy)
	certs := make([]string, len(spec.SSLCertificates))
	for i, c := range spec.SSLCertificates {
		certs[i] = b.link("sslCertificates", c)
	}
	certErr := func(err error) error {
		if providers.ClassOf(err) == providers.NotFound {
			return providers.Errorf(providers.Invalid, "sslCertificates", "%s: a certificate is not in %s: %v", strings.Join(spec.SSLCertificates, ", "), scopeName(b.sc), err)
		}
		return err
	}
	cur, found, err := lookup(ctx, b, httpsProxies, name)
	switch {
	case err != nil:
		return err
	case !found:
		want := &compute.TargetHttpsProxy{Name: name, Description: b.description(), UrlMap: urlMap, SslCertificates: certs}
		if spec.SSLPolicy != "" {
			want.SslPolicy = b.link("sslPolicies", spec.SSLPolicy)
		}
		return certErr(create(ctx, b, httpsProxies, name, want))
	}
	if resourcePath(cur.UrlMap) != resourcePath(urlMap) {
		if err := b.p.setProxyURLMap(ctx, b.sc, true, name, urlMap); err != nil {
			return err
		}
	}
	if !samePaths(cur.SslCertificates, certs) {
		return certErr(b.p.setProxyCertificates(ctx, b.sc, name, certs))
	}
	return nil
}

func scopeName(sc scope) string {
	if sc.region == "" {
		return "the project's global certificates"
	}
	return "the certificates of region " + sc.region
}

// wantedIP is the IP the forwarding rules must use: the spec's literal
// or its reserved address's, "" for ephemeral.
func (b *balancer) wantedIP(ctx context.Context, spec *LoadBalancerSpec) (string, error) {
	if spec.Address == "" {
		return "", nil
	}
	if _, err := netip.ParseAddr(spec.Address); err == nil {
		return spec.Address, nil
	}
	ip, found, err := b.p.addressIP(ctx, b.sc, spec.Address)
	if err != nil {
		return "", providers.WithField("address", err)
	}
	if !found {
		where := "global addresses"
		if b.sc.region != "" {
			where = "addresses of region " + b.sc.region
		}
		return "", providers.Errorf(providers.Invalid, "address", "%s is not among the project's %s", spec.Address, where)
	}
	return ip, nil
}

// ensureRule keeps the forwarding rule of one port on target and, when
// ip is set, on that IP: a rule on another IP is replaced (rules cannot
// move). It answers the rule's IP.
func (b *balancer) ensureRule(ctx context.Context, suffix, ip string, port int, target string) (string, error) {
	name := b.name(suffix)
	cur, found, err := lookup(ctx, b, forwardingRules, name)
	if err != nil {
		return "", err
	}
	if found && (ip == "" || cur.IPAddress == ip) && resourcePath(cur.Target) == resourcePath(target) {
		return cur.IPAddress, nil
	}
	if found {
		if err := forwardingRules.del(ctx, b.p, b.sc, name); err != nil {
			return "", err
		}
	}
	want := &compute.ForwardingRule{
		Name: name, Description: b.description(),
		IPProtocol: "TCP", PortRange: strconv.Itoa(port),
		Target: target, LoadBalancingScheme: b.scheme,
	}
	if ip != "" {
		want.IPAddress = ip
	}
	if b.sc.region != "" {
		if b.p.opts.Network != "" {
			want.Network = b.p.opts.Network
		}
		if b.p.opts.Subnetwork != "" {
			want.Subnetwork = b.p.opts.Subnetwork
		}
	}
	if err := create(ctx, b, forwardingRules, name, want); err != nil {
		if providers.ClassOf(err) == providers.Invalid && strings.Contains(strings.ReplaceAll(err.Error(), "-", " "), "in use") {
			return "", providers.Errorf(providers.Invalid, "address", "%s port %d is in use by another forwarding rule: %v", orEphemeral(ip), port, err)
		}
		return "", err
	}
	got, found, err := lookup(ctx, b, forwardingRules, name)
	if err == nil && !found {
		err = providers.Errorf(providers.Transient, "", "forwarding rule %s was deleted by someone else meanwhile", name)
	}
	if err != nil {
		return "", err
	}
	return got.IPAddress, nil
}

func orEphemeral(ip string) string {
	if ip == "" {
		return "the ephemeral address"
	}
	return ip
}

// leftovers are what a sweep or deletion could not delete yet: busy
// backend services still hold the target bindings' NEGs (they go once the
// bindings release them); kept ones are used by resources podlb did not
// create, each named with what uses it, and stay.
type leftovers struct {
	busy, kept []string
}

// inUse tells whether err is Compute refusing to delete what (kind and
// name) because another resource uses it; kept then says which, in
// Compute's words.
func inUse(err error, what string) (kept string, ok bool) {
	if _, reason := errorCode(err); reason == "resourceInUseByAnotherResource" {
		return what + " stays, used by a resource podlb did not create: " + errorMessage(err), true
	}
	return "", false
}

// removeUnlessUsed is remove, except that a resource something else still
// uses is kept rather than failing the deletion.
func removeUnlessUsed[T comparable](ctx context.Context, b *balancer, k kind[T], name string, left *leftovers) error {
	err := remove(ctx, b, k, name)
	if kept, ok := inUse(err, k.what+" "+name); ok {
		left.kept = append(left.kept, kept)
		return nil
	}
	return err
}

// sweepBackends deletes the backend services and health checks of the
// load balancer that keep does not name. A backend service that still
// has backends waits: its target binding has yet to release the NEGs. One
// that a resource podlb did not create uses (a user's URL map) stays, and
// so does its health check.
func (b *balancer) sweepBackends(ctx context.Context, keep map[string]bool) (leftovers, error) {
	var left leftovers
	services, err := backendServices.all(ctx, b.p, b.sc)
	if err != nil {
		return left, err
	}
	checksInUse := map[string]bool{}
	for _, bs := range services {
		if !b.owns(bs.Description) || keep[bs.Name] {
			continue
		}
		if len(bs.Backends) > 0 {
			left.busy = append(left.busy, bs.Name)
		} else {
			err := backendServices.del(ctx, b.p, b.sc, bs.Name)
			kept, used := inUse(err, "backend service "+bs.Name)
			if err != nil && !used {
				return left, err
			}
			if !used {
				continue
			}
			left.kept = append(left.kept, kept)
		}
		for _, hc := range bs.HealthChecks {
			checksInUse[lastSegment(hc)] = true
		}
	}
	checks, err := healthChecks.all(ctx, b.p, b.sc)
	if err != nil {
		return left, err
	}
	for _, hc := range checks {
		if !b.owns(hc.Description) || keep[hc.Name] || checksInUse[hc.Name] {
			continue
		}
		if err := removeUnlessUsed(ctx, b, healthChecks, hc.Name, &left); err != nil {
			return left, err
		}
	}
	return left, nil
}

// deleteIn removes everything of the load balancer in one scope, front
// to back: forwarding rules, proxies, URL maps, backend services and
// health checks. Backend services that still have backends (the target
// bindings' NEGs) stay, with their health checks, and so does whatever a
// resource podlb did not create uses (with what it uses in turn).
func (b *balancer) deleteIn(ctx context.Context) (leftovers, error) {
	if b.kind == tcpKind {
		return b.deleteTCPIn(ctx)
	}
	var left leftovers
	steps := []func() error{
		func() error { return removeUnlessUsed(ctx, b, forwardingRules, b.name(kindHTTPSRule), &left) },
		func() error { return removeUnlessUsed(ctx, b, forwardingRules, b.name(kindHTTPRule), &left) },
		func() error { return removeUnlessUsed(ctx, b, httpsProxies, b.name(kindHTTPSProxy), &left) },
		func() error { return removeUnlessUsed(ctx, b, httpProxies, b.name(kindHTTPProxy), &left) },
		func() error { return removeUnlessUsed(ctx, b, urlMaps, b.name(kindRedirectMap), &left) },
		func() error { return removeUnlessUsed(ctx, b, urlMaps, b.name(kindURLMap), &left) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return left, err
		}
	}
	backends, err := b.sweepBackends(ctx, nil)
	left.busy = backends.busy
	left.kept = append(left.kept, backends.kept...)
	return left, err
}

// DeleteHTTP implements providers.HTTPBalancers. Global resources are
// found by their names; regional ones in the regions this process has
// ensured the load balancer in (the key alone does not tell the region).
// While backend services still hold the target bindings' NEGs, it fails
// Transient: the caller retries once the bindings have let go.
func (p *Provider) DeleteHTTP(ctx context.Context, cluster string, key providers.BalancerKey) error {
	return p.deleteEverywhere(ctx, p.balancer(cluster, key, scope{}, ""))
}

// deleteEverywhere deletes the load balancer b names from the global scope
// and every scope it was ensured in, as DeleteHTTP says.
func (p *Provider) deleteEverywhere(ctx context.Context, b *balancer) error {
	var kept []string
	for _, sc := range p.balancerScopesOf(b.ref(), scope{}) {
		left, err := b.in(sc).deleteIn(ctx)
		if err != nil {
			return err
		}
		if len(left.busy) > 0 {
			return providers.Errorf(providers.Transient, "", "backend services %s still have backends; they are deleted once the target bindings release their NEGs", strings.Join(left.busy, ", "))
		}
		if len(left.kept) > 0 {
			// Remembered, so that a later deletion looks here again.
			kept = append(kept, left.kept...)
			continue
		}
		p.forgetBalancerScope(b.ref(), sc)
	}
	return providers.Kept(kept)
}

// balancerScopesOf lists the scopes the load balancer may have resources
// in, always including also, in a stable order.
func (p *Provider) balancerScopesOf(ref balancerRef, also scope) []scope {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := maps.Clone(p.balancerScopes[ref])
	if set == nil {
		set = map[scope]bool{}
	}
	set[also] = true
	return slices.SortedFunc(maps.Keys(set), func(a, b scope) int { return strings.Compare(a.region, b.region) })
}

func (p *Provider) forgetBalancerScope(ref balancerRef, sc scope) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.balancerScopes[ref], sc)
	if len(p.balancerScopes[ref]) == 0 {
		delete(p.balancerScopes, ref)
	}
}

// moveBalancer records where the load balancer now lives and deletes it
// from the scopes it lived in before (a new scheme or region). A scope
// that could not be emptied yet stays recorded, to be tried again.
func (p *Provider) moveBalancer(ctx context.Context, b *balancer) error {
	ref := b.ref()
	p.mu.Lock()
	if p.balancerScopes[ref] == nil {
		p.balancerScopes[ref] = map[scope]bool{}
	}
	p.balancerScopes[ref][b.sc] = true
	p.mu.Unlock()
	for _, sc := range p.balancerScopesOf(ref, b.sc) {
		if sc == b.sc {
			continue
		}
		left, err := b.in(sc).deleteIn(ctx)
		if err != nil {
			return fmt.Errorf("removing the load balancer from its previous place: %w", err)
		}
		// Backend services there keep the bindings' NEGs until the
		// bindings follow the Specs returned now: not an error, and the
		// next Ensure tries again.
		if len(left.busy) == 0 && len(left.kept) == 0 {
			p.forgetBalancerScope(ref, sc)
		}
	}
	return nil
}
