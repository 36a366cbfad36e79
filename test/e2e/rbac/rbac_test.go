package rbac_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/podlb/podlb/internal/controller"
	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

const (
	clusterName = "e2e-rbac"
	gate        = string(targets.GateConditionType)
	// serviceAccountUser is who the controller is in a real installation.
	serviceAccountUser = "system:serviceaccount:" + installNamespace + ":" + serviceAccount
)

var ctx = context.Background()

// installRBAC applies the base's identity and permission objects for
// real, exactly as rendered: what the controller may do below is what an
// installation grants.
func installRBAC(t *testing.T) {
	t.Helper()
	for _, o := range variants[0].render(t) {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			apply(t, o)
		}
	}
}

// impersonated is a client configuration that acts as the controller's
// service account: the API server authorises every request against the
// installed roles, with the account's groups added as for a real token.
func impersonated() *rest.Config {
	cfg := rest.CopyConfig(kube.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: serviceAccountUser}
	return cfg
}

// TestControllerRunsOnGrantedPermissionsOnly runs podlb as its service
// account through a whole lifecycle: a managed target group created,
// registered and gated; a shared group registered into with its ledger
// updated; a rolling update; a Service of type LoadBalancer whose Network
// Load Balancer podlb provisions, writes the address of and deletes; both
// annotated Services deleted and cleaned up through the finalizer,
// including the wait while a listener still uses the managed group. Any
// request the roles do not allow makes the API server
// answer Forbidden, which shows up here as a stuck step or a logged
// denial, and fails the test.
func TestControllerRunsOnGrantedPermissionsOnly(t *testing.T) {
	cluster.Require(t)
	installRBAC(t)
	cfg := impersonated()

	t.Run("denied", func(t *testing.T) { checkDenied(t, cfg) })

	denials := &logRecorder{}
	ctl := startController(t, cfg, denials.logger())
	t.Cleanup(func() {
		if d := denials.matching("forbidden"); t.Failed() && len(d) > 0 {
			t.Logf("requests the API server denied the controller (%d), first:\n%s", len(d), strings.Join(d[:min(len(d), 5)], "\n"))
		}
	})
	ns := kube.Namespace(t)
	admin := kube.Client
	elb := emuclient.ELBv2Client(sim)

	// A shared group made by someone else, already behind an NLB.
	shared := createGroup(t, uniqueName(ns, "shared"))
	sharedLB, _, err := emuclient.NLB(ctx, sim, uniqueName(ns, "shared"), shared)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(sharedLB)})
	})

	managedSpec := `{"http": {"create": {"protocol": "TCP", "healthCheck": {"intervalSeconds": 5, "healthyThreshold": 2}, "deregistrationDelaySeconds": 1}}}`
	sharedSpec := fmt.Sprintf(`{"http": {"name": %q}}`, uniqueName(ns, "shared"))
	for name, spec := range map[string]string{"managed": managedSpec, "shared": sharedSpec} {
		if _, err := admin.CoreV1().Services(ns).Create(ctx, service(ns, name, spec), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	surge, unavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	dep := cluster.NewDeployment(ns, "web", cluster.DeploymentOptions{
		Replicas: 3, Gates: []string{gate}, PreStopSleep: 2 * time.Second, TerminationGracePeriod: 10 * time.Second,
		MaxSurge: &surge, MaxUnavailable: &unavailable,
	})
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// services patch (finalizer, status), configmaps create and update
	// (the shared group's ledger lists registered targets), events create.
	var managed string
	ctl.eventually(t, 60*time.Second, "managed group created, ledgers written, Warning about the unused group", func() error {
		st := status(t, ns, "managed")
		if st == nil || st.Bindings["aws"]["80"] == nil || st.Bindings["aws"]["80"].Details["arn"] == "" {
			return fmt.Errorf("managed status %+v", st)
		}
		managed = st.Bindings["aws"]["80"].Details["arn"]
		for _, name := range []string{"managed", "shared"} {
			svc, err := admin.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !slices.Contains(svc.Finalizers, targets.Finalizer) {
				return fmt.Errorf("Service %s finalizers %v", name, svc.Finalizers)
			}
		}
		ledgers, err := ledgerOf(ns)
		if err != nil {
			return err
		}
		if len(ledgers) != 2 {
			return fmt.Errorf("%d ledger ConfigMaps, want 2", len(ledgers))
		}
		if got := strings.Count(ledgers["shared"].Data["targets"], ":8080"); got != 3 {
			return fmt.Errorf("shared ledger records %d targets, want 3: %q", got, ledgers["shared"].Data["targets"])
		}
		if len(warnings(t, ns, "managed", "used by no load balancer")) == 0 {
			return fmt.Errorf("no Warning event about the unused group yet")
		}
		return nil
	})

	// pods/status patch: with a listener on the managed group, every gate
	// turns True once both groups report the pod healthy.
	managedLB, _, err := emuclient.NLB(ctx, sim, uniqueName(ns, "managed"), managed)
	if err != nil {
		t.Fatal(err)
	}
	ctl.eventually(t, 120*time.Second, "pods healthy in both groups and Ready", func() error {
		return converged(t, ns, "web", 3, managed, shared)
	})

	// A rolling update under the gate: new pods are registered before old
	// ones go, and the rollout only completes through the gate.
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"podlb.io/test-restart":"%d"}}}}}`, time.Now().UnixNano())
	if _, err := admin.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ctl.eventually(t, 180*time.Second, "rollout complete and groups follow", func() error {
		d, err := admin.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != 3 || s.Replicas != 3 || s.AvailableReplicas != 3 {
			return fmt.Errorf("rollout status %+v", s)
		}
		return converged(t, ns, "web", 3, managed, shared)
	})

	// A Service of type LoadBalancer of podlb's class: services patch (its
	// finalizer, podlb.io/status), services/status (the address), events
	// create (LoadBalancerProvisioned), and on deletion the finalizer
	// released after podlb deleted the NLB and its target group.
	provisionLoadBalancer(t, ctl, ns)

	// Deleting the Services: the shared group gets this cluster's targets
	// deregistered; the managed group cannot go while the NLB forwards to
	// it, and podlb holds the finalizer and says so.
	for _, name := range []string{"managed", "shared"} {
		if err := admin.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctl.eventually(t, 60*time.Second, "shared Service released, managed one held with a Warning", func() error {
		if _, err := admin.CoreV1().Services(ns).Get(ctx, "shared", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("shared Service still there: %v", err)
		}
		if active := activeTargets(shared); len(active) != 0 {
			return fmt.Errorf("shared group still has active targets %v", active)
		}
		if len(warnings(t, ns, "managed", "still used by a load balancer")) == 0 {
			return fmt.Errorf("no Warning that the managed group is in use")
		}
		if _, err := admin.CoreV1().Services(ns).Get(ctx, "managed", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("managed Service should wait for its group: %v", err)
		}
		return nil
	})
	if _, err := elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(managedLB)}); err != nil {
		t.Fatal(err)
	}
	ctl.eventually(t, 60*time.Second, "managed group deleted, Service gone, no ledger left", func() error {
		if _, err := elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{managed}}); err == nil {
			return fmt.Errorf("managed group still exists")
		}
		if _, err := admin.CoreV1().Services(ns).Get(ctx, "managed", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("managed Service still there: %v", err)
		}
		ledgers, err := ledgerOf(ns)
		if err != nil {
			return err
		}
		if len(ledgers) != 0 {
			return fmt.Errorf("ledger ConfigMaps left: %v", ledgers)
		}
		return nil
	})

	// The leader lease was taken and renewed under the Role.
	lease, err := admin.CoordinationV1().Leases(installNamespace).Get(ctx, "podlb-controller-leader", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
		t.Errorf("leader lease %+v: %v", lease, err)
	}
	if err := ctl.stop(); err != nil {
		t.Errorf("controller: %v", err)
	}
	if d := denials.matching("forbidden"); len(d) > 0 {
		t.Errorf("the controller was denied %d requests, first:\n%s", len(d), strings.Join(d[:min(len(d), 5)], "\n"))
	}
}

// provisionLoadBalancer runs a Service of type LoadBalancer selecting the
// web pods through podlb's whole lifecycle: provisioned, the pods healthy
// behind it, deleted with nothing left.
func provisionLoadBalancer(t *testing.T, ctl *runningController, ns string) {
	t.Helper()
	admin := kube.Client
	var subnets []string
	for _, s := range e2eutil.ALBSubnets {
		subnets = append(subnets, `"`+s.ID+`"`)
	}
	svc := e2eutil.LoadBalancerService(ns, "edge", "web", map[string]string{loadbalancers.AWSAnnotation: `{"subnets": [` + strings.Join(subnets, ", ") + `]}`},
		e2eutil.ServicePort("tcp", 80, corev1.ProtocolTCP))
	if _, err := admin.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var lbARN, groupARN string
	ctl.eventually(t, 90*time.Second, "edge's NLB provisioned, its address and status written, an Event recorded", func() error {
		svc, err := admin.CoreV1().Services(ns).Get(ctx, "edge", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !slices.Contains(svc.Finalizers, loadbalancers.ServiceFinalizer) {
			return fmt.Errorf("edge finalizers %v", svc.Finalizers)
		}
		st, err := loadbalancers.ServiceStatusOf(svc)
		if err != nil || st.Clouds["aws"] == nil {
			return fmt.Errorf("edge status %+v (%v)", st, err)
		}
		cs := st.Clouds["aws"]
		if b := cs.Ports["80"]; b == nil || b.Healthy != 3 || b.Details["arn"] == "" {
			return fmt.Errorf("edge port 80: %+v, error %q", b, cs.Error)
		}
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].Hostname == "" || ing[0].Hostname != cs.Hostname {
			return fmt.Errorf("edge status.loadBalancer.ingress %+v, want hostname %q", ing, cs.Hostname)
		}
		evs, err := e2eutil.Events(ctx, admin, ns, "edge", "Service")
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(evs, func(e corev1.Event) bool { return e.Reason == "LoadBalancerProvisioned" }) {
			return fmt.Errorf("no LoadBalancerProvisioned Event yet")
		}
		lbARN, groupARN = cs.Details["loadBalancer"], cs.Ports["80"].Details["arn"]
		return nil
	})
	if addr := sim.LoadBalancerAddr(lbARN, 80); addr == "" {
		t.Errorf("the NLB %s serves nothing on port 80", lbARN)
	}

	if err := admin.CoreV1().Services(ns).Delete(ctx, "edge", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	elb := emuclient.ELBv2Client(sim)
	ctl.eventually(t, 60*time.Second, "edge released, its NLB and target group deleted", func() error {
		if _, err := admin.CoreV1().Services(ns).Get(ctx, "edge", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("edge still there: %v", err)
		}
		if _, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{lbARN}}); err == nil {
			return fmt.Errorf("NLB %s still exists", lbARN)
		}
		if _, err := elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{groupARN}}); err == nil {
			return fmt.Errorf("target group %s still exists", groupARN)
		}
		return nil
	})
	evs, err := e2eutil.Events(ctx, admin, ns, "edge", "Service")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e corev1.Event) bool { return e.Reason == "LoadBalancerDeleted" }) {
		t.Errorf("no LoadBalancerDeleted Event on edge: %v", evs)
	}
}

// checkDenied shows the service account cannot do what podlb never needs.
func checkDenied(t *testing.T, cfg *rest.Config) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ns := kube.Namespace(t)
	// Something to try to touch, created by the administrator.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "not-podlbs", Namespace: ns}}
	if _, err := kube.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := service(ns, "victim", `{}`)
	if _, err := kube.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	attempts := map[string]func() error{
		"get a Secret": func() error {
			_, err := c.CoreV1().Secrets(installNamespace).Get(ctx, "anything", metav1.GetOptions{})
			return err
		},
		"list Secrets in all namespaces": func() error {
			_, err := c.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
			return err
		},
		"create a Deployment": func() error {
			_, err := c.AppsV1().Deployments(ns).Create(ctx, cluster.NewDeployment(ns, "intruder", cluster.DeploymentOptions{Replicas: 1}), metav1.CreateOptions{})
			return err
		},
		"delete a Service": func() error {
			return c.CoreV1().Services(ns).Delete(ctx, "victim", metav1.DeleteOptions{})
		},
		"update a Service (patch is all podlb uses)": func() error {
			s, err := kube.Client.CoreV1().Services(ns).Get(ctx, "victim", metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = c.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{})
			return err
		},
		"delete a pod": func() error {
			return c.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		},
		"read a ConfigMap outside podlb-system": func() error {
			_, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "not-podlbs", metav1.GetOptions{})
			return err
		},
		"create a ConfigMap outside podlb-system": func() error {
			_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "planted"}}, metav1.CreateOptions{})
			return err
		},
		"take over another lease": func() error {
			_, err := c.CoordinationV1().Leases(installNamespace).Update(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "someone-else", Namespace: installNamespace}}, metav1.UpdateOptions{})
			return err
		},
	}
	names := make([]string, 0, len(attempts))
	for name := range attempts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := attempts[name](); !apierrors.IsForbidden(err) {
			t.Errorf("%s as %s: want Forbidden, got %v", name, serviceAccountUser, err)
		}
	}
}

// runningController is podlb's controller.Run in this process. It is
// started directly rather than through e2eutil.StartController, which
// creates podlb's namespace with the caller's identity: the service
// account may not create namespaces, and the namespace is the installer's
// job here anyway.
type runningController struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func startController(t *testing.T, cfg *rest.Config, logger logr.Logger) *runningController {
	t.Helper()
	p, err := e2eutil.AWSProvider(ctx, sim, clusterName, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Reflector errors (a list or watch the roles deny) go through klog.
	klog.SetLogger(logger)
	runCtx, cancel := context.WithCancel(context.Background())
	rc := &runningController{cancel: cancel, done: make(chan error, 1)}
	go func() {
		rc.done <- controller.Run(runCtx, controller.Options{
			RestConfig: cfg, ClusterName: clusterName, Namespace: installNamespace,
			LeaderElection: true,
			Timing:         targets.Timing{Poll: 250 * time.Millisecond, Resync: time.Minute, Coalesce: 200 * time.Millisecond, MaxBackoff: 5 * time.Second},
			Providers:      []providers.Provider{p},
			Logger:         logger, SkipNameValidation: true,
		})
	}()
	t.Cleanup(func() { _ = rc.stop() })
	return rc
}

func (rc *runningController) stop() error {
	rc.once.Do(func() {
		rc.cancel()
		select {
		case err := <-rc.done:
			if !errors.Is(err, context.Canceled) {
				rc.err = err
			}
		case <-time.After(30 * time.Second):
			rc.err = errors.New("controller did not stop within 30s")
		}
	})
	return rc.err
}

// eventually is e2eutil.Eventually that also fails at once when the
// controller exits (for instance because it could not start).
func (rc *runningController) eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	e2eutil.Eventually(t, timeout, what, func() error {
		select {
		case err := <-rc.done:
			rc.done <- err
			t.Fatalf("%s: the controller exited: %v", what, err)
		default:
		}
		return cond()
	})
}

// logRecorder keeps the controller's log lines, to find denials that the
// controller retries quietly.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lines = append(r.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (r *logRecorder) matching(substr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if strings.Contains(strings.ToLower(l), substr) {
			out = append(out, l)
		}
	}
	return out
}

// service returns a Service app=web, port 80 "http" -> 8080, bound by
// podlb.io/aws-target-groups.
func service(ns, name, spec string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{"podlb.io/aws-target-groups": spec}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// createGroup makes a target group as a user would before binding it.
func createGroup(t *testing.T, name string) string {
	t.Helper()
	arn, err := emuclient.TargetGroup(ctx, sim, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return arn
}

// uniqueName keeps emulator names (target groups, load balancers: 32
// characters) apart per test namespace.
func uniqueName(ns, suffix string) string {
	n := ns
	if len(n) > 20 {
		n = n[len(n)-20:]
	}
	return strings.Trim(n, "-") + "-" + suffix
}

func status(t *testing.T, ns, name string) *targets.Status {
	t.Helper()
	svc, err := kube.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	st, err := targets.StatusOf(svc)
	if err != nil {
		return nil
	}
	return st
}

func warnings(t *testing.T, ns, svc, substr string) []string {
	t.Helper()
	evs, err := e2eutil.Events(ctx, kube.Client, ns, svc, "Service")
	if err != nil {
		t.Fatal(err)
	}
	return e2eutil.WarningsContaining(evs, substr)
}

// ledgerOf returns the ledger ConfigMaps of a test namespace's bindings,
// by Service name.
func ledgerOf(ns string) (map[string]corev1.ConfigMap, error) {
	list, err := kube.Client.CoreV1().ConfigMaps(installNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]corev1.ConfigMap{}
	for _, cm := range list.Items {
		if cm.Annotations["podlb.io/namespace"] == ns {
			out[cm.Annotations["podlb.io/service"]] = cm
		}
	}
	return out, nil
}

// activeTargets lists the group's targets that are not draining.
func activeTargets(arn string) map[string]string {
	out := map[string]string{}
	for _, tg := range sim.Targets(arn) {
		if tg.State != "draining" {
			out[fmt.Sprintf("%s:%d", tg.ID, tg.Port)] = tg.State
		}
	}
	return out
}

// converged checks that every group's active targets are exactly the live
// pods on port 8080, all healthy, and that every pod's gate is True and
// the pod Ready.
func converged(t *testing.T, ns, app string, want int, groups ...string) error {
	list, err := kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return err
	}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != want {
		return fmt.Errorf("%d live pods, want %d", len(live), want)
	}
	for _, arn := range groups {
		active := activeTargets(arn)
		for _, p := range live {
			if s := active[p.Status.PodIP+":8080"]; s != "healthy" {
				return fmt.Errorf("pod %s is %q in %s", p.Name, s, arn)
			}
		}
		if len(active) != want {
			return fmt.Errorf("%s has %d active targets %v, want %d", arn, len(active), active, want)
		}
	}
	for _, p := range live {
		if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue {
			return fmt.Errorf("pod %s gate %+v", p.Name, g)
		}
		if !e2eutil.IsReady(&p) {
			return fmt.Errorf("pod %s not Ready", p.Name)
		}
	}
	return nil
}
