package elbv2sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/podlb/podlb/internal/connhistory"
)

// VPC is an emulated VPC. RegisterTargets decides by its CIDRs and
// subnets whether an IP target needs an AvailabilityZone (see doc.go).
// Subnets are the only subnets CreateLoadBalancer accepts in this VPC; a
// VPC without them gets one subnet per CIDR, covering it, in zones a, b, ...
// of the region. Every VPC has a default security group; SecurityGroups
// adds more. IDs must have AWS's shape (vpc-, subnet-, sg- and 8 or 17
// lowercase hex digits).
type VPC struct {
	ID             string
	CIDRs          []string
	Subnets        []Subnet
	SecurityGroups []string
}

// Subnet is an emulated subnet of a VPC.
type Subnet struct {
	ID               string
	AvailabilityZone string // e.g. us-east-1a
	CIDR             string // inside one of the VPC's CIDRs
	// Tags, e.g. kubernetes.io/role/elb, for controllers that discover
	// subnets by tag.
	Tags map[string]string
}

// DefaultVPCID is the ID of the VPC the emulator creates when Options.VPCs
// is empty. It holds 127.0.0.0/8 (where test backends live) and
// 10.0.0.0/16. Its subnets DefaultSubnetIDs are 127.0.0.0/8 in zone a and
// 10.0.0.0/17 in zone b of the region, so 10.0.128.0/17 is inside the VPC
// but in no subnet.
const DefaultVPCID = "vpc-0e1b2000000000001"

// ElasticIP is one Elastic IP allocation of the account.
type ElasticIP struct {
	AllocationID string // eipalloc- and 8 or 17 hex digits
	PublicIP     string
}

// LoadBalancerRoleTags mark a subnet for internet-facing and internal load
// balancers, as controllers that discover subnets look for them. The
// emulator's own subnets (the default VPC's, and those it makes for a VPC
// listed without subnets) carry them.
func LoadBalancerRoleTags() map[string]string {
	return map[string]string{"kubernetes.io/role/elb": "1", "kubernetes.io/role/internal-elb": "1"}
}

// DefaultSubnetIDs are the subnets of the default VPC.
var DefaultSubnetIDs = []string{"subnet-0e1b2000000000001", "subnet-0e1b2000000000002"}

// DefaultSecurityGroupID is the default security group of the default VPC.
var DefaultSecurityGroupID = derivedID("sg", DefaultVPCID)

