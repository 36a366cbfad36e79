package aws

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/podlb/podlb/manifests"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// podlbKey signs the provider's calls in these tests; the emulator holds
// it to the shipped IAM policy. simCredentials (the users' key) may do
// anything.
const podlbKey = "AKIDPODLB"

// shippedPolicy is manifests/aws/iam-policy.json for cluster.
func shippedPolicy(t *testing.T, cluster string) *elbv2sim.Policy {
	t.Helper()
	pol, err := elbv2sim.ParsePolicy(manifests.AWSIAMPolicy(cluster))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// iamScenario drives the provider through everything it does to the
// cloud: it binds a Service to a user's target group and to a group of its
// own (created, changed, released), and provisions, changes and deletes an
// application load balancer with rules, tags and certificates and a
// network load balancer. It returns the first error.
func iamScenario(ctx context.Context, pol *elbv2sim.Policy) (*elbv2sim.Server, error) {
	srv, err := elbv2sim.Start(elbv2sim.Options{ProvisioningDelay: -1, RegistrationDelay: time.Millisecond,
		Policies: map[string]*elbv2sim.Policy{podlbKey: pol}})
	if err != nil {
		return nil, err
	}
	p, err := New(ctx, Options{
		Cluster: "test-cluster", Region: "us-east-1", VPCID: elbv2sim.DefaultVPCID,
		ELBv2Endpoint: srv.URL(), EC2Endpoint: srv.URL(),
		Credentials: credentials.NewStaticCredentialsProvider(podlbKey, "secret", ""),
		Limits:      providers.Unthrottled(DefaultLimits()), MaxAttempts: 1,
	})
	if err != nil {
		return srv, fmt.Errorf("New: %w", err)
	}
	admin := elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: simCredentials})
	target := providers.Target{IP: netip.MustParseAddr("127.0.0.1"), Port: 8080}
	keyOf := func(svc string) providers.BindingKey {
		return providers.BindingKey{Namespace: "shop", Service: svc, Provider: "aws", Port: 80}
	}
	bind := func(svc, raw string) (*providers.Group, error) {
		spec, err := p.ParseSpec([]byte(raw))
		if err != nil {
			return nil, err
		}
		return p.Ensure(ctx, &providers.Binding{
			Key:     keyOf(svc),
			Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Mode: providers.ReadyWhenHealthy, Spec: spec,
		})
	}
	registerAndDeregister := func(g *providers.Group) error {
		if err := p.Apply(ctx, g, providers.Plan{Register: []providers.Target{target}}); err != nil {
			return fmt.Errorf("register: %w", err)
		}
		if _, err := p.Observe(ctx, g); err != nil {
			return fmt.Errorf("observe: %w", err)
		}
		if err := p.Apply(ctx, g, providers.Plan{Deregister: []providers.Target{target}}); err != nil {
			return fmt.Errorf("deregister: %w", err)
		}
		return nil
	}

	// A user's target group.
	out, err := admin.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("users-group"),
		Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp})
	if err != nil {
		return srv, err
	}
	g, err := bind("users", `{"arn": "`+aws.ToString(out.TargetGroups[0].TargetGroupArn)+`"}`)
	if err != nil {
		return srv, fmt.Errorf("binding a user's group: %w", err)
	}
	if err := registerAndDeregister(g); err != nil {
		return srv, fmt.Errorf("user's group: %w", err)
	}

	// A group of podlb's own: created with a drain, its health check
	// changed, released.
	if g, err = bind("own", `{"create": {"deregistrationDelaySeconds": 5}}`); err != nil {
		return srv, fmt.Errorf("creating a group: %w", err)
	}
	if err := registerAndDeregister(g); err != nil {
		return srv, fmt.Errorf("own group: %w", err)
	}
	if g, err = bind("own", `{"create": {"deregistrationDelaySeconds": 5, "healthCheck": {"intervalSeconds": 15}}}`); err != nil {
		return srv, fmt.Errorf("changing a group's health check: %w", err)
	}
	if err := p.Release(ctx, keyOf("own"), g.Ref, nil); err != nil {
		return srv, fmt.Errorf("releasing a group: %w", err)
	}

	// An application load balancer, changed step by step, then deleted.
	shop, blog := srv.IssueCertificate("shop.example.com"), srv.IssueCertificate("blog.example.com")
	spec := &LoadBalancerSpec{Tags: map[string]string{"team": "shop"}, CertificateARNs: []string{shop}, IdleTimeoutSeconds: aws.Int32(30)}
	lb := shopBalancer(spec)
	steps := []struct {
		name   string
		change func()
	}{
		{"creating an ALB", func() {}},
		{"adding a tag", func() { spec.Tags["cost-center"] = "42" }},
		{"adding a certificate", func() { spec.CertificateARNs = []string{shop, blog} }},
		{"removing a certificate", func() { spec.CertificateARNs = []string{blog} }},
		{"changing a route", func() { lb.Routes[0].Backend = webID }},
		{"removing a route", func() { lb.Routes = append(lb.Routes[:1:1], lb.Routes[2]) }},
		{"adding a route before the others", func() {
			lb.Routes = append([]providers.HTTPRoute{{Host: "new.example.com", Path: "/", Backend: apiID}}, lb.Routes...)
		}},
		{"redirecting HTTP", func() { spec.RedirectToHTTPS = true }},
		{"removing HTTPS", func() { spec.RedirectToHTTPS, spec.CertificateARNs = false, nil }},
	}
	for _, s := range steps {
		s.change()
		_, specs, err := p.EnsureHTTP(ctx, lb)
		if err != nil {
			return srv, fmt.Errorf("%s: %w", s.name, err)
		}
		if s.name == "creating an ALB" {
			if g, err = p.Ensure(ctx, &providers.Binding{Key: keyOf("api"),
				Cluster: "test-cluster", Protocol: "TCP", TargetPort: 8080, Spec: specs[apiID]}); err != nil {
				return srv, fmt.Errorf("binding an ALB's group: %w", err)
			}
			if err := registerAndDeregister(g); err != nil {
				return srv, fmt.Errorf("ALB's group: %w", err)
			}
		}
	}
	if err := p.DeleteHTTP(ctx, "test-cluster", shopKey); err != nil {
		return srv, fmt.Errorf("deleting the ALB: %w", err)
	}

	// A network load balancer for a Service, deleted again.
	cz := true
	if _, err := p.EnsureL4(ctx, edgeBalancer(&LoadBalancerSpec{CrossZone: &cz})); err != nil {
		return srv, fmt.Errorf("creating an NLB: %w", err)
	}
	if err := p.DeleteL4(ctx, "test-cluster", edgeKey); err != nil {
		return srv, fmt.Errorf("deleting the NLB: %w", err)
	}
	return srv, nil
}

