package aws_test

import (
	"strings"
	"testing"

	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	corev1 "k8s.io/api/core/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/test/cluster"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// Services of type LoadBalancer on AWS: Network Load Balancers that podlb
// provisions serve TCP and UDP to the pods, roll without a failed request
// behind the gate, share one load balancer in a group, follow edits and
// leave nothing behind; bad input is a Warning naming the field
// (e2eutil.LoadBalancerServiceScenario).
func TestLoadBalancerServiceAWS(t *testing.T) {
	cluster.Require(t)
	ns := kube.Namespace(t)
	// Every zone of the VPC, as the Ingresses' load balancers: pods of
	// all zones are targets.
	var ids []string
	for _, s := range ingressSubnets {
		ids = append(ids, `"`+s.ID+`"`)
	}
	subnets := `"subnets": [` + strings.Join(ids, ", ") + `]`
	cert := sim.IssueCertificate("dns.example.com")
	udp := []corev1.ServicePort{e2eutil.ServicePort("dns", 53, corev1.ProtocolUDP)}
	tcp := []corev1.ServicePort{e2eutil.ServicePort("tcp", 80, corev1.ProtocolTCP)}
	e2eutil.LoadBalancerServiceScenario(t, k8s, ns, e2eutil.LoadBalancerServiceCloud{
		Name: "aws",
		Annotation: func(extra string) string {
			if extra != "" {
				extra = ", " + extra
			}
			return "{" + subnets + extra + "}"
		},
		Address: func(cs *loadbalancers.ServiceCloudStatus) corev1.LoadBalancerIngress {
			return corev1.LoadBalancerIngress{Hostname: cs.Hostname}
		},
		DataPath: func(cs *loadbalancers.ServiceCloudStatus, port int32) string {
			return sim.LoadBalancerAddr(cs.Details["loadBalancer"], port)
		},
		UDP: true,
		Leftovers: func(t *testing.T, cs *loadbalancers.ServiceCloudStatus) []string {
			c := emuclient.ELBv2Client(sim)
			var left []string
			arn := cs.Details["loadBalancer"]
			if _, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}}); !isAWSNotFound[*elbtypes.LoadBalancerNotFoundException](err) {
				left = append(left, "load balancer "+arn)
			}
			for port, b := range cs.Ports {
				arn := b.Details["arn"]
				if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}); arn == "" || !isAWSNotFound[*elbtypes.TargetGroupNotFoundException](err) {
					left = append(left, "target group "+arn+" of port "+port)
				}
			}
			return left
		},
		BadInput: []e2eutil.BadLoadBalancerService{
			{Name: "no-such-subnet", Annotation: `{"subnets": ["subnet-0e2e0000000000dead"]}`, Ports: tcp, Want: "subnets"},
			{Name: "cert-on-udp", Annotation: `{` + subnets + `, "certificateArns": ["` + cert + `"], "tlsPorts": [53]}`, Ports: udp, Want: "tlsPorts[0]"},
			{Name: "bad-scheme", Annotation: `{` + subnets + `, "scheme": "public"}`, Ports: tcp, Want: "scheme"},
		},
	})
}
