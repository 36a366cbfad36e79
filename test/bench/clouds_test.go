package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
)

// cloudTiming is the emulated cloud's behaviour in one scenario.
type cloudTiming struct {
	latencyMin, latencyMax time.Duration
	registrationDelay      time.Duration // ELBv2: initial before checks start
	operationDelay         time.Duration // GCE: attach/detach take effect after
	checkInterval          time.Duration
	drain                  time.Duration
}

// healthyThreshold is what the bench configures on every group.
const healthyThreshold = 2

// cloudTarget is the emulator's record of one target of one group.
type cloudTarget struct {
	service, zone string
	ip            string
	port          int32
	// registered is when the registration call reached the cloud; healthy
	// when the cloud first judged the target healthy.
	registered, healthy time.Time
	active              bool // not draining
	state               string
}

type opCount struct {
	calls, throttled, errors int64
	write                    bool
	// changesTargets marks register/deregister, attach/detach.
	changesTargets bool
}

// cloudEnv is one emulated cloud as the bench sees it: it builds the load
// balancer side of Services, tells the controller how to reach it and
// reports what happened inside it.
type cloudEnv interface {
	name() string         // provider name: aws, gcp
	clusterCloud() string // test/cluster's Cloud option
	controllerArgs() (args, env []string)
	// createGroups builds each Service's load balancer group and returns
	// the podlb annotation each Service needs.
	createGroups(ctx context.Context, services []string) (map[string]map[string]string, error)
	targets(services []string) []cloudTarget
	calls() map[string]opCount
	resetCalls()
	// realistic turns API latency and the cloud's rate limits on or off;
	// both are off while the bench builds its fixtures.
	realistic(latency, limits bool)
	batchSize() int
	// floor is the cloud's own time from registration call to healthy.
	floor() time.Duration
	// groupOf names the cloud group a target in zone lands in.
	groupOf(service, zone string) string
	throttleNote() string
	// targetWrites is what the cloud allows an account or project of the
	// calls that change targets.
	targetWrites() budget
	// healthReads is what the account or project allows of the calls
	// that report target health.
	healthReads() budget
	// ownWrites is the controller's default client-side bucket for
	// target writes: the share of targetWrites it takes.
	ownWrites() budget
	close()
}

func zoneNames(cloud string, n int) []string {
	var out []string
	for i := range n {
		l := string(rune('a' + i))
		if cloud == "aws" {
			out = append(out, "us-east-1"+l)
		} else {
			out = append(out, "us-central1-"+l)
		}
	}
	return out
}

