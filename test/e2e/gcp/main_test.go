// Package gcp_test runs podlb end to end on GCP: a real control plane and
// node simulator, the Compute emulator driven through the real apiv1
// clients, and the controller in this process.
package gcp_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const (
	clusterName = "e2e-gcp"
	project     = "podlb-test"
)

// Three nodes in three zones, plus a fourth node alone in a fourth zone,
// which a test deletes to see that zone's NEG go.
var (
	zones    = []string{"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"}
	loneZone = zones[3]
)

// Emulated timing. Probes run every 300 ms whatever the health checks say;
// connection draining lasts a second. GCE's programming latency (tens of
// seconds before a new endpoint gets traffic) is played by a programming
// delay of 3 s before a new endpoint is first checked, plus the health
// checks' healthyThreshold (at 10 consecutive passes another 3 s): a
// rollout without the gate outruns that.
const (
	programmingDelay    = 3 * time.Second
	checkInterval       = 300 * time.Millisecond
	operationDelay      = 100 * time.Millisecond
	drainTimeout        = time.Second
	slowHealthyCount    = 10
	awsRegistrationWait = 4 * time.Second
)

var (
	kube   *cluster.Cluster
	sim    *computesim.Server
	gce    *emuclient.GCPClients
	awsSim *elbv2sim.Server

	k8s  e2eutil.Kube
	ctrl *e2eutil.Restartable
	// withAWS adds the AWS provider to the controller; the suite runs a
	// GCP-only controller unless a test asks for both clouds.
	withAWS bool
)

func TestMain(m *testing.M) {
	cluster.RunMain(m, cluster.Options{Nodes: len(zones), Zones: zones, Cloud: "gce", GCEProject: project}, func(c *cluster.Cluster) {
		kube, k8s = c, e2eutil.Kube{Client: c.Client}
		if err := setup(c); err != nil {
			fmt.Fprintln(os.Stderr, "setup:", err)
			c.Stop()
			os.Exit(1)
		}
	})
}

func setup(c *cluster.Cluster) error {
	// podlb runs under the custom role and IAM policy users give it.
	permissions, err := e2eutil.GCPPermissions()
	if err != nil {
		return err
	}
	policies, err := e2eutil.AWSPolicies(map[string]string{e2eutil.PodlbAWSKey: clusterName})
	if err != nil {
		return err
	}
	sim, err = computesim.Start(computesim.Options{
		Permissions:         permissions,
		Project:             project,
		OperationDelay:      operationDelay,
		ProgrammingDelay:    programmingDelay,
		HealthCheckInterval: checkInterval,
		HealthCheckTimeout:  200 * time.Millisecond,
		DrainingTimeout:     drainTimeout,
		TargetAddr:          cluster.LoopbackAddr,
		// Enough to explain any failed request of a rollout.
		ConnectionHistory: 20000,
	})
	if err != nil {
		return fmt.Errorf("computesim: %w", err)
	}
	// Every node is a VM the endpoints of its pods name.
	for _, n := range c.Nodes {
		if err := sim.AddInstance(n.Zone, n.VMName, n.HostIP, n.PodCIDR); err != nil {
			return fmt.Errorf("VM %s: %w", n.VMName, err)
		}
	}
	if gce, err = emuclient.NewGCPClients(context.Background(), sim, project); err != nil {
		return err
	}
	awsSim, err = elbv2sim.Start(elbv2sim.Options{
		Policies:            policies,
		RegistrationDelay:   awsRegistrationWait,
		HealthCheckInterval: checkInterval,
		HealthCheckTimeout:  150 * time.Millisecond,
		DeregistrationDelay: drainTimeout,
		TargetAddr:          cluster.LoopbackAddr,
		VPCs:                []elbv2sim.VPC{e2eutil.ALBVPC()},
	})
	if err != nil {
		return fmt.Errorf("elbv2sim: %w", err)
	}
	ctrl = e2eutil.NewRestartable(c.Config, controllerOptions)
	return ctrl.Start()
}

// controllerOptions configure a fresh controller with fresh providers, as
// a new process would have.
func controllerOptions() (controller.Options, error) {
	ctx := context.Background()
	p, err := e2eutil.GCPProvider(ctx, sim, clusterName, project, nil)
	if err != nil {
		return controller.Options{}, err
	}
	provs := []providers.Provider{p}
	if withAWS {
		ap, err := e2eutil.AWSProvider(ctx, awsSim, clusterName, func(o *awsprovider.Options) { o.BatchSize = 200 })
		if err != nil {
			return controller.Options{}, err
		}
		provs = append(provs, ap)
	}
	return controller.Options{
		ClusterName:    clusterName,
		LeaderElection: true,
		Timing:         e2eutil.FastTiming,
		Providers:      provs,
		Logger:         e2eutil.DebugLogger(),
	}, nil
}

// restartController stops the controller and starts it again, with or
// without the AWS provider.
func restartController(t *testing.T, aws bool) {
	t.Helper()
	if err := ctrl.Stop(); err != nil {
		t.Fatal(err)
	}
	withAWS = aws
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
}
