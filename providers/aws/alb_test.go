package aws

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// albEnv is an emulator with application load balancers, a provider
// pointed at it through the real SDK, and a plain client for what users
// do by hand.
type albEnv struct {
	t   *testing.T
	ctx context.Context
	srv *elbv2sim.Server
	p   *Provider
	c   *elbv2.Client
}

func newALBEnv(t *testing.T, o elbv2sim.Options) *albEnv {
	t.Helper()
	o.RegistrationDelay = 20 * time.Millisecond
	o.HealthCheckInterval = 10 * time.Millisecond
	o.HealthCheckTimeout = 100 * time.Millisecond
	o.DeregistrationDelay = 50 * time.Millisecond
	if o.ProvisioningDelay == 0 {
		o.ProvisioningDelay = 200 * time.Millisecond
	}
	srv, err := elbv2sim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	p, err := New(ctx, Options{
		Cluster: "test-cluster", Region: "us-east-1", VPCID: elbv2sim.DefaultVPCID,
		ELBv2Endpoint: srv.URL(), EC2Endpoint: srv.URL(), Credentials: simCredentials,
		Limits: providers.Unthrottled(DefaultLimits()), MaxAttempts: maxAttempts,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: simCredentials})
	return &albEnv{t: t, ctx: ctx, srv: srv, p: p, c: c}
}

var backendSeq atomic.Int32

// namedBackend is an HTTP server on its own loopback address that answers
// every request with its name.
type namedBackend struct {
	name string
	addr netip.AddrPort
}

func startNamedBackend(t *testing.T, name string) *namedBackend {
	t.Helper()
	n := backendSeq.Add(1)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.77.%d.%d:0", n/250, n%250+1))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &namedBackend{name: name, addr: netip.MustParseAddrPort(ln.Addr().String())}
}

var shopKey = providers.BalancerKey{Namespace: "shop", Name: "front"}

func backend(svc string) providers.HTTPBackend {
	return providers.HTTPBackend{Namespace: "shop", Service: svc, Port: 80}
}

const (
	apiID = "shop/api:80"
	webID = "shop/web:80"
)

// shopBalancer routes two hosts and three paths to two backends.
func shopBalancer(spec *LoadBalancerSpec) *providers.HTTPBalancer {
	return &providers.HTTPBalancer{
		Key: shopKey, Cluster: "test-cluster",
		Routes: []providers.HTTPRoute{
			{Host: "shop.example.com", Path: "/api", Backend: apiID},
			{Host: "shop.example.com", Path: "/", Backend: webID},
			{Host: "blog.example.com", Path: "/feed", Exact: true, Backend: apiID},
		},
		Backends: map[string]providers.HTTPBackend{apiID: backend("api"), webID: backend("web")},
		Spec:     spec,
	}
}

func (e *albEnv) ensure(lb *providers.HTTPBalancer) (*providers.BalancerStatus, map[string]providers.Spec) {
	e.t.Helper()
	st, specs, err := e.p.EnsureHTTP(e.ctx, lb)
	if err != nil {
		e.t.Fatalf("EnsureHTTP: %v", err)
	}
	return st, specs
}

// register binds each backend's Service port to the group EnsureHTTP
// returned and registers the backend's server, as the target machinery
// does.
func (e *albEnv) register(lb *providers.HTTPBalancer, specs map[string]providers.Spec, servers map[string]*namedBackend) map[string]*providers.Group {
	e.t.Helper()
	groups := map[string]*providers.Group{}
	for id, srv := range servers {
		be := lb.Backends[id]
		g, err := e.p.Ensure(e.ctx, &providers.Binding{
			Key:     providers.BindingKey{Namespace: be.Namespace, Service: be.Service, Provider: "aws", Port: be.Port},
			Cluster: "test-cluster", Protocol: "TCP", TargetPort: int32(srv.addr.Port()), Spec: specs[id],
		})
		if err != nil {
			e.t.Fatalf("Ensure %s: %v", id, err)
		}
		if !g.Owned {
			e.t.Errorf("%s: a load balancer's group is not treated as owned", id)
		}
		target := providers.Target{IP: srv.addr.Addr(), Port: int32(srv.addr.Port())}
		if err := e.p.Apply(e.ctx, g, providers.Plan{Register: []providers.Target{target}}); err != nil {
			e.t.Fatalf("Apply %s: %v", id, err)
		}
		groups[id] = g
	}
	return groups
}

