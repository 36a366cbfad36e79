package kubectlplugin

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/targets"
)

// Services of type LoadBalancer of podlb's class: podlb provisions their
// load balancer and writes a status of its own shape (loadbalancers.
// ServiceStatus) to the same podlb.io/status annotation.

// podlbService reports whether podlb acts on the Service: by annotation
// (target groups, NEGs) or as the provider of its load balancer.
func podlbService(svc *corev1.Service) bool {
	return len(cloudAnnotations(svc)) > 0 || loadbalancers.ServesService(svc)
}

// bindingsOf is the Service's podlb status as bindings per cloud and port,
// whichever way podlb serves it, for the views both share.
func bindingsOf(svc *corev1.Service) (*targets.Status, error) {
	if !loadbalancers.ServesService(svc) {
		return targets.StatusOf(svc)
	}
	st, err := loadbalancers.ServiceStatusOf(svc)
	if err != nil {
		return nil, err
	}
	return bindingsOfLoadBalancer(st), nil
}

func bindingsOfLoadBalancer(st *loadbalancers.ServiceStatus) *targets.Status {
	out := &targets.Status{Bindings: map[string]map[string]*targets.BindingStatus{}, Problems: st.Problems}
	for cloud, cs := range st.Clouds {
		if len(cs.Ports) > 0 {
			out.Bindings[cloud] = cs.Ports
		}
	}
	return out
}

// serviceAddresses is status.loadBalancer.ingress as kubectl shows it.
func serviceAddresses(svc *corev1.Service) string {
	var out []string
	for _, i := range svc.Status.LoadBalancer.Ingress {
		if i.Hostname != "" {
			out = append(out, i.Hostname)
		} else if i.IP != "" {
			out = append(out, i.IP)
		}
	}
	return strings.Join(out, ",")
}

// listenerPorts are a cloud's ports with a listener, as "80/TCP", in port
// order; the protocol comes from the Service's spec.
func listenerPorts(svc *corev1.Service, cs *loadbalancers.ServiceCloudStatus) []string {
	protocols := map[string][]string{}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		key := strconv.Itoa(int(p.Port))
		protocols[key] = append(protocols[key], proto)
	}
	ports := slices.Collect(maps.Keys(cs.Ports))
	sortPorts(ports)
	var out []string
	for _, port := range ports {
		protos := protocols[port]
		if len(protos) == 0 {
			out = append(out, port)
			continue
		}
		for _, proto := range protos {
			if _, refused := cs.Refused[port+"/"+proto]; !refused {
				out = append(out, port+"/"+proto)
			}
		}
	}
	return out
}

// sortPorts sorts port numbers as numbers.
func sortPorts(ports []string) {
	sort.Slice(ports, func(i, j int) bool {
		a, _ := strconv.Atoi(ports[i])
		b, _ := strconv.Atoi(ports[j])
		return a < b
	})
}

// writeLoadBalancer renders what podlb provisioned for a Service of type
// LoadBalancer: class, balancer, address; per cloud the address, the
// ports with a listener, refused ports and the error; then the bindings of
// its ports as for an annotated Service.
func writeLoadBalancer(w io.Writer, svc *corev1.Service, st *loadbalancers.ServiceStatus) error {
	addr := serviceAddresses(svc)
	if addr == "" {
		addr = "none yet"
	}
	fmt.Fprintf(w, "type LoadBalancer, class %s: podlb provisions its load balancer\n", loadbalancers.LoadBalancerClass)
	fmt.Fprintf(w, "balancer:    %s\n", st.Balancer)
	fmt.Fprintf(w, "address:     %s (status.loadBalancer.ingress)\n", addr)

	var refused, details []string
	clouds := slices.Sorted(maps.Keys(st.Clouds))
	if len(clouds) > 0 {
		fmt.Fprintln(w)
		t := table{header: []string{"CLOUD", "ADDRESS", "LISTENERS", "REFUSED", "STATE"}}
		for _, cloud := range clouds {
			cs := st.Clouds[cloud]
			if cs == nil {
				continue
			}
			address := cs.Hostname
			if address == "" {
				address = cs.IP
			}
			state := "ok"
			switch {
			case cs.Error != "":
				state = cs.Error
			case len(cs.Ports) == 0:
				state = "provisioning: no listener yet"
			}
			t.add(cloud, address, strings.Join(listenerPorts(svc, cs), ","), strconv.Itoa(len(cs.Refused)), state)
			for _, port := range slices.Sorted(maps.Keys(cs.Refused)) {
				refused = append(refused, fmt.Sprintf("%s %s: %s", cloud, port, cs.Refused[port]))
			}
			if len(cs.Details) > 0 {
				var kv []string
				for _, k := range slices.Sorted(maps.Keys(cs.Details)) {
					kv = append(kv, k+"="+cs.Details[k])
				}
				details = append(details, fmt.Sprintf("%s: %s", cloud, strings.Join(kv, " ")))
			}
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	section(w, "Refused ports (no listener; the other ports are served)", refused)
	// Problems name their field, which may be in the spec (a port another
	// Service of the group holds) as well as in an annotation.
	section(w, "Problems", st.Problems)
	section(w, "Load balancer details", details)
	bindings := bindingsOfLoadBalancer(st)
	bindings.Problems = nil
	return writeStatus(w, bindings)
}
