package loadbalancers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// IngressStatus is the JSON of the podlb.io/status annotation on an
// Ingress podlb serves.
type IngressStatus struct {
	// Balancer is the group's balancer key: the group name, or the
	// Ingress's namespace/name.
	Balancer string                  `json:"balancer"`
	Clouds   map[string]*CloudStatus `json:"clouds,omitempty"`
	// Problems are this Ingress's, each naming its field.
	Problems []string `json:"problems,omitempty"`
	// Switching lists the group's routes that keep their backend until
	// the one they move to serves.
	Switching []string `json:"switching,omitempty"`
}

// CloudStatus is the load balancer of the group on one cloud.
type CloudStatus struct {
	Hostname string            `json:"hostname,omitempty"`
	IP       string            `json:"ip,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	Error    string            `json:"error,omitempty"`
	// Backends are the bindings registering each backend's pods, by
	// backend ID (namespace/service:port).
	Backends map[string]*targets.BindingStatus `json:"backends,omitempty"`
}

// IngressStatusOf parses an Ingress's podlb.io/status annotation.
func IngressStatusOf(ing *networkingv1.Ingress) (*IngressStatus, error) {
	raw, ok := ing.Annotations[targets.AnnotationStatus]
	if !ok {
		return nil, fmt.Errorf("no %s annotation", targets.AnnotationStatus)
	}
	var st IngressStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// groupStatus is what every member of the group shows, problems aside.
func (r *IngressReconciler) groupStatus(key providers.BalancerKey, st *groupState) (map[string]*CloudStatus, []networkingv1.IngressLoadBalancerIngress) {
	clouds := map[string]*CloudStatus{}
	var addrs []networkingv1.IngressLoadBalancerIngress
	for _, cloud := range slices.Sorted(maps.Keys(r.Clouds)) {
		e, ensured := st.ensured[cloud]
		part, bound := st.bindings[cloud]
		msg, failed := st.failed[cloud]
		if !ensured && !bound && !failed {
			continue
		}
		cs := &CloudStatus{Error: msg, Backends: map[string]*targets.BindingStatus{}}
		if ensured {
			cs.Hostname, cs.IP, cs.Details = e.status.Hostname, e.status.IP, e.status.Details
			switch {
			case e.status.Hostname != "":
				addrs = append(addrs, networkingv1.IngressLoadBalancerIngress{Hostname: e.status.Hostname})
			case e.status.IP != "":
				addrs = append(addrs, networkingv1.IngressLoadBalancerIngress{IP: e.status.IP})
			}
		}
		for _, bs := range part {
			for _, b := range bs {
				bst := r.Registry.Status(b.Key)
				if bst == nil {
					bst = &targets.BindingStatus{}
				}
				id := providers.HTTPBackend{Namespace: b.Key.Namespace, Service: b.Key.Service, Port: b.Key.Port}.ID()
				cs.Backends[id] = bst
			}
		}
		clouds[cloud] = cs
	}
	return clouds, addrs
}

// writeStatuses writes every member's address (status.loadBalancer) and
// podlb.io/status annotation where they changed, with a Normal Event when
// an Ingress first gets its address.
func (r *IngressReconciler) writeStatuses(ctx context.Context, key providers.BalancerKey, members []*networkingv1.Ingress, st *groupState, problems []Problem) error {
	clouds, addrs := r.groupStatus(key, st)
	for _, ing := range members {
		nn := nameOf(ing)
		status := IngressStatus{Balancer: key.String(), Clouds: clouds, Switching: st.held}
		for _, p := range problems {
			if p.Object == nn {
				msg := p.Message
				if p.Field != "" {
					msg = p.Field + ": " + msg
				}
				status.Problems = append(status.Problems, msg)
			}
		}
		raw, err := json.Marshal(status)
		if err != nil {
			return err
		}
		if len(addrs) > 0 && !reflect.DeepEqual(ing.Status.LoadBalancer.Ingress, addrs) {
			first := len(ing.Status.LoadBalancer.Ingress) == 0
			patch := client.MergeFrom(ing.DeepCopy())
			ing.Status.LoadBalancer.Ingress = addrs
			if err := r.Client.Status().Patch(ctx, ing, patch); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("writing the address of Ingress %s: %w", nn, err)
			}
			if first {
				r.Recorder.Eventf(ing, corev1.EventTypeNormal, "LoadBalancerProvisioned", "load balancer %s: %s", key, addressText(addrs))
			}
		}
		if ing.Annotations[targets.AnnotationStatus] == string(raw) {
			continue
		}
		patch := client.MergeFrom(ing.DeepCopy())
		if ing.Annotations == nil {
			ing.Annotations = map[string]string{}
		}
		ing.Annotations[targets.AnnotationStatus] = string(raw)
		if err := r.Client.Patch(ctx, ing, patch); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("writing the status of Ingress %s: %w", nn, err)
		}
	}
	return nil
}

func addressText(addrs []networkingv1.IngressLoadBalancerIngress) string {
	var out string
	for i, a := range addrs {
		if i > 0 {
			out += ", "
		}
		if a.Hostname != "" {
			out += a.Hostname
		} else {
			out += a.IP
		}
	}
	return out
}
