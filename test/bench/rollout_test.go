package bench

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/podlb/podlb/targets"
)

// coalesceWindow is the controller's --coalesce-window default: the
// "change window" of the API lower bound.
const coalesceWindow = 200 * time.Millisecond

// readyAfter is test/cluster's default time from container start to ready.
const readyAfter = 200 * time.Millisecond

// runRollout is scenarios 1 and 2: scale 0 -> N, a rolling update of every
// Deployment, and scale N -> 0, each with per-pod latencies (where pods
// start) and cloud calls against their lower bound.
func runRollout(ctx context.Context, e *env) error {
	cloud := e.cloud.name()
	per := spread(*flagRolloutPods, len(e.services))
	zero := make([]int32, len(e.services))
	sec := "1+2 rollout"
	results.set(sec, cloud, "size", "%d gated pods, %d Services, %d nodes, %d zones", sum(per), len(e.services), len(e.kube.Nodes), *flagZones)
	results.set(sec, cloud, "cloud floor (registration + 2 x check interval)", "%s", round(e.cloud.floor()))

	// Scale 0 -> N.
	e.cloud.resetCalls()
	before := e.scrapeOrEmpty()
	start := time.Now()
	if err := e.scale(ctx, per); err != nil {
		return err
	}
	if err := e.waitDeployments(ctx, 30*time.Minute); err != nil {
		return err
	}
	available := time.Since(start)
	if err := e.waitCloud(ctx, 5*time.Minute, per); err != nil {
		return err
	}
	e.reportPods(sec+" scale-up", start, time.Now())
	results.set(sec+" scale-up", cloud, "0 -> N: all Deployments available", "%s", round(available))
	e.reportCalls(sec+" scale-up", start, time.Now())
	e.reportWaits(sec+" scale-up", before)

	// Rolling update of every Deployment at once.
	e.cloud.resetCalls()
	before = e.scrapeOrEmpty()
	start = time.Now()
	if err := e.restart(ctx); err != nil {
		return err
	}
	if err := e.waitDeployments(ctx, 30*time.Minute); err != nil {
		return err
	}
	rollout := time.Since(start)
	if err := e.waitCloud(ctx, 5*time.Minute, per); err != nil {
		return err
	}
	floor := rolloutFloor(per, e.cloud.floor())
	account, own := e.cloud.targetWrites(), e.cloud.ownWrites()
	budgetFloor := e.rolloutBudgetFloor(per, account)
	update := e.reportPods(sec+" update", start, time.Now())
	e.reportLoop(sec+" update", start, update, per)
	results.set(sec+" update", cloud, "rolling update duration (all Deployments)", "%s", round(rollout))
	results.set(sec+" update", cloud, "rolling update floor (waves x (ready + cloud floor))", "%s", round(floor))
	results.set(sec+" update", cloud, "rolling update / floor", "%s", pct(rollout.Seconds(), floor.Seconds()))
	results.set(sec+" update", cloud, "rolling update floor under the cloud's write rate (estimate)", "%s", round(budgetFloor))
	results.set(sec+" update", cloud, "rolling update / write-rate floor", "%s", pct(rollout.Seconds(), budgetFloor.Seconds()))
	if own.perSec < account.perSec {
		// The controller's default share of the account's writes: what it
		// takes leaves room for other tools.
		shareFloor := e.rolloutBudgetFloor(per, own)
		results.set(sec+" update", cloud, "rolling update floor within podlb's default write share (estimate)", "%s (%.3g/s)", round(shareFloor), own.perSec)
		results.set(sec+" update", cloud, "rolling update / share's write-rate floor", "%s", pct(rollout.Seconds(), shareFloor.Seconds()))
	}
	writeCycle, readCycle := e.budgetCycles(per)
	results.set(sec+" update", cloud, "budget cycles at this load: one wave's writes of every group / one health read of every group", "%s / %s (changes that come whatever podlb does wait about half of each; a rolling update's waves most of a write cycle)", round(writeCycle), round(readCycle))
	e.reportCalls(sec+" update", start, time.Now())
	e.reportWaits(sec+" update", before)

	// Scale N -> 0.
	e.cloud.resetCalls()
	start = time.Now()
	if err := e.scale(ctx, zero); err != nil {
		return err
	}
	if err := e.waitCloud(ctx, 10*time.Minute, zero); err != nil {
		return err
	}
	results.set(sec+" scale-down", cloud, "N -> 0: every target gone, every pod deleted", "%s", round(time.Since(start)))
	e.reportCalls(sec+" scale-down", start, time.Now())
	return nil
}

