package aws_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// Scenarios 1 and 2: a gated Deployment behind an annotated Service is
// registered, health-checked against the real backends and let through;
// its rolling update under steady traffic fails no request. The same
// rollout without the gate fails requests, which shows the measurement
// can fail.
func TestGatedRolloutLosesNoRequest(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	gatedArn, gatedAddr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "gated"))
	plainArn, plainAddr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "plain"))

	k8s.Create(t, e2eutil.WebService(ns, "gated", byName(`{"arn": "`+gatedArn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "gated", 10, true))
	k8s.Create(t, e2eutil.WebService(ns, "plain", byName(`{"arn": "`+plainArn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "plain", 10, false))

	e2eutil.Eventually(t, 90*time.Second, "10 gated pods healthy and Ready", func() error {
		return converged(t, ns, "gated", gatedArn, 10, "healthy", true)
	})
	e2eutil.Eventually(t, 90*time.Second, "10 ungated pods healthy", func() error {
		return converged(t, ns, "plain", plainArn, 10, "healthy", false)
	})
	for _, p := range k8s.LivePods(t, ns, "gated") {
		if g := e2eutil.GateOf(&p); g.Reason != readiness.ReasonReady {
			t.Errorf("pod %s gate reason %q", p.Name, g.Reason)
		}
	}
	// Status and metrics agree with the cloud.
	e2eutil.Eventually(t, 10*time.Second, "status annotation", func() error {
		st := k8s.Status(t, ns, "gated")
		if st == nil {
			return fmt.Errorf("no status")
		}
		b := st.Bindings["aws"]["80"]
		if b == nil || b.Desired != 10 || b.Registered != 10 || b.Healthy != 10 || b.Error != "" || b.Details["arn"] != gatedArn {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "gated"))
		}
		return nil
	})
	if got := gauge(t, "podlb_targets", map[string]string{"namespace": ns, "service": "gated", "state": "healthy"}); got != 10 {
		t.Errorf("podlb_targets{state=healthy} = %v, want 10", got)
	}

	gatedLoad := loadgen.Start(gatedAddr, 4, 25*time.Millisecond)
	plainLoad := loadgen.Start(plainAddr, 4, 25*time.Millisecond)
	time.Sleep(time.Second) // a baseline before the rollouts
	old := map[string]bool{}
	for _, p := range k8s.LivePods(t, ns, "gated") {
		old[p.Name] = true
	}
	k8s.Restart(t, ns, "plain")
	k8s.Restart(t, ns, "gated")
	k8s.WaitRollout(t, ns, "plain", 2*time.Minute)
	k8s.WaitRollout(t, ns, "gated", 3*time.Minute)
	e2eutil.Eventually(t, 60*time.Second, "new gated pods healthy", func() error {
		return converged(t, ns, "gated", gatedArn, 10, "healthy", true)
	})
	time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
	gated, plain := gatedLoad.Stop(), plainLoad.Stop()
	t.Logf("gated rollout: %d ok, %d failed; ungated: %d ok, %d failed", gated.OK, gated.Failed, plain.OK, plain.Failed)

	if gated.OK < 200 {
		t.Errorf("only %d requests got through the gated load balancer", gated.OK)
	}
	if gated.Failed != 0 {
		t.Errorf("gated rollout failed %d requests: %v", gated.Failed, gated.Errors)
	}
	if plain.Failed == 0 {
		t.Errorf("the ungated rollout failed no request (%d ok): the test cannot tell the gate's effect", plain.OK)
	}
	k8s.CheckRolloutSafetyWarnings(t, ns, map[string]bool{"plain": true, "gated": false})
	for _, p := range k8s.LivePods(t, ns, "gated") {
		if old[p.Name] {
			t.Errorf("old pod %s survived the rollout", p.Name)
		}
		// The gate turned True only once the load balancer reported the
		// target healthy (condition times have second precision).
		g := e2eutil.GateOf(&p)
		healthyAt := healthyAt(gatedArn, p.Status.PodIP)
		if healthyAt.IsZero() || g.LastTransitionTime.Add(time.Second).Before(healthyAt) {
			t.Errorf("pod %s gate True at %v but healthy in the group at %v", p.Name, g.LastTransitionTime, healthyAt)
		}
	}
}

