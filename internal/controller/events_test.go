package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
)

func serviceRef(i int) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: "web", Name: fmt.Sprintf("svc-%d", i), UID: types.UID(fmt.Sprint("uid-", i))}
}

// waitForEvent waits until an Event about ref with the message is stored.
// The broadcaster sends Events in the order they were recorded, so every
// Event recorded before it has been sent too.
func waitForEvent(t *testing.T, cs *fake.Clientset, ref *corev1.ObjectReference, message string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, err := cs.CoreV1().Events(ref.Namespace).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == ref.Name && e.Message == message {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Event %q about %s after 30 s", message, ref.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An Event repeated after eventCacheSize others is sent as a new Event:
// the broadcaster forgot it, so its memory stays bounded. With client-go's
// default cache the repeat would be a patch of the first Event's count.
func TestEventRecorderForgetsBeyondItsCache(t *testing.T) {
	cs := fake.NewClientset()
	rec, stop := newEventRecorder(cs.CoreV1().Events(""), scheme.Scheme, logr.Discard())
	defer stop()
	rec.Event(serviceRef(0), corev1.EventTypeWarning, "InvalidAnnotation", "the same problem")
	for i := 1; i <= eventCacheSize; i++ {
		rec.Event(serviceRef(i), corev1.EventTypeWarning, "InvalidAnnotation", "another problem")
	}
	rec.Event(serviceRef(0), corev1.EventTypeWarning, "InvalidAnnotation", "the same problem")
	rec.Event(serviceRef(-1), corev1.EventTypeNormal, "Done", "sentinel")
	waitForEvent(t, cs, serviceRef(-1), "sentinel")

	creates, patches := 0, 0
	for _, a := range cs.Actions() {
		switch a := a.(type) {
		case k8stesting.CreateAction:
			if e, ok := a.GetObject().(*corev1.Event); ok && e.InvolvedObject.Name == "svc-0" {
				creates++
			}
		case k8stesting.PatchAction:
			patches++
		}
	}
	if creates != 2 || patches != 0 {
		t.Errorf("the repeat after %d other Events: %d Events created for svc-0, %d patches; want 2 and none", eventCacheSize, creates, patches)
	}
}

// Every Event recorded is written once: client-go combines the eleventh
// and later distinct messages of one reason on one object into a single
// Event whose count grows. A second sink would write a second combined
// Event, and every later problem would count twice.
func TestEventRecorderWritesEachEventOnce(t *testing.T) {
	cs := fake.NewClientset()
	rec, stop := newEventRecorder(cs.CoreV1().Events(""), scheme.Scheme, logr.Discard())
	defer stop()
	const problems = 14
	for i := range problems {
		rec.Eventf(serviceRef(0), corev1.EventTypeWarning, "InvalidAnnotation", "problem %d", i)
	}
	rec.Event(serviceRef(-1), corev1.EventTypeNormal, "Done", "sentinel")
	waitForEvent(t, cs, serviceRef(-1), "sentinel")
	// A second sink would run beside the first, not after it: give it
	// the time the first took.
	time.Sleep(100 * time.Millisecond)

	evs, err := cs.CoreV1().Events("web").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var counted int32
	combined := 0
	for _, e := range evs.Items {
		if e.InvolvedObject.Name != "svc-0" {
			continue
		}
		counted += max(e.Count, 1)
		if strings.HasPrefix(e.Message, "(combined from similar events)") {
			combined++
		}
	}
	if counted != problems || combined != 1 {
		t.Errorf("%d problems recorded: Events count %d, %d of them combined; want %d and one", problems, counted, combined, problems)
	}
}