// rolloutFloor is the shortest a gated rolling update with maxSurge 25%
// and maxUnavailable 0 can take: one wave per surge, each a container
// start plus the cloud's own registration and health checks.
func rolloutFloor(per []int32, cloudFloor time.Duration) time.Duration {
	var longest time.Duration
	for _, r := range per {
		if r == 0 {
			continue
		}
		surge := int(math.Ceil(float64(r) * 0.25))
		waves := (int(r) + surge - 1) / surge
		longest = max(longest, time.Duration(waves)*(readyAfter+cloudFloor))
	}
	return longest
}

// rolloutBudgetFloor estimates the shortest rolling update a write rate
// allows (the account's, or podlb's share of it): every wave of every
// Deployment needs at least one registration and one deregistration call
// per group its pods land in (one per zone on GCP), and all Deployments
// share the rate.
func (e *env) rolloutBudgetFloor(per []int32, writes budget) time.Duration {
	groups := 1
	if e.cloud.groupOf("s", "a") != e.cloud.groupOf("s", "b") {
		groups = *flagZones
	}
	calls := 0
	for _, r := range per {
		if r == 0 {
			continue
		}
		surge := int(math.Ceil(float64(r) * 0.25))
		waves := (int(r) + surge - 1) / surge
		calls += waves * min(groups, surge) * 2
	}
	return time.Duration(float64(calls) / writes.perSec * float64(time.Second))
}

// budgetCycles are how long the account's long-run rates take to serve
// one wave of writes (a registration and a deregistration per group its
// pods land in) and one health read of every group, when every Service
// rolls at once. Changes that come whatever podlb does wait on average
// about half a write cycle and half a read cycle under saturation; in a
// rolling update's loop a wave's registration waits most of a write
// cycle, since the Service's next wave comes only once this one is
// served (see closedLoop).
func (e *env) budgetCycles(per []int32) (writes, reads time.Duration) {
	groups := 1
	if e.cloud.groupOf("s", "a") != e.cloud.groupOf("s", "b") {
		groups = *flagZones
	}
	writeCalls, readCalls := 0, 0
	for _, r := range per {
		if r == 0 {
			continue
		}
		surge := int(math.Ceil(float64(r) * 0.25))
		writeCalls += min(groups, surge) * 2
		readCalls += groups
	}
	sec := func(calls int, rate float64) time.Duration {
		return time.Duration(float64(calls) / rate * float64(time.Second))
	}
	return sec(writeCalls, e.cloud.targetWrites().perSec), sec(readCalls, e.cloud.healthReads().perSec)
}

// podChange is a target change the bench saw: pod became ContainersReady
// (a registration) or, registered, began terminating (a deregistration).
type podChange struct {
	change
	pod podTimes
}

// podChanges are the target changes between from and to.
func (e *env) podChanges(from, to time.Time) []podChange {
	within := func(t time.Time) bool { return !t.IsZero() && !t.Before(from) && t.Before(to) }
	var out []podChange
	for _, p := range e.watch.snapshot() {
		g := e.cloud.groupOf(p.app, e.zoneOf[p.node])
		if within(p.containersReady) {
			out = append(out, podChange{change{group: g, at: p.containersReady}, p})
		}
		if !p.containersReady.IsZero() && within(p.terminating) {
			out = append(out, podChange{change{group: g, dereg: true, at: p.terminating}, p})
		}
	}
	return out
}