var plainClient = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true},
}

type reply struct {
	status   int
	body     string
	location string
}

func (r reply) String() string { return fmt.Sprintf("%d %q %s", r.status, r.body, r.location) }

func send(t *testing.T, cl *http.Client, url, host string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), location: resp.Header.Get("Location")}
}

// eventually polls cond until it holds or 15 s pass; what says what it
// waited for.
func eventually(t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// albArn finds the load balancer podlb made for key through the API.
func (e *albEnv) albArn(key providers.BalancerKey) string {
	e.t.Helper()
	out, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{BalancerName("test-cluster", key)}})
	if err != nil {
		e.t.Fatalf("DescribeLoadBalancers: %v", err)
	}
	return aws.ToString(out.LoadBalancers[0].LoadBalancerArn)
}

// listener is the ARN of the load balancer's listener on port, "" if none.
func (e *albEnv) listener(albArn string, port int32) string {
	e.t.Helper()
	out, err := e.c.DescribeListeners(e.ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(albArn)})
	if err != nil {
		e.t.Fatalf("DescribeListeners: %v", err)
	}
	for _, l := range out.Listeners {
		if aws.ToInt32(l.Port) == port {
			return aws.ToString(l.ListenerArn)
		}
	}
	return ""
}

// rulesByPriority lists a listener's non-default rules as "priority ARN".
func (e *albEnv) rules(listenerArn string) map[int32]types.Rule {
	e.t.Helper()
	out, err := e.c.DescribeRules(e.ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listenerArn)})
	if err != nil {
		e.t.Fatalf("DescribeRules: %v", err)
	}
	rules := map[int32]types.Rule{}
	for _, r := range out.Rules {
		if !aws.ToBool(r.IsDefault) {
			var prio int32
			fmt.Sscan(aws.ToString(r.Priority), &prio)
			rules[prio] = r
		}
	}
	return rules
}

// mutations counts the calls of every operation that changes something.
func (e *albEnv) mutations() map[string]int64 {
	out := map[string]int64{}
	for op, st := range e.srv.Stats() {
		if !strings.HasPrefix(op, "Describe") && st.Calls > 0 {
			out[op] = st.Calls
		}
	}
	return out
}

func (e *albEnv) wantMutations(step string, want map[string]int64) {
	e.t.Helper()
	got := e.mutations()
	if fmt.Sprint(sortedCounts(got)) != fmt.Sprint(sortedCounts(want)) {
		e.t.Errorf("%s: mutations %v, want %v", step, sortedCounts(got), sortedCounts(want))
	}
	e.srv.ResetStats()
}

func sortedCounts(m map[string]int64) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// answers checks which backend (or status) each host+path gets through
// addr, waiting for the load balancer to turn active and judge targets.
func answers(t *testing.T, cl *http.Client, base string, want map[string]string) {
	t.Helper()
	for _, hp := range sortedKeys(want) {
		host, path, _ := strings.Cut(hp, "/")
		var last reply
		eventually(t, func() string { return fmt.Sprintf("%s to answer %s (last %v)", hp, want[hp], last) }, func() bool {
			last = send(t, cl, base+"/"+path, host)
			if strings.HasPrefix(want[hp], "status ") {
				return fmt.Sprintf("status %d", last.status) == want[hp]
			}
			return last.status == http.StatusOK && last.body == want[hp]
		})
	}
}

