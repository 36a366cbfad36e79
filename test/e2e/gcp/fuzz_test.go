package gcp_test

import (
	"fmt"
	"path"
	"slices"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// Invariant: no value of podlb's annotations, however large, deep or
// strange, crashes the controller, releases a healthy binding, floods the
// object with Warnings or stays in memory (e2eutil.FuzzAnnotations).
//
// A Service whose NEGs are backends of a TCP proxy's backend service and
// an Ingress behind a global Application Load Balancer serve steady
// traffic while their annotations are fuzzed: no request fails, every
// endpoint stays HEALTHY and the NEGs stay backends.
func TestFuzzAnnotationsKeepServing(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	bs, addr := loadBalancer(t, resourceName(ns, "fuzz"), 2)
	neg := negName(ns, "fuzz")
	good := inBackendService(bs)[gcpKey]
	k8s.Create(t, e2eutil.WebService(ns, "fuzz", map[string]string{gcpKey: good}), e2eutil.RollingDeployment(ns, "fuzz", 3, true))

	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	const goodLB = `{}`
	k8s.Create(t, e2eutil.WebService(ns, "web", nil), e2eutil.RollingDeployment(ns, "web", 2, true),
		e2eutil.Ingress(ns, "front", class, map[string]string{loadbalancers.GCPAnnotation: goodLB},
			e2eutil.HostRule("shop.example.com", e2eutil.PrefixPath("/", "web", 80))))
	backend := ns + "/web:80"
	var zs []string
	serving := func() error {
		if err := converged(t, ns, "fuzz", neg, bs, 3, computesim.StateHealthy, true); err != nil {
			return err
		}
		if got := backendNEGs(t, bs); !slices.Equal(got, zonal(neg, zs)) {
			return fmt.Errorf("backends of %s are %v, want %v", bs, got, zonal(neg, zs))
		}
		return k8s.IngressServing(t, ns, "front", "gcp", 2, backend)
	}
	e2eutil.Eventually(t, 2*time.Minute, "the Service's NEGs and the Ingress's load balancer serve every pod", func() error {
		zs = zonesWithNodes(t)
		return serving()
	})
	st := k8s.IngressStatus(t, ns, "front")
	httpAddr := sim.ForwardingRuleAddr(path.Base(st.Clouds["gcp"].Details["httpRule"]))

	tcpLoad := loadgen.Start(addr, 2, 25*time.Millisecond)
	httpLoad := loadgen.StartHost(httpAddr, "shop.example.com", 2, 25*time.Millisecond)
	e2eutil.FuzzAnnotations(t, k8s, []e2eutil.FuzzTarget{
		{Kind: "Service", Namespace: ns, Name: "fuzz", Key: gcpKey, Good: good},
		{Kind: "Ingress", Namespace: ns, Name: "front", Key: loadbalancers.GCPAnnotation, Good: goodLB},
	}, e2eutil.FuzzOptions{Steady: serving})
	for name, load := range map[string]*loadgen.Load{"TCP proxy": tcpLoad, "Application Load Balancer": httpLoad} {
		res := load.Stop()
		t.Logf("%s: %d ok, %d failed", name, res.OK, res.Failed)
		if res.Failed != 0 || res.OK < 100 {
			explainFailures(t, res)
			t.Errorf("%s: %d requests failed (%d ok): %v", name, res.Failed, res.OK, res.Errors)
		}
	}
}
