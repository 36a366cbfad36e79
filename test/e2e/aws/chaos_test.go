package aws_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// chaosScenario is a gated Deployment of replicas behind a target group
// of its own behind an NLB, read from the emulator.
func chaosScenario(t *testing.T, app string, replicas int32) *e2eutil.ChaosScenario {
	t.Helper()
	s, _ := chaosScenarioIn(t, app, replicas)
	return s
}

// chaosScenarioIn is chaosScenario and the ARN of its target group.
func chaosScenarioIn(t *testing.T, app string, replicas int32) (*e2eutil.ChaosScenario, string) {
	t.Helper()
	ns := kube.Namespace(t)
	arn, addr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, app))
	return &e2eutil.ChaosScenario{
		T: t, Kube: k8s, Cluster: kube, Suite: ctrl, ClusterName: clusterName, NS: ns, App: app, Replicas: replicas,
		Cloud: e2eutil.ChaosCloud{
			Service:   e2eutil.WebService(ns, app, byName(`{"arn": "`+arn+`"}`)),
			Addr:      addr,
			Converged: func(want int) error { return converged(t, ns, app, arn, want, "healthy", true) },
			HealthyAt: func(ip string) time.Time { return healthyAt(arn, ip) },
			Targets: func() []string {
				var out []string
				for _, tg := range sim.Targets(arn) {
					if tg.State != "draining" {
						out = append(out, fmt.Sprintf("%s:%d", tg.ID, tg.Port))
					}
				}
				return out
			},
			Removals: func(since time.Time) []e2eutil.Removal {
				var out []e2eutil.Removal
				for _, c := range sim.Calls(since) {
					if c.Op != "DeregisterTargets" || c.TargetGroupArn != arn {
						continue
					}
					for _, id := range c.Targets {
						out = append(out, e2eutil.Removal{Target: id + ":8080", At: c.At})
					}
				}
				return out
			},
			Gone: func() error {
				if a := activeTargets(arn); len(a) != 0 {
					return fmt.Errorf("targets left in the group: %v", a)
				}
				return nil
			},
			ControllerArgs: []string{"--providers=aws", "--aws-region=" + emuclient.AWSRegion, "--aws-vpc-id=" + elbv2sim.DefaultVPCID,
				"--aws-endpoint-elbv2=" + sim.URL(), "--aws-endpoint-ec2=" + sim.URL()},
			// The process signs with the key held to the shipped IAM
			// policy, as the suite's controller does. Nothing may leave
			// loopback: no instance metadata look-ups.
			ControllerEnv: []string{"AWS_ACCESS_KEY_ID=" + e2eutil.PodlbAWSKey, "AWS_SECRET_ACCESS_KEY=secret", "AWS_EC2_METADATA_DISABLED=true"},
		},
	}, arn
}

// The controller, a process of its own, is killed with SIGKILL at random
// moments of one rolling update, each time once its successor leads and
// works: no request fails, no gate opens early, no target still wanted is
// deregistered or held twice, and the Service leaves nothing behind.
// PODLB_CHAOS_SEED repeats a run, PODLB_CHAOS_KILLS sets the kills.
func TestChaosControllerKilledMidRollout(t *testing.T) {
	cluster.Require(t)
	rng := e2eutil.ChaosSeed(t)
	chaosScenario(t, "killed", 6).KilledMidRollout(rng, e2eutil.ChaosKills(t, 2))
}

// Two controller processes share the leader lease; the leader is killed
// with SIGKILL mid-rollout and the other takes over. Same promises as
// above; the time without a leader is logged. Under PODLB_CHAOS_LONG
// (make soak).
func TestChaosLeaderKilledMidRollout(t *testing.T) {
	cluster.Require(t)
	e2eutil.RequireChaosLong(t)
	rng := e2eutil.ChaosSeed(t)
	chaosScenario(t, "leader", 6).LeaderKilledMidRollout(rng)
}

