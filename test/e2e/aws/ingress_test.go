package aws_test

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
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// An Ingress with two hosts and three paths over two gated Deployments,
// through an Application Load Balancer: routes, a rollout of both under
// load without a failed request, and a deletion that leaves nothing
// behind (e2eutil.IngressScenario).
func TestIngressAWSRoutesRollsAndDeletes(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	e2eutil.IngressScenario(t, k8s, ns, class, awsIngressCloud())
}

// awsIngressCloud is what the Ingress scenarios need of AWS: Application
// Load Balancers in every zone of the VPC.
func awsIngressCloud() e2eutil.IngressCloud {
	// The load balancer spans every zone of the VPC: an ALB sends
	// nothing to targets in zones it is not enabled in.
	var ids []string
	for _, s := range ingressSubnets {
		ids = append(ids, `"`+s.ID+`"`)
	}
	return e2eutil.IngressCloud{
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
			if _, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}}); !isAWSNotFound[*elbtypes.LoadBalancerNotFoundException](err) {
				left = append(left, "load balancer "+arn)
			}
			for id, b := range cs.Backends {
				arn := b.Details["arn"]
				if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); arn == "" || !isAWSNotFound[*elbtypes.TargetGroupNotFoundException](err) {
					left = append(left, "target group "+arn+" of "+id)
				}
			}
			return left
		},
	}
}

func isAWSNotFound[E error](err error) bool {
	var target E
	return err != nil && errors.As(err, &target)
}

// Edits under load: a path added, a path switched to a new backend and a
// path removed never fail a request to "/" nor to the switched path
// (e2eutil.IngressEditsScenario).
func TestIngressAWSEditsUnderLoad(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressEditsScenario(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), awsIngressCloud())
}
