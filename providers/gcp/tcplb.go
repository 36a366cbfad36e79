package gcp

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers"
)

// Proxy Network Load Balancers for Services of type LoadBalancer: per TCP
// port a health check and backend service (protocol TCP) for the Service
// port's NEGs, a global target TCP proxy and a global forwarding rule,
// every port on one IP address.

var _ providers.L4Balancers = (*Provider)(nil)

// Suffixes of a Service load balancer's resources: per backend, and per
// port (followed by the port number).
const (
	kindTCPBackend     = "tb"
	kindTCPHealthCheck = "tc"
	kindTCPNEG         = "tn"
	kindTCPProxy       = "tp"
	kindTCPRule        = "ft"
)

// tcpScheme is the scheme of the global external proxy Network Load
// Balancer, the one kind podlb provisions for Services.
const tcpScheme = "EXTERNAL_MANAGED"

// udpRefusal is why a UDP port gets no load balancer on GCP.
const udpRefusal = "GCP serves UDP only through passthrough Network Load Balancers, whose backends are VMs (instance groups or GCE_VM_IP NEGs), not pods; podlb's proxy load balancer carries TCP only"

// ParseL4Spec implements providers.L4Balancers.
func (p *Provider) ParseL4Spec(raw string) (any, error) {
	s, err := ParseNetworkLoadBalancerSpec(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ParseNetworkLoadBalancerSpec validates the value of
// podlb.io/gcp-load-balancer on a Service of type LoadBalancer, refusing
// by name the fields only an Application Load Balancer has and the
// settings podlb cannot provision for a Service yet.
func ParseNetworkLoadBalancerSpec(raw string) (*LoadBalancerSpec, error) {
	s, err := ParseLoadBalancerSpec(raw)
	if err != nil {
		return nil, err
	}
	if err := s.validateL4(); err != nil {
		return nil, annotationError(err)
	}
	return s, nil
}

func (s *LoadBalancerSpec) validateL4() error {
	switch {
	case s.RedirectToHTTPS:
		return providers.Errorf(providers.Invalid, "redirectToHTTPS", "applies to Ingresses only: a Service's load balancer forwards TCP and sees no HTTP")
	case s.Scheme == "internal":
		return providers.Errorf(providers.Invalid, "scheme", "podlb provisions external proxy Network Load Balancers for Services; internal (regional) ones are not supported yet")
	case s.Region != "":
		return providers.Errorf(providers.Invalid, "region", "podlb provisions global proxy Network Load Balancers for Services; regional ones are not supported yet")
	case len(s.SSLCertificates) > 0:
		return providers.Errorf(providers.Invalid, "sslCertificates", "podlb's load balancers for Services forward plain TCP; TLS termination (target SSL proxies) is not supported yet")
	case s.SSLPolicy != "":
		return providers.Errorf(providers.Invalid, "sslPolicy", "applies to TLS termination, which podlb's load balancers for Services do not do yet")
	}
	for _, key := range slices.Sorted(maps.Keys(s.Backends)) {
		if s.Backends[key].MaxRatePerEndpoint != nil {
			return providers.Errorf(providers.Invalid, fmt.Sprintf("backends[%q].maxRatePerEndpoint", key), "RATE balancing is for HTTP backends; a Service's TCP backends balance by CONNECTION")
		}
	}
	return nil
}

// tcpBalancer is the balancer of a Service's load balancer of key.
func (p *Provider) tcpBalancer(cluster string, key providers.BalancerKey) *balancer {
	b := p.balancer(cluster, key, scope{}, tcpScheme)
	b.kind, b.protocol = tcpKind, "TCP"
	return b
}

// portName names the resource of one port of the load balancer.
func (b *balancer) portName(suffix string, port int32) string {
	return b.name(suffix + strconv.Itoa(int(port)))
}

// l4BackendSpec is the annotation's settings of a listener's backend,
// keyed by "service:port" with the port's number or name.
func l4BackendSpec(s *LoadBalancerSpec, be providers.L4Backend) BackendSpec {
	if bs, ok := s.Backends[be.Service+":"+strconv.Itoa(int(be.Port))]; ok || be.PortName == "" {
		return bs
	}
	return s.Backends[be.Service+":"+be.PortName]
}

// EnsureL4 implements providers.L4Balancers. Each TCP port gets its own
// health check, backend service, target TCP proxy and forwarding rule, so
// a port's change never touches another's; every resource is read first
// and written only when it differs. UDP ports and ports another forwarding
// rule holds on the load balancer's address are refused.
func (p *Provider) EnsureL4(ctx context.Context, lb *providers.L4Balancer) (*providers.L4Result, error) {
	spec, err := loadBalancerSpec(lb.Spec)
	if err != nil {
		return nil, err
	}
	if err := spec.validateL4(); err != nil {
		return nil, err
	}
	b := p.tcpBalancer(lb.Cluster, lb.Key)
	res := &providers.L4Result{Specs: map[string]providers.Spec{}, Refused: map[string]string{}}
	ip, err := b.wantedIP(ctx, spec)
	if err != nil {
		return nil, err
	}
	rules, err := forwardingRules.matching(ctx, p, b.sc, nil)
	if err != nil {
		return nil, err
	}
	var ours []*computepb.ForwardingRule
	for _, r := range rules {
		if b.owns(r.GetDescription()) {
			ours = append(ours, r)
		}
	}
	// Without a reserved address the ports share the IP the first rule
	// got.
	if ip == "" && len(ours) > 0 {
		ip = ours[0].GetIPAddress()
	}
	var served []providers.L4Listener
	for _, l := range lb.Listeners {
		key := strconv.Itoa(int(l.Port)) + "/" + l.Protocol
		switch {
		case l.Protocol == "UDP":
			res.Refused[key] = udpRefusal
		case l.Protocol != "TCP":
			res.Refused[key] = fmt.Sprintf("a proxy Network Load Balancer serves TCP, not %s", l.Protocol)
		default:
			if holder := foreignHolder(rules, b, ip, l.Port); holder != "" {
				res.Refused[key] = fmt.Sprintf("port %d of %s is held by forwarding rule %s, which podlb did not create and will not change", l.Port, ip, holder)
				continue
			}
			served = append(served, l)
		}
	}

	keep := map[string]bool{}
	wanted := map[string]bool{} // proxies and rules
	for _, l := range served {
		be := l.Backend
		id := be.ID()
		bspec := l4BackendSpec(spec, be)
		hcName := backendResourceName(b.cluster, b.key, id, be.Service, be.Port, kindTCPHealthCheck)
		if err := b.applyHealthCheck(ctx, tcpHealthCheck(b, hcName, bspec)); err != nil {
			return nil, fmt.Errorf("backend %s: %w", id, err)
		}
		bsName := backendResourceName(b.cluster, b.key, id, be.Service, be.Port, kindTCPBackend)
		if err := b.ensureBackendService(ctx, bsName, hcName, spec, bspec); err != nil {
			return nil, fmt.Errorf("backend %s: %w", id, err)
		}
		keep[hcName], keep[bsName] = true, true
		proxy, rule := b.portName(kindTCPProxy, l.Port), b.portName(kindTCPRule, l.Port)
		if err := b.ensureTCPProxy(ctx, proxy, rule, b.link("backendServices", bsName)); err != nil {
			return nil, err
		}
		got, err := b.ensureRule(ctx, kindTCPRule+strconv.Itoa(int(l.Port)), ip, int(l.Port), b.link("targetTcpProxies", proxy))
		if err != nil {
			return nil, err
		}
		if ip == "" {
			ip = got
		}
		wanted[proxy], wanted[rule] = true, true
		res.Specs[id] = &Spec{
			Name:           backendResourceName(b.cluster, b.key, id, be.Service, be.Port, kindTCPNEG),
			BackendService: b.sc.path(p.opts.Project, "backendServices", bsName),
			BalancingMode:  "CONNECTION",
		}
	}
	if err := b.sweepPorts(ctx, ours, wanted); err != nil {
		return nil, err
	}
	if _, err := b.sweepBackends(ctx, keep); err != nil {
		return nil, err
	}
	res.Status = providers.BalancerStatus{IP: ip, Details: map[string]string{"scheme": tcpScheme}}
	for _, l := range served {
		res.Status.Details["forwardingRule/"+strconv.Itoa(int(l.Port))] = b.sc.path(p.opts.Project, "forwardingRules", b.portName(kindTCPRule, l.Port))
	}
	return res, nil
}

// foreignHolder names a forwarding rule that is not the load balancer's
// and listens on ip at port, "" when there is none (or no IP yet).
func foreignHolder(rules []*computepb.ForwardingRule, b *balancer, ip string, port int32) string {
	if ip == "" {
		return ""
	}
	for _, r := range rules {
		if b.owns(r.GetDescription()) || r.GetIPAddress() != ip {
			continue
		}
		lo, hi, ok := portRange(r.GetPortRange())
		if ok && lo <= int(port) && int(port) <= hi {
			return r.GetName()
		}
	}
	return ""
}

// portRange reads a forwarding rule's "80" or "8000-8080".
func portRange(s string) (int, int, bool) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, false
	}
	if !isRange {
		return lo, lo, true
	}
	hi, err := strconv.Atoi(b)
	return lo, hi, err == nil
}

