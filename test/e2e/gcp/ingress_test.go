package gcp_test

import (
	"net/http"
	"path"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// An Ingress with two hosts and three paths over two gated Deployments,
// through a global external Application Load Balancer (URL map, proxy,
// forwarding rule, backend services over NEGs): routes, a rollout of both
// under load without a failed request, and a deletion that leaves nothing
// behind (e2eutil.IngressScenario).
func TestIngressGCPRoutesRollsAndDeletes(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	e2eutil.IngressScenario(t, k8s, ns, class, gcpIngressCloud(providers.BalancerKey{Namespace: ns, Name: "front"}))
}

// Edits under load: a path added, a path switched to a new backend and a
// path removed never fail a request to "/" nor to the switched path
// (e2eutil.IngressEditsScenario).
func TestIngressGCPEditsUnderLoad(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressEditsScenario(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), gcpIngressCloud(providers.BalancerKey{Namespace: ns, Name: "edits"}))
}

// gcpIngressCloud is what the Ingress scenarios need of GCP for the load
// balancer of key: a global external Application Load Balancer.
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

// balancerLeftovers lists the global resources described as the load
// balancer's and the NEGs of its backends that still exist.
func balancerLeftovers(t *testing.T, description string, cs *loadbalancers.CloudStatus) []string {
	t.Helper()
	var left []string
	add := func(kind string, items func() (string, string, error)) {
		for {
			name, desc, err := items()
			if err == iterator.Done {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if desc == description {
				left = append(left, kind+" "+name)
			}
		}
	}
	rules := gce.ForwardingRules.List(ctx, &computepb.ListGlobalForwardingRulesRequest{Project: project})
	add("forwarding rule", func() (string, string, error) {
		r, err := rules.Next()
		return r.GetName(), r.GetDescription(), err
	})
	services := gce.BackendServices.List(ctx, &computepb.ListBackendServicesRequest{Project: project})
	add("backend service", func() (string, string, error) {
		s, err := services.Next()
		return s.GetName(), s.GetDescription(), err
	})
	checks := gce.HealthChecks.List(ctx, &computepb.ListHealthChecksRequest{Project: project})
	add("health check", func() (string, string, error) {
		c, err := checks.Next()
		return c.GetName(), c.GetDescription(), err
	})
	for id, b := range cs.Backends {
		if name := b.Details["negs"]; name == "" {
			left = append(left, "backend "+id+" has no NEG name in its status")
		} else if zones := negsNamed(t, name); len(zones) > 0 {
			left = append(left, "NEGs "+name+" of "+id)
		}
	}
	return left
}
