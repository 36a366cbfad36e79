package e2eutil

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/podlb/podlb/internal/childproc"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
)

// Chaos tests (TestChaos…) roll gated Deployments under traffic while
// something breaks: the controller is killed, the leader goes, the cloud
// fails. What they share lives here; each cloud's suite supplies how to
// read its emulator.

// ChaosSeed seeds a chaos test: PODLB_CHAOS_SEED if set, else the clock.
// The seed is logged so a failing run can be repeated.
func ChaosSeed(t testing.TB) *rand.Rand {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("PODLB_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("PODLB_CHAOS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("chaos seed %d (PODLB_CHAOS_SEED=%d repeats this run)", seed, seed)
	return rand.New(rand.NewSource(seed))
}

// ChaosKills is how many times a chaos test kills the controller in one
// rollout: PODLB_CHAOS_KILLS, else def (make soak sets more).
func ChaosKills(t testing.TB, def int) int {
	t.Helper()
	s := os.Getenv("PODLB_CHAOS_KILLS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("PODLB_CHAOS_KILLS=%q: want a positive number", s)
	}
	return n
}

// ChaosPreStop is the preStop sleep of chaos Deployments. Terminating
// pods are deregistered by the controller; while it is down (a killed
// leader's lease runs 15 s before anyone else may act) nobody does, so
// pods must keep serving until a successor has taken over and
// deregistered them, as the guide tells users to size preStop.
const ChaosPreStop = 25 * time.Second

// ChaosDeployment is a gated Deployment rolling two pods at a time without
// going below its replicas, whose old pods keep serving preStop after
// termination starts.
func ChaosDeployment(ns, name string, replicas int32, preStop time.Duration) *appsv1.Deployment {
	surge, unavailable := intstr.FromInt32(2), intstr.FromInt32(0)
	return cluster.NewDeployment(ns, name, cluster.DeploymentOptions{
		Replicas: replicas, PreStopSleep: preStop, TerminationGracePeriod: preStop + 10*time.Second,
		MaxSurge: &surge, MaxUnavailable: &unavailable, Gates: []string{string(targets.GateConditionType)},
	})
}

// controllerBinary builds podlb-controller from this tree once per test
// binary into dir (the cluster's directory, removed with it), so a kill
// hits the code under test and never a stale bin/.
var controllerBinary = struct {
	once sync.Once
	path string
	err  error
}{}

func buildController(dir string) (string, error) {
	b := &controllerBinary
	b.once.Do(func() {
		b.path = filepath.Join(dir, "podlb-controller")
		cmd := exec.Command("go", "build", "-o", b.path, "github.com/podlb/podlb/cmd/podlb-controller")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building podlb-controller: %v\n%s", err, out)
		}
	})
	return b.path, b.err
}

// ControllerProcess is podlb-controller running as a process of its own,
// so that a test can SIGKILL it.
type ControllerProcess struct {
	*childproc.Process
	Name string
}

// ChaosControllerArgs are the flags of a controller process against the
// local cluster with the suites' fast timing; cloud adds the provider's.
func ChaosControllerArgs(kubeconfig, clusterName string, cloud ...string) []string {
	return append([]string{
		"--kubeconfig=" + kubeconfig, "--cluster-name=" + clusterName, "--namespace=" + Namespace,
		"--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--health-poll-interval=" + FastTiming.Poll.String(), "--resync-period=" + FastTiming.Resync.String(),
		"--coalesce-window=" + FastTiming.Coalesce.String(), "--max-backoff=" + FastTiming.MaxBackoff.String(),
	}, cloud...)
}

