package gcp

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/podlb/podlb/providers"
)

var edgeKey = providers.BalancerKey{Namespace: "shop", Name: "edge"}

func l4(port int32, protocol, svc string) providers.L4Listener {
	return providers.L4Listener{Port: port, Protocol: protocol, Backend: providers.L4Backend{Namespace: "shop", Service: svc, Port: port}}
}

// edgeL4 serves db on 5432 and cache on 6379, and asks for dns on 53/UDP.
func edgeL4(t *testing.T, annotation string) *providers.L4Balancer {
	t.Helper()
	spec, err := ParseNetworkLoadBalancerSpec(annotation)
	if err != nil {
		t.Fatal(err)
	}
	return &providers.L4Balancer{Key: edgeKey, Cluster: cluster, Spec: spec, Listeners: []providers.L4Listener{
		l4(53, "UDP", "dns"), l4(5432, "TCP", "db"), l4(6379, "TCP", "cache"),
	}}
}

func (e *env) ensureL4(lb *providers.L4Balancer) *providers.L4Result {
	e.t.Helper()
	res, err := e.p.EnsureL4(e.ctx, lb)
	if err != nil {
		e.t.Fatalf("EnsureL4: %v", err)
	}
	return res
}

// reserve makes a global address and answers its IP.
func (e *env) reserve(name string) string {
	e.t.Helper()
	e.done(e.p.c.gaddr.Insert(project, &compute.Address{Name: name}).Context(e.ctx).Do())
	ip, _, err := e.p.addressIP(e.ctx, scope{}, name)
	if err != nil || ip == "" {
		e.t.Fatalf("address %s: %q %v", name, ip, err)
	}
	return ip
}

// attachL4 binds a listener's Service port with the Spec EnsureL4 gave and
// registers one pod that greets with its name.
func (e *env) attachL4(l providers.L4Listener, spec providers.Spec, ip string) *providers.Group {
	e.t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, l.Backend.Service)
			c.Close()
		}
	}()
	b := &providers.Binding{
		Key:     providers.BindingKey{Namespace: l.Backend.Namespace, Service: l.Backend.Service, Provider: "gcp", Port: l.Backend.Port},
		Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: spec, Zones: []string{zoneLB},
	}
	g := e.ensure(b)
	tg := target(ip, int32(ln.Addr().(*net.TCPAddr).Port), zoneLB)
	if err := e.apply(g, providers.Plan{Register: []providers.Target{tg}}); err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
	return g
}

// greeting is what a connection through a forwarding rule reads.
func (e *env) greeting(rule string) string { return e.greetingTLS(rule, nil) }