// reportPods joins what the bench saw of pods that became ContainersReady
// between from and to, and are not terminating, with the cloud's records
// of their targets, and sets podlb's added latency beside its floor under
// the account's budgets for every target change of the period.
// It returns what it joined, for reports of the same phase.
func (e *env) reportPods(sec string, from, to time.Time) phaseRecords {
	cloud := e.cloud.name()
	phase := phaseRecords{changes: e.podChanges(from, to), targets: e.targetsByPod()}
	changes := phase.changes
	floorChanges := make([]change, len(changes))
	cloudTimes := make([]time.Duration, len(changes))
	var toRegister, cloudTime, toGate, total, added, readyAt []time.Duration
	missing := 0
	for i, c := range changes {
		floorChanges[i], cloudTimes[i] = c.change, -1
		p := c.pod
		if c.dereg || !p.terminating.IsZero() {
			continue
		}
		t, ok := phase.record(p)
		if !ok {
			missing++
			continue
		}
		cloudTimes[i] = t.healthy.Sub(t.registered)
		toRegister = append(toRegister, t.registered.Sub(p.containersReady))
		cloudTime = append(cloudTime, t.healthy.Sub(t.registered))
		toGate = append(toGate, p.gateTrue.Sub(t.healthy))
		total = append(total, p.gateTrue.Sub(p.containersReady))
		added = append(added, addedLatency(p, t))
		readyAt = append(readyAt, p.containersReady.Sub(from))
	}
	slow := slowest(added, readyAt) // before percentile sorts added
	account, own := e.cloud.targetWrites(), e.cloud.ownWrites()
	floor50, floor99, floorN := bestFloor(floorChanges, cloudTimes, []budget{account}, e.cloud.healthReads(), e.cloud.batchSize(), order{}, from)
	results.set(sec, cloud, "ContainersReady -> registration call (p50 / p99 / max)", "%s", dist(toRegister))
	results.set(sec, cloud, "registration -> cloud healthy (the cloud's own time)", "%s", dist(cloudTime))
	results.set(sec, cloud, "cloud healthy -> gate True seen", "%s", dist(toGate))
	results.set(sec, cloud, "ContainersReady -> gate True (total)", "%s", dist(total))
	results.set(sec, cloud, "podlb added latency (total - cloud's own)", "%s", dist(added))
	results.set(sec, cloud, "added-latency floor at the account's budgets (best ideal dispatcher): p50 / p99", "%s / %s (n=%d)", round(floor50), round(floor99), floorN)
	results.set(sec, cloud, "added latency above that floor: p50 / p99", "%s / %s",
		round(percentile(added, 50)-floor50), round(percentile(added, 99)-floor99))
	// The write-rate floor counts one call a group, direction and wave;
	// arrivals spread over a budget cycle split waves for any dispatcher
	// that sends what has arrived, as podlb does.
	results.set(sec, cloud, "target calls of an oldest-first dispatcher sending what has arrived, over these arrivals", "%d",
		callCount(floorChanges, idealCalls(floorChanges, []budget{account}, e.cloud.batchSize(), order{}, from)))
	writes := e.writeBudgets()
	if len(writes) > 1 {
		// The controller takes a share of the account's writes, leaving
		// room for other tools: the floor within that share.
		own50, own99, _ := bestFloor(floorChanges, cloudTimes, writes, e.cloud.healthReads(), e.cloud.batchSize(), order{}, from)
		results.set(sec, cloud, "added-latency floor within podlb's default write share: p50 / p99", "%s / %s (%.3g/s, burst %.0f)", round(own50), round(own99), own.perSec, own.burst)
		results.set(sec, cloud, "added latency above the share's floor: p50 / p99", "%s / %s",
			round(percentile(added, 50)-own50), round(percentile(added, 99)-own99))
	}
	// The floors above rank every change by its own wait. podlb puts a
	// terminating pod's deregistration ahead until the pod is killed and
	// judged unhealthy, so that no connection reaches a pod that has
	// stopped: the same replay in that order tells what the order costs
	// registrations from what podlb adds to it.
	inOrder := e.inOrder()
	order50, order99, _ := bestFloor(floorChanges, cloudTimes, writes, e.cloud.healthReads(), e.cloud.batchSize(), inOrder, from)
	results.set(sec, cloud, "added-latency floor in podlb's order (deregistrations ahead until judged gone, a call owed): p50 / p99", "%s / %s (head start %s for %s)",
		round(order50), round(order99), inOrder.headStart, inOrder.headFor)
	results.set(sec, cloud, "added latency above the floor in podlb's order: p50 / p99", "%s / %s",
		round(percentile(added, 50)-order50), round(percentile(added, 99)-order99))
	if len(slow) > 0 {
		results.set(sec, cloud, "slowest 1 % (added latency >= p99): ContainersReady after the phase began (min / p50 / max)", "%s / %s / %s (n=%d)",
			round(slow[0]), round(percentile(slow, 50)), round(slow[len(slow)-1]), len(slow))
	}
	results.set(sec, cloud, "total p50 / cloud floor", "%s", pct(percentile(total, 50).Seconds(), e.cloud.floor().Seconds()))
	if missing > 0 {
		results.set(sec, cloud, "pods without a complete record", "%d", missing)
	}
	return phase
}

// phaseRecords are a phase's target changes and the cloud's record of
// each pod's target.
type phaseRecords struct {
	changes []podChange
	targets map[podKey]cloudTarget
}

