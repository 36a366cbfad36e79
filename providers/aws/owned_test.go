package aws_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

var creds = credentials.NewStaticCredentialsProvider("AKIDPODLBTEST", "secret", "")

func startSim(t *testing.T) (*elbv2sim.Server, *elbv2.Client, *awsprovider.Provider) {
	t.Helper()
	sim, err := elbv2sim.Start(elbv2sim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	c := elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(sim.URL()), Credentials: creds})
	p, err := awsprovider.New(context.Background(), awsprovider.Options{Cluster: "c1", Region: "us-east-1", VPCID: elbv2sim.DefaultVPCID,
		ELBv2Endpoint: sim.URL(), EC2Endpoint: sim.URL(), Credentials: creds,
		Limits: map[string]providers.Limit{"*": {QPS: 1000, Burst: 1000}, "DescribeTags": {QPS: 1000, Burst: 1000}, "DescribeTargetGroups": {QPS: 1000, Burst: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	return sim, c, p
}

func key(svc string) providers.BindingKey {
	return providers.BindingKey{Namespace: "shop", Service: svc, Provider: "aws", Port: 80}
}

// tagged creates a group tagged as podlb's for cluster and key; no tags
// when cluster is empty.
func tagged(t *testing.T, c *elbv2.Client, name, cluster string, k providers.BindingKey) string {
	t.Helper()
	in := &elbv2.CreateTargetGroupInput{Name: aws.String(name), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80),
		VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp}
	if cluster != "" {
		for tk, v := range map[string]string{awsprovider.TagCluster: cluster, awsprovider.TagNamespace: k.Namespace, awsprovider.TagService: k.Service, awsprovider.TagPort: fmt.Sprint(k.Port)} {
			in.Tags = append(in.Tags, types.Tag{Key: aws.String(tk), Value: aws.String(v)})
		}
	}
	out, err := c.CreateTargetGroup(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.TargetGroups[0].TargetGroupArn)
}

func binding(t *testing.T, k providers.BindingKey, spec string) *providers.Binding {
	t.Helper()
	s, err := awsprovider.ParseSpec([]byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	return &providers.Binding{Key: k, Cluster: "c1", Protocol: "TCP", TargetPort: 8080, Spec: s}
}

func TestOwnedGroupsListsThisClustersTaggedGroupsInChunks(t *testing.T) {
	_, c, p := startSim(t)
	want := map[string]string{}
	for i := 0; i < 45; i++ {
		k := key(fmt.Sprintf("svc-%d", i))
		want[tagged(t, c, fmt.Sprintf("g-%d", i), "c1", k)] = k.String()
	}
	tagged(t, c, "other-cluster", "c2", key("svc-0"))
	tagged(t, c, "untagged", "", key("svc-0"))

	got, err := p.OwnedGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, g := range got {
		have[g.Ref] = g.Key.String()
	}
	if len(have) != len(want) {
		t.Fatalf("%d owned groups, want %d", len(have), len(want))
	}
	for arn, k := range want {
		if have[arn] != k {
			t.Errorf("%s: got %q, want %q", arn, have[arn], k)
		}
	}
}

func TestEnsureRefusesAGroupAnotherServiceOwns(t *testing.T) {
	_, c, p := startSim(t)
	ctx := context.Background()
	arn := tagged(t, c, "owned-by-web", "c1", key("web"))
	for field, spec := range map[string]string{"arn": `{"arn": "` + arn + `"}`, "name": `{"name": "owned-by-web"}`} {
		_, err := p.Ensure(ctx, binding(t, key("intruder"), spec))
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != providers.Invalid || pe.Field != field || !strings.Contains(err.Error(), "cluster c1, Service shop/web port 80") {
			t.Errorf("%s: Ensure = %v, want Invalid on %q naming the owner", field, err, field)
		}
	}
	// Its own Service may name it; another cluster's group is refused too.
	if _, err := p.Ensure(ctx, binding(t, key("web"), `{"arn": "`+arn+`"}`)); err != nil {
		t.Errorf("the owner naming its group: %v", err)
	}
	other := tagged(t, c, "owned-elsewhere", "c2", key("web"))
	if _, err := p.Ensure(ctx, binding(t, key("web"), `{"arn": "`+other+`"}`)); err == nil || !strings.Contains(err.Error(), "cluster c2") {
		t.Errorf("another cluster's group: %v", err)
	}
}

func TestReleaseNamesTheListenerThatBlocksDeletion(t *testing.T) {
	_, c, p := startSim(t)
	ctx := context.Background()
	arn := tagged(t, c, "held", "c1", key("held"))
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("front"), Type: types.LoadBalancerTypeEnumNetwork})
	if err != nil {
		t.Fatal(err)
	}
	lbArn := aws.ToString(lb.LoadBalancers[0].LoadBalancerArn)
	if _, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(lbArn), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(443),
		DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: aws.String(arn)}}}); err != nil {
		t.Fatal(err)
	}
	err = p.Release(ctx, key("held"), arn, nil)
	lbID := lbArn[strings.Index(lbArn, ":loadbalancer/")+len(":loadbalancer/"):]
	for _, want := range []string{"still used by a load balancer", lbID + " listener TCP:443 default action", "remove the listener's forward to targetgroup/held/"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Release = %v, want it to say %q", err, want)
		}
	}
	if providers.ClassOf(err) != providers.Invalid {
		t.Errorf("class %s, want invalid", providers.ClassOf(err))
	}
	if _, err := c.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lbArn)}); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(ctx, key("held"), arn, nil); err != nil {
		t.Errorf("Release after the listener went: %v", err)
	}
	if groups, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil || len(groups.TargetGroups) != 0 {
		t.Errorf("groups left: %v %+v", err, groups)
	}
}
