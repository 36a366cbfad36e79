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
	"github.com/podlb/podlb/targets"
	"github.com/podlb/podlb/test/cluster"
)

const (
	namespace   = "default"
	servicePort = 80
	appPort     = 8080
	gate        = string(targets.GateConditionType)
)

// app is one Deployment behind one Service, with a load balancer per cloud.
type app struct {
	name  string
	gated bool
	// ingress puts the app behind an Ingress whose load balancers podlb
	// provisions, instead of load balancers made for it.
	ingress bool
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
	load *loadgen.Load
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

// service is the app's Service with podlb's annotations for every enabled
// cloud: a target group podlb creates on AWS, NEGs that podlb adds to an
// existing backend service on GCP.
func (a *app) service(enabled map[string]bool, t timing) (*corev1.Service, error) {
	annotations := map[string]string{}
	if enabled["aws"] && !a.ingress {
		spec := map[string]any{"http": map[string]any{"create": map[string]any{
			// The emulator runs checks every --health-check-interval but
			// keeps AWS's rules: the group records AWS-valid settings.
			"healthCheck":                map[string]any{"intervalSeconds": 5, "healthyThreshold": 2, "unhealthyThreshold": 2},
			"deregistrationDelaySeconds": max(int(t.drain/time.Second), 1),
		}}}
		b, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		annotations["podlb.io/aws-target-groups"] = string(b)
	}
	if enabled["gcp"] && !a.ingress {
		annotations["podlb.io/gcp-negs"] = fmt.Sprintf(`{"http": {"backendService": %q}}`, a.lbName())
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: a.name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": a.name},
			Ports: []corev1.ServicePort{{Name: "http", Port: servicePort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(appPort)}},
		},
	}, nil
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
