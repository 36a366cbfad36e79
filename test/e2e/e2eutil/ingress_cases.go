package e2eutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
)

// IngressCases is what the Ingress cases of this file need of one cloud
// beyond IngressScenario's.
type IngressCases struct {
	IngressCloud
	// UserResource creates, through the cloud's own API, a resource of
	// the user's that sits on or uses the load balancer cs describes
	// (whose backend "web" serves host shop.example.com).
	UserResource func(t *testing.T, cs *loadbalancers.CloudStatus) UserResource
	// GoodAnnotations are the annotations of the Ingress that serves
	// beside the bad ones; nil: Annotations.
	GoodAnnotations func(t *testing.T) map[string]string
	// BadAnnotations are the cloud's bad load-balancer annotations, given
	// the good Ingress's annotations and status (its backend is Service
	// "web").
	BadAnnotations func(t *testing.T, good map[string]string, cs *loadbalancers.CloudStatus) []BadIngress
}

// UserResource is a resource of the user's own on podlb's load balancer.
type UserResource struct {
	// Name is how podlb's Warning names it.
	Name string
	// Check says why the resource is gone or no longer does its job.
	Check func() error
	// Leftovers lists what podlb created for the load balancer that
	// still exists, except what the user's resource keeps.
	Leftovers func() []string
}

// BadIngress is an Ingress with one problem, and the texts podlb's
// Warning about it must contain (the field first).
type BadIngress struct {
	Name string
	// Annotations nil: the cloud's. Rules nil: <Name>.example.com / to
	// Service web port 80.
	Annotations map[string]string
	Rules       []networkingv1.IngressRule
	Want        []string
}

// AnnotationsWith are the cloud's annotations with the load-balancer
// annotation's JSON object extended by fields.
func (c IngressCloud) AnnotationsWith(t testing.TB, fields map[string]any) map[string]string {
	t.Helper()
	key := loadbalancers.CloudAnnotations[c.Name]
	spec := map[string]any{}
	if raw := c.Annotations[key]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &spec); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	for k, v := range fields {
		spec[k] = v
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range c.Annotations {
		out[k] = v
	}
	out[key] = string(raw)
	return out
}

// ServingIngress waits until Ingress name serves on cloud: its status
// names the load balancer and an address, each backend in backends has
// want healthy targets, and the load balancer's HTTP port answers. It
// returns the cloud's status and that address.
func ServingIngress(t *testing.T, k Kube, ns, name string, cloud IngressCloud, want int, backends ...string) (*loadbalancers.CloudStatus, string) {
	t.Helper()
	var cs *loadbalancers.CloudStatus
	var addr string
	Eventually(t, 2*time.Minute, "Ingress "+name+" served with every backend healthy", func() error {
		st := k.IngressStatus(t, ns, name)
		if st == nil || st.Clouds[cloud.Name] == nil {
			return fmt.Errorf("no status yet")
		}
		c := st.Clouds[cloud.Name]
		if c.Error != "" {
			return fmt.Errorf("%s: %s", cloud.Name, c.Error)
		}
		for _, app := range backends {
			id := ns + "/" + app + ":80"
			if b := c.Backends[id]; b == nil || b.Desired != want || b.Healthy != want || b.Error != "" {
				return fmt.Errorf("backend %s: %+v", id, b)
			}
		}
		if addr = cloud.DataPath(c); addr == "" {
			return fmt.Errorf("the load balancer serves nothing yet: %+v", c.Details)
		}
		cs = c
		return nil
	})
	return cs, addr
}

// expectServedBy checks that requests for host and path get 200 from a
// pod of app.
func expectServedBy(t *testing.T, addr, host, path, app string) {
	t.Helper()
	for range 3 {
		pod, code, err := GetThrough(addr, host, path)
		if err != nil || code != http.StatusOK || !strings.HasPrefix(pod, app+"-") {
			t.Errorf("%s%s: answered by %q (HTTP %d, %v), want a %s pod", host, path, pod, code, err, app)
		}
	}
}

// startLoad sends steady requests for host to addr; stop ends them
// (once, however often it is called) and gives the result.
func startLoad(addr, host string) (stop func() loadgen.Result) {
	return sync.OnceValue(loadgen.StartHost(addr, host, 4, 25*time.Millisecond).Stop)
}

