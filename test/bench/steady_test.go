package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
		controllerArgs: append([]string{"--resync-period=" + flagSteadyResync.String(), "--profiling"}, fillLimits(cloudName)...),
		controllerEnv:  memoryRequestEnv(),
	})
	if err != nil {
		return err
	}
	defer e.close()
	results.set(sec, cloudName, "size", "%d pods, %d Services, %d nodes (one cluster's limit is 240)", *flagSteadyPods, len(e.services), len(e.kube.Nodes))

	per := spread(*flagSteadyPods, len(e.services))
	pid := e.ctrl.Pid()
	fillPeak := samplePeakRSS(pid, time.Second)
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
	peak := fillPeak()
	results.set(sec, cloudName, "fill 0 -> N: all Deployments available", "%s", round(converged))
	results.set(sec, cloudName, "fill: controller CPU / peak RSS", "%s CPU / %s", round(cpuFill-cpuStart), mib(peak))

	time.Sleep(*flagSteadySettle)
	e.cloud.resetCalls()
	before, errBefore := e.ctrl.scrape()
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
		if errBefore == nil {
			results.set(sec, cloudName, "idle: reconciles per minute", "%s", reconcileRates(before, m, window))
			putOff := m.sum("podlb_cloud_api_calls_deferred_total", nil) - before.sum("podlb_cloud_api_calls_deferred_total", nil)
			results.set(sec, cloudName, "idle: reads at rest put off a minute (no spare token)", "%.0f", putOff/window.Minutes())
			results.set(sec, cloudName, "idle: leak sweeps in the window (one every 10 minutes)", "%s", sweepsBetween(before, m))
		}
		results.set(sec, cloudName, "idle: process_resident_memory_bytes (metrics)", "%s", mib(int64(m.sum("process_resident_memory_bytes", nil))))
		// What the memory rests on: the heap live after the last
		// collection, and the heap size the runtime lets it reach before
		// the next (under the soft limit, the limit less the runtime's
		// own memory).
		results.set(sec, cloudName, "idle: live heap / heap goal (runtime)", "%.1f / %.1f MB", m.sum("go_gc_heap_live_bytes", nil)/1e6, m.sum("go_gc_heap_goal_bytes", nil)/1e6)
		// Where the runtime's anonymous memory goes: heap spans holding
		// objects (live or not yet swept; their sum above the live heap is
		// garbage and fragmentation), free spans not yet returned to the
		// kernel, goroutine stacks, and the runtime's own metadata.
		mb := func(names ...string) float64 {
			var v float64
			for _, n := range names {
				v += m.sum(n, nil)
			}
			return v / 1e6
		}
		results.set(sec, cloudName, "idle: runtime memory: heap spans in use / free kept / stacks / metadata", "%.1f / %.1f / %.1f / %.1f MB",
			mb("go_memstats_heap_inuse_bytes"), mb("go_memstats_heap_idle_bytes")-mb("go_memstats_heap_released_bytes"), mb("go_memstats_stack_inuse_bytes"),
			mb("go_memstats_mspan_inuse_bytes", "go_memstats_mcache_inuse_bytes", "go_memstats_buck_hash_sys_bytes", "go_memstats_gc_sys_bytes", "go_memstats_other_sys_bytes"))
	}
	results.set(sec, cloudName, "idle: controller RSS mean / max (/proc VmRSS)", "%s / %s", mib(rssSum/int64(max(samples, 1))), mib(rssMax))
	anon, errAnon := procStatusBytes(pid, "RssAnon")
	file, errFile := procStatusBytes(pid, "RssFile")
	if errAnon == nil && errFile == nil {
		results.set(sec, cloudName, "idle: RSS at the end, anonymous / the executable's pages", "%s / %s", mib(anon), mib(file))
	}
	results.set(sec, cloudName, "idle: controller CPU (/proc utime+stime)", "%s", coreShare(cpu1-cpu0, window))
	perMin := float64(reads) / window.Minutes()
	// Not scaled to other resync periods: group look-ups follow the
	// providers' 5-minute cache, not the resync.
	results.set(sec, cloudName, "idle: cloud reads per minute", "%.0f at --resync-period %v %s", perMin, *flagSteadyResync, parenthesized(readOps))
	results.set(sec, cloudName, "idle: cloud writes (must be 0)", "%d %s", writes, parenthesized(writeOps))

	if *flagSteadyProfile {
		profileIdle(ctx, e, sec, cloudName, pid)
	}
	heapPath := filepath.Join(e.logDir, "heap-idle.pprof")
	if top, err := e.ctrl.saveProfile(ctx, "heap?gc=1", "inuse_space", heapPath); err != nil {
		logf("%s: heap profile: %v", cloudName, err)
	} else {
		results.set(sec, cloudName, "idle: heap profile (go tool pprof)", "%s", heapPath)
		logf("%s: in-use heap after the idle window, top entries:\n%s", cloudName, top)
	}
	return restartSteady(ctx, e, sec, cloudName, per)
}

