package cluster

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A node is lost in two steps, as in a real cluster: the machine dies
// (KillNode), and later Kubernetes notices (LoseNode), after the node
// lifecycle controller's --node-monitor-grace-period (50 s by default
// since Kubernetes 1.32, 40 s before). Load balancers that health-check
// the pods see the death first.

// KillNode is a node's machine dying before Kubernetes notices: the
// backends of its pods stop at once, open connections cut and no preStop
// run, and the simulator stops acting as its kubelet (no status writes,
// no termination, nothing started). The Node and its pods stay in the API
// as they were until LoseNode.
func (c *Cluster) KillNode(name string) error {
	n, ok := c.Sim.nodes[name]
	if !ok {
		return fmt.Errorf("no node %s in this cluster", name)
	}
	s := c.Sim
	s.mu.Lock()
	defer s.mu.Unlock()
	n.dead = true
	now := time.Now()
	for _, p := range s.pods {
		if p.node != n {
			continue
		}
		if p.backend != nil {
			p.backend.close()
		}
		if p.finished.IsZero() {
			p.finished = now
		}
	}
	return nil
}

// LoseNode does what Kubernetes does once a node has vanished: it deletes
// the Node and force-deletes the pods bound to it (the pod garbage
// collector's job, which does not run here). The simulator stops their
// backends at once, if KillNode has not already: no preStop runs on a
// dead machine.
func (c *Cluster) LoseNode(ctx context.Context, name string) error {
	if err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return err
	}
	pods, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		return err
	}
	for _, p := range pods.Items {
		if err := c.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, *metav1.NewDeleteOptions(0)); err != nil {
			return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return nil
}

// RestoreNode registers a node LoseNode took away again, as a machine
// joining under the same name (alive, if KillNode killed it), so later
// tests find the cluster whole.
func (c *Cluster) RestoreNode(ctx context.Context, name string) error {
	for i, n := range c.Nodes {
		if n.Name == name {
			s := c.Sim.nodes[name]
			if err := c.Sim.registerNode(ctx, n, c.nodeObject(n), i, 1<<(32-s.block.Bits())-2); err != nil {
				return err
			}
			c.Sim.mu.Lock()
			s.dead = false
			c.Sim.mu.Unlock()
			return nil
		}
	}
	return fmt.Errorf("no node %s in this cluster", name)
}
