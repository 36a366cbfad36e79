package targets

import (
	"context"
	"fmt"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/podlb/podlb/providers"
)

// After a start every Service asks the ledger for its bindings once: one
// list of every entry answers them all, and memory stays right as the
// leader writes and deletes. Once a write races another writer, lists go
// to the API server again.
func TestLedgerBindingsComeFromOneListAfterStart(t *testing.T) {
	ctx := context.Background()
	seed := fake.NewClientBuilder().Build()
	writer := NewLedger(seed, seed, "podlb-system")
	for _, k := range []providers.BindingKey{awsKey("a", 80), awsKey("a", 443), awsKey("b", 80)} {
		if err := writer.Put(ctx, k, ledgerRecord(k, "arn-"+k.Service, "10.0.0.5:8080").Entry); err != nil {
			t.Fatal(err)
		}
	}
	lists := 0
	c := interceptor.NewClient(seed, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		lists++
		return c.List(ctx, list, opts...)
	}})
	l := NewLedger(c, c, "podlb-system")
	bindings := func(svc string) string {
		t.Helper()
		keys, err := l.Bindings(ctx, "shop", svc)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(keys)
	}
	if got, want := bindings("a"), fmt.Sprint([]providers.BindingKey{awsKey("a", 443), awsKey("a", 80)}); got != want {
		t.Errorf("bindings of a: %s, want %s", got, want)
	}
	if got, want := bindings("b"), fmt.Sprint([]providers.BindingKey{awsKey("b", 80)}); got != want {
		t.Errorf("bindings of b: %s, want %s", got, want)
	}
	if bindings("none") != "[]" {
		t.Error("a Service without entries has bindings")
	}
	if lists != 1 {
		t.Errorf("%d lists for three Services, want the one that loads every entry", lists)
	}
	// Writes and deletes of the leader keep memory right.
	if err := l.Put(ctx, awsKey("b", 443), ledgerRecord(awsKey("b", 443), "arn-b", "10.0.0.6:8080").Entry); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(ctx, awsKey("b", 80)); err != nil {
		t.Fatal(err)
	}
	if got, want := bindings("b"), fmt.Sprint([]providers.BindingKey{awsKey("b", 443)}); got != want || lists != 1 {
		t.Errorf("after a write and a delete: %s (%d lists), want %s from memory", got, lists, want)
	}
	// Another writer changes an entry: this ledger's next write conflicts,
	// and from then on it asks the API server.
	if err := writer.Put(ctx, awsKey("a", 80), ledgerRecord(awsKey("a", 80), "arn-a", "10.0.0.9:8080").Entry); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, awsKey("a", 80), ledgerRecord(awsKey("a", 80), "arn-a", "10.0.0.7:8080").Entry); err == nil {
		t.Fatal("a write over another writer's change succeeded")
	}
	if got, want := bindings("a"), fmt.Sprint([]providers.BindingKey{awsKey("a", 443), awsKey("a", 80)}); got != want || lists != 2 {
		t.Errorf("after a raced write: %s (%d lists), want %s from a new list", got, lists, want)
	}
}