func TestALBRoutesRealRequestsAndEditsByMinimalChanges(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{})
	lb := shopBalancer(nil)
	st, specs := e.ensure(lb)
	if !strings.Contains(st.Hostname, ".elb.us-east-1.amazonaws.com") || st.Details["state"] != "provisioning" {
		t.Errorf("status right after creation: %+v", st)
	}
	if len(specs) != 2 {
		t.Fatalf("specs %v, want one per backend", specs)
	}
	servers := map[string]*namedBackend{apiID: startNamedBackend(t, "api"), webID: startNamedBackend(t, "web")}
	groups := e.register(lb, specs, servers)
	albArn := e.albArn(shopKey)
	http80 := e.listener(albArn, 80)
	base := "http://" + e.srv.LoadBalancerAddr(albArn, 80)
	answers(t, plainClient, base, map[string]string{
		"shop.example.com/api":      "api",
		"shop.example.com/api/x":    "api",
		"shop.example.com/apix":     "web",
		"shop.example.com/":         "web",
		"blog.example.com/feed":     "api",
		"blog.example.com/feed/x":   "status 404",
		"other.example.com/api":     "status 404",
		"shop.example.com/anything": "web",
	})
	if got := e.rules(http80); len(got) != 3 {
		t.Fatalf("rules %v, want one per route", got)
	}

	e.srv.ResetStats()
	e.ensure(lb)
	e.wantMutations("unchanged", nil)

	// A user's own rule in the next free priority.
	userRule, err := e.c.CreateRule(e.ctx, &elbv2.CreateRuleInput{ListenerArn: aws.String(http80), Priority: aws.Int32(4),
		Conditions: []types.RuleCondition{{Field: aws.String("path-pattern"), PathPatternConfig: &types.PathPatternConditionConfig{Values: []string{"/teapot"}}}},
		Actions: []types.Action{{Type: types.ActionTypeEnumFixedResponse, FixedResponseConfig: &types.FixedResponseActionConfig{
			StatusCode: aws.String("418"), ContentType: aws.String("text/plain")}}}})
	if err != nil {
		t.Fatal(err)
	}
	userArn := aws.ToString(userRule.Rules[0].RuleArn)
	e.srv.ResetStats()

	// Add a route at the end: it skips the user's priority.
	lb.Routes = append(lb.Routes, providers.HTTPRoute{Host: "blog.example.com", Path: "/", Backend: webID})
	e.ensure(lb)
	e.wantMutations("route added", map[string]int64{"CreateRule": 1})
	rules := e.rules(http80)
	if aws.ToString(rules[4].RuleArn) != userArn || rules[5].RuleArn == nil || len(rules) != 5 {
		t.Errorf("after adding a route, rules by priority: %v", ruleArns(rules))
	}
	answers(t, plainClient, base, map[string]string{"blog.example.com/feed/x": "web", "blog.example.com/teapot": "status 418"})

	// Switch a route's backend: only its rule changes.
	lb.Routes[2].Backend = webID
	e.ensure(lb)
	e.wantMutations("backend switched", map[string]int64{"ModifyRule": 1})
	answers(t, plainClient, base, map[string]string{"blog.example.com/feed": "web"})

	// Release of the api binding only takes its targets out: the group
	// belongs to the load balancer.
	apiGroup := groups[apiID]
	ours := []providers.TargetKey{{IP: servers[apiID].addr.Addr(), Port: int32(servers[apiID].addr.Port())}}
	if err := e.p.Release(e.ctx, providers.BindingKey{Namespace: "shop", Service: "api", Provider: "aws", Port: 80}, apiGroup.Ref, ours); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if left := e.srv.Targets(apiGroup.Ref); left == nil {
		t.Fatal("Release deleted a load balancer's group")
	}
	e.srv.ResetStats()

	// Remove the first route, the last to api: its rule goes, the others
	// move up in one call, the user's rule stays where it is, and the api
	// group goes once no rule uses it.
	lb.Routes = lb.Routes[1:]
	delete(lb.Backends, apiID)
	_, specs = e.ensure(lb)
	e.wantMutations("route removed", map[string]int64{"DeleteRule": 1, "SetRulePriorities": 1, "DeleteTargetGroup": 1})
	rules = e.rules(http80)
	if aws.ToString(rules[4].RuleArn) != userArn || len(rules) != 4 || rules[1].RuleArn == nil || rules[2].RuleArn == nil || rules[3].RuleArn == nil {
		t.Errorf("after removing a route, rules by priority: %v", ruleArns(rules))
	}
	if e.srv.Targets(apiGroup.Ref) != nil || len(specs) != 1 || specs[webID] == nil {
		t.Errorf("api group still there or specs %v", specs)
	}
	answers(t, plainClient, base, map[string]string{"shop.example.com/api": "web", "blog.example.com/teapot": "web", "other.example.com/teapot": "status 418"})
}

func ruleArns(rules map[int32]types.Rule) map[int32]string {
	out := map[int32]string{}
	for p, r := range rules {
		out[p] = displayName(aws.ToString(r.RuleArn))
	}
	return out
}

