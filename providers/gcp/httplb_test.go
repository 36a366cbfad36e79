package gcp

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/podlb/podlb/providers"
)

const lbRegion = "us-central1"

var (
	lbKey  = providers.BalancerKey{Namespace: "shop", Name: "front"}
	webBE  = providers.HTTPBackend{Namespace: "shop", Service: "web", Port: 80}
	nextBE = providers.HTTPBackend{Namespace: "shop", Service: "next", Port: 80}
	apiBE  = providers.HTTPBackend{Namespace: "shop", Service: "api", Port: 8080, HealthCheckPath: "/ready"}
	zoneLB = zones3[0]
)

// httpServer is a backend on a loopback IP that answers every path with
// its name, like a pod of one Service.
func httpServer(t *testing.T, ip, name string) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// shopBalancer has two hosts, a route for any host and five paths over
// two backends, and no default.
func shopBalancer(t *testing.T, annotation string) *providers.HTTPBalancer {
	t.Helper()
	spec, err := ParseLoadBalancerSpec(annotation)
	if err != nil {
		t.Fatal(err)
	}
	return &providers.HTTPBalancer{
		Key: lbKey, Cluster: cluster, Spec: spec,
		Backends: map[string]providers.HTTPBackend{webBE.ID(): webBE, apiBE.ID(): apiBE},
		Routes: []providers.HTTPRoute{
			{Host: "www.example.com", Path: "/status", Exact: true, Backend: apiBE.ID()},
			// Gives /status too, which the Exact route before it keeps.
			{Host: "www.example.com", Path: "/status", Backend: webBE.ID()},
			{Host: "www.example.com", Path: "/api", Backend: apiBE.ID()},
			{Host: "www.example.com", Path: "/", Backend: webBE.ID()},
			{Host: "api.example.com", Path: "/v1", Backend: apiBE.ID()},
			// Every host, the named ones included.
			{Path: "/shared", Backend: apiBE.ID()},
		},
	}
}

// lbRig is a load balancer ensured and its backends' pods attached
// through the target path, as the core does.
type lbRig struct {
	*env
	lb     *providers.HTTPBalancer
	status *providers.BalancerStatus
	specs  map[string]providers.Spec
	groups map[string]*providers.Group
	sc     scope
}

func (e *env) ensureHTTP(lb *providers.HTTPBalancer) (*providers.BalancerStatus, map[string]providers.Spec) {
	e.t.Helper()
	st, specs, err := e.p.EnsureHTTP(e.ctx, lb)
	if err != nil {
		e.t.Fatalf("EnsureHTTP: %v", err)
	}
	return st, specs
}

// newRig ensures lb and attaches one pod per backend: web on 127.0.0.11,
// api on 127.0.0.12, next on 127.0.0.13.
func newRig(t *testing.T, lb *providers.HTTPBalancer) *lbRig {
	r := &lbRig{env: newEnv(t), lb: lb, groups: map[string]*providers.Group{}}
	spec, _ := loadBalancerSpec(lb.Spec)
	r.sc, _ = scopeOf(spec)
	r.status, r.specs = r.ensureHTTP(lb)
	pods := map[string]string{webBE.ID(): "127.0.0.11", apiBE.ID(): "127.0.0.12", nextBE.ID(): "127.0.0.13"}
	for id, be := range lb.Backends {
		ip := pods[id]
		port := httpServer(t, ip, be.Service)
		r.groups[id] = r.attach(be, r.specs[id], target(ip, port, zoneLB))
	}
	return r
}

// attach binds a backend's Service port with the Spec EnsureHTTP gave and
// registers one pod.
func (e *env) attach(be providers.HTTPBackend, spec providers.Spec, tg providers.Target) *providers.Group {
	e.t.Helper()
	b := &providers.Binding{
		Key:     providers.BindingKey{Namespace: be.Namespace, Service: be.Service, Provider: "gcp", Port: be.Port},
		Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: spec, Zones: []string{zoneLB},
	}
	g := e.ensure(b)
	if err := e.apply(g, providers.Plan{Register: []providers.Target{tg}}); err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
	return g
}

func (r *lbRig) name(suffix string) string { return BalancerResourceName(cluster, lbKey, suffix) }

// get sends one request through a forwarding rule and answers the status
// and body (or the redirect's Location).
func get(t *testing.T, base, host, path string, tlsConf *tls.Config) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsConf},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s (Host %s): %v", base, path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 3 {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

type request struct{ host, path, want string }

