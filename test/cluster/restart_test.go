package cluster_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/childproc"
	"github.com/podlb/podlb/test/cluster"
)

// Restart kills etcd or kube-apiserver and starts it again as it was: the
// old process is gone, the state survives, and the API serves again.
func TestRestartKeepsStateAndServes(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)
	for i, component := range []string{"etcd", "kube-apiserver"} {
		name := "before-" + component
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		old := c.ProcessIDs()[component]
		if err := c.Restart(ctx, component, time.Second); err != nil {
			t.Fatalf("restarting %s: %v", component, err)
		}
		if childproc.Alive(old) {
			t.Errorf("%s: the killed process (pid %d) still runs", component, old)
		}
		if now := c.ProcessIDs()[component]; now == 0 || now == old {
			t.Errorf("%s: pid %d after the restart, %d before", component, now, old)
		}
		// etcd back does not mean the API server has reconnected yet.
		waitFor(t, ctx, "the API serves after restarting "+component, func() (bool, error) {
			_, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-" + component}}, metav1.CreateOptions{})
			return err == nil, nil
		})
		list, err := c.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(list.Items), 2*(i+1); got < want {
			t.Errorf("after restarting %s: %d ConfigMaps, want at least %d (state lost?)", component, got, want)
		}
	}
}