// profileIdle takes a CPU profile of a second idle window as long as the
// first: where idle CPU goes, whatever comes once a minute or less often.
// The profiler costs CPU of its own (its signals, and its reader waking
// ten times a second), so the first window's figure is taken without it
// and this one reports the CPU it measured beside it.
func profileIdle(ctx context.Context, e *env, sec, cloudName string, pid int) {
	before, errBefore := e.ctrl.scrape()
	cpu0, err0 := cpuTime(pid)
	t0 := time.Now()
	query := fmt.Sprintf("profile?seconds=%d", int(flagSteadyWindow.Seconds()))
	path := filepath.Join(e.logDir, "cpu-idle.pprof")
	top, err := e.ctrl.saveProfile(ctx, query, "cpu", path)
	if err != nil {
		logf("%s: CPU profile: %v", cloudName, err)
		return
	}
	window := time.Since(t0)
	cpu1, err1 := cpuTime(pid)
	if err0 == nil && err1 == nil {
		results.set(sec, cloudName, "idle: controller CPU in a second window, profiled", "%s; %s", coreShare(cpu1-cpu0, window), path)
	}
	if m, err := e.ctrl.scrape(); err == nil && errBefore == nil {
		results.set(sec, cloudName, "idle: leak sweeps in the second window", "%s", sweepsBetween(before, m))
	}
	logf("%s: CPU profile of the second idle window, top entries:\n%s", cloudName, top)
}

// coreShare is CPU time spent in a window as a share of one core.
func coreShare(cpu, window time.Duration) string {
	return fmt.Sprintf("%.1f%% of one core (%s in %s)", 100*cpu.Seconds()/window.Seconds(), round(cpu), round(window))
}

// sweepsBetween is how many leak sweeps ran between two scrapes: each
// lists every group of the project, a cost the windows without one do
// not see.
func sweepsBetween(before, after metricSet) string {
	return fmt.Sprintf("%.0f", after.sum("podlb_sweeps_total", nil)-before.sum("podlb_sweeps_total", nil))
}

// restartSteady measures a controller start on a cluster that already
// holds every pod, with the production client-side limits: how long until
// every binding is resolved and observed, the memory the initial lists
// take, and how soon a pod that turns ready meanwhile gets its gate: what
// a new leader goes through after a failover.
func restartSteady(ctx context.Context, e *env, sec, cloudName string, per []int32) error {
	e.ctrl.stop()
	args, cenv := e.controllerArgs()
	args = append(args, "--profiling")
	// Its log goes beside the first controller's, not over it.
	logDir := filepath.Join(e.logDir, "restart")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	ctrl, err := startController(logDir, args, append(cenv, memoryRequestEnv()...))
	if err != nil {
		return err
	}
	e.ctrl = ctrl
	pid := ctrl.Pid()
	startPeak := samplePeakRSS(pid, 250*time.Millisecond)
	began := time.Now()
	// One Service scales up by a pod as the controller starts; its gate
	// must not wait behind the background reads of every settled group.
	last := len(e.services) - 1
	svc := e.services[last]
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, per[last]+1)
	if _, err := e.kube.Client.AppsV1().Deployments(benchNamespace).Patch(ctx, svc, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return err
	}
	// What the start's goroutines wait on, a third of the way into it.
	stacks := filepath.Join(logDir, "goroutines-at-start.txt")
	go func() {
		time.Sleep(10 * time.Second)
		if _, err := ctrl.saveRaw(ctx, "goroutine?debug=1", stacks); err != nil {
			logf("%s: goroutine dump: %v", cloudName, err)
		}
	}()
	resolved, atResolved, err := e.waitObserved(ctx, 30*time.Minute, *flagSteadyPods+1)
	took := time.Since(began)
	peak := startPeak()
	if err != nil {
		return err
	}
	for _, p := range e.watch.snapshot() {
		if p.app == svc && p.seen.After(began) && !p.gateTrue.IsZero() {
			results.set(sec, cloudName, "restart: a pod scaled up meanwhile, ContainersReady -> gate True / controller start -> gate True", "%s / %s", round(p.gateTrue.Sub(p.containersReady)), round(p.gateTrue.Sub(began)))
		}
	}
	results.set(sec, cloudName, "restart, production limits: every binding resolved / every target seen healthy", "%s / %s for %d Services", round(resolved.Sub(began)), round(took), len(e.services))
	results.set(sec, cloudName, "restart: until every binding resolved", "%s", startupBreakdown(atResolved))
	results.set(sec, cloudName, "restart: goroutines 10 s into the start", "%s", stacks)
	results.set(sec, cloudName, "restart: peak RSS until then", "%s", mib(peak))
	if rss, err := rssBytes(pid); err == nil {
		results.set(sec, cloudName, "restart: RSS once resolved", "%s", mib(rss))
	}
	return nil
}

