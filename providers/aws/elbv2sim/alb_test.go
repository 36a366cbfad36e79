package elbv2sim_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// albOptions is fast() with load balancers active at once.
func albOptions() elbv2sim.Options {
	o := fast()
	o.ProvisioningDelay = -1
	return o
}

// createALB makes an application load balancer with an HTTP listener on
// port 80 whose default action is def, and returns the ARNs.
func createALB(t *testing.T, c *elbv2.Client, def types.Action) (lbArn, listenerArn string) {
	t.Helper()
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(uniq("alb")),
		Type: types.LoadBalancerTypeEnumApplication, Subnets: elbv2sim.DefaultSubnetIDs})
	if err != nil {
		t.Fatalf("CreateLoadBalancer: %v", err)
	}
	lbArn = *lb.LoadBalancers[0].LoadBalancerArn
	l, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(lbArn),
		Protocol: types.ProtocolEnumHttp, Port: aws.Int32(80), DefaultActions: []types.Action{def}})
	if err != nil {
		t.Fatalf("CreateListener: %v", err)
	}
	return lbArn, *l.Listeners[0].ListenerArn
}

func forwardTo(tgArn string) types.Action {
	return types.Action{Type: types.ActionTypeEnumForward, TargetGroupArn: aws.String(tgArn)}
}

func fixed(status, body string) types.Action {
	return types.Action{Type: types.ActionTypeEnumFixedResponse, FixedResponseConfig: &types.FixedResponseActionConfig{
		StatusCode: aws.String(status), ContentType: aws.String("text/plain"), MessageBody: aws.String(body)}}
}

func hostIs(v ...string) types.RuleCondition {
	return types.RuleCondition{Field: aws.String("host-header"), HostHeaderConfig: &types.HostHeaderConditionConfig{Values: v}}
}

func pathIs(v ...string) types.RuleCondition {
	return types.RuleCondition{Field: aws.String("path-pattern"), PathPatternConfig: &types.PathPatternConditionConfig{Values: v}}
}

func createRule(c *elbv2.Client, listenerArn string, prio int32, act types.Action, conds ...types.RuleCondition) (string, error) {
	out, err := c.CreateRule(ctx, &elbv2.CreateRuleInput{ListenerArn: aws.String(listenerArn), Priority: aws.Int32(prio),
		Conditions: conds, Actions: []types.Action{act}})
	if err != nil {
		return "", err
	}
	return *out.Rules[0].RuleArn, nil
}

func mustRule(t *testing.T, c *elbv2.Client, listenerArn string, prio int32, act types.Action, conds ...types.RuleCondition) string {
	t.Helper()
	arn, err := createRule(c, listenerArn, prio, act, conds...)
	if err != nil {
		t.Fatalf("CreateRule %d: %v", prio, err)
	}
	return arn
}

// noRedirects is an HTTP client that reports redirects instead of
// following them.
var noRedirects = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true},
}

type answer struct {
	status int
	body   string
	header http.Header
}

// get sends GET url with the given Host (and extra headers) through addr.
func get(t *testing.T, cl *http.Client, scheme, addr, host, path string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s via %s: %v", host, path, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

// healthyBackend starts an HTTP backend in a new HTTP group and waits
// until the group (used by the listener afterwards) reports it healthy.
func httpGroup(t *testing.T, c *elbv2.Client, backends ...*httpBackend) string {
	t.Helper()
	tg := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumHttp})
	for _, b := range backends {
		register(t, c, *tg.TargetGroupArn, b.target())
	}
	return *tg.TargetGroupArn
}

func waitHealthy(t *testing.T, c *elbv2.Client, tgArn string, backends ...*httpBackend) {
	t.Helper()
	for _, b := range backends {
		waitState(t, c, tgArn, b.target(), "healthy", "")
	}
}

