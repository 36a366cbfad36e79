package loadbalancers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// ServiceStatus is the JSON of the podlb.io/status annotation on a
// Service of type LoadBalancer podlb serves.
type ServiceStatus struct {
	// Balancer is the group's balancer key: the group name, or the
	// Service's namespace/name.
	Balancer string                         `json:"balancer"`
	Clouds   map[string]*ServiceCloudStatus `json:"clouds,omitempty"`
	// Problems are this Service's, each naming its field.
	Problems []string `json:"problems,omitempty"`
}

// ServiceCloudStatus is the group's load balancer on one cloud, as far as
// it serves this Service.
type ServiceCloudStatus struct {
	Hostname string            `json:"hostname,omitempty"`
	IP       string            `json:"ip,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
	Error    string            `json:"error,omitempty"`
	// Ports are the bindings registering the pods behind each of the
	// Service's ports that has a listener, by port number.
	Ports map[string]*targets.BindingStatus `json:"ports,omitempty"`
	// Refused are the Service's ports ("53/UDP") the cloud gives no
	// listener, with why.
	Refused map[string]string `json:"refused,omitempty"`
}

// ServiceStatusOf parses a Service's podlb.io/status annotation as the
// Service load balancer writes it.
func ServiceStatusOf(svc *corev1.Service) (*ServiceStatus, error) {
	raw, ok := svc.Annotations[targets.AnnotationStatus]
	if !ok {
		return nil, fmt.Errorf("no %s annotation", targets.AnnotationStatus)
	}
	var st ServiceStatus
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// serviceStatus is what one member of the group shows, problems aside,
// and its addresses: a cloud's address only once one of the Service's
// ports has a listener there.
func (r *ServiceReconciler) serviceStatus(g *serviceGroups, nn types.NamespacedName, st *groupState[serviceGroup]) (map[string]*ServiceCloudStatus, []corev1.LoadBalancerIngress) {
	clouds := map[string]*ServiceCloudStatus{}
	var addrs []corev1.LoadBalancerIngress
	g.cloudStatuses(st, func(cloud string, e *ensured, part cloudPart, failure string) {
		cs := &ServiceCloudStatus{Error: failure, Ports: map[string]*targets.BindingStatus{}}
		if e != nil {
			cs.Hostname, cs.IP, cs.Details = e.status.Hostname, e.status.IP, e.status.Details
			cs.Refused = refusedOf(nn, st.own.model, e.refused)
		}
		for _, b := range part[nn] {
			cs.Ports[strconv.Itoa(int(b.Key.Port))] = g.bindingStatus(b.Key)
		}
		if e != nil && len(part[nn]) > 0 {
			switch {
			case cs.Hostname != "":
				addrs = append(addrs, corev1.LoadBalancerIngress{Hostname: cs.Hostname})
			case cs.IP != "":
				addrs = append(addrs, corev1.LoadBalancerIngress{IP: cs.IP})
			}
		}
		clouds[cloud] = cs
	})
	return clouds, addrs
}

// refusedOf picks the refused listeners that are the Service's ports.
func refusedOf(nn types.NamespacedName, lb *ServiceLoadBalancer, refused map[string]string) map[string]string {
	if lb == nil {
		return nil
	}
	out := map[string]string{}
	for _, l := range lb.Listeners {
		key := strconv.Itoa(int(l.Port)) + "/" + l.Protocol
		if why, ok := refused[key]; ok && l.Backend.Namespace == nn.Namespace && l.Backend.Service == nn.Name {
			out[key] = why
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// writeStatuses writes every member's address (status.loadBalancer) and
// podlb.io/status annotation where they changed, with a Normal Event when
// a Service first gets its address.
func (r *ServiceReconciler) writeStatuses(ctx context.Context, g *serviceGroups, key providers.BalancerKey, members []*corev1.Service, st *groupState[serviceGroup], problems []Problem) error {
	for _, svc := range members {
		nn := nameOf(svc)
		clouds, addrs := r.serviceStatus(g, nn, st)
		raw, err := json.Marshal(ServiceStatus{Balancer: key.String(), Clouds: clouds, Problems: problemTexts(nn, problems, "")})
		if err != nil {
			return err
		}
		setAddress := func() (bool, bool) { return replaceAddresses(&svc.Status.LoadBalancer.Ingress, addrs, sameAddresses) }
		provisioned := fmt.Sprintf("load balancer %s: %s%s", key, serviceAddressText(addrs), portsText(clouds))
		if err := g.writeMemberStatus(ctx, svc, setAddress, provisioned, string(raw)); err != nil {
			return err
		}
	}
	return nil
}

// sameAddresses compares hostnames and IPs only: the API server fills in
// ipMode, which podlb does not set.
func sameAddresses(a, b []corev1.LoadBalancerIngress) bool {
	return slices.EqualFunc(a, b, func(x, y corev1.LoadBalancerIngress) bool { return x.Hostname == y.Hostname && x.IP == y.IP })
}

func serviceAddressText(addrs []corev1.LoadBalancerIngress) string {
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = a.Hostname
		if a.Hostname == "" {
			parts[i] = a.IP
		}
	}
	return strings.Join(parts, ", ")
}

// portsText lists the ports served, for the provisioning Event.
func portsText(clouds map[string]*ServiceCloudStatus) string {
	ports := map[string]bool{}
	for _, cs := range clouds {
		for p := range cs.Ports {
			ports[p] = true
		}
	}
	if len(ports) == 0 {
		return ""
	}
	return " (ports " + strings.Join(slices.SortedFunc(maps.Keys(ports), func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	}), ", ") + ")"
}
