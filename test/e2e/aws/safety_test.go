package aws_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const awsKey = "podlb.io/aws-target-groups"

// targetWatch samples a group's targets until stopped and remembers the
// fewest healthy ones and every target that ever left the group.
type targetWatch struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	fewest  int
	samples int
	left    map[string]bool
	first   time.Time // when a target was first seen gone
}

func (w *targetWatch) firstLeft() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

func watchTargets(arn string) *targetWatch {
	w := &targetWatch{stop: make(chan struct{}), done: make(chan struct{}), fewest: -1, left: map[string]bool{}}
	start := activeTargets(arn)
	go func() {
		defer close(w.done)
		for {
			now := activeTargets(arn)
			healthy := 0
			for _, s := range now {
				if s == "healthy" {
					healthy++
				}
			}
			w.mu.Lock()
			if w.fewest < 0 || healthy < w.fewest {
				w.fewest = healthy
			}
			w.samples++
			for k := range start {
				if _, ok := now[k]; !ok && !w.left[k] {
					w.left[k] = true
					if w.first.IsZero() {
						w.first = time.Now()
					}
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *targetWatch) Stop() (fewestHealthy int, left []string) {
	close(w.stop)
	<-w.done
	for k := range w.left {
		left = append(left, k)
	}
	return w.fewest, left
}

// Invariant: a broken edit of a bound Service's annotation never releases
// what the last good annotation bound; only a clear removal does.
//
// A live, healthy, gated binding to a shared group behind an NLB, and a
// group podlb created, get each kind of broken edit (also across a
// controller restart, and while the Deployment scales): traffic through the
// load balancer keeps flowing, no target leaves either group, the owned
// group is not deleted, and Warning, status and gate say that the last good
// binding is in force. Fixing the edit resumes; deleting the port's entry
// from a valid value then releases.
func TestSafetyBrokenAnnotationKeepsServing(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, addr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "typo"))
	good := `{"http": {"arn": "` + arn + `"}}`
	svc := e2eutil.WebService(ns, "typo", map[string]string{awsKey: good})
	k8s.Create(t, svc, e2eutil.RollingDeployment(ns, "typo", 4, true))
	owned := e2eutil.WebService(ns, "owned", map[string]string{awsKey: `{"http": {"create": {}}}`, targets.AnnotationReadiness: "registered"})
	k8s.Create(t, owned, e2eutil.RollingDeployment(ns, "owned", 2, true))
	e2eutil.Eventually(t, 90*time.Second, "4 gated pods healthy and Ready", func() error {
		return converged(t, ns, "typo", arn, 4, "healthy", true)
	})
	ownedArn := ownedGroupOf(t, ns, "owned")
	e2eutil.Eventually(t, 60*time.Second, "owned group has 2 targets", func() error {
		return converged(t, ns, "owned", ownedArn, 2, "", true)
	})

	load := loadgen.Start(addr, 4, 25*time.Millisecond)
	watch, ownedWatch := watchTargets(arn), watchTargets(ownedArn)
	broken := []struct{ name, value, want string }{
		{"trailing comma", `{"http": {"arn": "` + arn + `"},}`, "malformed JSON"},
		{"unknown field", `{"http": {"arn": "` + arn + `", "weight": 3}}`, "unknown field"},
		{"wrong type", `{"http": {"arn": 42}}`, "cannot unmarshal number"},
		{"port key no longer resolves", `{"htpp": {"arn": "` + arn + `"}}`, `no port named "htpp"`},
		{"not an object", `"` + arn + `"`, "malformed JSON"},
	}
	for i, b := range broken {
		k8s.Annotate(t, ns, "typo", awsKey, b.value)
		k8s.Annotate(t, ns, "owned", awsKey, strings.ReplaceAll(b.value, `"arn": "`+arn+`"`, `"create": {}`))
		for _, name := range []string{"typo", "owned"} {
			e2eutil.Eventually(t, 30*time.Second, b.name+": "+name+"'s status and Warning say the last good binding stays", func() error {
				s := k8s.StatusJSON(t, ns, name)
				if !strings.Contains(s, "last good binding of port 80 stays in force") || !strings.Contains(s, `"80"`) {
					return fmt.Errorf("status %s", s)
				}
				if ws := k8s.Warnings(t, ns, name, "stays in force"); len(ws) == 0 {
					return fmt.Errorf("no Warning")
				}
				return nil
			})
		}
		if i == 1 {
			// The last good binding survives a restart: the ledger keeps it.
			if err := ctrl.Stop(); err != nil {
				t.Fatal(err)
			}
			if err := ctrl.Start(); err != nil {
				t.Fatal(err)
			}
		}
		if i == 3 {
			// podlb keeps acting on the last good binding: a new pod is
			// registered and let through.
			earlier := map[string]bool{}
			for _, p := range k8s.LivePods(t, ns, "typo") {
				earlier[p.Name] = true
			}
			k8s.Scale(t, ns, "typo", 5)
			e2eutil.Eventually(t, 90*time.Second, "5th pod registered and Ready on the kept binding", func() error {
				return converged(t, ns, "typo", arn, 5, "healthy", true)
			})
			for _, p := range k8s.LivePods(t, ns, "typo") {
				if g := e2eutil.GateOf(&p); !earlier[p.Name] && !strings.Contains(g.Message, "last good bindings are in force") {
					t.Errorf("pod %s let through on the kept binding, but its gate does not say so: %q", p.Name, g.Message)
				}
			}
		}
		time.Sleep(time.Second)
	}
	fewest, left := watch.Stop()
	_, ownedLeft := ownedWatch.Stop()
	if fewest < 4 || len(left) > 0 {
		t.Errorf("while the annotation was broken the shared group fell to %d healthy targets; targets that left: %v", fewest, left)
	}
	if len(ownedLeft) > 0 {
		t.Errorf("targets left the owned group while its annotation was broken: %v", ownedLeft)
	}
	if _, err := emuclient.ELBv2Client(sim).DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{ownedArn}}); err != nil {
		t.Errorf("owned group gone after broken edits: %v", err)
	}

	// Fixed: the problems go, work resumes.
	k8s.Annotate(t, ns, "typo", awsKey, good)
	k8s.Annotate(t, ns, "owned", awsKey, `{"http": {"create": {}}}`)
	e2eutil.Eventually(t, 30*time.Second, "problems cleared", func() error {
		if st := k8s.Status(t, ns, "typo"); st == nil || len(st.Problems) != 0 || st.Bindings["aws"]["80"] == nil {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "typo"))
		}
		return nil
	})
	k8s.Scale(t, ns, "typo", 4)
	e2eutil.Eventually(t, 60*time.Second, "back to 4 targets", func() error { return converged(t, ns, "typo", arn, 4, "healthy", true) })
	time.Sleep(time.Second)
	res := load.Stop()
	t.Logf("through broken edits, a restart and a scale-up: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 || res.OK < 100 {
		t.Errorf("%d requests failed (%d ok): %v", res.Failed, res.OK, res.Errors)
	}

	// A clear removal of the port's entry releases.
	k8s.Annotate(t, ns, "owned", awsKey, `{}`)
	e2eutil.Eventually(t, 60*time.Second, "owned group deleted after its entry was removed", func() error {
		_, err := emuclient.ELBv2Client(sim).DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{ownedArn}})
		if err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