func TestALBHTTPSAndRedirect(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	shop := e.srv.IssueCertificate("shop.example.com")
	blog := e.srv.IssueCertificate("blog.example.com")
	spec := &LoadBalancerSpec{CertificateARNs: []string{shop, blog}, SSLPolicy: "ELBSecurityPolicy-TLS13-1-2-2021-06"}
	lb := shopBalancer(spec)
	lb.Default = webID
	_, specs := e.ensure(lb)
	servers := map[string]*namedBackend{apiID: startNamedBackend(t, "api"), webID: startNamedBackend(t, "web")}
	e.register(lb, specs, servers)
	albArn := e.albArn(shopKey)
	https := e.listener(albArn, 443)
	if https == "" {
		t.Fatal("no HTTPS listener")
	}
	tlsClient := func(name string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{ServerName: name, RootCAs: e.srv.CertificatePool()}}}
	}
	httpsBase := "https://" + e.srv.LoadBalancerAddr(albArn, 443)
	httpBase := "http://" + e.srv.LoadBalancerAddr(albArn, 80)
	answers(t, tlsClient("shop.example.com"), httpsBase, map[string]string{"shop.example.com/api": "api", "shop.example.com/": "web", "unknown.example.com/": "web"})
	// The second certificate serves its host by SNI.
	answers(t, tlsClient("blog.example.com"), httpsBase, map[string]string{"blog.example.com/feed": "api"})
	answers(t, plainClient, httpBase, map[string]string{"shop.example.com/api": "api"})
	if n := len(e.rules(https)); n != 3 {
		t.Errorf("%d rules on the HTTPS listener, want 3", n)
	}

	// Redirect: the HTTP listener keeps no rules and answers 301.
	spec.RedirectToHTTPS = true
	e.srv.ResetStats()
	e.ensure(lb)
	e.wantMutations("redirect on", map[string]int64{"ModifyListener": 1, "DeleteRule": 3})
	r := send(t, plainClient, httpBase+"/api?q=1", "shop.example.com")
	if r.status != http.StatusMovedPermanently || r.location != "https://shop.example.com/api?q=1" {
		t.Errorf("HTTP with redirectToHTTPS: %v", r)
	}
	if n := len(e.rules(e.listener(albArn, 80))); n != 0 {
		t.Errorf("%d rules on the redirecting HTTP listener", n)
	}

	// No certificates: the HTTPS listener goes, HTTP forwards again.
	spec.RedirectToHTTPS, spec.CertificateARNs = false, nil
	e.ensure(lb)
	e.wantMutations("certificates removed", map[string]int64{"ModifyListener": 1, "CreateRule": 3, "DeleteListener": 1})
	if e.listener(albArn, 443) != "" {
		t.Error("HTTPS listener still there")
	}
	answers(t, plainClient, httpBase, map[string]string{"shop.example.com/api": "api", "shop.example.com/": "web"})
}

