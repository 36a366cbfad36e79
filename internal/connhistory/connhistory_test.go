package connhistory

import "testing"

func TestLogKeepsTheLatestRecordsByClient(t *testing.T) {
	var none Log[string]
	if r := none.Add("c", new(string)); r != nil {
		t.Errorf("a log of no records kept one")
	}
	l := Log[string]{Max: 2}
	rec := func(s string) *string { return &s }
	l.Add("a", rec("a1"))
	l.Add("b", rec("b1"))
	l.Add("a", rec("a2")) // a's port used again; the oldest entry (a1) goes
	if r, ok := l.Get("a"); !ok || *r != "a2" {
		t.Errorf("a: %v %v, want a2", r, ok)
	}
	l.Add("c", rec("c1")) // b1 goes
	if _, ok := l.Get("b"); ok {
		t.Error("b kept beyond the log's size")
	}
	if r, ok := l.Get("c"); !ok || *r != "c1" {
		t.Errorf("c: %v %v, want c1", r, ok)
	}
	if r, ok := l.Get("a"); !ok || *r != "a2" {
		t.Errorf("a's latest record lost with its older one: %v %v", r, ok)
	}
}
