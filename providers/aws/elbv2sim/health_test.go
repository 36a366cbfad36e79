package elbv2sim_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// observe polls the target's health until until() holds and returns the
// distinct (state, reason) pairs seen, in order.
func observe(t *testing.T, c *elbv2.Client, tgArn string, td types.TargetDescription, until func(health) bool) []string {
	t.Helper()
	var seen []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h := healthOf(t, c, tgArn)[key(td)]
		s := h.state + "/" + h.reason
		if len(seen) == 0 || seen[len(seen)-1] != s {
			seen = append(seen, s)
		}
		if until(h) {
			return seen
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("timed out; seen %v", seen)
	return nil
}

func TestHealthStateMachineTCP(t *testing.T) {
	o := fast()
	o.RegistrationDelay = 150 * time.Millisecond
	s := start(t, o)
	c := client(s, 1)
	// Thresholds of 10 make the initial-checking phase long enough to see.
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(10), UnhealthyThresholdCount: aws.Int32(3)})
	arn := *g.TargetGroupArn
	createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	b := startBackend(t, "a")

	register(t, c, arn, b.target())
	seen := observe(t, c, arn, b.target(), func(h health) bool { return h.state == "healthy" })
	want := []string{"initial/Elb.RegistrationInProgress", "initial/Elb.InitialHealthChecking", "healthy/"}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("states %v, want %v", seen, want)
	}
	ts := s.Targets(arn)
	if len(ts) != 1 || ts[0].HealthyAt.Sub(ts[0].RegisteredAt) < o.RegistrationDelay {
		t.Errorf("emulator view: %+v", ts)
	}
	first := ts[0].HealthyAt

	// Checks go on after healthy: a stopped backend turns unhealthy.
	port := b.port
	b.stop()
	h := waitState(t, c, arn, b.target(), "unhealthy", "")
	if h.reason != "Target.FailedHealthChecks" || h.desc != "Health checks failed" {
		t.Errorf("stopped backend: %+v", h)
	}
	// And back.
	b.listen(t, port)
	waitState(t, c, arn, b.target(), "healthy", "")
	if !s.Targets(arn)[0].HealthyAt.Equal(first) {
		t.Errorf("HealthyAt should keep the first time healthy")
	}
}

func TestHealthStateMachineHTTP(t *testing.T) {
	s := start(t, fast())
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumHttp, HealthCheckPath: aws.String("/healthz"),
		HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(2),
		Matcher: &types.Matcher{HttpCode: aws.String("200,202")}})
	arn := *g.TargetGroupArn
	createLB(t, c, types.LoadBalancerTypeEnumApplication, types.ProtocolEnumHttp, arn)
	h := startHTTPBackend(t)
	h.status.Store(202)
	register(t, c, arn, h.target())
	waitState(t, c, arn, h.target(), "healthy", "")

	h.status.Store(503)
	got := waitState(t, c, arn, h.target(), "unhealthy", "Target.ResponseCodeMismatch")
	if got.desc != "Health checks failed with these codes: [503]" {
		t.Errorf("description %q", got.desc)
	}
	h.status.Store(200)
	waitState(t, c, arn, h.target(), "healthy", "")
	h.status.Store(201) // outside the list
	waitState(t, c, arn, h.target(), "unhealthy", "Target.ResponseCodeMismatch")

	// A range matcher, and a slow backend timing out.
	if _, err := c.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: aws.String(arn),
		Matcher: &types.Matcher{HttpCode: aws.String("200-399")}}); err != nil {
		t.Fatal(err)
	}
	h.status.Store(302)
	waitState(t, c, arn, h.target(), "healthy", "")
	h.delay.Store(int64(200 * time.Millisecond))
	got = waitState(t, c, arn, h.target(), "unhealthy", "Target.Timeout")
	if got.desc != "Request timed out" {
		t.Errorf("timeout description %q", got.desc)
	}
}

func TestHealthCheckPortAndPath(t *testing.T) {
	s := start(t, fast())
	c := client(s, 1)
	// Traffic on one port, checks on another: only the check port matters.
	check := startHTTPBackend(t)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthCheckProtocol: types.ProtocolEnumHttp,
		HealthCheckPort: aws.String(strconv.Itoa(int(check.port))), HealthyThresholdCount: aws.Int32(2)})
	arn := *g.TargetGroupArn
	createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	td := types.TargetDescription{Id: aws.String(check.ip), Port: aws.Int32(1)} // nothing listens on port 1
	register(t, c, arn, td)
	waitState(t, c, arn, td, "healthy", "")
	out, _ := c.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn)})
	if *out.TargetHealthDescriptions[0].HealthCheckPort != strconv.Itoa(int(check.port)) {
		t.Errorf("HealthCheckPort %s", *out.TargetHealthDescriptions[0].HealthCheckPort)
	}
}

