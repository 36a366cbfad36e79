package emuclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// GCPClients are unmodified Compute REST clients pointed at the emulator,
// for setting up what podlb binds to and checking
// what it did.
type GCPClients struct {
	Project         string
	NEGs            *compute.NetworkEndpointGroupsClient
	BackendServices *compute.BackendServicesClient
	HealthChecks    *compute.HealthChecksClient
	TCPProxies      *compute.TargetTcpProxiesClient
	ForwardingRules *compute.GlobalForwardingRulesClient
}

// NewGCPClients builds the clients for one project of the emulator.
func NewGCPClients(ctx context.Context, sim *computesim.Server, project string) (_ *GCPClients, err error) {
	co := []option.ClientOption{option.WithEndpoint(sim.URL()), option.WithoutAuthentication()}
	c := &GCPClients{Project: project}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.NEGs, err = compute.NewNetworkEndpointGroupsRESTClient(ctx, co...); err != nil {
		return nil, err
	}
	if c.BackendServices, err = compute.NewBackendServicesRESTClient(ctx, co...); err != nil {
		return nil, err
	}
	if c.HealthChecks, err = compute.NewHealthChecksRESTClient(ctx, co...); err != nil {
		return nil, err
	}
	if c.TCPProxies, err = compute.NewTargetTcpProxiesRESTClient(ctx, co...); err != nil {
		return nil, err
	}
	if c.ForwardingRules, err = compute.NewGlobalForwardingRulesRESTClient(ctx, co...); err != nil {
		return nil, err
	}
	return c, nil
}

// Close closes the clients that were built.
func (c *GCPClients) Close() {
	// Each check stands alone: a nil client in an interface is not nil.
	if c.NEGs != nil {
		_ = c.NEGs.Close()
	}
	if c.BackendServices != nil {
		_ = c.BackendServices.Close()
	}
	if c.HealthChecks != nil {
		_ = c.HealthChecks.Close()
	}
	if c.TCPProxies != nil {
		_ = c.TCPProxies.Close()
	}
	if c.ForwardingRules != nil {
		_ = c.ForwardingRules.Close()
	}
}

// WaitOp waits for an operation started by a call that returned (op, err).
// op.Wait would first back off a whole second; the emulator finishes its
// operations in milliseconds, so poll briskly instead.
func WaitOp(ctx context.Context, op *compute.Operation, err error) error {
	for err == nil && !op.Done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		err = op.Poll(ctx)
	}
	return err
}

// TCPBackend describes a TCP backend service and its health check.
type TCPBackend struct {
	Name string
	// HealthyThreshold is how many consecutive passing checks make a new
	// endpoint HEALTHY (GCE allows 1-10); default 2.
	HealthyThreshold int32
	// DrainingTimeoutSec is the service's connection draining; 0 drains
	// nothing.
	DrainingTimeoutSec int32
}

// CreateTCPBackendService creates a TCP health check on the serving port
// (named <name>-hc) and a TCP backend service without backends using it,
// as a user would before pointing podlb at it.
func (c *GCPClients) CreateTCPBackendService(ctx context.Context, b TCPBackend) error {
	if b.HealthyThreshold == 0 {
		b.HealthyThreshold = 2
	}
	hc := &computepb.HealthCheck{
		Name: proto.String(b.Name + "-hc"), Type: proto.String("TCP"),
		CheckIntervalSec: proto.Int32(5), TimeoutSec: proto.Int32(5),
		HealthyThreshold: proto.Int32(b.HealthyThreshold), UnhealthyThreshold: proto.Int32(2),
		TcpHealthCheck: &computepb.TCPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT")},
	}
	op, err := c.HealthChecks.Insert(ctx, &computepb.InsertHealthCheckRequest{Project: c.Project, HealthCheckResource: hc})
	if err := WaitOp(ctx, op, err); err != nil {
		return fmt.Errorf("health check %s: %w", b.Name+"-hc", err)
	}
	op, err = c.BackendServices.Insert(ctx, &computepb.InsertBackendServiceRequest{Project: c.Project, BackendServiceResource: &computepb.BackendService{
		Name: proto.String(b.Name), Protocol: proto.String("TCP"), LoadBalancingScheme: proto.String("EXTERNAL_MANAGED"),
		HealthChecks:       []string{"global/healthChecks/" + b.Name + "-hc"},
		ConnectionDraining: &computepb.ConnectionDraining{DrainingTimeoutSec: proto.Int32(b.DrainingTimeoutSec)},
	}})
	if err := WaitOp(ctx, op, err); err != nil {
		return fmt.Errorf("backend service %s: %w", b.Name, err)
	}
	return nil
}

// CreateTCPProxyFrontend puts a target TCP proxy and a global forwarding
// rule on port 80 in front of a backend service, and returns the loopback
// address the forwarding rule listens on.
func (c *GCPClients) CreateTCPProxyFrontend(ctx context.Context, sim *computesim.Server, name, backendService string) (string, error) {
	op, err := c.TCPProxies.Insert(ctx, &computepb.InsertTargetTcpProxyRequest{Project: c.Project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String(name + "-proxy"), Service: proto.String("global/backendServices/" + backendService),
	}})
	if err := WaitOp(ctx, op, err); err != nil {
		return "", fmt.Errorf("target TCP proxy %s: %w", name+"-proxy", err)
	}
	op, err = c.ForwardingRules.Insert(ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: c.Project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String(name + "-fr"), Target: proto.String("global/targetTcpProxies/" + name + "-proxy"),
		PortRange: proto.String("80"), LoadBalancingScheme: proto.String("EXTERNAL_MANAGED"),
	}})
	if err := WaitOp(ctx, op, err); err != nil {
		return "", fmt.Errorf("forwarding rule %s: %w", name+"-fr", err)
	}
	addr := sim.ForwardingRuleAddr(name + "-fr")
	if addr == "" {
		return "", errors.New("forwarding rule " + name + "-fr has no address")
	}
	return addr, nil
}

// DeleteTCPProxyFrontend removes what CreateTCPProxyFrontend made, so the
// backend service is no longer in use.
func (c *GCPClients) DeleteTCPProxyFrontend(ctx context.Context, name string) error {
	op, err := c.ForwardingRules.Delete(ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: c.Project, ForwardingRule: name + "-fr"})
	if err := WaitOp(ctx, op, err); err != nil {
		return err
	}
	op, err = c.TCPProxies.Delete(ctx, &computepb.DeleteTargetTcpProxyRequest{Project: c.Project, TargetTcpProxy: name + "-proxy"})
	return WaitOp(ctx, op, err)
}