// Options configure a Server. The zero value gives a usable in-process
// emulator: no registration delay, group health-check timing, no throttling.
type Options struct {
	// Addr is the API listen address; default 127.0.0.1:0.
	Addr string
	// Region and AccountID appear in ARNs; defaults us-east-1 and 123456789012.
	Region, AccountID string
	// VPCs known to the emulator; default one VPC, DefaultVPCID.
	VPCs []VPC
	// ElasticIPs are the account's Elastic IP allocations, which an
	// internet-facing network load balancer may name in its
	// SubnetMappings.
	ElasticIPs []ElasticIP
	// ProvisioningDelay is how long a new load balancer stays in state
	// provisioning before it turns active and its listeners serve
	// traffic. AWS takes a few minutes (typically 2 to 5). Zero means
	// 100 ms; negative means active at once.
	ProvisioningDelay time.Duration
	// RegistrationDelay is how long a new target stays in
	// initial/Elb.RegistrationInProgress before health checks start
	// (AWS: 30 s to minutes). Zero means health checks start at once.
	RegistrationDelay time.Duration
	// HealthCheckInterval and HealthCheckTimeout, when non-zero, replace
	// every group's interval and timeout for the checks the emulator runs;
	// the API still reports the group's configured values.
	HealthCheckInterval, HealthCheckTimeout time.Duration
	// DeregistrationDelay, when non-zero, replaces every group's
	// deregistration_delay.timeout_seconds for how long targets drain; the
	// attribute keeps its configured value.
	DeregistrationDelay time.Duration
	// MaxTargetsPerGroup is the TooManyTargets limit; default 1000.
	MaxTargetsPerGroup int
	// MaxTargetsPerZone and MaxTargetsPerNetworkLB are the network load
	// balancer quotas "Targets per Availability Zone per Network Load
	// Balancer" (default 500) and "Targets per Network Load Balancer"
	// (default 3000); MaxRegistrationsPerTarget is how often one IP may be
	// registered across the groups of one load balancer (default 100).
	MaxTargetsPerZone, MaxTargetsPerNetworkLB, MaxRegistrationsPerTarget int
	// UnhealthyDrainingInterval, when non-zero, replaces every group's
	// target_health_state.unhealthy.draining_interval_seconds (when that
	// is set) for how long unhealthy.draining lasts.
	UnhealthyDrainingInterval time.Duration
	// Latency is added to every API answer, plus a uniform random part in
	// [0, LatencyJitter).
	Latency, LatencyJitter time.Duration
	// ErrorRate is the fraction (0..1) of API calls answered with
	// ServiceUnavailable (HTTP 503).
	ErrorRate float64
	// ThrottleRate is the fraction (0..1) of calls answered Throttling
	// regardless of Throttle buckets.
	ThrottleRate float64
	// Throttle maps an operation name (e.g. "RegisterTargets") or a class
	// (ClassTargets, ClassDescribe, ClassMutate, ClassLoadBalancer) to a
	// token bucket. An operation uses its own bucket if present, else its
	// class's. AWSThrottle returns AWS's published buckets.
	Throttle map[string]Bucket
	// ListenHost is the host listeners' data paths bind; default 127.0.0.1.
	ListenHost string
	// TargetAddr maps a target's "ip:port" to the address the emulator
	// really connects to for health checks and traffic. The local cluster
	// reports pod IPs in 10.0.0.0/8 and serves them on the mirrored
	// 127.0.0.0/8 address; nil connects to the target address itself. The
	// result must still be a loopback address.
	TargetAddr func(addr string) string
	// Policies maps an access key ID (the SigV4 Credential a request is
	// signed with) to the IAM policy its calls are evaluated against (see
	// authorize.go): denied calls answer 403 AccessDenied (EC2:
	// UnauthorizedOperation). Callers signing with a key not in the map
	// are allowed everything, as an account's administrator is.
	Policies map[string]*Policy
	// Logf, if set, receives a line per notable event.
	Logf func(format string, args ...any)
	// ConnectionHistory is how many of the latest connections through
	// network listeners Connection can explain; 0 keeps none.
	ConnectionHistory int
}

// Server is a running emulator. All methods are safe for concurrent use.
type Server struct {
	opts   Options
	vpcs   []vpcInfo
	ln     net.Listener
	http   *http.Server
	url    string
	faults faults
	stats  statsBook
	// journal keeps the calls answered, in order (Calls).
	journal journal

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	seq       int64
	tgs       map[string]*targetGroup // by ARN
	tgByName  map[string]*targetGroup
	lbs       map[string]*loadBalancer // by ARN
	listeners map[string]*listener     // by ARN
	rules     map[string]*rule         // non-default rules, by ARN
	certs     map[string]*certificate  // issued certificates, by ARN
	tags      map[string]map[string]string
	// albTransport carries proxied HTTP requests to targets.
	albTransport *http.Transport
	// conns remembers where the latest connections went (Connection).
	conns connhistory.Log[ConnRecord]
}

