package e2eutil

import (
	"fmt"
	"math/rand"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/test/cluster"
)

// ChaosCloud is how a chaos scenario reads one cloud's emulator.
type ChaosCloud struct {
	// Service is the Service the scenario creates, annotated for the
	// cloud; Addr the load balancer's address in front of it.
	Service *corev1.Service
	Addr    string
	// Converged is nil once the cloud's active targets are exactly the
	// app's want live pods, each once and healthy, and every gate True.
	Converged func(want int) error
	// HealthyAt is when the cloud first judged the target of ip healthy.
	HealthyAt func(ip string) time.Time
	// Targets lists the "ip:port" of the active targets, one entry per
	// copy the cloud holds.
	Targets func() []string
	// Removals are the targets taken out since a time, from the
	// emulator's call journal; nil samples Targets instead.
	Removals func(since time.Time) []Removal
	// Gone is nil once nothing of the Service is left in the cloud.
	Gone func() error
	// ControllerArgs and ControllerEnv run a controller process for the
	// cloud against the emulator.
	ControllerArgs, ControllerEnv []string
}

// ChaosScenario is one gated Deployment rolled under steady traffic
// while a test breaks things; it checks that no request failed (outside
// a window the test excused, see ExcuseFailures), no gate opened before
// the cloud judged the pod healthy, no target still wanted was removed
// or held twice, and that the Service leaves nothing behind.
type ChaosScenario struct {
	T           *testing.T
	Kube        Kube
	Cluster     *cluster.Cluster
	ClusterName string
	NS, App     string
	Replicas    int32
	Cloud       ChaosCloud
	// Suite is the suite's in-process controller, stopped while a
	// scenario runs controller processes.
	Suite *Restartable
	// PreStop is the pods' preStop sleep, ChaosPreStop by default; a
	// cloud outage longer than that needs more, as podlb cannot
	// deregister anything while it lasts.
	PreStop time.Duration

	logDir  string
	history *PodHistory
	sampler *TargetSampler
	load    *loadgen.Load
	began   time.Time
	excused *failureWindow
}

// failureWindow is a time in which requests may fail, and why.
type failureWindow struct {
	from, to time.Time
	why      string
}

// Create creates the Service and Deployment and starts recording the
// pods; it does not wait.
func (s *ChaosScenario) Create() {
	s.T.Helper()
	if s.PreStop == 0 {
		s.PreStop = ChaosPreStop
	}
	s.Kube.Create(s.T, s.Cloud.Service, ChaosDeployment(s.NS, s.App, s.Replicas, s.PreStop))
	s.history = WatchPods(s.T, s.Kube.Client, s.NS, s.App, s.Cloud.HealthyAt)
}

// Controller starts a controller process named name. The logs of all of
// them are kept when the test fails.
func (s *ChaosScenario) Controller(name string) *ControllerProcess {
	s.T.Helper()
	if s.logDir == "" {
		dir, err := os.MkdirTemp("", "podlb-chaos-")
		if err != nil {
			s.T.Fatal(err)
		}
		s.logDir = dir
		s.T.Cleanup(func() {
			if s.T.Failed() {
				s.T.Logf("controller logs kept in %s", dir)
				return
			}
			_ = os.RemoveAll(dir)
		})
	}
	args := ChaosControllerArgs(s.Cluster.Kubeconfig, s.ClusterName, s.Cloud.ControllerArgs...)
	return StartControllerProcess(s.T, s.Cluster.Dir, s.logDir, name, args, s.Cloud.ControllerEnv)
}

// Start waits until the pods serve through the load balancer, then starts
// the traffic and the bookkeeping.
func (s *ChaosScenario) Start() {
	s.T.Helper()
	Eventually(s.T, 2*time.Minute, fmt.Sprintf("%d pods healthy and Ready", s.Replicas), func() error {
		return s.Cloud.Converged(int(s.Replicas))
	})
	s.began = time.Now()
	if s.Cloud.Removals == nil {
		s.sampler = SampleTargets(s.Cloud.Targets)
	}
	s.load = loadgen.Start(s.Cloud.Addr, 4, 25*time.Millisecond)
	time.Sleep(time.Second) // a baseline before the rollout
}

