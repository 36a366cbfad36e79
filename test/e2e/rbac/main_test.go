// Package rbac_test proves podlb's installation manifests on a real
// kube-apiserver: every kustomize overlay renders and applies (server-side
// dry run), the controller's pod passes the restricted Pod Security
// Standard, and the controller does its whole job with nothing but the
// permissions the manifests grant (it runs in this process, impersonating
// its service account, against the ELBv2 emulator).
package rbac_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var (
	kube *cluster.Cluster
	sim  *elbv2sim.Server
)

func TestMain(m *testing.M) {
	cluster.RunMain(m, cluster.Options{Nodes: 3, Cloud: "aws"}, func(c *cluster.Cluster) {
		kube = c
		var err error
		// The default registration delay: short enough for a test, long
		// enough that the gate has something to wait for.
		// The VPC has subnets for the Network Load Balancer podlb
		// provisions for a Service of type LoadBalancer.
		sim, err = e2eutil.StartELBv2Sim(func(o *elbv2sim.Options) { o.VPCs = []elbv2sim.VPC{e2eutil.ALBVPC()} })
		if err != nil {
			fmt.Fprintln(os.Stderr, "elbv2sim:", err)
			os.Exit(1)
		}
	})
}
