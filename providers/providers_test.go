package providers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseLimitsRoundTrip(t *testing.T) {
	m, err := ParseLimits(" RegisterTargets=2:10, DescribeTargetHealth=0.5:3 ,")
	if err != nil {
		t.Fatal(err)
	}
	if m["RegisterTargets"] != (Limit{QPS: 2, Burst: 10}) || m["DescribeTargetHealth"] != (Limit{QPS: 0.5, Burst: 3}) || len(m) != 2 {
		t.Fatalf("parsed %v", m)
	}
	again, err := ParseLimits(FormatLimits(m))
	if err != nil || FormatLimits(again) != FormatLimits(m) {
		t.Errorf("round trip: %v %v", again, err)
	}
	for _, bad := range []string{"RegisterTargets", "RegisterTargets=2", "=1:1", "X=0:1", "X=1:0", "X=a:1", "X=1:b"} {
		if _, err := ParseLimits(bad); err == nil || !strings.Contains(err.Error(), "rate limit") {
			t.Errorf("%q: want an error naming the item, got %v", bad, err)
		}
	}
}

func TestBatches(t *testing.T) {
	items := make([]int, 1001)
	for i := range items {
		items[i] = i
	}
	bs := Batches(items, 200)
	if len(bs) != 6 || len(bs[5]) != 1 || bs[5][0] != 1000 {
		t.Fatalf("got %d batches, last %v", len(bs), bs[len(bs)-1])
	}
	total := 0
	for _, b := range bs {
		if len(b) > 200 {
			t.Errorf("batch of %d", len(b))
		}
		total += len(b)
	}
	if total != 1001 {
		t.Errorf("%d items in batches", total)
	}
	// Appending to a batch must not overwrite the next one.
	_ = append(bs[0], -1)
	if bs[1][0] != 200 {
		t.Error("batches share capacity")
	}
	if Batches([]int{}, 10) != nil {
		t.Error("no items, no batches")
	}
}

func TestErrorClasses(t *testing.T) {
	base := errors.New("boom")
	if ClassOf(base) != Transient || IsUserError(base) {
		t.Error("unclassified errors are transient")
	}
	e := Classify(NotFound, "", base)
	if ClassOf(e) != NotFound || !IsUserError(e) || !errors.Is(e, base) {
		t.Errorf("classified: %v", e)
	}
	if ClassOf(Classify(Throttled, "", e)) != NotFound {
		t.Error("a class once given is kept")
	}
	f := WithField("arn", fmt.Errorf("describing: %w", e))
	var pe *Error
	if !errors.As(f, &pe) || pe.Field != "arn" || ClassOf(f) != NotFound || !strings.HasPrefix(f.Error(), "arn: ") {
		t.Errorf("with field: %v", f)
	}
	if WithField("name", f) != f {
		t.Error("a field already named is kept")
	}
}

func TestBindingKeyStringNamesTheBalancerOnlyWhenThereIsOne(t *testing.T) {
	own := BindingKey{Namespace: "shop", Service: "web", Provider: "aws", Port: 80}
	if got := own.String(); got != "shop/web:80@aws" {
		t.Errorf("a Service's own binding reads %q, want the unchanged shop/web:80@aws", got)
	}
	backend := own
	backend.Balancer = "shop/front"
	if got := backend.String(); got != "shop/web:80@aws via shop/front" {
		t.Errorf("a balancer's backend reads %q", got)
	}
	if backend == own || backend.String() == own.String() {
		t.Error("a balancer's backend must not collide with the Service's own binding of the same port")
	}
}
