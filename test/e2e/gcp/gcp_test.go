package gcp_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// Scenarios 1 and 2: a gated Deployment behind an annotated Service gets a
// NEG in every zone with nodes, added to the backend service; its pods are
// attached in their zone's NEG, health-checked against the real backends
// and let through. Its rolling update under steady traffic through the
// forwarding rule fails no request. The same rollout without the gate
// fails requests, which shows the measurement can fail.
func TestGatedRolloutLosesNoRequest(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	gatedBS, gatedAddr := loadBalancer(t, resourceName(ns, "gated"), slowHealthyCount)
	plainBS, plainAddr := loadBalancer(t, resourceName(ns, "plain"), slowHealthyCount)
	gatedNEG, plainNEG := negName(ns, "gated"), negName(ns, "plain")

	k8s.Create(t, e2eutil.WebService(ns, "gated", inBackendService(gatedBS)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "gated", 10, true))
	k8s.Create(t, e2eutil.WebService(ns, "plain", inBackendService(plainBS)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "plain", 10, false))

	e2eutil.Eventually(t, 90*time.Second, "10 gated pods HEALTHY and Ready", func() error {
		return converged(t, ns, "gated", gatedNEG, gatedBS, 10, computesim.StateHealthy, true)
	})
	e2eutil.Eventually(t, 90*time.Second, "10 ungated pods HEALTHY", func() error {
		return converged(t, ns, "plain", plainNEG, plainBS, 10, computesim.StateHealthy, false)
	})
	// A NEG of podlb's in every zone with nodes, each a CONNECTION backend
	// of the TCP backend service.
	zs := zonesWithNodes(t)
	negs := negsNamed(t, gatedNEG)
	for _, z := range zs {
		if !gcpprovider.OwnedBy(negs[z], clusterName, providers.BindingKey{Namespace: ns, Service: "gated", Provider: "gcp", Port: 80}) {
			t.Errorf("NEG %s in zone %s: description %q is not podlb's", gatedNEG, z, negs[z])
		}
	}
	if len(negs) != len(zs) {
		t.Errorf("NEGs %s in zones %v, want %v", gatedNEG, negs, zs)
	}
	if got := backendNEGs(t, gatedBS); !slices.Equal(got, zonal(gatedNEG, zs)) {
		t.Errorf("backends of %s: %v, want %v", gatedBS, got, zonal(gatedNEG, zs))
	}
	bs, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: gatedBS})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs.GetBackends() {
		if b.GetBalancingMode() != "CONNECTION" || b.GetMaxConnectionsPerEndpoint() != gcpprovider.DefaultMaxConnectionsPerEndpoint {
			t.Errorf("backend %s: mode %s, maxConnectionsPerEndpoint %d", b.GetGroup(), b.GetBalancingMode(), b.GetMaxConnectionsPerEndpoint())
		}
	}
	for _, p := range k8s.LivePods(t, ns, "gated") {
		if g := e2eutil.GateOf(&p); g.Reason != readiness.ReasonReady {
			t.Errorf("pod %s gate reason %q", p.Name, g.Reason)
		}
	}
	// The status annotation agrees with the cloud.
	e2eutil.Eventually(t, 10*time.Second, "status annotation", func() error {
		b := gcpStatus(t, ns, "gated")
		if b == nil || b.Desired != 10 || b.Registered != 10 || b.Healthy != 10 || b.Error != "" || !b.Owned ||
			b.Details["negs"] != gatedNEG || b.Details["zones"] != strings.Join(zs, ",") ||
			b.Details["backendService"] != "projects/"+project+"/global/backendServices/"+gatedBS {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "gated"))
		}
		return nil
	})

	gatedLoad := loadgen.Start(gatedAddr, 4, 25*time.Millisecond)
	plainLoad := loadgen.Start(plainAddr, 4, 25*time.Millisecond)
	time.Sleep(time.Second) // a baseline before the rollouts
	old := map[string]bool{}
	for _, p := range k8s.LivePods(t, ns, "gated") {
		old[p.Name] = true
	}
	k8s.Restart(t, ns, "plain")
	k8s.Restart(t, ns, "gated")
	k8s.WaitRollout(t, ns, "plain", 2*time.Minute)
	k8s.WaitRollout(t, ns, "gated", 3*time.Minute)
	e2eutil.Eventually(t, 60*time.Second, "new gated pods HEALTHY", func() error {
		return converged(t, ns, "gated", gatedNEG, gatedBS, 10, computesim.StateHealthy, true)
	})
	time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
	gated, plain := gatedLoad.Stop(), plainLoad.Stop()
	t.Logf("gated rollout: %d ok, %d failed; ungated: %d ok, %d failed", gated.OK, gated.Failed, plain.OK, plain.Failed)

	if gated.OK < 200 {
		t.Errorf("only %d requests got through the gated load balancer", gated.OK)
	}
	if gated.Failed != 0 {
		t.Errorf("gated rollout failed %d requests: %v", gated.Failed, gated.Errors)
		explainFailures(t, gated)
	}
	if plain.Failed == 0 {
		t.Errorf("the ungated rollout failed no request (%d ok): the test cannot tell the gate's effect", plain.OK)
	}
	k8s.CheckRolloutSafetyWarnings(t, ns, map[string]bool{"plain": true, "gated": false})
	hs := health(gatedBS)
	for _, p := range k8s.LivePods(t, ns, "gated") {
		if old[p.Name] {
			t.Errorf("old pod %s survived the rollout", p.Name)
		}
		// The gate turned True only once the backend service reported the
		// endpoint HEALTHY (condition times have second precision).
		g := e2eutil.GateOf(&p)
		healthyAt := hs[p.Status.PodIP+":8080"].FirstHealthyAt
		if healthyAt.IsZero() || g.LastTransitionTime.Add(time.Second).Before(healthyAt) {
			t.Errorf("pod %s gate True at %v but HEALTHY in %s at %v", p.Name, g.LastTransitionTime, gatedBS, healthyAt)
		}
	}
}

