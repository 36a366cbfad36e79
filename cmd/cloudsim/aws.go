package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

func init() {
	emulators = append(emulators, emulator{name: "aws", addFlags: awsFlags})
}

// awsFlags registers the ELBv2 emulator's flags. Timing defaults resemble
// AWS; pass shorter ones for quick experiments.
func awsFlags(fs *flag.FlagSet) func(ctx context.Context) (string, func(), error) {
	addr := fs.String("aws-addr", "127.0.0.1:4566", "ELBv2/EC2 API listen address")
	region := fs.String("aws-region", "us-east-1", "region in ARNs")
	account := fs.String("aws-account", "123456789012", "account ID in ARNs")
	regDelay := fs.Duration("aws-registration-delay", 30*time.Second, "time a new target spends in initial/Elb.RegistrationInProgress")
	hcInterval := fs.Duration("aws-health-check-interval", 0, "if set, overrides every target group's health check interval")
	hcTimeout := fs.Duration("aws-health-check-timeout", 0, "if set, overrides every target group's health check timeout")
	deregDelay := fs.Duration("aws-deregistration-delay", 0, "if set, overrides every target group's deregistration delay")
	maxTargets := fs.Int("aws-max-targets-per-group", 1000, "TooManyTargets limit")
	latency := fs.Duration("aws-latency", 0, "latency added to every API call")
	jitter := fs.Duration("aws-latency-jitter", 0, "uniform random latency added on top of -aws-latency")
	errorRate := fs.Float64("aws-error-rate", 0, "fraction of API calls answered ServiceUnavailable (503)")
	throttle := fs.Bool("aws-throttle", true, "apply AWS's API rate limits (token buckets per operation class)")
	verbose := fs.Bool("aws-verbose", false, "log target state changes")

	return func(ctx context.Context) (string, func(), error) {
		o := elbv2sim.Options{
			Addr: *addr, Region: *region, AccountID: *account,
			RegistrationDelay:   *regDelay,
			HealthCheckInterval: *hcInterval, HealthCheckTimeout: *hcTimeout,
			DeregistrationDelay: *deregDelay,
			MaxTargetsPerGroup:  *maxTargets,
			Latency:             *latency, LatencyJitter: *jitter,
			ErrorRate: *errorRate,
		}
		if *throttle {
			o.Throttle = elbv2sim.AWSThrottle()
		}
		if *verbose {
			o.Logf = func(format string, args ...any) { log.Printf("aws: "+format, args...) }
		}
		s, err := elbv2sim.Start(o)
		if err != nil {
			return "", nil, err
		}
		where := fmt.Sprintf("ELBv2 + EC2 API at %s (region %s), stats at %s/_sim/stats", s.URL(), *region, s.URL())
		return where, s.Close, nil
	}
}