// record is the cloud's record of pod p's target, when it is complete:
// the target seen healthy and p's gate seen True.
func (r phaseRecords) record(p podTimes) (cloudTarget, bool) {
	t, ok := r.targets[podKey{p.app, p.ip}]
	return t, ok && !t.healthy.IsZero() && !p.gateTrue.IsZero()
}

// addedLatency is what podlb added to pod p's way to its gate: from
// ContainersReady to its registration call, and from the cloud's verdict
// on its target t to the gate.
func addedLatency(p podTimes, t cloudTarget) time.Duration {
	return t.registered.Sub(p.containersReady) + p.gateTrue.Sub(t.healthy)
}

// podKey names a pod's target: its Service and address.
type podKey struct {
	service, ip string
}

// targetsByPod is the cloud's record of each pod's target on the
// bench's port, an active one before a draining one.
func (e *env) targetsByPod() map[podKey]cloudTarget {
	byKey := map[podKey]cloudTarget{}
	for _, t := range e.cloud.targets(e.services) {
		if t.port != 8080 {
			continue
		}
		k := podKey{t.service, t.ip}
		if old, ok := byKey[k]; ok && old.active && !t.active {
			continue
		}
		byKey[k] = t
	}
	return byKey
}

// reportLoop sets the floors of a rolling update's added latency and
// length with an ideal dispatcher in the update's loop (closedLoop), at
// the budgets podlb writes within, by own wait and in podlb's order. The
// delays outside podlb come from the run: each new pod's from the
// availability that let its Deployment create it to its ContainersReady,
// each old pod's from the availability that let it go to its leaving,
// each target's cloud time, as reportPods joined them for the phase that
// began at from. per is each Service's replicas.
func (e *env) reportLoop(sec string, from time.Time, phase phaseRecords, per []int32) {
	cloud := e.cloud.name()
	replicas := map[string]int{}
	for i, s := range e.services {
		replicas[s] = int(per[i])
	}
	news, olds := map[string][]podChange{}, map[string][]podChange{}
	for _, c := range phase.changes {
		switch {
		case c.dereg:
			olds[c.pod.app] = append(olds[c.pod.app], c)
		case c.pod.terminating.IsZero():
			news[c.pod.app] = append(news[c.pod.app], c)
		}
	}
	var services []loopService
	var added []time.Duration
	var lastAvailable time.Time
	skipped := 0
	byAt := func(a, b podChange) int { return a.at.Compare(b.at) }
	for _, name := range e.services {
		n, o := news[name], olds[name]
		if len(n) == 0 {
			continue
		}
		slices.SortFunc(n, byAt)
		slices.SortFunc(o, byAt)
		gates := make([]time.Time, 0, len(n))
		svcAdded := make([]time.Duration, 0, len(n))
		svc := loopService{surge: int(math.Ceil(float64(replicas[name]) * 0.25))}
		for _, c := range n {
			t, ok := phase.record(c.pod)
			if !ok {
				break
			}
			gates = append(gates, c.pod.gateTrue)
			svcAdded = append(svcAdded, addedLatency(c.pod, t))
			svc.news = append(svc.news, loopPod{group: c.group, at: c.at, cloud: t.healthy.Sub(t.registered)})
		}
		if len(svc.news) != replicas[name] || len(o) > len(gates) {
			skipped++
			continue
		}
		added = append(added, svcAdded...)
		slices.SortFunc(gates, func(a, b time.Time) int { return a.Compare(b) })
		for j := range svc.news {
			if j >= svc.surge {
				svc.news[j].after = max(0, n[j].at.Sub(gates[j-svc.surge]))
			}
		}
		for i, c := range o {
			svc.olds = append(svc.olds, loopOld{group: c.group, after: max(0, c.at.Sub(gates[i]))})
		}
		lastAvailable = later(lastAvailable, gates[len(gates)-1])
		services = append(services, svc)
	}
	if len(services) == 0 {
		return
	}
	writes := e.writeBudgets()
	own50, own99, ownCalls, ownEnd := bestLoop(services, writes, e.cloud.batchSize(), order{}, from)
	order50, order99, orderCalls, orderEnd := bestLoop(services, writes, e.cloud.batchSize(), e.inOrder(), from)
	results.set(sec, cloud, "in the update's loop, an ideal dispatcher (by own wait / in podlb's order): added-latency floor p50 / p99", "%s / %s and %s / %s (%d Services)",
		round(own50), round(own99), round(order50), round(order99), len(services))
	results.set(sec, cloud, "added latency above the loop's floor in podlb's order: p50 / p99", "%s / %s",
		round(percentile(added, 50)-order50), round(percentile(added, 99)-order99))
	results.set(sec, cloud, "in the update's loop: last new pod available, ideal (by own wait / in podlb's order) against podlb", "%s / %s against %s",
		round(ownEnd.Sub(from)), round(orderEnd.Sub(from)), round(lastAvailable.Sub(from)))
	results.set(sec, cloud, "in the update's loop: target calls of the ideal dispatcher (by own wait / in podlb's order)", "%d / %d", ownCalls, orderCalls)
	if skipped > 0 {
		results.set(sec, cloud, "in the update's loop: Services left out (a pod without a complete record)", "%d", skipped)
	}
}

