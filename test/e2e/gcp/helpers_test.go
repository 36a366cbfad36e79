package gcp_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var ctx = context.Background()

const gate = string(targets.GateConditionType)

// resourceName is a Compute resource name unique to the test's namespace:
// RFC 1035, starting with a letter, well under 63 characters.
func resourceName(ns, suffix string) string {
	n := ns
	if len(n) > 20 {
		n = n[len(n)-20:]
	}
	return "t-" + strings.Trim(n, "-") + "-" + suffix
}

// backendService creates a TCP health check and backend service with
// connection draining; healthyCount is the health check's healthyThreshold.
func backendService(t *testing.T, name string, healthyCount int32) string {
	t.Helper()
	if err := gce.CreateTCPBackendService(ctx, emuclient.TCPBackend{Name: name, HealthyThreshold: healthyCount, DrainingTimeoutSec: 1}); err != nil {
		t.Fatal(err)
	}
	return name
}

// loadBalancer creates a backend service behind a target TCP proxy and a
// global forwarding rule, and returns the service's name and the
// forwarding rule's address.
func loadBalancer(t *testing.T, name string, healthyCount int32) (string, string) {
	t.Helper()
	bs := backendService(t, name, healthyCount)
	addr, err := gce.CreateTCPProxyFrontend(ctx, sim, name, bs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gce.DeleteTCPProxyFrontend(ctx, name) })
	return bs, addr
}

// inBackendService is the annotation binding port "http" to NEGs that are
// backends of bs.
func inBackendService(bs string) map[string]string {
	return map[string]string{gcpprovider.AnnotationKey: `{"http": {"backendService": "` + bs + `"}}`}
}

// nodeZones maps the names of the nodes that exist now to their zone.
func nodeZones(t *testing.T) map[string]string {
	t.Helper()
	list, err := kube.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for i := range list.Items {
		out[list.Items[i].Name] = targets.NodeInfoOf(&list.Items[i]).Zone
	}
	return out
}

// zonesWithNodes lists the zones that have a node now, sorted.
func zonesWithNodes(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var out []string
	for _, z := range nodeZones(t) {
		if !seen[z] {
			seen[z] = true
			out = append(out, z)
		}
	}
	sort.Strings(out)
	return out
}

// vmOf is the GCE instance of a node: on GCE the node name.
func vmOf(node string) string {
	for _, n := range kube.Nodes {
		if n.Name == node {
			return n.VMName
		}
	}
	return ""
}

// negName is the name podlb gives the NEGs of a Service's port 80.
func negName(ns, svc string) string {
	return gcpprovider.NEGName(clusterName, providers.BindingKey{Namespace: ns, Service: svc, Provider: "gcp", Port: 80})
}

// zonedEndpoint is an endpoint of one of a binding's zonal NEGs.
type zonedEndpoint struct {
	computesim.Endpoint
	Zone string
}

// negEndpoints lists the endpoints of the NEGs named name in every zone,
// by "ip:port", and the keys found in more than one NEG.
func negEndpoints(name string) (map[string]zonedEndpoint, []string) {
	out := map[string]zonedEndpoint{}
	var dups []string
	for _, z := range zones {
		for _, ep := range sim.Endpoints(z, name) {
			k := fmt.Sprintf("%s:%d", ep.IPAddress, ep.Port)
			if _, dup := out[k]; dup {
				dups = append(dups, k)
			}
			out[k] = zonedEndpoint{ep, z}
		}
	}
	return out, dups
}

// health maps "ip:port" to the backend service's view of its endpoints
// that are not draining.
func health(bs string) map[string]computesim.EndpointHealth {
	out := map[string]computesim.EndpointHealth{}
	for _, h := range sim.Health(bs) {
		if h.State != computesim.StateDraining {
			out[fmt.Sprintf("%s:%d", h.IPAddress, h.Port)] = h
		}
	}
	return out
}

