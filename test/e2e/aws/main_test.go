// Package aws_test runs podlb end to end on AWS: a real control plane and
// node simulator, the ELBv2 emulator driven through the real SDK, and the
// controller in this process.
package aws_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const clusterName = "e2e-aws"

// Emulated timing: long enough registration that a rollout without the
// gate outruns it (as real NLBs do, at minutes), short enough for tests.
const (
	registrationDelay = 4 * time.Second
	checkInterval     = 200 * time.Millisecond
	drainDelay        = time.Second
)

var (
	kube *cluster.Cluster
	sim  *elbv2sim.Server

	ctrlMu sync.Mutex
	ctrl   *e2eutil.Controller
)

func TestMain(m *testing.M) {
	cluster.RunMain(m, cluster.Options{Nodes: 3, Cloud: "aws"}, func(c *cluster.Cluster) {
		kube = c
		var err error
		sim, err = elbv2sim.Start(elbv2sim.Options{
			RegistrationDelay:   registrationDelay,
			HealthCheckInterval: checkInterval,
			HealthCheckTimeout:  150 * time.Millisecond,
			DeregistrationDelay: drainDelay,
			TargetAddr:          cluster.LoopbackAddr,
			VPCs: []elbv2sim.VPC{
				{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"10.0.0.0/8"}},
				{ID: "vpc-0other000000000", CIDRs: []string{"172.16.0.0/16"}},
			},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "elbv2sim:", err)
			os.Exit(1)
		}
		if err := startController(); err != nil {
			fmt.Fprintln(os.Stderr, "controller:", err)
			os.Exit(1)
		}
	})
}

// startController runs a fresh controller, as a new process would be.
func startController() error {
	ctx := context.Background()
	p, err := e2eutil.AWSProvider(ctx, sim, clusterName, func(o *awsprovider.Options) { o.BatchSize = 200 })
	if err != nil {
		return err
	}
	ctl, err := e2eutil.StartController(kube.Config, controller.Options{
		ClusterName:    clusterName,
		LeaderElection: true,
		Timing:         targets.Timing{Poll: 250 * time.Millisecond, Resync: time.Minute, Coalesce: 200 * time.Millisecond, MaxBackoff: 5 * time.Second},
		Providers:      []providers.Provider{p},
	})
	if err != nil {
		return err
	}
	ctrlMu.Lock()
	ctrl = ctl
	ctrlMu.Unlock()
	return nil
}

func stopController() error {
	ctrlMu.Lock()
	defer ctrlMu.Unlock()
	return ctrl.Stop()
}