// Start starts an emulator listening on opts.Addr.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "123456789012"
	}
	if len(opts.VPCs) == 0 {
		opts.VPCs = []VPC{{ID: DefaultVPCID, CIDRs: []string{"127.0.0.0/8", "10.0.0.0/16"}, Subnets: []Subnet{
			{ID: DefaultSubnetIDs[0], AvailabilityZone: opts.Region + "a", CIDR: "127.0.0.0/8", Tags: LoadBalancerRoleTags()},
			{ID: DefaultSubnetIDs[1], AvailabilityZone: opts.Region + "b", CIDR: "10.0.0.0/17", Tags: LoadBalancerRoleTags()},
		}}}
	}
	if opts.ProvisioningDelay == 0 {
		opts.ProvisioningDelay = 100 * time.Millisecond
	}
	if opts.MaxTargetsPerGroup <= 0 {
		opts.MaxTargetsPerGroup = 1000
	}
	if opts.MaxTargetsPerZone <= 0 {
		opts.MaxTargetsPerZone = 500
	}
	if opts.MaxTargetsPerNetworkLB <= 0 {
		opts.MaxTargetsPerNetworkLB = 3000
	}
	if opts.MaxRegistrationsPerTarget <= 0 {
		opts.MaxRegistrationsPerTarget = 100
	}
	if opts.ListenHost == "" {
		opts.ListenHost = "127.0.0.1"
	}
	var vpcs []vpcInfo
	for _, v := range opts.VPCs {
		vi, err := newVPC(v, opts.Region)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(vpcs, func(o vpcInfo) bool { return o.id == vi.id }) {
			return nil, fmt.Errorf("elbv2sim: VPC %s is given twice", vi.id)
		}
		vpcs = append(vpcs, vi)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("elbv2sim: %w", err)
	}
	s := &Server{
		opts:      opts,
		vpcs:      vpcs,
		ln:        ln,
		url:       "http://" + ln.Addr().String(),
		tgs:       map[string]*targetGroup{},
		tgByName:  map[string]*targetGroup{},
		lbs:       map[string]*loadBalancer{},
		listeners: map[string]*listener{},
		rules:     map[string]*rule{},
		certs:     map[string]*certificate{},
		tags:      map[string]map[string]string{},
		conns:     connhistory.Log[ConnRecord]{Max: opts.ConnectionHistory},
	}
	s.albTransport = newALBTransport()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.faults.init(opts)
	s.stats.ops = map[string]*OpStats{}
	mux := http.NewServeMux()
	mux.HandleFunc("/_sim/stats", s.serveStats)
	mux.HandleFunc("/", s.serveAPI)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logf("api server: %v", err)
		}
	}()
	return s, nil
}

// URL is the API endpoint, for the SDK's BaseEndpoint.
func (s *Server) URL() string { return s.url }

// Close stops the API server, every listener, health check and proxied
// connection, and waits for the emulator's goroutines to end.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, l := range s.listeners {
		l.shutdown()
	}
	for _, g := range s.tgs {
		for _, t := range g.order {
			t.stop()
			t.closeConns()
		}
	}
	s.mu.Unlock()
	s.cancel()
	s.albTransport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	s.wg.Wait()
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// nextID returns a fresh 16-hex-digit ARN suffix. Callers hold s.mu.
func (s *Server) nextID() string {
	s.seq++
	return fmt.Sprintf("%016x", uint64(s.seq)*0x9e3779b97f4a7c15)
}

func (s *Server) arn(resource string) string {
	return fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:%s", s.opts.Region, s.opts.AccountID, resource)
}

func (s *Server) vpc(id string) *vpcInfo {
	for i := range s.vpcs {
		if s.vpcs[i].id == id {
			return &s.vpcs[i]
		}
	}
	return nil
}

// Target is the emulator's own view of a registered target, for tests and
// benchmarks.
type Target struct {
	ID               string
	Port             int32
	AvailabilityZone string
	State            string // as DescribeTargetHealth reports it
	Reason           string
	Description      string
	RegisteredAt     time.Time
	HealthyAt        time.Time // first time healthy since registration; zero if never
	DrainUntil       time.Time // zero unless draining
	Connections      int       // proxied connections currently open
	InFlight         int       // proxied HTTP requests currently open
}

// Targets lists the targets of a group in registration order, draining ones
// included; nil if the group does not exist.
func (s *Server) Targets(tgArn string) []Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.tgs[tgArn]
	if g == nil {
		return nil
	}
	now := time.Now()
	out := make([]Target, 0, len(g.order))
	for _, t := range g.order {
		st, reason, desc := s.health(g, t, now)
		out = append(out, Target{
			ID: t.key.id, Port: t.key.port, AvailabilityZone: t.az,
			State: st, Reason: reason, Description: desc,
			RegisteredAt: t.registeredAt, HealthyAt: t.healthyAt, DrainUntil: t.drainUntil,
			Connections: len(t.conns), InFlight: t.inflight,
		})
	}
	return out
}

// ListenerAddr is the host:port where the listener's data path accepts
// connections, or "" if there is no such listener.
func (s *Server) ListenerAddr(listenerArn string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[listenerArn]; l != nil {
		return l.ln.Addr().String()
	}
	return ""
}

// LoadBalancerAddr is the data-path address of the load balancer's listener
// on the given (API) port, or "" if there is none.
func (s *Server) LoadBalancerAddr(lbArn string, port int32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lb := s.lbs[lbArn]; lb != nil {
		for _, l := range lb.listeners {
			if l.port == port {
				return l.ln.Addr().String()
			}
		}
	}
	return ""
}
