package computesim_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

const (
	project = "sim-project"
	zoneA   = "us-central1-a"
	zoneB   = "us-central1-b"
	region  = "us-central1"
)

// env is an emulator plus the real apiv1 REST clients pointed at it.
type env struct {
	t    testing.TB
	ctx  context.Context
	srv  *computesim.Server
	negs *compute.NetworkEndpointGroupsClient
	bs   *compute.BackendServicesClient
	rbs  *compute.RegionBackendServicesClient
	hcs  *compute.HealthChecksClient
	tps  *compute.TargetTcpProxiesClient
	rtps *compute.RegionTargetTcpProxiesClient
	sps  *compute.TargetSslProxiesClient
	frs  *compute.GlobalForwardingRulesClient
	inst *compute.InstancesClient
	zops *compute.ZoneOperationsClient

	rhcs   *compute.RegionHealthChecksClient
	ums    *compute.UrlMapsClient
	rums   *compute.RegionUrlMapsClient
	certs  *compute.SslCertificatesClient
	rcerts *compute.RegionSslCertificatesClient
	hps    *compute.TargetHttpProxiesClient
	rhps   *compute.RegionTargetHttpProxiesClient
	hsps   *compute.TargetHttpsProxiesClient
	rhsps  *compute.RegionTargetHttpsProxiesClient
	gaddrs *compute.GlobalAddressesClient
	addrs  *compute.AddressesClient
	rfrs   *compute.ForwardingRulesClient
}

func newEnv(t testing.TB, opts computesim.Options) *env {
	t.Helper()
	if opts.Project == "" {
		opts.Project = project
	}
	if opts.HealthCheckInterval == 0 {
		opts.HealthCheckInterval = 20 * time.Millisecond
	}
	if opts.HealthCheckTimeout == 0 {
		opts.HealthCheckTimeout = 200 * time.Millisecond
	}
	srv, err := computesim.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	co := []option.ClientOption{option.WithEndpoint(srv.URL()), option.WithoutAuthentication()}
	e := &env{t: t, ctx: ctx, srv: srv}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	e.negs, err = compute.NewNetworkEndpointGroupsRESTClient(ctx, co...)
	must(err)
	e.bs, err = compute.NewBackendServicesRESTClient(ctx, co...)
	must(err)
	e.rbs, err = compute.NewRegionBackendServicesRESTClient(ctx, co...)
	must(err)
	e.hcs, err = compute.NewHealthChecksRESTClient(ctx, co...)
	must(err)
	e.tps, err = compute.NewTargetTcpProxiesRESTClient(ctx, co...)
	must(err)
	e.rtps, err = compute.NewRegionTargetTcpProxiesRESTClient(ctx, co...)
	must(err)
	e.sps, err = compute.NewTargetSslProxiesRESTClient(ctx, co...)
	must(err)
	e.frs, err = compute.NewGlobalForwardingRulesRESTClient(ctx, co...)
	must(err)
	e.inst, err = compute.NewInstancesRESTClient(ctx, co...)
	must(err)
	e.zops, err = compute.NewZoneOperationsRESTClient(ctx, co...)
	must(err)
	e.rhcs, err = compute.NewRegionHealthChecksRESTClient(ctx, co...)
	must(err)
	e.ums, err = compute.NewUrlMapsRESTClient(ctx, co...)
	must(err)
	e.rums, err = compute.NewRegionUrlMapsRESTClient(ctx, co...)
	must(err)
	e.certs, err = compute.NewSslCertificatesRESTClient(ctx, co...)
	must(err)
	e.rcerts, err = compute.NewRegionSslCertificatesRESTClient(ctx, co...)
	must(err)
	e.hps, err = compute.NewTargetHttpProxiesRESTClient(ctx, co...)
	must(err)
	e.rhps, err = compute.NewRegionTargetHttpProxiesRESTClient(ctx, co...)
	must(err)
	e.hsps, err = compute.NewTargetHttpsProxiesRESTClient(ctx, co...)
	must(err)
	e.rhsps, err = compute.NewRegionTargetHttpsProxiesRESTClient(ctx, co...)
	must(err)
	e.gaddrs, err = compute.NewGlobalAddressesRESTClient(ctx, co...)
	must(err)
	e.addrs, err = compute.NewAddressesRESTClient(ctx, co...)
	must(err)
	e.rfrs, err = compute.NewForwardingRulesRESTClient(ctx, co...)
	must(err)
	t.Cleanup(func() {
		for _, c := range []io.Closer{e.negs, e.bs, e.rbs, e.hcs, e.tps, e.rtps, e.sps, e.frs, e.inst, e.zops,
			e.rhcs, e.ums, e.rums, e.certs, e.rcerts, e.hps, e.rhps, e.hsps, e.rhsps, e.gaddrs, e.addrs, e.rfrs} {
			_ = c.Close()
		}
	})
	return e
}