// ELBv2 misbehaves during three rolling updates of one Deployment: every
// call answered 503 for a stretch mid-rollout (PODLB_CHAOS_OUTAGE), half
// of all calls throttled for a whole rollout, then 2 s of latency on every
// call. The rollouts take longer but fail no request, deregister nothing
// still wanted, and the Service collects few Warnings.
func TestChaosCloudFaultsMidRollout(t *testing.T) {
	cluster.Require(t)
	outage := e2eutil.ChaosOutage(t)
	s := chaosScenario(t, "faults", 4)
	// Old pods must outlive the outage: nothing can be deregistered
	// while it lasts.
	s.PreStop = max(e2eutil.ChaosPreStop, outage+10*time.Second)
	t.Cleanup(func() { sim.SetErrorRate(0); sim.SetThrottleRate(0); sim.SetLatency(0, 0) })
	s.Create()
	s.Start()
	before := sim.Stats()

	s.Roll(4*time.Minute, func() {
		s.UpdatedReplicas(2)
		sim.SetErrorRate(1)
		t.Logf("every ELBv2 call answered 503 for %v", outage)
		time.Sleep(outage)
		sim.SetErrorRate(0)
	})
	sim.SetThrottleRate(0.5)
	t.Log("half of all ELBv2 calls throttled for a whole rollout")
	s.Roll(4*time.Minute, nil)
	sim.SetThrottleRate(0)
	sim.SetLatency(2*time.Second, 0)
	t.Log("every ELBv2 call takes 2 s for a whole rollout")
	s.Roll(4*time.Minute, nil)
	sim.SetLatency(0, 0)

	var injected, throttled int64
	for op, st := range sim.Stats() {
		injected += st.Injected - before[op].Injected
		throttled += st.Throttled - before[op].Throttled
	}
	t.Logf("%d calls answered 503, %d throttled", injected, throttled)
	if injected == 0 || throttled == 0 {
		t.Fatal("the faults reached no call: the test injected nothing")
	}
	s.Check()
	// A persistent outage is one SyncFailed; nothing was refused.
	k8s.WarningsFew(t, s.NS, s.App, 2, "SyncFailed")
	s.CheckNoLeak()
}

// kube-apiserver is killed mid-rollout and back after 3 s: the controller
// process recovers without a restart of its own, with the same promises.
// Under PODLB_CHAOS_LONG (make soak).
func TestChaosAPIServerRestartedMidRollout(t *testing.T) {
	cluster.Require(t)
	e2eutil.RequireChaosLong(t)
	chaosScenario(t, "apiserver", 6).ControlPlaneRestartedMidRollout("kube-apiserver", 3*time.Second)
}

// etcd is killed mid-rollout and back after 3 s: kube-apiserver answers
// errors meanwhile and its watches stall; the controller process recovers
// without a restart of its own, with the same promises. Under
// PODLB_CHAOS_LONG (make soak).
func TestChaosEtcdRestartedMidRollout(t *testing.T) {
	cluster.Require(t)
	e2eutil.RequireChaosLong(t)
	chaosScenario(t, "etcd", 6).ControlPlaneRestartedMidRollout("etcd", 3*time.Second)
}

// nodeDetectionSlack is the part of the bound on failed requests that the
// health checks' timing does not give: the connection an NLB handed a
// target just before the checks gave up, failing back to its client.
const nodeDetectionSlack = 250 * time.Millisecond

