package gcp

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/podlb/podlb/providers"
)

// Proxy Network Load Balancers for Services of type LoadBalancer: per TCP
// port a health check and backend service (protocol TCP) for the Service
// port's NEGs, a target TCP proxy (or, for a port in tlsPorts, a target SSL
// proxy) and a forwarding rule, every port on one IP address. External
// ones are global, or regional with a region; internal ones regional.

var _ providers.L4Balancers = (*Provider)(nil)

// Suffixes of a Service load balancer's resources: per backend, and per
// port (followed by the port number).
const (
	kindTCPBackend     = "tb"
	kindTCPHealthCheck = "tc"
	kindTCPNEG         = "tn"
	kindTCPProxy       = "tp"
	kindSSLProxy       = "ts"
	kindTCPRule        = "ft"
)

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
	return providers.ParseAnnotation(LoadBalancerAnnotationKey, raw, (*LoadBalancerSpec).validate, (*LoadBalancerSpec).validateL4)
}

// validateL4 refuses what only an Ingress's load balancer has, and TLS
// settings that do not fit together.
func (s *LoadBalancerSpec) validateL4() error {
	switch {
	case s.RedirectToHTTPS:
		return providers.Errorf(providers.Invalid, "redirectToHTTPS", "applies to Ingresses only: a Service's load balancer forwards TCP and sees no HTTP")
	case len(s.SSLCertificates) > 0 && len(s.TLSPorts) == 0:
		return providers.Errorf(providers.Invalid, "sslCertificates", "a Service's load balancer terminates TLS only on the ports listed in tlsPorts; list them")
	case len(s.TLSPorts) > 0 && len(s.SSLCertificates) == 0:
		return providers.Errorf(providers.Invalid, "tlsPorts", "target SSL proxies need certificates: list them in sslCertificates")
	case s.SSLPolicy != "" && len(s.TLSPorts) == 0:
		return providers.Errorf(providers.Invalid, "sslPolicy", "applies to TLS ports only: list them in tlsPorts")
	case len(s.TLSPorts) > 0 && s.Region != "":
		return providers.Errorf(providers.Invalid, "tlsPorts", "target SSL proxies are global; a regional proxy Network Load Balancer forwards plain TCP only")
	}
	if err := providers.CheckPorts("tlsPorts", s.TLSPorts); err != nil {
		return err
	}
	for _, key := range slices.Sorted(maps.Keys(s.Backends)) {
		if s.Backends[key].MaxRatePerEndpoint != nil {
			return providers.Errorf(providers.Invalid, fmt.Sprintf("backends[%q].maxRatePerEndpoint", key), "RATE balancing is for HTTP backends; a Service's TCP backends balance by CONNECTION")
		}
		if s.Backends[key].BalancingMode == "RATE" {
			return providers.Errorf(providers.Invalid, fmt.Sprintf("backends[%q].balancingMode", key), "RATE balancing is for HTTP backends; a Service's TCP backends balance by CONNECTION")
		}
	}
	return nil
}

// NetworkBalancerDescription is the description podlb writes on every
// resource of a Service's load balancer of key (as BalancerDescription is
// an Ingress's), by which it recognises them as its own.
func NetworkBalancerDescription(cluster string, key providers.BalancerKey) string {
	return balancerDescription(cluster, key, tcpKind)
}