// Invariant: when a binding moves to another group, the old group keeps
// this cluster's targets until the pods are healthy in the new one.
//
// The annotation names another target group (behind another NLB) while
// traffic flows through the first NLB, which also serves a second
// Service's pod: the first group loses the moved Service's targets only
// once every one of its pods is healthy in the new group, and no request
// through the first NLB fails.
func TestSafetyGroupMoveRegistersBeforeReleasing(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	oldArn, oldAddr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "old"))
	newArn, newAddr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "new"))
	k8s.Create(t, e2eutil.WebService(ns, "move", byName(`{"arn": "`+oldArn+`"}`)), e2eutil.RollingDeployment(ns, "move", 4, true),
		e2eutil.WebService(ns, "stay", byName(`{"arn": "`+oldArn+`"}`)), e2eutil.RollingDeployment(ns, "stay", 1, true))
	e2eutil.Eventually(t, 90*time.Second, "5 pods healthy in the old group", func() error {
		if err := converged(t, ns, "stay", oldArn, 1, "healthy", true); err == nil {
			return fmt.Errorf("the group holds only the staying pod")
		}
		active := activeTargets(oldArn)
		for k, st := range active {
			if st != "healthy" {
				return fmt.Errorf("target %s is %s", k, st)
			}
		}
		if len(active) != 5 {
			return fmt.Errorf("%d targets", len(active))
		}
		return nil
	})

	oldLoad := loadgen.Start(oldAddr, 4, 25*time.Millisecond)
	watch := watchTargets(oldArn)
	k8s.Annotate(t, ns, "move", awsKey, `{"http": {"arn": "`+newArn+`"}}`)
	var firstLeft time.Time
	e2eutil.Eventually(t, 90*time.Second, "a target leaves the old group", func() error {
		if len(activeTargets(oldArn)) == 5 {
			return fmt.Errorf("old group still full")
		}
		firstLeft = time.Now()
		return nil
	})
	_, _ = watch.Stop()
	if at := watch.firstLeft(); !at.IsZero() && at.Before(firstLeft) {
		firstLeft = at
	}
	e2eutil.Eventually(t, 30*time.Second, "old group down to the staying pod", func() error {
		return converged(t, ns, "stay", oldArn, 1, "healthy", true)
	})
	time.Sleep(2 * time.Second) // past the drain of the released targets
	res := oldLoad.Stop()
	t.Logf("through the old NLB across the move: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 {
		t.Errorf("%d requests through the old load balancer failed: %v", res.Failed, res.Errors)
	}
	for _, p := range k8s.LivePods(t, ns, "move") {
		at := healthyAt(newArn, p.Status.PodIP)
		if at.IsZero() || at.After(firstLeft) {
			t.Errorf("pod %s healthy in the new group at %v, but the old group lost a target at %v", p.Name, at, firstLeft)
		}
	}
	e2eutil.Eventually(t, 30*time.Second, "new group serving", func() error {
		return converged(t, ns, "move", newArn, 4, "healthy", true)
	})
	newLoad := loadgen.Start(newAddr, 2, 25*time.Millisecond)
	time.Sleep(time.Second)
	if r := newLoad.Stop(); r.Failed != 0 || r.OK == 0 {
		t.Errorf("new load balancer: %d ok, %d failed", r.OK, r.Failed)
	}
}