// greetingTLS is greeting over TLS when conf is set.
func (e *env) greetingTLS(rule string, conf *tls.Config) string {
	d := &net.Dialer{Timeout: time.Second}
	var (
		c   net.Conn
		err error
	)
	if conf != nil {
		c, err = tls.DialWithDialer(d, "tcp", e.srv.ForwardingRuleAddr(rule), conf)
	} else {
		c, err = d.Dial("tcp", e.srv.ForwardingRuleAddr(rule))
	}
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func (e *env) waitGreeting(rule, want string) {
	e.t.Helper()
	var last string
	eventually(e.t, rule+" to answer "+want, func() bool {
		last = e.greeting(rule)
		return last == want
	})
}

func edgeName(suffix string) string { return BalancerResourceName(cluster, edgeKey, suffix) }

func TestTCPBalancerForwardsRealConnectionsAndEditsPortByPort(t *testing.T) {
	e := newEnv(t)
	ip := e.reserve("edge-ip")
	lb := edgeL4(t, `{"address":"edge-ip","timeoutSec":60,"backends":{"cache:6379":{"drainingTimeoutSec":5}}}`)
	e.srv.ResetStats()
	res := e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{
		"healthChecks.insert": 2, "backendServices.insert": 2, "targetTcpProxies.insert": 2, "globalForwardingRules.insert": 2,
	})
	if !strings.Contains(res.Refused["53/UDP"], "passthrough") || len(res.Refused) != 1 {
		t.Errorf("refused %v, want 53/UDP with the reason", res.Refused)
	}
	if res.Status.IP != ip || len(res.Specs) != 2 {
		t.Fatalf("status %+v, specs %v", res.Status, res.Specs)
	}
	e.attachL4(lb.Listeners[1], res.Specs["shop/db:5432"], "127.0.0.21")
	e.attachL4(lb.Listeners[2], res.Specs["shop/cache:6379"], "127.0.0.22")
	e.waitGreeting(edgeName("ft5432"), "db")
	e.waitGreeting(edgeName("ft6379"), "cache")

	// The target path made the NEGs CONNECTION backends of TCP backend
	// services EnsureL4 created with the spec's settings, TCP-checked.
	cache, _, err := backendServices.read(e.ctx, e.p, scope{}, backendResourceName(cluster, edgeKey, "shop/cache:6379", "cache", 6379, kindTCPBackend))
	if err != nil {
		t.Fatal(err)
	}
	if cache.Protocol != "TCP" || cache.LoadBalancingScheme != "EXTERNAL_MANAGED" || cache.TimeoutSec != 60 ||
		cache.ConnectionDraining.DrainingTimeoutSec != 5 || len(cache.Backends) != 1 || cache.Backends[0].BalancingMode != "CONNECTION" {
		t.Fatalf("cache backend service %v", cache)
	}
	hc, _, _ := healthChecks.read(e.ctx, e.p, scope{}, backendResourceName(cluster, edgeKey, "shop/cache:6379", "cache", 6379, kindTCPHealthCheck))
	if hc.Type != "TCP" || hc.TcpHealthCheck.PortSpecification != "USE_SERVING_PORT" {
		t.Fatalf("cache health check %v", hc)
	}

	e.srv.ResetStats()
	e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{})

	// A new port: its four resources, on the same address; the others
	// keep answering.
	lb.Listeners = append(lb.Listeners, l4(8080, "TCP", "web"))
	res = e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{
		"healthChecks.insert": 1, "backendServices.insert": 1, "targetTcpProxies.insert": 1, "globalForwardingRules.insert": 1,
	})
	fr, _, err := forwardingRules.read(e.ctx, e.p, scope{}, edgeName("ft8080"))
	if err != nil || fr.IPAddress != ip || fr.PortRange != "8080-8080" && fr.PortRange != "8080" {
		t.Fatalf("rule of the new port: %v %v", fr, err)
	}
	webGroup := e.attachL4(lb.Listeners[3], res.Specs["shop/web:8080"], "127.0.0.23")
	e.waitGreeting(edgeName("ft8080"), "web")
	e.waitGreeting(edgeName("ft5432"), "db")

	// A health check path makes the check HTTP: one update, nothing else.
	lb.Spec, _ = ParseNetworkLoadBalancerSpec(`{"address":"edge-ip","timeoutSec":60,"backends":{"cache:6379":{"drainingTimeoutSec":5},"web:8080":{"healthCheck":{"path":"/healthz"}}}}`)
	e.srv.ResetStats()
	e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{"healthChecks.update": 1})
	hc, _, _ = healthChecks.read(e.ctx, e.p, scope{}, backendResourceName(cluster, edgeKey, "shop/web:8080", "web", 8080, kindTCPHealthCheck))
	if hc.Type != "HTTP" || hc.HttpHealthCheck.RequestPath != "/healthz" {
		t.Fatalf("web health check %v", hc)
	}

	// The port goes: its rule and proxy at once; its backend service
	// waits for the binding to release the NEG, then goes with its check.
	lb.Listeners = lb.Listeners[:3]
	e.srv.ResetStats()
	res = e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{"globalForwardingRules.delete": 1, "targetTcpProxies.delete": 1})
	if _, ok := res.Specs["shop/web:8080"]; ok {
		t.Errorf("specs %v still name the removed port's backend", res.Specs)
	}
	if got := e.greeting(edgeName("ft5432")); got != "db" {
		t.Errorf("5432 after another port went: %q", got)
	}
	webBS := backendResourceName(cluster, edgeKey, "shop/web:8080", "web", 8080, kindTCPBackend)
	if _, found, err := backendServices.read(e.ctx, e.p, scope{}, webBS); err != nil || !found {
		t.Fatalf("backend service %s with a NEG went: %v", webBS, err)
	}
	if err := e.p.Release(e.ctx, providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 8080}, webGroup.Ref, nil); err != nil {
		t.Fatal(err)
	}
	e.srv.ResetStats()
	e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{"backendServices.delete": 1, "healthChecks.delete": 1})
}

