package gcp_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// chaosScenario is a gated Deployment of replicas whose NEGs podlb adds
// to a backend service of its own behind a TCP proxy, read from the
// emulator. The emulator keeps no call journal: detaches are seen by
// sampling the NEGs.
func chaosScenario(t *testing.T, app string, replicas int32) *e2eutil.ChaosScenario {
	t.Helper()
	ns := kube.Namespace(t)
	bs, addr := loadBalancer(t, resourceName(ns, app), slowHealthyCount)
	neg := negName(ns, app)
	return &e2eutil.ChaosScenario{
		T: t, Kube: k8s, Cluster: kube, Suite: ctrl, ClusterName: clusterName, NS: ns, App: app, Replicas: replicas,
		Cloud: e2eutil.ChaosCloud{
			Service: e2eutil.WebService(ns, app, inBackendService(bs)),
			Addr:    addr,
			Converged: func(want int) error {
				return converged(t, ns, app, neg, bs, want, computesim.StateHealthy, true)
			},
			HealthyAt: func(ip string) time.Time { return health(bs)[ip+":8080"].FirstHealthyAt },
			Targets: func() []string {
				eps, dups := negEndpoints(neg)
				out := dups
				for k := range eps {
					out = append(out, k)
				}
				return out
			},
			Gone: func() error {
				if negs := negsNamed(t, neg); len(negs) != 0 {
					return fmt.Errorf("NEGs left: %v", negs)
				}
				if b := backendNEGs(t, bs); len(b) != 0 {
					return fmt.Errorf("backends left in %s: %v", bs, b)
				}
				return nil
			},
			// The process sends the token held to the custom role, as
			// the suite's controller does.
			ControllerArgs: []string{"--providers=gcp", "--gcp-project=" + project, "--gcp-endpoint=" + sim.URL(),
				"--gcp-access-token-file=" + podlbTokenFile(t)},
		},
	}
}

