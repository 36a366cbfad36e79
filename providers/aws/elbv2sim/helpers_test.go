package elbv2sim_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

var ctx = context.Background()

// fast is the timing most tests use: checks every 10 ms, short registration.
func fast() elbv2sim.Options {
	return elbv2sim.Options{
		RegistrationDelay:   50 * time.Millisecond,
		HealthCheckInterval: 10 * time.Millisecond,
		HealthCheckTimeout:  50 * time.Millisecond,
		DeregistrationDelay: 300 * time.Millisecond,
	}
}

func start(t *testing.T, o elbv2sim.Options) *elbv2sim.Server {
	t.Helper()
	if testing.Verbose() && os.Getenv("ELBV2SIM_LOG") != "" {
		o.Logf = t.Logf
	}
	s, err := elbv2sim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// retryer is the SDK's standard retryer with a short backoff and without
// the client-side retry token bucket, which injected throttling drains.
func retryer(attempts int) func() aws.Retryer {
	return func() aws.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = attempts
			o.RateLimiter = ratelimit.None
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) {
				return 5 * time.Millisecond, nil
			})
		})
	}
}

func client(s *elbv2sim.Server, attempts int) *elbv2.Client {
	return elbv2.New(elbv2.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("a", "b", ""),
		Retryer:      retryer(attempts)(),
	})
}

func ec2Client(s *elbv2sim.Server) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.URL()),
		Credentials:  credentials.NewStaticCredentialsProvider("a", "b", ""),
	})
}

var nameSeq atomic.Int64

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, nameSeq.Add(1))
}

func createTG(t *testing.T, c *elbv2.Client, in elbv2.CreateTargetGroupInput) types.TargetGroup {
	t.Helper()
	if in.Name == nil {
		in.Name = aws.String(uniq("tg"))
	}
	if in.Protocol == "" {
		in.Protocol = types.ProtocolEnumTcp
	}
	if in.Port == nil {
		in.Port = aws.Int32(80)
	}
	if in.VpcId == nil {
		in.VpcId = aws.String(elbv2sim.DefaultVPCID)
	}
	if in.TargetType == "" {
		in.TargetType = types.TargetTypeEnumIp
	}
	out, err := c.CreateTargetGroup(ctx, &in)
	if err != nil {
		t.Fatalf("CreateTargetGroup: %v", err)
	}
	return out.TargetGroups[0]
}

// createLB makes a load balancer with one listener forwarding to tgArn and
// returns the listener's ARN.
func createLB(t *testing.T, c *elbv2.Client, typ types.LoadBalancerTypeEnum, proto types.ProtocolEnum, tgArn string) (lbArn, listenerArn string) {
	t.Helper()
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(uniq("lb")), Type: typ})
	if err != nil {
		t.Fatalf("CreateLoadBalancer: %v", err)
	}
	lbArn = *lb.LoadBalancers[0].LoadBalancerArn
	waitActive(t, c, lbArn)
	l, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{
		LoadBalancerArn: aws.String(lbArn), Protocol: proto, Port: aws.Int32(80),
		DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: aws.String(tgArn)}},
	})
	if err != nil {
		t.Fatalf("CreateListener: %v", err)
	}
	return lbArn, *l.Listeners[0].ListenerArn
}

// waitActive waits until the load balancer leaves state provisioning.
func waitActive(t *testing.T, c *elbv2.Client, lbArn string) {
	t.Helper()
	waitFor(t, "the load balancer to turn active", func() bool {
		d, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{lbArn}})
		return err == nil && d.LoadBalancers[0].State.Code == types.LoadBalancerStateEnumActive
	})
}

// loopbackIP returns a fresh address in 127.0.0.0/8 for a backend.
func loopbackIP() string {
	n := nameSeq.Add(1)
	return fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(100), (n/250)%250+1, n%250+1)
}

// backend is a TCP server on a loopback address that greets each
// connection with its name and then echoes lines.
type backend struct {
	name string
	ip   string
	port int32
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]bool
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name, ip: loopbackIP(), cs: map[net.Conn]bool{}}
	b.listen(t, 0)
	t.Cleanup(b.stop)
	return b
}

