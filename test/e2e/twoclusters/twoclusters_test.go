package twoclusters_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var ctx = context.Background()

// The app both clusters run, under the same namespace and name, as one
// app deployed to two clusters is.
const (
	app      = "web"
	replicas = 6
)

// Both clusters register the same app into one target group behind one
// NLB and roll it at the same time under steady traffic: no request
// fails, and each controller registers and deregisters only its own
// cluster's pods (the emulator's journal names the signing key of every
// call). Deleting one cluster's Service takes its targets out and leaves
// the other's registered and serving.
func TestTwoClustersShareOneTargetGroup(t *testing.T) {
	cluster.RequireClusters(t)
	ns := sharedNamespace(t)
	arn, addr := e2eutil.TargetGroupBehindNLB(t, awsSim, shortName(ns, "tg"))
	start := time.Now()
	for _, mb := range members {
		mb.k8s.Create(t, e2eutil.WebService(ns, app, map[string]string{
			"podlb.io/aws-target-groups": `{"http": {"arn": "` + arn + `"}}`}))
		mb.k8s.Create(t, e2eutil.RollingDeployment(ns, app, replicas, true))
	}

	// serving checks that the group's active targets are exactly the pods
	// of the members, all healthy, their gates True.
	serving := func(ms ...*member) error {
		active := map[string]string{}
		for _, tg := range awsSim.Targets(arn) {
			if tg.State != "draining" {
				active[fmt.Sprintf("%s:%d", tg.ID, tg.Port)] = tg.State
			}
		}
		var want []string
		for _, mb := range ms {
			keys, err := mb.readyPods(t, ns, func(key string) (string, bool) {
				s, ok := active[key]
				return s, ok && s == "healthy"
			})
			if err != nil {
				return err
			}
			want = append(want, keys...)
		}
		if len(active) != len(want) {
			return fmt.Errorf("group holds %v, want the pods' %v", sortedKeys(active), sorted(want))
		}
		return nil
	}
	rollBothThenDeleteOne(t, ns, addr, serving, nil)

	// The journal: every registration and deregistration in the group
	// names only pods of the cluster whose controller signed it.
	moved := map[string]int{}
	for _, c := range awsSim.Calls(start) {
		if c.TargetGroupArn != arn || (c.Op != "RegisterTargets" && c.Op != "DeregisterTargets") {
			continue
		}
		mb := memberWithKey(c.AccessKeyID)
		if mb == nil {
			t.Errorf("%s of %v signed by %q, neither cluster's controller", c.Op, c.Targets, c.AccessKeyID)
			continue
		}
		for _, ip := range c.Targets {
			if !mb.owns(ip) {
				t.Errorf("%s's controller: %s of %s at %s, a pod of another cluster", mb.name, c.Op, ip, c.At.Format("15:04:05.000"))
			}
		}
		moved[mb.name+" "+c.Op] += len(c.Targets)
	}
	t.Logf("targets moved by each controller: %v", moved)
	for _, mb := range members {
		// Each registered its pods and deregistered the old ones at least:
		// the check above looked at real calls of both.
		if moved[mb.name+" RegisterTargets"] < 2*replicas || moved[mb.name+" DeregisterTargets"] < replicas {
			t.Errorf("%s's controller moved %v targets; a rollout of %d pods moves more", mb.name, moved, replicas)
		}
	}
}