// expectNoFailures stops the load and checks that every request
// succeeded, answered by a pod of app.
func expectNoFailures(t *testing.T, what, app string, stop func() loadgen.Result) {
	t.Helper()
	res := stop()
	t.Logf("%s: %d ok, %d failed, answered by %d pods", what, res.OK, res.Failed, len(res.Backends))
	if res.OK < 100 {
		t.Errorf("%s: only %d requests got through", what, res.OK)
	}
	if res.Failed != 0 {
		t.Errorf("%s: %d requests failed: %v", what, res.Failed, res.Errors)
	}
	for pod := range res.Backends {
		if !strings.HasPrefix(pod, app+"-") {
			t.Errorf("%s: answered by pod %s, not a %s pod", what, pod, app)
		}
	}
}

// ExpectIngressWarning waits for a Warning on Ingress name containing
// every text of want.
func (k Kube) ExpectIngressWarning(t *testing.T, ns, name string, timeout time.Duration, want ...string) {
	t.Helper()
	Eventually(t, timeout, "a Warning on Ingress "+name+" containing "+strings.Join(want, " and "), func() error {
		evs, err := Events(ctx, k.Client, ns, name, "Ingress")
		if err != nil {
			return err
		}
		var msgs []string
		for _, e := range evs {
			if e.Type == corev1.EventTypeWarning && containsAll(e.Message, want) {
				return nil
			}
			msgs = append(msgs, e.Type+" "+e.Reason+": "+e.Message)
		}
		return fmt.Errorf("events: %q", msgs)
	})
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// DeleteIngress deletes an Ingress and waits until its finalizer let it
// go.
func (k Kube) DeleteIngress(t *testing.T, ns, name string) {
	t.Helper()
	if err := k.Client.NetworkingV1().Ingresses(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 2*time.Minute, "Ingress "+name+" released by its finalizer", func() error {
		if ing := k.GetIngress(t, ns, name); ing != nil {
			return fmt.Errorf("still there, finalizers %v, status %s", ing.Finalizers, ing.Annotations["podlb.io/status"])
		}
		return nil
	})
}

// IngressUngatedControl is the negative control of IngressScenario's
// rollout: the same rolling update of 4 pods under the same load through
// the load balancer, without the readiness gate, must fail requests.
// Otherwise the gated rollout's 0 failed says nothing about the gate.
func IngressUngatedControl(t *testing.T, k Kube, ns, class string, cloud IngressCloud) {
	t.Helper()
	k.Create(t, WebService(ns, "plain", nil), RollingDeployment(ns, "plain", 4, false))
	k.Create(t, Ingress(ns, "plain", class, cloud.Annotations, HostRule("plain.example.com", PrefixPath("/", "plain", 80))))
	_, addr := ServingIngress(t, k, ns, "plain", cloud, 4, "plain")

	load := loadgen.StartHost(addr, "plain.example.com", 4, 25*time.Millisecond)
	time.Sleep(time.Second) // a baseline before the rollout
	k.Restart(t, ns, "plain")
	k.WaitRollout(t, ns, "plain", 3*time.Minute)
	ServingIngress(t, k, ns, "plain", cloud, 4, "plain")
	time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
	res := load.Stop()
	t.Logf("ungated rollout: %d ok, %d failed", res.OK, res.Failed)
	if res.OK < 100 {
		t.Errorf("only %d requests got through", res.OK)
	}
	if res.Failed == 0 {
		t.Errorf("the ungated rollout through the load balancer failed no request (%d ok): the gated rollout's 0 failed cannot show the gate's effect", res.OK)
	}
}

// IngressGroupCase runs two Ingresses of one group over gated "web"
// (shop.example.com) and "api" (admin.example.com) in namespace ns:
//
//   - they share one load balancer, and each one's route is served;
//   - a third member claiming shop.example.com / for "api" is refused
//     with a Warning naming the field and the holder, while "shop"
//     keeps serving under steady load (0 failed) until the conflict is
//     removed and after;
//   - a resource of the user's own on the load balancer survives podlb's
//     edits and the deletion of member "admin";
//   - deleting the last member is not held by the user's resource: the
//     Ingress goes with a Warning naming it, podlb's other resources and
//     ledger entries go, the user's resource stays and works.
func IngressGroupCase(t *testing.T, k Kube, ns, class string, cloud IngressCases) {
	t.Helper()
	group := "g-" + ns
	grouped := cloud.AnnotationsWith(t, map[string]any{"group": group})
	k.Create(t, WebService(ns, "web", nil), RollingDeployment(ns, "web", 2, true),
		WebService(ns, "api", nil), RollingDeployment(ns, "api", 2, true))
	k.Create(t, Ingress(ns, "shop", class, grouped, HostRule("shop.example.com", PrefixPath("/", "web", 80))))
	k.Create(t, Ingress(ns, "admin", class, grouped, HostRule("admin.example.com", PrefixPath("/", "api", 80))))

	shop, addr := ServingIngress(t, k, ns, "shop", cloud.IngressCloud, 2, "web", "api")
	admin, _ := ServingIngress(t, k, ns, "admin", cloud.IngressCloud, 2, "web", "api")
	if a, b := cloud.Address(shop), cloud.Address(admin); a.Hostname != b.Hostname || a.IP != b.IP || cloud.DataPath(shop) != cloud.DataPath(admin) {
		t.Fatalf("the members are on different load balancers: %+v %v and %+v %v", a, shop.Details, b, admin.Details)
	}
	for _, name := range []string{"shop", "admin"} {
		if st := k.IngressStatus(t, ns, name); st.Balancer != group {
			t.Errorf("%s: status balancer %q, want the group %q", name, st.Balancer, group)
		}
	}
	expectServedBy(t, addr, "shop.example.com", "/", "web")
	expectServedBy(t, addr, "admin.example.com", "/", "api")

	load := startLoad(addr, "shop.example.com")
	defer load()
	t.Run("conflict", func(t *testing.T) {
		k.Create(t, Ingress(ns, "thief", class, grouped, HostRule("shop.example.com", PrefixPath("/", "api", 80))))
		k.ExpectIngressWarning(t, ns, "thief", time.Minute, "spec.rules[0].http.paths[0]", "already goes to "+ns+"/web:80", "Ingress "+ns+"/shop")
		time.Sleep(2 * time.Second) // traffic while the conflict stands
		expectServedBy(t, addr, "shop.example.com", "/", "web")
		expectServedBy(t, addr, "admin.example.com", "/", "api")
		k.DeleteIngress(t, ns, "thief")
		for _, name := range []string{"shop", "admin"} {
			if evs := k.AllWarningsOf(t, ns, name, "Ingress"); len(evs) != 0 {
				t.Errorf("Warnings on %s, which holds its routes: %v", name, evs)
			}
		}
	})

	// Made on the test, not a subtest: its clean-up waits for the end.
	user := cloud.UserResource(t, shop)
	if err := user.Check(); err != nil {
		t.Fatalf("the user's resource does not work to begin with: %v", err)
	}
	t.Run("user resource survives a member's deletion", func(t *testing.T) {
		k.DeleteIngress(t, ns, "admin")
		ServingIngress(t, k, ns, "shop", cloud.IngressCloud, 2, "web")
		if err := user.Check(); err != nil {
			t.Errorf("after a member's deletion: %v", err)
		}
		if _, code, err := GetThrough(addr, "admin.example.com", "/"); err != nil || code != cloud.NoRoute {
			t.Errorf("the deleted member's host: HTTP %d (%v), want %d", code, err, cloud.NoRoute)
		}
		time.Sleep(time.Second) // traffic after the edit
		expectNoFailures(t, "shop through the conflict and the edit", "web", load)
	})
	t.Run("last member's deletion", func(t *testing.T) {
		k.DeleteIngress(t, ns, "shop")
		k.ExpectIngressWarning(t, ns, "shop", 10*time.Second, "load balancer "+group, "podlb did not create", user.Name)
		if err := user.Check(); err != nil {
			t.Errorf("the user's resource after the last member's deletion: %v", err)
		}
		if left := user.Leftovers(); len(left) != 0 {
			t.Errorf("podlb's resources left beside the user's: %v", left)
		}
		expectNoLedger(t, k, group)
	})
}

// expectNoLedger checks that podlb's ledger holds nothing of a balancer.
func expectNoLedger(t *testing.T, k Kube, balancer string) {
	t.Helper()
	cms, err := k.Client.CoreV1().ConfigMaps(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if cm.Annotations["podlb.io/balancer"] == balancer {
			t.Errorf("ledger entry %s of the balancer's binding %s:%s left", cm.Name, cm.Annotations["podlb.io/service"], cm.Annotations["podlb.io/port"])
		}
	}
}

// IngressBadInputCase keeps Ingress "good" (shop.example.com to gated
// "web") serving under steady load while Ingresses with one problem each
// come and go: the cloud-agnostic ones (unknown Service, unknown port, a
// resource backend) and the cloud's BadAnnotations. Each gets a Warning
// naming its field, "good" fails no request and gets no Warning, and
// every bad Ingress, then the good one, can be deleted. An unknown pathType never reaches
// podlb: the API server refuses it.
func IngressBadInputCase(t *testing.T, k Kube, ns, class string, cloud IngressCases) {
	t.Helper()
	k.Create(t, WebService(ns, "web", nil), RollingDeployment(ns, "web", 2, true))
	goodAnnotations := cloud.Annotations
	if cloud.GoodAnnotations != nil {
		goodAnnotations = cloud.GoodAnnotations(t)
	}
	k.Create(t, Ingress(ns, "good", class, goodAnnotations, HostRule("shop.example.com", PrefixPath("/", "web", 80))))
	good, addr := ServingIngress(t, k, ns, "good", cloud.IngressCloud, 2, "web")
	load := startLoad(addr, "shop.example.com")
	defer load()

	resource := PrefixPath("/", "web", 80)
	group := "example.com"
	resource.Backend = networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "Bucket", Name: "static"}}
	bad := []BadIngress{
		{Name: "no-service", Rules: []networkingv1.IngressRule{HostRule("a.example.com", PrefixPath("/", "missing", 80))},
			Want: []string{"spec.rules[0].http.paths[0].backend.service.name", "Service " + ns + "/missing not found"}},
		{Name: "no-port", Rules: []networkingv1.IngressRule{HostRule("b.example.com", PrefixPath("/", "web", 81))},
			Want: []string{"spec.rules[0].http.paths[0].backend.service.port.number", "has no port 81"}},
		{Name: "resource", Rules: []networkingv1.IngressRule{HostRule("c.example.com", resource)},
			Want: []string{"spec.rules[0].http.paths[0].backend.resource", "podlb routes only to Services"}},
	}
	bad = append(bad, cloud.BadAnnotations(t, goodAnnotations, good)...)
	for _, b := range bad {
		annotations, rules := b.Annotations, b.Rules
		if annotations == nil {
			annotations = cloud.Annotations
		}
		if rules == nil {
			rules = []networkingv1.IngressRule{HostRule(b.Name+".example.com", PrefixPath("/", "web", 80))}
		}
		k.Create(t, Ingress(ns, b.Name, class, annotations, rules...))
	}
	for _, b := range bad {
		k.ExpectIngressWarning(t, ns, b.Name, time.Minute, b.Want...)
	}

	unknown := PrefixPath("/", "web", 80)
	pathType := networkingv1.PathType("Regex")
	unknown.PathType = &pathType
	_, err := k.Client.NetworkingV1().Ingresses(ns).Create(ctx, Ingress(ns, "regex", class, cloud.Annotations, HostRule("d.example.com", unknown)), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "pathType") {
		t.Errorf("an Ingress with pathType Regex: %v, want the API server to refuse it naming pathType", err)
	}

	time.Sleep(2 * time.Second) // traffic while every problem stands
	expectServedBy(t, addr, "shop.example.com", "/", "web")
	if evs := k.AllWarningsOf(t, ns, "good", "Ingress"); len(evs) != 0 {
		t.Errorf("Warnings on the good Ingress: %v", evs)
	}
	for _, b := range bad {
		k.DeleteIngress(t, ns, b.Name)
	}
	time.Sleep(time.Second) // traffic after the bad Ingresses went
	expectNoFailures(t, "good Ingress beside the bad ones", "web", load)
	k.DeleteIngress(t, ns, "good")
}
