// Package aws_test runs podlb end to end on AWS: a real control plane and
// node simulator, the ELBv2 emulator driven through the real SDK, and the
// controller in this process.
package aws_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const clusterName = "e2e-aws"

// otherVPC is a second VPC of the emulated account, for groups the
// cluster's controller must refuse.
const otherVPC = "vpc-0f0000000000000f1"

// ingressSubnets are the default VPC's subnets, where Application Load
// Balancers are placed.
var ingressSubnets = e2eutil.ALBSubnets

// Emulated timing: long enough registration that a rollout without the
// gate outruns it (as real NLBs do, at minutes), short enough for tests.
const (
	registrationDelay = 4 * time.Second
	checkInterval     = 200 * time.Millisecond
	drainDelay        = time.Second
)

var (
	kube *cluster.Cluster
	k8s  e2eutil.Kube
	sim  *elbv2sim.Server
	ctrl *e2eutil.Restartable
)

func TestMain(m *testing.M) {
	cluster.RunMain(m, cluster.Options{Nodes: 3, Cloud: "aws"}, func(c *cluster.Cluster) {
		kube, k8s = c, e2eutil.Kube{Client: c.Client}
		// podlb runs under the IAM policy users give it.
		policies, err := e2eutil.AWSPolicies(map[string]string{e2eutil.PodlbAWSKey: clusterName})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sim, err = elbv2sim.Start(elbv2sim.Options{
			Policies:            policies,
			RegistrationDelay:   registrationDelay,
			HealthCheckInterval: checkInterval,
			HealthCheckTimeout:  150 * time.Millisecond,
			DeregistrationDelay: drainDelay,
			TargetAddr:          cluster.LoopbackAddr,
			// Scenarios fill groups behind one NLB up to the group limit,
			// all in one zone: model a raised (adjustable) per-zone quota.
			MaxTargetsPerZone: 3000,
			// Enough to tell where a failed request of a chaos test
			// went, seconds after it failed.
			ConnectionHistory: 20000,
			VPCs: []elbv2sim.VPC{
				e2eutil.ALBVPC(),
				{ID: otherVPC, CIDRs: []string{"172.16.0.0/16"}},
			},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "elbv2sim:", err)
			os.Exit(1)
		}
		ctrl = e2eutil.NewRestartable(c.Config, controllerOptions)
		if err := ctrl.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "controller:", err)
			os.Exit(1)
		}
	})
}

// controllerOptions configure a fresh controller with a fresh provider,
// as a new process would have.
func controllerOptions() (controller.Options, error) {
	p, err := e2eutil.AWSProvider(context.Background(), sim, clusterName, func(o *awsprovider.Options) { o.BatchSize = 200 })
	if err != nil {
		return controller.Options{}, err
	}
	return controller.Options{
		ClusterName:    clusterName,
		LeaderElection: true,
		Timing:         e2eutil.FastTiming,
		Logger:         e2eutil.DebugLogger(),
		Providers:      []providers.Provider{p},
	}, nil
}
