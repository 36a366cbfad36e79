package aws

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// simCredentials are static, as the emulator checks none.
var simCredentials = credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")

// maxAttempts is the SDK's attempts per call in these tests: a throttled
// call shows up as exactly this many calls in the emulator's stats.
const maxAttempts = 2

// env is an emulator, a provider pointed at it through the real SDK, and
// an owned target group of one binding.
type env struct {
	t   *testing.T
	ctx context.Context
	srv *elbv2sim.Server
	p   *Provider
	g   *providers.Group
}

func newEnv(t *testing.T, o elbv2sim.Options) *env {
	t.Helper()
	srv, err := elbv2sim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	limits := providers.Unthrottled(DefaultLimits())
	p, err := New(ctx, Options{
		Cluster: "test-cluster", Region: "us-east-1", VPCID: elbv2sim.DefaultVPCID,
		ELBv2Endpoint: srv.URL(), EC2Endpoint: srv.URL(),
		Credentials: simCredentials,
		Limits:      limits, MaxAttempts: maxAttempts,
	})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ParseSpec([]byte(`{"create": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	g, err := p.Ensure(ctx, &providers.Binding{
		Key:     providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80},
		Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Mode: providers.ReadyWhenHealthy, Spec: spec,
	})
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	return &env{t: t, ctx: ctx, srv: srv, p: p, g: g}
}

// registered is the set of targets the emulator holds, draining ones
// included.
func (e *env) registered() map[string]bool {
	out := map[string]bool{}
	for _, t := range e.srv.Targets(e.g.Ref) {
		out[netip.AddrPortFrom(netip.MustParseAddr(t.ID), uint16(t.Port)).String()] = true
	}
	return out
}

func (e *env) calls(op string) int64 { return e.srv.Stats()[op].Calls }

func ipTargets(format string, n int) []providers.Target {
	ts := make([]providers.Target, n)
	for i := range ts {
		ts[i] = providers.Target{IP: netip.MustParseAddr(fmt.Sprintf(format, i+1)), Port: 8080}
	}
	return ts
}

// wantRefused checks that err is a *TargetErrors naming exactly want, each
// with an Invalid error of the given code that names its own address.
func wantRefused(t *testing.T, err error, code string, want ...providers.Target) {
	t.Helper()
	te, ok := providers.AsTargetErrors(err)
	if !ok {
		t.Fatalf("got %v, want *TargetErrors", err)
	}
	if providers.ClassOf(err) != providers.Invalid {
		t.Errorf("class %s, want invalid", providers.ClassOf(err))
	}
	if len(te.Failed) != len(want) {
		t.Errorf("refused %v, want %d targets", te.Keys(), len(want))
	}
	for _, w := range want {
		ferr := te.Failed[w.Key()]
		var ce *providers.CloudError
		if !errors.As(ferr, &ce) || ce.Code != code || providers.ClassOf(ferr) != providers.Invalid {
			t.Errorf("%s refused with %v, want an invalid %s", w.Key(), ferr, code)
			continue
		}
		if code != "TooManyTargets" && !strings.Contains(ce.Message, w.IP.String()) {
			t.Errorf("%s refused with another target's error: %v", w.Key(), ferr)
		}
	}
}

// splitBound is the most calls isolating k refused targets in one batch of
// n may cost.
func splitBound(n, k int) int64 { return int64(1 + 2*k*bits.Len(uint(n-1))) }

func TestApplyRegistersEveryGoodTargetAndNamesEachRefusedOne(t *testing.T) {
	e := newEnv(t, elbv2sim.Options{})
	old := ipTargets("10.0.9.%d", 3)
	if err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}

	// IPv6 addresses in an ipv4 group, spread through one batch of 103.
	good := ipTargets("10.0.1.%d", 100)
	bad := ipTargets("fd00::%d", 3)
	register := append([]providers.Target{}, good[:10]...)
	register = append(register, bad[0])
	register = append(register, good[10:50]...)
	register = append(register, bad[1])
	register = append(register, good[50:90]...)
	register = append(register, bad[2])
	register = append(register, good[90:]...)
	// One target to deregister was never registered and is refused too.
	gone := ipTargets("fd00::9:%d", 1)[0]
	e.srv.ResetStats()
	err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: register, Deregister: append(old, gone)})
	wantRefused(t, err, "ValidationError", append(bad, gone)...)

	reg := e.registered()
	for _, tg := range good {
		if !reg[tg.Key().String()] {
			t.Errorf("%s not registered", tg.Key())
		}
	}
	for _, tg := range old {
		if reg[tg.Key().String()] {
			t.Errorf("%s still registered: deregistration did not go out", tg.Key())
		}
	}
	if len(reg) != len(good) {
		t.Errorf("%d registered, want %d", len(reg), len(good))
	}
	if n, limit := e.calls("RegisterTargets"), splitBound(len(register), len(bad)); n > limit {
		t.Errorf("%d RegisterTargets calls, want at most %d", n, limit)
	}
	if n, limit := e.calls("DeregisterTargets"), splitBound(len(old)+1, 1); n > limit {
		t.Errorf("%d DeregisterTargets calls, want at most %d", n, limit)
	}
}

func TestFullGroupRegistersWhatFitsReportsTheRestAndStillDeregisters(t *testing.T) {
	e := newEnv(t, elbv2sim.Options{MaxTargetsPerGroup: 20})
	old := ipTargets("10.0.9.%d", 15)
	if err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}
	// A rollout: ten new pods, five old ones leave.
	fresh := ipTargets("10.0.1.%d", 10)
	e.srv.ResetStats()
	err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: fresh, Deregister: old[:5]})
	wantRefused(t, err, "TooManyTargets", fresh[5:]...)
	reg := e.registered()
	for _, tg := range fresh[:5] {
		if !reg[tg.Key().String()] {
			t.Errorf("%s fits but is not registered", tg.Key())
		}
	}
	if len(reg) != 15 {
		t.Errorf("%d registered, want 15 after deregistering 5", len(reg))
	}
	// Once a single target does not fit, the rest is not sent.
	if n, limit := e.calls("RegisterTargets"), splitBound(len(fresh), 1); n > limit {
		t.Errorf("%d RegisterTargets calls, want at most %d", n, limit)
	}
	// The room the deregistrations made takes the rest on the next pass.
	if err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: fresh[5:]}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.registered()); n != 20 {
		t.Errorf("%d registered, want 20", n)
	}
}

func TestFailuresOfAWholeCallAreNotSplitAndHoldDeregistration(t *testing.T) {
	e := newEnv(t, elbv2sim.Options{})
	old := ipTargets("10.0.9.%d", 2)
	if err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: old}); err != nil {
		t.Fatal(err)
	}
	plan := providers.Plan{Register: append(ipTargets("10.0.1.%d", 50), ipTargets("fd00::%d", 1)...), Deregister: old}
	for _, c := range []struct {
		code  string
		class providers.Class
		calls int64
	}{
		{"Throttling", providers.Throttled, maxAttempts},
		{"ServiceUnavailable", providers.Transient, maxAttempts},
		{"TargetGroupNotFound", providers.NotFound, 1},
		{"AccessDenied", providers.Invalid, 1},
	} {
		e.srv.ResetStats()
		e.srv.InjectError("RegisterTargets", c.code, 100)
		err := e.p.Apply(e.ctx, e.g, plan)
		e.srv.InjectError("RegisterTargets", "", 0)
		if _, ok := providers.AsTargetErrors(err); ok || providers.ClassOf(err) != c.class || !strings.Contains(err.Error(), c.code) {
			t.Errorf("%s: got %v (%s), want a %s error", c.code, err, providers.ClassOf(err), c.class)
		}
		if n := e.calls("RegisterTargets"); n != c.calls {
			t.Errorf("%s: %d RegisterTargets calls, want %d", c.code, n, c.calls)
		}
		if n := e.calls("DeregisterTargets"); n != 0 {
			t.Errorf("%s: %d DeregisterTargets calls after a failed registration", c.code, n)
		}
		if n := len(e.registered()); n != len(old) {
			t.Errorf("%s: %d registered, want the %d old ones", c.code, n, len(old))
		}
	}
}

func TestReleaseFromASharedGroupIsNotHeldByATargetTheCloudRefuses(t *testing.T) {
	e := newEnv(t, elbv2sim.Options{})
	c := elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(e.srv.URL()),
		Credentials: simCredentials})
	out, err := c.CreateTargetGroup(e.ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("shared"), Protocol: types.ProtocolEnumTcp,
		Port: aws.Int32(8080), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
	spec, err := ParseSpec([]byte(`{"arn": "` + arn + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	key := providers.BindingKey{Namespace: "shop", Service: "shared", Provider: "aws", Port: 80}
	g, err := e.p.Ensure(e.ctx, &providers.Binding{Key: key, Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Spec: spec})
	if err != nil || g.Owned {
		t.Fatalf("Ensure: %+v %v", g, err)
	}
	ours := ipTargets("10.0.1.%d", 3)
	theirs := ipTargets("10.0.2.%d", 1)
	if err := e.p.Apply(e.ctx, g, providers.Plan{Register: append(ours, theirs...)}); err != nil {
		t.Fatal(err)
	}
	// The record of ours also holds an address the group never took.
	keys := []providers.TargetKey{ipTargets("fd00::%d", 1)[0].Key()}
	for _, tg := range ours {
		keys = append(keys, tg.Key())
	}
	if err := e.p.Release(e.ctx, key, arn, keys); err != nil {
		t.Fatalf("Release: %v", err)
	}
	left := e.srv.Targets(arn)
	if len(left) != 1 || left[0].ID != theirs[0].IP.String() {
		t.Fatalf("left in the shared group: %+v", left)
	}
}

// The default VPC is 127.0.0.0/8 and 10.0.0.0/16; its subnets are
// 127.0.0.0/8 (zone a) and 10.0.0.0/17 (zone b).
func TestApplyDecidesAvailabilityZoneFromSubnets(t *testing.T) {
	e := newEnv(t, elbv2sim.Options{})
	target := func(ip, zone string) providers.Target {
		return providers.Target{IP: netip.MustParseAddr(ip), Port: 8080, Zone: zone}
	}
	inSubnet := target("10.0.1.1", "us-east-1a") // the node's zone is not sent: ELBv2 detects it
	noSubnet := target("10.0.200.1", "us-east-1b")
	outside := target("192.168.3.3", "us-east-1a")
	noZone := target("10.0.200.2", "")
	err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: []providers.Target{inSubnet, noSubnet, outside, noZone}})
	// An IP in the VPC, in no subnet, on a node of unknown zone is
	// refused alone.
	wantRefused(t, err, "ValidationError", noZone)
	zones := map[string]string{}
	for _, tg := range e.srv.Targets(e.g.Ref) {
		zones[tg.ID] = tg.AvailabilityZone
	}
	want := map[string]string{"10.0.1.1": "", "10.0.200.1": "us-east-1b", "192.168.3.3": "all"}
	if len(zones) != len(want) {
		t.Errorf("registered %v, want %v", zones, want)
	}
	for ip, z := range want {
		if got, ok := zones[ip]; !ok || got != z {
			t.Errorf("%s registered with zone %q, want %q", ip, got, z)
		}
	}
	if n := e.calls("DescribeSubnets"); n != 1 {
		t.Errorf("%d DescribeSubnets calls, want 1", n)
	}
	// The subnets are cached: the next registration reads them not again.
	if err := e.p.Apply(e.ctx, e.g, providers.Plan{Register: ipTargets("10.0.2.%d", 2)}); err != nil {
		t.Fatal(err)
	}
	if n := e.calls("DescribeSubnets"); n != 1 {
		t.Errorf("%d DescribeSubnets calls after a second registration, want 1", n)
	}
}
