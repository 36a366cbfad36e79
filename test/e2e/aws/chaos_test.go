package aws_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// chaosScenario is a gated Deployment of replicas behind a target group
// of its own behind an NLB, read from the emulator.
func chaosScenario(t *testing.T, app string, replicas int32) *e2eutil.ChaosScenario {
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
	}
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