func TestTargetsOutsideLoopbackAreNeverContacted(t *testing.T) {
	o := fast()
	o.HealthCheckTimeout = 20 * time.Millisecond
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, *g.TargetGroupArn)
	td := types.TargetDescription{Id: aws.String("10.0.0.7"), Port: aws.Int32(80)}
	register(t, c, *g.TargetGroupArn, td)
	waitState(t, c, *g.TargetGroupArn, td, "unhealthy", "Target.Timeout")
}

func TestUnusedWithoutListener(t *testing.T) {
	s := start(t, fast())
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(2)})
	arn := *g.TargetGroupArn
	b := startBackend(t, "a")
	register(t, c, arn, b.target())
	time.Sleep(100 * time.Millisecond) // past the registration delay: still unused
	if h := healthOf(t, c, arn)[key(b.target())]; h.state != "unused" || h.reason != "Target.NotInUse" {
		t.Fatalf("no listener: %+v", h)
	}
	_, lArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	// A listener appearing starts the target from initial again.
	if h := healthOf(t, c, arn)[key(b.target())]; h.state != "initial" || h.reason != "Elb.RegistrationInProgress" {
		t.Errorf("listener just created: %+v", h)
	}
	waitState(t, c, arn, b.target(), "healthy", "")
	if _, err := c.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(lArn)}); err != nil {
		t.Fatal(err)
	}
	if h := healthOf(t, c, arn)[key(b.target())]; h.state != "unused" {
		t.Errorf("listener deleted: %+v", h)
	}
}

func TestDataPathRoundRobinNeverInitialOrDraining(t *testing.T) {
	o := fast()
	o.RegistrationDelay = 300 * time.Millisecond
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(2)})
	arn := *g.TargetGroupArn
	_, lArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	addr := s.ListenerAddr(lArn)

	// No targets at all: the connection is closed at once.
	if got := greet(t, addr); got != "" {
		t.Fatalf("empty group answered %q", got)
	}

	a, b := startBackend(t, "a"), startBackend(t, "b")
	register(t, c, arn, a.target())
	// Still registering: no traffic, even though it is the only target.
	if got := greet(t, addr); got != "" {
		t.Fatalf("registering target got a connection (%q)", got)
	}
	waitState(t, c, arn, a.target(), "healthy", "")

	register(t, c, arn, b.target())
	for i := range 20 {
		if h := healthOf(t, c, arn)[key(b.target())]; h.state != "initial" {
			if i < 5 {
				t.Fatalf("b left initial too soon for the test: %+v", h)
			}
			break
		}
		if got := greet(t, addr); got != "a" {
			t.Fatalf("connection %d while b is initial went to %q", i, got)
		}
	}
	waitState(t, c, arn, b.target(), "healthy", "")
	count := map[string]int{}
	for range 10 {
		count[greet(t, addr)]++
	}
	if count["a"] != 5 || count["b"] != 5 {
		t.Errorf("round robin over two healthy targets: %v", count)
	}

	// A greeting's connection leaves the emulator's count once both of
	// its directions are closed, which on a loaded machine comes a while
	// after the client's close; the count asserted while a drains must be
	// the held connection's alone.
	waitFor(t, "the greetings' connections to a closed", func() bool { return s.Targets(arn)[0].Connections == 0 })

	// Draining: existing connections live on, new ones avoid the target.
	var conn net.Conn
	var r interface{ ReadString(byte) (string, error) }
	for range 4 {
		cn, rd, name := dial(t, addr)
		if name == "a" {
			conn, r = cn, rd
			break
		}
		cn.Close()
	}
	if conn == nil {
		t.Fatal("no connection reached a")
	}
	defer conn.Close()
	deregister(t, c, arn, a.target())
	if h := healthOf(t, c, arn)[key(a.target())]; h.state != "draining" || h.reason != "Target.DeregistrationInProgress" {
		t.Fatalf("deregistered: %+v", h)
	}
	for i := range 6 {
		if got := greet(t, addr); got != "b" {
			t.Fatalf("new connection %d went to %q while a drains", i, got)
		}
	}
	fmt.Fprintf(conn, "still here\n")
	if line, err := r.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("existing connection during draining: %q %v", line, err)
	}
	if ts := s.Targets(arn); ts[0].Connections != 1 || ts[0].DrainUntil.IsZero() {
		t.Errorf("emulator view while draining: %+v", ts[0])
	}
	// After the deregistration delay the connection is closed and a is gone.
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Errorf("connection survived the deregistration delay")
	}
	if _, ok := healthOf(t, c, arn)[key(a.target())]; ok {
		t.Errorf("drained target still listed")
	}
}

func TestReRegisterDrainingTarget(t *testing.T) {
	o := fast()
	o.DeregistrationDelay = 5 * time.Second
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(2)})
	arn := *g.TargetGroupArn
	createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	b := startBackend(t, "a")
	register(t, c, arn, b.target())
	waitState(t, c, arn, b.target(), "healthy", "")
	deregister(t, c, arn, b.target())
	waitState(t, c, arn, b.target(), "draining", "")
	deregister(t, c, arn, b.target()) // again: still fine
	register(t, c, arn, b.target())
	if h := healthOf(t, c, arn)[key(b.target())]; h.state != "initial" {
		t.Errorf("re-registered draining target: %+v", h)
	}
	waitState(t, c, arn, b.target(), "healthy", "")
}