// Scenario 3: endpoints follow 10 -> 100 -> 0 -> 10 pods across zones, and
// bursts of pod readiness are batched; a zone whose last node goes loses
// its NEG.
func TestScaleFollowsWithBatchedCalls(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs := backendService(t, resourceName(ns, "scale"), 2)
	neg := negName(ns, "scale")
	svc := e2eutil.WebService(ns, "scale", inBackendService(bs))
	// registered mode: the gate follows attachment, so Ready pods are
	// attached pods and the phases do not wait for health checks.
	svc.Annotations[targets.AnnotationReadiness] = "registered"
	k8s.Create(t, svc)
	k8s.Create(t, e2eutil.RollingDeployment(ns, "scale", 10, true))
	e2eutil.Eventually(t, 60*time.Second, "10 attached", func() error {
		return converged(t, ns, "scale", neg, bs, 10, computesim.StateHealthy, true)
	})
	k8s.WaitOtherNamespacesGone(t, ns)

	const coalesce = 200 * time.Millisecond
	phases := []struct {
		replicas int32
		changed  int64
		method   string
	}{
		{100, 90, "networkEndpointGroups.attachNetworkEndpoints"},
		{0, 100, "networkEndpointGroups.detachNetworkEndpoints"},
		{10, 10, "networkEndpointGroups.attachNetworkEndpoints"},
	}
	for _, ph := range phases {
		zs := len(zonesWithNodes(t))
		before := sim.Stats()
		start := time.Now()
		k8s.Scale(t, ns, "scale", ph.replicas)
		e2eutil.Eventually(t, 3*time.Minute, fmt.Sprintf("%d pods attached", ph.replicas), func() error {
			if ph.replicas == 0 {
				if eps, _ := negEndpoints(neg); len(eps) != 0 {
					return fmt.Errorf("%d endpoints left", len(eps))
				}
				if n := len(k8s.Pods(t, ns, "scale")); n != 0 {
					return fmt.Errorf("%d pods left", n)
				}
				return nil
			}
			return converged(t, ns, "scale", neg, "", int(ph.replicas), "", true)
		})
		took := time.Since(start)
		d := callDelta(before, sim.Stats(), ph.method)
		// The bound: each zone's NEG gets at most one call per coalescing
		// window in which its pods changed, each carrying up to 500
		// endpoints, plus one for the window in flight. Pods of a burst
		// turn ready over the time the ReplicaSet controller, scheduler
		// and kubelet take.
		bound := int64(zs) * (int64(took/coalesce) + 1)
		// And for the bursts, fewer calls than half the endpoints: a call
		// carries more than two endpoints on average, unless the pods
		// turned ready so far apart (a loaded machine spreads a burst
		// over seconds) that sending each zone's change at once and then
		// one call per window makes more calls.
		burst, trickle := ph.changed/2, 0
		if ph.replicas > 0 {
			trickle = e2eutil.CoalescedCalls(coalesce, slices.Collect(maps.Values(kube.Sim.ReadyTimes(ns, start)))...)
			burst = max(burst, int64(trickle))
		}
		t.Logf("scale to %d: %d %s calls (%d failed operations) for %d endpoints (largest %d) in %v over %d zones; bound %d, for the burst %d (%d as the pods turned ready)",
			ph.replicas, d.Calls, ph.method, d.OperationsFailed, d.Endpoints, d.MaxEndpointsCall, took.Round(100*time.Millisecond), zs, bound, burst, trickle)
		if d.Endpoints != ph.changed {
			t.Errorf("%s carried %d endpoints, want %d", ph.method, d.Endpoints, ph.changed)
		}
		if d.Calls > bound || (ph.changed >= 90 && d.Calls > burst) || d.Errors != 0 {
			t.Errorf("%d %s calls (%d failed) for %d endpoints: not batched (bound %d, for the burst %d)", d.Calls, ph.method, d.Errors, ph.changed, bound, burst)
		}
		if d.MaxEndpointsCall > 500 {
			t.Errorf("a call carried %d endpoints, over GCE's 500", d.MaxEndpointsCall)
		}
	}

	// The lone zone's VM and Node go, as when a node pool shrinks: its NEG
	// leaves the backend service and is deleted; the other zones keep
	// theirs, and the pods that ran there come back elsewhere.
	var lone cluster.Node
	for _, n := range kube.Nodes {
		if n.Zone == loneZone {
			lone = n
		}
	}
	if _, ok := nodeZones(t)[lone.Name]; !ok {
		t.Fatalf("node %s in %s is already gone", lone.Name, loneZone)
	}
	if !strings.Contains(strings.Join(backendNEGs(t, bs), ","), loneZone+"/"+neg) {
		t.Fatalf("backends of %s %v lack zone %s before the node goes", bs, backendNEGs(t, bs), loneZone)
	}
	sim.RemoveInstance(loneZone, lone.VMName)
	if err := kube.Client.CoreV1().Nodes().Delete(ctx, lone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Later tests, and this one run again, find the cluster whole.
		if err := sim.AddInstance(lone.Zone, lone.VMName, lone.HostIP, lone.PodCIDR); err != nil {
			t.Errorf("VM %s back: %v", lone.VMName, err)
		}
		if err := kube.RestoreNode(ctx, lone.Name); err != nil {
			t.Errorf("node %s back: %v", lone.Name, err)
		}
	})
	rest := zonesWithNodes(t)
	e2eutil.Eventually(t, 60*time.Second, "the lone zone's NEG detached and deleted", func() error {
		if got := backendNEGs(t, bs); !slices.Equal(got, zonal(neg, rest)) {
			return fmt.Errorf("backends %v, want %v", got, zonal(neg, rest))
		}
		if _, ok := negsNamed(t, neg)[loneZone]; ok {
			return fmt.Errorf("NEG %s still exists in %s", neg, loneZone)
		}
		if b := gcpStatus(t, ns, "scale"); b == nil || b.Details["zones"] != strings.Join(rest, ",") {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "scale"))
		}
		return nil
	})
	// The pods of the deleted node go too: the local cluster runs no pod
	// garbage collector, so the test does its part (force deletion of
	// pods bound to a node that no longer exists). Their replacements land
	// in the other zones.
	for _, p := range k8s.Pods(t, ns, "scale") {
		if p.Spec.NodeName == lone.Name {
			if err := kube.Client.CoreV1().Pods(ns).Delete(ctx, p.Name, *metav1.NewDeleteOptions(0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	e2eutil.Eventually(t, time.Minute, "10 pods attached in the remaining zones", func() error {
		return converged(t, ns, "scale", neg, "", 10, "", true)
	})
}

// Scenario 4: the annotation names another backend service: the NEGs
// leave the old one and join the new; the annotation goes: the NEGs leave
// the backend service and are deleted, the finalizer is released, nothing
// of podlb's is left in the cloud and the gates release.
func TestBackendServiceSwitchAndRemoval(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	first := backendService(t, resourceName(ns, "first"), 2)
	second := backendService(t, resourceName(ns, "second"), 2)
	neg := negName(ns, "web")
	k8s.Create(t, e2eutil.WebService(ns, "web", inBackendService(first)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "web", 3, true))
	e2eutil.Eventually(t, 60*time.Second, "HEALTHY in the first backend service", func() error {
		return converged(t, ns, "web", neg, first, 3, computesim.StateHealthy, true)
	})
	zs := zonesWithNodes(t)
	if got := backendNEGs(t, first); !slices.Equal(got, zonal(neg, zs)) {
		t.Fatalf("backends of %s: %v", first, got)
	}

	k8s.Annotate(t, ns, "web", gcpprovider.AnnotationKey, `{"http": {"backendService": "`+second+`"}}`)
	e2eutil.Eventually(t, 60*time.Second, "NEGs moved to the second backend service", func() error {
		if got := backendNEGs(t, second); !slices.Equal(got, zonal(neg, zs)) {
			return fmt.Errorf("backends of %s: %v", second, got)
		}
		if got := backendNEGs(t, first); len(got) != 0 {
			return fmt.Errorf("backends of %s: %v", first, got)
		}
		if b := gcpStatus(t, ns, "web"); b == nil || !strings.HasSuffix(b.Details["backendService"], "/"+second) || b.Healthy != 3 {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "web"))
		}
		return converged(t, ns, "web", neg, second, 3, computesim.StateHealthy, true)
	})

	k8s.Annotate(t, ns, "web", gcpprovider.AnnotationKey, "")
	e2eutil.Eventually(t, 60*time.Second, "NEGs detached and deleted, Service released", func() error {
		if got := backendNEGs(t, second); len(got) != 0 {
			return fmt.Errorf("backends of %s: %v", second, got)
		}
		if negs := negsNamed(t, neg); len(negs) != 0 {
			return fmt.Errorf("NEGs %s left in %v", neg, negs)
		}
		return k8s.Released(ns, "web")
	})
	// Nothing of this Service's is left anywhere in the emulator once the
	// detached endpoints have drained.
	e2eutil.Eventually(t, 10*time.Second, "nothing left in the emulator", func() error {
		if hs := append(sim.Health(first), sim.Health(second)...); len(hs) != 0 {
			return fmt.Errorf("%d endpoints still health-checked: %+v", len(hs), hs[0])
		}
		if left := negsDescribing(t, ns); len(left) != 0 {
			return fmt.Errorf("NEGs describing namespace %s left: %v", ns, left)
		}
		return nil
	})
	// The gates, once True, stay True: the pods keep serving.
	for _, p := range k8s.LivePods(t, ns, "web") {
		if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !e2eutil.IsReady(&p) {
			t.Errorf("pod %s gate %+v after the annotation went", p.Name, g)
		}
	}
}

// negsDescribing lists "zone/name" of every NEG whose description
// mentions the namespace.
func negsDescribing(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, z := range zones {
		it := gce.NEGs.List(ctx, &computepb.ListNetworkEndpointGroupsRequest{Project: project, Zone: z})
		for {
			n, err := it.Next()
			if err != nil {
				break
			}
			if strings.Contains(n.GetDescription(), `"`+ns+`"`) {
				out = append(out, z+"/"+n.GetName())
			}
		}
	}
	return out
}

// foreignPodIP is the k-th address from the top of the pod range of the
// zone's node, an address of that VM's alias range that the node
// simulator, counting up from the bottom, is not about to give a pod: as
// another tool's workload on the node would have.
func foreignPodIP(t *testing.T, zone string, k int) string {
	t.Helper()
	for _, n := range kube.Nodes {
		if n.Zone == zone {
			block := netip.MustParsePrefix(n.PodCIDR)
			top := binary.BigEndian.Uint32(block.Addr().AsSlice()) + 1<<(32-block.Bits()) - 2 // below the broadcast address
			return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, top-uint32(k)))).String()
		}
	}
	t.Fatalf("no node in zone %s", zone)
	return ""
}

