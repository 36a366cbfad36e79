package aws_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// groupLeftovers lists the target groups of the backends in cs that
// still exist.
func groupLeftovers(cs *loadbalancers.CloudStatus) []string {
	c := emuclient.ELBv2Client(sim)
	var left []string
	for id, b := range cs.Backends {
		arn := b.Details["arn"]
		if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); arn == "" || !isAWSNotFound[*elbtypes.TargetGroupNotFoundException](err) {
			left = append(left, "target group "+arn+" of "+id)
		}
	}
	return left
}

func awsIngressCases() e2eutil.IngressCases {
	return e2eutil.IngressCases{IngressCloud: awsIngressCloud(), UserResource: usersListenerRule, BadAnnotations: awsBadAnnotations}
}

// usersListenerRule adds, through the SDK, a rule of the user's own to
// the HTTP listener podlb created: requests for user.example.com get a
// fixed answer. The load balancer is deleted when the test ends, as the
// user would once podlb left it to them.
func usersListenerRule(t *testing.T, cs *loadbalancers.CloudStatus) e2eutil.UserResource {
	t.Helper()
	c := emuclient.ELBv2Client(sim)
	albArn := cs.Details["loadBalancer"]
	ls, err := c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(albArn)})
	if err != nil {
		t.Fatal(err)
	}
	var listener string
	for _, l := range ls.Listeners {
		if aws.ToInt32(l.Port) == 80 {
			listener = aws.ToString(l.ListenerArn)
		}
	}
	if listener == "" {
		t.Fatalf("load balancer %s has no listener on port 80", albArn)
	}
	const body = "the user's own rule"
	out, err := c.CreateRule(ctx, &elbv2.CreateRuleInput{ListenerArn: aws.String(listener), Priority: aws.Int32(500),
		Conditions: []elbtypes.RuleCondition{{Field: aws.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{"user.example.com"}}}},
		Actions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{
			StatusCode: aws.String("200"), ContentType: aws.String("text/plain"), MessageBody: aws.String(body)}}}})
	if err != nil {
		t.Fatal(err)
	}
	ruleArn := aws.ToString(out.Rules[0].RuleArn)
	t.Cleanup(func() { _ = emuclient.DeleteLoadBalancer(ctx, sim, albArn) })
	return e2eutil.UserResource{
		Name: ruleArn,
		Check: func() error {
			if _, err := c.DescribeRules(ctx, &elbv2.DescribeRulesInput{RuleArns: []string{ruleArn}}); err != nil {
				return fmt.Errorf("rule %s: %w", ruleArn, err)
			}
			if got, code, err := e2eutil.GetThrough(sim.LoadBalancerAddr(albArn, 80), "user.example.com", "/"); err != nil || code != http.StatusOK || got != body {
				return fmt.Errorf("user.example.com answered %q (HTTP %d, %v), want %q", got, code, err, body)
			}
			return nil
		},
		Leftovers: func() []string {
			left := groupLeftovers(cs)
			rules, err := c.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listener)})
			if err != nil {
				return append(left, fmt.Sprintf("rules of listener %s: %v", listener, err))
			}
			for _, r := range rules.Rules {
				if !aws.ToBool(r.IsDefault) && aws.ToString(r.RuleArn) != ruleArn {
					left = append(left, "rule "+aws.ToString(r.RuleArn))
				}
			}
			return left
		},
	}
}

// awsBadAnnotations: certificates that are malformed or that ACM does not
// hold, and subnets of two VPCs.
func awsBadAnnotations(t *testing.T, _ map[string]string, _ *loadbalancers.CloudStatus) []e2eutil.BadIngress {
	t.Helper()
	cloud := awsIngressCloud()
	field := "metadata.annotations[" + loadbalancers.AWSAnnotation + "]"
	out, err := ec2.NewFromConfig(aws.Config{Region: emuclient.AWSRegion, Credentials: emuclient.AWSCredentials, BaseEndpoint: aws.String(sim.URL())}).
		DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{otherVPC}}}})
	if err != nil || len(out.Subnets) == 0 {
		t.Fatalf("subnets of %s: %v %v", otherVPC, out, err)
	}
	elsewhere := aws.ToString(out.Subnets[0].SubnetId)
	return []e2eutil.BadIngress{
		{Name: "unknown-cert", Annotations: cloud.AnnotationsWith(t, map[string]any{"certificateArns": []string{"arn:aws:acm:us-east-1:123456789012:certificate/0e2e0000-0000-4000-8000-000000000000"}}),
			Want: []string{field, "certificateArns", "CertificateNotFound"}},
		{Name: "malformed-cert", Annotations: cloud.AnnotationsWith(t, map[string]any{"certificateArns": []string{"my-cert"}}),
			Want: []string{field, "certificateArns[0]", "not an ACM certificate ARN"}},
		{Name: "other-vpc", Annotations: cloud.AnnotationsWith(t, map[string]any{"subnets": []string{ingressSubnets[0].ID, elsewhere}}),
			Want: []string{field, "subnets", "different VPCs"}},
	}
}

// The ungated control of TestIngressAWSRoutesRollsAndDeletes's rollout.
func TestIngressAWSUngatedRolloutFailsRequests(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressUngatedControl(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), awsIngressCloud())
}

// Two Ingresses of one group on one ALB, a conflicting third refused, and
// a user's listener rule that survives a member's deletion and is left,
// with the ALB, when the last member goes (e2eutil.IngressGroupCase).
func TestIngressAWSGroupSharesRefusesConflictsAndLeavesAUsersRule(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressGroupCase(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), awsIngressCases())
}

// Each bad input gets a Warning naming its field while a good Ingress
// keeps serving (e2eutil.IngressBadInputCase).
func TestIngressAWSBadInputWarnsAndDisturbsNoOne(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressBadInputCase(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), awsIngressCases())
}