// expectRoutes waits until every request is answered by the backend it
// names ("503" for the load balancer's own refusal).
func (r *lbRig) expectRoutes(base string, tlsConf *tls.Config, reqs ...request) {
	r.t.Helper()
	answer := func(q request) string {
		code, body := get(r.t, base, q.host, q.path, tlsConf)
		if code != http.StatusOK {
			return fmt.Sprint(code)
		}
		return body
	}
	for _, q := range reqs {
		deadline := time.Now().Add(15 * time.Second)
		for got := answer(q); got != q.want; got = answer(q) {
			if time.Now().After(deadline) {
				r.t.Fatalf("%s%s answered %q, want %q", q.host, q.path, got, q.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

var shopRoutes = []request{
	{"www.example.com", "/status", "api"},
	{"www.example.com", "/status/x", "web"}, // the Prefix route
	{"www.example.com", "/api", "api"},
	{"www.example.com", "/api/v2/items?q=1", "api"},
	{"www.example.com", "/apis", "web"}, // Prefix matches whole elements
	{"www.example.com", "/", "web"},
	{"api.example.com", "/v1/orders", "api"},
	{"api.example.com", "/v2", "503"}, // a known host, no route: the fallback
	{"other.example.com", "/", "503"}, // no route for the host: the fallback
	{"other.example.com", "/shared/x", "api"},
	{"www.example.com", "/shared", "api"},
	{"api.example.com", "/shared/y", "api"},
	{"WWW.example.com", "/api/x", "api"}, // hosts are case-insensitive
}

// mutations counts the mutating calls the emulator served, by method.
func (e *env) mutations() map[string]int64 {
	out := map[string]int64{}
	for m, st := range e.srv.Stats().Methods {
		verb := m[strings.LastIndexByte(m, '.')+1:]
		if st.Calls > 0 && (slices.Contains([]string{"insert", "delete", "update", "patch"}, verb) || strings.HasPrefix(verb, "set") ||
			strings.HasSuffix(verb, "NetworkEndpoints") && verb != "listNetworkEndpoints") {
			out[m] = st.Calls
		}
	}
	return out
}

func wantMutations(t *testing.T, got map[string]int64, want map[string]int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mutating calls %v, want %v", got, want)
	}
}

func TestHTTPBalancerRoutesRealRequestsToTheRightBackend(t *testing.T) {
	for _, tc := range []struct {
		name, annotation, scheme string
	}{
		{"external", `{"timeoutSec":20,"backends":{"web:80":{"healthCheck":{"path":"/healthz","checkIntervalSec":2},"drainingTimeoutSec":10,"maxRatePerEndpoint":50}}}`, "EXTERNAL_MANAGED"},
		{"internal", `{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only","backends":{"web:80":{"drainingTimeoutSec":10}}}`, "INTERNAL_MANAGED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, shopBalancer(t, tc.annotation))
			r.expectRoutes(r.srv.ForwardingRuleURL(r.name(kindHTTPRule)), nil, shopRoutes...)
			if r.status.IP == "" || r.status.Details["scheme"] != tc.scheme {
				t.Fatalf("status %+v", r.status)
			}

			// The target path made the NEGs RATE backends of the
			// backend services EnsureHTTP created with the spec's
			// settings.
			web, _, err := backendServices.read(r.ctx, r.p, r.sc, BackendResourceName(cluster, lbKey, webBE, kindBackend))
			if err != nil {
				t.Fatal(err)
			}
			if web.LoadBalancingScheme != tc.scheme || web.Protocol != "HTTP" || web.ConnectionDraining.DrainingTimeoutSec != 10 ||
				len(web.Backends) != 1 || web.Backends[0].BalancingMode != "RATE" ||
				!strings.HasSuffix(web.Backends[0].Group, "/zones/"+zoneLB+"/networkEndpointGroups/"+BackendResourceName(cluster, lbKey, webBE, kindBackendNEG)) {
				t.Fatalf("web backend service %v", web)
			}
			webCheck, _, _ := healthChecks.read(r.ctx, r.p, r.sc, BackendResourceName(cluster, lbKey, webBE, kindHealthCheck))
			apiCheck, _, _ := healthChecks.read(r.ctx, r.p, r.sc, BackendResourceName(cluster, lbKey, apiBE, kindHealthCheck))
			if apiCheck.HttpHealthCheck.RequestPath != "/ready" || apiCheck.HttpHealthCheck.PortSpecification != "USE_SERVING_PORT" {
				t.Fatalf("api health check %v", apiCheck)
			}
			if tc.name == "external" {
				if webCheck.HttpHealthCheck.RequestPath != "/healthz" || webCheck.CheckIntervalSec != 2 || webCheck.TimeoutSec != 2 ||
					web.TimeoutSec != 20 || web.Backends[0].MaxRatePerEndpoint != 50 {
					t.Fatalf("web health check %v, backend service %v", webCheck, web)
				}
			} else if !strings.Contains(web.SelfLink, "/regions/"+lbRegion+"/") || !strings.Contains(r.status.Details["urlMap"], "/regions/"+lbRegion+"/") {
				t.Fatalf("internal load balancer not in its region: %v %v", web.SelfLink, r.status.Details)
			}

			// Ensuring again changes nothing.
			r.srv.ResetStats()
			r.ensureHTTP(r.lb)
			wantMutations(t, r.mutations(), map[string]int64{})
		})
	}
}

func TestHTTPBalancerEditsAreMinimalAndRespectTheFingerprint(t *testing.T) {
	r := newRig(t, shopBalancer(t, ""))
	base := r.srv.ForwardingRuleURL(r.name(kindHTTPRule))
	r.expectRoutes(base, nil, shopRoutes...)
	fingerprint := func() string {
		um, _, err := urlMaps.read(r.ctx, r.p, r.sc, r.name(kindURLMap))
		if err != nil {
			t.Fatal(err)
		}
		return um.Fingerprint
	}

	// A new route: one URL map update, and the others keep answering.
	before := fingerprint()
	r.srv.ResetStats()
	r.lb.Routes = append(r.lb.Routes, providers.HTTPRoute{Host: "www.example.com", Path: "/new", Backend: apiBE.ID()})
	r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"urlMaps.update": 1})
	if fingerprint() == before {
		t.Fatal("fingerprint unchanged after an update")
	}
	r.expectRoutes(base, nil, append([]request{{"www.example.com", "/new/a", "api"}}, shopRoutes...)...)

	// A removed route and a route switched to the other backend: one
	// update each.
	r.srv.ResetStats()
	r.lb.Routes = slices.DeleteFunc(r.lb.Routes, func(rt providers.HTTPRoute) bool { return rt.Path == "/status" })
	r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"urlMaps.update": 1})
	r.expectRoutes(base, nil, request{"www.example.com", "/status", "web"}, request{"www.example.com", "/api/x", "api"})

	r.srv.ResetStats()
	r.lb.Routes[0].Backend = webBE.ID() // www.example.com /api
	r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"urlMaps.update": 1})
	r.expectRoutes(base, nil, request{"www.example.com", "/api/x", "web"}, request{"api.example.com", "/v1", "api"})

	// Someone else updates the URL map between podlb's read and write:
	// the stale fingerprint is refused, podlb reads again and retries.
	r.srv.ResetStats()
	r.p.beforeURLMapWrite = func() {
		r.p.beforeURLMapWrite = nil
		cur, _, err := urlMaps.read(r.ctx, r.p, r.sc, r.name(kindURLMap))
		if err != nil {
			t.Error(err)
			return
		}
		if err := r.p.updateURLMap(r.ctx, r.sc, cur); err != nil {
			t.Error(err)
		}
	}
	r.lb.Routes = append(r.lb.Routes, providers.HTTPRoute{Host: "api.example.com", Path: "/v2", Exact: true, Backend: webBE.ID()})
	r.ensureHTTP(r.lb)
	if st := r.srv.Stats().Methods["urlMaps.update"]; st.Calls != 3 || st.Errors != 1 {
		t.Fatalf("urlMaps.update: %+v, want the other writer's, podlb's refused one and its retry", st)
	}
	r.expectRoutes(base, nil, request{"api.example.com", "/v2", "web"}, request{"api.example.com", "/v1", "api"})

	// A default backend replaces the fallback service, which goes.
	r.srv.ResetStats()
	r.lb.Default = webBE.ID()
	r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"urlMaps.update": 1, "backendServices.delete": 1})
	r.expectRoutes(base, nil, request{"other.example.com", "/", "web"}, request{"api.example.com", "/v3", "web"})

	// The api routes move to a new backend: its health check and backend
	// service appear; the old backend service keeps its NEG until the
	// target binding releases it, and only then goes.
	api2 := providers.HTTPBackend{Namespace: "shop", Service: "api2", Port: 8080}
	for i := range r.lb.Routes {
		if r.lb.Routes[i].Backend == apiBE.ID() {
			r.lb.Routes[i].Backend = api2.ID()
		}
	}
	delete(r.lb.Backends, apiBE.ID())
	r.lb.Backends[api2.ID()] = api2
	r.srv.ResetStats()
	_, specs := r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"healthChecks.insert": 1, "backendServices.insert": 1, "urlMaps.update": 1})
	r.attach(api2, specs[api2.ID()], target("127.0.0.13", httpServer(t, "127.0.0.13", "api2"), zoneLB))
	r.expectRoutes(base, nil, request{"api.example.com", "/v1/x", "api2"}, request{"other.example.com", "/shared", "api2"})
	oldBS := BackendResourceName(cluster, lbKey, apiBE, kindBackend)
	if _, found, err := backendServices.read(r.ctx, r.p, r.sc, oldBS); err != nil || !found {
		t.Fatalf("backend service %s with a NEG went: %v", oldBS, err)
	}
	if err := r.p.Release(r.ctx, providers.BindingKey{Namespace: "shop", Service: "api", Provider: "gcp", Port: 8080}, r.groups[apiBE.ID()].Ref, nil); err != nil {
		t.Fatal(err)
	}
	r.srv.ResetStats()
	r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"backendServices.delete": 1, "healthChecks.delete": 1})
	if _, found, err := backendServices.read(r.ctx, r.p, r.sc, oldBS); err != nil || found {
		t.Fatalf("backend service %s stayed: %v", oldBS, err)
	}

	// New backend settings: the health check is replaced, the backend
	// services patched (their NEG backends untouched), the URL map kept.
	r.lb.Spec, _ = ParseLoadBalancerSpec(`{"timeoutSec":40,"backends":{"web:80":{"healthCheck":{"path":"/healthz","port":8081}}}}`)
	r.srv.ResetStats()
	r.ensureHTTP(r.lb)
	wantMutations(t, r.mutations(), map[string]int64{"healthChecks.update": 1, "backendServices.patch": 2})
	hc, _, _ := healthChecks.read(r.ctx, r.p, r.sc, BackendResourceName(cluster, lbKey, webBE, kindHealthCheck))
	web, _, _ := backendServices.read(r.ctx, r.p, r.sc, BackendResourceName(cluster, lbKey, webBE, kindBackend))
	if hc.HttpHealthCheck.RequestPath != "/healthz" || hc.HttpHealthCheck.PortSpecification != "USE_FIXED_PORT" ||
		hc.HttpHealthCheck.Port != 8081 || web.TimeoutSec != 40 || len(web.Backends) != 1 {
		t.Fatalf("health check %v, backend service %v", hc, web)
	}
}

