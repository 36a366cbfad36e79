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

func awsIngressCloud() e2eutil.IngressCloud { return e2eutil.AWSIngressCloud(sim) }

func isAWSNotFound[E error](err error) bool {
	var target E
	return err != nil && errors.As(err, &target)
}

// Edits under load: a path added, a path switched to a new backend and a
// path removed never fail a request to "/" nor to the switched path
// (e2eutil.IngressEditsScenario).
func TestIngressAWSEditsUnderLoad(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	e2eutil.IngressEditsScenario(t, k8s, ns, e2eutil.IngressClass(t, k8s, "podlb-"+ns), awsIngressCloud())
}
