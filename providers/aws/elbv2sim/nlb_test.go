package elbv2sim_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// udpBackend answers each datagram with "name:payload" on a loopback
// address, and accepts TCP on the same port for health checks (and greets
// like backend, for TCP_UDP).
type udpBackend struct {
	*backend
	pc net.PacketConn
}

func startUDPBackend(t *testing.T, name string) *udpBackend {
	t.Helper()
	b := startBackend(t, name)
	pc, err := net.ListenPacket("udp", net.JoinHostPort(b.ip, strconv.Itoa(int(b.port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name+":"+string(buf[:n])), from)
		}
	}()
	return &udpBackend{backend: b, pc: pc}
}

// udpAsk sends payload from conn and returns the reply ("" on timeout).
func udpAsk(t *testing.T, conn *net.UDPConn, payload string) string {
	t.Helper()
	if _, err := conn.Write([]byte(payload)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func udpClient(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// nlb creates a network load balancer in the default subnets and waits
// until it is active.
func nlb(t *testing.T, c *elbv2.Client, subnets ...string) string {
	t.Helper()
	out, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(uniq("nlb")),
		Type: types.LoadBalancerTypeEnumNetwork, Subnets: subnets})
	if err != nil {
		t.Fatal(err)
	}
	arn := *out.LoadBalancers[0].LoadBalancerArn
	waitActive(t, c, arn)
	return arn
}

func listen(c *elbv2.Client, lbArn string, proto types.ProtocolEnum, port int32, tgArn string, certs ...string) (string, error) {
	in := &elbv2.CreateListenerInput{LoadBalancerArn: aws.String(lbArn), Protocol: proto, Port: aws.Int32(port),
		DefaultActions: []types.Action{forwardTo(tgArn)}}
	for _, cert := range certs {
		in.Certificates = append(in.Certificates, types.Certificate{CertificateArn: aws.String(cert)})
	}
	out, err := c.CreateListener(ctx, in)
	if err != nil {
		return "", err
	}
	return *out.Listeners[0].ListenerArn, nil
}

func mustListen(t *testing.T, c *elbv2.Client, lbArn string, proto types.ProtocolEnum, port int32, tgArn string, certs ...string) string {
	t.Helper()
	arn, err := listen(c, lbArn, proto, port, tgArn, certs...)
	if err != nil {
		t.Fatalf("CreateListener %s:%d: %v", proto, port, err)
	}
	return arn
}

func TestNetworkLoadBalancerProvisionsThenTurnsActive(t *testing.T) {
	o := fast()
	o.RegistrationDelay = 0
	o.ProvisioningDelay = 400 * time.Millisecond
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(2)})
	out, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("edge"), Type: types.LoadBalancerTypeEnumNetwork})
	if err != nil {
		t.Fatal(err)
	}
	lb := out.LoadBalancers[0]
	if lb.State.Code != types.LoadBalancerStateEnumProvisioning ||
		!strings.HasPrefix(*lb.DNSName, "edge-") || !strings.HasSuffix(*lb.DNSName, ".elb.us-east-1.amazonaws.com") {
		t.Errorf("new NLB: state %s, DNS name %s", lb.State.Code, *lb.DNSName)
	}
	lArn := mustListen(t, c, *lb.LoadBalancerArn, types.ProtocolEnumTcp, 80, *g.TargetGroupArn)
	b := startBackend(t, "a")
	register(t, c, *g.TargetGroupArn, b.target())
	waitState(t, c, *g.TargetGroupArn, b.target(), "healthy", "")
	if got := greet(t, s.ListenerAddr(lArn)); got != "" {
		t.Errorf("a provisioning NLB forwarded a connection to %q", got)
	}
	waitActive(t, c, *lb.LoadBalancerArn)
	if got := greet(t, s.ListenerAddr(lArn)); got != "a" {
		t.Errorf("active NLB: greeting %q", got)
	}
}

