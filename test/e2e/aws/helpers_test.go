package aws_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var ctx = context.Background()

const gate = string(targets.GateConditionType)

// createGroup makes a target group as a user would before binding it.
func createGroup(t *testing.T, name string, mutate func(*elbv2.CreateTargetGroupInput)) string {
	t.Helper()
	arn, err := emuclient.TargetGroup(ctx, sim, name, mutate)
	if err != nil {
		t.Fatal(err)
	}
	return arn
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

// groupCalls counts the op calls into one target group since a time, and
// the targets they carried. Only that group's: other tests' Services,
// torn down in the background, deregister from their own groups meanwhile.
func groupCalls(arn, op string, since time.Time) (calls, targets int64) {
	for _, c := range sim.Calls(since) {
		if c.Op == op && c.TargetGroupArn == arn {
			calls++
			targets += int64(len(c.Targets))
		}
	}
	return calls, targets
}

// ownedGroupOf waits for podlb to create the Service's group and returns
// its ARN.
func ownedGroupOf(t *testing.T, ns, svc string) string {
	t.Helper()
	var arn string
	e2eutil.Eventually(t, 30*time.Second, svc+": group created", func() error {
		st := k8s.Status(t, ns, svc)
		if st == nil || st.Bindings["aws"]["80"] == nil || st.Bindings["aws"]["80"].Details["arn"] == "" {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, svc))
		}
		arn = st.Bindings["aws"]["80"].Details["arn"]
		return nil
	})
	return arn
}

// fillGroup registers n targets of someone else's, prefix.x.y:8080, into
// a group, as another tool sharing it would.
func fillGroup(t *testing.T, arn, prefix string, n int) {
	t.Helper()
	var fill []elbtypes.TargetDescription
	for i := 0; i < n; i++ {
		fill = append(fill, elbtypes.TargetDescription{Id: aws.String(fmt.Sprintf("%s.%d.%d", prefix, i/250, i%250+1)), Port: aws.Int32(8080)})
	}
	c := emuclient.ELBv2Client(sim)
	for i := 0; i < len(fill); i += 200 {
		if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: fill[i:min(i+200, len(fill))]}); err != nil {
			t.Fatal(err)
		}
	}
}