// parallel runs fn for every item with at most workers at once and
// returns the first error.
func parallel[T any](items []T, workers int, fn func(T) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan T)
	)
	for range workers {
		wg.Go(func() {
			for it := range next {
				if err := fn(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	return first
}

// ---- AWS ----

type awsCloud struct {
	sim    *elbv2sim.Server
	timing cloudTiming
	mu     sync.Mutex
	arns   map[string]string // service -> target group ARN
}

func newAWSCloud(t cloudTiming) (*awsCloud, error) {
	sim, err := elbv2sim.Start(elbv2sim.Options{
		RegistrationDelay:   t.registrationDelay,
		HealthCheckInterval: t.checkInterval,
		HealthCheckTimeout:  t.checkInterval * 3 / 5,
		DeregistrationDelay: t.drain,
		TargetAddr:          cluster.LoopbackAddr,
		VPCs:                []elbv2sim.VPC{{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"10.0.0.0/8"}}},
		// Every pod is in the VPC's one zone and rollouts keep draining
		// targets: model a raised (adjustable) per-zone quota.
		MaxTargetsPerZone: 3000,
	})
	if err != nil {
		return nil, err
	}
	return &awsCloud{sim: sim, timing: t, arns: map[string]string{}}, nil
}

func (a *awsCloud) name() string         { return "aws" }
func (a *awsCloud) clusterCloud() string { return "aws" }
func (a *awsCloud) batchSize() int       { return 200 } // the controller's --aws-batch-size default
func (a *awsCloud) close()               { a.sim.Close() }
func (a *awsCloud) floor() time.Duration {
	return a.timing.registrationDelay + healthyThreshold*a.timing.checkInterval
}
func (a *awsCloud) groupOf(service, _ string) string { return service }

// targetWrites is AWS's register+deregister bucket.
func (a *awsCloud) targetWrites() budget {
	b := elbv2sim.AWSThrottle()[elbv2sim.ClassTargets]
	return budget{burst: float64(b.Capacity), perSec: b.RefillPerSec}
}

func (a *awsCloud) ownWrites() budget {
	return limitBudget(awsprovider.DefaultLimits()["RegisterTargets"])
}

// healthReads is AWS's bucket of every ELBv2 Describe*.
func (a *awsCloud) healthReads() budget {
	b := elbv2sim.AWSThrottle()[elbv2sim.ClassDescribe]
	return budget{burst: float64(b.Capacity), perSec: b.RefillPerSec}
}
func (a *awsCloud) throttleNote() string {
	return "elbv2sim.AWSThrottle(): register+deregister 20 burst/4 per s, Describe* 40/10"
}

func (a *awsCloud) controllerArgs() ([]string, []string) {
	return []string{
			"--providers=aws", "--aws-region=us-east-1", "--aws-vpc-id=" + elbv2sim.DefaultVPCID,
			"--aws-endpoint-elbv2=" + a.sim.URL(), "--aws-endpoint-ec2=" + a.sim.URL(),
		}, []string{
			"AWS_ACCESS_KEY_ID=AKIDPODLBBENCH", "AWS_SECRET_ACCESS_KEY=bench",
			// Nothing may leave loopback: no instance metadata look-ups.
			"AWS_EC2_METADATA_DISABLED=true",
		}
}

func (a *awsCloud) createGroups(ctx context.Context, services []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	var mu sync.Mutex
	err := parallel(services, 16, func(svc string) error {
		arn, err := emuclient.TargetGroup(ctx, a.sim, svc, func(in *elbv2.CreateTargetGroupInput) {
			in.HealthyThresholdCount = aws.Int32(healthyThreshold)
		})
		if err != nil {
			return err
		}
		// A listener makes the group serve, so targets are health checked.
		if _, _, err := emuclient.NLB(ctx, a.sim, svc, arn); err != nil {
			return fmt.Errorf("NLB %s: %w", svc, err)
		}
		mu.Lock()
		a.arns[svc] = arn
		out[svc] = map[string]string{"podlb.io/aws-target-groups": `{"http": {"arn": "` + arn + `"}}`}
		mu.Unlock()
		return nil
	})
	return out, err
}

func (a *awsCloud) targets(services []string) []cloudTarget {
	var out []cloudTarget
	for _, svc := range services {
		a.mu.Lock()
		arn := a.arns[svc]
		a.mu.Unlock()
		for _, t := range a.sim.Targets(arn) {
			out = append(out, cloudTarget{service: svc, zone: t.AvailabilityZone, ip: t.ID, port: t.Port,
				registered: t.RegisteredAt, healthy: t.HealthyAt, active: t.State != "draining", state: t.State})
		}
	}
	return out
}

func (a *awsCloud) calls() map[string]opCount {
	out := map[string]opCount{}
	for op, st := range a.sim.Stats() {
		out[op] = opCount{calls: st.Calls, throttled: st.Throttled, errors: st.Errors,
			write:          !strings.HasPrefix(op, "Describe"),
			changesTargets: op == "RegisterTargets" || op == "DeregisterTargets"}
	}
	return out
}

func (a *awsCloud) resetCalls() { a.sim.ResetStats() }

func (a *awsCloud) realistic(latency, limits bool) {
	a.sim.SetLatency(0, 0)
	if latency {
		a.sim.SetLatency(a.timing.latencyMin, a.timing.latencyMax-a.timing.latencyMin)
	}
	a.sim.SetThrottles(nil)
	if limits {
		a.sim.SetThrottles(elbv2sim.AWSThrottle())
	}
}

// ---- GCP ----

type gcpCloud struct {
	sim        *computesim.Server
	project    string
	timing     cloudTiming
	readQuota  int
	writeQuota int
	clients    *emuclient.GCPClients
}

func newGCPCloud(ctx context.Context, c *cluster.Cluster, t cloudTiming, readQuota, writeQuota int) (*gcpCloud, error) {
	sim, err := computesim.Start(computesim.Options{
		Project:             c.GCEProject,
		OperationDelay:      t.operationDelay,
		HealthCheckInterval: t.checkInterval,
		HealthCheckTimeout:  t.checkInterval * 3 / 5,
		DrainingTimeout:     t.drain,
		TargetAddr:          cluster.LoopbackAddr,
		RateWindow:          100 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	g := &gcpCloud{sim: sim, project: c.GCEProject, timing: t, readQuota: readQuota, writeQuota: writeQuota}
	for _, n := range c.Nodes {
		if err := sim.AddInstance(n.Zone, n.VMName, n.HostIP, n.PodCIDR); err != nil {
			_ = sim.Close()
			return nil, err
		}
	}
	if g.clients, err = emuclient.NewGCPClients(ctx, sim, c.GCEProject); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

func (g *gcpCloud) name() string         { return "gcp" }
func (g *gcpCloud) clusterCloud() string { return "gce" }
func (g *gcpCloud) batchSize() int       { return 500 } // the controller's --gcp-batch-size default
func (g *gcpCloud) floor() time.Duration {
	return g.timing.operationDelay + healthyThreshold*g.timing.checkInterval
}
func (g *gcpCloud) groupOf(service, zone string) string { return service + "/" + zone }

// gcpQuotaWindow is the emulated quotas' window.
const gcpQuotaWindow = 100 * time.Second

// targetWrites is the emulated write quota; every write counts.
func (g *gcpCloud) targetWrites() budget { return quotaBudget(g.writeQuota) }

// healthReads is the emulated read quota; every read counts.
func (g *gcpCloud) healthReads() budget { return quotaBudget(g.readQuota) }

func (g *gcpCloud) ownWrites() budget {
	return limitBudget(gcpprovider.DefaultLimits()["networkEndpointGroups.attachNetworkEndpoints"])
}

func limitBudget(l providers.Limit) budget {
	return budget{burst: float64(l.Burst), perSec: l.QPS}
}

func quotaBudget(perWindow int) budget {
	return budget{burst: float64(perWindow), perSec: float64(perWindow) / gcpQuotaWindow.Seconds(), window: gcpQuotaWindow}
}
func (g *gcpCloud) throttleNote() string {
	return fmt.Sprintf("computesim quota: %d reads and %d writes per 100 s", g.readQuota, g.writeQuota)
}

func (g *gcpCloud) close() {
	if g.clients != nil {
		g.clients.Close()
	}
	_ = g.sim.Close()
}

func (g *gcpCloud) controllerArgs() ([]string, []string) {
	return []string{"--providers=gcp", "--gcp-project=" + g.project, "--gcp-endpoint=" + g.sim.URL()}, nil
}

func (g *gcpCloud) createGroups(ctx context.Context, services []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	var mu sync.Mutex
	err := parallel(services, 32, func(svc string) error {
		err := g.clients.CreateTCPBackendService(ctx, emuclient.TCPBackend{Name: svc, HealthyThreshold: healthyThreshold, DrainingTimeoutSec: 1})
		if err != nil {
			return err
		}
		mu.Lock()
		out[svc] = map[string]string{"podlb.io/gcp-negs": `{"http": {"backendService": "` + svc + `"}}`}
		mu.Unlock()
		return nil
	})
	return out, err
}

func (g *gcpCloud) targets(services []string) []cloudTarget {
	var out []cloudTarget
	for _, svc := range services {
		for _, h := range g.sim.Health(svc) {
			// The emulator stamps an endpoint when its operation takes
			// effect; the call reached it OperationDelay earlier.
			out = append(out, cloudTarget{service: svc, zone: h.Zone, ip: h.IPAddress, port: h.Port,
				registered: h.AttachedAt.Add(-g.timing.operationDelay), healthy: h.FirstHealthyAt,
				active: h.State != "DRAINING", state: h.State})
		}
	}
	return out
}

func (g *gcpCloud) calls() map[string]opCount {
	out := map[string]opCount{}
	for m, st := range g.sim.Stats().Methods {
		read := false
		for _, suffix := range []string{".get", ".list", ".aggregatedList", ".getHealth", ".listNetworkEndpoints", ".wait"} {
			read = read || strings.HasSuffix(m, suffix)
		}
		out[m] = opCount{calls: st.Calls, throttled: st.RateLimited, errors: st.Errors, write: !read,
			changesTargets: strings.HasSuffix(m, "attachNetworkEndpoints") || strings.HasSuffix(m, "detachNetworkEndpoints")}
	}
	return out
}

func (g *gcpCloud) resetCalls() { g.sim.ResetStats() }

func (g *gcpCloud) realistic(latency, limits bool) {
	g.sim.SetLatency(0)
	if latency {
		g.sim.SetLatency((g.timing.latencyMin + g.timing.latencyMax) / 2)
	}
	g.sim.SetRateLimit("read", -1)
	g.sim.SetRateLimit("write", -1)
	if limits {
		g.sim.SetRateLimit("read", g.readQuota)
		g.sim.SetRateLimit("write", g.writeQuota)
		g.sim.SetRateWindow(gcpQuotaWindow) // a fresh window
	}
}