// foreignNEG creates a NEG that is not podlb's, with one endpoint on the
// zone's node, as another tool would.
func foreignNEG(t *testing.T, zone, name, ip string) *computepb.NetworkEndpoint {
	t.Helper()
	var vm string
	for _, n := range kube.Nodes {
		if n.Zone == zone {
			vm = n.VMName
		}
	}
	op, err := gce.NEGs.Insert(ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zone,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{
			Name: proto.String(name), NetworkEndpointType: proto.String("GCE_VM_IP_PORT"),
			Description: proto.String(`{"managedBy":"another-tool"}`),
		}})
	if err := emuclient.WaitOp(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	ep := &computepb.NetworkEndpoint{Instance: proto.String(vm), IpAddress: proto.String(ip), Port: proto.Int32(8080)}
	op, err = gce.NEGs.AttachNetworkEndpoints(ctx, &computepb.AttachNetworkEndpointsNetworkEndpointGroupRequest{
		Project: project, Zone: zone, NetworkEndpointGroup: name,
		NetworkEndpointGroupsAttachEndpointsRequestResource: &computepb.NetworkEndpointGroupsAttachEndpointsRequest{NetworkEndpoints: []*computepb.NetworkEndpoint{ep}},
	})
	if err := emuclient.WaitOp(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	return ep
}

// Scenario 5: NEGs that are not podlb's are never touched: one with the
// very name podlb would use makes the binding Invalid, and one that shares
// the backend service stays a backend with its endpoint throughout.
func TestForeignNEGsAreNeverTouched(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	zone := zones[0]

	// A foreign NEG squats on the name of Service "squat"'s NEGs.
	squatBS := backendService(t, resourceName(ns, "squat"), 2)
	squatNEG := negName(ns, "squat")
	squatIP, otherIP := foreignPodIP(t, zone, 0), foreignPodIP(t, zone, 1)
	foreignNEG(t, zone, squatNEG, squatIP)
	// Another tool's NEG already serves the backend service "shared" uses.
	sharedBS := backendService(t, resourceName(ns, "shared"), 2)
	otherNEG := resourceName(ns, "other-tool")
	foreignNEG(t, zone, otherNEG, otherIP)
	cur, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: sharedBS})
	if err != nil {
		t.Fatal(err)
	}
	otherBackend := &computepb.Backend{Group: proto.String("zones/" + zone + "/networkEndpointGroups/" + otherNEG),
		BalancingMode: proto.String("CONNECTION"), MaxConnectionsPerEndpoint: proto.Int32(7), CapacityScaler: proto.Float32(0.5)}
	op, err := gce.BackendServices.Patch(ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: sharedBS,
		BackendServiceResource: &computepb.BackendService{Fingerprint: cur.Fingerprint, Backends: []*computepb.Backend{otherBackend}}})
	if err := emuclient.WaitOp(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	k8s.Create(t, e2eutil.WebService(ns, "squat", inBackendService(squatBS)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "squat", 2, true))
	k8s.Create(t, e2eutil.WebService(ns, "shared", inBackendService(sharedBS)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "shared", 3, true))

	untouched := func() error {
		for _, f := range []struct{ neg, ip string }{{squatNEG, squatIP}, {otherNEG, otherIP}} {
			negs := negsNamed(t, f.neg)
			if negs[zone] != `{"managedBy":"another-tool"}` {
				return fmt.Errorf("foreign NEG %s: %v", f.neg, negs)
			}
			eps := sim.Endpoints(zone, f.neg)
			if len(eps) != 1 || eps[0].IPAddress != f.ip {
				return fmt.Errorf("foreign NEG %s endpoints %+v", f.neg, eps)
			}
		}
		if got := backendNEGs(t, squatBS); len(got) != 0 {
			return fmt.Errorf("backends of %s: %v", squatBS, got)
		}
		cur, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: sharedBS})
		if err != nil {
			return err
		}
		for _, b := range cur.GetBackends() {
			if zoneAndName(b.GetGroup()) == zone+"/"+otherNEG {
				if b.GetMaxConnectionsPerEndpoint() != 7 || b.GetCapacityScaler() != 0.5 {
					return fmt.Errorf("foreign backend changed: %v", b)
				}
				return nil
			}
		}
		return fmt.Errorf("foreign backend gone from %s", sharedBS)
	}

	e2eutil.Eventually(t, 60*time.Second, "squatted binding reported Invalid", func() error {
		const want = "is not podlb's"
		if ws := k8s.Warnings(t, ns, "squat", want); len(ws) == 0 {
			return fmt.Errorf("no Warning containing %q; have %v", want, k8s.AllWarnings(t, ns, "squat"))
		}
		if b := gcpStatus(t, ns, "squat"); b == nil || !strings.Contains(b.Error, want) || !strings.Contains(b.Error, squatNEG) {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "squat"))
		}
		for _, p := range k8s.LivePods(t, ns, "squat") {
			if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionFalse || !strings.Contains(g.Message, want) {
				return fmt.Errorf("pod %s gate %+v", p.Name, g)
			}
		}
		return untouched()
	})
	e2eutil.Eventually(t, 60*time.Second, "shared backend service serves both", func() error {
		if err := converged(t, ns, "shared", negName(ns, "shared"), sharedBS, 3, computesim.StateHealthy, true); err != nil {
			return err
		}
		return untouched()
	})
	// The squatted name is one Warning, not one per retry. A repeat is a
	// count on the first Event, or a new Event once the broadcaster has
	// forgotten it: both count here.
	sent := map[string]int32{}
	for _, w := range k8s.AllWarnings(t, ns, "squat") {
		sent[w.Message] += w.Count
	}
	for msg, n := range sent {
		if n > 2 {
			t.Errorf("Warning repeated %d times: %s", n, msg)
		}
	}

	// Both Services go: podlb releases what is its own and nothing else.
	for _, name := range []string{"squat", "shared"} {
		if err := kube.Client.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e2eutil.Eventually(t, 60*time.Second, "Services released, foreign NEGs intact", func() error {
		if negs := negsNamed(t, negName(ns, "shared")); len(negs) != 0 {
			return fmt.Errorf("podlb's NEGs left in %v", negs)
		}
		if got := backendNEGs(t, sharedBS); !slices.Equal(got, []string{zone + "/" + otherNEG}) {
			return fmt.Errorf("backends of %s: %v", sharedBS, got)
		}
		return untouched()
	})
}

