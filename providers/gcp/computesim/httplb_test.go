package computesim_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

const link = "https://www.googleapis.com/compute/v1/projects/" + project + "/"

// httpBackendService builds an HTTP backend service whose NEG backends
// balance by RATE, as Application Load Balancers need.
func httpBackendService(name, hc, scheme string, drainSec int32, negs ...string) *computepb.BackendService {
	bs := &computepb.BackendService{
		Name:                proto.String(name),
		Protocol:            proto.String("HTTP"),
		LoadBalancingScheme: proto.String(scheme),
		HealthChecks:        []string{hc},
		ConnectionDraining:  &computepb.ConnectionDraining{DrainingTimeoutSec: proto.Int32(drainSec)},
	}
	for _, n := range negs {
		bs.Backends = append(bs.Backends, &computepb.Backend{
			Group: proto.String(n), BalancingMode: proto.String("RATE"), MaxRatePerEndpoint: proto.Float32(100),
		})
	}
	return bs
}

func httpHealthCheck(name string) *computepb.HealthCheck {
	return &computepb.HealthCheck{
		Name: proto.String(name), Type: proto.String("HTTP"),
		CheckIntervalSec: proto.Int32(5), TimeoutSec: proto.Int32(5), HealthyThreshold: proto.Int32(1), UnhealthyThreshold: proto.Int32(2),
		HttpHealthCheck: &computepb.HTTPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT"), RequestPath: proto.String("/healthz")},
	}
}

// lbGet sends one request through a forwarding rule with the given Host
// and answers the status and body (the backends answer their IP).
func lbGet(t *testing.T, base, host, path string, tlsConf *tls.Config) (int, string) {
	t.Helper()
	code, body, err := lbDo(base, host, path, tlsConf)
	if err != nil {
		t.Fatalf("GET %s%s (Host %s): %v", base, path, host, err)
	}
	return code, body
}

// lbDo is lbGet for goroutines other than the test's.
func lbDo(base, host, path string, tlsConf *tls.Config) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	c := &http.Client{
		Timeout:       5 * time.Second,
		Transport:     &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsConf},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 3 {
		return resp.StatusCode, resp.Header.Get("Location"), nil
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

func TestHTTPHealthChecksAndBackendServicesForApplicationLoadBalancers(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.createNEG(zoneA, "neg-a", 80)

	// Regional HTTP health checks live apart from global ones.
	e.done(e.rhcs.Insert(e.ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region, HealthCheckResource: httpHealthCheck("hc")}))
	got, err := e.rhcs.Get(e.ctx, &computepb.GetRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "hc"})
	if err != nil || got.GetSelfLink() != link+"regions/"+region+"/healthChecks/hc" || got.GetHttpHealthCheck().GetPortSpecification() != "USE_SERVING_PORT" ||
		got.GetHttpHealthCheck().Port != nil || got.GetRegion() != link+"regions/"+region {
		t.Fatalf("regional health check: %v %v", got, err)
	}
	it := e.hcs.List(e.ctx, &computepb.ListHealthChecksRequest{Project: project})
	if hc, err := it.Next(); err == nil {
		t.Fatalf("global list shows %s", hc.GetSelfLink())
	}
	_, err = e.hcs.Get(e.ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: "hc"})
	expectErr(t, err, 404, "notFound")

	// A regional INTERNAL_MANAGED service with RATE backends uses it.
	rbs := httpBackendService("web", "hc", "INTERNAL_MANAGED", 30, negURL(zoneA, "neg-a"))
	e.done(e.rbs.Insert(e.ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region, BackendServiceResource: rbs}))
	bs, err := e.rbs.Get(e.ctx, &computepb.GetRegionBackendServiceRequest{Project: project, Region: region, BackendService: "web"})
	if err != nil || bs.GetHealthChecks()[0] != link+"regions/"+region+"/healthChecks/hc" || bs.GetBackends()[0].GetMaxRatePerEndpoint() != 100 ||
		bs.GetConnectionDraining().GetDrainingTimeoutSec() != 30 || bs.GetLoadBalancingScheme() != "INTERNAL_MANAGED" {
		t.Fatalf("regional backend service: %v %v", bs, err)
	}
	_, err = e.rhcs.Delete(e.ctx, &computepb.DeleteRegionHealthCheckRequest{Project: project, Region: region, HealthCheck: "hc"})
	expectErr(t, err, 400, "resourceInUseByAnotherResource")

	// A global EXTERNAL_MANAGED service: CONNECTION is refused for HTTP,
	// UTILIZATION for NEGs, and unknown schemes outright.
	e.done(e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: httpHealthCheck("ghc")}))
	insert := func(mut func(*computepb.BackendService)) error {
		b := httpBackendService("api", hcURL("ghc"), "EXTERNAL_MANAGED", 0, negURL(zoneA, "neg-a"))
		mut(b)
		return e.opErr(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: b}))
	}
	err = insert(func(b *computepb.BackendService) {
		b.Backends[0].BalancingMode, b.Backends[0].MaxRatePerEndpoint = proto.String("CONNECTION"), nil
		b.Backends[0].MaxConnectionsPerEndpoint = proto.Int32(10)
	})
	expectErr(t, err, 400, "invalid")
	if !strings.Contains(err.Error(), "CONNECTION balancing mode is not supported for protocol HTTP") {
		t.Fatalf("CONNECTION for HTTP: %v", err)
	}
	err = insert(func(b *computepb.BackendService) {
		b.Backends[0].BalancingMode, b.Backends[0].MaxRatePerEndpoint = proto.String("UTILIZATION"), nil
	})
	expectErr(t, err, 400, "invalid")
	if !strings.Contains(err.Error(), "UTILIZATION balancing mode is not supported for network endpoint groups") {
		t.Fatalf("UTILIZATION for a NEG: %v", err)
	}
	expectErr(t, insert(func(b *computepb.BackendService) { b.LoadBalancingScheme = proto.String("EXTERNAL_PASSTHROUGH") }), 400, "invalid")
	expectErr(t, insert(func(b *computepb.BackendService) { b.Backends[0].MaxRatePerEndpoint = nil }), 400, "invalid")
	if err := insert(func(*computepb.BackendService) {}); err != nil {
		t.Fatal(err)
	}
}