func TestHTTPBalancerServesHTTPSWithARedirectOnTheReservedAddress(t *testing.T) {
	e := newEnv(t)
	if err := e.srv.IssueCertificate("shop-cert", "www.example.com", "api.example.com"); err != nil {
		t.Fatal(err)
	}
	e.done(e.p.c.gaddr.Insert(project, &compute.Address{Name: "shop-ip"}).Context(e.ctx).Do())
	addr, _, err := e.p.addressIP(e.ctx, scope{}, "shop-ip")
	if err != nil || addr == "" {
		t.Fatalf("address: %q %v", addr, err)
	}
	lb := shopBalancer(t, `{"address":"shop-ip","sslCertificates":["shop-cert"],"redirectToHTTPS":true}`)
	r := &lbRig{env: e, lb: lb}
	r.status, r.specs = r.ensureHTTP(lb)
	for id, ip := range map[string]string{webBE.ID(): "127.0.0.11", apiBE.ID(): "127.0.0.12"} {
		be := lb.Backends[id]
		r.attach(be, r.specs[id], target(ip, httpServer(t, ip, be.Service), zoneLB))
	}
	if r.status.IP != addr {
		t.Fatalf("status IP %s, want the reserved %s", r.status.IP, addr)
	}
	for _, suffix := range []string{kindHTTPRule, kindHTTPSRule} {
		fr, _, err := forwardingRules.read(e.ctx, e.p, scope{}, r.name(suffix))
		if err != nil || fr.IPAddress != addr {
			t.Fatalf("forwarding rule %s: %v %v", suffix, fr, err)
		}
	}
	tlsConf := &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: "www.example.com"}
	httpsBase := e.srv.ForwardingRuleURL(r.name(kindHTTPSRule))
	if !strings.HasPrefix(httpsBase, "https://") {
		t.Fatalf("HTTPS rule URL %q", httpsBase)
	}
	r.expectRoutes(httpsBase, tlsConf, shopRoutes[:7]...)
	httpBase := e.srv.ForwardingRuleURL(r.name(kindHTTPRule))
	if code, loc := get(t, httpBase, "www.example.com", "/api/x", nil); code != http.StatusMovedPermanently || loc != "https://www.example.com/api/x" {
		t.Fatalf("HTTP answered %d %q, want a redirect to HTTPS", code, loc)
	}

	// Without certificates the HTTPS side goes and HTTP serves again.
	spec, _ := ParseLoadBalancerSpec(`{"address":"shop-ip"}`)
	lb.Spec = spec
	e.srv.ResetStats()
	r.ensureHTTP(lb)
	wantMutations(t, e.mutations(), map[string]int64{
		"targetHttpProxies.setUrlMap": 1, "globalForwardingRules.delete": 1, "targetHttpsProxies.delete": 1, "urlMaps.delete": 1,
	})
	r.expectRoutes(httpBase, nil, shopRoutes...)
}

