package gcp_test

import (
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
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