// lbStack creates the usual global Application Load Balancer pieces: two
// NEGs, an HTTP health check and EXTERNAL_MANAGED backend services web
// (neg-a) and api (neg-b).
func (e *env) lbStack() {
	e.t.Helper()
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	_ = e.srv.AddInstance(zoneB, "node-2", "10.0.0.2", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	e.createNEG(zoneB, "neg-b", 80)
	e.done(e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: httpHealthCheck("hc")}))
	for name, neg := range map[string]string{"web": negURL(zoneA, "neg-a"), "api": negURL(zoneB, "neg-b")} {
		e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project,
			BackendServiceResource: httpBackendService(name, hcURL("hc"), "EXTERNAL_MANAGED", 30, neg)}))
	}
}

// hostsMap routes www.example.com (exact), *.example.com and
// *.api.example.com (wildcards) and everything else by default.
func hostsMap(name string) *computepb.UrlMap {
	svc := func(n string) *string { return proto.String("global/backendServices/" + n) }
	return &computepb.UrlMap{
		Name:           proto.String(name),
		DefaultService: svc("web"),
		HostRules: []*computepb.HostRule{
			{Hosts: []string{"www.example.com"}, PathMatcher: proto.String("www")},
			{Hosts: []string{"*.example.com"}, PathMatcher: proto.String("wild")},
			{Hosts: []string{"*.api.example.com"}, PathMatcher: proto.String("apis")},
		},
		PathMatchers: []*computepb.PathMatcher{
			{Name: proto.String("www"), DefaultService: svc("web"), PathRules: []*computepb.PathRule{
				{Paths: []string{"/api/*"}, Service: svc("api")},
				{Paths: []string{"/api/web/*", "/exact"}, Service: svc("web")},
				{Paths: []string{"/exact/*"}, Service: svc("api")},
			}},
			{Name: proto.String("wild"), DefaultService: svc("web")},
			{Name: proto.String("apis"), DefaultService: svc("api")},
		},
	}
}

func TestURLMapsCRUDFingerprintsAndReferences(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.lbStack()

	bad := hostsMap("um")
	bad.PathMatchers[0].PathRules[0].Service = proto.String("global/backendServices/missing")
	expectErr(t, e.opErr(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: bad})), 404, "notFound")
	for what, mut := range map[string]func(*computepb.UrlMap){
		"star inside a path":   func(m *computepb.UrlMap) { m.PathMatchers[0].PathRules[0].Paths[0] = "/a*b" },
		"path without slash":   func(m *computepb.UrlMap) { m.PathMatchers[0].PathRules[0].Paths[0] = "api" },
		"unknown path matcher": func(m *computepb.UrlMap) { m.HostRules[0].PathMatcher = proto.String("nope") },
		"host in two rules":    func(m *computepb.UrlMap) { m.HostRules[1].Hosts = []string{"www.example.com"} },
		"service and redirect": func(m *computepb.UrlMap) {
			m.DefaultUrlRedirect = &computepb.HttpRedirectAction{HttpsRedirect: proto.Bool(true)}
		},
		"matcher without route": func(m *computepb.UrlMap) { m.PathMatchers[1].DefaultService = nil },
	} {
		m := hostsMap("um")
		mut(m)
		err := e.opErr(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: m}))
		if c, _ := apiCode(t, err); c != 400 {
			t.Errorf("%s: got %d (%v), want 400", what, c, err)
		}
	}

	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: hostsMap("um")}))
	um, err := e.ums.Get(e.ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: "um"})
	if err != nil || um.GetDefaultService() != link+"global/backendServices/web" || um.GetFingerprint() == "" ||
		um.GetPathMatchers()[0].GetPathRules()[0].GetService() != link+"global/backendServices/api" {
		t.Fatalf("get: %v %v", um, err)
	}
	if items := e.ums.List(e.ctx, &computepb.ListUrlMapsRequest{Project: project}); true {
		n := 0
		for _, err := items.Next(); err == nil; _, err = items.Next() {
			n++
		}
		if n != 1 {
			t.Fatalf("list: %d URL maps", n)
		}
	}

	// patch and update want the current fingerprint.
	patch := func(fp *string) error {
		return e.opErr(e.ums.Patch(e.ctx, &computepb.PatchUrlMapRequest{Project: project, UrlMap: "um",
			UrlMapResource: &computepb.UrlMap{Fingerprint: fp, DefaultService: proto.String("global/backendServices/api")}}))
	}
	expectErr(t, patch(nil), 412, "conditionNotMet")
	expectErr(t, patch(proto.String("c3RhbGU=")), 412, "conditionNotMet")
	if err := patch(um.Fingerprint); err != nil {
		t.Fatal(err)
	}
	expectErr(t, patch(um.Fingerprint), 412, "conditionNotMet")
	patched, _ := e.ums.Get(e.ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: "um"})
	if patched.GetDefaultService() != link+"global/backendServices/api" || len(patched.GetHostRules()) != 3 || patched.GetFingerprint() == um.GetFingerprint() {
		t.Fatalf("patched: %v", patched)
	}
	repl := hostsMap("um")
	repl.HostRules, repl.PathMatchers = nil, nil
	expectErr(t, e.opErr(e.ums.Update(e.ctx, &computepb.UpdateUrlMapRequest{Project: project, UrlMap: "um", UrlMapResource: repl})), 412, "conditionNotMet")
	repl.Fingerprint = patched.Fingerprint
	e.done(e.ums.Update(e.ctx, &computepb.UpdateUrlMapRequest{Project: project, UrlMap: "um", UrlMapResource: repl}))
	updated, _ := e.ums.Get(e.ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: "um"})
	if len(updated.GetHostRules()) != 0 || updated.GetDefaultService() != link+"global/backendServices/web" {
		t.Fatalf("updated: %v", updated)
	}

	// A service a URL map routes to cannot go; a URL map a proxy uses
	// cannot either.
	expectErr(t, e.opErr(e.bs.Delete(e.ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: "web"})), 400, "resourceInUseByAnotherResource")
	e.done(e.hps.Insert(e.ctx, &computepb.InsertTargetHttpProxyRequest{Project: project, TargetHttpProxyResource: &computepb.TargetHttpProxy{
		Name: proto.String("hp"), UrlMap: proto.String("global/urlMaps/um")}}))
	expectErr(t, e.opErr(e.ums.Delete(e.ctx, &computepb.DeleteUrlMapRequest{Project: project, UrlMap: "um"})), 400, "resourceInUseByAnotherResource")
	e.done(e.hps.Delete(e.ctx, &computepb.DeleteTargetHttpProxyRequest{Project: project, TargetHttpProxy: "hp"}))
	e.done(e.ums.Delete(e.ctx, &computepb.DeleteUrlMapRequest{Project: project, UrlMap: "um"}))
	_, err = e.ums.Get(e.ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: "um"})
	expectErr(t, err, 404, "notFound")

	// Regional URL maps route to services of their region only.
	e.done(e.rhcs.Insert(e.ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region, HealthCheckResource: httpHealthCheck("rhc")}))
	e.done(e.rbs.Insert(e.ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region,
		BackendServiceResource: httpBackendService("rweb", "rhc", "INTERNAL_MANAGED", 0, negURL(zoneA, "neg-a"))}))
	rum := &computepb.UrlMap{Name: proto.String("rum"), DefaultService: proto.String(link + "global/backendServices/web")}
	expectErr(t, e.opErr(e.rums.Insert(e.ctx, &computepb.InsertRegionUrlMapRequest{Project: project, Region: region, UrlMapResource: rum})), 400, "invalid")
	rum.DefaultService = proto.String("rweb")
	e.done(e.rums.Insert(e.ctx, &computepb.InsertRegionUrlMapRequest{Project: project, Region: region, UrlMapResource: rum}))
	got, err := e.rums.Get(e.ctx, &computepb.GetRegionUrlMapRequest{Project: project, Region: region, UrlMap: "rum"})
	if err != nil || got.GetDefaultService() != link+"regions/"+region+"/backendServices/rweb" {
		t.Fatalf("regional URL map: %v %v", got, err)
	}
}