func TestApplicationLoadBalancerProvisionsThenTurnsActive(t *testing.T) {
	o := fast()
	o.ProvisioningDelay = 300 * time.Millisecond
	s := start(t, o)
	c := client(s, 1)

	_, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("nosubnet"), Subnets: []string{"subnet-0123456789abcdef0", elbv2sim.DefaultSubnetIDs[0]}})
	wantCode(t, err, "SubnetNotFound")
	_, err = c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("badsubnet"), Subnets: []string{"subnet-nope", elbv2sim.DefaultSubnetIDs[0]}})
	wantCode(t, err, "ValidationError")
	_, err = c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("onezone"), Subnets: elbv2sim.DefaultSubnetIDs[:1]})
	wantCode(t, err, "ValidationError")
	_, err = c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("badsg"), SecurityGroups: []string{"default"}})
	wantCode(t, err, "InvalidSecurityGroup")
	_, err = c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("othersg"), SecurityGroups: []string{"sg-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSecurityGroup") // well formed, but not a group of the VPC

	out, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("web"), Type: types.LoadBalancerTypeEnumApplication,
		Subnets: elbv2sim.DefaultSubnetIDs, SecurityGroups: []string{elbv2sim.DefaultSecurityGroupID}})
	if err != nil {
		t.Fatal(err)
	}
	lb := out.LoadBalancers[0]
	if lb.State.Code != types.LoadBalancerStateEnumProvisioning {
		t.Errorf("new ALB state %s, want provisioning", lb.State.Code)
	}
	if len(lb.SecurityGroups) != 1 || lb.SecurityGroups[0] != elbv2sim.DefaultSecurityGroupID {
		t.Errorf("security groups %v", lb.SecurityGroups)
	}
	if len(lb.AvailabilityZones) != 2 || *lb.AvailabilityZones[0].SubnetId != elbv2sim.DefaultSubnetIDs[0] ||
		*lb.AvailabilityZones[1].ZoneName != "us-east-1b" || !strings.HasPrefix(*lb.DNSName, "web-") {
		t.Errorf("zones %+v, DNS name %s", lb.AvailabilityZones, *lb.DNSName)
	}

	// Requests are refused until the load balancer is active.
	l, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lb.LoadBalancerArn, Protocol: types.ProtocolEnumHttp,
		Port: aws.Int32(80), DefaultActions: []types.Action{fixed("200", "up")}})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.ListenerAddr(*l.Listeners[0].ListenerArn)
	if a := get(t, noRedirects, "http", addr, "web", "/"); a.status != http.StatusServiceUnavailable {
		t.Errorf("while provisioning: %d %q", a.status, a.body)
	}
	waitFor(t, "the ALB to turn active", func() bool {
		d, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{*lb.LoadBalancerArn}})
		return err == nil && d.LoadBalancers[0].State.Code == types.LoadBalancerStateEnumActive
	})
	if a := get(t, noRedirects, "http", addr, "web", "/"); a.status != 200 || a.body != "up" {
		t.Errorf("once active: %d %q", a.status, a.body)
	}

	attrs := func() map[string]string {
		d, err := c.DescribeLoadBalancerAttributes(ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: lb.LoadBalancerArn})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, a := range d.Attributes {
			m[*a.Key] = *a.Value
		}
		return m
	}
	if v := attrs()["idle_timeout.timeout_seconds"]; v != "60" {
		t.Errorf("default idle timeout %q", v)
	}
	modify := func(k, v string) error {
		_, err := c.ModifyLoadBalancerAttributes(ctx, &elbv2.ModifyLoadBalancerAttributesInput{LoadBalancerArn: lb.LoadBalancerArn,
			Attributes: []types.LoadBalancerAttribute{{Key: aws.String(k), Value: aws.String(v)}}})
		return err
	}
	if err := modify("idle_timeout.timeout_seconds", "4000"); err != nil {
		t.Fatal(err)
	}
	if v := attrs()["idle_timeout.timeout_seconds"]; v != "4000" {
		t.Errorf("idle timeout after modify %q", v)
	}
	wantCode(t, modify("idle_timeout.timeout_seconds", "0"), "ValidationError")
	wantCode(t, modify("idle_timeout.timeout_seconds", "4001"), "ValidationError")
	wantCode(t, modify("no.such.attribute", "1"), "InvalidConfigurationRequest")

	if err := modify("deletion_protection.enabled", "true"); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn})
	wantCode(t, err, "OperationNotPermitted")
}

