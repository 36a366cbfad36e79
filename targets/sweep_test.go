package targets

import (
	"context"
	"net/netip"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

func awsKey(svc string, port int32) providers.BindingKey {
	return providers.BindingKey{Namespace: "shop", Service: svc, Provider: "aws", Port: port}
}

func named(name string, ann map[string]string, mutate ...func(*corev1.Service)) corev1.Service {
	s := service(ann)
	s.Name = name
	for _, m := range mutate {
		m(s)
	}
	return *s
}

func ledgerRecord(k providers.BindingKey, ref string, targets ...string) LedgerRecord {
	e := &LedgerEntry{Ref: ref, Targets: map[providers.TargetKey]types.UID{}}
	for _, t := range targets {
		ap := netip.MustParseAddrPort(t)
		e.Targets[providers.TargetKey{IP: ap.Addr(), Port: int32(ap.Port())}] = ""
	}
	return LedgerRecord{Key: k, Entry: e}
}

func TestFindOrphansReleasesOnlyWhatNoServiceKeeps(t *testing.T) {
	aws := stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}
	gcp := stubProvider{fakeProvider{"gcp", "podlb.io/gcp-negs"}}
	provs := []providers.Provider{aws, gcp}
	deleting := func(s *corev1.Service) { s.DeletionTimestamp = &metav1.Time{Time: time.Now()} }
	svcs := []corev1.Service{
		// Wants port 80 only; its 9090 binding was removed.
		named("live", map[string]string{"podlb.io/aws-target-groups": `{"80": {"group": "a"}}`}),
		// A problem on one port: every aws binding of it is held, even
		// those missing from the parse; its gcp side is not held.
		named("broken", map[string]string{"podlb.io/aws-target-groups": `{"80": {"group": "a"}, "9090": {}}`}),
		// Being deleted: its finalizer's work, not the sweep's.
		named("leaving", map[string]string{"podlb.io/aws-target-groups": `{"80": {"group": "a"}}`}, deleting),
		// Lost its annotation: nothing kept.
		named("plain", nil),
	}
	records := []LedgerRecord{
		ledgerRecord(awsKey("live", 80), "arn-live-80"),
		ledgerRecord(awsKey("live", 9090), "arn-live-9090"),
		ledgerRecord(awsKey("broken", 53), "arn-broken-53"),
		ledgerRecord(providers.BindingKey{Namespace: "shop", Service: "broken", Provider: "gcp", Port: 80}, "neg|"),
		ledgerRecord(awsKey("leaving", 80), "arn-leaving"),
		ledgerRecord(awsKey("plain", 80), "arn-plain"),
		ledgerRecord(awsKey("gone", 80), "arn-gone"),
		ledgerRecord(providers.BindingKey{Namespace: "shop", Service: "gone", Provider: "azure", Port: 80}, "unserved"),
	}
	owned := []providers.OwnedGroup{
		// Created a moment ago, not recorded yet: its Service wants it.
		{Key: awsKey("live", 80), Ref: "arn-new"},
		// Its binding has a ledger entry: that entry's release handles it.
		{Key: awsKey("gone", 80), Ref: "arn-gone-owned"},
		// Never recorded, Service gone: a crash between create and record.
		{Key: awsKey("crashed", 80), Ref: "arn-crashed"},
		{Key: awsKey("crashed", 80), Ref: "arn-crashed"},
	}
	got := FindOrphans(WantsOf(svcs, "c1", provs), records, owned, map[string]bool{"aws": true, "gcp": true})
	want := []Orphan{
		{Key: providers.BindingKey{Namespace: "shop", Service: "broken", Provider: "gcp", Port: 80}, Ref: "neg|", Recorded: true},
		{Key: awsKey("crashed", 80), Ref: "arn-crashed"},
		{Key: awsKey("gone", 80), Ref: "arn-gone", Recorded: true},
		{Key: awsKey("live", 9090), Ref: "arn-live-9090", Recorded: true},
		{Key: awsKey("plain", 80), Ref: "arn-plain", Recorded: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("orphans\n got %+v\nwant %+v", got, want)
	}
}

func TestWantsOfKeepsEveryBindingOfAServiceWithProblems(t *testing.T) {
	aws := stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}
	svcs := []corev1.Service{named("web", map[string]string{"podlb.io/aws-target-groups": `{"80": {"group": "a"`})}
	w := WantsOf(svcs, "c1", []providers.Provider{aws})
	for _, port := range []int32{80, 9090, 53} {
		if !w.Keeps(awsKey("web", port)) {
			t.Errorf("port %d of a Service whose annotation does not parse may be released", port)
		}
	}
	if w.Keeps(awsKey("other", 80)) {
		t.Error("a Service that does not exist keeps its binding")
	}
}