func healthyAt(arn, ip string) time.Time {
	for _, tg := range sim.Targets(arn) {
		if tg.ID == ip && tg.State != "draining" {
			return tg.HealthyAt
		}
	}
	return time.Time{}
}

// gauge reads a metric from the controller's registry, summed over the
// series whose labels include want.
func gauge(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, want) {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// Scenario 3: targets follow 10 -> 100 -> 0 -> 10 pods, and bursts of pod
// readiness are batched: a handful of calls, not one per pod.
func TestScaleFollowsWithBatchedCalls(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "scale"))
	k8s.Create(t, e2eutil.WebService(ns, "scale", map[string]string{
		"podlb.io/aws-target-groups": `{"80": {"arn": "` + arn + `"}}`,
		targets.AnnotationReadiness:  "registered",
	}))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "scale", 10, true))
	e2eutil.Eventually(t, 60*time.Second, "10 registered", func() error { return converged(t, ns, "scale", arn, 10, "healthy", true) })

	phases := []struct {
		replicas int32
		changed  int64
		op       string
	}{{100, 90, "RegisterTargets"}, {0, 100, "DeregisterTargets"}, {10, 10, "RegisterTargets"}}
	for _, ph := range phases {
		start := time.Now()
		k8s.Scale(t, ns, "scale", ph.replicas)
		e2eutil.Eventually(t, 3*time.Minute, fmt.Sprintf("%d pods registered", ph.replicas), func() error {
			if ph.replicas == 0 {
				if a := activeTargets(arn); len(a) != 0 {
					return fmt.Errorf("%d targets left", len(a))
				}
				if n := len(k8s.Pods(t, ns, "scale")); n != 0 {
					return fmt.Errorf("%d pods left", n)
				}
				return nil
			}
			// registered mode: the gate follows registration, so Ready
			// pods are registered pods.
			return converged(t, ns, "scale", arn, int(ph.replicas), "", false)
		})
		took := time.Since(start)
		calls, carried := groupCalls(arn, ph.op, start)
		// The bound: at most one call per coalescing window (200 ms) in
		// which pods changed, each carrying up to 200 targets, plus one for
		// the window in flight. Pods of a burst turn ready over the time
		// the ReplicaSet controller, scheduler and kubelet take.
		bound := int64(took/(200*time.Millisecond)) + 1
		// And for the bursts, a call carries five targets on average,
		// unless the pods turned ready so far apart (a loaded machine
		// spreads a burst over seconds) that sending each change at once
		// and then one call per window makes more calls.
		burst, trickle := int64(ph.changed/5), 0
		if ph.op == "RegisterTargets" {
			// One target group, written in calls across its zones.
			ready := slices.Concat(slices.Collect(maps.Values(kube.Sim.ReadyTimes(ns, start)))...)
			trickle = e2eutil.CoalescedCalls(200*time.Millisecond, ready)
			burst = max(burst, int64(trickle))
		}
		t.Logf("scale to %d: %d %s calls for %d targets in %v; bound %d, for the burst %d (%d as the pods turned ready)",
			ph.replicas, calls, ph.op, carried, took.Round(100*time.Millisecond), bound, burst, trickle)
		if carried != ph.changed {
			t.Errorf("%s carried %d targets, want %d", ph.op, carried, ph.changed)
		}
		if calls > bound || (ph.changed >= 90 && calls > burst) {
			t.Errorf("%d %s calls for %d targets: not batched (bound %d, for the burst %d)", calls, ph.op, ph.changed, bound, burst)
		}
	}
}