// A node's machine dies mid-rollout, taking its pods with it; Kubernetes
// notices seconds later, deletes the Node and its pods, and the rollout
// completes on the other nodes. Until the NLB's health checks find the
// dead pods' IP targets unhealthy it keeps sending them new connections,
// which no controller can prevent: requests may fail, but only from the
// death until the group's detection bound, and only on connections to
// the lost pods. No gate opens early, no target still wanted is removed
// or held twice, the lost targets are deregistered once their pods are
// deleted, and the Service leaves nothing behind. Under PODLB_CHAOS_LONG
// (make soak); the node comes back afterwards.
func TestChaosNodeLostMidRollout(t *testing.T) {
	cluster.Require(t)
	e2eutil.RequireChaosLong(t)
	s, arn := chaosScenarioIn(t, "nodelost", 8)
	timing, ok := sim.CheckTiming(arn)
	if !ok {
		t.Fatalf("no target group %s", arn)
	}
	// The NLB stops sending a dead target new connections once
	// UnhealthyThreshold checks in a row have failed: the first starts
	// within an interval of the death, the last UnhealthyThreshold-1
	// intervals later, and may run its timeout. One more interval covers
	// checks that slip on a busy machine.
	bound := time.Duration(timing.UnhealthyThreshold+1)*timing.Interval + timing.Timeout + nodeDetectionSlack
	// Kubernetes notices a dead node after the node lifecycle
	// controller's --node-monitor-grace-period, 50 s by default, long
	// after the health checks have. Shortened to keep the test quick, yet
	// past the bound, so that, as in a real cluster, the health checks
	// and not podlb stop the traffic to the dead pods.
	notice := max(3*time.Second, 2*bound)
	t.Logf("health checks every %v (timeout %v), unhealthy after %d: failures allowed for %v after the death; Kubernetes notices after %v",
		timing.Interval, timing.Timeout, timing.UnhealthyThreshold, bound, notice)

	s.Create()
	s.Start()
	var died time.Time
	lost := map[string]bool{} // the lost pods' targets, "ip:port"
	s.Roll(4*time.Minute, func() {
		s.UpdatedReplicas(2)
		node := busiestNode(t, s.NS, s.App)
		t.Cleanup(func() {
			// RestoreNode registers the Node anew: a test stopped before
			// Kubernetes noticed loses it first.
			if _, err := kube.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil {
				if err := kube.LoseNode(ctx, node); err != nil {
					t.Errorf("losing node %s: %v", node, err)
				}
			}
			if err := kube.RestoreNode(ctx, node); err != nil {
				t.Errorf("node %s back: %v", node, err)
			}
		})
		// Cordoned first, so that the pods excused below are all the
		// node will ever run.
		if _, err := kube.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		markLost := func() {
			// Terminating pods too: they die with the machine.
			for _, p := range k8s.Pods(t, s.NS, s.App) {
				if p.Spec.NodeName == node && p.Status.PodIP != "" && !lost[p.Status.PodIP+":8080"] {
					lost[p.Status.PodIP+":8080"] = true
					s.History().MarkLost(p.Name)
				}
			}
		}
		markLost()
		died = time.Now()
		if err := kube.KillNode(node); err != nil {
			t.Fatal(err)
		}
		s.ExcuseFailures(died, died.Add(bound), "node "+node+" died")
		markLost() // a pod bound in the instant of the cordon
		t.Logf("node %s died at %s with targets %v", node, died.Format("15:04:05.000"), slices.Sorted(maps.Keys(lost)))

		time.Sleep(notice)
		checkFailedOnLostPods(t, s.Traffic(), lost, died)
		if err := kube.LoseNode(ctx, node); err != nil {
			t.Fatal(err)
		}
		t.Logf("Kubernetes noticed %v after the death", time.Since(died).Round(10*time.Millisecond))
	})
	e2eutil.Eventually(t, 60*time.Second, "the lost pods' targets deregistered", func() error {
		for _, tg := range sim.Targets(arn) {
			if k := fmt.Sprintf("%s:%d", tg.ID, tg.Port); lost[k] && tg.State != "draining" {
				return fmt.Errorf("lost pod's target %s still %s", k, tg.State)
			}
		}
		return nil
	})
	s.Check()
	res := s.Traffic()
	t.Logf("%d requests failed, the last %v after the death (bound %v)", res.Failed, res.LastFailure.Sub(died).Round(time.Millisecond), bound)
	s.CheckNoLeak()
}

// busiestNode is the node running the most Ready pods of the app.
func busiestNode(t *testing.T, ns, app string) string {
	t.Helper()
	n := map[string]int{}
	best := ""
	for _, p := range k8s.LivePods(t, ns, app) {
		if e2eutil.IsReady(&p) {
			n[p.Spec.NodeName]++
			if best == "" || n[p.Spec.NodeName] > n[best] {
				best = p.Spec.NodeName
			}
		}
	}
	if best == "" {
		t.Fatal("no Ready pod of " + app)
	}
	return best
}

// checkFailedOnLostPods checks that requests failed once the node died,
// and that each failure the clients kept (the first ten) went through a
// connection the NLB forwarded to a lost pod's target.
func checkFailedOnLostPods(t *testing.T, res loadgen.Result, lost map[string]bool, died time.Time) {
	t.Helper()
	if res.Failed == 0 {
		t.Error("no request failed: the dead node's pods got no traffic, and the test proved nothing")
	}
	onLost := 0
	for _, f := range res.Failures {
		rec, ok := sim.Connection(f.Local)
		switch {
		case !ok:
			t.Errorf("request failed at %s (%s) from %q: the emulator has no record of its connection", f.At.Format("15:04:05.000"), f.Err, f.Local)
		case rec.Accepted.After(f.At) || !lost[rec.Target]:
			t.Errorf("request failed at %s (%s), +%v after the death, not on a lost pod: %s", f.At.Format("15:04:05.000"), f.Err, f.At.Sub(died).Round(time.Millisecond), rec)
		default:
			onLost++
		}
	}
	t.Logf("%d requests failed so far; %d of the %d kept went to a lost pod", res.Failed, onLost, len(res.Failures))
}
