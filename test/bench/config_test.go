package bench

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Every knob is a flag (after -args) whose default can also come from the
// environment, so `make bench BENCH_ARGS=...` and CI variables both work.

func envName(flagName string) string {
	return "PODLB_BENCH_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(flagName))
}

func intFlag(name string, def int, usage string) *int {
	if v, err := strconv.Atoi(os.Getenv(envName(name))); err == nil {
		def = v
	}
	return flag.Int("bench."+name, def, usage+" (env "+envName(name)+")")
}

func durationFlag(name string, def time.Duration, usage string) *time.Duration {
	if v, err := time.ParseDuration(os.Getenv(envName(name))); err == nil {
		def = v
	}
	return flag.Duration("bench."+name, def, usage+" (env "+envName(name)+")")
}

func boolFlag(name string, def bool, usage string) *bool {
	if v, err := strconv.ParseBool(os.Getenv(envName(name))); err == nil {
		def = v
	}
	return flag.Bool("bench."+name, def, usage+" (env "+envName(name)+")")
}

func stringFlag(name, def, usage string) *string {
	if v, ok := os.LookupEnv(envName(name)); ok {
		def = v
	}
	return flag.String("bench."+name, def, usage+" (env "+envName(name)+")")
}

var (
	flagClouds    = stringFlag("clouds", "aws,gcp", "clouds to benchmark: aws, gcp")
	flagScenarios = stringFlag("scenarios", "rollout,churn,steady", "scenarios to run: rollout (with API efficiency), churn, steady")
	flagBinary    = stringFlag("controller", "", "podlb-controller binary; default bin/podlb-controller above the working directory")
	flagVerbose   = flag.Bool("bench.v", false, "log cluster and emulator details")

	// Scenario 1 and 2: rollout and scale 0 -> N -> 0.
	flagRolloutPods     = intFlag("rollout.pods", 1000, "gated pods of the rollout scenario")
	flagRolloutServices = intFlag("rollout.services", 50, "Services (one Deployment and one load balancer group each) of the rollout scenario")
	flagRolloutNodes    = intFlag("rollout.nodes", 100, "nodes of the rollout and churn cluster (at most 240)")
	flagZones           = intFlag("zones", 3, "zones the nodes are spread over")

	// Emulated cloud timing of the rollout and churn scenarios.
	flagLatencyMin   = durationFlag("latency.min", 50*time.Millisecond, "least emulated API latency per call")
	flagLatencyMax   = durationFlag("latency.max", 150*time.Millisecond, "most emulated API latency per call (GCE's emulator takes the midpoint: it has no jitter)")
	flagRegDelay     = durationFlag("aws.registration-delay", 2*time.Second, "ELBv2 time in initial/Elb.RegistrationInProgress before health checks start")
	flagOpDelay      = durationFlag("gcp.operation-delay", time.Second, "GCE time until an attach/detach operation takes effect and reports DONE")
	flagHCInterval   = durationFlag("hc.interval", 500*time.Millisecond, "emulated health-check interval (healthy threshold 2)")
	flagDrain        = durationFlag("drain", time.Second, "emulated deregistration delay / connection draining")
	flagGCPReadQuota = intFlag("gcp.read-quota", 2000, "GCE read calls allowed per 100 s window (emulated quota)")
	flagGCPWrite     = intFlag("gcp.write-quota", 500, "GCE write calls allowed per 100 s window (emulated quota)")

	// Scenario 4: churn.
	flagChurnPods     = intFlag("churn.pods", 500, "pods kept running (over the rollout Services) while churning")
	flagChurnRate     = intFlag("churn.rate", 5, "pods deleted (and recreated by their ReplicaSets) per second")
	flagChurnDuration = durationFlag("churn.duration", 2*time.Minute, "how long pods are churned")

	// Scenario 3: steady state.
	flagSteadyPods     = intFlag("steady.pods", 10000, "pods of the steady-state scenario")
	flagSteadyServices = intFlag("steady.services", 1000, "Services of the steady-state scenario")
	flagSteadyNodes    = intFlag("steady.nodes", 240, "nodes of the steady-state cluster (at most 240, one cluster's address plan)")
	flagSteadyWindow   = durationFlag("steady.window", 3*time.Minute, "idle measurement window")
	flagSteadySettle   = durationFlag("steady.settle", 30*time.Second, "wait after convergence before measuring")
	flagSteadyProfile  = boolFlag("steady.profile", true, "after the idle window, profile the controller's CPU over a second window as long")
	flagMemoryRequest  = intFlag("steady.memory-request", 128<<20, "memory request in bytes passed to the controller as the manifests do (PODLB_MEMORY_REQUEST); 0 passes none")
	flagSteadyResync   = durationFlag("steady.resync", time.Minute, "controller --resync-period in the steady state, so a window sees whole resync cycles")
)

func wanted(list, item string) bool {
	for _, v := range strings.Split(list, ",") {
		if strings.TrimSpace(v) == item {
			return true
		}
	}
	return false
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}