func TestNetworkTLSListenerTerminatesTLS(t *testing.T) {
	o := fast()
	o.ProvisioningDelay = -1
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	lbArn := nlb(t, c)
	_, err := listen(c, lbArn, types.ProtocolEnumTls, 443, *g.TargetGroupArn)
	wantCode(t, err, "CertificateNotFound")
	cert := s.IssueCertificate("tcp.example.com")
	_, err = listen(c, lbArn, types.ProtocolEnumTcp, 444, *g.TargetGroupArn, cert)
	wantCode(t, err, "InvalidConfigurationRequest") // certificates only on TLS
	lArn := mustListen(t, c, lbArn, types.ProtocolEnumTls, 443, *g.TargetGroupArn, cert)
	d, err := c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{lArn}})
	if err != nil || d.Listeners[0].SslPolicy == nil || len(d.Listeners[0].Certificates) != 1 {
		t.Fatalf("TLS listener: %+v %v", d, err)
	}

	b := startBackend(t, "plain") // a plain TCP target: it greets in clear text
	register(t, c, *g.TargetGroupArn, b.target())
	waitState(t, c, *g.TargetGroupArn, b.target(), "healthy", "")
	conn, err := tls.Dial("tcp", s.ListenerAddr(lArn), &tls.Config{RootCAs: s.CertificatePool(), ServerName: "tcp.example.com"})
	if err != nil {
		t.Fatalf("TLS handshake with the listener: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || line != "plain\n" {
		t.Fatalf("greeting through TLS: %q %v", line, err)
	}
	fmt.Fprintf(conn, "ping\n")
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Errorf("echo through TLS: %q %v", line, err)
	}
}

func TestNetworkUDPListenerKeepsFlowsAndRepliesToClients(t *testing.T) {
	o := fast()
	o.ProvisioningDelay = -1
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumUdp})
	lbArn := nlb(t, c)
	lArn := mustListen(t, c, lbArn, types.ProtocolEnumUdp, 53, *g.TargetGroupArn)
	a, b := startUDPBackend(t, "a"), startUDPBackend(t, "b")
	register(t, c, *g.TargetGroupArn, a.target(), b.target())
	waitState(t, c, *g.TargetGroupArn, a.target(), "healthy", "")
	waitState(t, c, *g.TargetGroupArn, b.target(), "healthy", "")

	addr := s.ListenerAddr(lArn)
	c1, c2 := udpClient(t, addr), udpClient(t, addr)
	first := udpAsk(t, c1, "1")
	name, _, ok := strings.Cut(first, ":")
	if !ok || (name != "a" && name != "b") {
		t.Fatalf("first reply %q", first)
	}
	for i := range 5 {
		if got := udpAsk(t, c1, strconv.Itoa(i)); got != name+":"+strconv.Itoa(i) {
			t.Errorf("datagram %d of one flow answered %q, want %s", i, got, name)
		}
	}
	other := map[string]string{"a": "b", "b": "a"}[name]
	if got := udpAsk(t, c2, "x"); got != other+":x" {
		t.Errorf("a second client got %q, want the other target %s", got, other)
	}
	// A UDP listener takes no TCP connections.
	if got := greet(t, addr); got != "" {
		t.Errorf("TCP through a UDP listener reached %q", got)
	}
}

func TestNetworkTCPUDPListenerServesBoth(t *testing.T) {
	o := fast()
	o.ProvisioningDelay = -1
	s := start(t, o)
	c := client(s, 1)
	tcpGroup := createTG(t, c, elbv2.CreateTargetGroupInput{})
	g := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumTcpUdp})
	lbArn := nlb(t, c)
	_, err := listen(c, lbArn, types.ProtocolEnumTcpUdp, 53, *tcpGroup.TargetGroupArn)
	wantCode(t, err, "IncompatibleProtocols")
	lArn := mustListen(t, c, lbArn, types.ProtocolEnumTcpUdp, 53, *g.TargetGroupArn)
	a := startUDPBackend(t, "a")
	register(t, c, *g.TargetGroupArn, a.target())
	waitState(t, c, *g.TargetGroupArn, a.target(), "healthy", "")
	if got := greet(t, s.ListenerAddr(lArn)); got != "a" {
		t.Errorf("TCP through TCP_UDP: %q", got)
	}
	if got := udpAsk(t, udpClient(t, s.ListenerAddr(lArn)), "q"); got != "a:q" {
		t.Errorf("UDP through TCP_UDP: %q", got)
	}
}