func TestDeleteHTTPRemovesWhatPodlbMadeAndKeepsAUsersRule(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	lb := shopBalancer(&LoadBalancerSpec{Tags: map[string]string{"team": "shop"}})
	_, specs := e.ensure(lb)
	servers := map[string]*namedBackend{apiID: startNamedBackend(t, "api"), webID: startNamedBackend(t, "web")}
	groups := e.register(lb, specs, servers)
	albArn := e.albArn(shopKey)
	tags, err := e.p.tags(e.ctx, albArn)
	if err != nil || tags["team"] != "shop" || tags[TagCluster] != "test-cluster" || tags[TagBalancer] != "shop/front" {
		t.Errorf("load balancer tags %v %v", tags, err)
	}
	// A tag added to the annotation reaches the load balancer and both
	// groups, and nothing else changes.
	lb.Spec.(*LoadBalancerSpec).Tags["cost-center"] = "42"
	e.srv.ResetStats()
	e.ensure(lb)
	e.wantMutations("tag added", map[string]int64{"AddTags": 3})
	for _, arn := range []string{albArn, groups[apiID].Ref, groups[webID].Ref} {
		if tags, err := e.p.tags(e.ctx, arn); err != nil || tags["cost-center"] != "42" || tags["team"] != "shop" {
			t.Errorf("%s tags %v %v", arn, tags, err)
		}
	}
	http80 := e.listener(albArn, 80)
	out, err := e.c.CreateRule(e.ctx, &elbv2.CreateRuleInput{ListenerArn: aws.String(http80), Priority: aws.Int32(50),
		Conditions: []types.RuleCondition{{Field: aws.String("path-pattern"), PathPatternConfig: &types.PathPatternConditionConfig{Values: []string{"/teapot"}}}},
		Actions:    []types.Action{{Type: types.ActionTypeEnumFixedResponse, FixedResponseConfig: &types.FixedResponseActionConfig{StatusCode: aws.String("418")}}}})
	if err != nil {
		t.Fatal(err)
	}
	userArn := aws.ToString(out.Rules[0].RuleArn)

	// Another balancer of the same cluster is left alone.
	other := shopBalancer(nil)
	other.Key = providers.BalancerKey{Namespace: "shop", Name: "other"}
	_, otherSpecs := e.ensure(other)

	err = e.p.DeleteHTTP(e.ctx, "test-cluster", shopKey)
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Class != providers.Invalid || !strings.Contains(err.Error(), "priority 50: "+userArn) {
		t.Fatalf("DeleteHTTP with a user's rule: %v, want an invalid error naming it", err)
	}
	if _, ok := providers.AsKept(err); !ok {
		t.Errorf("DeleteHTTP with a user's rule: %#v, want a KeptError", err)
	}
	rules := e.rules(http80)
	if len(rules) != 1 || aws.ToString(rules[50].RuleArn) != userArn {
		t.Errorf("rules left: %v, want only the user's", ruleArns(rules))
	}
	for id, g := range groups {
		if e.srv.Targets(g.Ref) != nil {
			t.Errorf("group of %s still there", id)
		}
	}
	if r := send(t, plainClient, "http://"+e.srv.LoadBalancerAddr(albArn, 80)+"/teapot", "x"); r.status != 418 {
		t.Errorf("the user's rule answers %v", r)
	}

	if _, err := e.c.DeleteRule(e.ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(userArn)}); err != nil {
		t.Fatal(err)
	}
	if err := e.p.DeleteHTTP(e.ctx, "test-cluster", shopKey); err != nil {
		t.Fatalf("DeleteHTTP: %v", err)
	}
	if _, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{BalancerName("test-cluster", shopKey)}}); err == nil {
		t.Error("load balancer still there")
	}
	if err := e.p.DeleteHTTP(e.ctx, "test-cluster", shopKey); err != nil {
		t.Errorf("DeleteHTTP of what is gone: %v", err)
	}
	for id, s := range otherSpecs {
		if e.srv.Targets(s.(*Spec).Balancer.ARN) == nil {
			t.Errorf("group %s of another balancer deleted", id)
		}
	}
	e.albArn(other.Key)
}

func TestDeleteHTTPKeepsTheGroupAUsersListenerUses(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	lb := shopBalancer(nil)
	_, specs := e.ensure(lb)
	// A user's own load balancer forwards to podlb's api group... which
	// the emulator refuses across load balancers, so a user's listener on
	// podlb's load balancer does it instead.
	albArn := e.albArn(shopKey)
	if _, err := e.c.CreateListener(e.ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(albArn), Port: aws.Int32(8080),
		Protocol: types.ProtocolEnumHttp, DefaultActions: []types.Action{forwardAction(specs[apiID].(*Spec).Balancer.ARN)}}); err != nil {
		t.Fatal(err)
	}
	err := e.p.DeleteHTTP(e.ctx, "test-cluster", shopKey)
	apiGroup := displayName(specs[apiID].(*Spec).Balancer.ARN)
	if kept, ok := providers.AsKept(err); !ok || !providers.IsUserError(err) || !strings.Contains(err.Error(), "HTTP:8080") ||
		!slices.ContainsFunc(kept.Kept, func(k string) bool { return strings.Contains(k, "target group "+apiGroup) }) {
		t.Errorf("DeleteHTTP with a user's listener: %v, want it and the group it uses (%s) kept", err, apiGroup)
	}
	if e.srv.Targets(specs[apiID].(*Spec).Balancer.ARN) == nil || e.srv.Targets(specs[webID].(*Spec).Balancer.ARN) != nil {
		t.Error("want the group the user's listener uses kept, the other deleted")
	}
	if e.listener(albArn, 80) != "" {
		t.Error("podlb's listener without foreign rules kept")
	}
}