func TestFailOpen(t *testing.T) {
	s := start(t, fast())
	c := client(s, 1)
	// Health checks go to a closed port, so every target is unhealthy while
	// its traffic port serves.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthCheckPort: aws.String(strconv.Itoa(closedPort))})
	arn := *g.TargetGroupArn
	_, lArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	register(t, c, arn, a.target(), b.target())
	waitState(t, c, arn, a.target(), "unhealthy", "Target.FailedHealthChecks")
	waitState(t, c, arn, b.target(), "unhealthy", "Target.FailedHealthChecks")
	count := map[string]int{}
	for range 6 {
		count[greet(t, s.ListenerAddr(lArn))]++
	}
	if count["a"] != 3 || count["b"] != 3 {
		t.Errorf("fail open to all unhealthy targets: %v", count)
	}
}

func TestManyTargetsConcurrently(t *testing.T) {
	o := fast()
	// Long enough that no check runs: this exercises the API, not probes.
	o.RegistrationDelay = time.Minute
	o.DeregistrationDelay = 50 * time.Millisecond
	// All targets are in one zone: lift the load balancer's quota so the
	// group's own limit is what is reached.
	o.MaxTargetsPerZone = 2000
	s := start(t, o)
	c := client(s, 3)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	arn := *g.TargetGroupArn
	createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	batch := func(w int) []types.TargetDescription {
		var tds []types.TargetDescription
		for i := range 100 {
			tds = append(tds, types.TargetDescription{Id: aws.String(fmt.Sprintf("127.250.%d.%d", w, i+1)), Port: aws.Int32(9)})
		}
		return tds
	}
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			register(t, c, arn, batch(w)...)
			if h := healthOf(t, c, arn, batch(w)[:3]...); len(h) != 3 || h[key(batch(w)[0])].reason != "Elb.RegistrationInProgress" {
				t.Errorf("worker %d: %+v", w, h)
			}
		})
	}
	wg.Wait()
	if n := len(healthOf(t, c, arn)); n != 1000 {
		t.Fatalf("%d targets", n)
	}
	_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(arn),
		Targets: []types.TargetDescription{{Id: aws.String("127.251.0.1")}}})
	wantCode(t, err, "TooManyTargets")
	st := s.Stats()["RegisterTargets"]
	if st.Targets != 1000 || st.MaxTargets != 100 || st.Calls != 11 || st.Errors != 1 {
		t.Errorf("stats: %+v", st)
	}
	for w := range 10 {
		wg.Go(func() { deregister(t, c, arn, batch(w)...) })
	}
	wg.Wait()
	waitFor(t, "all targets drained", func() bool { return len(s.Targets(arn)) == 0 })
}

func TestNoTrafficDuringInitialHealthChecks(t *testing.T) {
	o := fast()
	o.RegistrationDelay = 0
	o.HealthCheckInterval = time.Second // ten passes needed: seconds in initial
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthyThresholdCount: aws.Int32(10)})
	arn := *g.TargetGroupArn
	_, lArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arn)
	b := startBackend(t, "a")
	register(t, c, arn, b.target())
	waitState(t, c, arn, b.target(), "initial", "Elb.InitialHealthChecking")
	if got := greet(t, s.ListenerAddr(lArn)); got != "" {
		t.Errorf("a target in initial health checks got a connection (%q)", got)
	}
}

// CheckTiming is the timing the checks run with: Options' interval and
// timeout when set, else the group's, and the group's thresholds.
func TestCheckTimingIsWhatTheEmulatorRuns(t *testing.T) {
	in := elbv2.CreateTargetGroupInput{HealthCheckIntervalSeconds: aws.Int32(7), HealthCheckTimeoutSeconds: aws.Int32(5),
		HealthyThresholdCount: aws.Int32(3), UnhealthyThresholdCount: aws.Int32(4)}
	for _, tc := range []struct {
		name string
		o    elbv2sim.Options
		want elbv2sim.CheckTiming
	}{
		{"group's", elbv2sim.Options{}, elbv2sim.CheckTiming{Interval: 7 * time.Second, Timeout: 5 * time.Second, HealthyThreshold: 3, UnhealthyThreshold: 4}},
		{"options'", fast(), elbv2sim.CheckTiming{Interval: fast().HealthCheckInterval, Timeout: fast().HealthCheckTimeout, HealthyThreshold: 3, UnhealthyThreshold: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.o)
			arn := *createTG(t, client(s, 1), in).TargetGroupArn
			if got, ok := s.CheckTiming(arn); !ok || got != tc.want {
				t.Errorf("CheckTiming = %+v %v, want %+v", got, ok, tc.want)
			}
			if got, ok := s.CheckTiming(arn + "x"); ok {
				t.Errorf("CheckTiming of no group = %+v, want false", got)
			}
		})
	}
}
