package loadbalancers

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	networkingv1 "k8s.io/api/networking/v1"

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
func (r *IngressReconciler) groupStatus(g *ingressGroups, st *groupState[ingressGroup]) (map[string]*CloudStatus, []networkingv1.IngressLoadBalancerIngress) {
	clouds := map[string]*CloudStatus{}
	var addrs []networkingv1.IngressLoadBalancerIngress
	g.cloudStatuses(st, func(cloud string, e *ensured, part cloudPart, failure string) {
		cs := &CloudStatus{Error: failure, Backends: map[string]*targets.BindingStatus{}}
		if e != nil {
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
				id := providers.HTTPBackend{Namespace: b.Key.Namespace, Service: b.Key.Service, Port: b.Key.Port}.ID()
				cs.Backends[id] = g.bindingStatus(b.Key)
			}
		}
		clouds[cloud] = cs
	})
	return clouds, addrs
}

// writeStatuses writes every member's address (status.loadBalancer) and
// podlb.io/status annotation where they changed, with a Normal Event when
// an Ingress first gets its address.
func (r *IngressReconciler) writeStatuses(ctx context.Context, g *ingressGroups, key providers.BalancerKey, members []*networkingv1.Ingress, st *groupState[ingressGroup], problems []Problem) error {
	clouds, addrs := r.groupStatus(g, st)
	provisioned := fmt.Sprintf("load balancer %s: %s", key, addressText(addrs))
	for _, ing := range members {
		raw, err := json.Marshal(IngressStatus{Balancer: key.String(), Clouds: clouds, Switching: st.own.held, Problems: problemTexts(nameOf(ing), problems, "")})
		if err != nil {
			return err
		}
		setAddress := func() (bool, bool) {
			return replaceAddresses(&ing.Status.LoadBalancer.Ingress, addrs, func(a, b []networkingv1.IngressLoadBalancerIngress) bool { return reflect.DeepEqual(a, b) })
		}
		if err := g.writeMemberStatus(ctx, ing, setAddress, provisioned, string(raw)); err != nil {
			return err
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
