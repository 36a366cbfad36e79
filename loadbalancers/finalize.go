package loadbalancers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/podlb/podlb/targets"
)

// The finalizer and release steps an Ingress and a Service of type
// LoadBalancer share: both are held by one finalizer until their load
// balancer has let go of them.

// addFinalizer puts the load-balancer finalizer on obj (kind names it in
// errors) unless it carries it.
func addFinalizer(ctx context.Context, c client.Client, kind string, obj client.Object) error {
	if controllerutil.ContainsFinalizer(obj, IngressFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(obj, IngressFinalizer)
	if err := c.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("adding finalizer to %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// dropFinalizer releases obj: clearAddress takes its address out of its
// status (reporting whether there was one) unless it is being deleted;
// then the finalizer goes, and with it the status annotation of an object
// that stays.
func dropFinalizer(ctx context.Context, c client.Client, obj client.Object, clearAddress func() bool) error {
	deleting := obj.GetDeletionTimestamp() != nil
	if base := obj.DeepCopyObject().(client.Object); !deleting && clearAddress() {
		if err := c.Status().Patch(ctx, obj, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(obj, IngressFinalizer)
	if !deleting {
		annotations := obj.GetAnnotations()
		delete(annotations, targets.AnnotationStatus)
		obj.SetAnnotations(annotations)
	}
	return client.IgnoreNotFound(c.Patch(ctx, obj, patch))
}