// podlbTokenFile is a file holding e2eutil.PodlbGCPToken, for
// --gcp-access-token-file.
func podlbTokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(e2eutil.PodlbGCPToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The controller processes of the chaos tests are held to the custom role
// as the suite's controller is (TestPodlbIsHeldToTheCustomRole): with NEG
// creation taken out of the role, the process's inserts are refused; with
// the whole role back, it binds the Service.
func TestChaosControllerProcessIsHeldToTheCustomRole(t *testing.T) {
	cluster.Require(t)
	s := chaosScenario(t, "role", 1)
	s.Suite.HandOver(t)
	perms, err := e2eutil.GCPPermissions()
	if err != nil {
		t.Fatal(err)
	}
	role := perms[e2eutil.PodlbGCPToken]
	const create = "compute.networkEndpointGroups.create"
	sim.SetPermissions(e2eutil.PodlbGCPToken, slices.DeleteFunc(slices.Clone(role), func(p string) bool { return p == create }))
	// Registered after HandOver's, so it runs first: the suite's
	// controller comes back under the whole role.
	t.Cleanup(func() { sim.SetPermissions(e2eutil.PodlbGCPToken, role) })
	refused := func() int64 { return sim.Stats().Methods["networkEndpointGroups.insert"].Forbidden }
	before := refused()
	s.Create()
	s.Controller("podlb")
	e2eutil.Eventually(t, time.Minute, "the process's NEG inserts refused without "+create, func() error {
		if refused() == before {
			return fmt.Errorf("no insert refused")
		}
		return nil
	})
	sim.SetPermissions(e2eutil.PodlbGCPToken, role)
	e2eutil.Eventually(t, 2*time.Minute, "the Service bound under the whole role", func() error {
		return s.Cloud.Converged(int(s.Replicas))
	})
	s.CheckNoLeak()
}

// The controller, a process of its own, is killed with SIGKILL at random
// moments of one rolling update, each time once its successor leads and
// works: no request fails, no gate opens early, no endpoint still wanted
// is detached or attached twice, and the Service leaves nothing behind.
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

// Compute misbehaves during three rolling updates of one Deployment:
// every call answered 503 for a stretch mid-rollout (PODLB_CHAOS_OUTAGE),
// half of all calls answered rateLimitExceeded for a whole rollout, then
// 2 s of latency on every call. The rollouts take longer but fail no
// request, detach nothing still wanted, and the Service collects few
// Warnings.
func TestChaosCloudFaultsMidRollout(t *testing.T) {
	cluster.Require(t)
	outage := e2eutil.ChaosOutage(t)
	s := chaosScenario(t, "faults", 4)
	// Old pods must outlive the outage: nothing can be deregistered
	// while it lasts.
	s.PreStop = max(e2eutil.ChaosPreStop, outage+10*time.Second)
	t.Cleanup(func() { sim.SetErrorRate(0); sim.SetRateLimitRate(0); sim.SetLatency(0) })
	s.Create()
	s.Start()
	before := sim.Stats()

	s.Roll(4*time.Minute, func() {
		s.UpdatedReplicas(2)
		sim.SetErrorRate(1)
		t.Logf("every Compute call answered 503 for %v", outage)
		time.Sleep(outage)
		sim.SetErrorRate(0)
	})
	sim.SetRateLimitRate(0.5)
	t.Log("half of all Compute calls rate limited for a whole rollout")
	s.Roll(4*time.Minute, nil)
	sim.SetRateLimitRate(0)
	sim.SetLatency(2 * time.Second)
	t.Log("every Compute call takes 2 s for a whole rollout")
	s.Roll(4*time.Minute, nil)
	sim.SetLatency(0)

	var failed, limited int64
	after := sim.Stats()
	for _, m := range after.MethodNames() {
		d := callDelta(before, after, m)
		failed += d.Errors - d.RateLimited
		limited += d.RateLimited
	}
	t.Logf("%d calls answered 5xx, %d rate limited", failed, limited)
	if failed == 0 || limited == 0 {
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

// The lone zone's node, its zone's last, vanishes mid-rollout: its VM
// goes, taking its endpoints with it, then Kubernetes deletes the Node and
// its pods. The rollout completes in the other zones; the zone's NEG
// leaves the backend service and is deleted; no request fails, since the
// cloud stopped sending to the lost endpoints before their pods died.
// Under PODLB_CHAOS_LONG (make soak); the node comes back afterwards.
func TestChaosNodeLostMidRollout(t *testing.T) {
	cluster.Require(t)
	e2eutil.RequireChaosLong(t)
	var lone cluster.Node
	for _, n := range kube.Nodes {
		if n.Zone == loneZone {
			lone = n
		}
	}
	if _, ok := nodeZones(t)[lone.Name]; !ok {
		t.Fatalf("node %s in %s is already gone", lone.Name, loneZone)
	}
	t.Cleanup(func() {
		if err := sim.AddInstance(lone.Zone, lone.VMName, lone.HostIP, lone.PodCIDR); err != nil {
			t.Errorf("VM %s back: %v", lone.VMName, err)
		}
		if err := kube.RestoreNode(ctx, lone.Name); err != nil {
			t.Errorf("node %s back: %v", lone.Name, err)
		}
	})
	s := chaosScenario(t, "nodelost", 8)
	neg := negName(s.NS, s.App)
	s.Create()
	s.Start()
	s.Roll(4*time.Minute, func() {
		s.UpdatedReplicas(2)
		// Cordoned first, so that the pods excused below are all the
		// node will ever run.
		if _, err := kube.Client.CoreV1().Nodes().Patch(ctx, lone.Name, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		var lost []string
		for _, p := range k8s.LivePods(t, s.NS, s.App) {
			if p.Spec.NodeName == lone.Name {
				lost = append(lost, p.Name)
			}
		}
		s.History().MarkLost(lost...)
		sim.RemoveInstance(lone.Zone, lone.VMName)
		t.Logf("VM %s gone with pods %v", lone.VMName, lost)
		time.Sleep(2 * time.Second) // Kubernetes notices later than the cloud
		if err := kube.LoseNode(ctx, lone.Name); err != nil {
			t.Fatal(err)
		}
	})
	bs, rest := resourceName(s.NS, s.App), zonesWithNodes(t)
	e2eutil.Eventually(t, 60*time.Second, "the lost zone's NEG detached and deleted", func() error {
		if got := backendNEGs(t, bs); !slices.Equal(got, zonal(neg, rest)) {
			return fmt.Errorf("backends %v, want %v", got, zonal(neg, rest))
		}
		if _, ok := negsNamed(t, neg)[loneZone]; ok {
			return fmt.Errorf("NEG %s still exists in %s", neg, loneZone)
		}
		return nil
	})
	s.Check()
	s.CheckNoLeak()
}
