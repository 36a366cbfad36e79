package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podlb/podlb/internal/loadgen"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
)

const (
	namespace   = "default"
	servicePort = 80
	appPort     = 8080
	gate        = string(targets.GateConditionType)
)

// frontend is how an app's load balancers come to be.
type frontend int

const (
	// frontService: the app's Service is of type LoadBalancer with
	// podlb's class, and podlb provisions a Network Load Balancer (AWS)
	// and a TCP proxy load balancer (GCP) for it.
	frontService frontend = iota
	// frontAnnotations: the sandbox creates the load balancers and binds
	// the Service to them with podlb's target-group / NEG annotations.
	frontAnnotations
	// frontIngress: an Ingress whose Application Load Balancers podlb
	// provisions.
	frontIngress
)

func (f frontend) String() string {
	return [...]string{frontService: "service", frontAnnotations: "annotations", frontIngress: "ingress"}[f]
}

// app is one Deployment behind one Service, with a load balancer per cloud.
type app struct {
	name     string
	gated    bool
	frontend frontend
	// lbs by cloud name.
	lbs map[string]*loadBalancer

	// oldHashes are the pod-template-hash labels of the pods from before
	// the rollout; any other hash is a new pod.
	oldHashes map[string]bool
	triggered time.Time
	rolledOut time.Time // the Deployment reported the rollout complete
	settled   time.Time // every load balancer serves only new pods
}

// loadBalancer is one cloud load balancer in front of an app, with the
// traffic sent through it.
type loadBalancer struct {
	cloud string
	// group is the target group ARN (aws) or backend service name (gcp).
	group string
	// name of the NLB (aws) or TCP proxy load balancer (gcp).
	name string
	addr string
	// published is the address podlb wrote to status.loadBalancer.ingress
	// (a Service of type LoadBalancer), which the emulator serves on addr.
	published string
	// provisioned identifies a load balancer podlb provisioned, to check
	// that it is gone after teardown: its ARN (aws) or forwarding rule
	// name (gcp); "" for the sandbox's own.
	provisioned string
	load        *loadgen.Load
	// final is the traffic result once the load stopped.
	final *loadgen.Result
}

func (lb *loadBalancer) result() loadgen.Result {
	if lb.final != nil {
		return *lb.final
	}
	if lb.load == nil {
		return loadgen.Result{}
	}
	return lb.load.Snapshot()
}

// service is the app's Service: of type LoadBalancer with podlb's class
// and load-balancer annotations (frontService); with podlb's annotations
// for every enabled cloud, a target group podlb creates on AWS and NEGs
// podlb adds to the sandbox's backend service on GCP (frontAnnotations);
// or plain, for the Ingress to name (frontIngress).
func (a *app) service(enabled map[string]bool, t timing) (*corev1.Service, error) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: a.name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": a.name},
			Ports: []corev1.ServicePort{{Name: "http", Port: servicePort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(appPort)}},
		},
	}
	switch a.frontend {
	case frontService:
		class := loadbalancers.LoadBalancerClass
		svc.Spec.Type, svc.Spec.LoadBalancerClass = corev1.ServiceTypeLoadBalancer, &class
		annotations, err := a.loadBalancerAnnotations(enabled, t)
		if err != nil {
			return nil, err
		}
		svc.Annotations = annotations
	case frontAnnotations:
		if enabled["aws"] {
			spec := map[string]any{"http": map[string]any{"create": map[string]any{
				"healthCheck":                awsHealthCheck,
				"deregistrationDelaySeconds": drainSeconds(t),
			}}}
			b, err := json.Marshal(spec)
			if err != nil {
				return nil, err
			}
			svc.Annotations["podlb.io/aws-target-groups"] = string(b)
		}
		if enabled["gcp"] {
			svc.Annotations["podlb.io/gcp-negs"] = fmt.Sprintf(`{"http": {"backendService": %q}}`, a.lbName())
		}
	}
	return svc, nil
}

// awsHealthCheck is the target groups' health check: the emulator runs
// checks every --health-check-interval but keeps AWS's rules, so the
// group records AWS-valid settings.
var awsHealthCheck = map[string]any{"intervalSeconds": 5, "healthyThreshold": 2, "unhealthyThreshold": 2}

// drainSeconds is the deregistration delay (AWS) and draining timeout
// (GCP) in the whole seconds the clouds take, at least one.
func drainSeconds(t timing) int32 {
	return int32(max(t.drain/time.Second, 1))
}

// loadBalancerAnnotations are the podlb.io/aws-load-balancer and
// podlb.io/gcp-load-balancer annotations of the load balancers podlb
// provisions for the app (its Service of type LoadBalancer or its
// Ingress): the sandbox's subnets on AWS, and for the app's port the
// health check and the sandbox's drain time.
func (a *app) loadBalancerAnnotations(enabled map[string]bool, t timing) (map[string]string, error) {
	out := map[string]string{}
	backend := a.name + ":http"
	specs := map[string]any{}
	if enabled["aws"] {
		var subnets []string
		for _, s := range sandboxSubnets {
			subnets = append(subnets, s.ID)
		}
		specs[loadbalancers.AWSAnnotation] = map[string]any{"subnets": subnets, "backends": map[string]any{backend: map[string]any{
			"healthCheck": awsHealthCheck, "deregistrationDelaySeconds": drainSeconds(t),
		}}}
	}
	if enabled["gcp"] {
		specs[loadbalancers.GCPAnnotation] = map[string]any{"backends": map[string]any{backend: map[string]any{"drainingTimeoutSec": drainSeconds(t)}}}
	}
	for k, v := range specs {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		out[k] = string(b)
	}
	return out, nil
}