func TestRegionalHTTPBalancerServesHTTPSWithItsRegionsCertificate(t *testing.T) {
	e := newEnv(t)
	// A global certificate of the same name is not the region's.
	if err := e.srv.IssueCertificate("shop-cert", "www.example.com"); err != nil {
		t.Fatal(err)
	}
	lb := shopBalancer(t, `{"scheme":"internal","region":"`+lbRegion+`","proxySubnet":"proxy-only","sslCertificates":["shop-cert"]}`)
	_, _, err := e.p.EnsureHTTP(e.ctx, lb)
	wantClass(t, err, providers.Invalid, "sslCertificates")
	if !strings.Contains(err.Error(), "region "+lbRegion) {
		t.Fatalf("the error does not name the region: %v", err)
	}

	if err := e.srv.IssueRegionalCertificate(lbRegion, "shop-cert", "www.example.com", "api.example.com"); err != nil {
		t.Fatal(err)
	}
	r := &lbRig{env: e, lb: lb, sc: scope{region: lbRegion}}
	r.status, r.specs = r.ensureHTTP(lb)
	for id, ip := range map[string]string{webBE.ID(): "127.0.0.11", apiBE.ID(): "127.0.0.12"} {
		be := lb.Backends[id]
		r.attach(be, r.specs[id], target(ip, httpServer(t, ip, be.Service), zoneLB))
	}
	proxy, err := e.p.c.rtsps.Get(project, lbRegion, r.name(kindHTTPSProxy)).Context(e.ctx).Do()
	if err != nil {
		t.Fatalf("regional HTTPS proxy: %v", err)
	}
	if len(proxy.SslCertificates) != 1 || !strings.HasSuffix(proxy.SslCertificates[0], "/regions/"+lbRegion+"/sslCertificates/shop-cert") {
		t.Fatalf("proxy certificates %v, want the region's shop-cert", proxy.SslCertificates)
	}
	tlsConf := &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: "www.example.com"}
	r.expectRoutes(e.srv.ForwardingRuleURL(r.name(kindHTTPSRule)), tlsConf, shopRoutes[:7]...)
	r.expectRoutes(e.srv.ForwardingRuleURL(r.name(kindHTTPRule)), nil, shopRoutes...)

	// Ensuring again changes nothing.
	e.srv.ResetStats()
	r.ensureHTTP(lb)
	wantMutations(t, e.mutations(), map[string]int64{})
}