// Roll restarts the Deployment, runs chaos while it rolls, and waits until
// the rollout is complete and the cloud serves exactly the new pods.
func (s *ChaosScenario) Roll(timeout time.Duration, chaos func()) {
	s.T.Helper()
	old := map[string]bool{}
	for _, p := range s.Kube.LivePods(s.T, s.NS, s.App) {
		old[p.Name] = true
	}
	began := time.Now()
	s.Kube.Restart(s.T, s.NS, s.App)
	if chaos != nil {
		chaos()
	}
	s.Kube.WaitRollout(s.T, s.NS, s.App, timeout)
	Eventually(s.T, 2*time.Minute, "the cloud serves the new pods", func() error {
		for _, p := range s.Kube.LivePods(s.T, s.NS, s.App) {
			if old[p.Name] {
				return fmt.Errorf("old pod %s still there", p.Name)
			}
		}
		return s.Cloud.Converged(int(s.Replicas))
	})
	s.T.Logf("rollout took %v", time.Since(began).Round(100*time.Millisecond))
}

// UpdatedReplicas waits until at least n pods of the new revision exist:
// the rollout is under way.
func (s *ChaosScenario) UpdatedReplicas(n int32) {
	s.T.Helper()
	Eventually(s.T, 2*time.Minute, fmt.Sprintf("%d updated replicas", n), func() error {
		d, err := s.Kube.Client.AppsV1().Deployments(s.NS).Get(ctx, s.App, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.UpdatedReplicas < n {
			return fmt.Errorf("%d updated", d.Status.UpdatedReplicas)
		}
		return nil
	})
}

// Check stops the traffic and the bookkeeping and asserts what a chaos
// scenario promises.
func (s *ChaosScenario) Check() {
	s.T.Helper()
	// Old pods finish their preStop while traffic flows: a target left
	// registered for a terminated pod would fail requests now.
	time.Sleep(s.PreStop + 2*time.Second)
	res := s.load.Stop()
	s.history.Stop()
	s.T.Logf("traffic: %d ok, %d failed", res.OK, res.Failed)
	if res.OK < 200 {
		s.T.Errorf("only %d requests got through the load balancer", res.OK)
	}
	s.checkFailures(res)
	if n := s.history.CheckGates(s.T); n < int(2*s.Replicas) {
		s.T.Errorf("saw %d gates open, want at least %d: the watch missed some", n, 2*s.Replicas)
	}
	var removals []Removal
	var dups []string
	if s.sampler != nil {
		removals, dups = s.sampler.Stop()
	} else {
		removals = s.Cloud.Removals(s.began)
		seen := map[string]bool{}
		for _, k := range s.Cloud.Targets() {
			if seen[k] {
				dups = append(dups, k)
			}
			seen[k] = true
		}
	}
	if n := s.history.CheckRemovals(s.T, 8080, removals); n < int(s.Replicas) {
		s.T.Errorf("saw %d targets removed, want at least the %d old pods'", n, s.Replicas)
	}
	if len(dups) != 0 {
		s.T.Errorf("targets held twice: %v", dups)
	}
	if err := s.Cloud.Converged(int(s.Replicas)); err != nil {
		s.T.Errorf("after the rollout: %v", err)
	}
}

// ExcuseFailures lets requests fail between from and to, for a test whose
// chaos no controller can hide from clients (a machine that dies with its
// pods); Check still fails on any failure outside the window. One window
// per scenario.
func (s *ChaosScenario) ExcuseFailures(from, to time.Time, why string) {
	s.T.Helper()
	if s.excused != nil {
		s.T.Fatalf("failures already excused (%s); one window per scenario", s.excused.why)
	}
	s.excused = &failureWindow{from: from, to: to, why: why}
}

// checkFailures fails the test for any failed request, unless every one
// fell within the excused window; those are counted and logged.
func (s *ChaosScenario) checkFailures(res loadgen.Result) {
	s.T.Helper()
	if res.Failed == 0 {
		return
	}
	w := s.excused
	if w == nil {
		s.T.Errorf("%d requests failed: %v", res.Failed, res.Errors)
		return
	}
	stamp := func(t time.Time) string { return t.Format("15:04:05.000") }
	if res.FirstFailure.Before(w.from) || res.LastFailure.After(w.to) {
		s.T.Errorf("%d requests failed from %s to %s, beyond the window excused from %s to %s (%s): %v",
			res.Failed, stamp(res.FirstFailure), stamp(res.LastFailure), stamp(w.from), stamp(w.to), w.why, res.Errors)
		return
	}
	s.T.Logf("%d requests failed, all excused (%s): from %v to %v into the window of %v",
		res.Failed, w.why, res.FirstFailure.Sub(w.from).Round(time.Millisecond),
		res.LastFailure.Sub(w.from).Round(time.Millisecond), w.to.Sub(w.from).Round(time.Millisecond))
}

// Traffic is what the scenario's clients have seen so far, all of it once
// Check has stopped them.
func (s *ChaosScenario) Traffic() loadgen.Result { return s.load.Snapshot() }

// CheckNoLeak deletes the Service and waits until podlb has released it
// and nothing of it is left in the cloud.
func (s *ChaosScenario) CheckNoLeak() {
	s.T.Helper()
	name := s.Cloud.Service.Name
	if err := s.Kube.Client.CoreV1().Services(s.NS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		s.T.Fatal(err)
	}
	Eventually(s.T, 90*time.Second, name+" released, nothing left in the cloud", func() error {
		// The finalizer goes last, once podlb has let go of everything.
		if _, err := s.Kube.Client.CoreV1().Services(s.NS).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service %s still there (%v)", name, err)
		}
		cms, err := s.Kube.Client.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, cm := range cms.Items {
			if cm.Annotations["podlb.io/namespace"] == s.NS && cm.Annotations["podlb.io/service"] == name {
				return fmt.Errorf("ledger %s left", cm.Name)
			}
		}
		return s.Cloud.Gone()
	})
}

