package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/test/cluster"
)

// A killed node's pod stops serving at once, its request in flight cut,
// while Kubernetes still sees it Ready and cannot finish deleting it: no
// kubelet is left. Losing the node removes the Node and the pod, and the
// restored node runs pods again.
func TestKilledNodeStopsServingUntilLost(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)
	node := c.Nodes[len(c.Nodes)-1].Name
	restored := false
	t.Cleanup(func() {
		if restored {
			return
		}
		ctx := context.Background()
		if err := c.LoseNode(ctx, node); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("losing node %s: %v", node, err)
		}
		if err := c.RestoreNode(ctx, node); err != nil {
			t.Errorf("node %s back: %v", node, err)
		}
	})
	podOn := func(name string) string {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{
				NodeName:   node,
				Containers: []corev1.Container{{Name: "web", Image: "sim", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			},
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var ip string
		waitFor(t, ctx, name+" Ready", func() (bool, error) {
			p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			ip = p.Status.PodIP
			r := podCondition(p, corev1.PodReady)
			return r != nil && r.Status == corev1.ConditionTrue, nil
		})
		if body, code := get(t, ip, 8080); body != name || code != http.StatusOK {
			t.Fatalf("%s answered %d %q", name, code, body)
		}
		return ip
	}
	ip := podOn("doomed")

	inFlight := make(chan error, 1)
	go func() {
		resp, err := cluster.HTTPClient(time.Minute).Get(fmt.Sprintf("http://%s:8080/?sleep=30s", ip))
		if err == nil {
			resp.Body.Close()
		}
		inFlight <- err
	}()
	waitFor(t, ctx, "the slow request under way", func() (bool, error) { return c.Sim.Requests(ns, "doomed") >= 2, nil })
	if err := c.KillNode(node); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-inFlight:
		if err == nil {
			t.Error("the request in flight was answered by a dead machine")
		}
	case <-time.After(5 * time.Second):
		t.Error("the request in flight still runs 5 s after its machine died")
	}
	if _, _, err := tryGet(ip, 8080); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("the dead machine's pod: want connection refused, got %v", err)
	}

	// Kubernetes has not noticed: the pod stays as it was, and a graceful
	// delete, which a kubelet would finish at once, is never finished.
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "doomed", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the dead machine's pod was deleted without Kubernetes noticing: %v", err)
	}
	if r := podCondition(p, corev1.PodReady); r == nil || r.Status != corev1.ConditionTrue {
		t.Errorf("the dead machine's pod changed Ready to %+v with no kubelet to say so", r)
	}

	if err := c.LoseNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the pod and the Node gone", func() (bool, error) {
		_, perr := c.Client.CoreV1().Pods(ns).Get(ctx, "doomed", metav1.GetOptions{})
		_, nerr := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		return apierrors.IsNotFound(perr) && apierrors.IsNotFound(nerr), nil
	})
	if err := c.RestoreNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	restored = true
	podOn("reborn")
}