// writeBudgets are the budgets podlb writes within: the account's, and
// podlb's default share of it where that is smaller.
func (e *env) writeBudgets() []budget {
	account, own := e.cloud.targetWrites(), e.cloud.ownWrites()
	if own.perSec < account.perSec || own.burst < account.burst {
		return []budget{account, own}
	}
	return []budget{account}
}

// inOrder is podlb's order of writes with its default head start, which
// ends once the bench's killed pods are judged unhealthy.
func (e *env) inOrder() order {
	return order{headStart: targets.DefaultHeadStart, headFor: podGrace + judgedUnhealthy}
}

// slowest returns, sorted, the at of the pods whose added latency is at
// least its p99: where in a phase its tail comes from. added and at are
// pods' figures in one order; added is left as it was.
func slowest(added, at []time.Duration) []time.Duration {
	if len(added) == 0 {
		return nil
	}
	p99 := percentile(slices.Clone(added), 99)
	var out []time.Duration
	for i, a := range added {
		if a >= p99 {
			out = append(out, at[i])
		}
	}
	slices.Sort(out)
	return out
}

// writeBound is the least number of target-changing calls for changes:
// per group and direction, changes are grouped into windows of the
// controller's coalesce window (a change cannot wait longer for company),
// each window costing ceil(targets / batch) calls. all is the bound if
// every change of the period had come at once.
func (e *env) writeBound(changes []podChange) (windowed, all int) {
	events := map[change][]time.Time{}
	for _, c := range changes {
		k := change{group: c.group, dereg: c.dereg}
		events[k] = append(events[k], c.at)
	}
	batch := e.cloud.batchSize()
	calls := func(n int) int { return (n + batch - 1) / batch }
	for _, ts := range events {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		all += calls(len(ts))
		for i := 0; i < len(ts); {
			j := i
			for j < len(ts) && ts[j].Sub(ts[i]) <= coalesceWindow {
				j++
			}
			windowed += calls(j - i)
			i = j
		}
	}
	return windowed, all
}

// reportCalls reports every cloud call the emulator counted since its last
// reset, against the lower bound for the pod changes of the period.
func (e *env) reportCalls(sec string, from, to time.Time) {
	cloud := e.cloud.name()
	calls := e.cloud.calls()
	var targetWrites, otherWrites, reads, throttled, errs int64
	var readOps, otherOps, throttledOps []string
	names := make([]string, 0, len(calls))
	for op := range calls {
		names = append(names, op)
	}
	sort.Strings(names)
	for _, op := range names {
		c := calls[op]
		switch {
		case c.changesTargets:
			targetWrites += c.calls
		case c.write:
			otherWrites += c.calls
			otherOps = append(otherOps, fmt.Sprintf("%s %d", op, c.calls))
		default:
			reads += c.calls
			readOps = append(readOps, fmt.Sprintf("%s %d", op, c.calls))
		}
		throttled += c.throttled
		errs += c.errors
		if c.throttled > 0 {
			throttledOps = append(throttledOps, fmt.Sprintf("%s %d", op, c.throttled))
		}
	}
	windowed, all := e.writeBound(e.podChanges(from, to))
	minutes := to.Sub(from).Minutes()
	results.set(sec, cloud, "target writes (register/deregister, attach/detach calls)", "%d", targetWrites)
	results.set(sec, cloud, "target-write bound: per change window / all at once", "%d / %d", windowed, all)
	results.set(sec, cloud, "target writes / window bound", "%s", pct(float64(targetWrites), float64(windowed)))
	results.set(sec, cloud, "other writes", "%d %s", otherWrites, parenthesized(otherOps))
	results.set(sec, cloud, "reads", "%d (%.1f per group-minute) %s", reads, float64(reads)/max(minutes, 1.0/60)/float64(len(e.services)), parenthesized(readOps))
	results.set(sec, cloud, "throttled / errors (incl. throttled)", "%d / %d %s", throttled, errs, parenthesized(throttledOps))
}

