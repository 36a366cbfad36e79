package kubectlplugin

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/targets"
)

// dnsService is a Service of type LoadBalancer of podlb's class with a
// TCP and a UDP port, its address written on AWS and GCP.
func dnsService() *corev1.Service {
	class := loadbalancers.LoadBalancerClass
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dns"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class, Ports: []corev1.ServicePort{
			{Name: "tcp", Port: 53, Protocol: corev1.ProtocolTCP}, {Name: "udp", Port: 53, Protocol: corev1.ProtocolUDP},
			{Name: "admin", Port: 8053, Protocol: corev1.ProtocolTCP},
		}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{Hostname: "dns-1.elb.us-east-1.amazonaws.com"}, {IP: "127.254.0.9"},
		}}},
	}
}

func TestLoadBalancerStatusShowsAddressesListenersRefusedPortsAndBindings(t *testing.T) {
	st := &loadbalancers.ServiceStatus{Balancer: "shop/dns", Clouds: map[string]*loadbalancers.ServiceCloudStatus{
		"gcp": {IP: "127.254.0.9", Details: map[string]string{"forwardingRule/53": "global/forwardingRules/dns-53"},
			Ports:   map[string]*targets.BindingStatus{"53": {Group: "dns-neg", Owned: true, Desired: 2, Registered: 2, Healthy: 2}},
			Refused: map[string]string{"53/UDP": "GCP serves UDP only through passthrough load balancers"}},
		"aws": {Hostname: "dns-1.elb.us-east-1.amazonaws.com", Ports: map[string]*targets.BindingStatus{
			"8053": {Group: "targetgroup/pl-shop-dns-8053/2", Owned: true, Desired: 2, Registered: 2, Healthy: 1},
			"53":   {Group: "targetgroup/pl-shop-dns-53/1", Owned: true, Desired: 2, Registered: 2, Healthy: 2},
		}},
	}, Problems: []string{`podlb.io/aws-load-balancer: scheme: want internet-facing or internal`}}
	var b bytes.Buffer
	if err := writeLoadBalancer(&b, dnsService(), st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"type LoadBalancer, class podlb.io/load-balancer",
		"balancer:    shop/dns\n",
		"address:     dns-1.elb.us-east-1.amazonaws.com,127.254.0.9 (status.loadBalancer.ingress)\n",
		"aws    dns-1.elb.us-east-1.amazonaws.com  53/TCP,53/UDP,8053/TCP  0        ok\n",
		"gcp    127.254.0.9                        53/TCP                  1        ok\n",
		"Refused ports (no listener; the other ports are served):\n  gcp 53/UDP: GCP serves UDP only through passthrough load balancers\n",
		"Load balancer details:\n  gcp: forwardingRule/53=global/forwardingRules/dns-53\n",
		"Problems:\n  podlb.io/aws-load-balancer: scheme",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The bindings table, below its own header: one row per cloud and
	// port, in port order.
	_, bindings, ok := strings.Cut(out, "CLOUD  PORT  GROUP")
	if !ok {
		t.Fatalf("no bindings table:\n%s", out)
	}
	var rows []string
	for _, l := range strings.Split(bindings, "\n")[1:4] {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"aws 53 targetgroup/pl-shop-dns-53/1 yes 2 2 2 0 -",
		"aws 8053 targetgroup/pl-shop-dns-8053/2 yes 2 2 1 0 -",
		"gcp 53 dns-neg yes 2 2 2 0 -",
	}
	if strings.Join(rows, "|") != strings.Join(want, "|") {
		t.Errorf("binding rows %q, want %q\n%s", rows, want, out)
	}
}

func TestLoadBalancerStatusSaysWhatIsPendingOrBroken(t *testing.T) {
	svc := dnsService()
	svc.Status.LoadBalancer.Ingress = nil
	st := &loadbalancers.ServiceStatus{Balancer: "shop/dns", Clouds: map[string]*loadbalancers.ServiceCloudStatus{
		"aws": {Error: "throttled: Rate exceeded"},
		"gcp": {},
	}}
	var b bytes.Buffer
	if err := writeLoadBalancer(&b, svc, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"address:     none yet", "aws    -        -          0        throttled: Rate exceeded", "gcp    -        -          0        provisioning: no listener yet", "  no bindings"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, b.String())
		}
	}

	var fs findings
	svc.Annotations = map[string]string{targets.AnnotationStatus: `{"balancer":"shop/dns","clouds":{"aws":{"error":"throttled"},"gcp":{"refused":{"53/UDP":"no UDP"}}}}`}
	checkLoadBalancer(svc, &fs)
	if fs.problems() != 2 || !strings.Contains(fs[0].detail, "aws load balancer: throttled") || !strings.Contains(fs[1].detail, "gcp refused port 53/UDP: no UDP") {
		t.Errorf("findings %+v, want the aws error and the refused port as problems", fs)
	}
	fs = nil
	svc.Annotations[targets.AnnotationStatus] = `{"balancer":"shop/dns","clouds":{"aws":{}}}`
	checkLoadBalancer(svc, &fs)
	if fs.problems() != 0 || len(fs) != 1 || !strings.Contains(fs[0].detail, "provisioning") {
		t.Errorf("findings %+v, want one saying it is provisioning", fs)
	}
}

func TestBindingsOfReadsEitherStatusShape(t *testing.T) {
	svc := dnsService()
	svc.Annotations = map[string]string{targets.AnnotationStatus: `{"balancer":"shop/dns","clouds":{"aws":{"ports":{"53":{"group":"tg-53","healthy":2}}},"gcp":{}}}`}
	st, err := bindingsOf(svc)
	if err != nil {
		t.Fatal(err)
	}
	if b := st.Bindings["aws"]["53"]; b == nil || b.Group != "tg-53" || b.Healthy != 2 || len(st.Bindings) != 1 {
		t.Errorf("bindings %+v", st.Bindings)
	}
	// Not of podlb's class: the annotation is the target-group binding
	// status.
	svc.Spec.LoadBalancerClass = nil
	svc.Annotations[targets.AnnotationStatus] = `{"bindings":{"aws":{"80":{"group":"tg-80"}}}}`
	if st, err = bindingsOf(svc); err != nil || st.Bindings["aws"]["80"] == nil || st.Bindings["aws"]["80"].Group != "tg-80" {
		t.Errorf("bindings %+v, %v", st, err)
	}
}