// tcpBalancer is the balancer of a Service's load balancer of key.
func (p *Provider) tcpBalancer(cluster string, key providers.BalancerKey, sc scope, scheme string) *balancer {
	b := p.balancer(cluster, key, sc, scheme)
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
// health check, backend service, target TCP proxy (SSL proxy for a port in
// tlsPorts) and forwarding rule, so a port's change never touches
// another's; every resource is read first and written only when it
// differs. UDP ports and ports another forwarding rule holds on the load
// balancer's address are refused. A rule podlb cannot create because the
// address is in use is an Invalid error naming address (ensureRule).
func (p *Provider) EnsureL4(ctx context.Context, lb *providers.L4Balancer) (*providers.L4Result, error) {
	spec, err := loadBalancerSpec(lb.Spec)
	if err != nil {
		return nil, err
	}
	if err := spec.validateL4(); err != nil {
		return nil, err
	}
	tls, err := tlsPortsOf(lb, spec)
	if err != nil {
		return nil, err
	}
	sc, scheme := scopeOf(spec)
	b := p.tcpBalancer(lb.Cluster, lb.Key, sc, scheme)
	res := &providers.L4Result{Specs: map[string]providers.Spec{}, Refused: map[string]string{}}
	ip, err := b.wantedIP(ctx, spec)
	if err != nil {
		return nil, err
	}
	rules, err := forwardingRules.matching(ctx, p, b.sc, "")
	if err != nil {
		return nil, err
	}
	var ours []*compute.ForwardingRule
	for _, r := range rules {
		if b.owns(r.Description) {
			ours = append(ours, r)
		}
	}
	// Without a reserved address the ports share the IP the first rule
	// got.
	if ip == "" && len(ours) > 0 {
		ip = ours[0].IPAddress
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
		service, rule := b.link("backendServices", bsName), b.portName(kindTCPRule, l.Port)
		proxy, target := b.portName(kindTCPProxy, l.Port), ""
		if tls[l.Port] {
			proxy = b.portName(kindSSLProxy, l.Port)
			target = b.link("targetSslProxies", proxy)
			err = b.ensureSSLProxy(ctx, proxy, rule, service, spec)
		} else {
			target = b.link("targetTcpProxies", proxy)
			err = b.ensureTCPProxy(ctx, proxy, rule, service, spec)
		}
		if err != nil {
			return nil, err
		}
		got, err := b.ensureRule(ctx, kindTCPRule+strconv.Itoa(int(l.Port)), ip, int(l.Port), target)
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
	if err := p.moveBalancer(ctx, b); err != nil {
		return nil, err
	}
	res.Status = providers.BalancerStatus{IP: ip, Details: map[string]string{"scheme": scheme}}
	for _, l := range served {
		res.Status.Details["forwardingRule/"+strconv.Itoa(int(l.Port))] = b.sc.path(p.opts.Project, "forwardingRules", b.portName(kindTCPRule, l.Port))
	}
	return res, nil
}

// tlsPortsOf checks that the spec's TLS ports are TCP ports of lb.
func tlsPortsOf(lb *providers.L4Balancer, spec *LoadBalancerSpec) (map[int32]bool, error) {
	tcp := map[int32]bool{}
	for _, l := range lb.Listeners {
		if l.Protocol == "TCP" {
			tcp[l.Port] = true
		}
	}
	tls := map[int32]bool{}
	for i, port := range spec.TLSPorts {
		if !tcp[port] {
			return nil, providers.Errorf(providers.Invalid, fmt.Sprintf("tlsPorts[%d]", i), "%d is not a TCP port of the load balancer", port)
		}
		tls[port] = true
	}
	return tls, nil
}

// foreignHolder names a forwarding rule that is not the load balancer's
// and listens on ip at port, "" when there is none (or no IP yet).
func foreignHolder(rules []*compute.ForwardingRule, b *balancer, ip string, port int32) string {
	if ip == "" {
		return ""
	}
	for _, r := range rules {
		if b.owns(r.Description) || r.IPAddress != ip {
			continue
		}
		lo, hi, ok := portRange(r.PortRange)
		if ok && lo <= int(port) && int(port) <= hi {
			return r.Name
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
func tcpHealthCheck(b *balancer, name string, bs BackendSpec) *compute.HealthCheck {
	interval := int32(defaultCheckIntervalSec)
	portSpec, port := "USE_SERVING_PORT", int64(0)
	path := ""
	if hc := bs.HealthCheck; hc != nil {
		if hc.CheckIntervalSec != nil {
			interval = *hc.CheckIntervalSec
		}
		if hc.Port != nil {
			portSpec, port = "USE_FIXED_PORT", int64(*hc.Port)
		}
		path = hc.Path
	}
	want := &compute.HealthCheck{
		Name: name, Description: b.description(),
		// The timeout may not exceed the interval.
		CheckIntervalSec: int64(interval), TimeoutSec: int64(min(interval, defaultCheckTimeoutSec)),
	}
	if path != "" {
		want.Type = "HTTP"
		want.HttpHealthCheck = &compute.HTTPHealthCheck{PortSpecification: portSpec, Port: port, RequestPath: path}
	} else {
		want.Type = "TCP"
		want.TcpHealthCheck = &compute.TCPHealthCheck{PortSpecification: portSpec, Port: port}
	}
	return want
}

// ensureTCPProxy keeps a port's target TCP proxy on service with the
// spec's proxy header. A proxy cannot change its service in place (podlb
// does not use setBackendService, which computesim does not serve): when
// the port's backend or header changed, the port's forwarding rule and
// proxy go and the proxy comes back (the rule follows in ensureRule).
func (b *balancer) ensureTCPProxy(ctx context.Context, name, rule, service string, spec *LoadBalancerSpec) error {
	cur, found, err := lookup(ctx, b, tcpProxies, name)
	switch {
	case err != nil:
		return err
	case found && resourcePath(cur.Service) == resourcePath(service) && proxyHeader(cur.ProxyHeader) == proxyHeaderOf(spec):
		return nil
	case found:
		if err := replacing(ctx, b, tcpProxies, name, rule); err != nil {
			return err
		}
	}
	return create(ctx, b, tcpProxies, name, &compute.TargetTcpProxy{Name: name, Description: b.description(), Service: service,
		ProxyHeader: proxyHeaderOf(spec)})
}

// proxyHeaderOf is the proxies' proxyHeader for the spec.
func proxyHeaderOf(spec *LoadBalancerSpec) string {
	if spec.ProxyProtocol {
		return "PROXY_V1"
	}
	return "NONE"
}

// proxyHeader reads a proxy's header, NONE when unset.
func proxyHeader(h string) string {
	if h == "" {
		return "NONE"
	}
	return h
}

// ensureSSLProxy keeps a TLS port's target SSL proxy on service with the
// spec's certificates, replaced in place; a new service or SSL policy
// replaces the proxy as ensureTCPProxy does. A certificate Compute does
// not know is the user's to fix: the error names sslCertificates.
func (b *balancer) ensureSSLProxy(ctx context.Context, name, rule, service string, spec *LoadBalancerSpec) error {
	certs := make([]string, len(spec.SSLCertificates))
	for i, c := range spec.SSLCertificates {
		certs[i] = b.link("sslCertificates", c)
	}
	var policy string
	if spec.SSLPolicy != "" {
		policy = b.link("sslPolicies", spec.SSLPolicy)
	}
	certErr := func(err error) error {
		if providers.ClassOf(err) == providers.NotFound {
			return providers.Errorf(providers.Invalid, "sslCertificates", "%s: a certificate is not in %s: %v", strings.Join(spec.SSLCertificates, ", "), scopeName(b.sc), err)
		}
		return err
	}
	cur, found, err := lookup(ctx, b, sslProxies, name)
	switch {
	case err != nil:
		return err
	case found && resourcePath(cur.Service) == resourcePath(service) && resourcePath(cur.SslPolicy) == resourcePath(policy) &&
		proxyHeader(cur.ProxyHeader) == proxyHeaderOf(spec):
		if samePaths(cur.SslCertificates, certs) {
			return nil
		}
		return certErr(b.p.setSSLProxyCertificates(ctx, name, certs))
	case found:
		if err := replacing(ctx, b, sslProxies, name, rule); err != nil {
			return err
		}
	}
	want := &compute.TargetSslProxy{Name: name, Description: b.description(), Service: service, SslCertificates: certs,
		ProxyHeader: proxyHeaderOf(spec)}
	if policy != "" {
		want.SslPolicy = policy
	}
	return certErr(create(ctx, b, sslProxies, name, want))
}

// replacing deletes a port's forwarding rule, then its proxy, so that the
// proxy can be created anew.
func replacing[T comparable](ctx context.Context, b *balancer, k kind[T], proxy, rule string) error {
	if err := remove(ctx, b, forwardingRules, rule); err != nil {
		return err
	}
	return k.del(ctx, b.p, b.sc, proxy)
}

// sweepPorts deletes the load balancer's forwarding rules (among ours)
// and target TCP and SSL proxies that wanted does not name, rules first.
func (b *balancer) sweepPorts(ctx context.Context, ours []*compute.ForwardingRule, wanted map[string]bool) error {
	for _, r := range ours {
		if !wanted[r.Name] {
			if err := forwardingRules.del(ctx, b.p, b.sc, r.Name); err != nil {
				return err
			}
		}
	}
	if err := sweepProxies(ctx, b, tcpProxies, wanted); err != nil {
		return err
	}
	if b.sc.region != "" {
		return nil // target SSL proxies are global
	}
	return sweepProxies(ctx, b, sslProxies, wanted)
}

// sweepProxies deletes the load balancer's proxies of kind k that wanted
// does not name.
func sweepProxies[T comparable](ctx context.Context, b *balancer, k kind[T], wanted map[string]bool) error {
	proxies, err := k.all(ctx, b.p, b.sc)
	if err != nil {
		return err
	}
	for _, tp := range proxies {
		if name, description := k.about(tp); b.owns(description) && !wanted[name] {
			if err := k.del(ctx, b.p, b.sc, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// DeleteL4 implements providers.L4Balancers: the forwarding rules, the
// target proxies, then the backend services and health checks, each only
// when its description says it is this load balancer's, in the global
// scope and every region this process ensured it in (as DeleteHTTP).
// While backend services still hold the target bindings' NEGs it fails
// Transient.
func (p *Provider) DeleteL4(ctx context.Context, cluster string, key providers.BalancerKey) error {
	return p.deleteEverywhere(ctx, p.tcpBalancer(cluster, key, scope{}, ""))
}

// deleteTCPIn removes everything of a Service's load balancer in its
// scope; backend services that still have backends stay, with their
// health checks, as does what a resource podlb did not create uses.
func (b *balancer) deleteTCPIn(ctx context.Context) (leftovers, error) {
	rules, err := forwardingRules.all(ctx, b.p, b.sc)
	if err != nil {
		return leftovers{}, err
	}
	var ours []*compute.ForwardingRule
	for _, r := range rules {
		if b.owns(r.Description) {
			ours = append(ours, r)
		}
	}
	if err := b.sweepPorts(ctx, ours, nil); err != nil {
		return leftovers{}, err
	}
	return b.sweepBackends(ctx, nil)
}