// tcpHealthCheck is the health check of a backend: TCP on the serving
// port, or HTTP when the annotation gives a path.
func tcpHealthCheck(b *balancer, name string, bs BackendSpec) *computepb.HealthCheck {
	interval := int32(defaultCheckIntervalSec)
	portSpec, port := proto.String("USE_SERVING_PORT"), (*int32)(nil)
	path := ""
	if hc := bs.HealthCheck; hc != nil {
		if hc.CheckIntervalSec != nil {
			interval = *hc.CheckIntervalSec
		}
		if hc.Port != nil {
			portSpec, port = proto.String("USE_FIXED_PORT"), proto.Int32(*hc.Port)
		}
		path = hc.Path
	}
	want := &computepb.HealthCheck{
		Name: proto.String(name), Description: b.description(),
		// The timeout may not exceed the interval.
		CheckIntervalSec: proto.Int32(interval), TimeoutSec: proto.Int32(min(interval, defaultCheckTimeoutSec)),
	}
	if path != "" {
		want.Type = proto.String("HTTP")
		want.HttpHealthCheck = &computepb.HTTPHealthCheck{PortSpecification: portSpec, Port: port, RequestPath: proto.String(path)}
	} else {
		want.Type = proto.String("TCP")
		want.TcpHealthCheck = &computepb.TCPHealthCheck{PortSpecification: portSpec, Port: port}
	}
	return want
}

