package aws_test

import (
	"errors"
	"testing"

	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// An Ingress with two hosts and three paths over two gated Deployments,
// through an Application Load Balancer: routes, a rollout of both under
// load without a failed request, and a deletion that leaves nothing
// behind (e2eutil.IngressScenario).
func TestIngressAWSRoutesRollsAndDeletes(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	e2eutil.IngressScenario(t, k8s, ns, class, awsIngressCloud())
}

func isAWSNotFound[E error](err error) bool {
	var target E
	return err != nil && errors.As(err, &target)
}