// Invariant: a target the cloud refuses never holds up the binding's other
// targets: the rest are registered, terminating pods are still
// deregistered, and the refused one is named in a Warning, the status and
// its pod's gate.
//
// A target group one place short of full serves a two-pod Service. The
// Deployment grows to three: the third pod's target is refused
// (TooManyTargets) and named. One of the first pods is deleted while the
// group is full: its target leaves the group all the same, and the room it
// frees goes to a waiting pod.
func TestSafetyRefusedTargetIsIsolated(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, addr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "full"))
	fillGroup(t, arn, "10.7", 998)
	ours := func() map[string]string {
		out := map[string]string{}
		for k, st := range activeTargets(arn) {
			if !strings.HasPrefix(k, "10.7.") {
				out[k] = st
			}
		}
		return out
	}
	k8s.Create(t, e2eutil.WebService(ns, "full", byName(`{"arn": "`+arn+`"}`)), e2eutil.RollingDeployment(ns, "full", 2, true))
	e2eutil.Eventually(t, 90*time.Second, "2 pods healthy and Ready", func() error {
		if err := allGated(ns, "full", 2); err != nil {
			return err
		}
		if n := len(ours()); n != 2 {
			return fmt.Errorf("%d of our targets", n)
		}
		return nil
	})
	load := loadgen.Start(addr, 2, 25*time.Millisecond)

	k8s.Scale(t, ns, "full", 3)
	var refused corev1.Pod
	e2eutil.Eventually(t, 60*time.Second, "the third pod's target refused and named", func() error {
		var n int
		for _, p := range k8s.LivePods(t, ns, "full") {
			g := e2eutil.GateOf(&p)
			if g != nil && g.Reason == readiness.ReasonRejected {
				if !strings.Contains(g.Message, "TooManyTargets") {
					return fmt.Errorf("pod %s gate %q", p.Name, g.Message)
				}
				refused = p
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d pods held with %s", n, readiness.ReasonRejected)
		}
		if ws := k8s.Warnings(t, ns, "full", refused.Name); len(ws) == 0 {
			return fmt.Errorf("no Warning names pod %s: %v", refused.Name, k8s.AllWarnings(t, ns, "full"))
		}
		b := k8s.Status(t, ns, "full").Bindings["aws"]["80"]
		if b == nil || !strings.Contains(b.Rejected[refused.Status.PodIP+":8080"], "TooManyTargets") || b.Error != "" {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "full"))
		}
		return nil
	})
	if ws := k8s.Warnings(t, ns, "full", "BindingFailed"); len(ws) != 0 {
		t.Errorf("one refused target failed the whole binding: %v", ws)
	}

	// A fourth pod is refused for the same reason: the set of refused
	// targets changes, the problem does not, so no second Warning.
	k8s.Scale(t, ns, "full", 4)
	e2eutil.Eventually(t, 60*time.Second, "the fourth pod's target refused too", func() error {
		if n := len(rejectedPods(t, ns, "full")); n != 2 {
			return fmt.Errorf("%d pods held with %s", n, readiness.ReasonRejected)
		}
		return nil
	})
	if rejectedWarnings := k8s.WarningsByReason(t, ns, "full")["TargetsRejected"]; rejectedWarnings != 1 {
		t.Errorf("two pods refused for one reason gave %d TargetsRejected Warnings, want one: %v", rejectedWarnings, k8s.AllWarnings(t, ns, "full"))
	}
	k8s.Scale(t, ns, "full", 3)
	e2eutil.Eventually(t, 60*time.Second, "one pod refused again at three", func() error {
		ps := rejectedPods(t, ns, "full")
		if len(ps) != 1 || len(k8s.LivePods(t, ns, "full")) != 3 {
			return fmt.Errorf("%d pods held with %s", len(ps), readiness.ReasonRejected)
		}
		refused = ps[0]
		return nil
	})

	// A pod goes while the group is full: its target must leave anyway.
	var victim corev1.Pod
	for _, p := range k8s.LivePods(t, ns, "full") {
		if p.Name != refused.Name {
			victim = p
			break
		}
	}
	if err := kube.Client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 30*time.Second, "the deleted pod's target leaves the full group", func() error {
		if st, ok := ours()[victim.Status.PodIP+":8080"]; ok {
			return fmt.Errorf("still %s", st)
		}
		return nil
	})
	// Its room goes to a waiting pod once its draining ends; the Deployment
	// is back at three pods, two served and one refused.
	e2eutil.Eventually(t, 90*time.Second, "a waiting pod gets the freed place", func() error {
		if n := len(ours()); n != 2 {
			return fmt.Errorf("%d of our targets", n)
		}
		served := 0
		for _, p := range k8s.LivePods(t, ns, "full") {
			if g := e2eutil.GateOf(&p); g != nil && g.Status == corev1.ConditionTrue && e2eutil.IsReady(&p) {
				served++
			}
		}
		if served != 2 {
			return fmt.Errorf("%d pods served", served)
		}
		return nil
	})
	res := load.Stop()
	t.Logf("through the full group: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 {
		t.Errorf("%d requests failed: %v", res.Failed, res.Errors)
	}
}