func TestNetworkListenerPortsAreUnique(t *testing.T) {
	s := start(t, elbv2sim.Options{ProvisioningDelay: -1})
	c := client(s, 1)
	tcp := createTG(t, c, elbv2.CreateTargetGroupInput{})
	udp := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumUdp})
	both := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumTcpUdp})
	lbArn := nlb(t, c)
	mustListen(t, c, lbArn, types.ProtocolEnumTcp, 80, *tcp.TargetGroupArn)
	for _, l := range []struct {
		proto types.ProtocolEnum
		tg    string
	}{{types.ProtocolEnumTcp, *tcp.TargetGroupArn}, {types.ProtocolEnumUdp, *udp.TargetGroupArn}, {types.ProtocolEnumTcpUdp, *both.TargetGroupArn}} {
		_, err := listen(c, lbArn, l.proto, 80, l.tg)
		wantCode(t, err, "DuplicateListener")
	}
	mustListen(t, c, lbArn, types.ProtocolEnumUdp, 81, *udp.TargetGroupArn)
	// Another load balancer may use the same port.
	tcp2 := createTG(t, c, elbv2.CreateTargetGroupInput{})
	mustListen(t, c, nlb(t, c), types.ProtocolEnumTcp, 80, *tcp2.TargetGroupArn)
}

func TestCrossZoneAttribute(t *testing.T) {
	s := start(t, elbv2sim.Options{ProvisioningDelay: -1})
	c := client(s, 1)
	lbArn := nlb(t, c)
	crossZone := func() string {
		t.Helper()
		d, err := c.DescribeLoadBalancerAttributes(ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: aws.String(lbArn)})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range d.Attributes {
			if *a.Key == "load_balancing.cross_zone.enabled" {
				return *a.Value
			}
		}
		return "<missing>"
	}
	if v := crossZone(); v != "false" {
		t.Errorf("default cross-zone %q, want false", v)
	}
	set := func(v string) error {
		_, err := c.ModifyLoadBalancerAttributes(ctx, &elbv2.ModifyLoadBalancerAttributesInput{LoadBalancerArn: aws.String(lbArn),
			Attributes: []types.LoadBalancerAttribute{{Key: aws.String("load_balancing.cross_zone.enabled"), Value: aws.String(v)}}})
		return err
	}
	if err := set("true"); err != nil {
		t.Fatal(err)
	}
	if v := crossZone(); v != "true" {
		t.Errorf("cross-zone %q after enabling", v)
	}
	wantCode(t, set("yes"), "ValidationError")
	if v := crossZone(); v != "true" {
		t.Errorf("a refused change altered cross-zone to %q", v)
	}
}

func TestNetworkLoadBalancerTargetQuotas(t *testing.T) {
	s := start(t, elbv2sim.Options{ProvisioningDelay: -1, RegistrationDelay: time.Minute,
		MaxTargetsPerZone: 3, MaxTargetsPerNetworkLB: 4, MaxRegistrationsPerTarget: 2})
	c := client(s, 1)
	td := func(id string, port int32) types.TargetDescription {
		return types.TargetDescription{Id: aws.String(id), Port: aws.Int32(port)}
	}
	reg := func(tg string, tds ...types.TargetDescription) error {
		_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(tg), Targets: tds})
		return err
	}

	// Two groups of one load balancer share its quotas; 127/8 is zone a,
	// 10.0.0.0/17 zone b.
	g1, g2 := createTG(t, c, elbv2.CreateTargetGroupInput{}), createTG(t, c, elbv2.CreateTargetGroupInput{})
	lb := nlb(t, c)
	mustListen(t, c, lb, types.ProtocolEnumTcp, 80, *g1.TargetGroupArn)
	mustListen(t, c, lb, types.ProtocolEnumTcp, 81, *g2.TargetGroupArn)
	register(t, c, *g1.TargetGroupArn, td("127.0.0.1", 1), td("127.0.0.2", 1))
	register(t, c, *g2.TargetGroupArn, td("127.0.0.1", 1)) // the same target counts again: 3 in zone a
	wantCode(t, reg(*g2.TargetGroupArn, td("127.0.0.3", 1)), "TooManyTargets")
	register(t, c, *g2.TargetGroupArn, td("10.0.0.1", 1)) // zone b: 4 in all
	wantCode(t, reg(*g2.TargetGroupArn, td("10.0.0.2", 1)), "TooManyTargets")
	if n := len(s.Targets(*g2.TargetGroupArn)); n != 2 {
		t.Errorf("refused registrations left %d targets in the group, want 2", n)
	}
	// A group no listener uses is bound by no load balancer.
	free := createTG(t, c, elbv2.CreateTargetGroupInput{})
	register(t, c, *free.TargetGroupArn, td("127.0.0.3", 1), td("127.0.0.4", 1), td("127.0.0.5", 1), td("127.0.0.6", 1))

	// With cross-zone load balancing the per-zone number bounds the whole
	// load balancer: two zones with two targets each are too many.
	g3 := createTG(t, c, elbv2.CreateTargetGroupInput{})
	cross := nlb(t, c)
	if _, err := c.ModifyLoadBalancerAttributes(ctx, &elbv2.ModifyLoadBalancerAttributesInput{LoadBalancerArn: aws.String(cross),
		Attributes: []types.LoadBalancerAttribute{{Key: aws.String("load_balancing.cross_zone.enabled"), Value: aws.String("true")}}}); err != nil {
		t.Fatal(err)
	}
	mustListen(t, c, cross, types.ProtocolEnumTcp, 80, *g3.TargetGroupArn)
	register(t, c, *g3.TargetGroupArn, td("127.0.0.1", 1), td("127.0.0.2", 1), td("10.0.0.1", 1))
	wantCode(t, reg(*g3.TargetGroupArn, td("10.0.0.2", 1)), "TooManyTargets")

	// One IP registered too often across the groups of a load balancer.
	g4, g5 := createTG(t, c, elbv2.CreateTargetGroupInput{}), createTG(t, c, elbv2.CreateTargetGroupInput{})
	lb3 := nlb(t, c)
	mustListen(t, c, lb3, types.ProtocolEnumTcp, 80, *g4.TargetGroupArn)
	mustListen(t, c, lb3, types.ProtocolEnumTcp, 81, *g5.TargetGroupArn)
	register(t, c, *g4.TargetGroupArn, td("10.0.0.9", 1), td("10.0.0.9", 2))
	wantCode(t, reg(*g5.TargetGroupArn, td("10.0.0.9", 1)), "TooManyRegistrationsForTargetId")
}