// done waits for an operation and fails the test on any error.
func (e *env) done(op *compute.Operation, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("call: %v", err)
	}
	if err := op.Wait(e.ctx); err != nil {
		e.t.Fatalf("operation %s: %v", op.Name(), err)
	}
}

// opErr returns the error of a call or, when the call succeeded, of its
// operation.
func (e *env) opErr(op *compute.Operation, err error) error {
	e.t.Helper()
	if err != nil {
		return err
	}
	return op.Wait(e.ctx)
}

// apiCode extracts the HTTP code and the legacy reason of a Compute error,
// insisting that it surfaces as *apierror.APIError like real GCE errors.
func apiCode(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	var ae *apierror.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %T is not an *apierror.APIError: %v", err, err)
	}
	reason := ""
	var ge *googleapi.Error
	if errors.As(err, &ge) && len(ge.Errors) > 0 {
		reason = ge.Errors[0].Reason
	}
	return ae.HTTPCode(), reason
}

func expectErr(t *testing.T, err error, code int, reason string) {
	t.Helper()
	c, r := apiCode(t, err)
	if c != code || (reason != "" && r != reason) {
		t.Fatalf("got %d %q (%v), want %d %q", c, r, err, code, reason)
	}
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func negURL(zone, name string) string {
	return fmt.Sprintf("https://www.googleapis.com/compute/v1/projects/%s/zones/%s/networkEndpointGroups/%s", project, zone, name)
}

func (e *env) createNEG(zone, name string, defaultPort int32) {
	e.t.Helper()
	e.done(e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{
		Project: project, Zone: zone,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{
			Name:                proto.String(name),
			NetworkEndpointType: proto.String("GCE_VM_IP_PORT"),
			DefaultPort:         proto.Int32(defaultPort),
			Network:             proto.String("default"),
			Description:         proto.String(`{"cluster":"c1","service":"ns/svc"}`),
		},
	}))
}

func ep(instance, ip string, port int32) *computepb.NetworkEndpoint {
	return &computepb.NetworkEndpoint{Instance: proto.String(instance), IpAddress: proto.String(ip), Port: proto.Int32(port)}
}

func (e *env) attach(zone, neg string, eps ...*computepb.NetworkEndpoint) (*compute.Operation, error) {
	return e.negs.AttachNetworkEndpoints(e.ctx, &computepb.AttachNetworkEndpointsNetworkEndpointGroupRequest{
		Project: project, Zone: zone, NetworkEndpointGroup: neg,
		NetworkEndpointGroupsAttachEndpointsRequestResource: &computepb.NetworkEndpointGroupsAttachEndpointsRequest{NetworkEndpoints: eps},
	})
}

func (e *env) detach(zone, neg string, eps ...*computepb.NetworkEndpoint) (*compute.Operation, error) {
	return e.negs.DetachNetworkEndpoints(e.ctx, &computepb.DetachNetworkEndpointsNetworkEndpointGroupRequest{
		Project: project, Zone: zone, NetworkEndpointGroup: neg,
		NetworkEndpointGroupsDetachEndpointsRequestResource: &computepb.NetworkEndpointGroupsDetachEndpointsRequest{NetworkEndpoints: eps},
	})
}