func TestRuleAPI(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	a := httpGroup(t, c)
	b := httpGroup(t, c)
	_, listenerArn := createALB(t, c, forwardTo(a))

	r10 := mustRule(t, c, listenerArn, 10, forwardTo(b), pathIs("/b/*"))
	r5 := mustRule(t, c, listenerArn, 5, fixed("404", "gone"), hostIs("old.example.com"),
		types.RuleCondition{Field: aws.String("http-header"), HttpHeaderConfig: &types.HttpHeaderConditionConfig{
			HttpHeaderName: aws.String("X-Env"), Values: []string{"canary"}}})
	// The old Field/Values form is accepted too.
	r7 := mustRule(t, c, listenerArn, 7, forwardTo(a), types.RuleCondition{Field: aws.String("host-header"), Values: []string{"*.example.org"}})

	_, err := createRule(c, listenerArn, 10, forwardTo(a), pathIs("/x"))
	wantCode(t, err, "PriorityInUse")
	for _, p := range []int32{0, 50001} {
		_, err = createRule(c, listenerArn, p, forwardTo(a), pathIs("/x"))
		wantCode(t, err, "ValidationError")
	}
	_, err = createRule(c, listenerArn, 20, forwardTo(a), pathIs("/1", "/2", "/3"), hostIs("a", "b", "c"))
	wantCode(t, err, "ValidationError") // six condition values
	_, err = createRule(c, listenerArn, 20, forwardTo(a), pathIs("/*/*/*/*/*/*"))
	wantCode(t, err, "ValidationError") // six wildcards
	_, err = c.CreateRule(ctx, &elbv2.CreateRuleInput{ListenerArn: aws.String(listenerArn), Priority: aws.Int32(20),
		Conditions: []types.RuleCondition{}, Actions: []types.Action{forwardTo(a)}})
	wantCode(t, err, "ValidationError") // no condition
	_, err = createRule(c, listenerArn, 20, forwardTo("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef"), pathIs("/x"))
	wantCode(t, err, "TargetGroupNotFound")

	var six []types.TargetGroupTuple
	for range 6 {
		six = append(six, types.TargetGroupTuple{TargetGroupArn: aws.String(httpGroup(t, c)), Weight: aws.Int32(1)})
	}
	_, err = createRule(c, listenerArn, 20, types.Action{Type: types.ActionTypeEnumForward,
		ForwardConfig: &types.ForwardActionConfig{TargetGroups: six}}, pathIs("/x"))
	wantCode(t, err, "TooManyTargetGroups")
	_, err = createRule(c, listenerArn, 20, types.Action{Type: types.ActionTypeEnumForward,
		ForwardConfig: &types.ForwardActionConfig{TargetGroups: six[:5]}}, pathIs("/x"))
	if err != nil {
		t.Errorf("forward to five groups: %v", err)
	}

	describe := func() []types.Rule {
		t.Helper()
		out, err := c.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listenerArn)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Rules
	}
	order := func() string {
		var ps []string
		for _, r := range describe() {
			ps = append(ps, *r.Priority)
		}
		return strings.Join(ps, ",")
	}
	if got := order(); got != "5,7,10,20,default" {
		t.Errorf("rule order %s", got)
	}
	rs := describe()
	if rs[0].Conditions[1].HttpHeaderConfig == nil || *rs[0].Conditions[1].HttpHeaderConfig.HttpHeaderName != "X-Env" ||
		rs[0].Actions[0].FixedResponseConfig == nil || *rs[0].Actions[0].FixedResponseConfig.StatusCode != "404" ||
		rs[1].Conditions[0].HostHeaderConfig == nil || rs[1].Conditions[0].HostHeaderConfig.Values[0] != "*.example.org" {
		t.Errorf("rules as described: %+v", rs)
	}

	// Swapping two priorities at once is fine; a clash is not, and
	// changes nothing.
	if _, err := c.SetRulePriorities(ctx, &elbv2.SetRulePrioritiesInput{RulePriorities: []types.RulePriorityPair{
		{RuleArn: aws.String(r5), Priority: aws.Int32(10)}, {RuleArn: aws.String(r10), Priority: aws.Int32(5)}}}); err != nil {
		t.Fatalf("swap: %v", err)
	}
	_, err = c.SetRulePriorities(ctx, &elbv2.SetRulePrioritiesInput{RulePriorities: []types.RulePriorityPair{
		{RuleArn: aws.String(r7), Priority: aws.Int32(5)}}})
	wantCode(t, err, "PriorityInUse")
	if got := describe(); *got[0].RuleArn != r10 || *got[1].RuleArn != r7 || *got[2].RuleArn != r5 {
		t.Errorf("after swap: %s %s %s", *got[0].RuleArn, *got[1].RuleArn, *got[2].RuleArn)
	}

	m, err := c.ModifyRule(ctx, &elbv2.ModifyRuleInput{RuleArn: aws.String(r7), Conditions: []types.RuleCondition{pathIs("/seven")}})
	if err != nil || m.Rules[0].Conditions[0].PathPatternConfig.Values[0] != "/seven" || *m.Rules[0].Actions[0].TargetGroupArn != a {
		t.Errorf("ModifyRule conditions: %+v %v", m, err)
	}
	def := *describe()[len(describe())-1].RuleArn
	_, err = c.ModifyRule(ctx, &elbv2.ModifyRuleInput{RuleArn: aws.String(def), Conditions: []types.RuleCondition{pathIs("/")}})
	wantCode(t, err, "OperationNotPermitted")
	if _, err := c.ModifyRule(ctx, &elbv2.ModifyRuleInput{RuleArn: aws.String(def), Actions: []types.Action{forwardTo(b)}}); err != nil {
		t.Fatalf("ModifyRule default actions: %v", err)
	}
	ls, _ := c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{listenerArn}})
	if *ls.Listeners[0].DefaultActions[0].TargetGroupArn != b {
		t.Errorf("default action after ModifyRule: %+v", ls.Listeners[0].DefaultActions[0])
	}

	_, err = c.DeleteRule(ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(def)})
	wantCode(t, err, "OperationNotPermitted")
	if _, err := c.DeleteRule(ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(r7)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DeleteRule(ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(r7)})
	wantCode(t, err, "RuleNotFound")
	_, err = c.DescribeRules(ctx, &elbv2.DescribeRulesInput{RuleArns: []string{r7}})
	wantCode(t, err, "RuleNotFound")
	if got := order(); got != "5,10,20,default" {
		t.Errorf("rule order after delete %s", got)
	}

	// Rules and listeners take tags.
	tagged, err := c.CreateRule(ctx, &elbv2.CreateRuleInput{ListenerArn: aws.String(listenerArn), Priority: aws.Int32(30),
		Conditions: []types.RuleCondition{pathIs("/t")}, Actions: []types.Action{forwardTo(a)},
		Tags: []types.Tag{{Key: aws.String("ingress"), Value: aws.String("shop")}}})
	if err != nil {
		t.Fatal(err)
	}
	ruleArn := *tagged.Rules[0].RuleArn
	if _, err := c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{ruleArn, listenerArn},
		Tags: []types.Tag{{Key: aws.String("owner"), Value: aws.String("podlb")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveTags(ctx, &elbv2.RemoveTagsInput{ResourceArns: []string{ruleArn}, TagKeys: []string{"ingress"}}); err != nil {
		t.Fatal(err)
	}
	td, err := c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{ruleArn, listenerArn}})
	if err != nil || len(td.TagDescriptions) != 2 || len(td.TagDescriptions[0].Tags) != 1 || *td.TagDescriptions[0].Tags[0].Key != "owner" ||
		len(td.TagDescriptions[1].Tags) != 1 {
		t.Errorf("tags of rule and listener: %+v %v", td, err)
	}
	if _, err := c.DeleteRule(ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(ruleArn)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{ruleArn}})
	wantCode(t, err, "RuleNotFound")

	// Rules belong to application load balancers.
	tcp := createTG(t, c, elbv2.CreateTargetGroupInput{})
	_, nlbListener := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, *tcp.TargetGroupArn)
	_, err = createRule(c, nlbListener, 1, forwardTo(*tcp.TargetGroupArn), pathIs("/"))
	wantCode(t, err, "InvalidConfigurationRequest")
}

