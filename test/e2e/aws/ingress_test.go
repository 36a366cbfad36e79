package aws_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// An Ingress with two hosts and three paths over two gated Deployments:
// requests through the Application Load Balancer reach the right
// Service's pods, a rolling update of both under steady traffic through
// it fails no request, and deleting the Ingress leaves nothing podlb
// created behind.
func TestIngressAWSRoutesRollsAndDeletes(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	class := e2eutil.IngressClass(t, k8s, "podlb-"+ns)
	k8s.Create(t, e2eutil.WebService(ns, "web", nil), e2eutil.RollingDeployment(ns, "web", 4, true),
		e2eutil.WebService(ns, "api", nil), e2eutil.RollingDeployment(ns, "api", 4, true))
	// The load balancer spans every zone with pods: an ALB sends nothing
	// to targets in zones it is not enabled in.
	var ids []string
	for _, s := range ingressSubnets {
		ids = append(ids, `"`+s.ID+`"`)
	}
	subnets := "[" + strings.Join(ids, ", ") + "]"
	k8s.Create(t, e2eutil.Ingress(ns, "front", class, map[string]string{loadbalancers.AWSAnnotation: `{"subnets": ` + subnets + `}`},
		e2eutil.HostRule("shop.example.com", e2eutil.PrefixPath("/api", "api", 80), e2eutil.PrefixPath("/", "web", 80)),
		e2eutil.HostRule("admin.example.com", e2eutil.PrefixPath("/", "api", 80))))

	backends := []string{ns + "/web:80", ns + "/api:80"}
	var albArn, addr string
	groups := map[string]string{}
	ready := func() error {
		ing, st := k8s.GetIngress(t, ns, "front"), k8s.IngressStatus(t, ns, "front")
		if ing == nil || st == nil || st.Clouds["aws"] == nil {
			return fmt.Errorf("no status yet")
		}
		cs := st.Clouds["aws"]
		if cs.Error != "" {
			return fmt.Errorf("aws: %s", cs.Error)
		}
		if got := ing.Status.LoadBalancer.Ingress; len(got) != 1 || got[0].Hostname == "" || got[0].Hostname != cs.Hostname {
			return fmt.Errorf("status.loadBalancer.ingress %+v, annotation hostname %q", got, cs.Hostname)
		}
		for _, id := range backends {
			b := cs.Backends[id]
			if b == nil || b.Desired != 4 || b.Healthy != 4 || b.Error != "" {
				return fmt.Errorf("backend %s: %+v", id, b)
			}
			groups[id] = b.Details["arn"]
		}
		for _, app := range []string{"web", "api"} {
			for _, p := range k8s.LivePods(t, ns, app) {
				if g := e2eutil.GateOf(&p); g == nil || g.Status != corev1.ConditionTrue || !e2eutil.IsReady(&p) {
					return fmt.Errorf("pod %s gate %+v", p.Name, g)
				}
			}
		}
		albArn = cs.Details["loadBalancer"]
		if addr = sim.LoadBalancerAddr(albArn, 80); addr == "" {
			return fmt.Errorf("load balancer %s has no listener on 80", albArn)
		}
		return nil
	}
	e2eutil.Eventually(t, 2*time.Minute, "load balancer provisioned, every backend healthy and every gate True", ready)

	t.Run("routes", func(t *testing.T) {
		for _, c := range []struct{ host, path, app string }{
			{"shop.example.com", "/", "web"},
			{"shop.example.com", "/cart", "web"},
			{"shop.example.com", "/api", "api"},
			{"shop.example.com", "/api/orders", "api"},
			// Prefix matches path elements: /apis is not under /api.
			{"shop.example.com", "/apis", "web"},
			{"admin.example.com", "/", "api"},
			{"admin.example.com", "/users", "api"},
		} {
			for range 5 {
				pod, code, err := getThrough(addr, c.host, c.path)
				if err != nil || code != http.StatusOK || !strings.HasPrefix(pod, c.app+"-") {
					t.Errorf("%s%s: answered by %q (HTTP %d, %v), want a %s pod", c.host, c.path, pod, code, err, c.app)
				}
			}
		}
		if _, code, err := getThrough(addr, "other.example.com", "/"); err != nil || code != http.StatusNotFound {
			t.Errorf("a host no rule names: HTTP %d (%v), want 404", code, err)
		}
		if evs := k8s.AllWarningsOf(t, ns, "front", "Ingress"); len(evs) != 0 {
			t.Errorf("warnings on a valid Ingress: %v", evs)
		}
	})

	t.Run("rollout", func(t *testing.T) {
		shop := loadgen.StartHost(addr, "shop.example.com", 4, 25*time.Millisecond)
		admin := loadgen.StartHost(addr, "admin.example.com", 4, 25*time.Millisecond)
		time.Sleep(time.Second) // a baseline before the rollouts
		k8s.Restart(t, ns, "web")
		k8s.Restart(t, ns, "api")
		k8s.WaitRollout(t, ns, "web", 3*time.Minute)
		k8s.WaitRollout(t, ns, "api", 3*time.Minute)
		e2eutil.Eventually(t, time.Minute, "new pods healthy behind the load balancer", ready)
		time.Sleep(2 * time.Second) // old pods finish their preStop while traffic flows
		for app, res := range map[string]loadgen.Result{"web": shop.Stop(), "api": admin.Stop()} {
			name := map[string]string{"web": "shop (web)", "api": "admin (api)"}[app]
			t.Logf("%s: %d ok, %d failed, answered by %d pods", name, res.OK, res.Failed, len(res.Backends))
			for pod := range res.Backends {
				if !strings.HasPrefix(pod, app+"-") {
					t.Errorf("%s: answered by pod %s", name, pod)
				}
			}
			if res.OK < 200 {
				t.Errorf("%s: only %d requests got through", name, res.OK)
			}
			if res.Failed != 0 {
				t.Errorf("%s: the gated rollouts failed %d requests: %v", name, res.Failed, res.Errors)
			}
		}
	})

	t.Run("deletion", func(t *testing.T) {
		if len(groups) != 2 {
			t.Fatalf("target groups %v", groups)
		}
		if err := k8s.Client.NetworkingV1().Ingresses(ns).Delete(ctx, "front", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e2eutil.Eventually(t, time.Minute, "Ingress released by its finalizer", func() error {
			if ing := k8s.GetIngress(t, ns, "front"); ing != nil {
				return fmt.Errorf("still there, finalizers %v, status %s", ing.Finalizers, ing.Annotations["podlb.io/status"])
			}
			return nil
		})
		c := emuclient.ELBv2Client(sim)
		if _, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{albArn}}); !isAWSNotFound(err, &elbtypes.LoadBalancerNotFoundException{}) {
			t.Errorf("load balancer %s: %v, want it gone", albArn, err)
		}
		for id, arn := range groups {
			if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); !isAWSNotFound(err, &elbtypes.TargetGroupNotFoundException{}) {
				t.Errorf("target group of %s (%s): %v, want it gone", id, arn, err)
			}
		}
		cms, err := k8s.Client.CoreV1().ConfigMaps("podlb-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range cms.Items {
			if cm.Annotations["podlb.io/balancer"] == ns+"/front" {
				t.Errorf("ledger entry %s of the balancer's binding %s:%s left", cm.Name, cm.Annotations["podlb.io/service"], cm.Annotations["podlb.io/port"])
			}
		}
	})
}

// getThrough sends one request for host and path to a load balancer at
// addr and returns the answering pod's name and the status code.
func getThrough(addr, host, path string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", 0, err
	}
	req.Host = host
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(body)), resp.StatusCode, err
}

func isAWSNotFound[E error](err error, target E) bool {
	return err != nil && errors.As(err, &target)
}
