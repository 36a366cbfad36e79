package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
)

const (
	benchNamespace  = "bench"
	podlbNamespace  = "podlb-system"
	gate            = string(targets.GateConditionType)
	servicePortName = "http"
)

// env is one cluster, one emulated cloud and one controller process.
type env struct {
	kube     *cluster.Cluster
	cloud    cloudEnv
	ctrl     *controllerProcess
	watch    *podWatch
	services []string
	zoneOf   map[string]string // node name -> zone
	logDir   string
}

type envOptions struct {
	cloud          string
	nodes          int
	services       int
	timing         cloudTiming
	controllerArgs []string
	controllerEnv  []string
	// section names the scenario in the results table.
	section string
	// cloudLimits applies the cloud's published rate limits to the
	// controller's calls (the emulator throttles like the cloud).
	cloudLimits bool
}

func serviceName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// newEnv starts the cluster and the cloud, builds every Service's group,
// creates the Services and (empty) gated Deployments, then starts the
// controller and waits until it has reconciled every binding.
func newEnv(ctx context.Context, o envOptions) (_ *env, err error) {
	e := &env{zoneOf: map[string]string{}}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	clusterCloud := map[string]string{"aws": "aws", "gcp": "gce"}[o.cloud]
	copts := cluster.Options{Nodes: o.nodes, Cloud: clusterCloud, Zones: zoneNames(o.cloud, *flagZones)}
	if *flagVerbose {
		copts.Logf = logf
	}
	began := time.Now()
	if e.kube, err = cluster.Start(ctx, copts); err != nil {
		return nil, err
	}
	logf("%s: cluster of %d nodes up in %v", o.cloud, o.nodes, time.Since(began).Round(time.Second))
	for _, n := range e.kube.Nodes {
		e.zoneOf[n.Name] = n.Zone
	}
	if e.logDir, err = os.MkdirTemp("", "podlb-bench-"+o.cloud+"-"); err != nil {
		return nil, err
	}
	switch o.cloud {
	case "aws":
		e.cloud, err = newAWSCloud(o.timing)
	case "gcp":
		e.cloud, err = newGCPCloud(ctx, e.kube, o.timing, *flagGCPReadQuota, *flagGCPWrite)
	default:
		err = fmt.Errorf("unknown cloud %q", o.cloud)
	}
	if err != nil {
		return nil, err
	}
	for i := range o.services {
		e.services = append(e.services, serviceName(i))
	}
	began = time.Now()
	annotations, err := e.cloud.createGroups(ctx, e.services)
	if err != nil {
		return nil, err
	}
	logf("%s: %d load balancer groups built in %v", o.cloud, len(e.services), time.Since(began).Round(time.Second))

	for _, ns := range []string{benchNamespace, podlbNamespace} {
		if _, err := e.kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	if e.watch, err = watchPods(ctx, e.kube.Client, benchNamespace); err != nil {
		return nil, err
	}
	err = parallel(e.services, 16, func(svc string) error {
		if _, err := e.kube.Client.CoreV1().Services(benchNamespace).Create(ctx, service(svc, annotations[svc]), metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := e.kube.Client.AppsV1().Deployments(benchNamespace).Create(ctx, deployment(svc, 0), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}

	// From here on the cloud answers with latency and throttles, as a real
	// one would; the fixtures above were built without.
	e.cloud.realistic(true, o.cloudLimits)
	args, cenv := e.controllerArgs()
	args = append(args, o.controllerArgs...)
	cenv = append(cenv, o.controllerEnv...)
	if e.ctrl, err = startController(e.logDir, args, cenv); err != nil {
		return nil, err
	}
	began = time.Now()
	if err := e.waitBindings(ctx, 15*time.Minute); err != nil {
		return nil, err
	}
	results.set(o.section, o.cloud, "controller start: every binding resolved and observed", "%s for %d Services", round(time.Since(began)), len(e.services))
	logf("%s: controller log %s", o.cloud, e.ctrl.LogPath)
	return e, nil
}

// controllerArgs are the flags and environment that point the controller
// at this cluster and cloud.
func (e *env) controllerArgs() ([]string, []string) {
	args, cenv := e.cloud.controllerArgs()
	return append(args, "--cluster-name=bench", "--kubeconfig="+e.kube.Kubeconfig, "--namespace="+podlbNamespace, "--leader-elect=false"), cenv
}

func (e *env) close() {
	if e.ctrl != nil {
		e.ctrl.stop()
	}
	if e.watch != nil {
		e.watch.stop()
	}
	if e.kube != nil {
		e.kube.Stop()
	}
	if e.cloud != nil {
		e.cloud.close()
	}
	if e.logDir != "" {
		logf("controller log kept in %s", filepath.Join(e.logDir, "podlb-controller.log"))
	}
}

func service(name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: servicePortName, Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// podGrace is the bench pods' termination grace period.
const podGrace = 5 * time.Second

// judgedUnhealthy is how long the bench's groups take, by their stated
// health checks (emuclient's: 5 s apart, unhealthy after 2), to call a
// target unhealthy: podlb's FailDelay, after which a killed pod is sent
// nothing and its deregistration's head start ends.
const judgedUnhealthy = 10 * time.Second

// deployment is a gated web Deployment with a safe rolling update: new
// pods surge by 25% and no old pod goes before a new one is Ready.
func deployment(name string, replicas int32) *appsv1.Deployment {
	surge, unavailable := intstr.FromString("25%"), intstr.FromInt32(0)
	return cluster.NewDeployment(benchNamespace, name, cluster.DeploymentOptions{
		Replicas: replicas, Port: 8080, Gates: []string{gate},
		MaxSurge: &surge, MaxUnavailable: &unavailable, TerminationGracePeriod: podGrace,
	})
}

// spread divides total pods over n Services as evenly as possible.
func spread(total, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(total / n)
		if i < total%n {
			out[i]++
		}
	}
	return out
}

// scale sets each Service's Deployment to its replica count.
func (e *env) scale(ctx context.Context, replicas []int32) error {
	idx := make([]int, len(e.services))
	for i := range idx {
		idx[i] = i
	}
	return parallel(idx, 16, func(i int) error {
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas[i])
		_, err := e.kube.Client.AppsV1().Deployments(benchNamespace).Patch(ctx, e.services[i], types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
}

// restart starts a rolling update of every Deployment, as a new image would.
func (e *env) restart(ctx context.Context) error {
	stamp := time.Now().UnixNano()
	return parallel(e.services, 16, func(svc string) error {
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"bench.podlb.io/restart":"%d"}}}}}`, stamp)
		_, err := e.kube.Client.AppsV1().Deployments(benchNamespace).Patch(ctx, svc, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
}

// poll calls cond every interval until it returns nil or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %v: %w", what, timeout, err)
		}
		if time.Since(lastLog) > 30*time.Second {
			logf("  waiting for %s: %v", what, err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// waitBindings waits until the status of every Service shows its binding
// reconciled without error.
func (e *env) waitBindings(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, time.Second, "every binding reconciled", func() error {
		if !e.ctrl.Running() {
			return e.ctrl.Failure("exited")
		}
		list, err := e.kube.Client.CoreV1().Services(benchNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		pending := 0
		var example string
		for i := range list.Items {
			st, err := targets.StatusOf(&list.Items[i])
			var b *targets.BindingStatus
			if err == nil {
				b = st.Bindings[e.cloud.name()]["80"]
			}
			// Group is set once the binding reconciler has resolved the
			// cloud group; the Service reconciler alone leaves it empty.
			if b == nil || b.Group == "" || b.Error != "" {
				pending++
				if example == "" && b != nil {
					example = b.Error
				}
			}
		}
		if pending > 0 {
			return fmt.Errorf("%d of %d Services not reconciled %s", pending, len(list.Items), example)
		}
		return nil
	})
}

// waitDeployments waits until every Deployment has rolled out completely.
func (e *env) waitDeployments(ctx context.Context, timeout time.Duration) error {
	return poll(ctx, timeout, 250*time.Millisecond, "Deployments rolled out", func() error {
		if !e.ctrl.Running() {
			return e.ctrl.Failure("exited")
		}
		list, err := e.kube.Client.AppsV1().Deployments(benchNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		behind := 0
		var example string
		for _, d := range list.Items {
			want, s := *d.Spec.Replicas, d.Status
			if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.Replicas != want || s.AvailableReplicas != want {
				behind++
				if example == "" {
					example = fmt.Sprintf("(%s: want %d, updated %d, total %d, available %d)", d.Name, want, s.UpdatedReplicas, s.Replicas, s.AvailableReplicas)
				}
			}
		}
		if behind > 0 {
			return fmt.Errorf("%d Deployments behind %s", behind, example)
		}
		return nil
	})
}

// waitCloud waits until each Service's group holds exactly want[i] active
// targets, all healthy, and no pod of the bench is terminating any more.
func (e *env) waitCloud(ctx context.Context, timeout time.Duration, want []int32) error {
	return poll(ctx, timeout, 500*time.Millisecond, "cloud groups converged", func() error {
		active, healthy := map[string]int32{}, map[string]int32{}
		for _, t := range e.cloud.targets(e.services) {
			if t.active {
				active[t.service]++
				if !t.healthy.IsZero() && (t.state == "healthy" || t.state == "HEALTHY") {
					healthy[t.service]++
				}
			}
		}
		off := 0
		var example string
		for i, svc := range e.services {
			if active[svc] != want[i] || healthy[svc] != want[i] {
				off++
				if example == "" {
					example = fmt.Sprintf("(%s: %d active, %d healthy, want %d)", svc, active[svc], healthy[svc], want[i])
				}
			}
		}
		if off > 0 {
			return fmt.Errorf("%d groups off %s", off, example)
		}
		if n := e.watch.present(); n != int(sum(want)) {
			return fmt.Errorf("%d pods exist, want %d", n, sum(want))
		}
		return nil
	})
}

func sum(xs []int32) int64 {
	var s int64
	for _, x := range xs {
		s += int64(x)
	}
	return s
}

func pct(part, whole float64) string {
	if whole == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", part/whole)
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}