// TestURLMapRoutingThroughValidate checks the routing rules through
// urlMaps.validate, whose tests run the same router as the data path.
func TestURLMapRoutingThroughValidate(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.lbStack()
	cases := []struct{ host, path, want string }{
		{"www.example.com", "/", "web"},
		{"www.example.com", "/api/v1", "api"},              // prefix rule
		{"www.example.com", "/api/", "api"},                // "/api/*" covers "/api/"
		{"www.example.com", "/api", "web"},                 // ... but not "/api"
		{"www.example.com", "/api/web/x", "web"},           // longest prefix wins
		{"www.example.com", "/exact", "web"},               // exact rule
		{"www.example.com", "/exact/more", "api"},          // prefix, not the exact rule
		{"www.example.com:8080", "/api/v1", "api"},         // port ignored
		{"shop.example.com", "/api/v1", "web"},             // wildcard host, no path rules
		{"v1.api.example.com", "/", "api"},                 // longer wildcard suffix wins
		{"example.com", "/api/v1", "web"},                  // "*.example.com" needs a label
		{"other.org", "/api/v1", "web"},                    // no host rule: default
		{"WWW.EXAMPLE.COM", "/api/v1", "api"},              // hosts are case-insensitive
		{"www.example.com", "/api/v1?x=/exact", "api"},     // query ignored
		{"www.example.com.evil.org", "/api/v1", "web"},     // suffix is not a match
		{"a.b.example.com", "/", "web"},                    // wildcard spans labels
		{"x.api.example.com", "/anything/at/all", "api"},   // matcher default
		{"www.example.com", "/EXACT", "web"},               // paths are case-sensitive
		{"www.example.com", "/exact/", "api"},              // "/exact/*" covers "/exact/"
		{"www.example.com", "/api/web", "api"},             // "/api/web/*" does not cover "/api/web"
		{"www.example.com", "/api/web/", "web"},            // ... but covers "/api/web/"
		{"shop.example.com", "/exact", "web"},              // other matcher's rules do not apply
		{"anything", "/", "web"},                           // default
		{"www.example.com", "/apis", "web"},                // "/api/*" is not a string prefix
		{"www.example.com", "/api/v1/deeper/still", "api"}, // any depth
	}
	m := hostsMap("um")
	for _, c := range cases {
		path, _, _ := strings.Cut(c.path, "?")
		m.Tests = append(m.Tests, &computepb.UrlMapTest{Host: proto.String(c.host), Path: proto.String(path),
			Service: proto.String("global/backendServices/" + c.want)})
	}
	validate := func(m *computepb.UrlMap) *computepb.UrlMapValidationResult {
		t.Helper()
		resp, err := e.ums.Validate(e.ctx, &computepb.ValidateUrlMapRequest{Project: project, UrlMap: m.GetName(),
			UrlMapsValidateRequestResource: &computepb.UrlMapsValidateRequest{Resource: m}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetResult()
	}
	if res := validate(m); !res.GetLoadSucceeded() || !res.GetTestPassed() {
		t.Fatalf("routing: %v", res)
	}

	// A wrong expectation fails, naming what the router chose.
	m.Tests = []*computepb.UrlMapTest{{Host: proto.String("www.example.com"), Path: proto.String("/api/v1"), Service: proto.String("global/backendServices/web")}}
	res := validate(m)
	if !res.GetLoadSucceeded() || res.GetTestPassed() || len(res.GetTestFailures()) != 1 ||
		res.GetTestFailures()[0].GetActualService() != link+"global/backendServices/api" {
		t.Fatalf("failing test: %v", res)
	}
	// Inserting a URL map whose tests fail is refused.
	expectErr(t, e.opErr(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: m})), 400, "invalid")

	// A map that does not load reports loadErrors instead of an error.
	m.Tests = nil
	m.PathMatchers[0].PathRules[0].Paths = []string{"/a*"}
	if res := validate(m); res.GetLoadSucceeded() || len(res.GetLoadErrors()) != 1 || !strings.Contains(res.GetLoadErrors()[0], "pathRules[0].paths[0]") {
		t.Fatalf("load errors: %v", res)
	}

	// Redirects are routes too.
	rd := &computepb.UrlMap{Name: proto.String("redirect"),
		DefaultUrlRedirect: &computepb.HttpRedirectAction{HttpsRedirect: proto.Bool(true), StripQuery: proto.Bool(false)},
		Tests: []*computepb.UrlMapTest{{Host: proto.String("www.example.com"), Path: proto.String("/a"),
			ExpectedOutputUrl: proto.String("https://www.example.com/a"), ExpectedRedirectResponseCode: proto.Int32(301)}}}
	if res := validate(rd); !res.GetLoadSucceeded() || !res.GetTestPassed() {
		t.Fatalf("redirect: %v", res)
	}
}

