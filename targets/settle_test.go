package targets

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/podlb/podlb/providers"
)

// settlingProvider records the plans it is asked to apply; the
// registrations of each Apply settle when the test says so.
type settlingProvider struct {
	stubProvider
	applied []providers.Plan
	fail    error
	pending []chan struct{} // one per Apply that registered, oldest first
}

func (p *settlingProvider) Apply(_ context.Context, _ *providers.Group, plan providers.Plan) error {
	if p.fail != nil {
		return p.fail
	}
	p.applied = append(p.applied, plan)
	if len(plan.Register) > 0 {
		p.pending = append(p.pending, make(chan struct{}))
	}
	return nil
}

func (p *settlingProvider) Settling(*providers.Group) <-chan struct{} {
	if len(p.pending) == 0 {
		return nil
	}
	pending := slices.Clone(p.pending)
	all := make(chan struct{})
	go func() {
		for _, c := range pending {
			<-c
		}
		close(all)
	}()
	return all
}

// settleOldest lets the oldest Apply's registrations take effect.
func (p *settlingProvider) settleOldest() {
	close(p.pending[0])
	p.pending = p.pending[1:]
}

// On a cloud whose registrations settle after Apply returned, a pass
// sends its registrations and holds its deregistrations, without waiting:
// each deregistration goes out once the registrations that were settling
// when it was first due have settled (its own pass's included), and the
// binding is woken then. Registrations sent later do not hold it, and a
// failed Apply holds the deregistrations behind the next registrations.
func TestDeregistrationsWaitForTheRegistrationsBeforeThem(t *testing.T) {
	key := providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80}
	woken := make(chan providers.BindingKey, 10)
	r := &BindingReconciler{Registry: NewRegistry(), Recorder: record.NewFakeRecorder(100),
		Wake: func(k providers.BindingKey) { woken <- k }}
	prov := &settlingProvider{stubProvider: stubProvider{fakeProvider{"gcp", "podlb.io/gcp-negs"}}}
	ps := &pass{key: key, prov: prov, group: &providers.Group{Display: "neg web"},
		svcRef: &corev1.ObjectReference{Kind: "Service", Namespace: "shop", Name: "web"}}
	book := r.book(key, "neg")
	target := func(i byte) providers.Target {
		return providers.Target{IP: netip.AddrFrom4([4]byte{10, 0, 0, i}), Port: 8080}
	}
	pass := func(plan providers.Plan) (providers.Plan, time.Duration, error) {
		t.Helper()
		r.noteLeaving(book, plan, nil)
		prov.applied = nil
		return r.applySettling(context.Background(), ps, book, prov, plan, nil, time.Now())
	}
	wantApplied := func(what string, want ...providers.Plan) {
		t.Helper()
		if !slices.EqualFunc(prov.applied, want, func(a, b providers.Plan) bool {
			return slices.Equal(a.Register, b.Register) && slices.Equal(a.Deregister, b.Deregister)
		}) {
			t.Fatalf("%s: applied %v, want %v", what, prov.applied, want)
		}
	}
	wantWoken := func(what string, want bool) {
		t.Helper()
		select {
		case <-woken:
			if !want {
				t.Fatalf("%s: the binding was woken", what)
			}
		case <-time.After(100 * time.Millisecond):
			if want {
				t.Fatalf("%s: the binding was not woken", what)
			}
		}
	}
	n1, n2, n3, o1, o2, o3 := target(1), target(2), target(3), target(11), target(12), target(13)

	applied, held, err := pass(providers.Plan{Register: []providers.Target{n1}, Deregister: []providers.Target{o1}})
	if err != nil || held == 0 || len(applied.Deregister) != 0 {
		t.Fatalf("a pass that registers n1 and deregisters o1: applied %v, held %v, %v; want o1 held", applied, held, err)
	}
	wantApplied("registering n1 with o1 leaving", providers.Plan{Register: []providers.Target{n1}})

	// n2 comes while n1 settles, o2 starts leaving: o1 still waits for n1,
	// o2 for n1 and n2.
	if _, _, err := pass(providers.Plan{Register: []providers.Target{n2}, Deregister: []providers.Target{o1, o2}}); err != nil {
		t.Fatal(err)
	}
	wantApplied("registering n2 while n1 settles", providers.Plan{Register: []providers.Target{n2}})
	wantWoken("before n1 settled", false)
	prov.settleOldest() // n1 took effect; n2 still settles
	wantWoken("once n1 settled", true)
	applied, held, err = pass(providers.Plan{Deregister: []providers.Target{o1, o2}})
	if err != nil || held == 0 || !slices.Equal(applied.Deregister, []providers.Target{o1}) {
		t.Fatalf("after n1 settled: applied %v, held %v, %v; want o1 out and o2 held", applied, held, err)
	}
	wantApplied("after n1 settled", providers.Plan{Deregister: []providers.Target{o1}})

	// A stream of registrations does not hold o2 past n2.
	if _, _, err := pass(providers.Plan{Register: []providers.Target{n3}, Deregister: []providers.Target{o2}}); err != nil {
		t.Fatal(err)
	}
	wantApplied("registering n3 while n2 settles", providers.Plan{Register: []providers.Target{n3}})
	prov.settleOldest()
	wantWoken("once n2 settled", true)
	if _, _, err := pass(providers.Plan{Deregister: []providers.Target{o2}}); err != nil {
		t.Fatal(err)
	}
	wantApplied("after n2 settled", providers.Plan{Deregister: []providers.Target{o2}})

	// Nothing settling: a deregistration alone goes out at once.
	prov.settleOldest() // n3
	wantWoken("once n3 settled", false)
	if _, held, err := pass(providers.Plan{Deregister: []providers.Target{o3}}); err != nil || held != 0 {
		t.Fatalf("a deregistration with nothing settling: held %v, %v", held, err)
	}
	wantApplied("o3 with nothing settling", providers.Plan{Deregister: []providers.Target{o3}})

	// A failed Apply: the deregistration waits behind the registrations
	// of the next pass that sends any, not for those of before.
	o4, n4 := target(14), target(4)
	prov.fail = errors.New("throttled")
	if _, _, err := pass(providers.Plan{Register: []providers.Target{n4}, Deregister: []providers.Target{o4}}); err == nil {
		t.Fatal("the failed Apply returned no error")
	}
	prov.fail = nil
	if _, _, err := pass(providers.Plan{Register: []providers.Target{n4}, Deregister: []providers.Target{o4}}); err != nil {
		t.Fatal(err)
	}
	wantApplied("n4 again after the failure", providers.Plan{Register: []providers.Target{n4}})
	wantWoken("before n4 settled", false)
	prov.settleOldest()
	wantWoken("once n4 settled", true)
	if _, _, err := pass(providers.Plan{Deregister: []providers.Target{o4}}); err != nil {
		t.Fatal(err)
	}
	wantApplied("o4 after n4 settled", providers.Plan{Deregister: []providers.Target{o4}})
}