// Scenario 6: the controller restarts in the middle of a rollout; no
// endpoint is lost or attached twice, gates converge, and no request
// fails.
func TestControllerRestartMidRollout(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs, addr := loadBalancer(t, resourceName(ns, "restart"), 2)
	neg := negName(ns, "restart")
	k8s.Create(t, e2eutil.WebService(ns, "restart", inBackendService(bs)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "restart", 6, true))
	e2eutil.Eventually(t, 90*time.Second, "6 pods HEALTHY", func() error {
		return converged(t, ns, "restart", neg, bs, 6, computesim.StateHealthy, true)
	})

	load := loadgen.Start(addr, 4, 25*time.Millisecond)
	k8s.Restart(t, ns, "restart")
	e2eutil.Eventually(t, 60*time.Second, "rollout under way", func() error {
		d, err := kube.Client.AppsV1().Deployments(ns).Get(ctx, "restart", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.UpdatedReplicas < 3 {
			return fmt.Errorf("%d updated", d.Status.UpdatedReplicas)
		}
		return nil
	})
	restartController(t, withAWS)
	k8s.WaitRollout(t, ns, "restart", 3*time.Minute)
	e2eutil.Eventually(t, 60*time.Second, "converged after restart", func() error {
		return converged(t, ns, "restart", neg, bs, 6, computesim.StateHealthy, true)
	})
	time.Sleep(2 * time.Second)
	res := load.Stop()
	t.Logf("rollout across a restart: %d ok, %d failed", res.OK, res.Failed)
	if res.Failed != 0 {
		t.Errorf("%d requests failed: %v", res.Failed, res.Errors)
	}
	// Each endpoint is health-checked once: not attached twice, in no
	// second zone.
	seen := map[string]int{}
	for _, h := range sim.Health(bs) {
		if h.State != computesim.StateDraining {
			seen[fmt.Sprintf("%s:%d", h.IPAddress, h.Port)]++
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("endpoint %s held %d times", k, n)
		}
	}
	if len(seen) != 6 {
		t.Errorf("%d endpoints health-checked, want 6: %v", len(seen), seen)
	}
}

// Scenario 7: a fifth of all Compute calls answered 403 rateLimitExceeded;
// everything converges and not one Warning reaches the Service.
func TestRateLimitingConvergesQuietly(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs := backendService(t, resourceName(ns, "throttle"), 2)
	neg := negName(ns, "throttle")
	before := sim.Stats()
	sim.SetRateLimitRate(0.2)
	defer sim.SetRateLimitRate(0)
	k8s.Create(t, e2eutil.WebService(ns, "throttle", inBackendService(bs)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "throttle", 10, true))
	e2eutil.Eventually(t, 2*time.Minute, "10 pods HEALTHY under rate limiting", func() error {
		return converged(t, ns, "throttle", neg, bs, 10, computesim.StateHealthy, true)
	})
	k8s.Restart(t, ns, "throttle")
	k8s.WaitRollout(t, ns, "throttle", 3*time.Minute)
	e2eutil.Eventually(t, 2*time.Minute, "rolled out under rate limiting", func() error {
		return converged(t, ns, "throttle", neg, bs, 10, computesim.StateHealthy, true)
	})
	after := sim.Stats()
	var limited, calls int64
	for _, m := range after.MethodNames() {
		d := callDelta(before, after, m)
		limited += d.RateLimited
		calls += d.Calls
	}
	if limited == 0 {
		t.Fatal("no call was rate limited: the test injected nothing")
	}
	ws := k8s.AllWarnings(t, ns, "throttle")
	t.Logf("%d of %d calls rate limited; %d Warning events", limited, calls, len(ws))
	for _, w := range ws {
		t.Errorf("Warning under rate limiting: %s: %s (x%d)", w.Reason, w.Message, w.Count)
	}
}

// Scenario 8: bad input. Each problem gets a Warning naming it, in the
// status too, the gates stay closed, and a healthy Service beside them is
// untouched.
func TestBadInputIsNamedAndIsolated(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	goodBS := backendService(t, resourceName(ns, "good"), 2)
	rateBS := backendService(t, resourceName(ns, "rate"), 2)
	long := strings.Repeat("n", 64)

	cases := []struct {
		name, annotation, want string
	}{
		{"json", `{"http": {"backendService": `, "malformed JSON"},
		{"port", `{"8081": {"backendService": "` + goodBS + `"}}`, "no port 8081"},
		{"negname", `{"http": {"name": "Bad_NEG"}}`, `"Bad_NEG" is not a NEG name`},
		{"toolong", `{"http": {"name": "` + long + `"}}`, `"` + long + `" is not a NEG name`},
		{"notfound", `{"http": {"backendService": "does-not-exist"}}`, "backend service projects/" + project + "/global/backendServices/does-not-exist not found"},
		{"mode", `{"http": {"backendService": "` + rateBS + `", "balancingMode": "RATE", "maxRatePerEndpoint": 10}}`, "has protocol TCP"},
	}
	k8s.Create(t, e2eutil.WebService(ns, "good", inBackendService(goodBS)))
	k8s.Create(t, e2eutil.RollingDeployment(ns, "good", 2, true))
	for _, tc := range cases {
		k8s.Create(t, e2eutil.WebService(ns, "bad-"+tc.name, map[string]string{gcpprovider.AnnotationKey: tc.annotation}))
		k8s.Create(t, e2eutil.RollingDeployment(ns, "bad-"+tc.name, 2, true))
	}
	e2eutil.Eventually(t, 90*time.Second, "good Service converges beside the bad ones", func() error {
		return converged(t, ns, "good", negName(ns, "good"), goodBS, 2, computesim.StateHealthy, true)
	})
	bad := make([]e2eutil.BadInput, len(cases))
	for i, tc := range cases {
		bad[i] = e2eutil.BadInput{Service: "bad-" + tc.name, Want: tc.want}
	}
	k8s.ExpectProblemsNamed(t, ns, bad)
	// The TCP backend service got no RATE backend.
	if got := backendNEGs(t, rateBS); len(got) != 0 {
		t.Errorf("backends of %s: %v", rateBS, got)
	}
	if err := converged(t, ns, "good", negName(ns, "good"), goodBS, 2, computesim.StateHealthy, true); err != nil {
		t.Errorf("good Service after the bad ones settled: %v", err)
	}
}
