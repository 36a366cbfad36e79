package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/test/cluster"
)

const gate = "podlb.io/load-balancer-ready"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runOrphanHelper()
		return
	}
	cluster.RunMain(m, cluster.Options{Nodes: 3}, nil)
}

func TestDeploymentBecomesAvailable(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)

	d := cluster.NewDeployment(ns, "web", cluster.DeploymentOptions{Replicas: 3})
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "deployment available", func() (bool, error) {
		got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return got.Status.AvailableReplicas == 3 && deploymentCondition(got, appsv1.DeploymentAvailable) == corev1.ConditionTrue, nil
	})

	pods := listPods(t, ctx, c, ns, "app=web")
	if len(pods) != 3 {
		t.Fatalf("want 3 pods, got %d", len(pods))
	}
	podNet := netip.MustParsePrefix(c.PodNetwork())
	ips := map[string]bool{}
	zones := map[string]bool{}
	nodeZone := map[string]string{}
	for _, n := range c.Nodes {
		nodeZone[n.Name] = n.Zone
	}
	for _, p := range pods {
		if ips[p.Status.PodIP] {
			t.Errorf("pod IP %s assigned twice", p.Status.PodIP)
		}
		ips[p.Status.PodIP] = true
		zones[nodeZone[p.Spec.NodeName]] = true
		if ip, err := netip.ParseAddr(p.Status.PodIP); err != nil || !podNet.Contains(ip) || p.Status.HostIP == "" || p.Status.StartTime == nil {
			t.Errorf("pod %s: status not kubelet-like: %+v", p.Name, p.Status)
		}
		if got := c.Sim.PodIP(ns, p.Name); got != p.Status.PodIP {
			t.Errorf("Sim.PodIP(%s) = %q, status says %q", p.Name, got, p.Status.PodIP)
		}
		if body, code := get(t, p.Status.PodIP, 8080); body != p.Name || code != http.StatusOK {
			t.Errorf("backend of %s answered %d %q", p.Name, code, body)
		}
	}
	t.Logf("pods spread over %d zones; %d backends running", len(zones), c.Sim.Backends())
}