// allGated checks that want live pods of app have their gate True and are
// Ready.
func allGated(ns, app string, want int) error {
	pods, err := kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return err
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !e2eutil.IsReady(&p) {
			return fmt.Errorf("pod %s not through: %+v", p.Name, g)
		}
		n++
	}
	if n != want {
		return fmt.Errorf("%d pods, want %d", n, want)
	}
	return nil
}

// Invariant: a gated pod is never let through silently by a controller
// that cannot check the load balancer it is bound to.
//
// This controller serves AWS only; a Service binds its pods on GCP: their
// gates stay False with reason CloudNotServed, naming the Service and the
// cloud, while a Service on AWS beside it is served.
func TestSafetyUnservedCloudHoldsTheGate(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	k8s.Create(t, e2eutil.WebService(ns, "elsewhere", map[string]string{"podlb.io/gcp-negs": `{"http": {}}`}), e2eutil.RollingDeployment(ns, "elsewhere", 2, true))
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "here"))
	k8s.Create(t, e2eutil.WebService(ns, "here", byName(`{"arn": "`+arn+`"}`)), e2eutil.RollingDeployment(ns, "here", 2, true))
	e2eutil.Eventually(t, 90*time.Second, "the AWS Service's pods through, the GCP one's held", func() error {
		if err := converged(t, ns, "here", arn, 2, "healthy", true); err != nil {
			return err
		}
		pods := k8s.LivePods(t, ns, "elsewhere")
		if len(pods) != 2 {
			return fmt.Errorf("%d pods", len(pods))
		}
		for _, p := range pods {
			g := e2eutil.GateOf(&p)
			if g == nil || g.Status != corev1.ConditionFalse || g.Reason != readiness.ReasonCloudNotServed ||
				!strings.Contains(g.Message, "Service elsewhere") || !strings.Contains(g.Message, "gcp") {
				return fmt.Errorf("pod %s gate %+v", p.Name, g)
			}
		}
		return nil
	})
	if st := k8s.StatusJSON(t, ns, "elsewhere"); st != "null" {
		t.Errorf("a Service of a cloud this controller does not serve got a status: %s", st)
	}
}