// lbName names the app's cloud resources.
func (a *app) lbName() string { return "sandbox-" + a.name }

// deployment rolls one pod at a time and never goes below the wanted
// replicas, the setting where a gate matters most: every old pod is removed
// as soon as one new pod is Ready.
func (a *app) deployment(replicas int32, t timing) *appsv1.Deployment {
	surge, unavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	o := cluster.DeploymentOptions{
		Replicas: replicas, Port: appPort,
		// A terminating pod is deregistered at once but the load balancer
		// may still hand it connections until the deregistration lands and
		// while it drains: the pod keeps serving that long.
		PreStopSleep:           t.preStop(),
		TerminationGracePeriod: t.preStop() + 10*time.Second,
		MaxSurge:               &surge, MaxUnavailable: &unavailable,
	}
	if a.gated {
		o.Gates = []string{gate}
	}
	return cluster.NewDeployment(namespace, a.name, o)
}

// preStop covers what follows podlb's deregistration of a terminating
// pod: about a second to notice and call the cloud, then the drain time.
// Rounded up to whole seconds, as the sleep hook wants.
func (t timing) preStop() time.Duration {
	return (time.Second + t.drain + time.Second - 1).Truncate(time.Second)
}

// awsTargetGroup waits for podlb to create the app's target group and
// returns its ARN from the Service's status annotation.
func awsTargetGroup(ctx context.Context, c *cluster.Cluster, name string, controllerDown func() error) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	for {
		svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if st, err := targets.StatusOf(svc); err == nil && st != nil {
				if b := st.Bindings["aws"][fmt.Sprint(servicePort)]; b != nil {
					if arn := b.Details["arn"]; arn != "" {
						return arn, nil
					}
					last = b.Error
				}
			}
		}
		if err := controllerDown(); err != nil {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("podlb created no target group for Service %s within a minute (last status error: %q)", name, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// trigger starts a rolling update the way `kubectl rollout restart` does.
func (a *app) trigger(ctx context.Context, c *cluster.Cluster) error {
	pods, err := listPods(ctx, c, a.name)
	if err != nil {
		return err
	}
	a.oldHashes = map[string]bool{}
	for _, p := range pods {
		a.oldHashes[p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]] = true
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		time.Now().Format(time.RFC3339Nano))
	_, err = c.Client.AppsV1().Deployments(namespace).Patch(ctx, a.name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	a.triggered = time.Now()
	return err
}

func listPods(ctx context.Context, c *cluster.Cluster, app string) ([]corev1.Pod, error) {
	list, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// rolloutComplete is the Deployment's own verdict, as `kubectl rollout
// status` reads it.
func rolloutComplete(d *appsv1.Deployment) bool {
	want := *d.Spec.Replicas
	s := d.Status
	return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
}

// appView is one moment of an app's rollout.
type appView struct {
	// Old and New count live pods (not terminating) of either template;
	// Terminating ones are on their way out.
	Old, New, Terminating int
	// GateTrue of Live pods have the gate True (gated apps only).
	GateTrue, Live int
	Complete       bool
	groups         map[string]groupCounts
	// liveAddrs are the live pods' "ip:port".
	liveAddrs []string
}

func (a *app) observe(ctx context.Context, c *cluster.Cluster, cl *clouds) (appView, error) {
	v := appView{groups: map[string]groupCounts{}}
	pods, err := listPods(ctx, c, a.name)
	if err != nil {
		return v, err
	}
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil {
			v.Terminating++
			continue
		}
		v.Live++
		if a.oldHashes == nil || a.oldHashes[p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]] {
			v.Old++
		} else {
			v.New++
		}
		if g := targets.PodCondition(p, targets.GateConditionType); g != nil && g.Status == corev1.ConditionTrue {
			v.GateTrue++
		}
		if p.Status.PodIP != "" {
			v.liveAddrs = append(v.liveAddrs, fmt.Sprintf("%s:%d", p.Status.PodIP, appPort))
		}
	}
	d, err := c.Client.AppsV1().Deployments(namespace).Get(ctx, a.name, metav1.GetOptions{})
	if err != nil {
		return v, err
	}
	v.Complete = rolloutComplete(d)
	for cloud, lb := range a.lbs {
		switch cloud {
		case "aws":
			v.groups[cloud] = cl.awsGroup(lb.group)
		case "gcp":
			v.groups[cloud] = cl.gcpGroup(lb.group)
		}
	}
	return v, nil
}

// served reports whether every load balancer sends new connections to
// exactly the app's live pods (all of them, and nothing else), and, for a
// gated app, whether every gate is True: the state a finished rollout
// should reach.
func (v appView) served(gated bool, replicas int) bool {
	if v.Live != replicas || len(v.liveAddrs) != replicas || v.Terminating > 0 || (gated && v.GateTrue != replicas) {
		return false
	}
	for _, g := range v.groups {
		if g.Registered != replicas || g.Healthy != replicas {
			return false
		}
		for _, addr := range v.liveAddrs {
			if !g.healthy[addr] {
				return false
			}
		}
	}
	return true
}
