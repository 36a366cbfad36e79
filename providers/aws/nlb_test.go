package aws

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// l4Server greets every TCP connection with its name and answers every
// UDP datagram with it, on one loopback address and port: a UDP target
// group checks its targets' health over TCP.
type l4Server struct {
	name string
	addr netip.AddrPort
}

func startL4Server(t *testing.T, name string) *l4Server {
	t.Helper()
	n := backendSeq.Add(1)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.77.%d.%d:0", n/250, n%250+1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name), from)
		}
	}()
	return &l4Server{name: name, addr: netip.MustParseAddrPort(ln.Addr().String())}
}

// tcpGreeting is what a TCP connection to addr reads before it closes; ""
// when it cannot connect or reads nothing.
func tcpGreeting(addr string, tlsConfig *tls.Config) string {
	var (
		c   net.Conn
		err error
	)
	d := &net.Dialer{Timeout: time.Second}
	if tlsConfig != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConfig)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// udpAnswer is the reply to one datagram sent to addr; "" without one.
func udpAnswer(addr string) string {
	c, err := net.DialTimeout("udp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	if _, err := c.Write([]byte("?")); err != nil {
		return ""
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

var edgeKey = providers.BalancerKey{Namespace: "shop", Name: "edge"}

func l4Listener(port int32, protocol, svc string) providers.L4Listener {
	return providers.L4Listener{Port: port, Protocol: protocol, Backend: providers.L4Backend{Namespace: "shop", Service: svc, Port: port}}
}

// edgeBalancer serves web on 80/TCP and dns on 53 for TCP and UDP.
func edgeBalancer(spec *LoadBalancerSpec) *providers.L4Balancer {
	return &providers.L4Balancer{Key: edgeKey, Cluster: "test-cluster", Spec: spec, Listeners: []providers.L4Listener{
		l4Listener(53, "TCP", "dns"), l4Listener(53, "UDP", "dns"), l4Listener(80, "TCP", "web"),
	}}
}

func (e *albEnv) ensureL4(lb *providers.L4Balancer) *providers.L4Result {
	e.t.Helper()
	res, err := e.p.EnsureL4(e.ctx, lb)
	if err != nil {
		e.t.Fatalf("EnsureL4: %v", err)
	}
	return res
}

// registerL4 binds each listener's Service port to the group EnsureL4
// returned and registers its server, as the target machinery does.
func (e *albEnv) registerL4(lb *providers.L4Balancer, res *providers.L4Result, servers map[string]*l4Server) {
	e.t.Helper()
	for _, l := range lb.Listeners {
		id := l.Backend.ID()
		srv := servers[id]
		if srv == nil {
			continue
		}
		g, err := e.p.Ensure(e.ctx, &providers.Binding{
			Key:     providers.BindingKey{Namespace: l.Backend.Namespace, Service: l.Backend.Service, Provider: "aws", Port: l.Backend.Port},
			Cluster: "test-cluster", Protocol: l.Protocol, TargetPort: int32(srv.addr.Port()), Spec: res.Specs[id],
		})
		if err != nil {
			e.t.Fatalf("Ensure %s (%s): %v", id, l.Protocol, err)
		}
		target := providers.Target{IP: srv.addr.Addr(), Port: int32(srv.addr.Port())}
		if err := e.p.Apply(e.ctx, g, providers.Plan{Register: []providers.Target{target}}); err != nil {
			e.t.Fatalf("Apply %s: %v", id, err)
		}
	}
}

// nlbArn finds the NLB podlb made for key through the API.
func (e *albEnv) nlbArn(key providers.BalancerKey) string {
	e.t.Helper()
	out, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{NetworkBalancerName("test-cluster", key)}})
	if err != nil {
		e.t.Fatalf("DescribeLoadBalancers: %v", err)
	}
	if out.LoadBalancers[0].Type != types.LoadBalancerTypeEnumNetwork {
		e.t.Fatalf("load balancer of type %s", out.LoadBalancers[0].Type)
	}
	return aws.ToString(out.LoadBalancers[0].LoadBalancerArn)
}

// listenersByPort describes a load balancer's listeners.
func (e *albEnv) listenersByPort(lbArn string) map[int32]types.Listener {
	e.t.Helper()
	out, err := e.c.DescribeListeners(e.ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(lbArn)})
	if err != nil {
		e.t.Fatalf("DescribeListeners: %v", err)
	}
	ls := map[int32]types.Listener{}
	for _, l := range out.Listeners {
		ls[aws.ToInt32(l.Port)] = l
	}
	return ls
}

