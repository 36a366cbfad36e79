package aws_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var ctx = context.Background()

const gate = string(targets.GateConditionType)

// createGroup makes a TCP target group of type ip with fast health checks
// and a short deregistration delay, as a user would before binding it.
func createGroup(t *testing.T, name string, mutate func(*elbv2.CreateTargetGroupInput)) string {
	t.Helper()
	in := &elbv2.CreateTargetGroupInput{
		Name: aws.String(name), Protocol: elbtypes.ProtocolEnumTcp, Port: aws.Int32(8080),
		VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: elbtypes.TargetTypeEnumIp,
		HealthCheckIntervalSeconds: aws.Int32(5), HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(2),
	}
	if mutate != nil {
		mutate(in)
	}
	c := e2eutil.ELBv2Client(sim)
	out, err := c.CreateTargetGroup(ctx, in)
	if err != nil {
		t.Fatalf("create target group %s: %v", name, err)
	}
	arn := aws.ToString(out.TargetGroups[0].TargetGroupArn)
	if _, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(arn),
		Attributes: []elbtypes.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("1")}}}); err != nil {
		t.Fatal(err)
	}
	return arn
}

// groupWithNLB creates a group behind a network load balancer and returns
// the group ARN and the listener's address.
func groupWithNLB(t *testing.T, name string) (string, string) {
	t.Helper()
	arn := createGroup(t, name, nil)
	lbArn, addr, err := e2eutil.NLB(ctx, sim, name, arn)
	if err != nil {
		t.Fatalf("NLB: %v", err)
	}
	t.Cleanup(func() {
		_, _ = e2eutil.ELBv2Client(sim).DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(lbArn)})
	})
	return arn, addr
}

// service returns a Service app=<name> with port 80 "http" -> 8080.
func service(ns, name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func byName(spec string) map[string]string {
	return map[string]string{"podlb.io/aws-target-groups": `{"http": ` + spec + `}`}
}

func create[T interface {
	*corev1.Service | *appsv1.Deployment
}](t *testing.T, obj T) {
	t.Helper()
	var err error
	switch o := any(obj).(type) {
	case *corev1.Service:
		_, err = kube.Client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *appsv1.Deployment:
		_, err = kube.Client.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("create: %v", err)
	}
}

func gatedDeployment(ns, name string, replicas int32, gated bool) *appsv1.Deployment {
	surge, unavailable := intstr.FromInt32(2), intstr.FromInt32(0)
	o := cluster.DeploymentOptions{
		Replicas: replicas, PreStopSleep: 2 * time.Second, TerminationGracePeriod: 10 * time.Second,
		MaxSurge: &surge, MaxUnavailable: &unavailable,
	}
	if gated {
		o.Gates = []string{gate}
	}
	return cluster.NewDeployment(ns, name, o)
}

func pods(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	list, err := kube.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// livePods are the pods not being deleted.
func livePods(t *testing.T, ns, app string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods(t, ns, app) {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// activeTargets lists "ip:port" of the group's targets that are not
// draining, as the emulator sees them, with their states.
func activeTargets(arn string) map[string]string {
	out := map[string]string{}
	for _, tg := range sim.Targets(arn) {
		if tg.State != "draining" {
			out[fmt.Sprintf("%s:%d", tg.ID, tg.Port)] = tg.State
		}
	}
	return out
}

// converged checks that the group's active targets are exactly the pods'
// IPs on port 8080, all in state (any non-draining state when empty), and,
// with checkGate, every pod's gate is True and the pod Ready.
func converged(t *testing.T, ns, app, arn string, want int, state string, checkGate bool) error {
	ps := livePods(t, ns, app)
	if len(ps) != want {
		return fmt.Errorf("%d live pods, want %d", len(ps), want)
	}
	active := activeTargets(arn)
	var ips []string
	for _, p := range ps {
		if p.Status.PodIP == "" {
			return fmt.Errorf("pod %s has no IP yet", p.Name)
		}
		key := p.Status.PodIP + ":8080"
		ips = append(ips, key)
		if s, ok := active[key]; !ok || (state != "" && s != state) {
			return fmt.Errorf("pod %s target %s is %q, want %q", p.Name, key, s, state)
		}
		if checkGate {
			if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue {
				return fmt.Errorf("pod %s gate %+v", p.Name, g)
			}
			if !e2eutil.IsReady(&p) {
				return fmt.Errorf("pod %s not Ready", p.Name)
			}
		}
	}
	if len(active) != want {
		var got []string
		for k := range active {
			got = append(got, k)
		}
		sort.Strings(got)
		sort.Strings(ips)
		return fmt.Errorf("group has %d active targets %v, want the pods' %v", len(active), got, ips)
	}
	return nil
}

func waitRollout(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	e2eutil.Eventually(t, timeout, "rollout of "+name, func() error {
		d, err := kube.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.Replicas != want || s.AvailableReplicas != want {
			return fmt.Errorf("status %+v", s)
		}
		return nil
	})
}

// restart triggers a rolling update, as a new image would.
func restart(t *testing.T, ns, name string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"podlb.io/test-restart":"%d"}}}}}`, time.Now().UnixNano())
	if _, err := kube.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := kube.Client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func status(t *testing.T, ns, name string) *targets.Status {
	t.Helper()
	svc, err := kube.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := targets.StatusOf(svc)
	if err != nil {
		return nil
	}
	return st
}

func statusJSON(t *testing.T, ns, name string) string {
	b, _ := json.Marshal(status(t, ns, name))
	return string(b)
}

func warnings(t *testing.T, ns, svc, substr string) []string {
	t.Helper()
	evs, err := e2eutil.Events(ctx, kube.Client, ns, svc, "Service")
	if err != nil {
		t.Fatal(err)
	}
	return e2eutil.WarningsContaining(evs, substr)
}

func allWarnings(t *testing.T, ns, svc string) []corev1.Event {
	t.Helper()
	evs, err := e2eutil.Events(ctx, kube.Client, ns, svc, "Service")
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range evs {
		if e.Type == corev1.EventTypeWarning {
			out = append(out, e)
		}
	}
	return out
}

func uniqueName(ns, suffix string) string {
	n := ns
	if len(n) > 20 {
		n = n[len(n)-20:]
	}
	return strings.Trim(n, "-") + "-" + suffix
}

func callDelta(before, after map[string]elbv2sim.OpStats, op string) elbv2sim.OpStats {
	a, b := after[op], before[op]
	return elbv2sim.OpStats{Calls: a.Calls - b.Calls, Errors: a.Errors - b.Errors, Throttled: a.Throttled - b.Throttled,
		Targets: a.Targets - b.Targets, MaxTargets: a.MaxTargets}
}
