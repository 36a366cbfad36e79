package emuclient

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// AWSRegion is the region the clients sign for; the emulator accepts any.
const AWSRegion = "us-east-1"

// AWSCredentials are static credentials the emulator accepts.
var AWSCredentials = credentials.NewStaticCredentialsProvider("AKIDPODLBTEST", "secret", "")

// ELBv2Client is an unmodified SDK client pointed at the emulator.
func ELBv2Client(sim *elbv2sim.Server) *elbv2.Client {
	return elbv2.New(elbv2.Options{Region: AWSRegion, BaseEndpoint: aws.String(sim.URL()), Credentials: AWSCredentials})
}

// TargetGroup creates a TCP target group of type ip in the emulator's
// default VPC, with fast health checks (healthy after 2 passes) and a
// one-second deregistration delay, as a user would before binding it;
// mutate adjusts the request. It returns the group's ARN.
func TargetGroup(ctx context.Context, sim *elbv2sim.Server, name string, mutate func(*elbv2.CreateTargetGroupInput)) (string, error) {
	in := &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(8080),
		VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: elbtypes.TargetTypeEnumIp,
		HealthCheckIntervalSeconds: aws.Int32(5), HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(2),
	}
	if mutate != nil {
		mutate(in)
	}
	c := ELBv2Client(sim)
	out, err := c.CreateTargetGroup(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create target group %s: %w", name, err)
	}
	arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
	_, err = c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(arn),
		Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("1")}}})
	if err != nil {
		return "", fmt.Errorf("deregistration delay of %s: %w", name, err)
	}
	return arn, nil
}

// NLB creates a network load balancer with a TCP listener on port 80
// forwarding to the group, waits until it is active (it serves nothing
// while provisioning), and returns the load balancer's ARN and the
// loopback address its listener serves on.
func NLB(ctx context.Context, sim *elbv2sim.Server, name, targetGroupARN string) (lbArn, addr string, err error) {
	c := ELBv2Client(sim)
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(name), Type: elbtypes.LoadBalancerTypeEnumNetwork})
	if err != nil {
		return "", "", err
	}
	lbArn = aws.ToString(lb.LoadBalancers[0].LoadBalancerArn)
	l, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{
		LoadBalancerArn: aws.String(lbArn), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(targetGroupARN)}},
	})
	if err != nil {
		return lbArn, "", err
	}
	for {
		d, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{lbArn}})
		if err != nil {
			return lbArn, "", err
		}
		if d.LoadBalancers[0].State != nil && d.LoadBalancers[0].State.Code == elbtypes.LoadBalancerStateEnumActive {
			break
		}
		select {
		case <-ctx.Done():
			return lbArn, "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return lbArn, sim.ListenerAddr(aws.ToString(l.Listeners[0].ListenerArn)), nil
}

// DeleteLoadBalancer deletes a load balancer and with it its listeners.
func DeleteLoadBalancer(ctx context.Context, sim *elbv2sim.Server, lbArn string) error {
	_, err := ELBv2Client(sim).DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lbArn)})
	return err
}
