package aws_test

import (
	"slices"
	"testing"
	"time"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// A pod added while nothing else is pending is registered by the next
// call to its group, a RegisterTargets carrying it alone: no health read
// comes first (writes never wait for reads), and no second call is needed.
// Health reads follow the registration. The test asserts on the order and
// count of the group's calls, not on time.
func TestLoneChangeIsOneRegistrationBeforeAnyRead(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "lone"))
	k8s.Create(t, e2eutil.WebService(ns, "lone", map[string]string{
		"podlb.io/aws-target-groups": `{"80": {"arn": "` + arn + `"}}`,
	}))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "lone", 1, true))
	e2eutil.Eventually(t, 90*time.Second, "1 pod healthy and Ready", func() error { return converged(t, ns, "lone", arn, 1, "healthy", true) })
	before := map[string]bool{}
	for _, tg := range sim.Targets(arn) {
		before[tg.ID] = true
	}

	start := time.Now()
	k8s.Scale(t, ns, "lone", 2)
	e2eutil.Eventually(t, 90*time.Second, "2 pods healthy and Ready", func() error { return converged(t, ns, "lone", arn, 2, "healthy", true) })

	var calls []elbv2sim.Call
	for _, c := range sim.Calls(start) {
		if c.TargetGroupArn == arn {
			calls = append(calls, c)
		}
	}
	var ops []string
	for _, c := range calls {
		ops = append(ops, c.Op)
	}
	t.Logf("calls to the group since the scale-up: %v", ops)
	first := slices.IndexFunc(calls, func(c elbv2sim.Call) bool { return c.Op == "RegisterTargets" })
	if first < 0 {
		t.Fatal("no RegisterTargets call")
	}
	for _, c := range calls[:first] {
		if c.Op == "DescribeTargetHealth" {
			t.Errorf("a health read came before the registration: %v", ops)
			break
		}
	}
	registers := 0
	for _, c := range calls {
		switch c.Op {
		case "RegisterTargets":
			registers++
			for _, id := range c.Targets {
				if before[id] {
					t.Errorf("the registration carried the running pod's target %s again", id)
				}
			}
			if len(c.Targets) != 1 {
				t.Errorf("the registration carried %d targets, want the new pod's alone", len(c.Targets))
			}
		case "DeregisterTargets":
			t.Errorf("a scale-up deregistered %v", c.Targets)
		}
	}
	if registers != 1 {
		t.Errorf("%d RegisterTargets calls for one new pod, want 1: %v", registers, ops)
	}
	if !slices.Contains(ops[first:], "DescribeTargetHealth") {
		t.Errorf("no health read after the registration: %v", ops)
	}
}
