package targets

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/podlb/podlb/providers"
)

// A cloud outage fails every retry with a message that varies (zones
// answer in any order, the reason alternates): the Service gets one
// SyncFailed Warning for the streak, and one again only for a new streak
// after a success.
func TestTransientFailureStreakWarnsOnce(t *testing.T) {
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80}
	rec := record.NewFakeRecorder(100)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: rec}
	ps := &pass{key: key, svcRef: &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}}
	outage := []error{
		errors.New("zone a: backendError; zone b: internalError"),
		errors.New("zone b: internalError; zone a: backendError"),
		errors.New("zone a: internalError; zone b: internalError"),
		errors.New("zone b: backendError; zone a: internalError"),
		errors.New("zone a: backendError; zone b: backendError"),
		errors.New("zone b: internalError; zone a: internalError"),
	}
	for _, err := range outage {
		if _, ferr := r.fail(context.Background(), ps, err); ferr != nil {
			t.Fatal(ferr)
		}
	}
	if ws := drainEvents(rec); len(ws) != 1 || !strings.HasPrefix(ws[0], "Warning SyncFailed gcp port 80: ") {
		t.Fatalf("one outage of %d failed retries gave Warnings %q, want one SyncFailed", len(outage), ws)
	}
	r.resetFailures(key) // a success ends the streak
	for _, err := range outage[:3] {
		_, _ = r.fail(context.Background(), ps, err)
	}
	if ws := drainEvents(rec); len(ws) != 1 {
		t.Fatalf("a second outage gave Warnings %q, want one", ws)
	}
}

// drainEvents returns what the recorder holds.
func drainEvents(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// Pods without the gate, or stopping before the drain ends, are one
// Warning each while they come and go through a rollout, though the
// message counts them and names an example; once the problem is gone, its
// return is news, as is a new drain time.
func TestRolloutSafetyWarnsOncePerProblemNotPerPodCount(t *testing.T) {
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80}
	rec := record.NewFakeRecorder(100)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: rec}
	ref := &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}
	g := &providers.Group{Display: "targetgroup/web/1", Serving: true, DrainSeconds: 30}
	pass := func(n int, gated bool) []string {
		var desired []Desired
		pods := map[types.UID]*corev1.Pod{}
		for i := range n {
			uid := types.UID(fmt.Sprint("uid-", i))
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprint("web-", i), UID: uid}}
			if gated {
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: GateConditionType}}
			}
			pods[uid] = p
			desired = append(desired, Desired{Target: providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Port: 8080}, Pod: types.NamespacedName{Namespace: "shop", Name: p.Name}, UID: uid})
		}
		r.warnRolloutSafety(key, ref, &providers.Binding{Key: key}, g, desired, pods)
		return drainEvents(rec)
	}
	var rollout []string
	for _, n := range []int{1, 2, 3, 5, 10, 12, 11, 12, 10} {
		rollout = append(rollout, pass(n, false)...)
	}
	if len(rollout) != 2 || !strings.HasPrefix(rollout[0], "Warning PodsWithoutGate ") || !strings.HasPrefix(rollout[1], "Warning TerminationShorterThanDrain ") {
		t.Fatalf("a rollout of pods without the gate and a short grace gave Warnings %q, want one of each", rollout)
	}
	// Gated now; the short grace remains, already warned of.
	if ws := pass(10, true); len(ws) != 0 {
		t.Fatalf("gated pods gave Warnings %q, want none", ws)
	}
	if ws := pass(4, false); len(ws) != 1 || !strings.HasPrefix(ws[0], "Warning PodsWithoutGate ") {
		t.Fatalf("pods without the gate again gave Warnings %q, want one PodsWithoutGate", ws)
	}
	g.DrainSeconds = 60
	if ws := pass(4, false); len(ws) != 1 || !strings.HasPrefix(ws[0], "Warning TerminationShorterThanDrain ") {
		t.Fatalf("a new drain time gave Warnings %q, want one TerminationShorterThanDrain", ws)
	}
}

// A problem the provider reports on a group it still serves (a health
// check it could not read) is one GroupDegraded Warning while it lasts,
// and news again once it went and came back.
func TestAGroupsWarningIsOneEventWhileItLasts(t *testing.T) {
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80}
	rec := record.NewFakeRecorder(100)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: rec}
	ref := &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}
	g := &providers.Group{Display: "neg/web", Serving: true, Warning: "health check of backend service be not read (403)"}
	pass := func() []string {
		r.warnRolloutSafety(key, ref, &providers.Binding{Key: key}, g, nil, nil)
		return drainEvents(rec)
	}
	want := "Warning GroupDegraded gcp port 80: neg/web: health check of backend service be not read (403)"
	if ws := slices.Concat(pass(), pass(), pass()); len(ws) != 1 || ws[0] != want {
		t.Fatalf("three passes of a degraded group gave Warnings %q, want %q once", ws, want)
	}
	g.Warning = ""
	if ws := pass(); len(ws) != 0 {
		t.Fatalf("a mended group gave Warnings %q", ws)
	}
	g.Warning = "health check of backend service be not read (403)"
	if ws := pass(); len(ws) != 1 || ws[0] != want {
		t.Fatalf("the problem's return gave Warnings %q, want %q", ws, want)
	}
}

