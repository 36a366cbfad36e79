package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// runSteady is scenario 3: many pods and Services, converged, then nothing
// changes for a window in which the controller's memory, CPU and cloud
// calls are measured.
func runSteady(ctx context.Context, cloudName string) error {
	sec := "3 steady state"
	timing := cloudTiming{
		latencyMin: *flagLatencyMin, latencyMax: *flagLatencyMax,
		registrationDelay: *flagRegDelay, operationDelay: 200 * time.Millisecond,
		// Thousands of targets are probed for real on this machine; a
		// slower cadence keeps the probes from starving the controller.
		checkInterval: 5 * time.Second,
		drain:         *flagDrain,
	}
	e, err := newEnv(ctx, envOptions{
		section: sec, cloud: cloudName, nodes: *flagSteadyNodes, services: *flagSteadyServices, timing: timing,
		controllerArgs: append([]string{"--resync-period=" + flagSteadyResync.String()}, fillLimits(cloudName)...),
	})
	if err != nil {
		return err
	}
	defer e.close()
	results.set(sec, cloudName, "size", "%d pods, %d Services, %d nodes (one cluster's limit is 240)", *flagSteadyPods, len(e.services), len(e.kube.Nodes))

	per := spread(*flagSteadyPods, len(e.services))
	pid := e.ctrl.Pid()
	peak := int64(0)
	stopPeak := make(chan struct{})
	peakDone := make(chan struct{})
	go func() {
		defer close(peakDone)
		for {
			if rss, err := rssBytes(pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stopPeak:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	cpuStart, _ := cpuTime(pid)
	start := time.Now()
	if err := e.scale(ctx, per); err != nil {
		return err
	}
	if err := e.waitDeployments(ctx, 60*time.Minute); err != nil {
		return err
	}
	converged := time.Since(start)
	if err := e.waitCloud(ctx, 10*time.Minute, per); err != nil {
		return err
	}
	cpuFill, _ := cpuTime(pid)
	close(stopPeak)
	<-peakDone
	results.set(sec, cloudName, "fill 0 -> N: all Deployments available", "%s", round(converged))
	results.set(sec, cloudName, "fill: controller CPU / peak RSS", "%s CPU / %s", round(cpuFill-cpuStart), mib(peak))

	time.Sleep(*flagSteadySettle)
	e.cloud.resetCalls()
	cpu0, err := cpuTime(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var rssSum, rssMax int64
	samples := 0
	for time.Since(t0) < *flagSteadyWindow {
		if rss, err := rssBytes(pid); err == nil {
			rssSum += rss
			rssMax = max(rssMax, rss)
			samples++
		}
		time.Sleep(5 * time.Second)
	}
	window := time.Since(t0)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return err
	}
	calls := e.cloud.calls()
	var reads, writes int64
	var readOps, writeOps []string
	for _, op := range slices.Sorted(maps.Keys(calls)) {
		c := calls[op]
		if c.write {
			writes += c.calls
			writeOps = append(writeOps, fmt.Sprintf("%s %d", op, c.calls))
		} else {
			reads += c.calls
			readOps = append(readOps, fmt.Sprintf("%s %.0f", op, float64(c.calls)/window.Minutes()))
		}
	}
	if m, err := e.ctrl.scrape(); err == nil {
		results.set(sec, cloudName, "idle: process_resident_memory_bytes (metrics)", "%s", mib(int64(m.sum("process_resident_memory_bytes", nil))))
	}
	results.set(sec, cloudName, "idle: controller RSS mean / max (/proc VmRSS)", "%s / %s", mib(rssSum/int64(max(samples, 1))), mib(rssMax))
	results.set(sec, cloudName, "idle: controller CPU (/proc utime+stime)", "%.1f%% of one core (%s in %s)", 100*(cpu1-cpu0).Seconds()/window.Seconds(), round(cpu1-cpu0), round(window))
	perMin := float64(reads) / window.Minutes()
	// Not scaled to other resync periods: group look-ups follow the
	// providers' 5-minute cache, not the resync.
	results.set(sec, cloudName, "idle: cloud reads per minute", "%.0f at --resync-period %v %s", perMin, *flagSteadyResync, parenthesized(readOps))
	results.set(sec, cloudName, "idle: cloud writes (must be 0)", "%d %s", writes, parenthesized(writeOps))
	return nil
}

// fillLimits raise the controller's client-side limits for the
// steady-state scenario only: with the production defaults the initial
// fill of a thousand groups takes most of an hour (see BENCHMARKS.md),
// while the idle window this scenario measures stays far below any limit.
func fillLimits(cloud string) []string {
	if cloud == "aws" {
		return []string{"--aws-rate-limits=*=50:100,DescribeTargetGroups=50:100,DescribeTargetGroupAttributes=50:100,DescribeTargetHealth=50:100,RegisterTargets=50:100,DeregisterTargets=50:100"}
	}
	return []string{"--gcp-rate-limits=*=50:100,networkEndpointGroups.insert=50:100,networkEndpointGroups.aggregatedList=50:100,backendServices.get=50:100,backendServices.patch=50:100,backendServices.getHealth=50:100,networkEndpointGroups.attachNetworkEndpoints=50:100,networkEndpointGroups.listNetworkEndpoints=50:100,operations.wait=50:100"}
}