func TestExclusiveTargetsLeavesWhatOtherBindingsRecorded(t *testing.T) {
	a, b, c := awsKey("a", 80), awsKey("b", 80), awsKey("c", 80)
	self := ledgerRecord(a, "arn-shared", "10.0.0.5:8080", "10.0.0.6:8080", "10.0.0.7:8080")
	records := []LedgerRecord{
		self,
		ledgerRecord(b, "arn-shared", "10.0.0.5:8080"),
		ledgerRecord(c, "arn-shared", "10.0.0.7:9090"), // same IP, other port: not the same target
	}
	got := exclusiveTargets(a, keysOf(self.Entry.Targets), records)
	var s []string
	for _, k := range got {
		s = append(s, k.String())
	}
	want := []string{"10.0.0.6:8080", "10.0.0.7:8080"}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("deregister %v, want %v", s, want)
	}
	if got := exclusiveTargets(a, keysOf(self.Entry.Targets), []LedgerRecord{self}); len(got) != 3 {
		t.Errorf("alone in the group, %d of 3 targets deregistered", len(got))
	}
}

// No Service annotation names a load balancer's backend binding: the
// sweep must leave it, and its NEGs or groups, to the balancer.
func TestFindOrphansLeavesBalancerBindingsToTheirBalancer(t *testing.T) {
	aws := stubProvider{fakeProvider{"aws", "podlb.io/aws-target-groups"}}
	via := awsKey("web", 80)
	via.Balancer = "shop/front"
	records := []LedgerRecord{ledgerRecord(via, "arn-alb-web")}
	owned := []providers.OwnedGroup{{Key: via, Ref: "neg-alb-web|"}}
	if got := FindOrphans(WantsOf([]corev1.Service{named("web", nil)}, "c1", []providers.Provider{aws}), records, owned, map[string]bool{"aws": true}); len(got) != 0 {
		t.Errorf("would release %+v", got)
	}
}

// The first sweep waits until every registered binding has reported once,
// so its reads of every group do not slow the start's look-ups, and no
// longer than its bound.
func TestFirstSweepWaitsForTheStartToSettle(t *testing.T) {
	r := NewRegistry()
	r.SetService(&ServiceEntry{Name: webName, Selector: webSelector}, []*providers.Binding{binding(awsKey("web", 80), "own"), binding(awsKey("web", 443), "own")})
	s := &Sweeper{Registry: r, FirstAfter: 10 * time.Millisecond, FirstBy: time.Minute}
	settled := make(chan struct{})
	go func() {
		s.settle(context.Background())
		close(settled)
	}()
	report := func(k providers.BindingKey) {
		r.SetStatus(k, &BindingStatus{Group: "own"})
	}
	report(awsKey("web", 80))
	select {
	case <-settled:
		t.Fatal("the first sweep ran while a binding had not reported")
	case <-time.After(1500 * time.Millisecond):
	}
	report(awsKey("web", 443))
	select {
	case <-settled:
	case <-time.After(5 * time.Second):
		t.Fatal("the first sweep still waits after every binding reported")
	}

	// A binding that never reports holds the first sweep only until FirstBy.
	r.SetService(&ServiceEntry{Name: webName, Selector: webSelector}, []*providers.Binding{binding(awsKey("web", 8080), "own")})
	s = &Sweeper{Registry: r, FirstAfter: 10 * time.Millisecond, FirstBy: 50 * time.Millisecond}
	began := time.Now()
	s.settle(context.Background())
	if waited := time.Since(began); waited > 5*time.Second {
		t.Fatalf("waited %v for a binding that never reports, want about FirstBy", waited)
	}
}
