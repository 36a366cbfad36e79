package gcp_test

import (
	"fmt"
	"maps"
	"path"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/loadgen"

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

// Edits under load: a path added, a path switched to a new backend and a
// path removed never fail a request to "/" nor to the switched path
// (e2eutil.IngressEditsScenario).
func TestIngressGCPEditsUnderLoad(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressEditsScenario(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), gcpIngressCloud(providers.BalancerKey{Namespace: ns, Name: "edits"}))
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

// One Ingress served by both clouds at once: an Application Load Balancer
// on each, the same pods behind both, a rollout under load through both
// failing no request, and every gate opened only once both clouds
// reported its pod healthy.
func TestIngressGCPServedByBothClouds(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	restartController(t, true)
	t.Cleanup(func() {
		// Hand the next tests the GCP-only controller once this Ingress's
		// load balancers are gone, deleted by a controller serving both.
		_ = kube.Client.NetworkingV1().Ingresses(ns).Delete(ctx, "front", metav1.DeleteOptions{})
		e2eutil.Eventually(t, 2*time.Minute, "Ingress released on both clouds", func() error {
			if ing := k8s.GetIngress(t, ns, "front"); ing != nil {
				return fmt.Errorf("still there: %v", ing.Finalizers)
			}
			return nil
		})
		restartController(t, false)
	})
	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	clouds := []e2eutil.IngressCloud{gcpIngressCloud(providers.BalancerKey{Namespace: ns, Name: "front"}), e2eutil.AWSIngressCloud(awsSim)}
	annotations := map[string]string{}
	for _, c := range clouds {
		maps.Copy(annotations, c.Annotations)
	}
	const host = "shop.example.com"
	k8s.Create(t, e2eutil.WebService(ns, "web", nil), e2eutil.RollingDeployment(ns, "web", 4, true))
	k8s.Create(t, e2eutil.Ingress(ns, "front", class, annotations, e2eutil.HostRule(host, e2eutil.PrefixPath("/", "web", 80))))

	addrs := make([]string, len(clouds))
	last := make([]*loadbalancers.CloudStatus, len(clouds))
	serving := func() error {
		for i, c := range clouds {
			if err := e2eutil.IngressServing(t, k8s, ns, "front", c, map[string]int{ns + "/web:80": 4}, []string{"web"}, &addrs[i], &last[i])(); err != nil {
				return fmt.Errorf("%s: %w", c.Name, err)
			}
		}
		return nil
	}
	// Each gate opened only once both clouds judged its pod healthy
	// (condition times have second precision).
	gatesAfterBothHealthy := func() {
		t.Helper()
		gcpAt := health(path.Base(last[0].Backends[ns+"/web:80"].Details["backendService"]))
		awsAt := awsHealthy(last[1].Backends[ns+"/web:80"].Details["arn"])
		for _, p := range k8s.LivePods(t, ns, "web") {
			g := e2eutil.GateOf(&p)
			key := p.Status.PodIP + ":8080"
			for cloud, at := range map[string]time.Time{"gcp": gcpAt[key].FirstHealthyAt, "aws": awsAt[key]} {
				if at.IsZero() || g == nil || g.LastTransitionTime.Add(time.Second).Before(at) {
					t.Errorf("pod %s gate %+v but healthy on %s at %v", p.Name, g, cloud, at)
				}
			}
		}
	}
	e2eutil.Eventually(t, 2*time.Minute, "both load balancers serving 4 healthy pods", serving)
	gatesAfterBothHealthy()

	loads := make([]*loadgen.Load, len(clouds))
	for i, addr := range addrs {
		loads[i] = loadgen.StartHost(addr, host, 4, 25*time.Millisecond)
	}
	time.Sleep(time.Second)
	k8s.Restart(t, ns, "web")
	k8s.WaitRollout(t, ns, "web", 3*time.Minute)
	e2eutil.Eventually(t, time.Minute, "new pods healthy behind both load balancers", serving)
	time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
	for i, l := range loads {
		res := l.Stop()
		t.Logf("%s: %d ok, %d failed, answered by %d pods", clouds[i].Name, res.OK, res.Failed, len(res.Backends))
		if res.Failed != 0 {
			t.Errorf("%s: the rollout failed %d requests: %v", clouds[i].Name, res.Failed, res.Errors)
		}
		if res.OK < 200 {
			t.Errorf("%s: only %d requests got through", clouds[i].Name, res.OK)
		}
	}
	gatesAfterBothHealthy()
}
