package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

func init() {
	emulators = append(emulators, emulator{name: "gcp", addFlags: gcpFlags})
}

// gcpFlags registers the Compute emulator's flags.
func gcpFlags(fs *flag.FlagSet) func(ctx context.Context) (string, func(), error) {
	addr := fs.String("gcp-addr", "127.0.0.1:4567", "GCP Compute API listen address")
	project := fs.String("gcp-project", "", "only project the GCP API answers for (empty: any)")
	opDelay := fs.Duration("gcp-operation-delay", 0, "time before a GCP operation completes and takes effect")
	latency := fs.Duration("gcp-latency", 0, "latency added to every GCP API call")
	errorRate := fs.Float64("gcp-error-rate", 0, "fraction of GCP API calls answered with 5xx")
	opFailRate := fs.Float64("gcp-operation-failure-rate", 0, "fraction of GCP operations that fail")
	hcInterval := fs.Duration("gcp-health-interval", 0, "override every health check's interval (0: as configured)")
	hcTimeout := fs.Duration("gcp-health-timeout", 0, "override every health check's timeout (0: as configured)")
	drain := fs.Duration("gcp-draining-timeout", 0, "override every non-zero connection draining timeout")
	rateLimits := fs.String("gcp-rate-limits", "", "per-window call limits, e.g. 'write=200,read=1000,networkEndpointGroups.attachNetworkEndpoints=50'")
	rateWindow := fs.Duration("gcp-rate-window", 100*time.Second, "GCP quota window")
	instances := fs.String("gcp-instances", "", "VMs to pre-register, each zone/name=ip with its alias ranges after '+' (endpoints must use the primary ip or an alias range), e.g. 'us-central1-a/node-1=10.0.0.1+10.4.0.0/24,us-central1-b/node-2=10.0.0.2+10.4.1.0/24'")
	listenHost := fs.String("gcp-listen-host", "127.0.0.1", "loopback host forwarding rules listen on")

	return func(ctx context.Context) (string, func(), error) {
		limits, err := parseIntMap(*rateLimits)
		if err != nil {
			return "", nil, fmt.Errorf("-gcp-rate-limits: %w", err)
		}
		srv, err := computesim.Start(computesim.Options{
			Addr:                 *addr,
			Project:              *project,
			OperationDelay:       *opDelay,
			HealthCheckInterval:  *hcInterval,
			HealthCheckTimeout:   *hcTimeout,
			DrainingTimeout:      *drain,
			Latency:              *latency,
			ErrorRate:            *errorRate,
			OperationFailureRate: *opFailRate,
			RateLimits:           limits,
			RateWindow:           *rateWindow,
			ListenHost:           *listenHost,
			Logf:                 log.Printf,
		})
		if err != nil {
			return "", nil, err
		}
		for _, spec := range splitList(*instances) {
			zoneName, addrs, _ := strings.Cut(spec, "=")
			zone, name, ok := strings.Cut(zoneName, "/")
			if !ok {
				_ = srv.Close()
				return "", nil, fmt.Errorf("-gcp-instances: %q is not zone/name=ip[+alias range...]", spec)
			}
			ip, aliases, _ := strings.Cut(addrs, "+")
			var ranges []string
			if aliases != "" {
				ranges = strings.Split(aliases, "+")
			}
			if err := srv.AddInstance(zone, name, ip, ranges...); err != nil {
				_ = srv.Close()
				return "", nil, fmt.Errorf("-gcp-instances: %q: %w", spec, err)
			}
		}
		where := fmt.Sprintf("Compute API at %s (option.WithEndpoint), stats at %s/_sim/stats, faults at %s/_sim/faults, health at %s/_sim/health",
			srv.URL(), srv.URL(), srv.URL(), srv.URL())
		return where, func() { _ = srv.Close() }, nil
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseIntMap(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, p := range splitList(s) {
		k, v, ok := strings.Cut(p, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("%q is not key=number", p)
		}
		out[k] = n
	}
	return out, nil
}