func TestRulesPerLoadBalancerQuota(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	_, l1 := createALB(t, c, fixed("200", ""))
	lbArn, _ := createALB(t, c, fixed("200", ""))
	l2, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(lbArn),
		Protocol: types.ProtocolEnumHttp, Port: aws.Int32(8080), DefaultActions: []types.Action{fixed("200", "")}})
	if err != nil {
		t.Fatal(err)
	}
	// The quota is per load balancer: rules on its other listener count.
	second := *l2.Listeners[0].ListenerArn
	lbListeners, _ := c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(lbArn)})
	first := *lbListeners.Listeners[0].ListenerArn
	for i := range 100 {
		l := first
		if i%2 == 1 {
			l = second
		}
		mustRule(t, c, l, int32(i+1), fixed("200", ""), pathIs(fmt.Sprintf("/%d", i)))
	}
	_, err = createRule(c, second, 200, fixed("200", ""), pathIs("/x"))
	wantCode(t, err, "TooManyRules")
	// Another load balancer has its own quota.
	mustRule(t, c, l1, 1, fixed("200", ""), pathIs("/x"))
}

func TestALBRoutesByHostPathAndHeader(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	api, static, canary := startHTTPBackend(t), startHTTPBackend(t), startHTTPBackend(t)
	apiTG, staticTG, canaryTG := httpGroup(t, c, api), httpGroup(t, c, static), httpGroup(t, c, canary)
	_, listenerArn := createALB(t, c, fixed("404", "no route"))
	mustRule(t, c, listenerArn, 30, forwardTo(apiTG), hostIs("*.Example.com"), pathIs("/api/*"))
	mustRule(t, c, listenerArn, 20, forwardTo(staticTG), pathIs("/static/?.css"))
	mustRule(t, c, listenerArn, 10, forwardTo(canaryTG), types.RuleCondition{Field: aws.String("http-header"),
		HttpHeaderConfig: &types.HttpHeaderConditionConfig{HttpHeaderName: aws.String("x-env"), Values: []string{"CAN*"}}})
	mustRule(t, c, listenerArn, 40, types.Action{Type: types.ActionTypeEnumRedirect, RedirectConfig: &types.RedirectActionConfig{
		Protocol: aws.String("HTTPS"), Host: aws.String("new.example.com"), Port: aws.String("443"),
		Path: aws.String("/v2/#{path}"), StatusCode: types.RedirectActionStatusCodeEnumHttp301}}, hostIs("old.example.com"))
	waitHealthy(t, c, apiTG, api)
	waitHealthy(t, c, staticTG, static)
	waitHealthy(t, c, canaryTG, canary)
	addr := s.ListenerAddr(listenerArn)

	for _, tc := range []struct {
		name, host, path string
		hdr              []string
		status           int
		body             string
	}{
		{"host wildcard and path, host case-insensitive", "shop.EXAMPLE.com", "/api/orders?id=1", nil, 200, api.ip},
		{"host matches but path does not", "shop.example.com", "/web", nil, 404, "no route"},
		{"path is case-sensitive", "shop.example.com", "/API/orders", nil, 404, "no route"},
		{"? is exactly one character", "any", "/static/a.css", nil, 200, static.ip},
		{"? does not match two characters", "any", "/static/ab.css", nil, 404, "no route"},
		{"the query string is not part of the path", "any", "/static/b.css?v=/static/x", nil, 200, static.ip},
		{"header value case-insensitive, lowest priority first", "shop.example.com", "/api/x", []string{"X-Env", "canary-7"}, 200, canary.ip},
		{"host with a port still matches", "shop.example.com:80", "/api/x", nil, 200, api.ip},
	} {
		a := get(t, noRedirects, "http", addr, tc.host, tc.path, tc.hdr...)
		if a.status != tc.status || a.body != tc.body {
			t.Errorf("%s: %s%s answered %d %q, want %d %q", tc.name, tc.host, tc.path, a.status, a.body, tc.status, tc.body)
		}
	}

	a := get(t, noRedirects, "http", addr, "shop.example.com", "/api/x", "X-Forwarded-For", "203.0.113.9")
	if got := a.header.Get("Seen-X-Forwarded-For"); got != "203.0.113.9, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
	if a.header.Get("Seen-X-Forwarded-Proto") != "http" || a.header.Get("Seen-X-Forwarded-Port") != "80" ||
		a.header.Get("Seen-Host") != "shop.example.com" {
		t.Errorf("forwarded headers: %v", a.header)
	}

	r := get(t, noRedirects, "http", addr, "old.example.com", "/cart/items?sort=asc")
	if r.status != http.StatusMovedPermanently || r.header.Get("Location") != "https://new.example.com/v2/cart/items?sort=asc" {
		t.Errorf("redirect: %d %q", r.status, r.header.Get("Location"))
	}

	// A redirect that changes nothing would loop and is refused.
	_, err := createRule(c, listenerArn, 50, types.Action{Type: types.ActionTypeEnumRedirect, RedirectConfig: &types.RedirectActionConfig{
		StatusCode: types.RedirectActionStatusCodeEnumHttp302}}, pathIs("/loop"))
	wantCode(t, err, "InvalidLoadBalancerAction")
}

