package e2eutil

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
)

// IngressEditsScenario edits an Ingress of class in namespace ns under
// steady traffic to the paths the edits do not touch and to the path
// whose backend is switched:
//
//   - a path to a new backend is added: it serves once that backend's
//     pods are healthy;
//   - a path moves to a backend the load balancer did not have: its
//     requests stay on the old backend until the new one's pods are
//     healthy, so none of them fails, then go to the new one, and the old
//     backend's binding is released;
//   - the added path is removed: its requests fall back to "/".
//
// Requests to "/" (never edited) and to the switched path fail none.
func IngressEditsScenario(t *testing.T, k Kube, ns, class string, cloud IngressCloud) {
	t.Helper()
	const host = "shop.example.com"
	k.Create(t, WebService(ns, "web", nil), RollingDeployment(ns, "web", 3, true),
		WebService(ns, "api", nil), RollingDeployment(ns, "api", 3, true),
		WebService(ns, "next", nil), RollingDeployment(ns, "next", 3, true),
		WebService(ns, "cart", nil), RollingDeployment(ns, "cart", 2, true))
	k.Create(t, Ingress(ns, "edits", class, cloud.Annotations,
		HostRule(host, PrefixPath("/api", "api", 80), PrefixPath("/", "web", 80))))
	var addr string
	var last *loadbalancers.CloudStatus
	Eventually(t, 2*time.Minute, "load balancer serving web and api",
		IngressServing(t, k, ns, "edits", cloud, map[string]int{ns + "/web:80": 3, ns + "/api:80": 3}, []string{"web", "api"}, &addr, &last))

	root := loadgen.StartPath(addr, host, "/", 3, 25*time.Millisecond)
	switched := loadgen.StartPath(addr, host, "/api/orders", 3, 25*time.Millisecond)
	time.Sleep(time.Second) // a baseline before the edits

	answeredBy := func(path, app string) func() error {
		return func() error {
			pod, code, err := GetThrough(addr, host, path)
			if err != nil || code != http.StatusOK || !strings.HasPrefix(pod, app+"-") {
				return fmt.Errorf("%s answered by %q (HTTP %d, %v), want a %s pod", path, pod, code, err, app)
			}
			return nil
		}
	}
	editPaths := func(edit func([]networkingv1.HTTPIngressPath) []networkingv1.HTTPIngressPath) {
		t.Helper()
		ing := k.GetIngress(t, ns, "edits")
		rule := &ing.Spec.Rules[0].HTTP.Paths
		*rule = edit(*rule)
		if _, err := k.Client.NetworkingV1().Ingresses(ns).Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Added: /cart goes to a backend of its own.
	editPaths(func(p []networkingv1.HTTPIngressPath) []networkingv1.HTTPIngressPath {
		return append([]networkingv1.HTTPIngressPath{PrefixPath("/cart", "cart", 80)}, p...)
	})
	Eventually(t, 2*time.Minute, "/cart served by the cart pods", answeredBy("/cart/items", "cart"))

	// Switched: /api moves to next, which the load balancer never had.
	editPaths(func(p []networkingv1.HTTPIngressPath) []networkingv1.HTTPIngressPath {
		for i := range p {
			if p[i].Path == "/api" {
				p[i] = PrefixPath("/api", "next", 80)
			}
		}
		return p
	})
	sawHeld := false
	Eventually(t, 2*time.Minute, "/api served by the next pods", func() error {
		if st := k.IngressStatus(t, ns, "edits"); st != nil && len(st.Switching) > 0 {
			sawHeld = true
		}
		return answeredBy("/api/orders", "next")()
	})
	t.Logf("the switch was seen held in status: %v", sawHeld)
	Eventually(t, time.Minute, "the api backend's binding released", func() error {
		st := k.IngressStatus(t, ns, "edits")
		if st == nil || st.Clouds[cloud.Name] == nil {
			return fmt.Errorf("no status")
		}
		if b, ok := st.Clouds[cloud.Name].Backends[ns+"/api:80"]; ok {
			return fmt.Errorf("api still a backend: %+v", b)
		}
		if len(st.Switching) > 0 {
			return fmt.Errorf("still switching: %v", st.Switching)
		}
		return nil
	})

	// Removed: /cart falls back to "/".
	editPaths(func(p []networkingv1.HTTPIngressPath) []networkingv1.HTTPIngressPath {
		return slices.DeleteFunc(p, func(x networkingv1.HTTPIngressPath) bool { return x.Path == "/cart" })
	})
	Eventually(t, time.Minute, "/cart served by web again", answeredBy("/cart/items", "web"))
	time.Sleep(time.Second)

	for name, c := range map[string]struct {
		load *loadgen.Load
		apps []string
	}{"/": {root, []string{"web"}}, "/api/orders": {switched, []string{"api", "next"}}} {
		res := c.load.Stop()
		t.Logf("%s: %d ok, %d failed, answered by %d pods", name, res.OK, res.Failed, len(res.Backends))
		if res.OK < 200 {
			t.Errorf("%s: only %d requests got through", name, res.OK)
		}
		if res.Failed != 0 {
			t.Errorf("%s: the edits failed %d requests: %v", name, res.Failed, res.Errors)
		}
		for pod := range res.Backends {
			if !slices.ContainsFunc(c.apps, func(app string) bool { return strings.HasPrefix(pod, app+"-") }) {
				t.Errorf("%s: answered by pod %s, want one of %v", name, pod, c.apps)
			}
		}
	}
	if evs := k.AllWarningsOf(t, ns, "edits", "Ingress"); len(evs) != 0 {
		t.Errorf("warnings on valid edits: %v", evs)
	}
}
