package e2eutil

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
)

// IngressCloud is what the Ingress scenario needs to know of one cloud.
type IngressCloud struct {
	// Name is the provider's ("aws", "gcp").
	Name string
	// Annotations of the Ingress (the cloud's load-balancer annotation).
	Annotations map[string]string
	// Address is the load balancer's address as status.loadBalancer
	// should show it, from its podlb.io/status entry.
	Address func(cs *loadbalancers.CloudStatus) networkingv1.IngressLoadBalancerIngress
	// DataPath is the emulator's address serving the load balancer's HTTP
	// port, "" while it serves nothing.
	DataPath func(cs *loadbalancers.CloudStatus) string
	// NoRoute is the status code a request no route matches gets (the
	// clouds differ; see providers/gcp EnsureHTTP).
	NoRoute int
	// Leftovers lists what podlb created for the load balancer and its
	// backends that still exists in the emulator, given the last status.
	Leftovers func(t *testing.T, cs *loadbalancers.CloudStatus) []string
}

// IngressScenario runs, in namespace ns, an Ingress of class with two
// hosts and three paths over two gated Deployments of 4 pods:
//
//   - routes: requests through the load balancer reach the right
//     Service's pods, by host and by path, with Kubernetes prefix
//     semantics, and a host no rule names gets the cloud's answer;
//   - rollout: a rolling update of both Deployments under steady traffic
//     through the load balancer fails no request;
//   - deletion: deleting the Ingress releases it and leaves nothing podlb
//     created in the cloud nor in its ledger.
func IngressScenario(t *testing.T, k Kube, ns, class string, cloud IngressCloud) {
	t.Helper()
	k.Create(t, WebService(ns, "web", nil), RollingDeployment(ns, "web", 4, true),
		WebService(ns, "api", nil), RollingDeployment(ns, "api", 4, true))
	k.Create(t, Ingress(ns, "front", class, cloud.Annotations,
		HostRule("shop.example.com", PrefixPath("/api", "api", 80), PrefixPath("/", "web", 80)),
		HostRule("admin.example.com", PrefixPath("/", "api", 80))))

	var last *loadbalancers.CloudStatus
	var addr string
	ready := IngressServing(t, k, ns, "front", cloud, map[string]int{ns + "/web:80": 4, ns + "/api:80": 4}, []string{"web", "api"}, &addr, &last)
	Eventually(t, 2*time.Minute, "load balancer provisioned, every backend healthy and every gate True", ready)

	t.Run("routes", func(t *testing.T) {
		for _, c := range []struct{ host, path, app string }{
			{"shop.example.com", "/", "web"},
			{"shop.example.com", "/cart", "web"},
			{"shop.example.com", "/api", "api"},
			{"shop.example.com", "/api/orders", "api"},
			// Prefix matches path elements: /apis is not under /api.
			{"shop.example.com", "/apis", "web"},
			{"admin.example.com", "/", "api"},
			{"admin.example.com", "/users", "api"},
		} {
			for range 5 {
				pod, code, err := GetThrough(addr, c.host, c.path)
				if err != nil || code != http.StatusOK || !strings.HasPrefix(pod, c.app+"-") {
					t.Errorf("%s%s: answered by %q (HTTP %d, %v), want a %s pod", c.host, c.path, pod, code, err, c.app)
				}
			}
		}
		if _, code, err := GetThrough(addr, "other.example.com", "/"); err != nil || code != cloud.NoRoute {
			t.Errorf("a host no rule names: HTTP %d (%v), want %d", code, err, cloud.NoRoute)
		}
		if evs := k.AllWarningsOf(t, ns, "front", "Ingress"); len(evs) != 0 {
			t.Errorf("warnings on a valid Ingress: %v", evs)
		}
	})

	t.Run("rollout", func(t *testing.T) {
		loads := map[string]*loadgen.Load{
			"web": loadgen.StartHost(addr, "shop.example.com", 4, 25*time.Millisecond),
			"api": loadgen.StartHost(addr, "admin.example.com", 4, 25*time.Millisecond),
		}
		time.Sleep(time.Second) // a baseline before the rollouts
		k.Restart(t, ns, "web")
		k.Restart(t, ns, "api")
		k.WaitRollout(t, ns, "web", 3*time.Minute)
		k.WaitRollout(t, ns, "api", 3*time.Minute)
		Eventually(t, time.Minute, "new pods healthy behind the load balancer", ready)
		time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
		for app, load := range loads {
			res := load.Stop()
			t.Logf("%s: %d ok, %d failed, answered by %d pods", app, res.OK, res.Failed, len(res.Backends))
			if res.OK < 200 {
				t.Errorf("%s: only %d requests got through", app, res.OK)
			}
			if res.Failed != 0 {
				t.Errorf("%s: the gated rollout failed %d requests: %v", app, res.Failed, res.Errors)
			}
			for pod := range res.Backends {
				if !strings.HasPrefix(pod, app+"-") {
					t.Errorf("%s: answered by pod %s", app, pod)
				}
			}
		}
	})

	t.Run("deletion", func(t *testing.T) {
		if err := k.Client.NetworkingV1().Ingresses(ns).Delete(ctx, "front", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 2*time.Minute, "Ingress released by its finalizer", func() error {
			if ing := k.GetIngress(t, ns, "front"); ing != nil {
				return fmt.Errorf("still there, finalizers %v, status %s", ing.Finalizers, ing.Annotations["podlb.io/status"])
			}
			return nil
		})
		if left := cloud.Leftovers(t, last); len(left) != 0 {
			t.Errorf("left in the cloud: %v", left)
		}
		cms, err := k.Client.CoreV1().ConfigMaps("podlb-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range cms.Items {
			if cm.Annotations["podlb.io/balancer"] == ns+"/front" {
				t.Errorf("ledger entry %s of the balancer's binding %s:%s left", cm.Name, cm.Annotations["podlb.io/service"], cm.Annotations["podlb.io/port"])
			}
		}
	})
}