func TestWeightedForwardAndErrors(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	one, three := startHTTPBackend(t), startHTTPBackend(t)
	oneTG, threeTG := httpGroup(t, c, one), httpGroup(t, c, three)
	emptyTG := httpGroup(t, c)
	dead := startHTTPBackend(t)
	deadTG := httpGroup(t, c, dead)
	_ = dead.srv.Close() // fails its checks; with no healthy target the group fails open to it

	_, listenerArn := createALB(t, c, types.Action{Type: types.ActionTypeEnumForward, ForwardConfig: &types.ForwardActionConfig{
		TargetGroups: []types.TargetGroupTuple{
			{TargetGroupArn: aws.String(oneTG), Weight: aws.Int32(1)},
			{TargetGroupArn: aws.String(threeTG), Weight: aws.Int32(3)},
		}}})
	mustRule(t, c, listenerArn, 1, forwardTo(emptyTG), pathIs("/empty"))
	mustRule(t, c, listenerArn, 2, forwardTo(deadTG), pathIs("/dead"))
	waitHealthy(t, c, oneTG, one)
	waitHealthy(t, c, threeTG, three)
	waitState(t, c, deadTG, dead.target(), "unhealthy", "")
	addr := s.ListenerAddr(listenerArn)

	got := map[string]int{}
	for range 40 {
		a := get(t, noRedirects, "http", addr, "x", "/")
		got[a.body]++
	}
	if got[one.ip] != 10 || got[three.ip] != 30 {
		t.Errorf("weights 1:3 over 40 requests gave %v", got)
	}
	if a := get(t, noRedirects, "http", addr, "x", "/empty"); a.status != http.StatusServiceUnavailable {
		t.Errorf("group without targets: %d %q", a.status, a.body)
	}
	if a := get(t, noRedirects, "http", addr, "x", "/dead"); a.status != http.StatusBadGateway {
		t.Errorf("target refusing connections: %d %q", a.status, a.body)
	}
}

