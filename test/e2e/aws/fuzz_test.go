package aws_test

import (
	"strings"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// Invariant: no value of podlb's annotations, however large, deep or
// strange, crashes the controller, releases a healthy binding, floods the
// object with Warnings or stays in memory (e2eutil.FuzzAnnotations).
//
// A Service bound to a shared group behind an NLB and an Ingress behind
// an ALB serve steady traffic while their annotations are fuzzed: no
// request fails and no target leaves the group.
func TestFuzzAnnotationsKeepServing(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	arn, addr := e2eutil.TargetGroupBehindNLB(t, sim, uniqueName(ns, "fuzz"))
	good := `{"http": {"arn": "` + arn + `"}}`
	k8s.Create(t, e2eutil.WebService(ns, "fuzz", map[string]string{awsKey: good}), e2eutil.RollingDeployment(ns, "fuzz", 3, true))

	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	var ids []string
	for _, s := range ingressSubnets {
		ids = append(ids, `"`+s.ID+`"`)
	}
	goodLB := `{"subnets": [` + strings.Join(ids, ", ") + `]}`
	k8s.Create(t, e2eutil.WebService(ns, "web", nil), e2eutil.RollingDeployment(ns, "web", 2, true),
		e2eutil.Ingress(ns, "front", class, map[string]string{loadbalancers.AWSAnnotation: goodLB},
			e2eutil.HostRule("shop.example.com", e2eutil.PrefixPath("/", "web", 80))))
	backend := ns + "/web:80"
	serving := func() error {
		if err := converged(t, ns, "fuzz", arn, 3, "healthy", true); err != nil {
			return err
		}
		return k8s.IngressServing(t, ns, "front", "aws", 2, backend)
	}
	e2eutil.Eventually(t, 2*time.Minute, "the Service's group and the Ingress's load balancer serve every pod", serving)
	st := k8s.IngressStatus(t, ns, "front")
	albAddr := sim.LoadBalancerAddr(st.Clouds["aws"].Details["loadBalancer"], 80)

	nlbLoad := loadgen.Start(addr, 2, 25*time.Millisecond)
	albLoad := loadgen.StartHost(albAddr, "shop.example.com", 2, 25*time.Millisecond)
	watch := watchTargets(arn)
	e2eutil.FuzzAnnotations(t, k8s, []e2eutil.FuzzTarget{
		{Kind: "Service", Namespace: ns, Name: "fuzz", Key: awsKey, Good: good},
		{Kind: "Ingress", Namespace: ns, Name: "front", Key: loadbalancers.AWSAnnotation, Good: goodLB},
	}, e2eutil.FuzzOptions{Steady: serving})
	fewest, left := watch.Stop()
	if fewest < 3 || len(left) > 0 {
		t.Errorf("while fuzzing, the group fell to %d healthy targets; targets that left: %v", fewest, left)
	}
	for name, load := range map[string]*loadgen.Load{"NLB": nlbLoad, "ALB": albLoad} {
		res := load.Stop()
		t.Logf("%s: %d ok, %d failed", name, res.OK, res.Failed)
		if res.Failed != 0 || res.OK < 100 {
			t.Errorf("%s: %d requests failed (%d ok): %v", name, res.Failed, res.OK, res.Errors)
		}
	}
}