// Scenario 4: a group podlb creates is tagged, used, and deleted when the
// annotation goes; nothing is left behind.
func TestManagedGroupLifecycle(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	spec := `{"create": {"protocol": "TCP", "healthCheck": {"intervalSeconds": 5, "healthyThreshold": 2}, "deregistrationDelaySeconds": 1, "tags": {"team": "shop"}}}`
	k8s.Create(t, e2eutil.WebService(ns, "managed", byName(spec)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "managed", 3, true))

	arn := ownedGroupOf(t, ns, "managed")
	if st := k8s.Status(t, ns, "managed"); !st.Bindings["aws"]["80"].Owned {
		t.Fatalf("not owned: %s", k8s.StatusJSON(t, ns, "managed"))
	}
	c := emuclient.ELBv2Client(sim)
	tags, err := c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{arn}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tg := range tags.TagDescriptions[0].Tags {
		got[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	want := map[string]string{"podlb.io/cluster": clusterName, "podlb.io/namespace": ns, "podlb.io/service": "managed", "podlb.io/port": "80", "team": "shop"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("tag %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}

	// No load balancer uses the group yet: targets are unused, gates stay
	// False saying so, and the Service gets a Warning.
	e2eutil.Eventually(t, 30*time.Second, "gates explain the unused group", func() error {
		ps := k8s.LivePods(t, ns, "managed")
		if len(ps) != 3 {
			return fmt.Errorf("%d pods", len(ps))
		}
		for _, p := range ps {
			g := e2eutil.GateOf(&p)
			if g == nil || g.Status != corev1.ConditionFalse || g.Reason != readiness.ReasonUnused || !strings.Contains(g.Message, "unused") {
				return fmt.Errorf("pod %s gate %+v", p.Name, g)
			}
		}
		if len(k8s.Warnings(t, ns, "managed", "used by no load balancer")) == 0 {
			return fmt.Errorf("no Warning about the unused group")
		}
		return nil
	})

	// A listener arrives: health checks start and the gates open.
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(uniqueName(ns, "lb")), Type: elbtypes.LoadBalancerTypeEnumNetwork})
	if err != nil {
		t.Fatal(err)
	}
	lbArn := lb.LoadBalancers[0].LoadBalancerArn
	if _, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lbArn, Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(arn)}}}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 90*time.Second, "pods healthy and Ready", func() error { return converged(t, ns, "managed", arn, 3, "healthy", true) })

	// The annotation goes: while the listener still uses the group podlb
	// cannot delete it and says why; once the listener is gone, it does.
	k8s.Annotate(t, ns, "managed", "podlb.io/aws-target-groups", "")
	e2eutil.Eventually(t, 30*time.Second, "Warning that the group is in use", func() error {
		if len(k8s.Warnings(t, ns, "managed", "still used by a load balancer")) == 0 {
			return fmt.Errorf("no Warning yet")
		}
		return nil
	})
	if _, err := c.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lbArn}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, "group deleted and Service released", func() error {
		if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); err == nil {
			return fmt.Errorf("group still exists")
		}
		return k8s.Released(ns, "managed")
	})
	// The gates, once True, stay True: the pods keep serving.
	for _, p := range k8s.LivePods(t, ns, "managed") {
		if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !e2eutil.IsReady(&p) {
			t.Errorf("pod %s gate %+v after the annotation went", p.Name, g)
		}
	}
}

