package aws

import (
	"context"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
)

// Subnet tags that mark where load balancers go, as Kubernetes' AWS cloud
// provider and the AWS Load Balancer Controller read them: a role tag per
// scheme (value 1 or empty), and a cluster tag naming the clusters that
// use the subnet (value owned or shared).
const (
	TagSubnetPublic   = "kubernetes.io/role/elb"
	TagSubnetInternal = "kubernetes.io/role/internal-elb"
	tagSubnetCluster  = "kubernetes.io/cluster/"
)

// discoverSubnets picks, for a load balancer of scheme without subnets in
// its annotation, one subnet per Availability Zone of the cluster's VPC
// among those tagged with the scheme's role. A subnet tagged for other
// clusters only is skipped; one tagged for this cluster is preferred, then
// the lowest ID, so the choice is stable. Fewer than need zones is an
// error naming the subnets field.
func (p *Provider) discoverSubnets(ctx context.Context, scheme types.LoadBalancerSchemeEnum, need int) ([]string, error) {
	role := TagSubnetPublic
	if scheme == types.LoadBalancerSchemeEnumInternal {
		role = TagSubnetInternal
	}
	if p.opts.VPCID == "" {
		return nil, providers.Errorf(providers.Invalid, "subnets", "list the load balancer's subnets: without the cluster's VPC (--aws-vpc-id) podlb cannot discover subnets tagged %s", role)
	}
	found, err := p.describeSubnets(ctx,
		ec2types.Filter{Name: aws.String("vpc-id"), Values: []string{p.opts.VPCID}},
		ec2types.Filter{Name: aws.String("tag:" + role), Values: []string{"1", ""}})
	if err != nil {
		return nil, err
	}
	ids := pickSubnets(found, p.opts.Cluster)
	if len(ids) < need {
		return nil, providers.Errorf(providers.Invalid, "subnets", "found subnets tagged %s=1 in %d Availability Zone(s) of %s, and this load balancer needs %d: tag subnets in more zones or list them", role, len(ids), p.opts.VPCID, need)
	}
	return ids, nil
}

// pickSubnets keeps one subnet per zone, preferring those tagged for
// cluster, and skips those tagged for other clusters only.
func pickSubnets(subnets []ec2types.Subnet, cluster string) []string {
	type pick struct {
		id   string
		ours bool
	}
	byZone := map[string]pick{}
	for _, sn := range subnets {
		ours, others := false, false
		for _, t := range sn.Tags {
			if k := aws.ToString(t.Key); strings.HasPrefix(k, tagSubnetCluster) {
				if strings.TrimPrefix(k, tagSubnetCluster) == cluster {
					ours = true
				} else {
					others = true
				}
			}
		}
		if others && !ours {
			continue
		}
		c := pick{id: aws.ToString(sn.SubnetId), ours: ours}
		zone := aws.ToString(sn.AvailabilityZone)
		if have, ok := byZone[zone]; !ok || (c.ours && !have.ours) || (c.ours == have.ours && c.id < have.id) {
			byZone[zone] = c
		}
	}
	var ids []string
	for _, c := range byZone {
		ids = append(ids, c.id)
	}
	slices.Sort(ids)
	return ids
}
