// Package e2eutil holds what podlb's end-to-end tests share: the controller
// run in-process against the local cluster, cloud clients pointed at the
// emulators (built with internal/emuclient), and waits that fail the test.
package e2eutil

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
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

// StartELBv2Sim starts the ELBv2 emulator as the end-to-end suites use it:
// pods reached on their loopback addresses, health checks every 200 ms,
// a one-second drain and one VPC holding every pod address; mutate
// adjusts the options (registration delay, more VPCs).
func StartELBv2Sim(mutate func(*elbv2sim.Options)) (*elbv2sim.Server, error) {
	o := elbv2sim.Options{
		RegistrationDelay:   2 * time.Second,
		HealthCheckInterval: 200 * time.Millisecond,
		HealthCheckTimeout:  150 * time.Millisecond,
		DeregistrationDelay: time.Second,
		TargetAddr:          cluster.LoopbackAddr,
		VPCs:                []elbv2sim.VPC{{ID: elbv2sim.DefaultVPCID, CIDRs: []string{"10.0.0.0/8"}}},
	}
	if mutate != nil {
		mutate(&o)
	}
	return elbv2sim.Start(o)
}

// AWSProvider builds podlb's AWS provider against the emulator, signing
// with PodlbAWSKey.
func AWSProvider(ctx context.Context, sim *elbv2sim.Server, cluster string, mutate func(*awsprovider.Options)) (providers.Provider, error) {
	o := awsprovider.Options{
		Cluster: cluster, Region: emuclient.AWSRegion, VPCID: elbv2sim.DefaultVPCID,
		ELBv2Endpoint: sim.URL(), EC2Endpoint: sim.URL(),
		Credentials: credentials.NewStaticCredentialsProvider(PodlbAWSKey, "secret", ""),
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

// TargetGroupBehindNLB creates a target group (see emuclient.TargetGroup) behind a
// network load balancer, deleted when the test ends, and returns the
// group's ARN and the listener's address.
func TargetGroupBehindNLB(t testing.TB, sim *elbv2sim.Server, name string) (string, string) {
	t.Helper()
	ctx := context.Background()
	arn, err := emuclient.TargetGroup(ctx, sim, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	lbArn, addr, err := emuclient.NLB(ctx, sim, name, arn)
	if err != nil {
		t.Fatalf("NLB: %v", err)
	}
	t.Cleanup(func() { _ = emuclient.DeleteLoadBalancer(ctx, sim, lbArn) })
	return arn, addr
}

// CoalescedCalls is how many calls a writer makes for changes arriving
// at times ts when it sends a change at once and, after each call, holds
// what arrives for window before the next: a burst costs two calls, and
// changes that trickle in over seconds one for each window they touch.
// Several lists are written to apart (one per zone's NEG): the sum.
func CoalescedCalls(window time.Duration, lists ...[]time.Time) int {
	calls := 0
	for _, ts := range lists {
		ts = append([]time.Time(nil), ts...)
		sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
		var last time.Time
		for i, n := 0, 0; i < len(ts); n++ {
			at := ts[i]
			if n > 0 && at.Before(last.Add(window)) {
				at = last.Add(window)
			}
			calls++
			last = at
			for i < len(ts) && !ts[i].After(at) {
				i++
			}
		}
	}
	return calls
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