func TestSSLCertificates(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	certPEM, keyPEM, err := e.srv.CertificatePEM("www.example.com", "*.example.com")
	if err != nil {
		t.Fatal(err)
	}
	e.done(e.certs.Insert(e.ctx, &computepb.InsertSslCertificateRequest{Project: project, SslCertificateResource: &computepb.SslCertificate{
		Name: proto.String("www"), SelfManaged: &computepb.SslCertificateSelfManagedSslCertificate{Certificate: proto.String(certPEM), PrivateKey: proto.String(keyPEM)},
	}}))
	got, err := e.certs.Get(e.ctx, &computepb.GetSslCertificateRequest{Project: project, SslCertificate: "www"})
	if err != nil || got.GetType() != "SELF_MANAGED" || got.GetCertificate() != certPEM || got.GetPrivateKey() != "" ||
		got.GetSelfManaged().GetPrivateKey() != "" || strings.Join(got.GetSubjectAlternativeNames(), ",") != "www.example.com,*.example.com" ||
		got.GetExpireTime() == "" {
		t.Fatalf("get: %v %v", got, err)
	}

	// The legacy top-level fields work too; a key of another certificate
	// does not.
	_, otherKey, _ := e.srv.CertificatePEM("other.example.com")
	insert := func(name, cert, key string) error {
		return e.opErr(e.certs.Insert(e.ctx, &computepb.InsertSslCertificateRequest{Project: project, SslCertificateResource: &computepb.SslCertificate{
			Name: proto.String(name), Certificate: proto.String(cert), PrivateKey: proto.String(key)}}))
	}
	expectErr(t, insert("mismatch", certPEM, otherKey), 400, "invalid")
	expectErr(t, insert("garbage", "not a certificate", keyPEM), 400, "invalid")
	expectErr(t, insert("www", certPEM, keyPEM), 409, "alreadyExists")
	if err := insert("legacy", certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	expectErr(t, e.opErr(e.certs.Insert(e.ctx, &computepb.InsertSslCertificateRequest{Project: project, SslCertificateResource: &computepb.SslCertificate{
		Name: proto.String("managed"), Type: proto.String("MANAGED"),
		Managed: &computepb.SslCertificateManagedSslCertificate{Domains: []string{"www.example.com"}}}})), 400, "invalid")

	// IssueCertificate creates one directly.
	if err := e.srv.IssueCertificate("issued", "api.example.com"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for it := e.certs.List(e.ctx, &computepb.ListSslCertificatesRequest{Project: project}); ; n++ {
		if _, err := it.Next(); err != nil {
			break
		}
	}
	if n != 3 {
		t.Fatalf("listed %d certificates, want www, legacy and issued", n)
	}

	// Regional certificates; an HTTPS proxy's certificate cannot go.
	e.done(e.rcerts.Insert(e.ctx, &computepb.InsertRegionSslCertificateRequest{Project: project, Region: region, SslCertificateResource: &computepb.SslCertificate{
		Name: proto.String("regional"), Certificate: proto.String(certPEM), PrivateKey: proto.String(keyPEM)}}))
	if rc, err := e.rcerts.Get(e.ctx, &computepb.GetRegionSslCertificateRequest{Project: project, Region: region, SslCertificate: "regional"}); err != nil ||
		rc.GetSelfLink() != link+"regions/"+region+"/sslCertificates/regional" {
		t.Fatalf("regional: %v %v", rc, err)
	}
	if err := e.srv.IssueRegionalCertificate(region, "issued", "api.example.com"); err != nil {
		t.Fatal(err)
	}
	if rc, err := e.rcerts.Get(e.ctx, &computepb.GetRegionSslCertificateRequest{Project: project, Region: region, SslCertificate: "issued"}); err != nil ||
		rc.GetSelfLink() != link+"regions/"+region+"/sslCertificates/issued" || !strings.HasSuffix(rc.GetRegion(), "/regions/"+region) {
		t.Fatalf("issued regional: %v %v", rc, err)
	}
	e.lbStack()
	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: &computepb.UrlMap{
		Name: proto.String("um"), DefaultService: proto.String("global/backendServices/web")}}))
	e.done(e.hsps.Insert(e.ctx, &computepb.InsertTargetHttpsProxyRequest{Project: project, TargetHttpsProxyResource: &computepb.TargetHttpsProxy{
		Name: proto.String("hsp"), UrlMap: proto.String("global/urlMaps/um"), SslCertificates: []string{"global/sslCertificates/www"}}}))
	expectErr(t, e.opErr(e.certs.Delete(e.ctx, &computepb.DeleteSslCertificateRequest{Project: project, SslCertificate: "www"})), 400, "resourceInUseByAnotherResource")
	e.done(e.certs.Delete(e.ctx, &computepb.DeleteSslCertificateRequest{Project: project, SslCertificate: "legacy"}))
}