// StartControllerProcess runs podlb-controller, built into buildDir, with
// args; its log is name.log in logDir. The process is stopped when the
// test ends, if it still runs.
func StartControllerProcess(t testing.TB, buildDir, logDir, name string, args, env []string) *ControllerProcess {
	t.Helper()
	bin, err := buildController(buildDir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := childproc.Start(name, bin, logDir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	cp := &ControllerProcess{Process: p, Name: name}
	t.Cleanup(func() { cp.Process.Stop(10 * time.Second) })
	return cp
}

// Kill sends SIGKILL, with no chance to release the lease or finish a
// call, and waits until the process is gone.
func (p *ControllerProcess) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.Exited()
}

// Leads reports whether the process has acquired the leader lease (its
// log says so).
func (p *ControllerProcess) Leads() bool {
	b, _ := os.ReadFile(p.LogPath)
	return strings.Contains(strings.ToLower(string(b)), "successfully acquired lease")
}

// LeaseHolder is the holder of podlb's leader lease and since when, zero
// while nobody holds it.
func LeaseHolder(c kubernetes.Interface, id string) (string, time.Time) {
	l, err := c.CoordinationV1().Leases(Namespace).Get(ctx, id, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" || l.Spec.AcquireTime == nil {
		return "", time.Time{}
	}
	return *l.Spec.HolderIdentity, l.Spec.AcquireTime.Time
}

// PodRecord is what a test saw of one pod: its address, and when its gate
// first turned True and its termination began (zero if not seen).
type PodRecord struct {
	Name, UID, IP string
	// Seen is when the pod was first seen with its IP.
	Seen time.Time
	// GateAt is the gate condition's transition time (second precision)
	// when first seen True; HealthyAt what the emulator said of the pod's
	// target at that moment (zero: not healthy).
	GateAt, HealthyAt time.Time
	GateSeen          bool
	// Terminating is when the pod was first seen being deleted.
	Terminating time.Time
}

// PodHistory records every pod of an app as it lives, from an informer,
// so it survives API server restarts.
type PodHistory struct {
	stop chan struct{}
	// healthyAt asks the emulator when the target of ip turned healthy.
	healthyAt func(ip string) time.Time

	mu   sync.Mutex
	pods map[string]*PodRecord // by UID
}

// WatchPods starts recording the pods labelled app=<app>; healthyAt tells
// when the cloud first judged a pod's target healthy (zero if not).
func WatchPods(t testing.TB, c kubernetes.Interface, ns, app string, healthyAt func(ip string) time.Time) *PodHistory {
	t.Helper()
	h := &PodHistory{stop: make(chan struct{}), healthyAt: healthyAt, pods: map[string]*PodRecord{}}
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "app=" + app }))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { h.observe(obj) },
		UpdateFunc: func(_, obj any) { h.observe(obj) },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.Start(h.stop)
	if !cache.WaitForCacheSync(h.stop, inf.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
	t.Cleanup(h.Stop)
	return h
}

func (h *PodHistory) observe(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Status.PodIP == "" {
		return
	}
	now := time.Now()
	h.mu.Lock()
	r := h.pods[string(p.UID)]
	if r == nil {
		r = &PodRecord{Name: p.Name, UID: string(p.UID), IP: p.Status.PodIP, Seen: now}
		h.pods[string(p.UID)] = r
	}
	opened := false
	if g := GateOf(p); g != nil && g.Status == corev1.ConditionTrue && !r.GateSeen {
		r.GateSeen, r.GateAt, opened = true, g.LastTransitionTime.Time, true
	}
	if p.DeletionTimestamp != nil && r.Terminating.IsZero() {
		r.Terminating = now
	}
	h.mu.Unlock()
	if opened {
		// Asked outside the lock: the emulator's answer is what it knew
		// just after the gate was seen open, which can only be later.
		at := h.healthyAt(p.Status.PodIP)
		h.mu.Lock()
		r.HealthyAt = at
		h.mu.Unlock()
	}
}

// MarkLost records pods as leaving now, for pods whose node vanishes:
// the cloud, not podlb, takes their targets away.
func (h *PodHistory) MarkLost(names ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.pods {
		for _, n := range names {
			if r.Name == n && r.Terminating.IsZero() {
				r.Terminating = time.Now()
			}
		}
	}
}

// Stop ends the recording; safe to call more than once.
func (h *PodHistory) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
}

// Pods returns a copy of every record, by first sighting.
func (h *PodHistory) Pods() []PodRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]PodRecord, 0, len(h.pods))
	for _, r := range h.pods {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seen.Before(out[j].Seen) })
	return out
}

// CheckGates fails the test for every gate that opened before the cloud
// reported the pod's target healthy, and returns how many openings it
// checked. Condition times have second precision: a gate seen True at
// GateAt opened within [GateAt, GateAt+1s).
func (h *PodHistory) CheckGates(t testing.TB) int {
	t.Helper()
	n := 0
	for _, r := range h.Pods() {
		if !r.GateSeen {
			continue
		}
		n++
		if r.HealthyAt.IsZero() || r.GateAt.Add(time.Second).Before(r.HealthyAt) {
			t.Errorf("pod %s (%s): gate True at %s, but its target healthy at %v", r.Name, r.IP, r.GateAt.Format(time.RFC3339), r.HealthyAt)
		}
	}
	return n
}

// Removal is a target taken out of the load balancer: "ip:port", when.
type Removal struct {
	Target string
	At     time.Time
}

// removalSlack covers the time between the controller seeing a pod's
// termination and the test's informer seeing it.
const removalSlack = time.Second

// CheckRemovals fails the test for every removal of a target whose pod
// was alive then and not terminating: a target still wanted. It returns
// how many removals it checked.
func (h *PodHistory) CheckRemovals(t testing.TB, port int, removals []Removal) int {
	t.Helper()
	pods := h.Pods()
	for _, rm := range removals {
		for _, p := range pods {
			if fmt.Sprintf("%s:%d", p.IP, port) != rm.Target || p.Seen.After(rm.At) {
				continue
			}
			if p.Terminating.IsZero() || p.Terminating.After(rm.At.Add(removalSlack)) {
				t.Errorf("target %s removed at %s while its pod %s was serving (termination seen %v)",
					rm.Target, rm.At.Format("15:04:05.000"), p.Name, p.Terminating)
			}
		}
	}
	return len(removals)
}