func TestDeleteHTTPReportsAGroupInUseAsTransient(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	_, specs := e.ensure(shopBalancer(nil))
	e.srv.InjectError("DeleteTargetGroup", "ResourceInUse", 1)
	err := e.p.DeleteHTTP(e.ctx, "test-cluster", shopKey)
	if providers.ClassOf(err) != providers.Transient || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("DeleteHTTP while a group is in use: %v (%s)", err, providers.ClassOf(err))
	}
	if err := e.p.DeleteHTTP(e.ctx, "test-cluster", shopKey); err != nil {
		t.Fatalf("DeleteHTTP again: %#v", err)
	}
	for id, s := range specs {
		if e.srv.Targets(s.(*Spec).Balancer.ARN) != nil {
			t.Errorf("group of %s left", id)
		}
	}
}

func TestALBBadInputNamesTheField(t *testing.T) {
	other := elbv2sim.VPC{ID: "vpc-0a0000000000000f1", CIDRs: []string{"10.9.0.0/16"}, Subnets: []elbv2sim.Subnet{
		{ID: "subnet-0000000000000000a", AvailabilityZone: "us-east-1a", CIDR: "10.9.0.0/17"}, {ID: "subnet-0000000000000000b", AvailabilityZone: "us-east-1b", CIDR: "10.9.128.0/17"}}}
	def := elbv2sim.VPC{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"127.0.0.0/8"}, Subnets: []elbv2sim.Subnet{
		{ID: "subnet-0000000000000000c", AvailabilityZone: "us-east-1a", CIDR: "127.0.0.0/9"}, {ID: "subnet-0000000000000000d", AvailabilityZone: "us-east-1b", CIDR: "127.128.0.0/9"}}}
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1, VPCs: []elbv2sim.VPC{def, other}})
	unknownCert := "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-4000-8000-000000000000"
	for _, c := range []struct {
		name, spec, field string
		noWrites          bool
	}{
		{"redirect without certificates", `{"redirectToHTTPS": true}`, "redirectToHTTPS", true},
		{"unknown subnet", `{"subnets": ["subnet-0000000000000000e", "subnet-0000000000000000f"]}`, "subnets", true},
		{"subnets of another VPC", `{"subnets": ["subnet-0000000000000000a", "subnet-0000000000000000b"]}`, "subnets", false},
		{"unknown certificate", `{"subnets": ["subnet-0000000000000000c", "subnet-0000000000000000d"], "certificateArns": ["` + unknownCert + `"]}`, "certificateArns", false},
		// The default VPC's subnets here carry no role tag.
		{"no subnets listed and none tagged", `{}`, "subnets", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec, err := e.p.ParseBalancerSpec(c.spec)
			if err != nil {
				t.Fatal(err)
			}
			lb := shopBalancer(spec.(*LoadBalancerSpec))
			lb.Key = providers.BalancerKey{Namespace: "bad", Name: strings.ReplaceAll(c.name, " ", "-")}
			e.srv.ResetStats()
			_, _, err = e.p.EnsureHTTP(e.ctx, lb)
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Class != providers.Invalid || pe.Field != c.field {
				t.Fatalf("got %v, want an invalid error naming %s", err, c.field)
			}
			if c.noWrites {
				for op := range e.mutations() {
					if op != "CreateLoadBalancer" {
						t.Errorf("%s called for bad input", op)
					}
				}
			}
			if c.field == "subnets" {
				if _, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{BalancerName("test-cluster", lb.Key)}}); err == nil {
					t.Error("a load balancer in the wrong place was left behind")
				}
			}
		})
	}

	// The scheme of an existing load balancer cannot change.
	subnets := []string{"subnet-0000000000000000c", "subnet-0000000000000000d"}
	lb := shopBalancer(&LoadBalancerSpec{Subnets: subnets})
	e.ensure(lb)
	lb.Spec = &LoadBalancerSpec{Scheme: "internal", Subnets: subnets}
	_, _, err := e.p.EnsureHTTP(e.ctx, lb)
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Field != "scheme" {
		t.Errorf("scheme change: %v", err)
	}

	// A balancer's group is only for that balancer's backends.
	_, specs := e.ensure(shopBalancer(nil))
	stolen := *specs[apiID].(*Spec)
	stolen.Balancer = &BalancerGroup{ARN: stolen.Balancer.ARN, Balancer: "shop/other"}
	_, err = e.p.Ensure(e.ctx, &providers.Binding{Key: providers.BindingKey{Namespace: "shop", Service: "api", Provider: "aws", Port: 80},
		Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Spec: &stolen})
	if !errors.As(err, &pe) || pe.Field != "balancer" || pe.Class != providers.Invalid {
		t.Errorf("group of another balancer: %v", err)
	}
	// And users cannot name one in an annotation.
	_, err = ParseSpec([]byte(`{"balancer": {"arn": "x", "balancer": "y"}}`))
	if !errors.As(err, &pe) || pe.Field != "balancer" {
		t.Errorf("balancer in an annotation: %v", err)
	}
}