// ours lists every resource whose description is podlb's for lbKey.
func (e *env) ours() []string {
	e.t.Helper()
	var out []string
	add := func(kind, name, description string) {
		if ownedByBalancer(description, cluster, lbKey) {
			out = append(out, kind+"/"+name)
		}
	}
	for _, sc := range []scope{{}, {region: lbRegion}} {
		bss, err := backendServices.all(e.ctx, e.p, sc)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, bs := range bss {
			add("backendService", bs.Name, bs.Description)
		}
		hcs, err := healthChecks.all(e.ctx, e.p, sc)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, hc := range hcs {
			add("healthCheck", hc.Name, hc.Description)
		}
	}
	must := func(err error) {
		if err != nil {
			e.t.Fatal(err)
		}
	}
	urlMapItems := func(l *compute.UrlMapList) []*compute.UrlMap { return l.Items }
	addURLMap := func(um *compute.UrlMap) { add("urlMap", um.Name, um.Description) }
	must(eachListed(e.ctx, e.p.c.ums.List(project), "", urlMapItems, addURLMap))
	must(eachListed(e.ctx, e.p.c.rums.List(project, lbRegion), "", urlMapItems, addURLMap))
	httpProxyItems := func(l *compute.TargetHttpProxyList) []*compute.TargetHttpProxy { return l.Items }
	addHTTPProxy := func(tp *compute.TargetHttpProxy) { add("targetHttpProxy", tp.Name, tp.Description) }
	must(eachListed(e.ctx, e.p.c.thps.List(project), "", httpProxyItems, addHTTPProxy))
	must(eachListed(e.ctx, e.p.c.rthps.List(project, lbRegion), "", httpProxyItems, addHTTPProxy))
	httpsProxyItems := func(l *compute.TargetHttpsProxyList) []*compute.TargetHttpsProxy { return l.Items }
	addHTTPSProxy := func(tp *compute.TargetHttpsProxy) { add("targetHttpsProxy", tp.Name, tp.Description) }
	must(eachListed(e.ctx, e.p.c.tsps.List(project), "", httpsProxyItems, addHTTPSProxy))
	must(eachListed(e.ctx, e.p.c.rtsps.List(project, lbRegion), "", httpsProxyItems, addHTTPSProxy))
	for _, sc := range []scope{{}, {region: lbRegion}} {
		frs, err := forwardingRules.matching(e.ctx, e.p, sc, "")
		if err != nil {
			e.t.Fatal(err)
		}
		for _, fr := range frs {
			add("forwardingRule", fr.Name, fr.Description)
		}
	}
	return out
}

