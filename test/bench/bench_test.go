package bench

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPodlb runs every scenario on every cloud chosen by -bench.clouds
// and -bench.scenarios; figures go to the table TestMain prints.
func BenchmarkPodlb(b *testing.B) {
	for _, cloud := range []string{"aws", "gcp"} {
		if !wanted(*flagClouds, cloud) {
			continue
		}
		b.Run(cloud, func(b *testing.B) {
			ctx := context.Background()
			if wanted(*flagScenarios, "rollout") || wanted(*flagScenarios, "churn") {
				began := time.Now()
				if err := runRolloutAndChurn(ctx, cloud); err != nil {
					b.Fatalf("%s rollout/churn: %v", cloud, err)
				}
				results.set("run", cloud, "rollout + churn wall time", "%s", round(time.Since(began)))
			}
			if wanted(*flagScenarios, "steady") {
				began := time.Now()
				if err := runSteady(ctx, cloud); err != nil {
					b.Fatalf("%s steady state: %v", cloud, err)
				}
				results.set("run", cloud, "steady state wall time", "%s", round(time.Since(began)))
			}
		})
	}
}

func runRolloutAndChurn(ctx context.Context, cloud string) error {
	timing := cloudTiming{
		latencyMin: *flagLatencyMin, latencyMax: *flagLatencyMax,
		registrationDelay: *flagRegDelay, operationDelay: *flagOpDelay,
		checkInterval: *flagHCInterval, drain: *flagDrain,
	}
	e, err := newEnv(ctx, envOptions{cloud: cloud, nodes: *flagRolloutNodes, services: *flagRolloutServices, timing: timing, cloudLimits: true, section: "1+2 rollout"})
	if err != nil {
		return err
	}
	defer e.close()
	results.set("run", cloud, "emulated cloud", "latency %s-%s per call; %s", round(timing.latencyMin), round(timing.latencyMax), e.cloud.throttleNote())
	if wanted(*flagScenarios, "rollout") {
		if err := runRollout(ctx, e); err != nil {
			return err
		}
	}
	if wanted(*flagScenarios, "churn") {
		if err := runChurn(ctx, e); err != nil {
			return err
		}
	}
	return nil
}
