package controller

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
)

// Work handed to a controller's queue before the controller starts is
// enqueued when it starts, not dropped: the Service controller may start
// first and enqueue bindings and gates that no watch event brings again.
func TestQueueRefKeepsWorkAddedBeforeStart(t *testing.T) {
	ref := newQueueRef[string]()
	ref.addAfter("early", time.Hour)
	ref.addAfter("early", 0) // the sooner time wins
	ref.addAfter("other", 0)

	q := workqueue.NewTypedRateLimitingQueue[string](workqueue.DefaultTypedControllerRateLimiter[string]())
	defer q.ShutDown()
	if err := ref.source().Start(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	ref.addAfter("late", 0)
	got := map[string]bool{}
	deadline := time.After(5 * time.Second)
	for len(got) < 3 {
		done := make(chan string, 1)
		go func() {
			item, _ := q.Get()
			done <- item
		}()
		select {
		case item := <-done:
			got[item] = true
			q.Done(item)
		case <-deadline:
			t.Fatalf("queue holds only %v; want early, other and late", got)
		}
	}
}