func TestTargetProxiesAddressesAndForwardingRules(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.lbStack()
	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: hostsMap("um")}))
	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: &computepb.UrlMap{
		Name: proto.String("um2"), DefaultService: proto.String("global/backendServices/api")}}))
	if err := e.srv.IssueCertificate("cert", "www.example.com"); err != nil {
		t.Fatal(err)
	}

	// Proxies need an existing URL map and, for HTTPS, certificates.
	insertHTTPS := func(certs ...string) error {
		return e.opErr(e.hsps.Insert(e.ctx, &computepb.InsertTargetHttpsProxyRequest{Project: project, TargetHttpsProxyResource: &computepb.TargetHttpsProxy{
			Name: proto.String("hsp"), UrlMap: proto.String("global/urlMaps/um"), SslCertificates: certs}}))
	}
	expectErr(t, insertHTTPS("global/sslCertificates/missing"), 404, "notFound")
	expectErr(t, insertHTTPS(), 400, "invalid")
	if err := insertHTTPS(link + "global/sslCertificates/cert"); err != nil {
		t.Fatal(err)
	}
	expectErr(t, e.opErr(e.hps.Insert(e.ctx, &computepb.InsertTargetHttpProxyRequest{Project: project, TargetHttpProxyResource: &computepb.TargetHttpProxy{
		Name: proto.String("hp"), UrlMap: proto.String("global/urlMaps/nope")}})), 404, "notFound")
	e.done(e.hps.Insert(e.ctx, &computepb.InsertTargetHttpProxyRequest{Project: project, TargetHttpProxyResource: &computepb.TargetHttpProxy{
		Name: proto.String("hp"), UrlMap: proto.String("global/urlMaps/um")}}))
	hp, err := e.hps.Get(e.ctx, &computepb.GetTargetHttpProxyRequest{Project: project, TargetHttpProxy: "hp"})
	if err != nil || hp.GetUrlMap() != link+"global/urlMaps/um" || hp.GetKind() != "compute#targetHttpProxy" || hp.GetFingerprint() == "" {
		t.Fatalf("get proxy: %v %v", hp, err)
	}
	e.done(e.hps.SetUrlMap(e.ctx, &computepb.SetUrlMapTargetHttpProxyRequest{Project: project, TargetHttpProxy: "hp",
		UrlMapReferenceResource: &computepb.UrlMapReference{UrlMap: proto.String(link + "global/urlMaps/um2")}}))
	expectErr(t, e.opErr(e.hps.SetUrlMap(e.ctx, &computepb.SetUrlMapTargetHttpProxyRequest{Project: project, TargetHttpProxy: "hp",
		UrlMapReferenceResource: &computepb.UrlMapReference{UrlMap: proto.String("global/urlMaps/gone")}})), 404, "notFound")
	if hp2, _ := e.hps.Get(e.ctx, &computepb.GetTargetHttpProxyRequest{Project: project, TargetHttpProxy: "hp"}); hp2.GetUrlMap() != link+"global/urlMaps/um2" ||
		hp2.GetFingerprint() == hp.GetFingerprint() {
		t.Fatalf("setUrlMap: %v", hp2)
	}
	expectErr(t, e.opErr(e.hsps.SetSslCertificates(e.ctx, &computepb.SetSslCertificatesTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: "hsp",
		TargetHttpsProxiesSetSslCertificatesRequestResource: &computepb.TargetHttpsProxiesSetSslCertificatesRequest{SslCertificates: []string{"global/sslCertificates/nope"}}})), 404, "notFound")

	// Global addresses: each reserves its own loopback IP.
	for _, name := range []string{"ip1", "ip2"} {
		e.done(e.gaddrs.Insert(e.ctx, &computepb.InsertGlobalAddressRequest{Project: project, AddressResource: &computepb.Address{Name: proto.String(name)}}))
	}
	a1, err := e.gaddrs.Get(e.ctx, &computepb.GetGlobalAddressRequest{Project: project, Address: "ip1"})
	a2, _ := e.gaddrs.Get(e.ctx, &computepb.GetGlobalAddressRequest{Project: project, Address: "ip2"})
	if err != nil || a1.GetStatus() != "RESERVED" || len(a1.GetUsers()) != 0 || !strings.HasPrefix(a1.GetAddress(), "127.") ||
		a1.GetAddress() == a2.GetAddress() || a1.GetAddressType() != "EXTERNAL" {
		t.Fatalf("addresses: %v %v %v", a1, a2, err)
	}

	// Forwarding rules on an address: one per port.
	insertFR := func(name, target, ip, port, scheme string) error {
		return e.opErr(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
			Name: proto.String(name), Target: proto.String(target), IPAddress: proto.String(ip), PortRange: proto.String(port),
			LoadBalancingScheme: proto.String(scheme)}}))
	}
	if err := insertFR("http", "global/targetHttpProxies/hp", "global/addresses/ip1", "8080", "EXTERNAL_MANAGED"); err != nil {
		t.Fatal(err)
	}
	err = insertFR("clash", "global/targetHttpsProxies/hsp", a1.GetAddress(), "8080", "EXTERNAL_MANAGED")
	expectErr(t, err, 400, "invalid")
	if !strings.Contains(err.Error(), "in-use and would result in a conflict") {
		t.Fatalf("conflict error: %v", err)
	}
	expectErr(t, insertFR("scheme", "global/targetHttpsProxies/hsp", "ip1", "8443", "EXTERNAL"), 400, "invalid")
	expectErr(t, insertFR("missing", "global/targetHttpsProxies/hsp", "global/addresses/nope", "8443", "EXTERNAL_MANAGED"), 404, "notFound")
	if err := insertFR("https", "global/targetHttpsProxies/hsp", link+"global/addresses/ip1", "8443", "EXTERNAL_MANAGED"); err != nil {
		t.Fatal(err)
	}
	a1, _ = e.gaddrs.Get(e.ctx, &computepb.GetGlobalAddressRequest{Project: project, Address: "ip1"})
	if a1.GetStatus() != "IN_USE" || strings.Join(a1.GetUsers(), ",") != link+"global/forwardingRules/http,"+link+"global/forwardingRules/https" {
		t.Fatalf("address in use: %v", a1)
	}
	fr, _ := e.frs.Get(e.ctx, &computepb.GetGlobalForwardingRuleRequest{Project: project, ForwardingRule: "https"})
	if fr.GetIPAddress() != a1.GetAddress() || fr.GetPortRange() != "8443-8443" || fr.GetLoadBalancingScheme() != "EXTERNAL_MANAGED" {
		t.Fatalf("forwarding rule: %v", fr)
	}
	if addr := e.srv.ForwardingRuleAddr("https"); !strings.HasPrefix(addr, a1.GetAddress()+":") {
		t.Fatalf("rule listens on %s, not on its address %s", addr, a1.GetAddress())
	}
	expectErr(t, e.opErr(e.gaddrs.Delete(e.ctx, &computepb.DeleteGlobalAddressRequest{Project: project, Address: "ip1"})), 400, "resourceInUseByAnotherResource")
	expectErr(t, e.opErr(e.hsps.Delete(e.ctx, &computepb.DeleteTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: "hsp"})), 400, "resourceInUseByAnotherResource")
	e.done(e.frs.Delete(e.ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: project, ForwardingRule: "http"}))
	e.done(e.frs.Delete(e.ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: project, ForwardingRule: "https"}))
	a1, _ = e.gaddrs.Get(e.ctx, &computepb.GetGlobalAddressRequest{Project: project, Address: "ip1"})
	if a1.GetStatus() != "RESERVED" || len(a1.GetUsers()) != 0 {
		t.Fatalf("address after its rules went: %v", a1)
	}
	e.done(e.gaddrs.Delete(e.ctx, &computepb.DeleteGlobalAddressRequest{Project: project, Address: "ip1"}))

	// An address outside 127.0.0.0/8 is refused.
	expectErr(t, e.opErr(e.addrs.Insert(e.ctx, &computepb.InsertAddressRequest{Project: project, Region: region, AddressResource: &computepb.Address{
		Name: proto.String("public"), Address: proto.String("34.1.2.3")}})), 400, "invalid")
}

