package gcp_test

import (
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// gcpIngressCloud is a global external Application Load Balancer as the
// Ingress scenarios see it, for the balancer of key.
func gcpIngressCloud(key providers.BalancerKey) e2eutil.IngressCloud {
	return e2eutil.IngressCloud{
		Name:        "gcp",
		Annotations: map[string]string{loadbalancers.GCPAnnotation: `{}`},
		Address: func(cs *loadbalancers.CloudStatus) networkingv1.IngressLoadBalancerIngress {
			return networkingv1.IngressLoadBalancerIngress{IP: cs.IP}
		},
		DataPath: func(cs *loadbalancers.CloudStatus) string {
			return sim.ForwardingRuleAddr(path.Base(cs.Details["httpRule"]))
		},
		// Requests no route matches go to a backend service without
		// backends (see providers/gcp EnsureHTTP).
		NoRoute: http.StatusServiceUnavailable,
		Leftovers: func(t *testing.T, cs *loadbalancers.CloudStatus) []string {
			return balancerLeftovers(t, gcpprovider.BalancerDescription(clusterName, key), cs)
		},
	}
}

func gcpIngressCases(key providers.BalancerKey) e2eutil.IngressCases {
	return e2eutil.IngressCases{
		IngressCloud:    gcpIngressCloud(key),
		UserResource:    func(t *testing.T, cs *loadbalancers.CloudStatus) e2eutil.UserResource { return usersURLMap(t, key, cs) },
		GoodAnnotations: onReservedAddress,
		BadAnnotations:  gcpBadAnnotations,
	}
}

// onReservedAddress reserves a global address, released when the test
// ends, and places the load balancer on it.
func onReservedAddress(t *testing.T) map[string]string {
	t.Helper()
	c, err := compute.NewGlobalAddressesRESTClient(ctx, option.WithEndpoint(sim.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	const name = "serving-ingress-ip"
	op, err := c.Insert(ctx, &computepb.InsertGlobalAddressRequest{Project: project, AddressResource: &computepb.Address{Name: proto.String(name)}})
	if err := emuclient.WaitOp(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		op, err := c.Delete(ctx, &computepb.DeleteGlobalAddressRequest{Project: project, Address: name})
		_ = emuclient.WaitOp(ctx, op, err)
		_ = c.Close()
	})
	return gcpIngressCloud(providers.BalancerKey{}).AnnotationsWith(t, map[string]any{"address": name})
}

// urlMapsClient is a URL maps client on the emulator, closed when the
// test ends.
func urlMapsClient(t *testing.T) *compute.UrlMapsClient {
	t.Helper()
	c, err := compute.NewUrlMapsRESTClient(ctx, option.WithEndpoint(sim.URL()), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// usersURLMap adds, through the Compute API, a URL map of the user's own
// whose default service is podlb's backend service of "web". Compute
// refuses to delete a backend service in use, so podlb must leave it and
// say so. The test deletes the map, the backend service and its health
// check when it ends, as the user would once podlb left them.
func usersURLMap(t *testing.T, key providers.BalancerKey, cs *loadbalancers.CloudStatus) e2eutil.UserResource {
	t.Helper()
	var web *targets.BindingStatus
	for id, b := range cs.Backends {
		if strings.HasSuffix(id, "/web:80") {
			web = b
		}
	}
	if web == nil || web.Details["backendService"] == "" {
		t.Fatalf("no backend service of web in %+v", cs.Backends)
	}
	service := path.Base(web.Details["backendService"])
	bs, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: service})
	if err != nil || len(bs.GetHealthChecks()) != 1 {
		t.Fatalf("backend service %s: %v %v", service, bs, err)
	}
	check := path.Base(bs.GetHealthChecks()[0])
	ums := urlMapsClient(t)
	name := "users-own-map"
	op, err := ums.Insert(ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: &computepb.UrlMap{
		Name: proto.String(name), DefaultService: proto.String(web.Details["backendService"])}})
	if err := emuclient.WaitOp(ctx, op, err); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		op, err := ums.Delete(ctx, &computepb.DeleteUrlMapRequest{Project: project, UrlMap: name})
		_ = emuclient.WaitOp(ctx, op, err)
		op, err = gce.BackendServices.Delete(ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: service})
		_ = emuclient.WaitOp(ctx, op, err)
		op, err = gce.HealthChecks.Delete(ctx, &computepb.DeleteHealthCheckRequest{Project: project, HealthCheck: check})
		_ = emuclient.WaitOp(ctx, op, err)
	})
	kept := []string{"backend service " + service, "health check " + check}
	return e2eutil.UserResource{
		Name: name,
		Check: func() error {
			um, err := ums.Get(ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: name})
			if err != nil {
				return fmt.Errorf("URL map %s: %w", name, err)
			}
			if _, err := gce.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: path.Base(um.GetDefaultService())}); err != nil {
				return fmt.Errorf("the backend service the user's URL map uses: %w", err)
			}
			return nil
		},
		Leftovers: func() []string {
			var left []string
			for _, l := range balancerLeftovers(t, gcpprovider.BalancerDescription(clusterName, key), cs) {
				if !slices.Contains(kept, l) {
					left = append(left, l)
				}
			}
			if _, err := ums.Get(ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: path.Base(cs.Details["urlMap"])}); err == nil {
				left = append(left, "URL map "+cs.Details["urlMap"])
			}
			return left
		},
	}
}

// gcpBadAnnotations: an SSL certificate Compute does not hold, the
// serving Ingress's reserved address (its port 80 is taken), and a
// balancing mode an Application Load Balancer does not allow.
func gcpBadAnnotations(t *testing.T, good map[string]string, _ *loadbalancers.CloudStatus) []e2eutil.BadIngress {
	t.Helper()
	cloud := gcpIngressCloud(providers.BalancerKey{})
	field := "metadata.annotations[" + loadbalancers.GCPAnnotation + "]"
	return []e2eutil.BadIngress{
		{Name: "unknown-cert", Annotations: cloud.AnnotationsWith(t, map[string]any{"sslCertificates": []string{"no-such-cert"}}),
			Want: []string{field, "sslCertificates", "no-such-cert"}},
		{Name: "taken-address", Annotations: good,
			Want: []string{field, "address", "in use by another forwarding rule"}},
		{Name: "connection-mode", Annotations: cloud.AnnotationsWith(t, map[string]any{"backends": map[string]any{"web:80": map[string]any{"balancingMode": "CONNECTION"}}}),
			Want: []string{field, `backends["web:80"].balancingMode`, "its backends use RATE"}},
	}
}

// The ungated control of TestIngressGCPRoutesRollsAndDeletes's rollout.
func TestIngressGCPUngatedRolloutFailsRequests(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressUngatedControl(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), gcpIngressCloud(providers.BalancerKey{Namespace: ns, Name: "plain"}))
}

// Two Ingresses of one group on one URL map and address, a conflicting
// third refused, and a user's URL map on podlb's backend service that
// survives a member's deletion and keeps that backend service when the
// last member goes (e2eutil.IngressGroupCase).
func TestIngressGCPGroupSharesRefusesConflictsAndLeavesAUsersURLMap(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressGroupCase(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), gcpIngressCases(providers.BalancerKey{Name: "g-" + ns}))
}

// Each bad input gets a Warning naming its field while a good Ingress
// keeps serving (e2eutil.IngressBadInputCase).
func TestIngressGCPBadInputWarnsAndDisturbsNoOne(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressBadInputCase(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), gcpIngressCases(providers.BalancerKey{Namespace: ns, Name: "good"}))
}