// waitFor polls ask until it answers want.
func waitFor(t *testing.T, what string, want string, ask func() string) {
	t.Helper()
	var last string
	eventually(t, func() string { return fmt.Sprintf("%s to answer %q (last %q)", what, want, last) }, func() bool {
		last = ask()
		return last == want
	})
}

func TestNLBForwardsRealTCPAndUDPAndEditsPortByPort(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{})
	lb := edgeBalancer(nil)
	res := e.ensureL4(lb)
	if !strings.Contains(res.Status.Hostname, ".elb.us-east-1.amazonaws.com") || res.Status.Details["state"] != "provisioning" || len(res.Refused) != 0 {
		t.Errorf("result right after creation: %+v", res)
	}
	if len(res.Specs) != 2 || res.Specs["shop/dns:53"] == nil || res.Specs["shop/web:80"] == nil {
		t.Fatalf("specs %v, want one per backend", res.Specs)
	}
	e.wantMutations("created", map[string]int64{"CreateLoadBalancer": 1, "CreateTargetGroup": 2, "CreateListener": 2})
	nlbArn := e.nlbArn(edgeKey)
	ls := e.listenersByPort(nlbArn)
	if len(ls) != 2 || ls[53].Protocol != types.ProtocolEnumTcpUdp || ls[80].Protocol != types.ProtocolEnumTcp {
		t.Fatalf("listeners %v, want 53 TCP_UDP and 80 TCP", ls)
	}
	servers := map[string]*l4Server{"shop/dns:53": startL4Server(t, "dns"), "shop/web:80": startL4Server(t, "web")}
	e.registerL4(lb, res, servers)
	at := func(port int32) string { return e.srv.LoadBalancerAddr(nlbArn, port) }
	waitFor(t, "TCP to 80", "web", func() string { return tcpGreeting(at(80), nil) })
	waitFor(t, "TCP to 53", "dns", func() string { return tcpGreeting(at(53), nil) })
	waitFor(t, "UDP to 53", "dns", func() string { return udpAnswer(at(53)) })
	if got := udpAnswer(at(80)); got != "" {
		t.Errorf("UDP to the TCP listener on 80 answered %q", got)
	}

	e.srv.ResetStats()
	res = e.ensureL4(lb)
	e.wantMutations("unchanged", nil)
	if res.Status.Details["state"] != "active" {
		t.Errorf("state %q once traffic flows", res.Status.Details["state"])
	}

	// A new port: one group and one listener, nothing else.
	lb.Listeners = append(lb.Listeners, l4Listener(81, "TCP", "admin"))
	res = e.ensureL4(lb)
	e.wantMutations("port added", map[string]int64{"CreateTargetGroup": 1, "CreateListener": 1})
	servers["shop/admin:81"] = startL4Server(t, "admin")
	e.registerL4(lb, res, servers)
	waitFor(t, "TCP to 81", "admin", func() string { return tcpGreeting(at(81), nil) })
	web80 := aws.ToString(e.listenersByPort(nlbArn)[80].ListenerArn)

	// The port goes again: its listener, then its group.
	lb.Listeners = lb.Listeners[:3]
	e.srv.ResetStats()
	res = e.ensureL4(lb)
	e.wantMutations("port removed", map[string]int64{"DeleteListener": 1, "DeleteTargetGroup": 1})
	if _, ok := res.Specs["shop/admin:81"]; ok || len(res.Specs) != 2 {
		t.Errorf("specs after removing a port: %v", res.Specs)
	}
	if ls := e.listenersByPort(nlbArn); len(ls) != 2 || aws.ToString(ls[80].ListenerArn) != web80 {
		t.Errorf("listeners after removing a port: %v", ls)
	}
	if got := tcpGreeting(at(80), nil); got != "web" {
		t.Errorf("TCP to 80 after another port went: %q", got)
	}

	// 53 stops serving UDP: its listener moves to a new TCP group in one
	// call and the TCP_UDP group goes.
	oldDNS := res.Specs["shop/dns:53"].(*Spec).Balancer.ARN
	lb.Listeners = []providers.L4Listener{lb.Listeners[0], lb.Listeners[2]}
	res = e.ensureL4(lb)
	e.wantMutations("UDP dropped", map[string]int64{"CreateTargetGroup": 1, "ModifyListener": 1, "DeleteTargetGroup": 1})
	if e.srv.Targets(oldDNS) != nil || res.Specs["shop/dns:53"].(*Spec).Balancer.ARN == oldDNS {
		t.Error("the TCP_UDP group outlived its listener's change")
	}
	if e.listenersByPort(nlbArn)[53].Protocol != types.ProtocolEnumTcp {
		t.Error("53 is not TCP")
	}
	e.registerL4(lb, res, servers)
	waitFor(t, "TCP to 53 after the change", "dns", func() string { return tcpGreeting(at(53), nil) })
}