// lbBackends starts HTTP backends and attaches them: two web endpoints in
// neg-a, one api endpoint in neg-b; it waits until all are HEALTHY.
func (e *env) lbBackends(t *testing.T) (web1, web2, api *httpBackend) {
	t.Helper()
	web1, web2, api = startHTTPBackend(t, "127.29.0.1"), startHTTPBackend(t, "127.29.0.2"), startHTTPBackend(t, "127.29.1.1")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", web1.ip, web1.port), ep("node-1", web2.ip, web2.port)))
	e.done(e.attach(zoneB, "neg-b", ep("node-2", api.ip, api.port)))
	eventually(t, "three HEALTHY endpoints", 5*time.Second, func() bool {
		n := 0
		for _, h := range e.srv.Health("") {
			if h.State == computesim.StateHealthy {
				n++
			}
		}
		return n == 3
	})
	return web1, web2, api
}

func TestHTTPDataPathRoutesByHostAndPath(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.lbStack()
	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: hostsMap("um")}))
	e.done(e.hps.Insert(e.ctx, &computepb.InsertTargetHttpProxyRequest{Project: project, TargetHttpProxyResource: &computepb.TargetHttpProxy{
		Name: proto.String("hp"), UrlMap: proto.String("global/urlMaps/um")}}))
	e.done(e.gaddrs.Insert(e.ctx, &computepb.InsertGlobalAddressRequest{Project: project, AddressResource: &computepb.Address{Name: proto.String("vip")}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("global/targetHttpProxies/hp"), IPAddress: proto.String("global/addresses/vip"),
		PortRange: proto.String("80"), LoadBalancingScheme: proto.String("EXTERNAL_MANAGED")}}))
	base := e.srv.ForwardingRuleURL("fr")
	if !strings.HasPrefix(base, "http://127.") {
		t.Fatalf("forwarding rule URL %q", base)
	}

	// Nothing HEALTHY yet: 503.
	if code, body := lbGet(t, base, "www.example.com", "/", nil); code != 503 || body != "no healthy upstream" {
		t.Fatalf("no endpoints: %d %q", code, body)
	}
	web1, web2, api := e.lbBackends(t)

	seen := map[string]int{}
	for range 6 {
		code, who := lbGet(t, base, "www.example.com", "/", nil)
		if code != 200 {
			t.Fatalf("web: %d %s", code, who)
		}
		seen[who]++
	}
	if seen[web1.ip] != 3 || seen[web2.ip] != 3 {
		t.Fatalf("round robin over web: %v", seen)
	}
	for _, c := range []struct{ host, path, want string }{
		{"www.example.com", "/api/v1", api.ip},
		{"www.example.com", "/api", ""}, // web
		{"v1.api.example.com", "/", api.ip},
		{"shop.example.com", "/api/v1", ""},
		{"unknown.org", "/api/v1", ""},
	} {
		code, who := lbGet(t, base, c.host, c.path, nil)
		isWeb := who == web1.ip || who == web2.ip
		if code != 200 || (c.want == "" && !isWeb) || (c.want != "" && who != c.want) {
			t.Errorf("%s%s: %d from %q, want %q (\"\" = web)", c.host, c.path, code, who, c.want)
		}
	}

	// The api endpoint fails its health check: its service answers 503
	// while web keeps serving.
	api.status.Store(500)
	eventually(t, "api UNHEALTHY", 5*time.Second, func() bool {
		return e.getHealth("api", negURL(zoneB, "neg-b"))[fmt.Sprintf("%s:%d", api.ip, api.port)] == "UNHEALTHY"
	})
	if code, body := lbGet(t, base, "www.example.com", "/api/v1", nil); code != 503 || body != "no healthy upstream" {
		t.Fatalf("unhealthy api: %d %q", code, body)
	}
	if code, _ := lbGet(t, base, "www.example.com", "/", nil); code != 200 {
		t.Fatalf("web while api is down: %d", code)
	}

	// Without a default service, unmatched hosts get 404; a redirect
	// default sends them to https.
	m := hostsMap("um")
	m.DefaultService = nil
	cur, _ := e.ums.Get(e.ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: "um"})
	m.Fingerprint = cur.Fingerprint
	e.done(e.ums.Update(e.ctx, &computepb.UpdateUrlMapRequest{Project: project, UrlMap: "um", UrlMapResource: m}))
	if code, _ := lbGet(t, base, "unknown.org", "/", nil); code != 404 {
		t.Fatalf("no default service: %d, want 404", code)
	}
	if code, who := lbGet(t, base, "shop.example.com", "/", nil); code != 200 || (who != web1.ip && who != web2.ip) {
		t.Fatalf("host rule still routes: %d %q", code, who)
	}
	m.DefaultUrlRedirect = &computepb.HttpRedirectAction{HttpsRedirect: proto.Bool(true)}
	cur, _ = e.ums.Get(e.ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: "um"})
	m.Fingerprint = cur.Fingerprint
	e.done(e.ums.Update(e.ctx, &computepb.UpdateUrlMapRequest{Project: project, UrlMap: "um", UrlMapResource: m}))
	if code, loc := lbGet(t, base, "unknown.org", "/a/b?q=1", nil); code != 301 || loc != "https://unknown.org/a/b?q=1" {
		t.Fatalf("redirect: %d %q", code, loc)
	}
}