// converged checks that the NEGs named neg hold exactly the pods' IPs on
// port 8080, each in the NEG of its node's zone naming its node's VM; with
// bs, that the backend service judges each of them state; with checkGate,
// that every pod's gate is True and the pod Ready.
func converged(t *testing.T, ns, app, neg, bs string, want int, state string, checkGate bool) error {
	ps := k8s.LivePods(t, ns, app)
	if len(ps) != want {
		return fmt.Errorf("%d live pods, want %d", len(ps), want)
	}
	eps, dups := negEndpoints(neg)
	if len(dups) > 0 {
		return fmt.Errorf("endpoints in more than one NEG: %v", dups)
	}
	hs := map[string]computesim.EndpointHealth{}
	if bs != "" {
		hs = health(bs)
	}
	zoneOf := nodeZones(t)
	var keys []string
	for _, p := range ps {
		if p.Status.PodIP == "" {
			return fmt.Errorf("pod %s has no IP yet", p.Name)
		}
		key := p.Status.PodIP + ":8080"
		keys = append(keys, key)
		ep, ok := eps[key]
		if !ok {
			return fmt.Errorf("pod %s (%s) is in no NEG %s", p.Name, key, neg)
		}
		if z := zoneOf[p.Spec.NodeName]; ep.Zone != z || ep.Instance != vmOf(p.Spec.NodeName) {
			return fmt.Errorf("pod %s on node %s in zone %q is endpoint %+v", p.Name, p.Spec.NodeName, z, ep)
		}
		if bs != "" && state != "" && hs[key].State != state {
			return fmt.Errorf("pod %s endpoint %s is %q in %s, want %s", p.Name, key, hs[key].State, bs, state)
		}
		if checkGate {
			if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue {
				return fmt.Errorf("pod %s gate %+v", p.Name, g)
			}
			if !e2eutil.IsReady(&p) {
				return fmt.Errorf("pod %s not Ready", p.Name)
			}
		}
	}
	if len(eps) != want {
		var got []string
		for k := range eps {
			got = append(got, k)
		}
		sort.Strings(got)
		sort.Strings(keys)
		return fmt.Errorf("NEGs %s hold %d endpoints %v, want the pods' %v", neg, len(eps), got, keys)
	}
	return nil
}

// backendNEGs lists the backends of a backend service as "zone/name".
func backendNEGs(t *testing.T, bs string) []string {
	t.Helper()
	got, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: bs})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range got.GetBackends() {
		out = append(out, zoneAndName(b.GetGroup()))
	}
	sort.Strings(out)
	return out
}

// zoneAndName shortens a NEG URL to "zone/name".
func zoneAndName(url string) string {
	p := computesim.ResourcePath(url)
	parts := strings.Split(p, "/")
	if len(parts) < 6 {
		return p
	}
	return parts[3] + "/" + parts[5]
}

// zonal lists "zone/name" for each zone.
func zonal(name string, zones []string) []string {
	out := make([]string, len(zones))
	for i, z := range zones {
		out[i] = z + "/" + name
	}
	return out
}

// negsNamed lists the zones where a NEG of that name exists, with their
// descriptions, through the aggregated list.
func negsNamed(t *testing.T, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	it := gce.NEGs.AggregatedList(ctx, &computepb.AggregatedListNetworkEndpointGroupsRequest{Project: project})
	for {
		pair, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range pair.Value.GetNetworkEndpointGroups() {
			if n.GetName() == name {
				out[strings.TrimPrefix(pair.Key, "zones/")] = n.GetDescription()
			}
		}
	}
	return out
}

// gcpStatus is the status of the Service's GCP binding of port 80.
func gcpStatus(t *testing.T, ns, name string) *targets.BindingStatus {
	st := k8s.Status(t, ns, name)
	if st == nil {
		return nil
	}
	return st.Bindings["gcp"]["80"]
}

// callDelta is what one method's counters grew by between two snapshots.
func callDelta(before, after computesim.Stats, method string) computesim.MethodStats {
	a, b := after.Methods[method], before.Methods[method]
	return computesim.MethodStats{Calls: a.Calls - b.Calls, Errors: a.Errors - b.Errors, RateLimited: a.RateLimited - b.RateLimited,
		Operations: a.Operations - b.Operations, OperationsFailed: a.OperationsFailed - b.OperationsFailed,
		Endpoints: a.Endpoints - b.Endpoints, MaxEndpointsCall: a.MaxEndpointsCall}
}

// explainFailures logs, for each failed request kept in r, what the
// emulator did with its connection and the timelines of the pods behind
// the endpoints it tried: enough to tell a late detach from a pod that
// stopped too early or an emulator that dropped the connection.
func explainFailures(t *testing.T, r loadgen.Result) {
	t.Helper()
	for _, f := range r.Failures {
		t.Logf("failed at %s from %s: %s", f.At.Format("15:04:05.000"), f.Local, f.Err)
		rec, ok := sim.Connection(f.Local)
		if !ok {
			t.Logf("  the emulator has no record of this connection")
			continue
		}
		t.Logf("  emulator: %s", rec)
		for _, ep := range rec.Tried {
			ip, _, _ := strings.Cut(ep, ":")
			for _, l := range kube.Sim.PodLives(ip) {
				t.Logf("  %s", l)
			}
		}
	}
}