func TestNLBTerminatesTLSOnTheListedPorts(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	cert := e.srv.IssueCertificate("edge.example.com")
	spec, err := e.p.ParseL4Spec(`{"certificateArns": ["` + cert + `"], "tlsPorts": [443], "sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}`)
	if err != nil {
		t.Fatal(err)
	}
	lb := &providers.L4Balancer{Key: edgeKey, Cluster: "test-cluster", Spec: spec, Listeners: []providers.L4Listener{
		l4Listener(443, "TCP", "web"), l4Listener(80, "TCP", "web80"),
	}}
	res := e.ensureL4(lb)
	e.registerL4(lb, res, map[string]*l4Server{"shop/web:443": startL4Server(t, "web-tls"), "shop/web80:80": startL4Server(t, "web-plain")})
	nlbArn := e.nlbArn(edgeKey)
	ls := e.listenersByPort(nlbArn)
	if ls[443].Protocol != types.ProtocolEnumTls || aws.ToString(ls[443].SslPolicy) != "ELBSecurityPolicy-TLS13-1-2-2021-06" || ls[80].Protocol != types.ProtocolEnumTcp {
		t.Fatalf("listeners %v", ls)
	}
	tlsConfig := &tls.Config{ServerName: "edge.example.com", RootCAs: e.srv.CertificatePool()}
	waitFor(t, "TLS to 443", "web-tls", func() string { return tcpGreeting(e.srv.LoadBalancerAddr(nlbArn, 443), tlsConfig) })
	waitFor(t, "TCP to 80", "web-plain", func() string { return tcpGreeting(e.srv.LoadBalancerAddr(nlbArn, 80), nil) })
}

func TestNLBRefusesAPortAUsersListenerHolds(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	lb := edgeBalancer(nil)
	e.ensureL4(lb)
	nlbArn := e.nlbArn(edgeKey)
	users, err := e.c.CreateTargetGroup(e.ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("users-own"), Protocol: types.ProtocolEnumTcp,
		Port: aws.Int32(9000), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp})
	if err != nil {
		t.Fatal(err)
	}
	usersGroup := aws.ToString(users.TargetGroups[0].TargetGroupArn)
	out, err := e.c.CreateListener(e.ctx, &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(nlbArn), Port: aws.Int32(9000),
		Protocol: types.ProtocolEnumTcp, DefaultActions: []types.Action{forwardAction(usersGroup)}})
	if err != nil {
		t.Fatal(err)
	}
	usersListener := aws.ToString(out.Listeners[0].ListenerArn)
	e.srv.ResetStats()

	// The Service asks for 9000 for TCP and UDP: both are refused, naming
	// the listener, and the rest is in place.
	lb.Listeners = append(lb.Listeners, l4Listener(9000, "TCP", "game"), l4Listener(9000, "UDP", "game"))
	res := e.ensureL4(lb)
	for _, k := range []string{"9000/TCP", "9000/UDP"} {
		if !strings.Contains(res.Refused[k], usersListener) {
			t.Errorf("Refused[%s] = %q, want it to name %s", k, res.Refused[k], usersListener)
		}
	}
	if len(res.Refused) != 2 || len(res.Specs) != 2 || res.Specs["shop/game:9000"] != nil {
		t.Errorf("refused %v, specs %v", res.Refused, res.Specs)
	}
	e.wantMutations("port held", nil)
	l := e.listenersByPort(nlbArn)[9000]
	if aws.ToString(l.ListenerArn) != usersListener || !maps.Equal(forwardWeights(l.DefaultActions[0]), map[string]int32{usersGroup: 1}) || l.Protocol != types.ProtocolEnumTcp {
		t.Errorf("the user's listener changed: %+v", l)
	}

	// Nor does dropping the port, or deleting the balancer, touch it.
	lb.Listeners = lb.Listeners[:3]
	e.ensureL4(lb)
	err = e.p.DeleteL4(e.ctx, "test-cluster", edgeKey)
	if !providers.IsUserError(err) || !strings.Contains(err.Error(), "TCP:9000") {
		t.Fatalf("DeleteL4 with a user's listener: %v", err)
	}
	ls := e.listenersByPort(nlbArn)
	if len(ls) != 1 || aws.ToString(ls[9000].ListenerArn) != usersListener {
		t.Errorf("listeners left: %v, want only the user's", ls)
	}
	if e.srv.Targets(usersGroup) == nil {
		t.Error("the user's group was deleted")
	}
}

