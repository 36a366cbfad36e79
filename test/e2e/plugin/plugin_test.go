package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/kubectlplugin"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/manifests"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

var ctx = context.Background()

// kubectlPodlb runs the plugin as `kubectl podlb ARGS` would, with the
// cluster's kubeconfig in KUBECONFIG, and returns what it printed.
func kubectlPodlb(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("KUBECONFIG", kube.Kubeconfig)
	var out, errOut bytes.Buffer
	err := kubectlplugin.Run(ctx, args, genericiooptions.IOStreams{Out: &out, ErrOut: &errOut})
	t.Logf("$ kubectl podlb %s\n%s%s", strings.Join(args, " "), out.String(), errOut.String())
	return out.String(), err
}

// groupName is a target group name unique to the namespace (32 characters
// at most).
func groupName(ns, suffix string) string {
	if len(ns) > 20 {
		ns = ns[len(ns)-20:]
	}
	return strings.Trim(ns, "-") + "-" + suffix
}

func targetGroupsAnnotation(arn string) map[string]string {
	return map[string]string{"podlb.io/aws-target-groups": `{"http": {"arn": "` + arn + `"}}`}
}

// installRBAC gives the controller's service account what manifests/base
// grants it, as `kubectl apply -k manifests/base` would.
func installRBAC(t *testing.T) {
	t.Helper()
	r, err := manifests.ControllerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	c := kube.Client
	for _, create := range []func() error{
		func() error {
			_, err := c.CoreV1().ServiceAccounts(r.ServiceAccount.Namespace).Create(ctx, r.ServiceAccount, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().ClusterRoles().Create(ctx, r.ClusterRole, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().ClusterRoleBindings().Create(ctx, r.ClusterRoleBinding, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().Roles(r.Role.Namespace).Create(ctx, r.Role, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := c.RbacV1().RoleBindings(r.RoleBinding.Namespace).Create(ctx, r.RoleBinding, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// fields are the whitespace-separated cells of the first line of out
// that starts with prefix.
func fields(out, prefix string) []string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return strings.Fields(l)
		}
	}
	return nil
}

// requireContains checks that out contains each want, with runs of
// spaces (table alignment) read as one.
func requireContains(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(squeeze(out), squeeze(w)) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func squeeze(s string) string {
	return regexp.MustCompile(` +`).ReplaceAllString(s, " ")
}

// A gated Deployment behind an annotated Service converges; status,
// explain and check then tell the user so, from what podlb wrote.
func TestPluginOnAConvergedService(t *testing.T) {
	cluster.Require(t)
	installRBAC(t)
	ns := kube.Namespace(t)
	arn, _ := e2eutil.TargetGroupBehindNLB(t, sim, groupName(ns, "web"))
	k8s.Create(t, e2eutil.WebService(ns, "web", targetGroupsAnnotation(arn)), e2eutil.RollingDeployment(ns, "web", 3, true))

	var group string
	e2eutil.Eventually(t, 60*time.Second, "3 gated pods Ready and the status healthy", func() error {
		st := k8s.Status(t, ns, "web")
		if st == nil || st.Bindings["aws"]["80"] == nil || st.Bindings["aws"]["80"].Healthy != 3 {
			return fmt.Errorf("status %s", k8s.StatusJSON(t, ns, "web"))
		}
		group = st.Bindings["aws"]["80"].Group
		pods := k8s.LivePods(t, ns, "web")
		if len(pods) != 3 {
			return fmt.Errorf("%d pods", len(pods))
		}
		for _, p := range pods {
			if !e2eutil.IsReady(&p) {
				return fmt.Errorf("pod %s not Ready", p.Name)
			}
		}
		return nil
	})
	if !strings.Contains(group, groupName(ns, "web")) {
		t.Fatalf("status group %q does not name the target group %s", group, groupName(ns, "web"))
	}

	out, err := kubectlPodlb(t, "-n", ns, "status", "svc/web")
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, out, "service "+ns+"/web\n", "HEALTHY", "arn="+arn)
	if got, want := strings.Join(fields(out, "aws"), " "), "aws 80 "+group+" no 3 3 3 0 -"; got != want {
		t.Errorf("status row %q, want %q", got, want)
	}

	pod := k8s.LivePods(t, ns, "web")[0]
	out, err = kubectlPodlb(t, "-n", ns, "explain", "pod/"+pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, out, "is listed in readinessGates", "condition:   True  reason "+readiness.ReasonReady, "waiting for: nothing: the gate is open")
	if got, want := strings.Join(fields(out, "web "), " "), "web aws 80 "+group+" "+pod.Status.PodIP+":8080 no"; got != want {
		t.Errorf("explain row %q, want %q", got, want)
	}

	out, err = kubectlPodlb(t, "-n", ns, "check")
	if err != nil {
		t.Errorf("check of a converged namespace: %v", err)
	}
	requireContains(t, out, "ok controller", "leads (lease podlb-system/podlb-controller-leader",
		"has all", "3 of 3 pods list readinessGates", "no problems found")
}

// A gated pod behind a group no load balancer uses waits, and explain says
// for what; a pod without the gate makes check fail and is named.
func TestPluginExplainsAWaitingGateAndCheckFindsAPodWithoutIt(t *testing.T) {
	cluster.Require(t)
	installRBAC(t)
	ns := kube.Namespace(t)
	idle, err := emuclient.TargetGroup(ctx, sim, groupName(ns, "idle"), nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := emuclient.TargetGroup(ctx, sim, groupName(ns, "plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k8s.Create(t, e2eutil.WebService(ns, "idle", targetGroupsAnnotation(idle)), e2eutil.RollingDeployment(ns, "idle", 1, true))
	k8s.Create(t, e2eutil.WebService(ns, "plain", targetGroupsAnnotation(plain)), e2eutil.RollingDeployment(ns, "plain", 1, false))

	var idlePod, plainPod corev1.Pod
	e2eutil.Eventually(t, 60*time.Second, "the idle pod held by an unused group, the plain pod running", func() error {
		ps := k8s.LivePods(t, ns, "idle")
		if len(ps) != 1 {
			return fmt.Errorf("%d idle pods", len(ps))
		}
		if g := e2eutil.GateOf(&ps[0]); g == nil || g.Reason != readiness.ReasonUnused {
			return fmt.Errorf("idle pod gate %+v", g)
		}
		idlePod = ps[0]
		ps = k8s.LivePods(t, ns, "plain")
		if len(ps) != 1 || ps[0].Status.PodIP == "" {
			return fmt.Errorf("plain pods %d", len(ps))
		}
		plainPod = ps[0]
		return nil
	})

	out, err := kubectlPodlb(t, "-n", ns, "explain", idlePod.Name)
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, out, "condition:   False  reason "+readiness.ReasonUnused,
		"waiting for: a load balancer to use the group", "idle aws 80")

	// The Warning podlb raised about the unused group shows in status.
	e2eutil.Eventually(t, 15*time.Second, "status shows the TargetGroupUnused Warning", func() error {
		out, err := kubectlPodlb(t, "-n", ns, "status", "service/idle")
		if err != nil {
			return err
		}
		if _, events, ok := strings.Cut(out, "Recent Warning Events:"); !ok || !strings.Contains(events, " TargetGroupUnused ") {
			return fmt.Errorf("no TargetGroupUnused Warning in the status output")
		}
		return nil
	})

	out, err = kubectlPodlb(t, "-n", ns, "explain", "pod/"+plainPod.Name)
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, out, "gate:        not gated", "waiting for: nothing: the pod does not list the gate")

	out, err = kubectlPodlb(t, "-n", ns, "check")
	var failed kubectlplugin.ChecksFailed
	if !errors.As(err, &failed) || failed.Problems != 1 {
		t.Errorf("check with one ungated pod: error %v, want 1 problem", err)
	}
	requireContains(t, out, "PROBLEM service "+ns+"/plain  1 of 1 pods lack readinessGates", plainPod.Name, "1 problem found")
	if strings.Contains(squeeze(out), "PROBLEM service "+ns+"/idle ") {
		t.Errorf("check blames the gated idle pod:\n%s", out)
	}
}

// Two Services of type LoadBalancer share one Network Load Balancer that
// podlb provisions; the later one asks for a port the first holds. status
// shows each one's address, listeners, the taken port and bindings,
// explain finds both behind the pod, and check names the taken port.
func TestPluginOnLoadBalancerServices(t *testing.T) {
	cluster.Require(t)
	installRBAC(t)
	ns := kube.Namespace(t)
	var subnets []string
	for _, s := range e2eutil.ALBSubnets {
		subnets = append(subnets, `"`+s.ID+`"`)
	}
	// The group's settings come from its first member's annotation: it
	// names both Services' ports with a drain time the pods' preStop
	// covers; both carry it.
	annotation := func() map[string]string {
		return map[string]string{loadbalancers.AWSAnnotation: `{"subnets": [` + strings.Join(subnets, ", ") + `], "group": "` + groupName(ns, "nlb") +
			`", "backends": {"web:80": {"deregistrationDelaySeconds": 1}, "late:8081": {"deregistrationDelaySeconds": 1}}}`}
	}
	// The Services first: the pods' gates then wait for their groups.
	k8s.Create(t, e2eutil.LoadBalancerService(ns, "web", "web", annotation(), e2eutil.ServicePort("tcp", 80, corev1.ProtocolTCP)))
	// After web in the group's order, whenever podlb sees them.
	late := e2eutil.LoadBalancerService(ns, "late", "web", annotation(),
		e2eutil.ServicePort("taken", 80, corev1.ProtocolTCP), e2eutil.ServicePort("admin", 8081, corev1.ProtocolTCP))
	late.Annotations[loadbalancers.GroupOrderAnnotation] = "1"
	k8s.Create(t, late)
	k8s.Create(t, e2eutil.RollingDeployment(ns, "web", 2, true))

	var hostname, webGroup, lateGroup string
	e2eutil.Eventually(t, 90*time.Second, "web served on 80, late on 8081 with 80 refused, gates True", func() error {
		web, late := k8s.ServiceLoadBalancerStatus(t, ns, "web"), k8s.ServiceLoadBalancerStatus(t, ns, "late")
		if web == nil || late == nil || web.Clouds["aws"] == nil || late.Clouds["aws"] == nil {
			return fmt.Errorf("status web %+v, late %+v", web, late)
		}
		w, l := web.Clouds["aws"], late.Clouds["aws"]
		if b := w.Ports["80"]; b == nil || b.Healthy != 2 {
			return fmt.Errorf("web port 80: %+v", b)
		}
		if b := l.Ports["8081"]; b == nil || b.Healthy != 2 {
			return fmt.Errorf("late port 8081: %+v", b)
		}
		if !slices.ContainsFunc(late.Problems, func(p string) bool { return strings.Contains(p, "port 80 is taken") }) {
			return fmt.Errorf("late's port 80 not refused: %v", late.Problems)
		}
		svc := k8s.GetService(t, ns, "web")
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].Hostname == "" || ing[0].Hostname != w.Hostname {
			return fmt.Errorf("web status.loadBalancer.ingress %+v, status hostname %q", ing, w.Hostname)
		}
		for _, p := range k8s.LivePods(t, ns, "web") {
			if !e2eutil.IsReady(&p) {
				return fmt.Errorf("pod %s not Ready", p.Name)
			}
		}
		hostname, webGroup, lateGroup = w.Hostname, w.Ports["80"].Group, l.Ports["8081"].Group
		return nil
	})

	out, err := kubectlPodlb(t, "-n", ns, "status", "svc/web")
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, out, "service "+ns+"/web\n", "type LoadBalancer, class "+loadbalancers.LoadBalancerClass,
		"balancer: "+groupName(ns, "nlb")+"\n", "address: "+hostname+" (status.loadBalancer.ingress)")
	if got, want := strings.Join(fields(out, "aws    "+hostname), " "), "aws "+hostname+" 80/TCP 0 ok"; got != want {
		t.Errorf("load balancer row %q, want %q", got, want)
	}
	if got, want := strings.Join(fields(out, "aws    80 "), " "), "aws 80 "+webGroup+" yes 2 2 2 0 -"; got != want {
		t.Errorf("binding row %q, want %q", got, want)
	}

	out, err = kubectlPodlb(t, "-n", ns, "status", "service/late")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(fields(out, "aws    "+hostname), " "), "aws "+hostname+" 8081/TCP 0 ok"; got != want {
		t.Errorf("load balancer row %q, want %q", got, want)
	}
	requireContains(t, out, "Problems:\n  spec.ports[0]: port 80 is taken on load balancer "+groupName(ns, "nlb")+" by Service "+ns+"/web")
	if strings.Contains(squeeze(out), "aws 80 ") {
		t.Errorf("late shows a binding for the refused port 80:\n%s", out)
	}

	pod := k8s.LivePods(t, ns, "web")[0]
	out, err = kubectlPodlb(t, "-n", ns, "explain", "pod/"+pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	requireContains(t, out, "condition:   True  reason "+readiness.ReasonReady, "Services podlb acts on selecting the pod:")
	for svc, row := range map[string]string{
		"late ": "late aws 8081 " + lateGroup + " " + pod.Status.PodIP + ":8080 no",
		"web ":  "web aws 80 " + webGroup + " " + pod.Status.PodIP + ":8080 no",
	} {
		if got := strings.Join(fields(out, svc), " "); got != row {
			t.Errorf("explain row %q, want %q", got, row)
		}
	}

	out, err = kubectlPodlb(t, "-n", ns, "check")
	var failed kubectlplugin.ChecksFailed
	if !errors.As(err, &failed) || failed.Problems != 1 {
		t.Errorf("check with one port taken: error %v, want 1 problem", err)
	}
	requireContains(t, out, "PROBLEM service "+ns+"/late  spec.ports[0]: port 80 is taken",
		"ok service "+ns+"/web  load balancer "+groupName(ns, "nlb")+" at "+hostname, "1 problem found")
}
