package controller

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
)

// An Event repeated after eventCacheSize others is sent as a new Event:
// the broadcaster forgot it, so its memory stays bounded. With client-go's
// default cache the repeat would be a patch of the first Event's count.
func TestEventBroadcasterForgetsBeyondItsCache(t *testing.T) {
	cs := fake.NewClientset()
	b := newEventBroadcaster()
	defer b.Shutdown()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "podlb"})
	svc := func(i int) *corev1.ObjectReference {
		return &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: "web", Name: fmt.Sprintf("svc-%d", i), UID: types.UID(fmt.Sprint("uid-", i))}
	}
	rec.Event(svc(0), corev1.EventTypeWarning, "InvalidAnnotation", "the same problem")
	for i := 1; i <= eventCacheSize; i++ {
		rec.Event(svc(i), corev1.EventTypeWarning, "InvalidAnnotation", "another problem")
	}
	rec.Event(svc(0), corev1.EventTypeWarning, "InvalidAnnotation", "the same problem")

	want := eventCacheSize + 2
	var creates, patches map[string]int
	deadline := time.Now().Add(30 * time.Second)
	for {
		creates, patches = map[string]int{}, map[string]int{}
		for _, a := range cs.Actions() {
			switch a := a.(type) {
			case k8stesting.CreateAction:
				if e, ok := a.GetObject().(*corev1.Event); ok {
					creates[e.InvolvedObject.Name]++
				}
			case k8stesting.PatchAction:
				patches[a.GetName()]++
			}
		}
		sent := len(patches)
		for _, n := range creates {
			sent += n
		}
		if sent >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Events sent after 30 s", sent, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if creates["svc-0"] != 2 || len(patches) != 0 {
		t.Errorf("the repeat after %d other Events: %d Events created for svc-0, patches %v; want 2 and none", eventCacheSize, creates["svc-0"], patches)
	}
}