func TestDeleteL4RemovesWhatPodlbMadeAndNothingElse(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	lb := edgeBalancer(&LoadBalancerSpec{Tags: map[string]string{"team": "edge"}})
	res := e.ensureL4(lb)
	nlbArn := e.nlbArn(edgeKey)
	for _, arn := range []string{nlbArn, res.Specs["shop/web:80"].(*Spec).Balancer.ARN} {
		tags, err := e.p.tags(e.ctx, arn)
		if err != nil || tags["team"] != "edge" || tags[TagBalancerType] != "network" || tags[TagBalancer] != "shop/edge" {
			t.Errorf("%s tags %v %v", arn, tags, err)
		}
	}
	// A second Service balancer, and an Ingress's ALB of the same key:
	// they share nothing with it.
	other := edgeBalancer(nil)
	other.Key = providers.BalancerKey{Namespace: "shop", Name: "other"}
	otherRes := e.ensureL4(other)
	ingress := shopBalancer(nil)
	ingress.Key = edgeKey
	_, albSpecs := e.ensure(ingress)
	for id, s := range otherRes.Specs {
		for _, mine := range res.Specs {
			if s.(*Spec).Balancer.ARN == mine.(*Spec).Balancer.ARN {
				t.Errorf("%s shares a group with the first balancer", id)
			}
		}
	}

	if err := e.p.DeleteL4(e.ctx, "test-cluster", edgeKey); err != nil {
		t.Fatalf("DeleteL4: %v", err)
	}
	if _, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{NetworkBalancerName("test-cluster", edgeKey)}}); err == nil {
		t.Error("load balancer still there")
	}
	for id, s := range res.Specs {
		if e.srv.Targets(s.(*Spec).Balancer.ARN) != nil {
			t.Errorf("group of %s still there", id)
		}
	}
	if err := e.p.DeleteL4(e.ctx, "test-cluster", edgeKey); err != nil {
		t.Errorf("DeleteL4 of what is gone: %v", err)
	}
	for _, specs := range []map[string]providers.Spec{otherRes.Specs, albSpecs} {
		for id, s := range specs {
			if e.srv.Targets(s.(*Spec).Balancer.ARN) == nil {
				t.Errorf("group %s of another balancer deleted", id)
			}
		}
	}
	e.nlbArn(other.Key)
	e.albArn(edgeKey)

	// And the Ingress's deletion leaves the other Service's balancer.
	if err := e.p.DeleteHTTP(e.ctx, "test-cluster", edgeKey); err != nil {
		t.Fatalf("DeleteHTTP: %v", err)
	}
	for id, s := range otherRes.Specs {
		if e.srv.Targets(s.(*Spec).Balancer.ARN) == nil {
			t.Errorf("group %s of the other Service balancer deleted with an ALB", id)
		}
	}
}

