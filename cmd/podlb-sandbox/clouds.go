package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/cluster"
)

const (
	// sandboxVPC holds every pod address of any local cluster (10.X.0.0/16),
	// so ip targets validate as they would in a VPC-native cluster.
	sandboxVPC  = "vpc-05a0d0b0c00000001"
	sandboxCIDR = "10.0.0.0/8"
)

// timing is the emulated clouds' pace: seconds where the real clouds take
// minutes, long enough that an ungated rollout outruns them.
type timing struct {
	// registrationDelay is how long a new target waits before the load
	// balancer checks it or sends it traffic: the NLB's registration on
	// AWS, the NEG's programming on GCP. Health checks then run every
	// healthCheckInterval.
	registrationDelay   time.Duration
	healthCheckInterval time.Duration
	// drain is the deregistration delay (AWS) and connection draining
	// timeout (GCP).
	drain time.Duration
}

// checkTimeout leaves a probe most of its interval, as the clouds' defaults
// do, but never waits long for a pod that does not answer.
func checkTimeout(interval time.Duration) time.Duration {
	return min(interval*3/4, time.Second)
}

// clouds are the running emulators and clients pointed at them.
type clouds struct {
	aws *elbv2sim.Server
	gcp *computesim.Server

	// gcpClients is set when gcp is enabled.
	gcpClients *emuclient.GCPClients
}

// startClouds starts the emulators of the enabled clouds. Pod addresses
// are mapped to the loopback addresses that really serve them.
func startClouds(ctx context.Context, c *cluster.Cluster, enabled map[string]bool, t timing) (_ *clouds, err error) {
	cl := &clouds{}
	defer func() {
		if err != nil {
			cl.close()
		}
	}()
	if enabled["aws"] {
		cl.aws, err = elbv2sim.Start(elbv2sim.Options{
			Region:              emuclient.AWSRegion,
			VPCs:                []elbv2sim.VPC{{ID: sandboxVPC, CIDRs: []string{sandboxCIDR, "100.64.0.0/16"}, Subnets: sandboxSubnets}},
			RegistrationDelay:   t.registrationDelay,
			HealthCheckInterval: t.healthCheckInterval,
			HealthCheckTimeout:  checkTimeout(t.healthCheckInterval),
			DeregistrationDelay: t.drain,
			// AWS's published API rate limits: the demo shows podlb living
			// within them.
			Throttle:   elbv2sim.AWSThrottle(),
			TargetAddr: cluster.LoopbackAddr,
		})
		if err != nil {
			return nil, fmt.Errorf("aws emulator: %w", err)
		}
	}
	if enabled["gcp"] {
		cl.gcp, err = computesim.Start(computesim.Options{
			Project:             c.GCEProject,
			ProgrammingDelay:    t.registrationDelay,
			HealthCheckInterval: t.healthCheckInterval,
			HealthCheckTimeout:  checkTimeout(t.healthCheckInterval),
			DrainingTimeout:     t.drain,
			TargetAddr:          cluster.LoopbackAddr,
		})
		if err != nil {
			return nil, fmt.Errorf("gcp emulator: %w", err)
		}
		// GCE_VM_IP_PORT endpoints name their VM, which must exist.
		for _, n := range c.Nodes {
			if err := cl.gcp.AddInstance(n.Zone, n.VMName, n.HostIP, n.PodCIDR); err != nil {
				return nil, fmt.Errorf("gcp emulator: instance %s: %w", n.VMName, err)
			}
		}
		if cl.gcpClients, err = emuclient.NewGCPClients(ctx, cl.gcp, c.GCEProject); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

func (cl *clouds) close() {
	if cl.gcpClients != nil {
		cl.gcpClients.Close()
	}
	if cl.aws != nil {
		cl.aws.Close()
	}
	if cl.gcp != nil {
		_ = cl.gcp.Close()
	}
}

// awsLoadBalancer puts a network load balancer with a TCP listener in
// front of a target group and returns the load balancer's ARN and the
// listener's address.
func (cl *clouds) awsLoadBalancer(ctx context.Context, name, targetGroupARN string) (string, string, error) {
	return emuclient.NLB(ctx, cl.aws, name, targetGroupARN)
}

// gcpLoadBalancer creates a TCP proxy load balancer without backends: a
// TCP health check, a backend service with connection draining, a target
// TCP proxy and a global forwarding rule. podlb adds the NEGs as backends.
// It returns the forwarding rule's address.
func (cl *clouds) gcpLoadBalancer(ctx context.Context, name string, drain time.Duration) (string, error) {
	err := cl.gcpClients.CreateTCPBackendService(ctx, emuclient.TCPBackend{Name: name, DrainingTimeoutSec: int32(max(drain/time.Second, 1))})
	if err != nil {
		return "", err
	}
	return cl.gcpClients.CreateTCPProxyFrontend(ctx, cl.gcp, name, name)
}

// groupCounts is what a load balancer knows of an app's pods.
type groupCounts struct {
	// Registered targets are in the group and not draining; Healthy ones
	// receive new connections.
	Registered, Healthy, Draining int
	// healthy holds the "ip:port" of healthy targets, as Kubernetes
	// reports the pod addresses.
	healthy map[string]bool
}

// awsGroup reads a target group's state straight from the emulator, which
// costs no API call and so leaves the call counts to podlb.
func (cl *clouds) awsGroup(arn string) groupCounts {
	g := groupCounts{healthy: map[string]bool{}}
	for _, t := range cl.aws.Targets(arn) {
		switch t.State {
		case "draining":
			g.Draining++
			continue
		case "healthy":
			g.Healthy++
			g.healthy[fmt.Sprintf("%s:%d", t.ID, t.Port)] = true
		}
		g.Registered++
	}
	return g
}

// gcpGroup reads a backend service's endpoint health from the emulator.
func (cl *clouds) gcpGroup(backendService string) groupCounts {
	g := groupCounts{healthy: map[string]bool{}}
	for _, e := range cl.gcp.Health(backendService) {
		switch e.State {
		case computesim.StateDraining:
			g.Draining++
			continue
		case computesim.StateHealthy:
			g.Healthy++
			g.healthy[fmt.Sprintf("%s:%d", e.IPAddress, e.Port)] = true
		}
		g.Registered++
	}
	return g
}

// apiCalls returns the calls per operation each emulator has answered.
func (cl *clouds) apiCalls() map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	if cl.aws != nil {
		out["aws"] = map[string]int64{}
		for op, st := range cl.aws.Stats() {
			out["aws"][op] = st.Calls
		}
	}
	if cl.gcp != nil {
		out["gcp"] = map[string]int64{}
		for m, st := range cl.gcp.Stats().Methods {
			out["gcp"][m] = st.Calls
		}
	}
	return out
}

// callsSince subtracts an earlier apiCalls snapshot, dropping zeros.
func callsSince(now, before map[string]map[string]int64) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for cloud, ops := range now {
		out[cloud] = map[string]int64{}
		for op, n := range ops {
			if d := n - before[cloud][op]; d > 0 {
				out[cloud][op] = d
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// endpoints are where a user reaches the emulators' APIs, for --keep.
func (cl *clouds) endpoints() map[string]string {
	out := map[string]string{}
	if cl.aws != nil {
		out["aws"] = cl.aws.URL()
	}
	if cl.gcp != nil {
		out["gcp"] = cl.gcp.URL()
	}
	return out
}
