// Package e2eutil holds what podlb's end-to-end tests share: the controller
// run in-process against the local cluster, cloud clients pointed at the
// emulators, a traffic generator that counts failed requests, and waits.
package e2eutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/targets"
)

// Namespace is where the in-process controller keeps its ledger and lease.
const Namespace = "podlb-system"

// Controller is a podlb controller running in this process.
type Controller struct {
	cancel context.CancelFunc
	done   chan error
}

// StartController runs podlb against the cluster until Stop. Each call
// behaves like a fresh process: new caches, new registry, new provider
// state.
func StartController(cfg *rest.Config, o controller.Options) (*Controller, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	_, err = client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	o.RestConfig = cfg
	o.Namespace = Namespace
	o.SkipNameValidation = true
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- controller.Run(ctx, o) }()
	return c, nil
}

// Stop ends the controller and waits for it.
func (c *Controller) Stop() error {
	c.cancel()
	select {
	case err := <-c.done:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-time.After(30 * time.Second):
		return errors.New("controller did not stop within 30s")
	}
}

// AWSCredentials are the static credentials the emulator accepts.
var AWSCredentials = credentials.NewStaticCredentialsProvider("AKIDPODLBTEST", "secret", "")

// ELBv2Client is an unmodified SDK client pointed at the emulator, for test
// setup and checks.
func ELBv2Client(sim *elbv2sim.Server) *elbv2.Client {
	return elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(sim.URL()), Credentials: AWSCredentials})
}

// AWSProvider builds podlb's AWS provider against the emulator.
func AWSProvider(ctx context.Context, sim *elbv2sim.Server, cluster string, mutate func(*awsprovider.Options)) (providers.Provider, error) {
	o := awsprovider.Options{
		Cluster: cluster, Region: "us-east-1", VPCID: elbv2sim.DefaultVPCID,
		ELBv2Endpoint: sim.URL(), EC2Endpoint: sim.URL(), Credentials: AWSCredentials,
		// Tests run many bindings at once; AWS-sized client buckets would
		// make them wait on each other.
		Limits: map[string]providers.Limit{"*": {QPS: 200, Burst: 200}, "RegisterTargets": {QPS: 50, Burst: 50},
			"DeregisterTargets": {QPS: 50, Burst: 50}, "DescribeTargetHealth": {QPS: 200, Burst: 200},
			"DescribeTargetGroups": {QPS: 100, Burst: 100}, "DescribeTargetGroupAttributes": {QPS: 100, Burst: 100},
			"DescribeTags": {QPS: 100, Burst: 100}},
	}
	if mutate != nil {
		mutate(&o)
	}
	return awsprovider.New(ctx, o)
}

// TargetGroup creates a TCP target group of type ip with fast health
// checks and a one-second deregistration delay, as a user would before
// binding it; mutate adjusts the request.
func TargetGroup(ctx context.Context, sim *elbv2sim.Server, name string, mutate func(*elbv2.CreateTargetGroupInput)) (string, error) {
	in := &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(8080),
		VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: elbtypes.TargetTypeEnumIp,
		HealthCheckIntervalSeconds: aws.Int32(5), HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(2),
	}
	if mutate != nil {
		mutate(in)
	}
	c := ELBv2Client(sim)
	out, err := c.CreateTargetGroup(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create target group %s: %w", name, err)
	}
	arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
	_, err = c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(arn),
		Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("1")}}})
	return arn, err
}

// NLB creates a network load balancer with a TCP listener on port 80
// forwarding to the group, and returns the listener's loopback address.
func NLB(ctx context.Context, sim *elbv2sim.Server, name, tgArn string) (lbArn, addr string, err error) {
	c := ELBv2Client(sim)
	lb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String(name), Type: elbtypes.LoadBalancerTypeEnumNetwork})
	if err != nil {
		return "", "", err
	}
	lbArn = aws.ToString(lb.LoadBalancers[0].LoadBalancerArn)
	l, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{
		LoadBalancerArn: aws.String(lbArn), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(tgArn)}},
	})
	if err != nil {
		return lbArn, "", err
	}
	return lbArn, sim.ListenerAddr(aws.ToString(l.Listeners[0].ListenerArn)), nil
}