func TestALBNamesAreShortDeterministicAndDistinct(t *testing.T) {
	long := providers.BalancerKey{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("m", 253)}
	names := map[string]bool{}
	for _, n := range []string{
		BalancerName("c", long), BalancerName("c", shopKey), BalancerName("d", shopKey),
		BalancerName("c", providers.BalancerKey{Name: "front"}),
		BalancerGroupName("c", shopKey, apiID), BalancerGroupName("c", shopKey, webID), BalancerGroupName("d", shopKey, apiID),
		BalancerGroupName("c", long, "shop/"+strings.Repeat("s", 63)+":8080"),
	} {
		if len(n) > 32 || !tgNamePattern.MatchString(n) || names[n] {
			t.Errorf("name %q: too long, malformed or repeated", n)
		}
		names[n] = true
	}
	if BalancerName("c", shopKey) != BalancerName("c", shopKey) {
		t.Error("names are not deterministic")
	}
}

func TestBackendSettingsPreferTheAnnotationOverTheProbe(t *testing.T) {
	delay := int32(10)
	spec := &LoadBalancerSpec{Backends: map[string]BackendSpec{
		"api:http": {HealthCheck: &HealthCheckSpec{Path: "/healthz", Matcher: "200-299"}, DeregistrationDelaySeconds: &delay},
		"web:80":   {HealthCheck: &HealthCheckSpec{Matcher: "200"}},
	}}
	field, c := backendSettings(spec, providers.HTTPBackend{Service: "api", Port: 80, PortName: "http", HealthCheckPath: "/ready"})
	if field != `backends["api:http"]` || c.HealthCheck.Path != "/healthz" || c.HealthCheck.Matcher != "200-299" || *c.DeregistrationDelaySeconds != 10 {
		t.Errorf("api: %s %+v %+v", field, c, c.HealthCheck)
	}
	_, c = backendSettings(spec, providers.HTTPBackend{Service: "web", Port: 80, HealthCheckPath: "/ready"})
	if c.HealthCheck.Path != "/ready" || c.HealthCheck.Matcher != "200" || spec.Backends["web:80"].HealthCheck.Path != "" {
		t.Errorf("web: %+v, annotation %+v", c.HealthCheck, spec.Backends["web:80"].HealthCheck)
	}
	_, c = backendSettings(spec, providers.HTTPBackend{Service: "db", Port: 80})
	if c.HealthCheck != nil || c.Protocol != "HTTP" {
		t.Errorf("db: %+v", c)
	}
}

func TestALBNeverTakesOverAUsersListener(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	lb := shopBalancer(nil)
	e.ensure(lb)
	albArn := e.albArn(shopKey)
	cert := e.srv.IssueCertificate("shop.example.com")
	out, err := e.c.CreateListener(e.ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(albArn), Port: aws.Int32(443),
		Protocol: types.ProtocolEnumHttps, Certificates: []types.Certificate{{CertificateArn: aws.String(cert)}},
		DefaultActions: []types.Action{fixed404()}})
	if err != nil {
		t.Fatal(err)
	}
	users := aws.ToString(out.Listeners[0].ListenerArn)

	// Without certificates podlb wants no HTTPS listener, yet leaves the
	// user's alone.
	e.ensure(lb)
	if e.listener(albArn, 443) != users {
		t.Fatal("the user's HTTPS listener was removed")
	}
	// With certificates podlb wants port 443, which is taken.
	lb.Spec = &LoadBalancerSpec{CertificateARNs: []string{cert}}
	e.srv.ResetStats()
	_, _, err = e.p.EnsureHTTP(e.ctx, lb)
	if !providers.IsUserError(err) || !strings.Contains(err.Error(), "port 443") {
		t.Fatalf("EnsureHTTP on a taken port: %v", err)
	}
	for op := range e.mutations() {
		if strings.Contains(op, "Listener") || strings.Contains(op, "Rule") {
			t.Errorf("%s called while the port was taken", op)
		}
	}
	if n := len(e.rules(users)); n != 0 {
		t.Errorf("%d rules added to the user's listener", n)
	}
}