// IngressServing returns a check that passes once the Ingress's load
// balancer on cloud serves: its address in status.loadBalancer, each of
// backends (by ID) with that many targets wanted and healthy, every pod of
// apps gated True and Ready, and a data path. It leaves the data path's
// address in addr and the cloud's status in last.
func IngressServing(t *testing.T, k Kube, ns, name string, cloud IngressCloud, backends map[string]int, apps []string, addr *string, last **loadbalancers.CloudStatus) func() error {
	return func() error {
		ing, st := k.GetIngress(t, ns, name), k.IngressStatus(t, ns, name)
		if ing == nil || st == nil || st.Clouds[cloud.Name] == nil {
			return fmt.Errorf("no status yet")
		}
		cs := st.Clouds[cloud.Name]
		if cs.Error != "" {
			return fmt.Errorf("%s: %s", cloud.Name, cs.Error)
		}
		want := cloud.Address(cs)
		if got := ing.Status.LoadBalancer.Ingress; (want.Hostname == "" && want.IP == "") || !slices.ContainsFunc(got, func(a networkingv1.IngressLoadBalancerIngress) bool {
			return a.Hostname == want.Hostname && a.IP == want.IP
		}) {
			return fmt.Errorf("status.loadBalancer.ingress %+v, want it to hold %+v", got, want)
		}
		for id, n := range backends {
			if b := cs.Backends[id]; b == nil || b.Desired != n || b.Healthy != n || b.Error != "" {
				return fmt.Errorf("backend %s: %+v", id, b)
			}
		}
		for _, app := range apps {
			for _, p := range k.LivePods(t, ns, app) {
				if g := GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !IsReady(&p) {
					return fmt.Errorf("pod %s gate %+v", p.Name, g)
				}
			}
		}
		if *addr = cloud.DataPath(cs); *addr == "" {
			return fmt.Errorf("the load balancer serves nothing yet: %+v", cs.Details)
		}
		*last = cs
		return nil
	}
}

// GetThrough sends one request for host and path to a load balancer at
// addr and returns the answering pod's name and the status code.
func GetThrough(addr, host, path string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", 0, err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), resp.StatusCode, err
}