func TestDeleteHTTPWaitsForTheBindingsThenLeavesNothing(t *testing.T) {
	for _, annotation := range []string{
		// A reserved address: an ephemeral HTTPS rule would bind the
		// emulator's shared listen IP at port 443.
		`{"sslCertificates":["shop-cert"],"address":"shop-ip"}`,
		`{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only"}`,
		`{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only","sslCertificates":["shop-cert"]}`,
	} {
		t.Run(annotation, func(t *testing.T) {
			lb := shopBalancer(t, annotation)
			e := newEnv(t)
			if err := e.srv.IssueCertificate("shop-cert", "www.example.com"); err != nil {
				t.Fatal(err)
			}
			if err := e.srv.IssueRegionalCertificate(lbRegion, "shop-cert", "www.example.com"); err != nil {
				t.Fatal(err)
			}
			e.done(e.p.c.gaddr.Insert(project, &compute.Address{Name: "shop-ip"}).Context(e.ctx).Do())
			r := &lbRig{env: e, lb: lb, groups: map[string]*providers.Group{}}
			r.status, r.specs = r.ensureHTTP(lb)
			for id, be := range lb.Backends {
				r.groups[id] = r.attach(be, r.specs[id], target("127.0.0.11", 8000, zoneLB))
			}
			// Two backend services, their health checks, the fallback
			// service, the URL map, a proxy and a rule, per port.
			if want := 8 + 2*len(lb.Spec.(*LoadBalancerSpec).SSLCertificates); len(e.ours()) != want {
				t.Fatalf("resources %v, want %d", e.ours(), want)
			}

			// The target bindings still hold their NEGs in the backend
			// services: the front goes, the backend services wait.
			err := e.p.DeleteHTTP(e.ctx, cluster, lbKey)
			wantClass(t, err, providers.Transient, "")
			if !strings.Contains(err.Error(), "still have backends") {
				t.Fatalf("DeleteHTTP: %v", err)
			}
			for _, id := range []string{webBE.ID(), apiBE.ID()} {
				g := r.groups[id]
				if err := e.p.Release(e.ctx, providers.BindingKey{Namespace: "shop", Service: lb.Backends[id].Service, Provider: "gcp", Port: lb.Backends[id].Port}, g.Ref, nil); err != nil {
					t.Fatalf("Release %s: %v", id, err)
				}
			}
			if err := e.p.DeleteHTTP(e.ctx, cluster, lbKey); err != nil {
				t.Fatalf("DeleteHTTP: %v", err)
			}
			if left := e.ours(); len(left) > 0 {
				t.Fatalf("left behind: %v", left)
			}
			for _, be := range lb.Backends {
				if _, ok := e.negExists(zoneLB, BackendResourceName(cluster, lbKey, be, kindBackendNEG)); ok {
					t.Fatalf("NEG of %s left behind", be.ID())
				}
			}
			// Gone counts as deleted.
			if err := e.p.DeleteHTTP(e.ctx, cluster, lbKey); err != nil {
				t.Fatalf("second DeleteHTTP: %v", err)
			}
		})
	}
}

func TestHTTPBalancerRefusesBadInputAndForeignResourcesNamingThem(t *testing.T) {
	e := newEnv(t)
	ensureErr := func(annotation string) error {
		_, _, err := e.p.EnsureHTTP(e.ctx, shopBalancer(t, annotation))
		return err
	}
	wantClass(t, ensureErr(`{"sslCertificates":["missing-cert"]}`), providers.Invalid, "sslCertificates")
	wantClass(t, ensureErr(`{"address":"missing-ip"}`), providers.Invalid, "address")
	wantClass(t, ensureErr(`{"redirectToHTTPS":true}`), providers.Invalid, "redirectToHTTPS")

	// An address another load balancer's forwarding rule uses on port 80.
	e.done(e.p.c.gaddr.Insert(project, &compute.Address{Name: "shared-ip"}).Context(e.ctx).Do())
	other := shopBalancer(t, `{"address":"shared-ip"}`)
	other.Key = providers.BalancerKey{Namespace: "shop", Name: "other"}
	e.ensureHTTP(other)
	err := ensureErr(`{"address":"shared-ip"}`)
	wantClass(t, err, providers.Invalid, "address")
	if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("address in use: %v", err)
	}
	if err := e.p.DeleteHTTP(e.ctx, cluster, lbKey); err != nil {
		t.Fatal(err)
	}

	// A balancing mode the backend service's HTTP protocol does not
	// allow, asked of the target path.
	_, specs := e.ensureHTTP(shopBalancer(t, ""))
	s := *specs[webBE.ID()].(*Spec)
	conns := int32(10)
	s.BalancingMode, s.MaxRatePerEndpoint, s.MaxConnectionsPerEndpoint = "CONNECTION", nil, &conns
	_, err = e.p.Ensure(e.ctx, &providers.Binding{
		Key:     providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80},
		Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: &s, Zones: []string{zoneLB},
	})
	wantClass(t, err, providers.Invalid, "balancingMode")

	// A URL map of podlb's name that someone else made is refused by name
	// and survives DeleteHTTP.
	clash := providers.BalancerKey{Namespace: "shop", Name: "clash"}
	umName := BalancerResourceName(cluster, clash, kindURLMap)
	fallback := canonicalPrefix + "projects/" + project + "/global/backendServices/" + BackendResourceName(cluster, lbKey, webBE, kindBackend)
	e.done(e.p.c.ums.Insert(project, &compute.UrlMap{
		Name: umName, DefaultService: fallback,
	}).Context(e.ctx).Do())
	lb := shopBalancer(t, "")
	lb.Key = clash
	_, _, err = e.p.EnsureHTTP(e.ctx, lb)
	wantClass(t, err, providers.Invalid, "")
	if !strings.Contains(err.Error(), "URL map "+umName) {
		t.Fatalf("clash: %v", err)
	}
	if err := e.p.DeleteHTTP(e.ctx, cluster, clash); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.c.ums.Get(project, umName).Context(e.ctx).Do(); err != nil {
		t.Fatalf("someone else's URL map: %v", err)
	}
}