func TestNLBBadInputNamesTheField(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	cert := "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-4000-8000-000000000000"
	for _, c := range []struct{ spec, field string }{
		{`{"redirectToHTTPS": true}`, "redirectToHTTPS"},
		{`{"idleTimeoutSeconds": 60}`, "idleTimeoutSeconds"},
		{`{"certificateArns": ["` + cert + `"]}`, "certificateArns"},
		{`{"tlsPorts": [443]}`, "tlsPorts"},
		{`{"sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06"}`, "sslPolicy"},
		{`{"certificateArns": ["` + cert + `"], "tlsPorts": [443, 443]}`, "tlsPorts[1]"},
		{`{"certificateArns": ["` + cert + `"], "tlsPorts": [70000]}`, "tlsPorts[0]"},
		{`{"backends": {"web:80": {"healthCheck": {"path": "/healthz"}}}}`, `backends["web:80"].healthCheck.path`},
		{`{"backends": {"web:80": {"healthCheck": {"protocol": "UDP"}}}}`, `backends["web:80"].healthCheck.protocol`},
		{`{"scheme": "public"}`, "scheme"},
	} {
		_, err := e.p.ParseL4Spec(c.spec)
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != providers.Invalid || pe.Field != c.field {
			t.Errorf("ParseL4Spec(%s): %v, want an invalid error naming %s", c.spec, err, c.field)
		}
	}
	// What an NLB takes is fine, and an ALB refuses tlsPorts.
	if _, err := e.p.ParseL4Spec(`{"backends": {"dns:53": {"healthCheck": {"protocol": "HTTP", "path": "/ready"}, "deregistrationDelaySeconds": 5}}, "subnets": ["subnet-00000000000000001"]}`); err != nil {
		t.Errorf("a valid NLB spec: %v", err)
	}
	var pe *providers.Error
	if _, err := e.p.ParseBalancerSpec(`{"certificateArns": ["` + cert + `"], "tlsPorts": [443]}`); !errors.As(err, &pe) || pe.Field != "tlsPorts" {
		t.Errorf("tlsPorts on an Ingress: %v", err)
	}

	// Checks that need the listeners fail before anything is written.
	for _, c := range []struct{ spec, field string }{
		{`{"certificateArns": ["` + cert + `"], "tlsPorts": [53]}`, "tlsPorts[0]"},
		{`{"certificateArns": ["` + cert + `"], "tlsPorts": [8443]}`, "tlsPorts[0]"},
	} {
		spec, err := e.p.ParseL4Spec(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		e.srv.ResetStats()
		_, err = e.p.EnsureL4(e.ctx, edgeBalancer(spec.(*LoadBalancerSpec)))
		if !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("EnsureL4 with %s: %v, want an error naming %s", c.spec, err, c.field)
		}
		e.wantMutations("bad tlsPorts", nil)
	}

	// The scheme of an existing load balancer cannot change.
	e.ensureL4(edgeBalancer(nil))
	_, err := e.p.EnsureL4(e.ctx, edgeBalancer(&LoadBalancerSpec{Scheme: "internal"}))
	if !errors.As(err, &pe) || pe.Field != "scheme" {
		t.Errorf("scheme change: %v", err)
	}
	// A listener protocol AWS cannot serve is refused, the rest served.
	lb := edgeBalancer(nil)
	lb.Listeners = append(lb.Listeners, l4Listener(3868, "SCTP", "diameter"))
	if res := e.ensureL4(lb); !strings.Contains(res.Refused["3868/SCTP"], "SCTP") || len(res.Specs) != 2 {
		t.Errorf("SCTP: refused %v specs %v", res.Refused, res.Specs)
	}
}

func TestNLBNamesAreShortDistinctAndApartFromALBs(t *testing.T) {
	names := map[string]bool{}
	for _, n := range []string{
		NetworkBalancerName("c", edgeKey), BalancerName("c", edgeKey), NetworkBalancerName("d", edgeKey),
		NetworkGroupName("c", edgeKey, "shop/dns:53", "TCP"), NetworkGroupName("c", edgeKey, "shop/dns:53", "TCP_UDP"),
		NetworkGroupName("c", edgeKey, "shop/web:80", "TCP"), BalancerGroupName("c", edgeKey, "shop/web:80"),
		NetworkGroupName("c", providers.BalancerKey{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("m", 253)}, "shop/"+strings.Repeat("s", 63)+":65535", "TCP_UDP"),
	} {
		if len(n) > 32 || !tgNamePattern.MatchString(n) || names[n] {
			t.Errorf("name %q: too long, malformed or repeated", n)
		}
		names[n] = true
	}
}

