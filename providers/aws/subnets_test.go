package aws

import (
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// Without subnets in the annotation, a load balancer goes into one subnet
// per zone among those tagged for its scheme: this cluster's first, never
// one tagged for other clusters only.
func TestLoadBalancerSubnetsAreDiscoveredByTag(t *testing.T) {
	public := map[string]string{TagSubnetPublic: "1"}
	tagged := func(extra map[string]string) map[string]string {
		out := map[string]string{TagSubnetPublic: "1"}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	vpc := elbv2sim.VPC{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"127.0.0.0/8", "10.0.0.0/16"}, Subnets: []elbv2sim.Subnet{
		// Zone a: an untagged subnet, a public one, and one of this
		// cluster, which wins.
		{ID: "subnet-0000000000000000a", AvailabilityZone: "us-east-1a", CIDR: "127.0.0.0/10"},
		{ID: "subnet-0000000000000000b", AvailabilityZone: "us-east-1a", CIDR: "127.64.0.0/10", Tags: public},
		{ID: "subnet-0000000000000000c", AvailabilityZone: "us-east-1a", CIDR: "127.128.0.0/10", Tags: tagged(map[string]string{"kubernetes.io/cluster/test-cluster": "shared"})},
		// Zone b: one of another cluster only, and a public one.
		{ID: "subnet-0000000000000000d", AvailabilityZone: "us-east-1b", CIDR: "10.0.0.0/18", Tags: tagged(map[string]string{"kubernetes.io/cluster/other": "owned"})},
		{ID: "subnet-0000000000000000e", AvailabilityZone: "us-east-1b", CIDR: "10.0.64.0/18", Tags: public},
		// Zone c: internal only.
		{ID: "subnet-0000000000000000f", AvailabilityZone: "us-east-1c", CIDR: "10.0.128.0/18", Tags: map[string]string{TagSubnetInternal: "1"}},
	}}
	e := newALBEnv(t, elbv2sim.Options{VPCs: []elbv2sim.VPC{vpc}})
	e.ensure(shopBalancer(nil))
	out, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{BalancerName("test-cluster", shopKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := subnetIDs(out.LoadBalancers[0]); !slices.Equal(got, []string{"subnet-0000000000000000c", "subnet-0000000000000000e"}) {
		t.Errorf("internet-facing load balancer in %v, want this cluster's subnet in zone a and the public one in zone b", got)
	}

	// Internal: only zone c is tagged, and an ALB needs two zones.
	lb := shopBalancer(&LoadBalancerSpec{Scheme: "internal"})
	lb.Key.Name = "internal"
	if _, _, err := e.p.EnsureHTTP(e.ctx, lb); err == nil || !containsAll(err.Error(), "subnets", TagSubnetInternal, "1 Availability Zone") {
		t.Errorf("internal ALB with one tagged zone: %v", err)
	}
}

func subnetIDs(lb types.LoadBalancer) []string {
	var ids []string
	for _, az := range lb.AvailabilityZones {
		ids = append(ids, aws.ToString(az.SubnetId))
	}
	slices.Sort(ids)
	return ids
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
