package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// StartTimeout bounds cluster start-up in RunMain.
const StartTimeout = 2 * time.Minute

// shared holds the clusters RunMain or RunMainClusters started.
var shared atomic.Pointer[[]*Cluster]

// RunMain is a TestMain body: it starts one cluster for the package, runs
// setup (if not nil) and the tests, stops the cluster and exits. Under
// `go test -short` it starts nothing and tests that call Require skip, so
// the package's unit tests still run. Ctrl-C or SIGTERM stop the cluster
// before exiting. If tests fail, the cluster's logs are kept and their
// directory printed.
func RunMain(m *testing.M, opts Options, setup func(*Cluster)) {
	RunMainClusters(m, []Options{opts}, func(cs []*Cluster) {
		if setup != nil {
			setup(cs[0])
		}
	})
}

// RunMainClusters is RunMain for a package whose tests need several
// clusters at once (for instance two clusters sharing one load balancer).
// The clusters start in parallel; each has its own address block, so pod
// IPs, node addresses and node names never collide. setup gets them in
// the order of opts; RequireClusters returns them to tests.
func RunMainClusters(m *testing.M, opts []Options, setup func([]*Cluster)) {
	if !flag.Parsed() {
		flag.Parse()
	}
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "test/cluster: -short: not starting the local control plane; its tests skip")
		os.Exit(m.Run())
	}
	cs, err := startAll(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/cluster: cannot start the local cluster: %v\n", err)
		os.Exit(1)
	}
	shared.Store(&cs)
	stopAll := func() {
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(c.Stop)
		}
		wg.Wait()
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "test/cluster: %v: stopping the local cluster\n", sig)
		stopAll()
		os.Exit(130)
	}()

	if setup != nil {
		setup(cs)
	}
	code := m.Run()
	signal.Stop(signals)
	if code != 0 {
		for _, c := range cs {
			c.opts.KeepDir = true
			fmt.Fprintf(os.Stderr, "test/cluster: tests failed; component logs kept in %s\n", c.Dir)
		}
	}
	stopAll()
	if code != 0 {
		for _, c := range cs {
			_ = os.RemoveAll(filepath.Join(c.Dir, "etcd")) // logs are what matters; etcd data is large
		}
	}
	os.Exit(code)
}

// startAll starts a cluster for each of opts in parallel; on error it stops
// those that started.
func startAll(opts []Options) ([]*Cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	cs := make([]*Cluster, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		if o.Logf == nil && testing.Verbose() {
			prefix := ""
			if len(opts) > 1 {
				prefix = fmt.Sprintf("[%d] ", i)
			}
			o.Logf = func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+prefix+format+"\n", args...)
			}
		}
		wg.Go(func() { cs[i], errs[i] = Start(ctx, o) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range cs {
			if c != nil {
				c.Stop()
			}
		}
		return nil, err
	}
	return cs, nil
}

// Require returns the cluster RunMain started, or skips the test when there
// is none (under -short).
func Require(t testing.TB) *Cluster {
	t.Helper()
	return RequireClusters(t)[0]
}

// RequireClusters returns the clusters RunMainClusters started, or skips
// the test when there are none (under -short).
func RequireClusters(t testing.TB) []*Cluster {
	t.Helper()
	cs := shared.Load()
	if cs == nil {
		t.Skip("needs the local control plane (not started under -short; use RunMain in TestMain)")
	}
	return *cs
}

// Namespace creates a fresh namespace for t and deletes it (and with it
// everything in it) when t ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.ToLower(t.Name())
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, base)
	base = strings.Trim(base, "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	ns, err := c.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: base + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// DeploymentOptions shape NewDeployment.
type DeploymentOptions struct {
	Replicas int32
	// Port is the container port served by the simulated backend (default 8080).
	Port int32
	// Gates are readiness gate condition types, e.g. "podlb.io/load-balancer-ready".
	Gates []string
	// PreStopSleep adds a preStop sleep hook.
	PreStopSleep time.Duration
	// TerminationGracePeriod defaults to 30s.
	TerminationGracePeriod time.Duration
	// MaxSurge and MaxUnavailable of the rolling update (defaults 25%/25%
	// as in Kubernetes when nil).
	MaxSurge, MaxUnavailable *intstr.IntOrString
	// Annotations go on the pod template, e.g. AnnotationReadyAfter.
	Annotations map[string]string
}

// NewDeployment returns a Deployment of simulated web servers labelled
// app=<name>, ready to be created.
func NewDeployment(namespace, name string, o DeploymentOptions) *appsv1.Deployment {
	if o.Port == 0 {
		o.Port = 8080
	}
	labels := map[string]string{"app": name}
	grace := int64(30)
	if o.TerminationGracePeriod > 0 {
		grace = int64(o.TerminationGracePeriod / time.Second)
	}
	container := corev1.Container{
		Name:  "web",
		Image: "podlb.io/sim-web:1",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: o.Port, Protocol: corev1.ProtocolTCP}},
	}
	if o.PreStopSleep > 0 {
		container.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
			Sleep: &corev1.SleepAction{Seconds: int64(o.PreStopSleep / time.Second)},
		}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.Replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: o.Annotations},
				Spec: corev1.PodSpec{
					Containers:                    []corev1.Container{container},
					TerminationGracePeriodSeconds: &grace,
				},
			},
		},
	}
	for _, g := range o.Gates {
		d.Spec.Template.Spec.ReadinessGates = append(d.Spec.Template.Spec.ReadinessGates,
			corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(g)})
	}
	if o.MaxSurge != nil || o.MaxUnavailable != nil {
		d.Spec.Strategy = appsv1.DeploymentStrategy{
			Type:          appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: o.MaxSurge, MaxUnavailable: o.MaxUnavailable},
		}
	}
	return d
}