// TargetGroupBehindNLB creates a target group (see TargetGroup) behind a
// network load balancer, deleted when the test ends, and returns the
// group's ARN and the listener's address.
func TargetGroupBehindNLB(t testing.TB, sim *elbv2sim.Server, name string) (string, string) {
	t.Helper()
	ctx := context.Background()
	arn, err := TargetGroup(ctx, sim, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	lbArn, addr, err := NLB(ctx, sim, name, arn)
	if err != nil {
		t.Fatalf("NLB: %v", err)
	}
	t.Cleanup(func() {
		_, _ = ELBv2Client(sim).DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lbArn)})
	})
	return arn, addr
}

// Eventually polls cond until it returns nil or the timeout passes, then
// fails the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Load sends one HTTP request per new TCP connection to a load balancer
// address at a steady pace and counts what a client would see.
type Load struct {
	addr   string
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    LoadResult
	client *http.Client
}

// LoadResult is what the client saw.
type LoadResult struct {
	OK, Failed int
	// Errors holds the first failures, for messages.
	Errors []string
	// Failures holds the same first failures with the client's address,
	// which the load balancer emulators can explain.
	Failures []Failure
	// Backends counts answers per pod name.
	Backends map[string]int
}

// Failure is one failed request.
type Failure struct {
	At time.Time
	// Local is the client socket's "ip:port" ("" when it never
	// connected): what the load balancer saw as the client.
	Local string
	Err   string
}

// StartLoad starts workers that each send a request every interval.
func StartLoad(addr string, workers int, interval time.Duration) *Load {
	l := &Load{addr: addr, stop: make(chan struct{}), res: LoadResult{Backends: map[string]int{}},
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go l.worker(interval)
	}
	return l
}

func (l *Load) worker(interval time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		backend, local, err := l.once()
		l.mu.Lock()
		if err != nil {
			l.res.Failed++
			if len(l.res.Errors) < 10 {
				now := time.Now()
				l.res.Errors = append(l.res.Errors, now.Format("15:04:05.000 ")+err.Error())
				l.res.Failures = append(l.res.Failures, Failure{At: now, Local: local, Err: err.Error()})
			}
		} else {
			l.res.OK++
			l.res.Backends[backend]++
		}
		l.mu.Unlock()
	}
}

// once sends one request and returns the answering pod's name and the
// client socket's address.
func (l *Load) once() (backend, local string, err error) {
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { local = ci.Conn.LocalAddr().String() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+l.addr+"/", nil)
	if err != nil {
		return "", "", err
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return "", local, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(bufio.NewReader(resp.Body))
	if err != nil {
		return "", local, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", local, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), local, nil
}

// Snapshot returns the counts so far.
func (l *Load) Snapshot() LoadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.Backends = map[string]int{}
	for k, v := range l.res.Backends {
		r.Backends[k] = v
	}
	r.Errors = append([]string(nil), l.res.Errors...)
	r.Failures = append([]Failure(nil), l.res.Failures...)
	return r
}

// Stop ends the load and returns the result.
func (l *Load) Stop() LoadResult {
	close(l.stop)
	l.wg.Wait()
	return l.Snapshot()
}

// Events lists the Events of an object, oldest first.
func Events(ctx context.Context, c kubernetes.Interface, namespace, name, kind string) ([]corev1.Event, error) {
	list, err := c.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + name + ",involvedObject.kind=" + kind,
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].CreationTimestamp.Before(&list.Items[j].CreationTimestamp) })
	return list.Items, nil
}

// WarningsContaining returns the Warning event messages that contain substr.
func WarningsContaining(events []corev1.Event, substr string) []string {
	var out []string
	for _, e := range events {
		if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, substr) {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return out
}

// GateOf returns a pod's podlb gate condition, or nil.
func GateOf(p *corev1.Pod) *corev1.PodCondition {
	return targets.PodCondition(p, targets.GateConditionType)
}

// IsReady reports whether a pod's Ready condition is True.
func IsReady(p *corev1.Pod) bool {
	c := targets.PodCondition(p, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// DebugLogger shows the controller's log when PODLB_E2E_DEBUG is set, for
// finding out why a scenario does not converge.
func DebugLogger() logr.Logger {
	if os.Getenv("PODLB_E2E_DEBUG") == "" {
		return logr.Discard()
	}
	return zap.New(zap.UseDevMode(true), zap.Level(zapcore.Level(-2)))
}