func (b *backend) listen(t *testing.T, port int32) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(b.ip, strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	b.ln = ln
	b.port = int32(ln.Addr().(*net.TCPAddr).Port)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.cs[c] = true
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				fmt.Fprintf(c, "%s\n", b.name)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s\n", sc.Text())
				}
			}()
		}
	}()
}

// stop closes the listener and every connection.
func (b *backend) stop() {
	_ = b.ln.Close()
	b.mu.Lock()
	for c := range b.cs {
		_ = c.Close()
	}
	b.cs = map[net.Conn]bool{}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *backend) target() types.TargetDescription {
	return types.TargetDescription{Id: aws.String(b.ip), Port: aws.Int32(b.port)}
}

// httpBackend answers GET with a settable status after a settable delay; the
// body is its IP, and Seen-* headers echo what the load balancer forwarded.
type httpBackend struct {
	ip     string
	port   int32
	status atomic.Int32
	delay  atomic.Int64
	srv    *http.Server
}

func startHTTPBackend(t *testing.T) *httpBackend {
	t.Helper()
	h := &httpBackend{ip: loopbackIP()}
	h.status.Store(200)
	ln, err := net.Listen("tcp", net.JoinHostPort(h.ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	h.port = int32(ln.Addr().(*net.TCPAddr).Port)
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := time.Duration(h.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		// Tell the client who answered and what the load balancer added.
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Port"} {
			w.Header().Set("Seen-"+k, r.Header.Get(k))
		}
		w.Header().Set("Seen-Host", r.Host)
		w.WriteHeader(int(h.status.Load()))
		fmt.Fprint(w, h.ip)
	})}
	go func() { _ = h.srv.Serve(ln) }()
	t.Cleanup(func() { _ = h.srv.Close() })
	return h
}

func (h *httpBackend) target() types.TargetDescription {
	return types.TargetDescription{Id: aws.String(h.ip), Port: aws.Int32(h.port)}
}

// dial connects through a listener and returns the greeting (the backend's
// name), or "" when the connection was closed without one.
func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, ""
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, r, line[:len(line)-1]
}

// greet opens a connection through addr and returns who answered.
func greet(t *testing.T, addr string) string {
	t.Helper()
	c, _, name := dial(t, addr)
	if c != nil {
		c.Close()
	}
	return name
}

type health struct{ state, reason, desc string }

func healthOf(t *testing.T, c *elbv2.Client, tgArn string, targets ...types.TargetDescription) map[string]health {
	t.Helper()
	out, err := c.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(tgArn), Targets: targets})
	if err != nil {
		t.Fatalf("DescribeTargetHealth: %v", err)
	}
	m := map[string]health{}
	for _, d := range out.TargetHealthDescriptions {
		key := fmt.Sprintf("%s:%d", *d.Target.Id, *d.Target.Port)
		m[key] = health{string(d.TargetHealth.State), string(d.TargetHealth.Reason), aws.ToString(d.TargetHealth.Description)}
	}
	return m
}

func key(td types.TargetDescription) string { return fmt.Sprintf("%s:%d", *td.Id, *td.Port) }

// waitState polls until the target reports state (and reason, if given).
func waitState(t *testing.T, c *elbv2.Client, tgArn string, td types.TargetDescription, state, reason string) health {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var h health
	for time.Now().Before(deadline) {
		h = healthOf(t, c, tgArn)[key(td)]
		if h.state == state && (reason == "" || h.reason == reason) {
			return h
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("target %s: want %s/%s, still %+v", key(td), state, reason, h)
	return h
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func register(t *testing.T, c *elbv2.Client, tgArn string, tds ...types.TargetDescription) {
	t.Helper()
	if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(tgArn), Targets: tds}); err != nil {
		t.Fatalf("RegisterTargets: %v", err)
	}
}

func deregister(t *testing.T, c *elbv2.Client, tgArn string, tds ...types.TargetDescription) {
	t.Helper()
	if _, err := c.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(tgArn), Targets: tds}); err != nil {
		t.Fatalf("DeregisterTargets: %v", err)
	}
}