// KilledMidRollout runs the controller as a process and kills it with
// SIGKILL kills times in one rollout, at random moments (rng), each time
// once its successor leads.
func (s *ChaosScenario) KilledMidRollout(rng *rand.Rand, kills int) {
	s.T.Helper()
	s.Suite.HandOver(s.T)
	s.Create()
	c := s.Controller("podlb-0")
	s.Start()
	s.Roll(time.Duration(kills+2)*time.Minute, func() {
		for i := 1; i <= kills; i++ {
			c = KillWhenLeading(s.T, rng, c, func() *ControllerProcess { return s.Controller(fmt.Sprintf("podlb-%d", i)) })
		}
	})
	s.Check()
	s.CheckNoLeak()
}

// LeaderKilledMidRollout runs two controller processes sharing the lease
// and kills the leader with SIGKILL at a random moment (rng) once two pods
// of the new revision exist.
func (s *ChaosScenario) LeaderKilledMidRollout(rng *rand.Rand) {
	s.T.Helper()
	s.Suite.HandOver(s.T)
	s.Create()
	procs := []*ControllerProcess{s.Controller("podlb-a"), s.Controller("podlb-b")}
	s.Start()
	s.Roll(4*time.Minute, func() {
		s.UpdatedReplicas(2)
		time.Sleep(time.Duration(rng.Intn(4000)) * time.Millisecond)
		KillLeader(s.T, s.Kube.Client, procs)
	})
	s.Check()
	s.CheckNoLeak()
}

// ControlPlaneRestartedMidRollout runs the controller as a process and,
// once two pods of the new revision exist, kills a control-plane component
// ("kube-apiserver" or "etcd") and starts it again after down. The
// controller must ride it out without a restart of its own.
func (s *ChaosScenario) ControlPlaneRestartedMidRollout(component string, down time.Duration) {
	s.T.Helper()
	s.Suite.HandOver(s.T)
	s.Create()
	c := s.Controller("podlb")
	s.Start()
	s.Roll(4*time.Minute, func() {
		s.UpdatedReplicas(2)
		began := time.Now()
		if err := s.Cluster.Restart(ctx, component, down); err != nil {
			s.T.Fatal(err)
		}
		s.T.Logf("%s killed and serving again after %v", component, time.Since(began).Round(10*time.Millisecond))
	})
	s.Check()
	if !c.Running() {
		s.T.Error(c.Failure("exited during the rollout"))
	}
	s.CheckNoLeak()
}

// History is the record of the scenario's pods.
func (s *ChaosScenario) History() *PodHistory { return s.history }