func TestHTTPDataPathDrainsDetachedEndpoints(t *testing.T) {
	e := newEnv(t, computesim.Options{DrainingTimeout: 1500 * time.Millisecond})
	e.lbStack()
	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: &computepb.UrlMap{
		Name: proto.String("um"), DefaultService: proto.String("global/backendServices/web")}}))
	e.done(e.hps.Insert(e.ctx, &computepb.InsertTargetHttpProxyRequest{Project: project, TargetHttpProxyResource: &computepb.TargetHttpProxy{
		Name: proto.String("hp"), UrlMap: proto.String("global/urlMaps/um")}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("global/targetHttpProxies/hp"), LoadBalancingScheme: proto.String("EXTERNAL_MANAGED")}}))
	base := e.srv.ForwardingRuleURL("fr")

	// A backend whose /slow answers only when released and whose /stuck
	// never answers.
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.29.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		case "/stuck":
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "slow-backend")
	})}
	go func() { _ = slow.Serve(ln) }()
	t.Cleanup(func() { _ = slow.Close() })
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	e.done(e.attach(zoneA, "neg-a", ep("node-1", "127.29.2.1", port)))
	eventually(t, "endpoint HEALTHY", 5*time.Second, func() bool {
		return e.getHealth("web", negURL(zoneA, "neg-a"))[fmt.Sprintf("127.29.2.1:%d", port)] == "HEALTHY"
	})

	type answer struct {
		code int
		body string
		err  error
	}
	inflight, stuck := make(chan answer, 1), make(chan answer, 1)
	for path, ch := range map[string]chan answer{"/slow": inflight, "/stuck": stuck} {
		go func() {
			code, body, err := lbDo(base, "x", path, nil)
			ch <- answer{code, body, err}
		}()
	}
	eventually(t, "two requests in flight", 5*time.Second, func() bool {
		for _, h := range e.srv.Health("web") {
			if h.ActiveConnections == 2 {
				return true
			}
		}
		return false
	})
	e.done(e.detach(zoneA, "neg-a", ep("node-1", "127.29.2.1", port)))
	if st := e.simState("web", fmt.Sprintf("127.29.2.1:%d", port)); st != "DRAINING" {
		t.Fatalf("detached endpoint is %q, want DRAINING", st)
	}
	// New requests do not go to the draining endpoint...
	if code, _ := lbGet(t, base, "x", "/", nil); code != 503 {
		t.Fatalf("new request while only a draining endpoint exists: %d, want 503", code)
	}
	// ... but the one in flight completes.
	close(release)
	select {
	case a := <-inflight:
		if a.err != nil || a.code != 200 || a.body != "slow-backend" {
			t.Fatalf("in-flight request: %d %q %v", a.code, a.body, a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight request did not complete while draining")
	}
	// The one still running when draining ends is cut off.
	select {
	case a := <-stuck:
		if a.err == nil {
			t.Fatalf("request outlived connection draining: %d %q", a.code, a.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request still running long after connection draining ended")
	}
}

func TestHTTPSDataPathServesCertificatesBySNI(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.lbStack()
	web1, web2, api := e.lbBackends(t)
	e.done(e.ums.Insert(e.ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: hostsMap("um")}))
	if err := e.srv.IssueCertificate("www", "www.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.IssueCertificate("apis", "*.api.example.com"); err != nil {
		t.Fatal(err)
	}
	e.done(e.hsps.Insert(e.ctx, &computepb.InsertTargetHttpsProxyRequest{Project: project, TargetHttpsProxyResource: &computepb.TargetHttpsProxy{
		Name: proto.String("hsp"), UrlMap: proto.String("global/urlMaps/um"), SslCertificates: []string{"global/sslCertificates/www", "global/sslCertificates/apis"}}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("global/targetHttpsProxies/hsp"), LoadBalancingScheme: proto.String("EXTERNAL_MANAGED")}}))
	fr, _ := e.frs.Get(e.ctx, &computepb.GetGlobalForwardingRuleRequest{Project: project, ForwardingRule: "fr"})
	if fr.GetPortRange() != "443-443" {
		t.Fatalf("default HTTPS port range %q", fr.GetPortRange())
	}
	base := e.srv.ForwardingRuleURL("fr")
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("forwarding rule URL %q", base)
	}
	trusting := func(sni string) *tls.Config { return &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: sni} }

	if code, who := lbGet(t, base, "www.example.com", "/", trusting("www.example.com")); code != 200 || (who != web1.ip && who != web2.ip) {
		t.Fatalf("https www: %d %q", code, who)
	}
	if code, who := lbGet(t, base, "v1.api.example.com", "/", trusting("v1.api.example.com")); code != 200 || who != api.ip {
		t.Fatalf("https api: %d %q", code, who)
	}
	// Without a matching SNI the primary certificate is served, which the
	// client then refuses for the name it wanted.
	peer := func(sni string) []string {
		c, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{ServerName: sni, InsecureSkipVerify: true}) //nolint:gosec // inspecting the served certificate
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].DNSNames
	}
	if got := peer("nothing.example.org"); strings.Join(got, ",") != "www.example.com" {
		t.Fatalf("certificate without a matching SNI: %v", got)
	}
	if got := peer("x.api.example.com"); strings.Join(got, ",") != "*.api.example.com" {
		t.Fatalf("certificate for x.api.example.com: %v", got)
	}

	// setSslCertificates changes what is served at once.
	e.done(e.hsps.SetSslCertificates(e.ctx, &computepb.SetSslCertificatesTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: "hsp",
		TargetHttpsProxiesSetSslCertificatesRequestResource: &computepb.TargetHttpsProxiesSetSslCertificatesRequest{SslCertificates: []string{"global/sslCertificates/apis"}}}))
	if got := peer("www.example.com"); strings.Join(got, ",") != "*.api.example.com" {
		t.Fatalf("after setSslCertificates: %v", got)
	}
	hsp, _ := e.hsps.Get(e.ctx, &computepb.GetTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: "hsp"})
	if strings.Join(hsp.GetSslCertificates(), ",") != link+"global/sslCertificates/apis" {
		t.Fatalf("proxy certificates: %v", hsp.GetSslCertificates())
	}
}