// A backend a route is about to switch to is health-checked while the
// route's traffic all stays on the old backend; the switch then changes
// one rule.
func TestALBWarmingBackendIsJudgedButTakesNoTraffic(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{})
	const newID = "shop/next:80"
	lb := shopBalancer(nil)
	lb.Backends[newID] = backend("next")
	lb.Routes[0].Warming = newID
	lb.Default, lb.DefaultWarming = webID, newID
	_, specs := e.ensure(lb)
	servers := map[string]*namedBackend{apiID: startNamedBackend(t, "api"), webID: startNamedBackend(t, "web"), newID: startNamedBackend(t, "next")}
	groups := e.register(lb, specs, servers)
	albArn := e.albArn(shopKey)
	base := "http://" + e.srv.LoadBalancerAddr(albArn, 80)
	answers(t, plainClient, base, map[string]string{"shop.example.com/api": "api", "other.example.com/": "web"})

	var state string
	eventually(t, func() string { return "the warming group's target healthy, last " + state }, func() bool {
		out, err := e.c.DescribeTargetHealth(e.ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(groups[newID].Ref)})
		if err != nil || len(out.TargetHealthDescriptions) != 1 {
			t.Fatalf("DescribeTargetHealth: %v %v", out, err)
		}
		state = string(out.TargetHealthDescriptions[0].TargetHealth.State)
		return state == string(types.TargetHealthStateEnumHealthy)
	})
	for range 20 {
		for host, want := range map[string]string{"shop.example.com": "api", "other.example.com": "web"} {
			path := "/"
			if want == "api" {
				path = "/api"
			}
			if r := send(t, plainClient, base+path, host); r.status != http.StatusOK || r.body != want {
				t.Fatalf("%s%s answered %v while next was only warming, want %s", host, path, r, want)
			}
		}
	}

	e.srv.ResetStats()
	lb.Routes[0].Backend, lb.Routes[0].Warming = newID, ""
	e.ensure(lb)
	e.wantMutations("switched", map[string]int64{"ModifyRule": 1})
	answers(t, plainClient, base, map[string]string{"shop.example.com/api": "next", "other.example.com/": "web"})
	lb.Default, lb.DefaultWarming = newID, ""
	e.ensure(lb)
	e.wantMutations("default switched", map[string]int64{"ModifyListener": 1})
	answers(t, plainClient, base, map[string]string{"other.example.com/": "next"})
}

// A short health check interval alone is accepted: AWS refuses an HTTP
// group whose default 5 s timeout is not below the interval.
func TestALBShortIntervalGetsATimeoutThatFits(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{})
	lb := shopBalancer(&LoadBalancerSpec{Backends: map[string]BackendSpec{"web:80": {HealthCheck: &HealthCheckSpec{IntervalSeconds: aws.Int32(5)}}}})
	_, specs := e.ensure(lb)
	out, err := e.c.DescribeTargetGroups(e.ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{specs[webID].(*Spec).Balancer.ARN}})
	if err != nil {
		t.Fatal(err)
	}
	if tg := out.TargetGroups[0]; aws.ToInt32(tg.HealthCheckIntervalSeconds) != 5 || aws.ToInt32(tg.HealthCheckTimeoutSeconds) != 4 {
		t.Errorf("interval %d timeout %d, want 5 and 4", aws.ToInt32(tg.HealthCheckIntervalSeconds), aws.ToInt32(tg.HealthCheckTimeoutSeconds))
	}
	// A timeout the user sets is theirs to get right.
	lb.Spec = &LoadBalancerSpec{Backends: map[string]BackendSpec{"web:80": {HealthCheck: &HealthCheckSpec{IntervalSeconds: aws.Int32(5), TimeoutSeconds: aws.Int32(3)}}}}
	e.ensure(lb)
	out, _ = e.c.DescribeTargetGroups(e.ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{specs[webID].(*Spec).Balancer.ARN}})
	if tg := out.TargetGroups[0]; aws.ToInt32(tg.HealthCheckTimeoutSeconds) != 3 {
		t.Errorf("timeout %d, want the annotation's 3", aws.ToInt32(tg.HealthCheckTimeoutSeconds))
	}
}
