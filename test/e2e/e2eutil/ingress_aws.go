package e2eutil

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// ALBSubnets are subnets of the emulated default VPC, where the
// Application Load Balancers of Ingresses are placed (an ALB needs two
// zones). The first holds all of 10.0.0.0/8 in zone a, as the emulator's
// own subnet did before any were listed, so targets keep their zone; the
// others are small ones of a second CIDR.
var ALBSubnets = []elbv2sim.Subnet{
	{ID: "subnet-0e2e00000000000a1", AvailabilityZone: "us-east-1a", CIDR: "10.0.0.0/8", Tags: elbv2sim.LoadBalancerRoleTags()},
	{ID: "subnet-0e2e00000000000b1", AvailabilityZone: "us-east-1b", CIDR: "100.64.0.0/24", Tags: elbv2sim.LoadBalancerRoleTags()},
	{ID: "subnet-0e2e00000000000c1", AvailabilityZone: "us-east-1c", CIDR: "100.64.1.0/24", Tags: elbv2sim.LoadBalancerRoleTags()},
}

// ALBVPC is the emulated default VPC with ALBSubnets.
func ALBVPC() elbv2sim.VPC {
	return elbv2sim.VPC{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"10.0.0.0/8", "100.64.0.0/16"}, Subnets: ALBSubnets}
}

// AWSIngressCloud is what the Ingress scenarios need of AWS: Application
// Load Balancers of sim in every zone of ALBVPC.
func AWSIngressCloud(sim *elbv2sim.Server) IngressCloud {
	// The load balancer spans every zone of the VPC: an ALB sends
	// nothing to targets in zones it is not enabled in.
	var ids []string
	for _, s := range ALBSubnets {
		ids = append(ids, `"`+s.ID+`"`)
	}
	return IngressCloud{
		Name:        "aws",
		Annotations: map[string]string{loadbalancers.AWSAnnotation: `{"subnets": [` + strings.Join(ids, ", ") + `]}`},
		Address: func(cs *loadbalancers.CloudStatus) networkingv1.IngressLoadBalancerIngress {
			return networkingv1.IngressLoadBalancerIngress{Hostname: cs.Hostname}
		},
		DataPath: func(cs *loadbalancers.CloudStatus) string {
			return sim.LoadBalancerAddr(cs.Details["loadBalancer"], 80)
		},
		NoRoute: http.StatusNotFound,
		Leftovers: func(t *testing.T, cs *loadbalancers.CloudStatus) []string {
			c := emuclient.ELBv2Client(sim)
			var left []string
			arn := cs.Details["loadBalancer"]
			if _, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}}); !isNotFound[*elbtypes.LoadBalancerNotFoundException](err) {
				left = append(left, "load balancer "+arn)
			}
			for id, b := range cs.Backends {
				arn := b.Details["arn"]
				if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); arn == "" || !isNotFound[*elbtypes.TargetGroupNotFoundException](err) {
					left = append(left, "target group "+arn+" of "+id)
				}
			}
			return left
		},
	}
}

func isNotFound[E error](err error) bool {
	var target E
	return err != nil && errors.As(err, &target)
}