func TestTargetInAZoneTheLoadBalancerLacksIsNotInUse(t *testing.T) {
	o := fast()
	o.ProvisioningDelay = -1
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(2)})
	lbArn := nlb(t, c, elbv2sim.DefaultSubnetIDs[1]) // zone b only
	lArn := mustListen(t, c, lbArn, types.ProtocolEnumTcp, 80, *g.TargetGroupArn)
	zoneA := startBackend(t, "a") // 127/8: zone a
	register(t, c, *g.TargetGroupArn, zoneA.target())
	elsewhere := types.TargetDescription{Id: aws.String("192.168.7.7"), Port: aws.Int32(80), AvailabilityZone: aws.String("all")}
	register(t, c, *g.TargetGroupArn, elsewhere)
	time.Sleep(200 * time.Millisecond) // long enough to pass checks, if it were checked
	h := healthOf(t, c, *g.TargetGroupArn)
	if got := h[key(zoneA.target())]; got.state != "unused" || got.reason != "Target.NotInUse" {
		t.Errorf("target in zone a: %+v", got)
	}
	if got := h[key(elsewhere)]; got.state == "unused" {
		t.Errorf("target of zone all: %+v", got)
	}
	// It would take the connection below by failing open (and never
	// answer), so it goes first.
	deregister(t, c, *g.TargetGroupArn, elsewhere)
	if got := greet(t, s.ListenerAddr(lArn)); got != "" {
		t.Errorf("a target in a disabled zone got a connection (%q)", got)
	}
}