// samplePeakRSS samples the process's RSS every interval until the
// returned function is called, which returns the highest sample.
func samplePeakRSS(pid int, every time.Duration) func() int64 {
	var peak int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if rss, err := rssBytes(pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return func() int64 {
		close(stop)
		<-done
		return peak
	}
}

// memoryRequestEnv passes the controller the memory request of the
// manifests (128Mi), as their downward API does in a cluster.
func memoryRequestEnv() []string {
	if *flagMemoryRequest <= 0 {
		return nil
	}
	return []string{fmt.Sprintf("PODLB_MEMORY_REQUEST=%d", *flagMemoryRequest)}
}

// waitObserved waits until the controller's own metrics show every
// Service's binding observed in the cloud with all pods healthy, and
// returns when every binding was resolved (its gauges exist: the group is
// known and the desired targets planned). The Services' status
// annotations cannot tell: a previous controller wrote them.
func (e *env) waitObserved(ctx context.Context, timeout time.Duration, pods int) (resolved time.Time, atResolved metricSet, err error) {
	err = poll(ctx, timeout, 250*time.Millisecond, "every binding observed", func() error {
		if !e.ctrl.Running() {
			return e.ctrl.Failure("exited")
		}
		m, err := e.ctrl.scrape()
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, s := range m["podlb_targets"] {
			seen[s.labels["service"]] = true
		}
		if len(seen) < len(e.services) {
			return fmt.Errorf("%d of %d Services resolved", len(seen), len(e.services))
		}
		if resolved.IsZero() {
			resolved, atResolved = time.Now(), m
		}
		if healthy := int(m.sum("podlb_targets", map[string]string{"state": "healthy"})); healthy < pods {
			return fmt.Errorf("%d of %d targets seen healthy", healthy, pods)
		}
		return nil
	})
	return resolved, atResolved, err
}

// controllerNames are podlb's controllers, as their metrics name them.
var controllerNames = []string{"service", "binding", "health", "gate"}

// reconcileRates is each controller's reconciles a minute between two
// scrapes window apart: what the controller does at rest, besides the
// cloud reads.
func reconcileRates(before, after metricSet, window time.Duration) string {
	var parts []string
	for _, c := range controllerNames {
		want := map[string]string{"controller": c}
		n := after.sum("controller_runtime_reconcile_total", want) - before.sum("controller_runtime_reconcile_total", want)
		parts = append(parts, fmt.Sprintf("%s %.0f", c, n/window.Minutes()))
	}
	return strings.Join(parts, ", ")
}

// startupBreakdown says where a start's time until every binding was
// resolved went: reconciles per controller and their total time, cloud
// calls and client-side limiter waits per operation.
func startupBreakdown(m metricSet) string {
	var parts []string
	for _, c := range controllerNames {
		want := map[string]string{"controller": c}
		parts = append(parts, fmt.Sprintf("%s %d reconciles (%.1fs)", c,
			int(m.sum("controller_runtime_reconcile_total", want)), m.sum("controller_runtime_reconcile_time_seconds_sum", want)))
	}
	verbs := map[string]bool{}
	for _, s := range m["rest_client_requests_total"] {
		verbs[s.labels["method"]] = true
	}
	for _, v := range slices.Sorted(maps.Keys(verbs)) {
		parts = append(parts, fmt.Sprintf("Kubernetes %s %d", v, int(m.sum("rest_client_requests_total", map[string]string{"method": v}))))
	}
	ops := map[string]bool{}
	for _, s := range m["podlb_cloud_api_calls_total"] {
		ops[s.labels["operation"]] = true
	}
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		want := map[string]string{"operation": op}
		parts = append(parts, fmt.Sprintf("%s %d calls, %.1fs limiter wait", op,
			int(m.sum("podlb_cloud_api_calls_total", want)), m.sum("podlb_cloud_api_limiter_wait_seconds_sum", want)))
	}
	return strings.Join(parts, "; ")
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