// Scenario 5: a shared group holding someone else's targets; podlb never
// deregisters them, not on scale-down and not when its Service goes.
func TestSharedGroupKeepsForeignTargets(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "shared"))
	c := emuclient.ELBv2Client(sim)
	foreign := []elbtypes.TargetDescription{
		{Id: aws.String("10.7.7.7"), Port: aws.Int32(8080)},
		{Id: aws.String("10.7.7.8"), Port: aws.Int32(9090)},
	}
	if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: foreign}); err != nil {
		t.Fatal(err)
	}
	k8s.Create(t, e2eutil.WebService(ns, "shared", byName(`{"arn": "`+arn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "shared", 3, false))
	foreignPresent := func() error {
		a := activeTargets(arn)
		for _, f := range foreign {
			if _, ok := a[fmt.Sprintf("%s:%d", *f.Id, *f.Port)]; !ok {
				return fmt.Errorf("foreign target %s gone: %v", *f.Id, a)
			}
		}
		return nil
	}
	e2eutil.Eventually(t, 60*time.Second, "pods registered beside foreign targets", func() error {
		if err := foreignPresent(); err != nil {
			return err
		}
		n := 0
		for _, p := range k8s.LivePods(t, ns, "shared") {
			if _, ok := activeTargets(arn)[p.Status.PodIP+":8080"]; ok {
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d of 3 pods registered", n)
		}
		return nil
	})
	k8s.Scale(t, ns, "shared", 1)
	e2eutil.Eventually(t, 60*time.Second, "scaled down to 1 + foreign", func() error {
		if a := activeTargets(arn); len(a) != 3 {
			return fmt.Errorf("targets %v", a)
		}
		return foreignPresent()
	})
	if err := kube.Client.CoreV1().Services(ns).Delete(ctx, "shared", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, "Service gone, only foreign targets left", func() error {
		if _, err := kube.Client.CoreV1().Services(ns).Get(ctx, "shared", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("service still there: %v", err)
		}
		if a := activeTargets(arn); len(a) != 2 {
			return fmt.Errorf("targets %v", a)
		}
		return foreignPresent()
	})
	// The group itself was not podlb's: it still exists.
	if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); err != nil {
		t.Errorf("shared group deleted: %v", err)
	}
}

// Scenario 6: the controller restarts in the middle of a rollout; nothing
// is lost or registered twice, and gates converge.
func TestControllerRestartMidRollout(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, addr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "restart"))
	k8s.Create(t, e2eutil.WebService(ns, "restart", byName(`{"arn": "`+arn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "restart", 6, true))
	e2eutil.Eventually(t, 90*time.Second, "6 pods healthy", func() error { return converged(t, ns, "restart", arn, 6, "healthy", true) })

	load := loadgen.Start(addr, 4, 25*time.Millisecond)
	k8s.Restart(t, ns, "restart")
	e2eutil.Eventually(t, 60*time.Second, "rollout under way", func() error {
		d, err := kube.Client.AppsV1().Deployments(ns).Get(ctx, "restart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.UpdatedReplicas < 3 {
			return fmt.Errorf("%d updated", d.Status.UpdatedReplicas)
		}
		return nil
	})
	if err := ctrl.Stop(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	k8s.WaitRollout(t, ns, "restart", 3*time.Minute)
	e2eutil.Eventually(t, 60*time.Second, "converged after restart", func() error { return converged(t, ns, "restart", arn, 6, "healthy", true) })
	time.Sleep(2 * time.Second)
	res := load.Stop()
	t.Logf("rollout across a restart: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 {
		t.Errorf("%d requests failed: %v", res.Failed, res.Errors)
	}
	// Nothing registered twice: the emulator holds each target once.
	seen := map[string]int{}
	for _, tg := range sim.Targets(arn) {
		seen[fmt.Sprintf("%s:%d", tg.ID, tg.Port)]++
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("target %s held %d times", k, n)
		}
	}
}

