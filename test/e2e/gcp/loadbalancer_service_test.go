package gcp_test

import (
	"net"
	"path"
	"strconv"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// Services of type LoadBalancer on GCP: proxy Network Load Balancers that
// podlb provisions serve TCP to the pods (UDP ports get a Warning naming
// them), roll without a failed request behind the gate, share one load
// balancer in a group, follow edits and leave nothing behind; bad input is
// a Warning naming the field (e2eutil.LoadBalancerServiceScenario).
func TestLoadBalancerServiceGCP(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	tcp := []corev1.ServicePort{e2eutil.ServicePort("tcp", 80, corev1.ProtocolTCP)}
	udp := []corev1.ServicePort{e2eutil.ServicePort("dns", 53, corev1.ProtocolUDP)}
	// Someone else's load balancer holds port 80 of an address.
	holder := resourceName(ns, "holder")
	_, heldAddr := loadBalancer(t, holder, 2)
	heldIP, _, err := net.SplitHostPort(heldAddr)
	if err != nil {
		t.Fatal(err)
	}
	e2eutil.LoadBalancerServiceScenario(t, k8s, ns, e2eutil.LoadBalancerServiceCloud{
		Name: "gcp",
		Annotation: func(extra string) string {
			return "{" + extra + "}"
		},
		Address: func(cs *loadbalancers.ServiceCloudStatus) corev1.LoadBalancerIngress {
			return corev1.LoadBalancerIngress{IP: cs.IP}
		},
		DataPath: func(cs *loadbalancers.ServiceCloudStatus, port int32) string {
			rule := cs.Details["forwardingRule/"+strconv.Itoa(int(port))]
			if rule == "" {
				return ""
			}
			return sim.ForwardingRuleAddr(path.Base(rule))
		},
		UDP: false,
		Leftovers: func(t *testing.T, cs *loadbalancers.ServiceCloudStatus) []string {
			desc := gcpprovider.NetworkBalancerDescription(clusterName, providers.BalancerKey{Name: "shared-" + ns})
			left := balancerLeftovers(t, desc, &loadbalancers.CloudStatus{Backends: cs.Ports})
			proxies := gce.TCPProxies.List(ctx, &computepb.ListTargetTcpProxiesRequest{Project: project})
			for {
				p, err := proxies.Next()
				if err == iterator.Done {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if p.GetDescription() == desc {
					left = append(left, "target TCP proxy "+p.GetName())
				}
			}
			return left
		},
		BadInput: []e2eutil.BadLoadBalancerService{
			{Name: "bad-scheme", Annotation: `{"scheme": "public"}`, Ports: tcp, Want: "scheme"},
			{Name: "cert-on-udp", Annotation: `{"sslCertificates": ["dns-cert"], "tlsPorts": [53]}`, Ports: append(udp, e2eutil.ServicePort("tcp", 80, corev1.ProtocolTCP)), Want: "tlsPorts[0]"},
			{Name: "no-such-address", Annotation: `{"address": "missing-ip"}`, Ports: tcp, Want: "address"},
			// An address in use: the port another load balancer holds on
			// it is refused, naming the holder.
			{Name: "address-in-use", Annotation: `{"address": "` + heldIP + `"}`, Ports: tcp, Want: "held by forwarding rule " + holder + "-fr"},
		},
	})
}