// rejectedPods lists the live pods of a Deployment whose gate says the
// cloud refused their target.
func rejectedPods(t *testing.T, ns, name string) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	for _, p := range k8s.LivePods(t, ns, name) {
		if g := e2eutil.GateOf(&p); g != nil && g.Reason == readiness.ReasonRejected {
			out = append(out, p)
		}
	}
	return out
}

// Invariant: a terminating pod whose target leaves the group only after
// the pod was killed is told of, once: a TargetsDeregisteredLate Warning
// naming the group (the rolling updates elsewhere check that pods
// deregistered in time bring none).
//
// Two gated pods with a grace period of one second and no preStop hook;
// one is deleted while the cloud fails every DeregisterTargets call, and
// the calls succeed again only after the pod's deletion timestamp, when
// the simulated kubelet has killed it.
func TestSafetyLateDeregistrationIsWarned(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "late"))
	dep := e2eutil.RollingDeployment(ns, "late", 2, true)
	dep.Spec.Template.Spec.TerminationGracePeriodSeconds = new(int64(1))
	for i := range dep.Spec.Template.Spec.Containers {
		dep.Spec.Template.Spec.Containers[i].Lifecycle = nil
	}
	k8s.Create(t, e2eutil.WebService(ns, "late", byName(`{"arn": "`+arn+`"}`)), dep)
	e2eutil.Eventually(t, 90*time.Second, "2 pods healthy and Ready", func() error {
		if err := allGated(ns, "late", 2); err != nil {
			return err
		}
		if n := len(activeTargets(arn)); n != 2 {
			return fmt.Errorf("%d targets", n)
		}
		return nil
	})

	sim.InjectError("DeregisterTargets", "InternalFailure", 1_000_000)
	t.Cleanup(func() { sim.InjectError("DeregisterTargets", "", 0) })
	victim := k8s.LivePods(t, ns, "late")[0]
	if err := kube.Client.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, "the pod killed and gone", func() error {
		p, err := kube.Client.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("pod %s still there (deleted at %v)", p.Name, p.DeletionTimestamp)
		}
		return nil
	})
	// Its deletion timestamp was a grace period after the delete call and
	// the pod is gone, so that time has passed; two seconds more put the
	// deregistration beyond podlb's margin for clocks.
	time.Sleep(2 * time.Second)
	if _, ok := activeTargets(arn)[victim.Status.PodIP+":8080"]; !ok {
		t.Fatalf("the killed pod's target left the group while every DeregisterTargets failed: %v", activeTargets(arn))
	}
	sim.InjectError("DeregisterTargets", "", 0)

	e2eutil.Eventually(t, 60*time.Second, "the killed pod's target leaves and a Warning tells", func() error {
		if st, ok := activeTargets(arn)[victim.Status.PodIP+":8080"]; ok {
			return fmt.Errorf("still %s", st)
		}
		if ws := k8s.Warnings(t, ns, "late", "only after their pods were killed"); len(ws) == 0 {
			return fmt.Errorf("no Warning yet: %v", k8s.AllWarnings(t, ns, "late"))
		}
		return nil
	})
	for _, e := range k8s.AllWarnings(t, ns, "late") {
		if e.Reason == "TargetsDeregisteredLate" && !strings.Contains(e.Message, "aws port 80: 1 target(s) left ") {
			t.Errorf("Warning %q does not name the one late target", e.Message)
		}
	}
	if late := k8s.WarningsByReason(t, ns, "late")["TargetsDeregisteredLate"]; late != 1 {
		t.Errorf("%d TargetsDeregisteredLate Warnings for one late deregistration, want one", late)
	}
}
