package aws_test

import (
	"math/rand"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// gateOpening is a pod's gate seen True for the first time, with what the
// emulator said of the pod's target in every group at that moment.
type gateOpening struct {
	pod       string
	ip        string
	at        time.Time            // the condition's transition time (second precision)
	healthyAt map[string]time.Time // group ARN -> when the target turned healthy, zero if not
}

// groupTimeline records which groups a Service named, and when.
type groupTimeline struct {
	mu      sync.Mutex
	changes []groupChange
}

type groupChange struct {
	at  time.Time
	arn string // "" while the Service does not exist
}

func (tl *groupTimeline) set(arn string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.changes = append(tl.changes, groupChange{at: time.Now(), arn: arn})
}

// around lists the groups the Service named at some time within
// [from, to]; a change inside the window makes both count as acceptable,
// since podlb learns of an edit a moment after it is made.
func (tl *groupTimeline) around(from, to time.Time) (certain string, acceptable map[string]bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	acceptable = map[string]bool{}
	var before string
	changed := false
	for _, c := range tl.changes {
		switch {
		case !c.at.After(from):
			before = c.arn
		case !c.at.After(to):
			changed = true
			acceptable[c.arn] = true
		}
	}
	acceptable[before] = true
	if !changed {
		certain = before
	}
	return certain, acceptable
}

// Invariant: a pod's gate never turns True before every group of every
// Service selecting it reports the pod healthy.
//
// Gated Deployments roll again and again while a second Service selecting
// the same pods is moved between groups, the controller restarts, and a
// third selecting Service comes and goes. For every pod whose gate opened,
// the target must have been healthy in the groups that selected it then.
// PODLB_STRESS_SEED and PODLB_STRESS_ROUNDS repeat or lengthen a run.
func TestSafetyGateStress(t *testing.T) {
	cluster.Require(t)
	seed := time.Now().UnixNano()
	if s := os.Getenv("PODLB_STRESS_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	rounds := 4
	if s := os.Getenv("PODLB_STRESS_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d, %d rounds (PODLB_STRESS_SEED=%d repeats this run)", seed, rounds, seed)
	rng := rand.New(rand.NewSource(seed))

	ns := kube.Namespace(t)
	arnA, addrA := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "a"))
	arnB1, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "b1"))
	arnB2, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "b2"))
	arnC, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "c"))
	groups := []string{arnA, arnB1, arnB2, arnC}
	selecting := func(name, arn string) *corev1.Service {
		s := e2eutil.WebService(ns, name, byName(`{"arn": "`+arn+`"}`))
		s.Spec.Selector = map[string]string{"app": "stress"}
		return s
	}
	var bGroups, cGroups groupTimeline
	k8s.Create(t, selecting("stress", arnA), selecting("stress-b", arnB1), e2eutil.RollingDeployment(ns, "stress", 6, true))
	bGroups.set(arnB1)
	cGroups.set("")

	openings := watchGateOpenings(t, ns, groups)
	e2eutil.Eventually(t, 90*time.Second, "6 pods healthy and Ready", func() error {
		return converged(t, ns, "stress", arnA, 6, "healthy", true)
	})
	load := loadgen.Start(addrA, 4, 25*time.Millisecond)
	bArn, cExists := arnB1, false
	for round := 0; round < rounds; round++ {
		k8s.Restart(t, ns, "stress")
		time.Sleep(time.Duration(rng.Intn(4000)) * time.Millisecond)
		action := rng.Intn(4)
		switch action {
		case 0, 3:
			if bArn == arnB1 {
				bArn = arnB2
			} else {
				bArn = arnB1
			}
			k8s.Annotate(t, ns, "stress-b", awsKey, `{"http": {"arn": "`+bArn+`"}}`)
			bGroups.set(bArn)
			if action == 3 {
				restartController(t)
			}
		case 1:
			restartController(t)
		case 2:
			if cExists {
				if err := kube.Client.CoreV1().Services(ns).Delete(ctx, "stress-c", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				cGroups.set("")
			} else {
				k8s.Create(t, selecting("stress-c", arnC))
				cGroups.set(arnC)
			}
			cExists = !cExists
		}
		t.Logf("round %d: action %d (B in %s, C exists %v)", round, action, bArn[len(bArn)-8:], cExists)
		k8s.WaitRollout(t, ns, "stress", 3*time.Minute)
		e2eutil.Eventually(t, 90*time.Second, "round converged", func() error {
			return converged(t, ns, "stress", arnA, 6, "healthy", true)
		})
	}
	res := load.Stop()
	all := openings.stop()
	t.Logf("%d gate openings checked; traffic through A: %d ok, %d failed", len(all), res.OK, res.Failed)
	if res.Failed != 0 {
		t.Errorf("%d requests failed through Service A's load balancer: %v", res.Failed, res.Errors)
	}
	if len(all) < 6*(rounds+1) {
		t.Errorf("saw %d gate openings, want at least %d: the watch missed some", len(all), 6*(rounds+1))
	}
	for _, o := range all {
		// The condition time has second precision: the gate opened within
		// [at, at+1s). It may not open before the target is healthy.
		latest := o.at.Add(time.Second)
		check := func(what, arn string, alternatives map[string]bool) {
			ok := false
			for alt := range alternatives {
				if h := o.healthyAt[alt]; alt == "" || (!h.IsZero() && !h.After(latest)) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("pod %s (%s): gate True at %s, but not healthy in %s's group(s) %v then: %v", o.pod, o.ip, o.at.Format(time.RFC3339), what, keysOfSet(alternatives), o.healthyAt)
			}
		}
		check("Service A", arnA, map[string]bool{arnA: true})
		_, b := bGroups.around(o.at.Add(-2*time.Second), latest)
		check("Service B", "", b)
		_, c := cGroups.around(o.at.Add(-2*time.Second), latest)
		if !c[""] {
			check("Service C", arnC, c)
		}
	}
}

func keysOfSet(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func restartController(t *testing.T) {
	t.Helper()
	if err := ctrl.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
}

type openingWatch struct {
	stopCh chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	seen   map[string]bool
	all    []gateOpening
}

// watchGateOpenings records each pod's first gate True with the
// emulator's view of its target in every group at that moment.
func watchGateOpenings(t *testing.T, ns string, groups []string) *openingWatch {
	t.Helper()
	w, err := kube.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=stress"})
	if err != nil {
		t.Fatal(err)
	}
	ow := &openingWatch{stopCh: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(ow.done)
		defer w.Stop()
		for {
			select {
			case <-ow.stopCh:
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if ev.Type != watch.Modified && ev.Type != watch.Added {
					continue
				}
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				g := e2eutil.GateOf(p)
				if g == nil || g.Status != corev1.ConditionTrue || ow.seen[string(p.UID)] {
					continue
				}
				o := gateOpening{pod: p.Name, ip: p.Status.PodIP, at: g.LastTransitionTime.Time, healthyAt: map[string]time.Time{}}
				for _, arn := range groups {
					o.healthyAt[arn] = healthyAt(arn, p.Status.PodIP)
				}
				ow.mu.Lock()
				ow.seen[string(p.UID)] = true
				ow.all = append(ow.all, o)
				ow.mu.Unlock()
			}
		}
	}()
	return ow
}

func (ow *openingWatch) stop() []gateOpening {
	close(ow.stopCh)
	<-ow.done
	ow.mu.Lock()
	defer ow.mu.Unlock()
	return ow.all
}