func TestHTTPSListenerTerminatesTLSBySNI(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	be := startHTTPBackend(t)
	tg := httpGroup(t, c, be)
	shop := s.IssueCertificate("shop.example.com")
	blog := s.IssueCertificate("*.blog.example.com", "blog.example.com")
	if !strings.HasPrefix(shop, "arn:aws:acm:us-east-1:123456789012:certificate/") || len(shop) != len("arn:aws:acm:us-east-1:123456789012:certificate/")+36 {
		t.Errorf("certificate ARN %s", shop)
	}
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(uniq("alb")), Subnets: elbv2sim.DefaultSubnetIDs})
	if err != nil {
		t.Fatal(err)
	}
	listen := func(certs []types.Certificate, policy *string) (*elbv2.CreateListenerOutput, error) {
		return c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn,
			Protocol: types.ProtocolEnumHttps, Port: aws.Int32(443), Certificates: certs, SslPolicy: policy,
			DefaultActions: []types.Action{forwardTo(tg)}})
	}
	_, err = listen(nil, nil)
	wantCode(t, err, "CertificateNotFound")
	_, err = listen([]types.Certificate{{CertificateArn: aws.String(shop + "0")}}, nil)
	wantCode(t, err, "CertificateNotFound")
	_, err = listen([]types.Certificate{{CertificateArn: aws.String(shop)}}, aws.String("ELBSecurityPolicy-Nope"))
	wantCode(t, err, "SSLPolicyNotFound")
	l, err := listen([]types.Certificate{{CertificateArn: aws.String(shop)}}, aws.String("ELBSecurityPolicy-2016-08"))
	if err != nil {
		t.Fatal(err)
	}
	listenerArn := *l.Listeners[0].ListenerArn
	if *l.Listeners[0].SslPolicy != "ELBSecurityPolicy-2016-08" || *l.Listeners[0].Certificates[0].CertificateArn != shop {
		t.Errorf("listener: %+v", l.Listeners[0])
	}
	if _, err := c.AddListenerCertificates(ctx, &elbv2.AddListenerCertificatesInput{ListenerArn: aws.String(listenerArn),
		Certificates: []types.Certificate{{CertificateArn: aws.String(blog)}}}); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c, tg, be)
	addr := s.ListenerAddr(listenerArn)

	pool := s.CertificatePool()
	served := func(serverName string) string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, RootCAs: pool})
		if err != nil {
			t.Fatalf("TLS to %s: %v", serverName, err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served("shop.example.com"); got != "shop.example.com" {
		t.Errorf("SNI shop.example.com got %s", got)
	}
	if got := served("www.blog.example.com"); got != "*.blog.example.com" {
		t.Errorf("SNI www.blog.example.com got %s", got)
	}
	// An unknown name gets the default certificate, which does not verify.
	if _, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "other.example.com", RootCAs: pool}); err == nil {
		t.Error("a name no certificate covers verified")
	}

	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "shop.example.com", RootCAs: pool}}}
	a := get(t, cl, "https", addr, "shop.example.com", "/")
	if a.status != 200 || a.body != be.ip || a.header.Get("Seen-X-Forwarded-Proto") != "https" || a.header.Get("Seen-X-Forwarded-Port") != "443" {
		t.Errorf("HTTPS request: %d %q %v", a.status, a.body, a.header)
	}

	// Back to plain HTTP on another port: the certificates go.
	m, err := c.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(listenerArn),
		Protocol: types.ProtocolEnumHttp, Port: aws.Int32(8080)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Listeners[0].Protocol != types.ProtocolEnumHttp || *m.Listeners[0].Port != 8080 || len(m.Listeners[0].Certificates) != 0 {
		t.Errorf("modified listener: %+v", m.Listeners[0])
	}
	if a := get(t, noRedirects, "http", addr, "shop.example.com", "/"); a.status != 200 || a.body != be.ip || a.header.Get("Seen-X-Forwarded-Port") != "8080" {
		t.Errorf("after ModifyListener: %d %q %v", a.status, a.body, a.header)
	}
	_, err = c.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(listenerArn), Protocol: types.ProtocolEnumHttps})
	wantCode(t, err, "CertificateNotFound")
}

