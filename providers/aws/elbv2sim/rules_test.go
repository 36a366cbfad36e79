package elbv2sim_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

func TestDescribeRulesAnswersTheListenersDefaultRule(t *testing.T) {
	s := start(t, fast())
	c := client(s, 1)
	tg := createTG(t, c, elbv2.CreateTargetGroupInput{Name: aws.String(uniq("tg")), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80)})
	_, listenerArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, *tg.TargetGroupArn)

	out, err := c.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listenerArn)})
	if err != nil {
		t.Fatalf("DescribeRules: %v", err)
	}
	if len(out.Rules) != 1 {
		t.Fatalf("%d rules, want the default one", len(out.Rules))
	}
	r := out.Rules[0]
	if !aws.ToBool(r.IsDefault) || aws.ToString(r.Priority) != "default" || len(r.Actions) != 1 ||
		aws.ToString(r.Actions[0].TargetGroupArn) != *tg.TargetGroupArn {
		t.Errorf("rule %+v does not forward to %s by default", r, *tg.TargetGroupArn)
	}
	byArn, err := c.DescribeRules(ctx, &elbv2.DescribeRulesInput{RuleArns: []string{aws.ToString(r.RuleArn)}})
	if err != nil || len(byArn.Rules) != 1 {
		t.Fatalf("DescribeRules by ARN: %v %+v", err, byArn)
	}
	if _, err := c.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listenerArn + "0")}); err == nil {
		t.Error("DescribeRules of an unknown listener succeeded")
	}
}
