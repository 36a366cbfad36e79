package aws_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var ctx = context.Background()

const gate = string(targets.GateConditionType)

// createGroup makes a TCP target group of type ip with fast health checks
// and a short deregistration delay, as a user would before binding it.
func createGroup(t *testing.T, name string, mutate func(*elbv2.CreateTargetGroupInput)) string {
	t.Helper()
	in := &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(8080),
		VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: elbtypes.TargetTypeEnumIp,
		HealthCheckIntervalSeconds: aws.Int32(5), HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(2),
	}
	if mutate != nil {
		mutate(in)
	}
	c := e2eutil.ELBv2Client(sim)
	out, err := c.CreateTargetGroup(ctx, in)
	if err != nil {
		t.Fatalf("create target group %s: %v", name, err)
	}
	arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
	if _, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(arn),
		Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("1")}}}); err != nil {
		t.Fatal(err)
	}
	return arn
}

// groupWithNLB creates a group behind a network load balancer and returns
// the group ARN and the listener's address.
func groupWithNLB(t *testing.T, name string) (string, string) {
	t.Helper()
	arn := createGroup(t, name, nil)
	lbArn, addr, err := e2eutil.NLB(ctx, sim, name, arn)
	if err != nil {
		t.Fatalf("NLB: %v", err)
	}
	t.Cleanup(func() {
		_, _ = e2eutil.ELBv2Client(sim).DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lbArn)})
	})
	return arn, addr
}

func byName(spec string) map[string]string {
	return map[string]string{"podlb.io/aws-target-groups": `{"http": ` + spec + `}`}
}

// activeTargets lists "ip:port" of the group's targets that are not
// draining, as the emulator sees them, with their states.
func activeTargets(arn string) map[string]string {
	out := map[string]string{}
	for _, tg := range sim.Targets(arn) {
		if tg.State != "draining" {
			out[fmt.Sprintf("%s:%d", tg.ID, tg.Port)] = tg.State
		}
	}
	return out
}

// converged checks that the group's active targets are exactly the pods'
// IPs on port 8080, all in state (any non-draining state when empty), and,
// with checkGate, every pod's gate is True and the pod Ready.
func converged(t *testing.T, ns, app, arn string, want int, state string, checkGate bool) error {
	ps := k8s.LivePods(t, ns, app)
	if len(ps) != want {
		return fmt.Errorf("%d live pods, want %d", len(ps), want)
	}
	active := activeTargets(arn)
	var ips []string
	for _, p := range ps {
		if p.Status.PodIP == "" {
			return fmt.Errorf("pod %s has no IP yet", p.Name)
		}
		key := p.Status.PodIP + ":8080"
		ips = append(ips, key)
		if s, ok := active[key]; !ok || (state != "" && s != state) {
			return fmt.Errorf("pod %s target %s is %q, want %q", p.Name, key, s, state)
		}
		if checkGate {
			if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue {
				return fmt.Errorf("pod %s gate %+v", p.Name, g)
			}
			if !e2eutil.IsReady(&p) {
				return fmt.Errorf("pod %s not Ready", p.Name)
			}
		}
	}
	if len(active) != want {
		var got []string
		for k := range active {
			got = append(got, k)
		}
		sort.Strings(got)
		sort.Strings(ips)
		return fmt.Errorf("group has %d active targets %v, want the pods' %v", len(active), got, ips)
	}
	return nil
}

func uniqueName(ns, suffix string) string {
	n := ns
	if len(n) > 20 {
		n = n[len(n)-20:]
	}
	return strings.Trim(n, "-") + "-" + suffix
}

func callDelta(before, after map[string]elbv2sim.OpStats, op string) elbv2sim.OpStats {
	a, b := after[op], before[op]
	return elbv2sim.OpStats{Calls: a.Calls - b.Calls, Errors: a.Errors - b.Errors, Throttled: a.Throttled - b.Throttled,
		Targets: a.Targets - b.Targets, MaxTargets: a.MaxTargets}
}