func TestGroupUsedOnlyByARuleIsHealthChecked(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	be := startHTTPBackend(t)
	tg := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumHttp,
		HealthCheckPath: aws.String("/healthz"), HealthCheckPort: aws.String(fmt.Sprint(be.port)),
		Matcher: &types.Matcher{HttpCode: aws.String("200-299")}})
	tgArn := *tg.TargetGroupArn
	// Registered on another port: the checks still go to the health-check port.
	td := types.TargetDescription{Id: aws.String(be.ip), Port: aws.Int32(1)}
	register(t, c, tgArn, td)
	lbArn, listenerArn := createALB(t, c, fixed("404", ""))
	waitState(t, c, tgArn, td, "unused", "Target.NotInUse")

	r1 := mustRule(t, c, listenerArn, 1, forwardTo(tgArn), pathIs("/a"))
	mustRule(t, c, listenerArn, 2, forwardTo(tgArn), pathIs("/b")) // several rules may share a group
	waitState(t, c, tgArn, td, "healthy", "")
	d, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(lbArn)})
	if err != nil || len(d.TargetGroups) != 1 || d.TargetGroups[0].LoadBalancerArns[0] != lbArn {
		t.Errorf("groups of the ALB: %+v %v", d, err)
	}
	_, err = c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(tgArn)})
	wantCode(t, err, "ResourceInUse")

	be.status.Store(301)
	h := waitState(t, c, tgArn, td, "unhealthy", "Target.ResponseCodeMismatch")
	if !strings.Contains(h.desc, "301") {
		t.Errorf("description %q", h.desc)
	}
	be.status.Store(204)
	waitState(t, c, tgArn, td, "healthy", "")

	// Another load balancer cannot use the group.
	_, other := createALB(t, c, fixed("404", ""))
	_, err = createRule(c, other, 1, forwardTo(tgArn), pathIs("/a"))
	wantCode(t, err, "TargetGroupAssociationLimit")

	// Still used by the second rule, then by none.
	if _, err := c.DeleteRule(ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(r1)}); err != nil {
		t.Fatal(err)
	}
	if h := healthOf(t, c, tgArn)[key(td)]; h.state != "healthy" {
		t.Errorf("after deleting one of two rules: %+v", h)
	}
	if _, err := c.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(listenerArn)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, tgArn, td, "unused", "Target.NotInUse")
	if _, err := c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(tgArn)}); err != nil {
		t.Errorf("DeleteTargetGroup once unused: %v", err)
	}
}

