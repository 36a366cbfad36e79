package gcp

import (
	"strings"
	"testing"

	"github.com/podlb/podlb/providers"
)

func TestNEGsOfAnotherBindingAreRefusedNamingTheOwner(t *testing.T) {
	e := newEnv(t)
	owner := binding(`{"name":"taken"}`, zones3...)
	e.ensure(owner)
	intruder := binding(`{"name":"taken"}`, zones3...)
	intruder.Key.Service = "intruder"
	_, err := e.p.Ensure(e.ctx, intruder)
	wantClass(t, err, providers.Invalid, "name")
	if !strings.Contains(err.Error(), "cluster "+cluster+", Service shop/web port 80") {
		t.Errorf("error %v does not name the owner", err)
	}
	// Even when its zones differ: one name, one owner.
	intruder.Zones = []string{"elsewhere-a"}
	_, err = e.p.Ensure(e.ctx, intruder)
	wantClass(t, err, providers.Invalid, "name")
}

func TestOwnedGroupsListsThisClustersNEGsOncePerName(t *testing.T) {
	e := newEnv(t)
	e.ensure(binding(`{"name":"mine"}`, zones3...))
	other := e.p.opts
	other.Cluster = "other"
	p2, err := New(e.ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	b := binding(`{"name":"theirs"}`, zones3[0])
	if _, err := p2.Ensure(e.ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err := e.p.OwnedGroups(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := providers.OwnedGroup{Key: b.Key, Ref: Ref("mine", "")}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("owned groups %+v, want [%+v]", got, want)
	}
	if err := e.p.Release(e.ctx, got[0].Key, got[0].Ref, nil); err != nil {
		t.Fatal(err)
	}
	for _, z := range zones3 {
		if _, ok := e.negExists(z, "mine"); ok {
			t.Errorf("NEG mine left in %s", z)
		}
	}
	if _, ok := e.negExists(zones3[0], "theirs"); !ok {
		t.Error("another cluster's NEG deleted")
	}
}