func TestBalancerNamesAreValidAndDistinct(t *testing.T) {
	long := strings.Repeat("x", 80)
	seen := map[string]bool{}
	for _, key := range []providers.BalancerKey{lbKey, {Name: "front"}, {Namespace: long, Name: long}, {Namespace: "a", Name: long + "y"}} {
		for _, suffix := range []string{kindURLMap, kindHTTPSRule, kindNoMatch} {
			n := BalancerResourceName(cluster, key, suffix)
			if !isName(n) || seen[n] {
				t.Fatalf("%v %s: %q invalid or repeated", key, suffix, n)
			}
			seen[n] = true
		}
		for _, be := range []providers.HTTPBackend{webBE, apiBE, {Namespace: long, Service: long, Port: 65535}} {
			n := BackendResourceName(cluster, key, be, kindBackendNEG)
			if !isName(n) || seen[n] {
				t.Fatalf("%v %s: %q invalid or repeated", key, be.ID(), n)
			}
			seen[n] = true
		}
	}
}

// Every Compute method a load balancer's life uses has a client bucket of
// its own under GCE's method id (operation waits share operations.wait),
// and moving a load balancer to another scope leaves nothing behind.
func TestLoadBalancerMethodsHaveBucketsAndAMoveCleansUp(t *testing.T) {
	e := newEnv(t)
	for _, cert := range []string{"shop-cert", "shop-cert-2"} {
		if err := e.srv.IssueCertificate(cert, "www.example.com"); err != nil {
			t.Fatal(err)
		}
	}
	e.done(e.p.c.gaddr.Insert(project, &compute.Address{Name: "shop-ip"}).Context(e.ctx).Do())
	e.srv.ResetStats()
	lb := shopBalancer(t, `{"address":"shop-ip","sslCertificates":["shop-cert"],"redirectToHTTPS":true}`)
	e.ensureHTTP(lb)
	lb.Spec, _ = ParseLoadBalancerSpec(`{"address":"shop-ip","sslCertificates":["shop-cert","shop-cert-2"]}`)
	e.ensureHTTP(lb)
	lb.Spec, _ = ParseLoadBalancerSpec(`{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only"}`)
	e.ensureHTTP(lb)
	// Nothing global stays: found by name, and by listing.
	if _, found, err := urlMaps.read(e.ctx, e.p, scope{}, BalancerResourceName(cluster, lbKey, kindURLMap)); err != nil || found {
		t.Fatalf("the global URL map stayed after the move: %v", err)
	}
	if _, found, err := forwardingRules.read(e.ctx, e.p, scope{}, BalancerResourceName(cluster, lbKey, kindHTTPSRule)); err != nil || found {
		t.Fatalf("the global HTTPS rule stayed after the move: %v", err)
	}
	if bss, err := backendServices.all(e.ctx, e.p, scope{}); err != nil || len(bss) > 0 {
		t.Fatalf("global backend services after the move: %v %v", bss, err)
	}
	if ip := e.srv.ForwardingRuleURL(BalancerResourceName(cluster, lbKey, kindHTTPRule)); ip == "" {
		t.Fatal("the regional HTTP rule is missing")
	}
	if err := e.p.DeleteHTTP(e.ctx, cluster, lbKey); err != nil {
		t.Fatal(err)
	}
	used := e.srv.Stats().Methods
	if left := e.ours(); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
	for _, m := range []string{"targetHttpsProxies.setSslCertificates", "targetHttpProxies.setUrlMap", "regionUrlMaps.insert", "globalForwardingRules.delete", "healthChecks.list"} {
		if used[m].Calls == 0 {
			t.Errorf("%s was not called", m)
		}
	}
	limits := DefaultLimits()
	for m := range used {
		if _, ok := limits[m]; !ok && !strings.HasSuffix(m, "perations.wait") {
			t.Errorf("%s has no bucket of its own", m)
		}
	}
}