func (e *env) createHC(name, typ string, healthy, unhealthy int32) {
	e.t.Helper()
	hc := &computepb.HealthCheck{
		Name: proto.String(name), Type: proto.String(typ),
		HealthyThreshold: proto.Int32(healthy), UnhealthyThreshold: proto.Int32(unhealthy),
	}
	if typ == "TCP" {
		hc.TcpHealthCheck = &computepb.TCPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT")}
	} else {
		hc.HttpHealthCheck = &computepb.HTTPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT"), RequestPath: proto.String("/healthz")}
	}
	e.done(e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: hc}))
}

func hcURL(name string) string {
	return "https://www.googleapis.com/compute/v1/projects/" + project + "/global/healthChecks/" + name
}

// tcpBackendService builds a TCP backend service with CONNECTION backends.
func tcpBackendService(name, hc string, drainSec int32, negs ...string) *computepb.BackendService {
	bs := &computepb.BackendService{
		Name:               proto.String(name),
		Protocol:           proto.String("TCP"),
		HealthChecks:       []string{hcURL(hc)},
		ConnectionDraining: &computepb.ConnectionDraining{DrainingTimeoutSec: proto.Int32(drainSec)},
	}
	for _, n := range negs {
		bs.Backends = append(bs.Backends, &computepb.Backend{
			Group: proto.String(n), BalancingMode: proto.String("CONNECTION"),
			MaxConnectionsPerEndpoint: proto.Int32(100),
		})
	}
	return bs
}

func (e *env) getHealth(bs, group string) map[string]string {
	e.t.Helper()
	resp, err := e.bs.GetHealth(e.ctx, &computepb.GetHealthBackendServiceRequest{
		Project: project, BackendService: bs,
		ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: proto.String(group)},
	})
	if err != nil {
		e.t.Fatalf("getHealth: %v", err)
	}
	out := map[string]string{}
	for _, h := range resp.GetHealthStatus() {
		out[fmt.Sprintf("%s:%d", h.GetIpAddress(), h.GetPort())] = h.GetHealthState()
	}
	return out
}

// simState is the emulator's own state of endpoint ip:port in a backend
// service, the states getHealth leaves out (UNKNOWN, DRAINING) included;
// "" when it has none.
func (e *env) simState(bs, key string) string {
	for _, h := range e.srv.Health(bs) {
		if fmt.Sprintf("%s:%d", h.IPAddress, h.Port) == key {
			return h.State
		}
	}
	return ""
}

// ---- real backends on loopback addresses ----

// loopbackPods is the alias range the tests give their VMs: endpoints
// are real backends on loopback addresses, which stand for pod IPs from
// the VM's alias range (the primary IPs are never contacted).
const loopbackPods = "127.0.0.0/8"

// httpBackend is an HTTP server on a 127.x address whose health answer can
// be switched, and which can be stopped and restarted on the same address.
type httpBackend struct {
	ip     string
	port   int32
	status atomic.Int32
	mu     sync.Mutex
	srv    *http.Server
}

func startHTTPBackend(t *testing.T, ip string) *httpBackend {
	t.Helper()
	b := &httpBackend{ip: ip}
	b.status.Store(200)
	b.start(t, "0")
	t.Cleanup(b.stop)
	return b
}

func (b *httpBackend) start(t *testing.T, port string) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(b.ip, port))
	if err != nil {
		t.Fatal(err)
	}
	b.port = int32(ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(b.status.Load()))
		_, _ = io.WriteString(w, b.ip)
	})}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (b *httpBackend) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

func (b *httpBackend) restart(t *testing.T) { b.start(t, fmt.Sprint(b.port)) }

// tcpBackend greets each connection with its IP and then echoes lines.
type tcpBackend struct {
	ip   string
	port int32
	ln   net.Listener
}

func startTCPBackend(t *testing.T, ip string) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpBackend{ip: ip, port: int32(ln.Addr().(*net.TCPAddr).Port), ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, ip+"\n")
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return b
}

// dialLB opens a connection through a forwarding rule and reads which
// backend answered; "" when the load balancer closed the connection.
func dialLB(t *testing.T, addr string) (string, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		_ = c.Close()
		return "", nil, nil
	}
	_ = c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line), c, r
}
