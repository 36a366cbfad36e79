// Package plugin_test runs `kubectl podlb` against a real control plane
// with podlb converged on the ELBv2 emulator (target groups it binds by
// annotation, Network Load Balancers it provisions): the controller runs in this
// process, the plugin's commands as a user would type them.
package plugin_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const clusterName = "e2e-plugin"

var (
	kube *cluster.Cluster
	k8s  e2eutil.Kube
	sim  *elbv2sim.Server
)

func TestMain(m *testing.M) {
	cluster.RunMain(m, cluster.Options{Nodes: 2, Cloud: "aws"}, func(c *cluster.Cluster) {
		kube, k8s = c, e2eutil.Kube{Client: c.Client}
		var err error
		// Quick registration: these tests read what podlb says, they do
		// not race a rollout against the load balancer.
		// The VPC has subnets: podlb provisions Network Load Balancers in
		// them for Services of type LoadBalancer.
		sim, err = e2eutil.StartELBv2Sim(func(o *elbv2sim.Options) {
			o.RegistrationDelay = 500 * time.Millisecond
			o.VPCs = []elbv2sim.VPC{e2eutil.ALBVPC()}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "elbv2sim:", err)
			os.Exit(1)
		}
		p, err := e2eutil.AWSProvider(context.Background(), sim, clusterName, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "aws provider:", err)
			os.Exit(1)
		}
		// Leader election on: check looks for the leader's lease.
		if _, err := e2eutil.StartController(c.Config, controller.Options{
			ClusterName: clusterName, LeaderElection: true, Timing: e2eutil.FastTiming,
			Logger: e2eutil.DebugLogger(), Providers: []providers.Provider{p},
		}); err != nil {
			fmt.Fprintln(os.Stderr, "controller:", err)
			os.Exit(1)
		}
	})
}