// ensureTCPProxy keeps a port's target TCP proxy on service. A proxy
// cannot change its service in place: when the port's backend changed, the
// port's forwarding rule and proxy go and the proxy comes back (the rule
// follows in ensureRule).
func (b *balancer) ensureTCPProxy(ctx context.Context, name, rule, service string) error {
	cur, found, err := lookup(ctx, b, tcpProxies, name)
	switch {
	case err != nil:
		return err
	case found && resourcePath(cur.GetService()) == resourcePath(service):
		return nil
	case found:
		if err := remove(ctx, b, forwardingRules, rule); err != nil {
			return err
		}
		if err := tcpProxies.del(ctx, b.p, b.sc, name); err != nil {
			return err
		}
	}
	return create(ctx, b, tcpProxies, name, &computepb.TargetTcpProxy{Name: proto.String(name), Description: b.description(), Service: proto.String(service)})
}

// sweepPorts deletes the load balancer's forwarding rules (among ours)
// and target TCP proxies that wanted does not name, rules first.
func (b *balancer) sweepPorts(ctx context.Context, ours []*computepb.ForwardingRule, wanted map[string]bool) error {
	for _, r := range ours {
		if !wanted[r.GetName()] {
			if err := forwardingRules.del(ctx, b.p, b.sc, r.GetName()); err != nil {
				return err
			}
		}
	}
	proxies, err := tcpProxies.all(ctx, b.p, b.sc)
	if err != nil {
		return err
	}
	for _, tp := range proxies {
		if b.owns(tp.GetDescription()) && !wanted[tp.GetName()] {
			if err := tcpProxies.del(ctx, b.p, b.sc, tp.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteL4 implements providers.L4Balancers: the forwarding rules, the
// target TCP proxies, then the backend services and health checks, each
// only when its description says it is this load balancer's. While
// backend services still hold the target bindings' NEGs it fails
// Transient, as DeleteHTTP does.
func (p *Provider) DeleteL4(ctx context.Context, cluster string, key providers.BalancerKey) error {
	b := p.tcpBalancer(cluster, key)
	rules, err := forwardingRules.all(ctx, p, b.sc)
	if err != nil {
		return err
	}
	var ours []*computepb.ForwardingRule
	for _, r := range rules {
		if b.owns(r.GetDescription()) {
			ours = append(ours, r)
		}
	}
	if err := b.sweepPorts(ctx, ours, nil); err != nil {
		return err
	}
	busy, err := b.sweepBackends(ctx, nil)
	if err != nil {
		return err
	}
	if len(busy) > 0 {
		return providers.Errorf(providers.Transient, "", "backend services %s still have backends; they are deleted once the target bindings release their NEGs", strings.Join(busy, ", "))
	}
	return nil
}