func TestReadinessGateHoldsReady(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gated"},
		Spec: corev1.PodSpec{
			Containers:     []corev1.Container{{Name: "web", Image: "sim", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: gate}},
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	getPod := func() *corev1.Pod {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "gated", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	waitFor(t, ctx, "containers ready", func() (bool, error) {
		return podCondition(getPod(), corev1.ContainersReady) != nil && podCondition(getPod(), corev1.ContainersReady).Status == corev1.ConditionTrue, nil
	})
	// Give the simulator time to (wrongly) flip Ready before checking it holds.
	time.Sleep(time.Second)
	ready := podCondition(getPod(), corev1.PodReady)
	wantMsg := `corresponding condition of pod readiness gate "podlb.io/load-balancer-ready" does not exist.`
	if ready == nil || ready.Status != corev1.ConditionFalse || ready.Reason != "ReadinessGatesNotReady" || ready.Message != wantMsg {
		t.Fatalf("Ready = %+v, want False/ReadinessGatesNotReady/%q", ready, wantMsg)
	}

	setGate(t, ctx, c, ns, "gated", corev1.ConditionFalse)
	waitFor(t, ctx, "message for a False gate", func() (bool, error) {
		r := podCondition(getPod(), corev1.PodReady)
		return r.Status == corev1.ConditionFalse && r.Message == `the status of pod readiness gate "podlb.io/load-balancer-ready" is not "True", but False`, nil
	})
	falseSince := podCondition(getPod(), corev1.PodReady).LastTransitionTime

	set := time.Now()
	setGate(t, ctx, c, ns, "gated", corev1.ConditionTrue)
	waitFor(t, ctx, "Ready after the gate", func() (bool, error) {
		return podCondition(getPod(), corev1.PodReady).Status == corev1.ConditionTrue, nil
	})
	t.Logf("Ready turned True %v after the gate was set", time.Since(set).Round(time.Millisecond))
	p := getPod()
	if g := podCondition(p, gate); g == nil || g.Status != corev1.ConditionTrue || g.Reason != "Test" {
		t.Fatalf("gate condition changed by the simulator: %+v", g)
	}
	if r := podCondition(p, corev1.PodReady); !r.LastTransitionTime.After(falseSince.Time) && !r.LastTransitionTime.Equal(&falseSince) {
		t.Errorf("Ready lastTransitionTime did not move on transition: %v", r.LastTransitionTime)
	}
	if s := podCondition(p, corev1.PodScheduled); s == nil || s.Status != corev1.ConditionTrue {
		t.Errorf("PodScheduled (the scheduler's) lost: %+v", s)
	}
}

func TestGatedRollingUpdateWaitsForGates(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)

	surge, unavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	d := cluster.NewDeployment(ns, "web", cluster.DeploymentOptions{
		Replicas: 3, Gates: []string{gate}, MaxSurge: &surge, MaxUnavailable: &unavailable,
	})
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gates := startGateSetter(t, ctx, c, ns)
	waitForRollout(t, ctx, c, ns, "web")

	gates.pause()
	if err := patchTemplate(ctx, c, ns, "web", "v2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "surge pod created", func() (bool, error) {
		got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && got.Status.UpdatedReplicas >= 1, err
	})
	// Several controller sync periods: the rollout must be stuck on the
	// ungated surge pod, with every old pod still running and ready.
	time.Sleep(3 * time.Second)
	got, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.UpdatedReplicas != 1 || got.Status.ReadyReplicas != 3 || got.Status.Replicas != 4 {
		t.Fatalf("rollout progressed without gates: updated=%d ready=%d replicas=%d",
			got.Status.UpdatedReplicas, got.Status.ReadyReplicas, got.Status.Replicas)
	}
	for _, p := range listPods(t, ctx, c, ns, "app=web") {
		if p.DeletionTimestamp != nil {
			t.Fatalf("old pod %s terminated before any new pod was Ready", p.Name)
		}
	}

	gates.resume()
	waitForRollout(t, ctx, c, ns, "web")
	for _, p := range listPods(t, ctx, c, ns, "app=web") {
		if env := p.Spec.Containers[0].Env; p.DeletionTimestamp == nil && (len(env) == 0 || env[0].Value != "v2") {
			t.Errorf("pod %s still runs the old template", p.Name)
		}
	}
}

