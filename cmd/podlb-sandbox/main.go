// Command podlb-sandbox starts a local cluster (real control plane, simulated
// nodes), deploys a small Deployment behind the podlb readiness gate and
// shows its pods answering on their IPs. With --keep it stays up until
// Ctrl-C so the cluster can be explored with kubectl.
//
// This is the first cut of the sandbox: the emulated clouds and the
// controller come next.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/internal/version"
	"github.com/podlb/podlb/test/cluster"
)

const (
	gate      = "podlb.io/load-balancer-ready"
	namespace = "default"
	appName   = "hello"
	appPort   = 8080
)

func main() {
	keep := flag.Bool("keep", false, "keep the cluster running until interrupted")
	cloud := flag.String("cloud", "aws", `provider ID form of the nodes: "aws" or "gce"`)
	replicas := flag.Int("replicas", 3, "replicas of the demo Deployment")
	verbose := flag.Bool("v", false, "log cluster start-up and simulator details")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *cloud, int32(*replicas), *keep, *verbose); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "podlb-sandbox:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cloud string, replicas int32, keep, verbose bool) error {
	fmt.Printf("podlb-sandbox %s: starting a local cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, 3 simulated nodes)\n", version.Version)
	opts := cluster.Options{Nodes: 3, Cloud: cloud}
	if verbose {
		opts.Logf = func(format string, args ...any) { fmt.Printf("  "+format+"\n", args...) }
	}
	began := time.Now()
	c, err := cluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("stopping the cluster")
		c.Stop()
	}()
	fmt.Printf("cluster up in %v\n\n", time.Since(began).Round(time.Millisecond))

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tZONE\tPROVIDER ID\tHOST IP\tPOD CIDR")
	for _, n := range c.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Zone, n.ProviderID, n.HostIP, n.PodCIDR)
	}
	w.Flush()

	d := cluster.NewDeployment(namespace, appName, cluster.DeploymentOptions{Replicas: replicas, Port: appPort, Gates: []string{gate}})
	if _, err := c.Client.AppsV1().Deployments(namespace).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		return err
	}
	fmt.Printf("\ncreated Deployment %s/%s: %d replicas with readiness gate %s\n", namespace, appName, replicas, gate)

	// Until the controller lands, nobody sets the gate: the pods run and
	// serve but stay unready, which is what a gated rollout looks like
	// before the load balancer has confirmed the targets.
	if err := waitPods(ctx, c, replicas, func(p *corev1.Pod) bool { return conditionStatus(p, corev1.ContainersReady) == corev1.ConditionTrue }); err != nil {
		return err
	}
	fmt.Println("\npods running, gate not yet set (the controller would set it once the load balancer sees them healthy):")
	if err := printPods(ctx, c); err != nil {
		return err
	}

	fmt.Printf("\nsetting %s=True on every pod, as the controller will\n", gate)
	if err := setGates(ctx, c); err != nil {
		return err
	}
	if err := waitPods(ctx, c, replicas, func(p *corev1.Pod) bool { return conditionStatus(p, corev1.PodReady) == corev1.ConditionTrue }); err != nil {
		return err
	}
	if err := printPods(ctx, c); err != nil {
		return err
	}

	fmt.Println("\nasking every pod on its IP (10.X.Y.Z is served on loopback 127.X.Y.Z):")
	if err := probePods(ctx, c); err != nil {
		return err
	}

	if !keep {
		fmt.Printf("\nkubeconfig: %s (removed on exit; run with --keep to explore the cluster)\n", c.Kubeconfig)
		return nil
	}
	fmt.Printf("\nkubeconfig: %s\n", c.Kubeconfig)
	fmt.Printf("  kubectl --kubeconfig %s get pods -o wide\n", c.Kubeconfig)
	fmt.Println("cluster running; Ctrl-C to stop")
	<-ctx.Done()
	return nil
}

func listPods(ctx context.Context, c *cluster.Cluster) ([]corev1.Pod, error) {
	list, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + appName})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func waitPods(ctx context.Context, c *cluster.Cluster, want int32, ok func(*corev1.Pod) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		pods, err := listPods(ctx, c)
		if err != nil {
			return err
		}
		n := int32(0)
		for i := range pods {
			if ok(&pods[i]) {
				n++
			}
		}
		if n >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for pods: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func printPods(ctx context.Context, c *cluster.Cluster) error {
	pods, err := listPods(ctx, c)
	if err != nil {
		return err
	}
	d, err := c.Client.AppsV1().Deployments(namespace).Get(ctx, appName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tNODE\tPOD IP\tCONTAINERS READY\tGATE\tREADY\tREASON")
	for i := range pods {
		p := &pods[i]
		reason := ""
		if r := condition(p, corev1.PodReady); r != nil {
			reason = r.Reason
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Spec.NodeName, p.Status.PodIP,
			conditionStatus(p, corev1.ContainersReady), conditionStatus(p, gate), conditionStatus(p, corev1.PodReady), reason)
	}
	w.Flush()
	fmt.Printf("deployment: %d/%d available\n", d.Status.AvailableReplicas, *d.Spec.Replicas)
	return nil
}

func setGates(ctx context.Context, c *cluster.Cluster) error {
	pods, err := listPods(ctx, c)
	if err != nil {
		return err
	}
	for _, p := range pods {
		patch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True","reason":"Sandbox","lastTransitionTime":%q}]}}`,
			gate, time.Now().UTC().Format(time.RFC3339))
		if _, err := c.Client.CoreV1().Pods(namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
			return err
		}
	}
	return nil
}

func probePods(ctx context.Context, c *cluster.Cluster) error {
	pods, err := listPods(ctx, c)
	if err != nil {
		return err
	}
	httpc := cluster.HTTPClient(5 * time.Second)
	for _, p := range pods {
		url := fmt.Sprintf("http://%s:%d/", p.Status.PodIP, appPort)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := httpc.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("  GET %-24s -> %d %q\n", url, resp.StatusCode, strings.TrimSpace(string(body)))
		if resp.StatusCode != http.StatusOK || string(body) != p.Name {
			return fmt.Errorf("pod %s answered %d %q", p.Name, resp.StatusCode, body)
		}
	}
	return nil
}

func condition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func conditionStatus(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	if c := condition(p, t); c != nil {
		return c.Status
	}
	return "-"
}