func TestALBDrainingEndsWhenNoRequestIsInFlight(t *testing.T) {
	o := albOptions()
	o.DeregistrationDelay = 10 * time.Second
	s := start(t, o)
	c := client(s, 1)
	idle, busy := startHTTPBackend(t), startHTTPBackend(t)
	tgArn := httpGroup(t, c, idle, busy)
	_, listenerArn := createALB(t, c, forwardTo(tgArn))
	waitHealthy(t, c, tgArn, idle, busy)
	addr := s.ListenerAddr(listenerArn)

	// Nothing in flight: deregistration completes at once.
	deregister(t, c, tgArn, idle.target())
	if h, ok := healthOf(t, c, tgArn)[key(idle.target())]; ok {
		t.Errorf("idle target still listed: %+v", h)
	}

	// A slow request keeps the target draining until it is answered.
	busy.delay.Store(int64(500 * time.Millisecond))
	done := make(chan answer, 1)
	go func() {
		done <- get(t, noRedirects, "http", addr, "x", "/slow")
	}()
	waitFor(t, "the request to reach the target", func() bool {
		ts := s.Targets(tgArn)
		return len(ts) == 1 && ts[0].InFlight == 1
	})
	deregister(t, c, tgArn, busy.target())
	if h := healthOf(t, c, tgArn)[key(busy.target())]; h.state != "draining" {
		t.Errorf("busy target: %+v, want draining", h)
	}
	// New requests do not go to a draining target.
	if a := get(t, noRedirects, "http", addr, "x", "/"); a.status != http.StatusServiceUnavailable {
		t.Errorf("request while the only target drains: %d %q", a.status, a.body)
	}
	began := time.Now()
	if a := <-done; a.status != 200 || a.body != busy.ip {
		t.Errorf("in-flight request: %d %q", a.status, a.body)
	}
	waitFor(t, "the drained target to go", func() bool { return len(s.Targets(tgArn)) == 0 })
	if time.Since(began) > 5*time.Second {
		t.Errorf("draining lasted until the delay")
	}
}

func TestModifyListenerIsAllOrNothing(t *testing.T) {
	s := start(t, albOptions())
	c := client(s, 1)
	be := startHTTPBackend(t)
	tg := httpGroup(t, c, be)
	lbArn, listenerArn := createALB(t, c, fixed("200", "before"))
	if _, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(lbArn), Protocol: types.ProtocolEnumHttp,
		Port: aws.Int32(8080), DefaultActions: []types.Action{fixed("200", "other")}}); err != nil {
		t.Fatal(err)
	}
	addr := s.ListenerAddr(listenerArn)

	_, err := c.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(listenerArn), Port: aws.Int32(8080),
		DefaultActions: []types.Action{forwardTo(tg)}})
	wantCode(t, err, "DuplicateListener")
	if a := get(t, noRedirects, "http", addr, "x", "/"); a.body != "before" {
		t.Errorf("a refused ModifyListener changed the default action: %q", a.body)
	}
	if h := healthOf(t, c, tg)[key(be.target())]; h.state != "unused" {
		t.Errorf("a refused ModifyListener put the group in use: %+v", h)
	}

	if _, err := c.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(listenerArn),
		DefaultActions: []types.Action{forwardTo(tg)}}); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, c, tg, be)
	if a := get(t, noRedirects, "http", addr, "x", "/"); a.status != 200 || a.body != be.ip {
		t.Errorf("after ModifyListener: %d %q", a.status, a.body)
	}
}
