package aws

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// Expired groups are renewed twenty per DescribeTargetGroups and
// DescribeTags call, not one call each, and a group that changed meanwhile
// is resolved in full: its new health check settings are seen, and tags
// that now give it to another Service refuse it.
func TestExpiredGroupsAreRenewedInBatchedCalls(t *testing.T) {
	const n = 25
	const ttl = 5 * time.Minute
	clock := clocktesting.NewFakeClock(time.Now())
	srv, ctx := simServer(t)
	p := simProvider(t, ctx, srv, Options{Limits: providers.Unthrottled(DefaultLimits()), MaxAttempts: maxAttempts, GroupCacheTTL: ttl, clock: clock})
	bindings := make([]*providers.Binding, n)
	for i := range bindings {
		name := fmt.Sprintf("web-%02d", i)
		arn, err := emuclient.TargetGroup(ctx, srv, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A listener makes the group serve: only such groups are cached.
		if _, _, err := emuclient.NLB(ctx, srv, name, arn); err != nil {
			t.Fatal(err)
		}
		spec, err := ParseSpec([]byte(`{"arn": "` + arn + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		bindings[i] = &providers.Binding{
			Key:     providers.BindingKey{Namespace: "shop", Service: name, Provider: "aws", Port: 80},
			Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Mode: providers.ReadyWhenHealthy, Spec: spec,
		}
	}
	groups := map[providers.BindingKey]*providers.Group{}
	for _, b := range bindings {
		g, err := p.Ensure(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		groups[b.Key] = g
	}

	// While cached, two groups change: one's health check runs slower,
	// the other is tagged as another Service's.
	elb := emuclient.ELBv2Client(srv)
	slower, taken := bindings[7], bindings[19]
	if _, err := elb.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: aws.String(groups[slower.Key].Ref), HealthCheckIntervalSeconds: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	other := providers.BindingKey{Namespace: "shop", Service: "checkout", Provider: "aws", Port: 80}
	var tags []types.Tag
	for k, v := range ownerTags("test-cluster", other) {
		tags = append(tags, types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	if _, err := elb.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{groups[taken.Key].Ref}, Tags: tags}); err != nil {
		t.Fatal(err)
	}

	clock.Step(ttl + ttl/5 + time.Second) // every entry has expired; none expires again
	before := srv.Stats()
	for _, b := range bindings {
		g, err := p.Ensure(ctx, b)
		switch b {
		case taken:
			if providers.ClassOf(err) != providers.Invalid || !strings.Contains(fmt.Sprint(err), "shop/checkout") {
				t.Errorf("%s: got %v, want it refused as shop/checkout's", b.Key.Service, err)
			}
		case slower:
			if err != nil || g.JudgeDelay != 20*time.Second || g.FailDelay != 20*time.Second {
				t.Errorf("%s: got %v, group %+v; want the new 10 s interval seen (2 x 10 s to judge either way)", b.Key.Service, err, g)
			}
		default:
			if err != nil || g.Ref != groups[b.Key].Ref {
				t.Errorf("%s: got %v, %v", b.Key.Service, g, err)
			}
		}
	}
	after := srv.Stats()
	// Two renewals (20 groups, then the other 5), and the two changed
	// groups resolved in full, one call of each kind apiece.
	for _, op := range []string{"DescribeTargetGroups", "DescribeTags"} {
		if got := after[op].Calls - before[op].Calls; got != 4 {
			t.Errorf("%s: %d calls for %d expired groups, want 4 (2 renewals + 2 changed groups)", op, got, n)
		}
	}
}

// The VPC's networks, which a registration needs to choose each target's
// AvailabilityZone, are read when a group in the VPC is resolved, once for
// all its groups: a rollout starting in many groups at once neither waits
// for them nor queues on DescribeVpcs' small budget.
func TestGroupsOfOneVPCShareOneNetworkRead(t *testing.T) {
	const n = 8
	srv, ctx := simServer(t)
	p := simProvider(t, ctx, srv, Options{Limits: DefaultLimits(), MaxAttempts: maxAttempts})
	var groups []*providers.Group
	for i := range n {
		name := fmt.Sprintf("web-%02d", i)
		arn, err := emuclient.TargetGroup(ctx, srv, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := ParseSpec([]byte(`{"arn": "` + arn + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		g, err := p.Ensure(ctx, &providers.Binding{
			Key:     providers.BindingKey{Namespace: "shop", Service: name, Provider: "aws", Port: 80},
			Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Mode: providers.ReadyWhenHealthy, Spec: spec,
		})
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, g)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats()["DescribeSubnets"].Calls == 0 || srv.Stats()["DescribeVpcs"].Calls == 0 {
		if time.Now().After(deadline) {
			t.Fatal("resolving the groups did not read the VPC's networks")
		}
		time.Sleep(20 * time.Millisecond)
	}

	errs := make(chan error, n)
	for i, g := range groups {
		go func() {
			errs <- p.Apply(ctx, g, providers.Plan{Register: []providers.Target{{IP: netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}), Port: 8080}}})
		}()
	}
	for range groups {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	st := srv.Stats()
	if st["RegisterTargets"].Calls != n {
		t.Errorf("%d RegisterTargets calls, want %d", st["RegisterTargets"].Calls, n)
	}
	for _, op := range []string{"DescribeVpcs", "DescribeSubnets"} {
		if got := st[op].Calls; got != 1 {
			t.Errorf("%s: %d calls for %d groups of one VPC, want 1", op, got, n)
		}
	}
}

// A throttled call is retried by podlb with a token of its own for each
// attempt, never by the SDK behind the buckets' back: every call the
// account sees took a token.
func TestThrottledCallsRetryWithATokenEach(t *testing.T) {
	const tokens = 2
	srv, ctx := simServer(t)
	p := simProvider(t, ctx, srv, Options{Limits: map[string]providers.Limit{"DescribeTargetGroups": {QPS: 0.001, Burst: tokens}}, MaxAttempts: 5})
	srv.SetThrottleRate(1)
	callCtx, stop := context.WithTimeout(ctx, 3*time.Second)
	defer stop()
	err := p.calls.Call(callCtx, "DescribeTargetGroups", func(ctx context.Context) error {
		_, err := p.elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
		return err
	})
	if err == nil {
		t.Fatal("a call throttled every time succeeded")
	}
	// Two attempts spent the two tokens; the third waited for a token
	// that came too late for the call's deadline.
	st := srv.Stats()["DescribeTargetGroups"]
	if st.Calls != tokens || st.Throttled != tokens {
		t.Errorf("the account saw %d calls (%d throttled) for %d tokens, want %d", st.Calls, st.Throttled, tokens, tokens)
	}

	// Throttling that passes: the retry succeeds.
	srv.SetThrottleRate(0)
	p = simProvider(t, ctx, srv, Options{MaxAttempts: 5})
	srv.InjectError("DescribeTargetGroups", "Throttling", 1)
	before := srv.Stats()["DescribeTargetGroups"]
	err = p.calls.Call(ctx, "DescribeTargetGroups", func(ctx context.Context) error {
		_, err := p.elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{"no-such-group"}})
		return err
	})
	if providers.ClassOf(err) != providers.NotFound {
		t.Errorf("after one throttled attempt: %v, want the group not found", err)
	}
	if got := srv.Stats()["DescribeTargetGroups"].Calls - before.Calls; got != 2 {
		t.Errorf("%d attempts, want 2 (one throttled, one answered)", got)
	}
}

// simServer starts an emulator for one test, with a context that ends
// with it.
func simServer(t *testing.T) (*elbv2sim.Server, context.Context) {
	t.Helper()
	srv, err := elbv2sim.Start(elbv2sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return srv, ctx
}

// simProvider is a provider of the emulator's account, with o's limits,
// attempts and cache settings.
func simProvider(t *testing.T, ctx context.Context, srv *elbv2sim.Server, o Options) *Provider {
	t.Helper()
	o.Cluster, o.Region, o.VPCID = "test-cluster", "us-east-1", elbv2sim.DefaultVPCID
	o.ELBv2Endpoint, o.EC2Endpoint, o.Credentials = srv.URL(), srv.URL(), simCredentials
	p, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
