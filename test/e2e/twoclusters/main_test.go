// Package twoclusters_test runs two clusters against one cloud: two local
// control planes with a podlb controller each (different cluster names),
// registering the same app into one AWS target group and one GCP backend
// service at once, through one emulator per cloud. It proves that neither
// controller ever touches the other's targets.
package twoclusters_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/api/option"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const project = "podlb-test"

// zones are where each cluster has one node: every NEG exists in each.
var zones = []string{"us-central1-a", "us-central1-b", "us-central1-c"}

// Emulated timing, as in the single-cluster suites: registration and NEG
// programming take seconds, so a controller that opened gates early would
// fail requests.
const (
	registrationDelay = 4 * time.Second
	programmingDelay  = 3 * time.Second
	checkInterval     = 200 * time.Millisecond
	drainDelay        = time.Second
)

// member is one of the two clusters with its own podlb.
type member struct {
	// name is the controller's --cluster-name.
	name string
	kube *cluster.Cluster
	k8s  e2eutil.Kube
	ctrl *e2eutil.Restartable
	// awsKey is the access key its AWS provider signs with, which the
	// ELBv2 emulator's journal records.
	awsKey string
	// gcpCalls records the endpoint changes its GCP provider asked for.
	gcpCalls *callLog
}

var (
	members []*member
	awsSim  *elbv2sim.Server
	gcpSim  *computesim.Server
	gce     *emuclient.GCPClients
)

func TestMain(m *testing.M) {
	o := cluster.Options{Nodes: 3, Zones: zones, Cloud: "gce", GCEProject: project}
	cluster.RunMainClusters(m, []cluster.Options{o, o}, func(cs []*cluster.Cluster) {
		if err := setup(cs); err != nil {
			fmt.Fprintln(os.Stderr, "setup:", err)
			for _, c := range cs {
				c.Stop()
			}
			os.Exit(1)
		}
	})
}

func setup(cs []*cluster.Cluster) error {
	// The ownership checks tell the clusters' pods apart by address.
	if cs[0].PodNetwork() == cs[1].PodNetwork() {
		return fmt.Errorf("both clusters have pods in %s", cs[0].PodNetwork())
	}
	// Each cluster's podlb runs under the IAM policy for its cluster
	// name and the custom role.
	policies, err := e2eutil.AWSPolicies(map[string]string{awsKeyOf("blue"): "blue", awsKeyOf("green"): "green"})
	if err != nil {
		return err
	}
	permissions, err := e2eutil.GCPPermissions()
	if err != nil {
		return err
	}
	awsSim, err = elbv2sim.Start(elbv2sim.Options{
		Policies:            policies,
		RegistrationDelay:   registrationDelay,
		HealthCheckInterval: checkInterval,
		HealthCheckTimeout:  150 * time.Millisecond,
		DeregistrationDelay: drainDelay,
		TargetAddr:          cluster.LoopbackAddr,
		VPCs:                []elbv2sim.VPC{e2eutil.ALBVPC()},
	})
	if err != nil {
		return fmt.Errorf("elbv2sim: %w", err)
	}
	gcpSim, err = computesim.Start(computesim.Options{
		Permissions:         permissions,
		Project:             project,
		OperationDelay:      100 * time.Millisecond,
		ProgrammingDelay:    programmingDelay,
		HealthCheckInterval: checkInterval,
		HealthCheckTimeout:  150 * time.Millisecond,
		DrainingTimeout:     drainDelay,
		TargetAddr:          cluster.LoopbackAddr,
		ConnectionHistory:   20000,
	})
	if err != nil {
		return fmt.Errorf("computesim: %w", err)
	}
	if gce, err = emuclient.NewGCPClients(context.Background(), gcpSim, project); err != nil {
		return err
	}
	for i, c := range cs {
		// Every node is a VM of the one project whose alias range is the
		// node's pod block, so an endpoint naming the wrong cluster's VM
		// is refused as GCE would refuse it.
		for _, n := range c.Nodes {
			if err := gcpSim.AddInstance(n.Zone, n.VMName, n.HostIP); err != nil {
				return fmt.Errorf("VM %s: %w", n.VMName, err)
			}
			if err := gcpSim.SetAliasRanges(n.Zone, n.VMName, n.PodCIDR); err != nil {
				return err
			}
		}
		name := []string{"blue", "green"}[i]
		mb := &member{name: name, kube: c, k8s: e2eutil.Kube{Client: c.Client},
			awsKey: awsKeyOf(name), gcpCalls: &callLog{}}
		mb.ctrl = e2eutil.NewRestartable(c.Config, mb.controllerOptions)
		if err := mb.ctrl.Start(); err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
		members = append(members, mb)
	}
	return nil
}

// awsKeyOf is the access key the member's AWS provider signs with.
func awsKeyOf(member string) string { return "AKID" + strings.ToUpper(member) }

// controllerOptions configure a fresh controller for the member, serving
// both clouds.
func (mb *member) controllerOptions() (controller.Options, error) {
	ctx := context.Background()
	ap, err := e2eutil.AWSProvider(ctx, awsSim, mb.name, func(o *awsprovider.Options) {
		o.Credentials = credentials.NewStaticCredentialsProvider(mb.awsKey, "secret", "")
	})
	if err != nil {
		return controller.Options{}, err
	}
	gp, err := e2eutil.GCPProvider(ctx, gcpSim, mb.name, project, func(o *gcpprovider.Options) {
		o.ClientOptions = append(o.ClientOptions, option.WithHTTPClient(&http.Client{
			Transport: computesim.AuthTransport(e2eutil.PodlbGCPToken, mb.gcpCalls.transport(http.DefaultTransport))}))
	})
	if err != nil {
		return controller.Options{}, err
	}
	return controller.Options{
		ClusterName:    mb.name,
		LeaderElection: true,
		Timing:         e2eutil.FastTiming,
		Logger:         e2eutil.DebugLogger(),
		Providers:      []providers.Provider{ap, gp},
	}, nil
}