// Scenario 7: a fifth of all ELBv2 calls answered Throttling; everything
// converges and no Warning floods the Service.
func TestThrottlingConvergesQuietly(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "throttle"))
	before := sim.Stats()
	sim.SetThrottleRate(0.2)
	defer sim.SetThrottleRate(0)
	k8s.Create(t, e2eutil.WebService(ns, "throttle", byName(`{"arn": "`+arn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "throttle", 10, true))
	e2eutil.Eventually(t, 2*time.Minute, "10 pods healthy under throttling", func() error {
		return converged(t, ns, "throttle", arn, 10, "healthy", true)
	})
	k8s.Restart(t, ns, "throttle")
	k8s.WaitRollout(t, ns, "throttle", 3*time.Minute)
	e2eutil.Eventually(t, 2*time.Minute, "rolled out under throttling", func() error {
		return converged(t, ns, "throttle", arn, 10, "healthy", true)
	})
	var throttled int64
	for op, st := range sim.Stats() {
		throttled += st.Throttled - before[op].Throttled
	}
	if throttled == 0 {
		t.Fatal("no call was throttled: the test injected nothing")
	}
	ws := k8s.AllWarnings(t, ns, "throttle")
	t.Logf("%d calls throttled; %d Warning events", throttled, len(ws))
	for _, w := range ws {
		t.Errorf("Warning under throttling: %s: %s (x%d)", w.Reason, w.Message, w.Count)
	}
}

// Scenario 8: bad input. Each problem gets a Warning naming it, in the
// status too, without touching a healthy Service beside it.
func TestBadInputIsNamedAndIsolated(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	goodArn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "good"))
	instanceArn := createGroup(t, uniqueName(ns, "inst"), func(in *elbv2.CreateTargetGroupInput) { in.TargetType = elbtypes.TargetTypeEnumInstance })
	otherVPCArn := createGroup(t, uniqueName(ns, "vpc"), func(in *elbv2.CreateTargetGroupInput) { in.VpcId = aws.String(otherVPC) })
	udpArn := createGroup(t, uniqueName(ns, "udp"), func(in *elbv2.CreateTargetGroupInput) { in.Protocol = elbtypes.ProtocolEnumUdp })
	fullArn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "full"))
	// Fill the group to its limit with someone else's targets.
	fillGroup(t, fullArn, "10.6", 1000)

	cases := []struct {
		name, annotation, want string
	}{
		{"json", `{"http": {"arn": `, "malformed JSON"},
		{"port", `{"8081": {"name": "x"}}`, "no port 8081"},
		{"portname", `{"https": {"name": "x"}}`, `no port named "https"`},
		{"arn", `{"http": {"arn": "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/x"}}`, "not a target group ARN"},
		{"notfound", `{"http": {"name": "does-not-exist-anywhere"}}`, "not found"},
		{"instance", `{"http": {"arn": "` + instanceArn + `"}}`, "target type instance"},
		{"vpc", `{"http": {"arn": "` + otherVPCArn + `"}}`, "is in " + otherVPC},
		{"udp", `{"http": {"arn": "` + udpArn + `"}}`, "cannot serve Service port 80/TCP"},
		{"full", `{"http": {"arn": "` + fullArn + `"}}`, "TooManyTargets"},
	}
	k8s.Create(t, e2eutil.WebService(ns, "good", byName(`{"arn": "`+goodArn+`"}`)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "good", 2, true))
	for _, tc := range cases {
		k8s.Create(t, e2eutil.WebService(ns, "bad-"+tc.name, map[string]string{"podlb.io/aws-target-groups": tc.annotation}))
		k8s.Create(t, e2eutil.RollingDeployment(ns, "bad-"+tc.name, 2, true))
	}
	e2eutil.Eventually(t, 90*time.Second, "good Service converges beside the bad ones", func() error {
		return converged(t, ns, "good", goodArn, 2, "healthy", true)
	})
	bad := make([]e2eutil.BadInput, len(cases))
	for i, tc := range cases {
		bad[i] = e2eutil.BadInput{Service: "bad-" + tc.name, Want: tc.want}
	}
	k8s.ExpectProblemsNamed(t, ns, bad)
	if a := activeTargets(fullArn); len(a) != 1000 {
		t.Errorf("full group holds %d targets, want the 1000 foreign ones", len(a))
	}
}