// A rollout into a place the group cannot take has every new pod's
// target refused for one reason: one TargetsRejected Warning, though the
// refused set changes with each pod. A refusal of another kind is news,
// and so is the problem's return once nothing was refused.
func TestTargetsRejectedWarnsOncePerKindOfRefusal(t *testing.T) {
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80}
	rec := record.NewFakeRecorder(100)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: rec}
	ps := &pass{key: key, svcRef: &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}, group: &providers.Group{Display: "targetgroup/web/1"}}
	target := func(i int) providers.Target {
		return providers.Target{IP: netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), Port: 8080}
	}
	refused := func(code string, i int) error {
		return providers.Classify(providers.Invalid, "", &providers.CloudError{Op: "RegisterTargets", Code: code, Message: fmt.Sprintf("The IP address 10.9.0.%d is not within a subnet of the VPC", i)})
	}
	// Each wave refuses the new pod's target and forgets the one it replaced.
	wave := func(failed map[providers.TargetKey]error) []string {
		ps.desired = nil
		for k := range failed {
			ps.desired = append(ps.desired, Desired{Target: providers.Target{IP: k.IP, Port: k.Port}, Pod: types.NamespacedName{Namespace: "shop", Name: "web-" + k.IP.String()}})
		}
		r.mu.Lock()
		delete(r.rejected, key)
		r.mu.Unlock()
		r.reject(key, failed, r.now())
		r.warnRejected(ps)
		return drainEvents(rec)
	}
	var rollout []string
	for i := 1; i <= 12; i++ {
		rollout = append(rollout, wave(map[providers.TargetKey]error{target(i).Key(): refused("InvalidTarget", i)})...)
	}
	if len(rollout) != 1 || !strings.HasPrefix(rollout[0], "Warning TargetsRejected aws port 80: targetgroup/web/1 refused 1 target(s) (InvalidTarget)") {
		t.Fatalf("12 pods refused one after the other for one reason gave Warnings %q, want one TargetsRejected", rollout)
	}
	both := map[providers.TargetKey]error{target(13).Key(): refused("InvalidTarget", 13), target(14).Key(): refused("TooManyTargets", 14)}
	if ws := wave(both); len(ws) != 1 || !strings.Contains(ws[0], "(InvalidTarget, TooManyTargets)") {
		t.Fatalf("a second kind of refusal gave Warnings %q, want one naming both kinds", ws)
	}
	if ws := wave(nil); len(ws) != 0 {
		t.Fatalf("nothing refused gave Warnings %q", ws)
	}
	if ws := wave(map[providers.TargetKey]error{target(15).Key(): refused("InvalidTarget", 15)}); len(ws) != 1 {
		t.Fatalf("a refusal after none gave Warnings %q, want one", ws)
	}
}

// A terminating pod's target deregistered only after the pod was killed
// is counted and warned of: once for a run of such deregistrations, and
// again only after lateQuiet with none. One deregistered before its pod
// was killed, or with no terminating pod seen, is not late.
func TestDeregistrationAfterThePodWasKilledWarnsOncePerRun(t *testing.T) {
	t0 := time.Unix(1000, 0)
	now := t0
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80}
	rec := record.NewFakeRecorder(100)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: rec, Now: func() time.Time { return now }}
	ps := &pass{key: key, svcRef: &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}, group: &providers.Group{Display: "neg web"}}
	book := r.book(key, "neg")
	target := func(i byte) providers.Target {
		return providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, i}), Port: 8080}
	}
	// leave plans the targets' deregistration at now, the first two of
	// terminating pods killed at kill, and applies it after wait.
	leave := func(kill, wait time.Duration, ts ...providers.Target) []string {
		plan := providers.Plan{Deregister: ts}
		stopping := map[providers.TargetKey]time.Time{}
		for _, tg := range ts[:min(2, len(ts))] {
			stopping[tg.Key()] = now.Add(kill)
		}
		r.noteLeaving(book, plan, stopping)
		now = now.Add(wait / 2)
		r.noteLeaving(book, plan, nil) // the pods are gone by the next pass: the kill time is kept
		now = now.Add(wait / 2)
		r.recordApplied(ps, book, plan, nil, now)
		return drainEvents(rec)
	}
	before := testutil.ToFloat64(deregistrationsLate.WithLabelValues("gcp"))
	if ws := leave(30*time.Second, 2*time.Second, target(1), target(2)); len(ws) != 0 {
		t.Fatalf("deregistrations 28 s before the kill gave Warnings %q", ws)
	}
	ws := leave(5*time.Second, 41*time.Second, target(3), target(4), target(5))
	if len(ws) != 1 || !strings.HasPrefix(ws[0], "Warning TargetsDeregisteredLate gcp port 80: 2 target(s) left neg web only after their pods were killed (up to 36s after, 41s after podlb planned it)") {
		t.Fatalf("two targets deregistered 36 s after their pods were killed gave Warnings %q, want one naming 2", ws)
	}
	if got := testutil.ToFloat64(deregistrationsLate.WithLabelValues("gcp")) - before; got != 2 {
		t.Fatalf("podlb_deregistrations_late_total rose by %v, want 2", got)
	}
	now = now.Add(lateQuiet / 2)
	if ws := leave(time.Second, 10*time.Second, target(6)); len(ws) != 0 {
		t.Fatalf("a late deregistration in the same run gave Warnings %q, want none", ws)
	}
	now = now.Add(lateQuiet + time.Minute)
	if ws := leave(time.Second, 10*time.Second, target(7)); len(ws) != 1 {
		t.Fatalf("a late deregistration after %v without one gave Warnings %q, want one", lateQuiet, ws)
	}
}