// Both clusters attach the same app's NEGs to one backend service behind a
// TCP proxy load balancer and roll it at the same time under steady
// traffic: no request fails, each controller attaches and detaches
// endpoints only in its own NEGs and only its own pods, and the backend
// service never loses the other cluster's NEGs. Deleting one cluster's
// Service removes its NEGs and leaves the other's attached and serving.
func TestTwoClustersShareOneBackendService(t *testing.T) {
	cluster.RequireClusters(t)
	ns := sharedNamespace(t)
	bs, addr := tcpProxyLoadBalancer(t, shortName(ns, "bs"))
	start := time.Now()
	for _, mb := range members {
		mb.k8s.Create(t, e2eutil.WebService(ns, app, map[string]string{
			gcpprovider.AnnotationKey: `{"http": {"backendService": "` + bs + `"}}`}))
		mb.k8s.Create(t, e2eutil.RollingDeployment(ns, app, replicas, true))
	}
	negsOf := func(ms ...*member) []string {
		var out []string
		for _, mb := range ms {
			for _, z := range zones {
				out = append(out, z+"/"+mb.negName(ns))
			}
		}
		sort.Strings(out)
		return out
	}

	// serving checks that each member's NEGs hold exactly its pods, each
	// HEALTHY in the backend service with its gate True, and that the
	// backend service's backends are exactly the members' NEGs.
	serving := func(ms ...*member) error {
		health := map[string]string{}
		for _, h := range gcpSim.Health(bs) {
			if h.State != computesim.StateDraining {
				health[fmt.Sprintf("%s:%d", h.IPAddress, h.Port)] = h.State
			}
		}
		for _, mb := range ms {
			attached := map[string]bool{}
			for _, z := range zones {
				for _, ep := range gcpSim.Endpoints(z, mb.negName(ns)) {
					attached[fmt.Sprintf("%s:%d", ep.IPAddress, ep.Port)] = true
				}
			}
			keys, err := mb.readyPods(t, ns, func(key string) (string, bool) {
				return health[key], attached[key] && health[key] == computesim.StateHealthy
			})
			if err != nil {
				return err
			}
			if len(attached) != len(keys) {
				return fmt.Errorf("%s's NEGs hold %v, want its pods' %v", mb.name, sortedKeys(attached), sorted(keys))
			}
		}
		if got, want := backendsOf(bs), negsOf(ms...); !slices.Equal(got, want) {
			return fmt.Errorf("backends of %s: %v, want %v", bs, got, want)
		}
		return nil
	}

	// From the first convergence on, the backend service must hold every
	// NEG of the clusters whose Service exists, at every moment.
	var keep sync.Map // member name -> bool
	watch := startWatch(100*time.Millisecond, func() error {
		have := backendsOf(bs)
		for _, mb := range members {
			if on, _ := keep.Load(mb.name); on == true {
				for _, neg := range negsOf(mb) {
					if !slices.Contains(have, neg) {
						return fmt.Errorf("backend %s of %s's Service missing: backends %v", neg, mb.name, have)
					}
				}
			}
		}
		return nil
	})
	hooks := &phaseHooks{
		converged: func() {
			for _, mb := range members {
				keep.Store(mb.name, true)
			}
		},
		deleting: func(gone *member) { keep.Store(gone.name, false) },
		deleted: func(gone *member) error {
			// Its NEGs are deleted too, in every zone.
			for _, z := range zones {
				if eps := gcpSim.Endpoints(z, gone.negName(ns)); len(eps) != 0 {
					return fmt.Errorf("%s's NEG in %s still holds %d endpoints", gone.name, z, len(eps))
				}
			}
			if left := negsNamed(gone.negName(ns)); len(left) != 0 {
				return fmt.Errorf("%s's NEGs left in zones %v", gone.name, left)
			}
			return nil
		},
	}
	rollBothThenDeleteOne(t, ns, addr, serving, hooks)
	for _, problem := range watch() {
		t.Error(problem)
	}

	// Every attach and detach names the caller's own NEG and pods.
	for _, mb := range members {
		changed := map[string]int{}
		for _, c := range mb.gcpCalls.since(start) {
			if c.NEG != mb.negName(ns) {
				t.Errorf("%s's controller: %s on NEG %s/%s, not its own %s", mb.name, c.Method, c.Zone, c.NEG, mb.negName(ns))
			}
			for _, ip := range c.IPs {
				if !mb.owns(ip) {
					t.Errorf("%s's controller: %s of %s at %s, a pod of another cluster", mb.name, c.Method, ip, c.At.Format("15:04:05.000"))
				}
			}
			changed[c.Method] += len(c.IPs)
		}
		t.Logf("%s's controller: endpoints changed %v", mb.name, changed)
		if changed["attachNetworkEndpoints"] < 2*replicas || changed["detachNetworkEndpoints"] < replicas {
			t.Errorf("%s's controller changed %v endpoints; a rollout of %d pods changes more", mb.name, changed, replicas)
		}
	}
}