func TestUnhealthyTargetConnections(t *testing.T) {
	o := fast()
	o.RegistrationDelay = 0
	o.ProvisioningDelay = -1
	o.UnhealthyDrainingInterval = 400 * time.Millisecond
	s := start(t, o)
	c := client(s, 1)

	// setup returns a group whose only target serves traffic on its own
	// port and health checks on hc, which the test closes to fail them.
	setup := func(attrs ...types.TargetGroupAttribute) (tgArn, addr string, b *backend, hc net.Listener) {
		b = startBackend(t, "a")
		hc, err := net.Listen("tcp", net.JoinHostPort(b.ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hc.Close() })
		g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(2),
			HealthCheckPort: aws.String(strconv.Itoa(hc.Addr().(*net.TCPAddr).Port))})
		if len(attrs) > 0 {
			if _, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: g.TargetGroupArn, Attributes: attrs}); err != nil {
				t.Fatal(err)
			}
		}
		lArn := mustListen(t, c, nlb(t, c), types.ProtocolEnumTcp, 80, *g.TargetGroupArn)
		register(t, c, *g.TargetGroupArn, b.target())
		waitState(t, c, *g.TargetGroupArn, b.target(), "healthy", "")
		return *g.TargetGroupArn, s.ListenerAddr(lArn), b, hc
	}
	alive := func(conn net.Conn, r *bufio.Reader) bool {
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(conn, "still\n")
		line, err := r.ReadString('\n')
		return err == nil && line == "still\n"
	}

	t.Run("terminated by default", func(t *testing.T) {
		tg, addr, b, hc := setup()
		conn, r, name := dial(t, addr)
		if name != "a" {
			t.Fatalf("greeting %q", name)
		}
		defer conn.Close()
		hc.Close()
		waitState(t, c, tg, b.target(), "unhealthy", "")
		if alive(conn, r) {
			t.Error("the connection of an unhealthy target stayed open with connection termination on")
		}
	})

	t.Run("unhealthy.draining", func(t *testing.T) {
		tg, addr, b, hc := setup(
			types.TargetGroupAttribute{Key: aws.String("target_health_state.unhealthy.connection_termination.enabled"), Value: aws.String("false")},
			types.TargetGroupAttribute{Key: aws.String("target_health_state.unhealthy.draining_interval_seconds"), Value: aws.String("60")})
		conn, r, name := dial(t, addr)
		if name != "a" {
			t.Fatalf("greeting %q", name)
		}
		defer conn.Close()
		hc.Close()
		waitState(t, c, tg, b.target(), "unhealthy.draining", "Target.FailedHealthChecks")
		if !alive(conn, r) {
			t.Error("the connection closed while its target was unhealthy.draining")
		}
		if got := greet(t, addr); got != "" {
			t.Errorf("an unhealthy.draining target got a new connection (%q)", got)
		}
		waitState(t, c, tg, b.target(), "unhealthy", "Target.FailedHealthChecks")
		if alive(conn, r) {
			t.Error("the connection outlived the draining interval")
		}
	})

	wantCode(t, func() error {
		g := createTG(t, c, elbv2.CreateTargetGroupInput{})
		_, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: g.TargetGroupArn,
			Attributes: []types.TargetGroupAttribute{{Key: aws.String("target_health_state.unhealthy.draining_interval_seconds"), Value: aws.String("360001")}}})
		return err
	}(), "ValidationError")
}

// Connection tells which target each client connection went to, and why
// one the client saw closed without an answer failed; it keeps the last
// Options.ConnectionHistory connections.
func TestConnectionRecordsWhereEachClientWent(t *testing.T) {
	o := fast()
	o.ProvisioningDelay = -1
	o.ConnectionHistory = 2
	s := start(t, o)
	c := client(s, 1)
	b := startBackend(t, "a")
	// Health checks go to hc, which stays open: the target stays healthy
	// after the test stops its traffic port.
	hc, err := net.Listen("tcp", net.JoinHostPort(b.ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthCheckPort: aws.String(strconv.Itoa(hc.Addr().(*net.TCPAddr).Port))})
	addr := s.ListenerAddr(mustListen(t, c, nlb(t, c), types.ProtocolEnumTcp, 80, *g.TargetGroupArn))
	register(t, c, *g.TargetGroupArn, b.target())
	waitState(t, c, *g.TargetGroupArn, b.target(), "healthy", "")
	target := net.JoinHostPort(b.ip, strconv.Itoa(int(b.port)))

	conn, _, name := dial(t, addr)
	if name != "a" {
		t.Fatalf("greeting %q", name)
	}
	first := conn.LocalAddr().String()
	conn.Close()
	if r, ok := s.Connection(first); !ok || r.Target != target || r.DialErr != "" || r.Accepted.IsZero() {
		t.Errorf("answered connection: %+v %v, want forwarded to %s", r, ok, target)
	}

	// refused dials the listener and returns the client's address once
	// the emulator has closed the connection.
	refused := func() string {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("read %d bytes, %v: want the connection closed", n, err)
		}
		return conn.LocalAddr().String()
	}
	b.stop()
	second := refused()
	if r, ok := s.Connection(second); !ok || r.Target != target || !strings.Contains(r.DialErr, "refused") {
		t.Errorf("connection to a target that refuses: %+v %v, want its dial error", r, ok)
	} else {
		t.Log(r)
	}
	refused()
	if r, ok := s.Connection(first); ok {
		t.Errorf("three connections later, the first is still kept with a history of two: %+v", r)
	}
}