// A load balancer that becomes internal moves to its region while the
// target bindings still hold NEGs in the global backend services: the
// move succeeds, the bindings follow the new Specs, and the next
// EnsureHTTP removes the global backend services they left.
func TestHTTPBalancerMovesToItsRegionWithBindingsAttached(t *testing.T) {
	r := newRig(t, shopBalancer(t, ""))
	r.expectRoutes(r.srv.ForwardingRuleURL(r.name(kindHTTPRule)), nil, shopRoutes[:3]...)
	r.lb.Spec, _ = ParseLoadBalancerSpec(`{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only"}`)
	_, specs := r.ensureHTTP(r.lb)
	if global, err := backendServices.all(r.ctx, r.p, scope{}); err != nil || len(global) != 2 {
		t.Fatalf("global backend services holding NEGs: %d %v", len(global), err)
	}
	for id, be := range r.lb.Backends {
		key := providers.BindingKey{Namespace: be.Namespace, Service: be.Service, Provider: "gcp", Port: be.Port}
		g, err := r.p.Ensure(r.ctx, &providers.Binding{Key: key, Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: specs[id], Zones: []string{zoneLB}})
		if err != nil {
			t.Fatal(err)
		}
		if g.Ref == r.groups[id].Ref || !strings.Contains(g.Ref, "/regions/"+lbRegion+"/") {
			t.Fatalf("binding of %s: Ref %s", id, g.Ref)
		}
		if err := r.p.Release(r.ctx, key, r.groups[id].Ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	r.ensureHTTP(r.lb)
	if global, err := backendServices.all(r.ctx, r.p, scope{}); err != nil || len(global) != 0 {
		t.Fatalf("global backend services after the bindings moved: %d %v", len(global), err)
	}
	if global, err := healthChecks.all(r.ctx, r.p, scope{}); err != nil || len(global) != 0 {
		t.Fatalf("global health checks after the bindings moved: %d %v", len(global), err)
	}
	r.expectRoutes(r.srv.ForwardingRuleURL(r.name(kindHTTPRule)), nil, shopRoutes...)
}

// A backend a route is about to switch to is in the URL map behind the
// reserved warming host, so its endpoints are judged while the route still
// sends everything to the old backend; the switch then takes it out.
func TestHTTPBalancerWarmingBackendIsUsedButTakesNoTraffic(t *testing.T) {
	lb := shopBalancer(t, `{}`)
	lb.Backends[nextBE.ID()] = nextBE
	lb.Routes[2].Warming = nextBE.ID() // www.example.com/api
	r := newRig(t, lb)
	base := r.srv.ForwardingRuleURL(r.name(kindHTTPRule))
	r.expectRoutes(base, nil, shopRoutes...)
	r.expectRoutes(base, nil, request{warmingHost, "/", "next"})
	for range 20 {
		if code, body := get(t, base, "www.example.com", "/api/x", nil); code != http.StatusOK || body != "api" {
			t.Fatalf("/api answered %d %q while next was only warming", code, body)
		}
	}

	r.srv.ResetStats()
	lb.Routes[2].Backend, lb.Routes[2].Warming = nextBE.ID(), ""
	r.ensureHTTP(lb)
	wantMutations(t, r.mutations(), map[string]int64{"urlMaps.update": 1})
	r.expectRoutes(base, nil, request{"www.example.com", "/api/x", "next"}, request{warmingHost, "/", "503"})
}

func TestDeleteHTTPKeepsABackendServiceAUsersURLMapUses(t *testing.T) {
	lb := shopBalancer(t, "")
	e := newEnv(t)
	r := &lbRig{env: e, lb: lb, groups: map[string]*providers.Group{}}
	r.status, r.specs = r.ensureHTTP(lb)
	for id, be := range lb.Backends {
		r.groups[id] = r.attach(be, r.specs[id], target("127.0.0.11", 8000, zoneLB))
		if err := e.p.Release(e.ctx, providers.BindingKey{Namespace: "shop", Service: be.Service, Provider: "gcp", Port: be.Port}, r.groups[id].Ref, nil); err != nil {
			t.Fatalf("Release %s: %v", id, err)
		}
	}
	webService := BackendResourceName(cluster, lbKey, webBE, kindBackend)
	webCheck := BackendResourceName(cluster, lbKey, webBE, kindHealthCheck)
	e.done(e.p.c.ums.Insert(project, &compute.UrlMap{
		Name: "users-map", DefaultService: "global/backendServices/" + webService}).Context(e.ctx).Do())

	err := e.p.DeleteHTTP(e.ctx, cluster, lbKey)
	kept, ok := providers.AsKept(err)
	if !ok || providers.ClassOf(err) != providers.Invalid || !strings.Contains(err.Error(), "users-map") {
		t.Fatalf("DeleteHTTP with a user's URL map on podlb's backend service: %v, want a KeptError naming it", err)
	}
	if len(kept.Kept) != 1 || !strings.Contains(kept.Kept[0], webService) {
		t.Errorf("kept %q, want the web backend service alone", kept.Kept)
	}
	want := []string{"backendService/" + webService, "healthCheck/" + webCheck}
	if left := e.ours(); !slices.Equal(left, want) {
		t.Errorf("left %v, want only %v", left, want)
	}
	if _, err := e.p.c.ums.Get(project, "users-map").Context(e.ctx).Do(); err != nil {
		t.Errorf("the user's URL map: %v", err)
	}

	e.done(e.p.c.ums.Delete(project, "users-map").Context(e.ctx).Do())
	if err := e.p.DeleteHTTP(e.ctx, cluster, lbKey); err != nil {
		t.Fatalf("DeleteHTTP once the user's URL map is gone: %v", err)
	}
	if left := e.ours(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