// crossZone and proxyProtocol reach the load balancer's and the groups'
// attributes, are changed back when unset, and an ALB refuses both.
func TestNLBCrossZoneAndProxyProtocol(t *testing.T) {
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1})
	lbAttr := func(key string) string {
		out, err := e.c.DescribeLoadBalancerAttributes(e.ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: aws.String(e.nlbArn(edgeKey))})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range out.Attributes {
			if aws.ToString(a.Key) == key {
				return aws.ToString(a.Value)
			}
		}
		return ""
	}
	groupAttrs := func(res *providers.L4Result) []string {
		var vals []string
		for _, id := range sortedKeys(res.Specs) {
			out, err := e.c.DescribeTargetGroupAttributes(e.ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(res.Specs[id].(*Spec).Balancer.ARN)})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range out.Attributes {
				if aws.ToString(a.Key) == proxyProtocolAttribute {
					vals = append(vals, aws.ToString(a.Value))
				}
			}
		}
		return vals
	}
	res := e.ensureL4(edgeBalancer(&LoadBalancerSpec{CrossZone: aws.Bool(true), ProxyProtocol: true}))
	if got := lbAttr(crossZoneAttribute); got != "true" {
		t.Errorf("cross-zone %q, want true", got)
	}
	if got := groupAttrs(res); len(got) == 0 || slices.Contains(got, "false") {
		t.Errorf("proxy protocol of the groups %v, want true on each", got)
	}
	e.srv.ResetStats()
	e.ensureL4(edgeBalancer(&LoadBalancerSpec{CrossZone: aws.Bool(true), ProxyProtocol: true}))
	e.wantMutations("unchanged", nil)

	res = e.ensureL4(edgeBalancer(&LoadBalancerSpec{CrossZone: aws.Bool(false)}))
	if got := lbAttr(crossZoneAttribute); got != "false" {
		t.Errorf("cross-zone %q, want false", got)
	}
	if got := groupAttrs(res); slices.Contains(got, "true") {
		t.Errorf("proxy protocol of the groups %v after it was turned off", got)
	}
	for _, c := range []struct{ spec, field string }{
		{`{"crossZone": true}`, "crossZone"},
		{`{"proxyProtocol": true}`, "proxyProtocol"},
	} {
		var pe *providers.Error
		if _, err := e.p.ParseBalancerSpec(c.spec); !errors.As(err, &pe) || pe.Field != c.field {
			t.Errorf("%s on an Ingress: %v, want an error naming %s", c.spec, err, c.field)
		}
	}
}

// Elastic IPs become the NLB's addresses; one another load balancer holds,
// one the account does not have, and a change after creation are refused
// naming elasticIps.
func TestNLBElasticIPs(t *testing.T) {
	eips := []elbv2sim.ElasticIP{{AllocationID: "eipalloc-0000000000000000a", PublicIP: "203.0.113.10"}, {AllocationID: "eipalloc-0000000000000000b", PublicIP: "203.0.113.11"}}
	e := newALBEnv(t, elbv2sim.Options{ProvisioningDelay: -1, ElasticIPs: eips})
	subnets := elbv2sim.DefaultSubnetIDs
	spec := func(allocs ...string) *LoadBalancerSpec {
		return &LoadBalancerSpec{Subnets: subnets, ElasticIPs: allocs}
	}
	e.ensureL4(edgeBalancer(spec("eipalloc-0000000000000000a", "eipalloc-0000000000000000b")))
	out, err := e.c.DescribeLoadBalancers(e.ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{e.nlbArn(edgeKey)}})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, az := range out.LoadBalancers[0].AvailabilityZones {
		for _, a := range az.LoadBalancerAddresses {
			addrs = append(addrs, aws.ToString(a.IpAddress))
		}
	}
	if slices.Sort(addrs); !slices.Equal(addrs, []string{"203.0.113.10", "203.0.113.11"}) {
		t.Errorf("addresses %v, want the two Elastic IPs", addrs)
	}
	e.ensureL4(edgeBalancer(spec("eipalloc-0000000000000000a", "eipalloc-0000000000000000b")))

	other := edgeBalancer(spec("eipalloc-0000000000000000c", "eipalloc-0000000000000000d"))
	other.Key = providers.BalancerKey{Namespace: "shop", Name: "other"}
	for name, c := range map[string]struct {
		lb   *providers.L4Balancer
		want string
	}{
		"held by another load balancer": {func() *providers.L4Balancer {
			lb := edgeBalancer(spec("eipalloc-0000000000000000b", "eipalloc-0000000000000000a"))
			lb.Key = other.Key
			return lb
		}(), "already associated"},
		"unknown allocation":   {other, "does not exist"},
		"changed after create": {edgeBalancer(spec("eipalloc-0000000000000000b", "eipalloc-0000000000000000d")), "fixes them when it is created"},
	} {
		_, err := e.p.EnsureL4(e.ctx, c.lb)
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != providers.Invalid || pe.Field != "elasticIps" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an invalid error naming elasticIps (%q)", name, err, c.want)
		}
	}
	for _, c := range []string{
		`{"elasticIps": ["eipalloc-0000000000000000a"]}`,
		`{"scheme": "internal", "subnets": ["subnet-00000000000000001"], "elasticIps": ["eipalloc-0000000000000000a"]}`,
		`{"subnets": ["subnet-00000000000000001"], "elasticIps": ["eip-1"]}`,
	} {
		var pe *providers.Error
		if _, err := e.p.ParseL4Spec(c); !errors.As(err, &pe) || !strings.HasPrefix(pe.Field, "elasticIps") {
			t.Errorf("ParseL4Spec(%s): %v, want an error naming elasticIps", c, err)
		}
	}
}
