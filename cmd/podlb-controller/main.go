// Command podlb-controller registers pod IPs as cloud load balancer targets
// and drives the podlb.io/load-balancer-ready readiness gate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/oauth2"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/controllerflags"
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
	fs, f := controllerflags.New(os.Getenv)
	if err := fs.Parse(args); err != nil {
		// The usage is already printed; asking for it is no failure.
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if f.ShowVersion {
		fmt.Println("podlb-controller", version.Version)
		return nil
	}
	if f.Cluster == "" {
		return fmt.Errorf("--cluster-name is required")
	}
	if f.KubeAPIQPS <= 0 || f.KubeAPIBurst < 1 {
		return fmt.Errorf("--kube-api-qps must be above 0 and --kube-api-burst at least 1 (got %v and %d)", f.KubeAPIQPS, f.KubeAPIBurst)
	}
	if f.DeregistrationHeadStart < 0 {
		return fmt.Errorf("--deregistration-head-start must not be negative (got %v)", f.DeregistrationHeadStart)
	}
	logger := zap.New(zap.UseFlagOptions(&f.Zap))
	memCtx, stopMemory := context.WithCancel(context.Background())
	defer stopMemory()
	if p, ok := readMemoryPolicy("/sys/fs/cgroup/memory.max"); ok {
		logger.Info("Go memory limit from the container", "request bytes", p.request, "ceiling bytes", p.ceiling, "soft limit bytes", p.apply(memCtx))
		go releaseExecutablePagesUntil(memCtx, logger)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = float32(f.KubeAPIQPS), f.KubeAPIBurst

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	want := map[string]bool{}
	for _, c := range strings.Split(f.Providers, ",") {
		if c = strings.TrimSpace(c); c != "" {
			want[c] = true
		}
	}
	var provs []providers.Provider
	if want["aws"] || (len(want) == 0 && f.AWSRegion != "") {
		limits, err := providers.ParseLimits(f.AWSRateLimits)
		if err != nil {
			return fmt.Errorf("--aws-rate-limits: %w", err)
		}
		if f.AWSRegion == "" {
			return fmt.Errorf("--aws-region is required for aws")
		}
		p, err := awsprovider.New(ctx, awsprovider.Options{
			Cluster: f.Cluster, Region: f.AWSRegion, VPCID: f.AWSVPC,
			ELBv2Endpoint: f.AWSEndpointELBv2, EC2Endpoint: f.AWSEndpointEC2,
			BatchSize: f.AWSBatchSize, MaxAttempts: f.AWSMaxAttempts, Limits: limits,
		})
		if err != nil {
			return err
		}
		provs = append(provs, p)
	}
	if want["gcp"] || (len(want) == 0 && f.GCPProject != "") {
		limits, err := providers.ParseLimits(f.GCPRateLimits)
		if err != nil {
			return fmt.Errorf("--gcp-rate-limits: %w", err)
		}
		if f.GCPProject == "" {
			return fmt.Errorf("--gcp-project is required for gcp")
		}
		if f.GCPBatchSize < 1 || f.GCPBatchSize > 500 {
			return fmt.Errorf("--gcp-batch-size must be between 1 and 500")
		}
		var tokens oauth2.TokenSource
		if f.GCPAccessTokenFile != "" {
			if tokens, err = gcpprovider.FileTokenSource(f.GCPAccessTokenFile); err != nil {
				return fmt.Errorf("--gcp-access-token-file: %w", err)
			}
		}
		p, err := gcpprovider.New(ctx, gcpprovider.Options{
			Cluster: f.Cluster, Project: f.GCPProject,
			Network: f.GCPNetwork, Subnetwork: f.GCPSubnetwork, Endpoint: f.GCPEndpoint, TokenSource: tokens,
			BatchSize: f.GCPBatchSize, Limits: limits,
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
	logger.Info("starting", "version", version.Version, "cluster", f.Cluster, "providers", len(provs))
	return controller.Run(ctx, controller.Options{
		RestConfig: cfg, ClusterName: f.Cluster, Namespace: f.Namespace,
		LeaderElection: f.LeaderElect, LeaderElectionID: f.LeaderElectionID,
		MetricsAddr: f.MetricsAddr, ProbeAddr: f.ProbeAddr, Profiling: f.Profiling, Workers: f.Workers,
		WriteSlots: f.WriteSlots, DeregistrationHeadStart: &f.DeregistrationHeadStart, HealthReaders: f.HealthReaders,
		Timing:                    targetsTiming(f.Poll, f.Resync, f.Coalesce, f.MaxBackoff),
		GateIgnoresUnservedClouds: f.GateIgnoresUnservedClouds,
		Providers:                 provs, Logger: logger, SweepInterval: f.SweepInterval,
	})
}

func targetsTiming(poll, resync, coalesce, maxBackoff time.Duration) targets.Timing {
	return targets.Timing{Poll: poll, Resync: resync, Coalesce: coalesce, MaxBackoff: maxBackoff}
}