func parenthesized(items []string) string {
	if len(items) == 0 {
		return ""
	}
	return "(" + strings.Join(items, ", ") + ")"
}

// scrapeOrEmpty is the controller's metrics now, or none when they cannot
// be read (the figures that need them are then left out).
func (e *env) scrapeOrEmpty() metricSet {
	m, err := e.ctrl.scrape()
	if err != nil {
		return nil
	}
	return m
}

// reportWaits reports where a phase's time went inside the controller:
// time in each queue and the client-side limiters' waits, since before.
func (e *env) reportWaits(sec string, before metricSet) {
	after := e.scrapeOrEmpty()
	if before == nil || after == nil {
		return
	}
	cloud := e.cloud.name()
	reportQueues(sec, cloud, before, after, "binding", "health", "gate")
	var writes []string
	for _, status := range []string{"True", "False"} {
		sel := map[string]string{"status": status}
		writes = append(writes, fmt.Sprintf("%.0f %s", after.sum("podlb_gate_writes_total", sel)-before.sum("podlb_gate_writes_total", sel), status))
	}
	results.set(sec, cloud, "gate condition writes", "%s", strings.Join(writes, ", "))
	reportDeregistrations(sec, cloud, before, after)
	ops := map[string]bool{}
	for _, s := range after["podlb_cloud_api_limiter_wait_seconds_bucket"] {
		ops[s.labels["operation"]] = true
	}
	for _, op := range slices.Sorted(maps.Keys(ops)) {
		sel := map[string]string{"operation": op}
		p50, n := histogramQuantile(0.50, before.buckets("podlb_cloud_api_limiter_wait_seconds", sel), after.buckets("podlb_cloud_api_limiter_wait_seconds", sel))
		p99, _ := histogramQuantile(0.99, before.buckets("podlb_cloud_api_limiter_wait_seconds", sel), after.buckets("podlb_cloud_api_limiter_wait_seconds", sel))
		if n > 0 {
			results.set(sec, cloud, "limiter wait "+op+" p50 / p99", "%s / %s (n=%.0f)", round(seconds(p50)), round(seconds(p99)), n)
		}
	}
}

// reportDeregistrations reports how long deregistrations waited, and how
// many came only after their pods were killed (the pods' grace period
// after their deletion), from the controller's metrics between two
// scrapes.
func reportDeregistrations(sec, cloud string, before, after metricSet) {
	const name = "podlb_deregistration_latency_seconds"
	if p50, n := histogramQuantile(0.50, before.buckets(name, nil), after.buckets(name, nil)); n > 0 {
		p99, _ := histogramQuantile(0.99, before.buckets(name, nil), after.buckets(name, nil))
		results.set(sec, cloud, "deregistration: planned -> call returned p50 / p99", "%s / %s (n=%.0f)", round(seconds(p50)), round(seconds(p99)), n)
		late := after.sum("podlb_deregistrations_late_total", nil) - before.sum("podlb_deregistrations_late_total", nil)
		results.set(sec, cloud, "deregistration: after the pod was killed (grace "+podGrace.String()+")", "%.0f of %.0f", late, n)
	}
}

// reportQueues reports each named controller queue's time in queue and
// reconcile time between two scrapes.
func reportQueues(sec, cloud string, before, after metricSet, queues ...string) {
	for _, q := range queues {
		sel := map[string]string{"name": q}
		p99, n := histogramQuantile(0.99, before.buckets("workqueue_queue_duration_seconds", sel), after.buckets("workqueue_queue_duration_seconds", sel))
		p50, _ := histogramQuantile(0.50, before.buckets("workqueue_queue_duration_seconds", sel), after.buckets("workqueue_queue_duration_seconds", sel))
		results.set(sec, cloud, "queue "+q+": time in queue p50 / p99", "%s / %s (n=%.0f)", round(seconds(p50)), round(seconds(p99)), n)
		csel := map[string]string{"controller": q}
		r99, rn := histogramQuantile(0.99, before.buckets("controller_runtime_reconcile_time_seconds", csel), after.buckets("controller_runtime_reconcile_time_seconds", csel))
		results.set(sec, cloud, "queue "+q+": reconcile time p99", "%s (n=%.0f)", round(seconds(r99)), rn)
	}
}