func TestPreStopKeepsServingThenGone(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)

	createService(t, ctx, c, ns, "web")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "draining", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "web", Image: "sim", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "sleep 3"}}}},
			}},
			TerminationGracePeriodSeconds: new(int64(20)),
		},
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ip string
	waitFor(t, ctx, "pod Ready", func() (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, "draining", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ip = p.Status.PodIP
		r := podCondition(p, corev1.PodReady)
		return r != nil && r.Status == corev1.ConditionTrue, nil
	})
	waitForEndpoint(t, ctx, c, ns, "web", ip, endpointState{ready: true, serving: true})

	deleted := time.Now()
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "draining", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForEndpoint(t, ctx, c, ns, "web", ip, endpointState{ready: false, serving: true, terminating: true})

	// Serve until the listener closes. The hook started after the delete
	// call, so a refusal seen before 3s after it is a bug, however slowly
	// this loop runs. Every connection the backend accepted is answered
	// (EOF is a bug); a dial that began before the backend stopped
	// listening may have been completed by the kernel and reset by the
	// stop, and is tried again; any later dial must be refused.
	var refusedAt time.Time
	for {
		dialed := time.Now()
		body, code, err := tryGet(ip, 8080)
		if err != nil {
			refusedAt = time.Now()
			if errors.Is(err, syscall.ECONNRESET) && dialed.Before(stoppedListening(c, ip)) {
				t.Logf("a dial at %v raced the backend's stop: %v", dialed.Sub(deleted).Round(time.Millisecond), err)
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("after %v: want connection refused once draining ends, got %v", time.Since(deleted), err)
			}
			break
		}
		if code != http.StatusOK || body != "draining" {
			t.Fatalf("during preStop the backend answered %d %q", code, body)
		}
		if time.Since(deleted) > 30*time.Second {
			t.Fatal("backend still serving 30s after delete")
		}
		time.Sleep(50 * time.Millisecond)
	}
	served := refusedAt.Sub(deleted)
	t.Logf("connections refused %v after delete, with a 3s preStop", served.Round(time.Millisecond))
	if served < 3*time.Second {
		t.Fatalf("stopped serving %v after delete, before the 3s preStop hook ended", served)
	}
	waitFor(t, ctx, "pod object deleted", func() (bool, error) {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, "draining", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	waitFor(t, ctx, "endpoint removed", func() (bool, error) {
		_, found, err := findEndpoint(ctx, c, ns, "web", ip)
		return !found, err
	})
}

func TestEndpointSliceConditions(t *testing.T) {
	c := cluster.Require(t)
	ctx := testContext(t)
	ns := c.Namespace(t)

	createService(t, ctx, c, ns, "web")
	for _, name := range []string{"plain", "gated", "unready"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "web", Image: "sim", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
			},
		}
		switch name {
		case "gated":
			pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: gate}}
		case "unready":
			pod.Annotations = map[string]string{cluster.AnnotationUnready: "true"}
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ipOf := func(name string) string {
		var ip string
		waitFor(t, ctx, "pod IP of "+name, func() (bool, error) {
			ip = c.Sim.PodIP(ns, name)
			return ip != "", nil
		})
		return ip
	}
	plain, gated, unready := ipOf("plain"), ipOf("gated"), ipOf("unready")
	waitForEndpoint(t, ctx, c, ns, "web", plain, endpointState{ready: true, serving: true})
	waitForEndpoint(t, ctx, c, ns, "web", gated, endpointState{})
	waitForEndpoint(t, ctx, c, ns, "web", unready, endpointState{})
	if _, code := get(t, unready, 8080); code != http.StatusServiceUnavailable {
		t.Errorf("unready backend answered %d, want 503", code)
	}

	setGate(t, ctx, c, ns, "gated", corev1.ConditionTrue)
	waitForEndpoint(t, ctx, c, ns, "web", gated, endpointState{ready: true, serving: true})

	// Readiness flipped at run time, without the annotation.
	c.Sim.SetReady(ns, "unready", true)
	waitForEndpoint(t, ctx, c, ns, "web", unready, endpointState{ready: true, serving: true})
	c.Sim.SetReady(ns, "plain", false)
	waitForEndpoint(t, ctx, c, ns, "web", plain, endpointState{})
	if _, code := get(t, plain, 8080); code != http.StatusServiceUnavailable {
		t.Errorf("backend set unready answered %d, want 503", code)
	}
	c.Sim.ClearReady(ns, "plain")
	waitForEndpoint(t, ctx, c, ns, "web", plain, endpointState{ready: true, serving: true})
}

// Helpers.

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds; timeouts are generous because the
// machine may be busy with other packages' clusters.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listPods(t *testing.T, ctx context.Context, c *cluster.Cluster, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) corev1.ConditionStatus {
	for _, c := range d.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// setGate writes the gate condition through pods/status as a controller
// would, with a strategic merge patch that names only that condition.
func setGate(t *testing.T, ctx context.Context, c *cluster.Cluster, ns, name string, status corev1.ConditionStatus) {
	t.Helper()
	if err := setGateErr(ctx, c, ns, name, status); err != nil {
		t.Fatalf("set gate on %s: %v", name, err)
	}
}

