// Command podlb-controller registers pod IPs as cloud load balancer targets
// and drives the podlb.io/load-balancer-ready readiness gate.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/version"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/targets"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "podlb-controller:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("podlb-controller", flag.ContinueOnError)
	var (
		showVersion = fs.Bool("version", false, "print the version and exit")
		kubeconfig  = fs.String("kubeconfig", "", "kubeconfig file; empty uses the in-cluster configuration")
		cluster     = fs.String("cluster-name", "", "name of this cluster, recorded on every cloud resource podlb creates (required)")
		clouds      = fs.String("providers", "", "clouds to serve, comma separated (aws, gcp); default: every cloud with its settings given")
		namespace   = fs.String("namespace", envOr("POD_NAMESPACE", "podlb-system"), "podlb's own namespace: leader lease and ownership ledger")
		leaderElect = fs.Bool("leader-elect", true, "wait for the leader lease before acting, so only one replica writes")
		leaderID    = fs.String("leader-election-id", "podlb-controller-leader", "name of the leader lease")
		metricsAddr = fs.String("metrics-bind-address", ":8080", `address of the Prometheus metrics endpoint ("0" disables)`)
		probeAddr   = fs.String("health-probe-bind-address", ":8081", "address of /healthz and /readyz")
		workers     = fs.Int("workers", 8, "bindings reconciled in parallel")
		poll        = fs.Duration("health-poll-interval", time.Second, "health polling interval while a target waits for the load balancer")
		resync      = fs.Duration("resync-period", 10*time.Minute, "how often every binding is compared with the cloud to repair drift")
		coalesce    = fs.Duration("coalesce-window", 200*time.Millisecond, "how long pod events wait for others before a binding is reconciled")
		maxBackoff  = fs.Duration("max-backoff", 2*time.Minute, "longest retry delay of a failing binding")
		ignoreOther = fs.Bool("gate-ignores-unserved-clouds", false, "let pods through that a Service binds only on clouds this controller does not serve (another controller serves them); by default their gate stays False with reason CloudNotServed")
		sweep       = fs.Duration("sweep-interval", 10*time.Minute, "how often groups and ledger entries no Service asks for any more are looked for and released (also at start)")

		awsRegion   = fs.String("aws-region", os.Getenv("AWS_REGION"), "AWS region")
		awsVPC      = fs.String("aws-vpc-id", "", "the cluster's VPC: target groups elsewhere are rejected; needed to create groups")
		awsELB      = fs.String("aws-endpoint-elbv2", "", "ELBv2 endpoint URL override")
		awsEC2      = fs.String("aws-endpoint-ec2", "", "EC2 endpoint URL override")
		awsBatch    = fs.Int("aws-batch-size", 200, "most targets per RegisterTargets/DeregisterTargets call")
		awsAttempts = fs.Int("aws-max-attempts", 5, "SDK attempts per call, with backoff, on throttling and 5xx")
		awsLimits   = fs.String("aws-rate-limits", "", "client-side token buckets, Operation=qps:burst,... over the defaults: "+providers.FormatLimits(awsprovider.DefaultLimits()))

		gcpProject    = fs.String("gcp-project", "", "GCP project of the NEGs (and of backend services named without one)")
		gcpNetwork    = fs.String("gcp-network", "", "VPC network of the NEGs; empty uses the project's default network")
		gcpSubnetwork = fs.String("gcp-subnetwork", "", "subnetwork of the NEGs")
		gcpEndpoint   = fs.String("gcp-endpoint", "", "Compute API endpoint URL override; sends no credentials (an emulator)")
		gcpBatch      = fs.Int("gcp-batch-size", 500, "most endpoints per attachNetworkEndpoints/detachNetworkEndpoints call (at most 500)")
		gcpLimits     = fs.String("gcp-rate-limits", "", "client-side token buckets, method=qps:burst,... over the defaults: "+providers.FormatLimits(gcpprovider.DefaultLimits()))
	)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println("podlb-controller", version.Version)
		return nil
	}
	if *cluster == "" {
		return fmt.Errorf("--cluster-name is required")
	}
	logger := zap.New(zap.UseFlagOptions(&zapOpts))

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	want := map[string]bool{}
	for _, c := range strings.Split(*clouds, ",") {
		if c = strings.TrimSpace(c); c != "" {
			want[c] = true
		}
	}
	var provs []providers.Provider
	if want["aws"] || (len(want) == 0 && *awsRegion != "") {
		limits, err := providers.ParseLimits(*awsLimits)
		if err != nil {
			return fmt.Errorf("--aws-rate-limits: %w", err)
		}
		if *awsRegion == "" {
			return fmt.Errorf("--aws-region is required for aws")
		}
		p, err := awsprovider.New(ctx, awsprovider.Options{
			Cluster: *cluster, Region: *awsRegion, VPCID: *awsVPC,
			ELBv2Endpoint: *awsELB, EC2Endpoint: *awsEC2,
			BatchSize: *awsBatch, MaxAttempts: *awsAttempts, Limits: limits,
		})
		if err != nil {
			return err
		}
		provs = append(provs, p)
	}
	if want["gcp"] || (len(want) == 0 && *gcpProject != "") {
		limits, err := providers.ParseLimits(*gcpLimits)
		if err != nil {
			return fmt.Errorf("--gcp-rate-limits: %w", err)
		}
		if *gcpProject == "" {
			return fmt.Errorf("--gcp-project is required for gcp")
		}
		if *gcpBatch < 1 || *gcpBatch > 500 {
			return fmt.Errorf("--gcp-batch-size must be between 1 and 500")
		}
		p, err := gcpprovider.New(ctx, gcpprovider.Options{
			Cluster: *cluster, Project: *gcpProject,
			Network: *gcpNetwork, Subnetwork: *gcpSubnetwork, Endpoint: *gcpEndpoint,
			BatchSize: *gcpBatch, Limits: limits,
		})
		if err != nil {
			return err
		}
		defer p.Close()
		provs = append(provs, p)
	}
	for c := range want {
		if c != "aws" && c != "gcp" {
			return fmt.Errorf("--providers: unknown cloud %q", c)
		}
	}
	if len(provs) == 0 {
		return fmt.Errorf("no cloud configured: give --aws-region or --gcp-project (and --providers)")
	}
	logger.Info("starting", "version", version.Version, "cluster", *cluster, "providers", len(provs))
	return controller.Run(ctx, controller.Options{
		RestConfig: cfg, ClusterName: *cluster, Namespace: *namespace,
		LeaderElection: *leaderElect, LeaderElectionID: *leaderID,
		MetricsAddr: *metricsAddr, ProbeAddr: *probeAddr, Workers: *workers,
		Timing:                    targetsTiming(*poll, *resync, *coalesce, *maxBackoff),
		GateIgnoresUnservedClouds: *ignoreOther,
		Providers:                 provs, Logger: logger, SweepInterval: *sweep,
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func targetsTiming(poll, resync, coalesce, maxBackoff time.Duration) targets.Timing {
	return targets.Timing{Poll: poll, Resync: resync, Coalesce: coalesce, MaxBackoff: maxBackoff}
}