// phaseHooks let a cloud's scenario add checks at the phases of
// rollBothThenDeleteOne; any may be nil.
type phaseHooks struct {
	// converged runs once both clusters serve, before the rollouts.
	converged func()
	// deleting runs just before the Service of gone is deleted.
	deleting func(gone *member)
	// deleted must return nil once gone's Service is released.
	deleted func(gone *member) error
}

// rollBothThenDeleteOne waits until both clusters serve through the load
// balancer at addr, rolls both Deployments at once under steady traffic,
// then deletes the first cluster's Service while traffic goes on. No
// request may fail; before the deletion both clusters' pods answer, after
// it only the second's. serving(ms...) reports whether the cloud holds
// exactly the pods of ms, healthy, with their gates open.
func rollBothThenDeleteOne(t *testing.T, ns, addr string, serving func(ms ...*member) error, hooks *phaseHooks) {
	t.Helper()
	if hooks == nil {
		hooks = &phaseHooks{}
	}
	gone, stays := members[0], members[1]
	e2eutil.Eventually(t, 90*time.Second, "both clusters' pods healthy and Ready", func() error { return serving(members...) })
	if hooks.converged != nil {
		hooks.converged()
	}

	load := loadgen.Start(addr, 4, 25*time.Millisecond)
	stopLoad := sync.OnceValue(load.Stop) // also when the test fails early
	defer stopLoad()
	time.Sleep(2 * time.Second) // a baseline before the rollouts
	answered := load.Snapshot().Backends
	for _, mb := range members {
		if !mb.answered(t, ns, answered) {
			t.Errorf("no request reached %s's pods before the rollouts: answers %v", mb.name, answered)
		}
	}
	for _, mb := range members {
		mb.k8s.Restart(t, ns, app)
	}
	for _, mb := range members {
		mb.k8s.WaitRollout(t, ns, app, 3*time.Minute)
	}
	e2eutil.Eventually(t, 60*time.Second, "both clusters' new pods healthy", func() error { return serving(members...) })
	time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows

	if hooks.deleting != nil {
		hooks.deleting(gone)
	}
	if err := gone.kube.Client.CoreV1().Services(ns).Delete(ctx, app, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e2eutil.Eventually(t, 60*time.Second, gone.name+"'s Service released, "+stays.name+"'s pods alone serving", func() error {
		if _, err := gone.kube.Client.CoreV1().Services(ns).Get(ctx, app, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("%s's Service still there: %v", gone.name, err)
		}
		if hooks.deleted != nil {
			if err := hooks.deleted(gone); err != nil {
				return err
			}
		}
		return serving(stays)
	})
	// Connections already forwarded to the deleted cluster's pods end
	// within the drain; after that only the other cluster answers.
	time.Sleep(drainDelay + time.Second)
	before := load.Snapshot()
	time.Sleep(2 * time.Second)
	res := stopLoad()
	after := map[string]int{}
	for pod, n := range res.Backends {
		if d := n - before.Backends[pod]; d > 0 {
			after[pod] = d
		}
	}
	if !stays.answered(t, ns, after) {
		t.Errorf("no request reached %s's pods after %s's Service was deleted: answers %v", stays.name, gone.name, after)
	}
	live := map[string]bool{}
	for _, p := range stays.k8s.LivePods(t, ns, app) {
		live[p.Name] = true
	}
	for pod := range after {
		if !live[pod] {
			t.Errorf("pod %s answered after %s's Service was deleted, but is no live pod of %s", pod, gone.name, stays.name)
		}
	}

	t.Logf("two clusters rolling at once, then one Service deleted: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 {
		t.Errorf("%d requests failed: %v", res.Failed, res.Errors)
	}
	if res.OK < 500 {
		t.Errorf("only %d requests got through", res.OK)
	}
}

// readyPods checks that the member runs its replicas, each with an IP,
// Ready with its gate True, and served: served(ip:port) says whether the
// cloud serves the pod and what it reports. It returns the pods' ip:port.
func (mb *member) readyPods(t *testing.T, ns string, served func(key string) (string, bool)) ([]string, error) {
	ps := mb.k8s.LivePods(t, ns, app)
	if len(ps) != replicas {
		return nil, fmt.Errorf("%s: %d live pods, want %d", mb.name, len(ps), replicas)
	}
	var keys []string
	for _, p := range ps {
		if p.Status.PodIP == "" {
			return nil, fmt.Errorf("%s: pod %s has no IP yet", mb.name, p.Name)
		}
		key := p.Status.PodIP + ":8080"
		if state, ok := served(key); !ok {
			return nil, fmt.Errorf("%s: pod %s (%s) not served: %q", mb.name, p.Name, key, state)
		}
		if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !e2eutil.IsReady(&p) {
			return nil, fmt.Errorf("%s: pod %s gate %+v", mb.name, p.Name, g)
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// answered reports whether any of the member's live pods answered.
func (mb *member) answered(t *testing.T, ns string, answers map[string]int) bool {
	for _, p := range mb.k8s.LivePods(t, ns, app) {
		if answers[p.Name] > 0 {
			return true
		}
	}
	return false
}

// owns reports whether ip is in the member's pod network.
func (mb *member) owns(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && netip.MustParsePrefix(mb.kube.PodNetwork()).Contains(a)
}

// negName is the name of the member's NEGs for the app's port 80.
func (mb *member) negName(ns string) string {
	return gcpprovider.NEGName(mb.name, providers.BindingKey{Namespace: ns, Service: app, Provider: "gcp", Port: 80})
}

func memberWithKey(key string) *member {
	for _, mb := range members {
		if mb.awsKey == key {
			return mb
		}
	}
	return nil
}

// sharedNamespace creates a namespace of the same name in both clusters,
// deleted when the test ends.
func sharedNamespace(t *testing.T) string {
	t.Helper()
	ns := members[0].kube.Namespace(t)
	for _, mb := range members[1:] {
		c := mb.kube.Client.CoreV1().Namespaces()
		if _, err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(ctx, ns, metav1.DeleteOptions{}) })
	}
	return ns
}

// shortName is a cloud resource name unique to the namespace: it starts
// with a letter and stays well within both clouds' limits.
func shortName(ns, suffix string) string {
	n := ns
	if len(n) > 20 {
		n = n[len(n)-20:]
	}
	return "t-" + strings.Trim(n, "-") + "-" + suffix
}

// tcpProxyLoadBalancer creates a TCP backend service behind a target TCP
// proxy and forwarding rule, removed when the test ends, and returns the
// service's name and the forwarding rule's address.
func tcpProxyLoadBalancer(t *testing.T, name string) (string, string) {
	t.Helper()
	if err := gce.CreateTCPBackendService(ctx, emuclient.TCPBackend{Name: name, DrainingTimeoutSec: int32(drainDelay / time.Second)}); err != nil {
		t.Fatal(err)
	}
	addr, err := gce.CreateTCPProxyFrontend(ctx, gcpSim, name, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gce.DeleteTCPProxyFrontend(ctx, name) })
	return name, addr
}

// backendsOf lists a backend service's backends as "zone/name", sorted;
// on an error, the error as the only element.
func backendsOf(bs string) []string {
	got, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: bs})
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	var out []string
	for _, b := range got.GetBackends() {
		parts := strings.Split(computesim.ResourcePath(b.GetGroup()), "/")
		if len(parts) < 6 {
			out = append(out, b.GetGroup())
			continue
		}
		out = append(out, parts[3]+"/"+parts[5])
	}
	sort.Strings(out)
	return out
}

// negsNamed lists the zones that hold a NEG of that name.
func negsNamed(name string) []string {
	var out []string
	for _, z := range zones {
		if _, err := gce.NEGs.Get(ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: z, NetworkEndpointGroup: name}); err == nil {
			out = append(out, z)
		}
	}
	return out
}

// startWatch runs check every interval until the returned function is
// called, which returns the distinct problems check reported.
func startWatch(interval time.Duration, check func() error) func() []string {
	stop, done := make(chan struct{}), make(chan []string)
	go func() {
		seen := map[string]bool{}
		var problems []string
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if err := check(); err != nil && !seen[err.Error()] {
				seen[err.Error()] = true
				problems = append(problems, time.Now().Format("15:04:05.000 ")+err.Error())
			}
			select {
			case <-stop:
				done <- problems
				return
			case <-tick.C:
			}
		}
	}()
	return func() []string {
		close(stop)
		return <-done
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}