func setGateErr(ctx context.Context, c *cluster.Cluster, ns, name string, status corev1.ConditionStatus) error {
	patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":%q,"reason":"Test","lastTransitionTime":%q}]}}`,
		gate, status, time.Now().UTC().Format(time.RFC3339))
	_, err := c.Client.CoreV1().Pods(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
	return err
}

// gateSetter plays the load-balancer controller: it sets the gate on every
// pod whose containers are ready, unless paused. A pass holds mu, so pause
// returns only when no patch is in flight.
type gateSetter struct {
	mu     sync.Mutex
	paused bool
}

func (g *gateSetter) pause()  { g.mu.Lock(); g.paused = true; g.mu.Unlock() }
func (g *gateSetter) resume() { g.mu.Lock(); g.paused = false; g.mu.Unlock() }

func startGateSetter(t *testing.T, ctx context.Context, c *cluster.Cluster, ns string) *gateSetter {
	g := &gateSetter{}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			g.mu.Lock()
			if !g.paused {
				g.pass(ctx, c, ns)
			}
			g.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return g
}

func (g *gateSetter) pass(ctx context.Context, c *cluster.Cluster, ns string) {
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range list.Items {
		p := &list.Items[i]
		cr, gc := podCondition(p, corev1.ContainersReady), podCondition(p, gate)
		if p.DeletionTimestamp == nil && cr != nil && cr.Status == corev1.ConditionTrue && (gc == nil || gc.Status != corev1.ConditionTrue) {
			_ = setGateErr(ctx, c, ns, p.Name, corev1.ConditionTrue)
		}
	}
}

func waitForRollout(t *testing.T, ctx context.Context, c *cluster.Cluster, ns, name string) {
	t.Helper()
	waitFor(t, ctx, "rollout of "+name, func() (bool, error) {
		d, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := *d.Spec.Replicas
		return d.Status.ObservedGeneration == d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.Replicas == want && d.Status.AvailableReplicas == want, nil
	})
}

func patchTemplate(ctx context.Context, c *cluster.Cluster, ns, name, version string) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"VERSION","value":%q}]}]}}}}`, version)
	_, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

func createService(t *testing.T, ctx context.Context, c *cluster.Cluster, ns, app string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

type endpointState struct{ ready, serving, terminating bool }

func findEndpoint(ctx context.Context, c *cluster.Cluster, ns, svc, ip string) (endpointState, bool, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc}).String()
	slices, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return endpointState{}, false, err
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				if a == ip {
					b := func(p *bool) bool { return p != nil && *p }
					return endpointState{b(ep.Conditions.Ready), b(ep.Conditions.Serving), b(ep.Conditions.Terminating)}, true, nil
				}
			}
		}
	}
	return endpointState{}, false, nil
}

func waitForEndpoint(t *testing.T, ctx context.Context, c *cluster.Cluster, ns, svc, ip string, want endpointState) {
	t.Helper()
	var last endpointState
	var found bool
	waitFor(t, ctx, fmt.Sprintf("endpoint %s %+v", ip, want), func() (bool, error) {
		var err error
		last, found, err = findEndpoint(ctx, c, ns, svc, ip)
		return found && last == want, err
	})
}

func get(t *testing.T, ip string, port int) (string, int) {
	t.Helper()
	body, code, err := tryGet(ip, port)
	if err != nil {
		t.Fatalf("GET %s:%d: %v", ip, port, err)
	}
	return body, code
}

// stoppedListening is when the simulator's backend of the pod with that
// address stopped listening, or zero.
func stoppedListening(c *cluster.Cluster, ip string) time.Time {
	var at time.Time
	for _, l := range c.Sim.PodLives(ip) {
		at = l.StoppedAccepting
	}
	return at
}

func tryGet(ip string, port int) (string, int, error) {
	resp, err := cluster.HTTPClient(5 * time.Second).Get(fmt.Sprintf("http://%s/", net.JoinHostPort(ip, fmt.Sprint(port))))
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode, err
}