func TestTCPBalancerRefusesAPortAForeignRuleHolds(t *testing.T) {
	e := newEnv(t)
	ip := e.reserve("edge-ip")
	// A user's own proxy load balancer on port 5432 of the address.
	e.backendService("users-db", "TCP", 0)
	usersDB, err := e.bs.Get(project, "users-db").Context(e.ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	e.done(e.bs.Patch(project, "users-db", &compute.BackendService{LoadBalancingScheme: "EXTERNAL_MANAGED", Fingerprint: usersDB.Fingerprint}).Context(e.ctx).Do())
	e.done(e.p.c.ttps.Insert(project, &compute.TargetTcpProxy{
		Name: "users-proxy", Service: "global/backendServices/users-db"}).Context(e.ctx).Do())
	e.done(e.p.c.gfrs.Insert(project, &compute.ForwardingRule{
		Name: "users-rule", IPAddress: "edge-ip", PortRange: "5432", IPProtocol: "TCP",
		LoadBalancingScheme: "EXTERNAL_MANAGED", Target: "global/targetTcpProxies/users-proxy"}).Context(e.ctx).Do())
	users, _, err := forwardingRules.read(e.ctx, e.p, scope{}, "users-rule")
	if err != nil || users.IPAddress != ip {
		t.Fatalf("the user's rule: %v %v", users, err)
	}

	e.srv.ResetStats()
	lb := edgeL4(t, `{"address":"edge-ip"}`)
	res := e.ensureL4(lb)
	if !strings.Contains(res.Refused["5432/TCP"], "users-rule") || len(res.Specs) != 1 || res.Specs["shop/cache:6379"] == nil {
		t.Fatalf("refused %v, specs %v", res.Refused, res.Specs)
	}
	wantMutations(t, e.mutations(), map[string]int64{
		"healthChecks.insert": 1, "backendServices.insert": 1, "targetTcpProxies.insert": 1, "globalForwardingRules.insert": 1,
	})
	e.attachL4(lb.Listeners[2], res.Specs["shop/cache:6379"], "127.0.0.22")
	e.waitGreeting(edgeName("ft6379"), "cache")

	// Deleting the load balancer leaves the user's rule, proxy and
	// backend service as they were.
	if err := e.p.DeleteL4(e.ctx, cluster, edgeKey); providers.ClassOf(err) != providers.Transient {
		t.Fatalf("DeleteL4 while a binding holds its NEG: %v", err)
	}
	after, _, err := forwardingRules.read(e.ctx, e.p, scope{}, "users-rule")
	if err != nil || !sameJSON(after, users) {
		t.Fatalf("the user's rule changed: %v %v", after, err)
	}
	for _, name := range []string{"users-proxy"} {
		if _, found, err := tcpProxies.read(e.ctx, e.p, scope{}, name); err != nil || !found {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// ownedTCP lists every global resource whose description is podlb's for
// the Service load balancer of key.
func (e *env) ownedTCP(key providers.BalancerKey) []string {
	e.t.Helper()
	return e.ownedTCPIn(key, scope{})
}

// ownedTCPIn is ownedTCP in one scope.
func (e *env) ownedTCPIn(key providers.BalancerKey, sc scope) []string {
	e.t.Helper()
	var out []string
	add := func(kind, name, description string) {
		if ownedAs(description, cluster, key, tcpKind) {
			out = append(out, kind+"/"+name)
		}
	}
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
	tps, err := tcpProxies.all(e.ctx, e.p, sc)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, tp := range tps {
		add("targetTcpProxy", tp.Name, tp.Description)
	}
	if sc.region == "" {
		sps, err := sslProxies.all(e.ctx, e.p, sc)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, sp := range sps {
			add("targetSslProxy", sp.Name, sp.Description)
		}
	}
	frs, err := forwardingRules.all(e.ctx, e.p, sc)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, fr := range frs {
		add("forwardingRule", fr.Name, fr.Description)
	}
	return out
}

func TestDeleteL4LeavesNothingOfItsOwnAndEverythingElse(t *testing.T) {
	e := newEnv(t)
	e.reserve("edge-ip")
	e.reserve("other-ip")
	e.reserve("shop-ip")
	lb := edgeL4(t, `{"address":"edge-ip"}`)
	res := e.ensureL4(lb)
	db := e.attachL4(lb.Listeners[1], res.Specs["shop/db:5432"], "127.0.0.21")
	// A second Service load balancer, and an Ingress's load balancer of
	// the same key: they share nothing with it.
	other := edgeL4(t, `{"address":"other-ip"}`)
	other.Key = providers.BalancerKey{Namespace: "shop", Name: "other"}
	e.ensureL4(other)
	ingress := shopBalancer(t, `{"address":"shop-ip"}`)
	ingress.Key = edgeKey
	e.ensureHTTP(ingress)
	before := map[string]int{}
	for _, k := range []providers.BalancerKey{edgeKey, other.Key} {
		before[k.String()] = len(e.ownedTCP(k))
	}
	if before[edgeKey.String()] != 8 || before[other.Key.String()] != 8 {
		t.Fatalf("resources before: %v, want 8 each", before)
	}
	httpOwned := func() int {
		n := 0
		for _, kind := range []kind[*compute.BackendService]{backendServices} {
			list, _ := kind.all(e.ctx, e.p, scope{})
			for _, r := range list {
				if ownedByBalancer(r.Description, cluster, edgeKey) {
					n++
				}
			}
		}
		return n
	}
	httpBefore := httpOwned()
	if httpBefore == 0 {
		t.Fatal("the Ingress's load balancer has no backend services")
	}

	// The db binding still holds its NEG: everything else goes, the
	// backend service waits.
	err := e.p.DeleteL4(e.ctx, cluster, edgeKey)
	if providers.ClassOf(err) != providers.Transient || !strings.Contains(err.Error(), "tb") {
		t.Fatalf("DeleteL4 with a NEG attached: %v", err)
	}
	if left := e.ownedTCP(edgeKey); len(left) != 2 {
		t.Fatalf("left %v, want the db backend service and its health check", left)
	}
	if err := e.p.Release(e.ctx, providers.BindingKey{Namespace: "shop", Service: "db", Provider: "gcp", Port: 5432}, db.Ref, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteL4(e.ctx, cluster, edgeKey); err != nil {
		t.Fatalf("DeleteL4: %v", err)
	}
	if left := e.ownedTCP(edgeKey); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
	if err := e.p.DeleteL4(e.ctx, cluster, edgeKey); err != nil {
		t.Fatalf("DeleteL4 of what is gone: %v", err)
	}
	if n := len(e.ownedTCP(other.Key)); n != 8 {
		t.Errorf("the other Service load balancer has %d resources left, want 8", n)
	}
	if n := httpOwned(); n != httpBefore {
		t.Errorf("the Ingress's load balancer has %d backend services, had %d", n, httpBefore)
	}
	if fr, found, err := forwardingRules.read(e.ctx, e.p, scope{}, edgeName(kindHTTPRule)); err != nil || !found || !ownedByBalancer(fr.Description, cluster, edgeKey) {
		t.Errorf("the Ingress's forwarding rule: %v %v", fr, err)
	}
}

func TestTCPBalancerBadInputNamesTheField(t *testing.T) {
	for _, c := range []struct{ annotation, field string }{
		{`{"redirectToHTTPS":true}`, "redirectToHTTPS"},
		{`{"scheme":"internal","region":"us-central1"}`, "proxySubnet"},
		{`{"sslCertificates":["c"]}`, "sslCertificates"},
		{`{"tlsPorts":[443]}`, "tlsPorts"},
		{`{"sslPolicy":"modern"}`, "sslPolicy"},
		{`{"sslCertificates":["c"],"tlsPorts":[443,443]}`, "tlsPorts[1]"},
		{`{"sslCertificates":["c"],"tlsPorts":[0]}`, "tlsPorts[0]"},
		{`{"sslCertificates":["c"],"tlsPorts":[443],"region":"us-central1"}`, "tlsPorts"},
		{`{"backends":{"db:5432":{"maxRatePerEndpoint":10}}}`, `backends["db:5432"].maxRatePerEndpoint`},
		{`{"backends":{"db:5432":{"balancingMode":"RATE"}}}`, `backends["db:5432"].balancingMode`},
		{`{"address":"not an address"}`, "address"},
	} {
		_, err := (&Provider{}).ParseL4Spec(c.annotation)
		wantClass(t, err, providers.Invalid, c.field)
	}
	if _, err := ParseLoadBalancerSpec(`{"sslCertificates":["c"],"tlsPorts":[443]}`); err == nil || !strings.Contains(err.Error(), "tlsPorts") {
		t.Errorf("tlsPorts on an Ingress: %v", err)
	}
	e := newEnv(t)
	for _, c := range []struct{ annotation, field string }{
		{`{"address":"missing-ip"}`, "address"},
		// 53 is UDP only, 443 no port of the load balancer.
		{`{"sslCertificates":["c"],"tlsPorts":[53]}`, "tlsPorts[0]"},
		{`{"sslCertificates":["c"],"tlsPorts":[5432,443]}`, "tlsPorts[1]"},
		{`{"sslCertificates":["missing-cert"],"tlsPorts":[5432],"address":"edge-ip"}`, "sslCertificates"},
	} {
		if c.field == "sslCertificates" {
			e.reserve("edge-ip")
		}
		e.srv.ResetStats()
		_, err := e.p.EnsureL4(e.ctx, edgeL4(t, c.annotation))
		wantClass(t, err, providers.Invalid, c.field)
		if c.field != "sslCertificates" && len(e.mutations()) != 0 {
			t.Errorf("%s: writes %v before the error", c.annotation, e.mutations())
		}
	}
}

func TestTCPBalancerTerminatesTLSOnTheListedPorts(t *testing.T) {
	e := newEnv(t)
	e.reserve("edge-ip")
	for _, c := range [][2]string{{"db-cert", "db.example.com"}, {"db2-cert", "db2.example.com"}} {
		if err := e.srv.IssueCertificate(c[0], c[1]); err != nil {
			t.Fatal(err)
		}
	}
	lb := edgeL4(t, `{"address":"edge-ip","sslCertificates":["db-cert"],"tlsPorts":[5432]}`)
	e.srv.ResetStats()
	res := e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{
		"healthChecks.insert": 2, "backendServices.insert": 2, "targetSslProxies.insert": 1, "targetTcpProxies.insert": 1, "globalForwardingRules.insert": 2,
	})
	e.attachL4(lb.Listeners[1], res.Specs["shop/db:5432"], "127.0.0.21")
	e.attachL4(lb.Listeners[2], res.Specs["shop/cache:6379"], "127.0.0.22")
	conf := func(name string) *tls.Config { return &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: name} }
	var last string
	eventually(t, "TLS to 5432", func() bool { last = e.greetingTLS(edgeName("ft5432"), conf("db.example.com")); return last == "db" })
	e.waitGreeting(edgeName("ft6379"), "cache")
	if got := e.greeting(edgeName("ft5432")); got != "" {
		t.Errorf("plain TCP to the TLS port reached %q", got)
	}

	// A second certificate: set on the proxy in place.
	lb.Spec, _ = ParseNetworkLoadBalancerSpec(`{"address":"edge-ip","sslCertificates":["db-cert","db2-cert"],"tlsPorts":[5432]}`)
	e.srv.ResetStats()
	e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{"targetSslProxies.setSslCertificates": 1})
	if got := e.greetingTLS(edgeName("ft5432"), conf("db2.example.com")); got != "db" {
		t.Errorf("TLS by the second certificate: %q", got)
	}

	// Plain TCP again: the port's rule moves to a new TCP proxy, the SSL
	// proxy goes, the other port is untouched.
	lb.Spec, _ = ParseNetworkLoadBalancerSpec(`{"address":"edge-ip"}`)
	e.srv.ResetStats()
	e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{
		"targetTcpProxies.insert": 1, "globalForwardingRules.delete": 1, "globalForwardingRules.insert": 1, "targetSslProxies.delete": 1,
	})
	e.waitGreeting(edgeName("ft5432"), "db")
	if got := e.greeting(edgeName("ft6379")); got != "cache" {
		t.Errorf("6379 after 5432 changed: %q", got)
	}
}

func TestTCPBalancerInternalInItsRegionAndMovingOut(t *testing.T) {
	e := newEnv(t)
	e.done(e.p.c.addr.Insert(project, lbRegion, &compute.Address{Name: "edge-rip"}).Context(e.ctx).Do())
	ip, _, err := e.p.addressIP(e.ctx, scope{region: lbRegion}, "edge-rip")
	if err != nil {
		t.Fatal(err)
	}
	internal := `{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only","address":"edge-rip"}`
	lb := edgeL4(t, internal)
	e.srv.ResetStats()
	res := e.ensureL4(lb)
	wantMutations(t, e.mutations(), map[string]int64{
		"regionHealthChecks.insert": 2, "regionBackendServices.insert": 2, "regionTargetTcpProxies.insert": 2, "forwardingRules.insert": 2,
	})
	if res.Status.IP != ip || res.Status.Details["scheme"] != "INTERNAL_MANAGED" || !strings.Contains(res.Specs["shop/db:5432"].(*Spec).BackendService, "/regions/"+lbRegion+"/") {
		t.Fatalf("status %+v, specs %v", res.Status, res.Specs)
	}
	db := e.attachL4(lb.Listeners[1], res.Specs["shop/db:5432"], "127.0.0.21")
	e.waitGreeting(edgeName("ft5432"), "db")
	if n := len(e.ownedTCP(edgeKey)); n != 0 {
		t.Errorf("%d global resources for an internal load balancer", n)
	}

	// External now: it is built globally and leaves its region, where
	// only the backend service still holding the binding's NEG (and its
	// health check) waits for the binding to follow.
	e.reserve("edge-ip")
	lb.Spec, _ = ParseNetworkLoadBalancerSpec(`{"address":"edge-ip"}`)
	res = e.ensureL4(lb)
	if n := len(e.ownedTCP(edgeKey)); n != 8 {
		t.Errorf("%d global resources, want 8: %v", n, e.ownedTCP(edgeKey))
	}
	if left := e.ownedTCPIn(edgeKey, scope{region: lbRegion}); len(left) != 2 {
		t.Errorf("left in the region: %v", left)
	}
	if err := e.p.Release(e.ctx, providers.BindingKey{Namespace: "shop", Service: "db", Provider: "gcp", Port: 5432}, db.Ref, nil); err != nil {
		t.Fatal(err)
	}
	e.attachL4(lb.Listeners[1], res.Specs["shop/db:5432"], "127.0.0.21")
	e.waitGreeting(edgeName("ft5432"), "db")
	e.ensureL4(lb)
	if left := e.ownedTCPIn(edgeKey, scope{region: lbRegion}); len(left) != 0 {
		t.Errorf("left in the region after the binding moved: %v", left)
	}
	if err := e.p.DeleteL4(e.ctx, cluster, edgeKey); providers.ClassOf(err) != providers.Transient {
		t.Fatalf("DeleteL4 with the binding attached: %v", err)
	}
}

// proxyProtocol gives the TCP proxies a PROXY v1 header, and turning it
// off takes it away; an Ingress refuses the field.
func TestTCPBalancerProxyProtocol(t *testing.T) {
	e := newEnv(t)
	header := func() string {
		var out []string
		for _, port := range []int32{5432, 6379} {
			p, err := e.p.c.ttps.Get(project, BalancerResourceName(cluster, edgeKey, kindTCPProxy+strconv.Itoa(int(port)))).Context(e.ctx).Do()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p.ProxyHeader)
		}
		return strings.Join(out, " ")
	}
	e.ensureL4(edgeL4(t, `{"proxyProtocol": true}`))
	if got := header(); got != "PROXY_V1 PROXY_V1" {
		t.Errorf("proxy headers %q, want PROXY_V1 on both", got)
	}
	e.ensureL4(edgeL4(t, `{}`))
	if got := header(); got != "NONE NONE" {
		t.Errorf("proxy headers %q after turning it off, want NONE", got)
	}
	var pe *providers.Error
	if _, err := ParseLoadBalancerSpec(`{"proxyProtocol": true}`); !errors.As(err, &pe) || pe.Field != "proxyProtocol" {
		t.Errorf("proxyProtocol on an Ingress: %v", err)
	}
}
