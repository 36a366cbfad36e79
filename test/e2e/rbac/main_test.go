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
	"time"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
)

var (
	kube *cluster.Cluster
	sim  *elbv2sim.Server
)

func TestMain(m *testing.M) {
	cluster.RunMain(m, cluster.Options{Nodes: 3, Cloud: "aws"}, func(c *cluster.Cluster) {
		kube = c
		var err error
		sim, err = elbv2sim.Start(elbv2sim.Options{
			// Short enough for a test, long enough that the gate has
			// something to wait for.
			RegistrationDelay:   2 * time.Second,
			HealthCheckInterval: 200 * time.Millisecond,
			HealthCheckTimeout:  150 * time.Millisecond,
			DeregistrationDelay: time.Second,
			TargetAddr:          cluster.LoopbackAddr,
			VPCs:                []elbv2sim.VPC{{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"10.0.0.0/8"}}},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "elbv2sim:", err)
			os.Exit(1)
		}
	})
}