func runIAMScenario(t *testing.T, pol *elbv2sim.Policy) (*elbv2sim.Server, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := iamScenario(ctx, pol)
	if srv != nil {
		t.Cleanup(srv.Close)
	}
	return srv, err
}

func TestShippedIAMPolicySufficesForEverythingThePodlbProviderDoes(t *testing.T) {
	srv, err := runIAMScenario(t, shippedPolicy(t, "test-cluster"))
	if err != nil {
		t.Fatal(err)
	}
	// Other errors (lookups by name answering not found) are expected.
	for op, st := range srv.Stats() {
		if st.Denied > 0 {
			t.Errorf("%s: %+v", op, st)
		}
	}
}

// Each statement of the shipped policy is needed: without it the scenario
// fails with AccessDenied (or EC2's UnauthorizedOperation), classified as
// a user error, not retried as transient.
func TestEveryStatementOfTheShippedIAMPolicyIsNeeded(t *testing.T) {
	full := shippedPolicy(t, "test-cluster")
	for _, sid := range full.Statements() {
		t.Run(sid, func(t *testing.T) {
			_, err := runIAMScenario(t, full.Without(sid))
			if !accessDenied(err) {
				t.Fatalf("without %s the scenario ended with %v, want AccessDenied", sid, err)
			}
			if providers.ClassOf(err) != providers.Invalid {
				t.Errorf("%v: class %s, want invalid", err, providers.ClassOf(err))
			}
			t.Logf("without %s: %v", sid, err)
		})
	}
}

// accessDenied reports whether err, or the error of one target it
// refused, is AWS's refusal for lack of permission.
func accessDenied(err error) bool {
	if te, ok := providers.AsTargetErrors(err); ok {
		for _, e := range te.Failed {
			if accessDenied(e) {
				return true
			}
		}
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "AccessDenied" || ae.ErrorCode() == "UnauthorizedOperation")
}

// The policy is bound to its cluster: another cluster's copy lets podlb
// read but not create.
func TestShippedIAMPolicyOfAnotherClusterRefusesCreates(t *testing.T) {
	_, err := runIAMScenario(t, shippedPolicy(t, "other-cluster"))
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" || !strings.Contains(err.Error(), "CreateTargetGroup") {
		t.Fatalf("got %v, want AccessDenied on CreateTargetGroup", err)
	}
}
