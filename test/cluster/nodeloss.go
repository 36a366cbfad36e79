package cluster

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LoseNode does what Kubernetes does once a node has vanished: it deletes
// the Node and force-deletes the pods bound to it (the pod garbage
// collector's job, which does not run here). The simulator stops their
// backends at once: no preStop runs on a dead machine.
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
// joining under the same name, so later tests find the cluster whole.
func (c *Cluster) RestoreNode(ctx context.Context, name string) error {
	for i, n := range c.Nodes {
		if n.Name == name {
			s := c.Sim.nodes[name]
			return c.Sim.registerNode(ctx, n, c.nodeObject(n), i, 1<<(32-s.block.Bits())-2)
		}
	}
	return fmt.Errorf("no node %s in this cluster", name)
}