// TargetSampler polls a cloud's targets during a scenario and records
// every target that disappears, and every target held twice, for clouds
// whose emulator keeps no call journal.
type TargetSampler struct {
	stop, done chan struct{}

	mu       sync.Mutex
	removals []Removal
	dups     map[string]bool
}

// SampleTargets polls list (the "ip:port" of active targets, one entry
// per copy) every 100 ms until Stop.
func SampleTargets(list func() []string) *TargetSampler {
	s := &TargetSampler{stop: make(chan struct{}), done: make(chan struct{}), dups: map[string]bool{}}
	go func() {
		defer close(s.done)
		prev := map[string]bool{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			now := map[string]bool{}
			at := time.Now()
			s.mu.Lock()
			for _, k := range list() {
				if now[k] {
					s.dups[k] = true
				}
				now[k] = true
			}
			for k := range prev {
				if !now[k] {
					s.removals = append(s.removals, Removal{Target: k, At: at})
				}
			}
			s.mu.Unlock()
			prev = now
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and returns the removals and the targets seen
// held twice.
func (s *TargetSampler) Stop() ([]Removal, []string) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var dups []string
	for k := range s.dups {
		dups = append(dups, k)
	}
	sort.Strings(dups)
	return s.removals, dups
}

// WarningsFew fails the test when the Service collected more than most
// Warning events (counting repeats), or any whose reason is not among
// reasons, and logs them all.
func (k Kube) WarningsFew(t testing.TB, ns, svc string, most int32, reasons ...string) {
	t.Helper()
	var n int32
	for _, w := range k.AllWarnings(t, ns, svc) {
		t.Logf("Warning on %s: %s: %s (x%d)", svc, w.Reason, w.Message, w.Count)
		n += max(w.Count, 1)
		if !slices.Contains(reasons, w.Reason) {
			t.Errorf("Warning %s on %s, want only %v", w.Reason, svc, reasons)
		}
	}
	if n > most {
		t.Errorf("%d Warnings on %s, want at most %d", n, svc, most)
	}
}

// HandOver stops the suite's in-process controller for a test that runs
// controller processes of its own, and starts it again when the test ends
// (after those processes have stopped and released the lease).
func (r *Restartable) HandOver(t testing.TB) {
	t.Helper()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Start(); err != nil {
			t.Errorf("restarting the suite's controller: %v", err)
		}
	})
}

// LeaseName is the controller's default leader lease.
const LeaseName = "podlb-controller-leader"

// KillLeader kills whichever of two controller processes leads and waits
// until the other holds the lease; it logs how long there was no leader.
func KillLeader(t testing.TB, c kubernetes.Interface, procs []*ControllerProcess) {
	t.Helper()
	leader, standby := procs[0], procs[1]
	if standby.Leads() {
		leader, standby = standby, leader
	}
	if !leader.Leads() {
		t.Fatal("neither controller leads")
	}
	held, _ := LeaseHolder(c, LeaseName)
	killed := time.Now()
	leader.Kill()
	var since time.Time
	Eventually(t, time.Minute, standby.Name+" takes over", func() error {
		h, at := LeaseHolder(c, LeaseName)
		if h == "" || h == held || !standby.Leads() {
			return fmt.Errorf("lease held by %q", h)
		}
		since = at
		return nil
	})
	t.Logf("killed leader %s; %s leads after %v without a leader", leader.Name, standby.Name, since.Sub(killed).Round(10*time.Millisecond))
}

// KillWhenLeading waits until c leads, lets it work for a random moment
// of up to 6 s, kills it with SIGKILL and returns its successor, started
// at once by next.
func KillWhenLeading(t testing.TB, rng *rand.Rand, c *ControllerProcess, next func() *ControllerProcess) *ControllerProcess {
	t.Helper()
	Eventually(t, time.Minute, c.Name+" leads", func() error {
		if !c.Leads() {
			return fmt.Errorf("not leader yet")
		}
		return nil
	})
	time.Sleep(time.Duration(rng.Intn(6000)) * time.Millisecond)
	c.Kill()
	t.Logf("SIGKILL %s at %s", c.Name, time.Now().Format("15:04:05.000"))
	return next()
}

// ChaosOutage is how long a chaos test's cloud answers only 5xx:
// PODLB_CHAOS_OUTAGE (a duration, e.g. 60s as in issue 17; make soak sets
// it), else 20 s, which keeps make test quick.
func ChaosOutage(t testing.TB) time.Duration {
	t.Helper()
	s := os.Getenv("PODLB_CHAOS_OUTAGE")
	if s == "" {
		return 20 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("PODLB_CHAOS_OUTAGE=%q: want a positive duration", s)
	}
	return d
}

// RequireChaosLong skips a chaos test that make test cannot afford unless
// PODLB_CHAOS_LONG is set (make soak sets it).
func RequireChaosLong(t testing.TB) {
	t.Helper()
	if os.Getenv("PODLB_CHAOS_LONG") == "" {
		t.Skip("a long chaos test: set PODLB_CHAOS_LONG=1 (make soak does)")
	}
}