func TestRegionalInternalApplicationLoadBalancer(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	b := startHTTPBackend(t, "127.29.3.1")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", b.ip, b.port)))
	e.done(e.rhcs.Insert(e.ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region, HealthCheckResource: httpHealthCheck("hc")}))
	e.done(e.rbs.Insert(e.ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region,
		BackendServiceResource: httpBackendService("web", "hc", "INTERNAL_MANAGED", 0, negURL(zoneA, "neg-a"))}))
	e.done(e.rums.Insert(e.ctx, &computepb.InsertRegionUrlMapRequest{Project: project, Region: region, UrlMapResource: &computepb.UrlMap{
		Name: proto.String("um"), DefaultService: proto.String("web")}}))
	e.done(e.rhps.Insert(e.ctx, &computepb.InsertRegionTargetHttpProxyRequest{Project: project, Region: region, TargetHttpProxyResource: &computepb.TargetHttpProxy{
		Name: proto.String("hp"), UrlMap: proto.String("regions/" + region + "/urlMaps/um")}}))
	e.done(e.addrs.Insert(e.ctx, &computepb.InsertAddressRequest{Project: project, Region: region, AddressResource: &computepb.Address{
		Name: proto.String("vip"), AddressType: proto.String("INTERNAL")}}))
	// A global target cannot serve a regional rule.
	expectErr(t, e.opErr(e.rfrs.Insert(e.ctx, &computepb.InsertForwardingRuleRequest{Project: project, Region: region, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("global/targetHttpProxies/hp"), LoadBalancingScheme: proto.String("INTERNAL_MANAGED")}})), 400, "invalid")
	e.done(e.rfrs.Insert(e.ctx, &computepb.InsertForwardingRuleRequest{Project: project, Region: region, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("regions/" + region + "/targetHttpProxies/hp"), IPAddress: proto.String("vip"),
		PortRange: proto.String("80"), LoadBalancingScheme: proto.String("INTERNAL_MANAGED")}}))
	vip, _ := e.addrs.Get(e.ctx, &computepb.GetAddressRequest{Project: project, Region: region, Address: "vip"})
	if vip.GetStatus() != "IN_USE" || vip.GetUsers()[0] != link+"regions/"+region+"/forwardingRules/fr" {
		t.Fatalf("regional address: %v", vip)
	}
	base := e.srv.ForwardingRuleURL("fr")
	if !strings.HasPrefix(base, "http://"+vip.GetAddress()+":") {
		t.Fatalf("rule URL %q is not on %s", base, vip.GetAddress())
	}
	eventually(t, "regional endpoint answers", 5*time.Second, func() bool {
		code, who := lbGet(t, base, "internal.example", "/", nil)
		return code == 200 && who == b.ip
	})
	e.done(e.rfrs.Delete(e.ctx, &computepb.DeleteForwardingRuleRequest{Project: project, Region: region, ForwardingRule: "fr"}))
	if e.srv.ForwardingRuleURL("fr") != "" {
		t.Fatal("deleted rule still has a URL")
	}
}

func TestRegionalHTTPSProxyUsesRegionalCertificates(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg-a", 80)
	b := startHTTPBackend(t, "127.29.4.1")
	e.done(e.attach(zoneA, "neg-a", ep("node-1", b.ip, b.port)))
	e.done(e.rhcs.Insert(e.ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: region, HealthCheckResource: httpHealthCheck("hc")}))
	e.done(e.rbs.Insert(e.ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region,
		BackendServiceResource: httpBackendService("web", "hc", "INTERNAL_MANAGED", 0, negURL(zoneA, "neg-a"))}))
	e.done(e.rums.Insert(e.ctx, &computepb.InsertRegionUrlMapRequest{Project: project, Region: region, UrlMapResource: &computepb.UrlMap{
		Name: proto.String("um"), DefaultService: proto.String("web")}}))
	insertCert := func(name, domain string) {
		certPEM, keyPEM, err := e.srv.CertificatePEM(domain)
		if err != nil {
			t.Fatal(err)
		}
		e.done(e.rcerts.Insert(e.ctx, &computepb.InsertRegionSslCertificateRequest{Project: project, Region: region, SslCertificateResource: &computepb.SslCertificate{
			Name: proto.String(name), SelfManaged: &computepb.SslCertificateSelfManagedSslCertificate{Certificate: proto.String(certPEM), PrivateKey: proto.String(keyPEM)}}}))
	}
	insertCert("one", "one.internal")
	insertCert("two", "two.internal")
	if err := e.srv.IssueCertificate("global", "one.internal"); err != nil {
		t.Fatal(err)
	}
	proxy := func(certs ...string) *computepb.InsertRegionTargetHttpsProxyRequest {
		return &computepb.InsertRegionTargetHttpsProxyRequest{Project: project, Region: region, TargetHttpsProxyResource: &computepb.TargetHttpsProxy{
			Name: proto.String("hsp"), UrlMap: proto.String("regions/" + region + "/urlMaps/um"), SslCertificates: certs}}
	}
	expectErr(t, e.opErr(e.rhsps.Insert(e.ctx, proxy("global/sslCertificates/global"))), 400, "invalid")
	expectErr(t, e.opErr(e.rhsps.Insert(e.ctx, proxy("regions/"+region+"/sslCertificates/three"))), 404, "notFound")
	e.done(e.rhsps.Insert(e.ctx, proxy("one")))
	e.done(e.rfrs.Insert(e.ctx, &computepb.InsertForwardingRuleRequest{Project: project, Region: region, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("regions/" + region + "/targetHttpsProxies/hsp"), LoadBalancingScheme: proto.String("INTERNAL_MANAGED")}}))
	base := e.srv.ForwardingRuleURL("fr")
	trusting := func(sni string) *tls.Config { return &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: sni} }
	eventually(t, "HTTPS answer for one.internal", 5*time.Second, func() bool {
		code, who := lbGet(t, base, "one.internal", "/", trusting("one.internal"))
		return code == 200 && who == b.ip
	})
	if _, _, err := lbDo(base, "two.internal", "/", trusting("two.internal")); err == nil {
		t.Fatal("two.internal verified before its certificate was attached")
	}
	e.done(e.rhsps.SetSslCertificates(e.ctx, &computepb.SetSslCertificatesRegionTargetHttpsProxyRequest{Project: project, Region: region, TargetHttpsProxy: "hsp",
		RegionTargetHttpsProxiesSetSslCertificatesRequestResource: &computepb.RegionTargetHttpsProxiesSetSslCertificatesRequest{
			SslCertificates: []string{"one", link + "regions/" + region + "/sslCertificates/two"}}}))
	if code, who := lbGet(t, base, "two.internal", "/", trusting("two.internal")); code != 200 || who != b.ip {
		t.Fatalf("two.internal after setSslCertificates: %d %q", code, who)
	}
}
