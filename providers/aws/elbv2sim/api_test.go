package elbv2sim_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return fmt.Sprintf("not an API error: %v", err)
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s, got success", code)
	}
	if got := apiCode(err); got != code {
		t.Fatalf("want %s, got %s (%v)", code, got, err)
	}
}

func TestCreateTargetGroupDefaults(t *testing.T) {
	s := start(t, elbv2sim.Options{Region: "eu-west-1", AccountID: "111122223333"})
	c := client(s, 1)

	tcp := createTG(t, c, elbv2.CreateTargetGroupInput{Name: aws.String("pods-tcp")})
	if !regexp.MustCompile(`^arn:aws:elasticloadbalancing:eu-west-1:111122223333:targetgroup/pods-tcp/[0-9a-f]{16}$`).MatchString(*tcp.TargetGroupArn) {
		t.Errorf("ARN %s", *tcp.TargetGroupArn)
	}
	if tcp.HealthCheckProtocol != types.ProtocolEnumTcp || *tcp.HealthCheckPort != "traffic-port" ||
		*tcp.HealthCheckIntervalSeconds != 30 || *tcp.HealthCheckTimeoutSeconds != 10 ||
		*tcp.HealthyThresholdCount != 5 || *tcp.UnhealthyThresholdCount != 2 || tcp.Matcher != nil ||
		tcp.HealthCheckPath != nil || !*tcp.HealthCheckEnabled || tcp.TargetType != types.TargetTypeEnumIp ||
		*tcp.VpcId != elbv2sim.DefaultVPCID || *tcp.Port != 80 || len(tcp.LoadBalancerArns) != 0 {
		t.Errorf("TCP defaults: %+v", tcp)
	}

	h := createTG(t, c, elbv2.CreateTargetGroupInput{Name: aws.String("pods-http"), Protocol: types.ProtocolEnumHttp, Port: aws.Int32(8080)})
	if h.HealthCheckProtocol != types.ProtocolEnumHttp || *h.HealthCheckPath != "/" || *h.Matcher.HttpCode != "200" ||
		*h.HealthCheckTimeoutSeconds != 5 || *h.HealthCheckIntervalSeconds != 30 {
		t.Errorf("HTTP defaults: %+v", h)
	}

	nh := createTG(t, c, elbv2.CreateTargetGroupInput{Name: aws.String("pods-tcp-httpcheck"), HealthCheckProtocol: types.ProtocolEnumHttp})
	if *nh.Matcher.HttpCode != "200-399" || *nh.HealthCheckTimeoutSeconds != 6 || *nh.HealthCheckPath != "/" {
		t.Errorf("NLB HTTP check defaults: %+v", nh)
	}

	custom := createTG(t, c, elbv2.CreateTargetGroupInput{
		Name: aws.String("custom"), Protocol: types.ProtocolEnumHttp,
		HealthCheckPath: aws.String("/healthz"), HealthCheckPort: aws.String("9090"),
		HealthCheckIntervalSeconds: aws.Int32(10), HealthCheckTimeoutSeconds: aws.Int32(3),
		HealthyThresholdCount: aws.Int32(2), UnhealthyThresholdCount: aws.Int32(3),
		Matcher: &types.Matcher{HttpCode: aws.String("200,202")},
		Tags:    []types.Tag{{Key: aws.String("owner"), Value: aws.String("podlb")}},
	})
	if *custom.HealthCheckPath != "/healthz" || *custom.HealthCheckPort != "9090" || *custom.Matcher.HttpCode != "200,202" ||
		*custom.HealthyThresholdCount != 2 || *custom.UnhealthyThresholdCount != 3 {
		t.Errorf("custom: %+v", custom)
	}
	tags, err := c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{*custom.TargetGroupArn}})
	if err != nil || len(tags.TagDescriptions[0].Tags) != 1 || *tags.TagDescriptions[0].Tags[0].Value != "podlb" {
		t.Errorf("tags at creation: %+v %v", tags, err)
	}

	// The instance type is accepted, so a controller can see a wrong-type group.
	inst := createTG(t, c, elbv2.CreateTargetGroupInput{TargetType: types.TargetTypeEnumInstance})
	if inst.TargetType != types.TargetTypeEnumInstance {
		t.Errorf("instance group: %+v", inst)
	}

	// Creating the same group again is idempotent; different settings are not.
	again := createTG(t, c, elbv2.CreateTargetGroupInput{Name: aws.String("pods-tcp")})
	if *again.TargetGroupArn != *tcp.TargetGroupArn {
		t.Errorf("identical create gave a new group")
	}
	_, err = c.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("pods-tcp"), Protocol: types.ProtocolEnumTcp,
		Port: aws.Int32(81), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp})
	var dup *types.DuplicateTargetGroupNameException
	if !errors.As(err, &dup) {
		t.Errorf("want DuplicateTargetGroupName, got %v", err)
	}
}

func TestCreateTargetGroupValidation(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	base := func() elbv2.CreateTargetGroupInput {
		return elbv2.CreateTargetGroupInput{Name: aws.String(uniq("v")), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80),
			VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp}
	}
	cases := map[string]func(*elbv2.CreateTargetGroupInput){
		"name too long":       func(in *elbv2.CreateTargetGroupInput) { in.Name = aws.String(strings.Repeat("a", 33)) },
		"name bad char":       func(in *elbv2.CreateTargetGroupInput) { in.Name = aws.String("a_b") },
		"name hyphen end":     func(in *elbv2.CreateTargetGroupInput) { in.Name = aws.String("ab-") },
		"no port":             func(in *elbv2.CreateTargetGroupInput) { in.Port = nil },
		"unknown vpc":         func(in *elbv2.CreateTargetGroupInput) { in.VpcId = aws.String("vpc-nope") },
		"interval too small":  func(in *elbv2.CreateTargetGroupInput) { in.HealthCheckIntervalSeconds = aws.Int32(4) },
		"threshold too large": func(in *elbv2.CreateTargetGroupInput) { in.HealthyThresholdCount = aws.Int32(11) },
		"bad matcher": func(in *elbv2.CreateTargetGroupInput) {
			in.Protocol = types.ProtocolEnumHttp
			in.Matcher = &types.Matcher{HttpCode: aws.String("2xx")}
		},
		"bad hc port": func(in *elbv2.CreateTargetGroupInput) { in.HealthCheckPort = aws.String("70000") },
	}
	for name, mod := range cases {
		in := base()
		mod(&in)
		if _, err := c.CreateTargetGroup(ctx, &in); apiCode(err) != "ValidationError" {
			t.Errorf("%s: want ValidationError, got %v", name, err)
		}
	}
	in := base()
	in.HealthCheckPath = aws.String("/x") // path on a TCP check
	_, err := c.CreateTargetGroup(ctx, &in)
	var icr *types.InvalidConfigurationRequestException
	if !errors.As(err, &icr) {
		t.Errorf("path on TCP check: want InvalidConfigurationRequest, got %v", err)
	}
	in = base()
	in.Tags = []types.Tag{{Key: aws.String("k")}, {Key: aws.String("k")}}
	_, err = c.CreateTargetGroup(ctx, &in)
	wantCode(t, err, "DuplicateTagKeys")
	in = base()
	for i := range 51 {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(fmt.Sprint("k", i))})
	}
	_, err = c.CreateTargetGroup(ctx, &in)
	var tmt *types.TooManyTagsException
	if !errors.As(err, &tmt) {
		t.Errorf("51 tags: want TooManyTags, got %v", err)
	}
}

func TestDescribeTargetGroups(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	var arns []string
	for i := range 7 {
		g := createTG(t, c, elbv2.CreateTargetGroupInput{Name: aws.String(fmt.Sprintf("page-%d", i))})
		arns = append(arns, *g.TargetGroupArn)
	}

	// Paging with the SDK's paginator.
	p := elbv2.NewDescribeTargetGroupsPaginator(c, &elbv2.DescribeTargetGroupsInput{PageSize: aws.Int32(3)})
	var names []string
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, g := range out.TargetGroups {
			names = append(names, *g.TargetGroupName)
		}
	}
	if pages != 3 || len(names) != 7 || names[0] != "page-0" || names[6] != "page-6" {
		t.Errorf("pages=%d names=%v", pages, names)
	}
	_, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{PageSize: aws.Int32(401)})
	wantCode(t, err, "ValidationError")

	out, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{"page-3", "page-1"}})
	if err != nil || len(out.TargetGroups) != 2 {
		t.Fatalf("by name: %+v %v", out, err)
	}
	out, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: arns[:2]})
	if err != nil || len(out.TargetGroups) != 2 {
		t.Fatalf("by ARN: %+v %v", out, err)
	}

	var nf *types.TargetGroupNotFoundException
	_, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{"page-1", "nope"}})
	if !errors.As(err, &nf) {
		t.Errorf("unknown name: %v", err)
	}
	gone := strings.Replace(arns[0], "page-0", "gone", 1)
	_, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{gone}})
	if !errors.As(err, &nf) {
		t.Errorf("unknown ARN: %v", err)
	}
	_, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{"not-an-arn"}})
	wantCode(t, err, "ValidationError")

	// By load balancer: only the group behind its listener, which reports it.
	lbArn, _ := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, arns[4])
	out, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(lbArn)})
	if err != nil || len(out.TargetGroups) != 1 || *out.TargetGroups[0].TargetGroupArn != arns[4] ||
		len(out.TargetGroups[0].LoadBalancerArns) != 1 || out.TargetGroups[0].LoadBalancerArns[0] != lbArn {
		t.Fatalf("by LB: %+v %v", out, err)
	}
	_, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(lbArn + "0")})
	var lnf *types.LoadBalancerNotFoundException
	if !errors.As(err, &lnf) {
		t.Errorf("unknown LB: %v", err)
	}
}

func TestModifyAndDeleteTargetGroup(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{HealthCheckProtocol: types.ProtocolEnumHttp})
	arn := g.TargetGroupArn

	m, err := c.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: arn,
		HealthCheckPath: aws.String("/ready"), HealthCheckIntervalSeconds: aws.Int32(10),
		HealthyThresholdCount: aws.Int32(3), Matcher: &types.Matcher{HttpCode: aws.String("200-299")}})
	if err != nil {
		t.Fatal(err)
	}
	mg := m.TargetGroups[0]
	if *mg.HealthCheckPath != "/ready" || *mg.HealthCheckIntervalSeconds != 10 || *mg.HealthyThresholdCount != 3 || *mg.Matcher.HttpCode != "200-299" {
		t.Errorf("modified: %+v", mg)
	}
	_, err = c.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: arn, HealthCheckTimeoutSeconds: aws.Int32(200)})
	wantCode(t, err, "ValidationError")

	// Attributes.
	a, err := c.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: arn})
	if err != nil {
		t.Fatal(err)
	}
	attr := func(as []types.TargetGroupAttribute, k string) string {
		for _, a := range as {
			if *a.Key == k {
				return *a.Value
			}
		}
		return "<missing>"
	}
	if v := attr(a.Attributes, "deregistration_delay.timeout_seconds"); v != "300" {
		t.Errorf("default delay %s", v)
	}
	ma, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: arn,
		Attributes: []types.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("0")}}})
	if err != nil || attr(ma.Attributes, "deregistration_delay.timeout_seconds") != "0" {
		t.Errorf("modify attrs: %+v %v", ma, err)
	}
	for _, v := range []string{"3601", "-1", "x"} {
		_, err = c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: arn,
			Attributes: []types.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String(v)}}})
		wantCode(t, err, "ValidationError")
	}
	_, err = c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: arn,
		Attributes: []types.TargetGroupAttribute{{Key: aws.String("no.such.key"), Value: aws.String("1")}}})
	var icr *types.InvalidConfigurationRequestException
	if !errors.As(err, &icr) {
		t.Errorf("unknown attribute: %v", err)
	}
	// One bad attribute refuses the whole request: the good one beside
	// it is not applied.
	_, err = c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: arn,
		Attributes: []types.TargetGroupAttribute{
			{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("10")},
			{Key: aws.String("no.such.key"), Value: aws.String("1")},
		}})
	wantCode(t, err, "InvalidConfigurationRequest")
	if a, err := c.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: arn}); err != nil || attr(a.Attributes, "deregistration_delay.timeout_seconds") != "0" {
		t.Errorf("a refused request changed the delay: %v %v", a, err)
	}

	// Not found, for every operation taking a group.
	missing := aws.String(strings.Replace(*arn, *g.TargetGroupName, "missing", 1))
	var nf *types.TargetGroupNotFoundException
	for name, call := range map[string]func() error{
		"ModifyTargetGroup": func() error {
			_, err := c.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{TargetGroupArn: missing, HealthCheckPath: aws.String("/")})
			return err
		},
		"DescribeTargetGroupAttributes": func() error {
			_, err := c.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: missing})
			return err
		},
		"ModifyTargetGroupAttributes": func() error {
			_, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: missing,
				Attributes: []types.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("1")}}})
			return err
		},
		"RegisterTargets": func() error {
			_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: missing,
				Targets: []types.TargetDescription{{Id: aws.String("127.0.0.1")}}})
			return err
		},
		"DeregisterTargets": func() error {
			_, err := c.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: missing,
				Targets: []types.TargetDescription{{Id: aws.String("127.0.0.1")}}})
			return err
		},
		"DescribeTargetHealth": func() error {
			_, err := c.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: missing})
			return err
		},
	} {
		if err := call(); !errors.As(err, &nf) {
			t.Errorf("%s on a missing group: want TargetGroupNotFound, got %v", name, err)
		}
	}

	// Delete: in use -> ResourceInUse; then deleted; deleting again succeeds.
	_, lArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, *arn)
	_, err = c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: arn})
	var riu *types.ResourceInUseException
	if !errors.As(err, &riu) {
		t.Fatalf("delete in use: %v", err)
	}
	if _, err := c.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(lArn)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: arn}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: arn}); err != nil {
		t.Errorf("deleting a missing group should succeed: %v", err)
	}
	_, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{*arn}})
	if !errors.As(err, &nf) {
		t.Errorf("after delete: %v", err)
	}
	// The name is free again.
	createTG(t, c, elbv2.CreateTargetGroupInput{Name: g.TargetGroupName})
}

func TestRegisterValidation(t *testing.T) {
	o := fast()
	o.MaxTargetsPerGroup = 3
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	arn := g.TargetGroupArn
	reg := func(tds ...types.TargetDescription) error {
		_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: arn, Targets: tds})
		return err
	}
	td := func(id string, port int32, az string) types.TargetDescription {
		d := types.TargetDescription{Id: aws.String(id)}
		if port != 0 {
			d.Port = aws.Int32(port)
		}
		if az != "" {
			d.AvailabilityZone = aws.String(az)
		}
		return d
	}

	wantCode(t, reg(td("192.168.1.1", 80, "")), "ValidationError") // outside the VPC
	var it *types.InvalidTargetException
	if err := reg(td("i-0123456789abcdef0", 80, "")); !errors.As(err, &it) {
		t.Errorf("instance ID on an ip group: %v", err)
	}
	if err := reg(td("127.0.0.300", 80, "")); !errors.As(err, &it) {
		t.Errorf("malformed IP: %v", err)
	}
	wantCode(t, reg(td("127.0.0.1", 70000, "")), "ValidationError")
	// An IPv6 address in an ipv4 group, with or without AvailabilityZone
	// all, and alongside a good target: nothing is registered.
	wantCode(t, reg(td("fd00::1", 80, "all")), "ValidationError")
	wantCode(t, reg(td("127.0.0.1", 80, ""), td("fd00::1", 80, "")), "ValidationError")
	if len(s.Targets(*arn)) != 0 {
		t.Fatalf("failed calls registered targets: %+v", s.Targets(*arn))
	}

	// Outside the VPC with AvailabilityZone=all; the group's port by default.
	if err := reg(td("192.168.1.1", 0, "all")); err != nil {
		t.Fatal(err)
	}
	// An IP in a subnet may name its subnet's zone.
	if err := reg(td("10.0.3.4", 8080, "us-east-1b")); err != nil {
		t.Fatal(err)
	}
	// Registering again is a no-op, not an error, and keeps the count.
	// An IP in a subnet may name its subnet's zone.
	if err := reg(td("10.0.3.4", 8080, "us-east-1b")); err != nil {
		t.Fatal(err)
	}
	ts := s.Targets(*arn)
	if len(ts) != 2 || ts[0].Port != 80 || ts[0].AvailabilityZone != "all" || ts[1].Port != 8080 {
		t.Fatalf("targets: %+v", ts)
	}
	var tmt *types.TooManyTargetsException
	if err := reg(td("10.0.0.1", 80, ""), td("10.0.0.2", 80, "")); !errors.As(err, &tmt) {
		t.Errorf("past the limit: %v", err)
	}
	if err := reg(td("10.0.0.1", 80, "")); err != nil {
		t.Errorf("up to the limit: %v", err)
	}

	// Deregistering a target that is not registered succeeds.
	if _, err := c.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: arn,
		Targets: []types.TargetDescription{td("10.0.9.9", 80, "")}}); err != nil {
		t.Errorf("deregister unregistered: %v", err)
	}
	if _, err := c.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: arn,
		Targets: []types.TargetDescription{td("bogus", 80, "")}}); !errors.As(err, &it) {
		t.Errorf("deregister malformed: %v", err)
	}
	_, err := c.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: arn,
		Targets: []types.TargetDescription{td("fd00::1", 80, "")}})
	wantCode(t, err, "ValidationError")
	// Without a listener there is nothing to drain: the target goes at once.
	deregister(t, c, *arn, td("10.0.0.1", 80, ""))
	if n := len(s.Targets(*arn)); n != 2 {
		t.Errorf("after deregister in an unused group: %d targets", n)
	}

	// Asking about specific targets: unknown ones are unused/NotRegistered.
	h := healthOf(t, c, *arn, td("10.0.3.4", 8080, ""), td("10.0.7.7", 0, ""))
	if h["10.0.3.4:8080"].state != "unused" || h["10.0.3.4:8080"].reason != "Target.NotInUse" {
		t.Errorf("registered target in an unused group: %+v", h)
	}
	if h["10.0.7.7:80"].state != "unused" || h["10.0.7.7:80"].reason != "Target.NotRegistered" {
		t.Errorf("unregistered target: %+v", h)
	}
	_, err = c.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: arn,
		Targets: []types.TargetDescription{td("nope", 80, "")}})
	if !errors.As(err, &it) {
		t.Errorf("describe malformed: %v", err)
	}

	// An instance group takes instance IDs only.
	ig := createTG(t, c, elbv2.CreateTargetGroupInput{TargetType: types.TargetTypeEnumInstance})
	if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: ig.TargetGroupArn,
		Targets: []types.TargetDescription{td("127.0.0.1", 80, "")}}); !errors.As(err, &it) {
		t.Errorf("IP on an instance group: %v", err)
	}
	if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: ig.TargetGroupArn,
		Targets: []types.TargetDescription{td("i-0abc", 80, "")}}); err != nil {
		t.Errorf("instance on an instance group: %v", err)
	}
}

func TestTags(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	lbArn, lArn := createLB(t, c, types.LoadBalancerTypeEnumNetwork, types.ProtocolEnumTcp, *g.TargetGroupArn)
	arns := []string{*g.TargetGroupArn, lbArn, lArn}

	if _, err := c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: arns, Tags: []types.Tag{
		{Key: aws.String("podlb.io/cluster"), Value: aws.String("c1")}, {Key: aws.String("b"), Value: aws.String("2")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveTags(ctx, &elbv2.RemoveTagsInput{ResourceArns: arns[:1], TagKeys: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	out, err := c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: arns})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.TagDescriptions) != 3 || len(out.TagDescriptions[0].Tags) != 1 || len(out.TagDescriptions[1].Tags) != 2 ||
		*out.TagDescriptions[0].Tags[0].Key != "podlb.io/cluster" || *out.TagDescriptions[0].ResourceArn != arns[0] {
		t.Errorf("tags: %+v", out.TagDescriptions)
	}

	var many []string
	for range 21 {
		many = append(many, *g.TargetGroupArn)
	}
	_, err = c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: many})
	wantCode(t, err, "ValidationError")
	_, err = c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: arns[:1], Tags: []types.Tag{{Key: aws.String("x")}, {Key: aws.String("x")}}})
	var dk *types.DuplicateTagKeysException
	if !errors.As(err, &dk) {
		t.Errorf("duplicate keys: %v", err)
	}
	var fifty []types.Tag
	for i := range 50 {
		fifty = append(fifty, types.Tag{Key: aws.String(fmt.Sprint("t", i))})
	}
	_, err = c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: arns[:1], Tags: fifty})
	var tmt *types.TooManyTagsException
	if !errors.As(err, &tmt) {
		t.Errorf("too many tags: %v", err)
	}
	var nf *types.TargetGroupNotFoundException
	_, err = c.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{*g.TargetGroupArn + "0"}})
	if !errors.As(err, &nf) {
		t.Errorf("unknown group: %v", err)
	}
	var lnf *types.LoadBalancerNotFoundException
	_, err = c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{lbArn + "0"}, Tags: fifty[:1]})
	if !errors.As(err, &lnf) {
		t.Errorf("unknown LB: %v", err)
	}
	var lsnf *types.ListenerNotFoundException
	_, err = c.RemoveTags(ctx, &elbv2.RemoveTagsInput{ResourceArns: []string{lArn + "0"}, TagKeys: []string{"x"}})
	if !errors.As(err, &lsnf) {
		t.Errorf("unknown listener: %v", err)
	}
}

func TestLoadBalancersAndListeners(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	tcp := createTG(t, c, elbv2.CreateTargetGroupInput{})
	tcp2 := createTG(t, c, elbv2.CreateTargetGroupInput{})
	http := createTG(t, c, elbv2.CreateTargetGroupInput{Protocol: types.ProtocolEnumHttp})

	nlb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("nlb"), Type: types.LoadBalancerTypeEnumNetwork,
		Scheme: types.LoadBalancerSchemeEnumInternal, Subnets: []string{elbv2sim.DefaultSubnetIDs[0]}})
	if err != nil {
		t.Fatal(err)
	}
	lb := nlb.LoadBalancers[0]
	if !strings.Contains(*lb.LoadBalancerArn, ":loadbalancer/net/nlb/") || lb.Type != types.LoadBalancerTypeEnumNetwork ||
		lb.State.Code != types.LoadBalancerStateEnumProvisioning || lb.Scheme != types.LoadBalancerSchemeEnumInternal ||
		lb.CreatedTime == nil || lb.DNSName == nil || *lb.VpcId != elbv2sim.DefaultVPCID {
		t.Errorf("NLB: %+v", lb)
	}
	waitActive(t, c, *lb.LoadBalancerArn)
	alb, err := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("alb")})
	if err != nil || alb.LoadBalancers[0].Type != types.LoadBalancerTypeEnumApplication {
		t.Fatalf("ALB: %+v %v", alb, err)
	}
	_, err = c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("alb"), Type: types.LoadBalancerTypeEnumNetwork})
	var dup *types.DuplicateLoadBalancerNameException
	if !errors.As(err, &dup) {
		t.Errorf("duplicate LB: %v", err)
	}

	d, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
	if err != nil || len(d.LoadBalancers) != 2 {
		t.Fatalf("describe all: %+v %v", d, err)
	}
	d, err = c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{"nlb"}})
	if err != nil || len(d.LoadBalancers) != 1 || *d.LoadBalancers[0].LoadBalancerArn != *lb.LoadBalancerArn {
		t.Fatalf("describe by name: %+v %v", d, err)
	}
	var lnf *types.LoadBalancerNotFoundException
	_, err = c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{"nope"}})
	if !errors.As(err, &lnf) {
		t.Errorf("unknown LB name: %v", err)
	}

	listen := func(lbArn *string, proto types.ProtocolEnum, port int32, tg *string) (*elbv2.CreateListenerOutput, error) {
		return c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lbArn, Protocol: proto, Port: aws.Int32(port),
			DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, TargetGroupArn: tg}}})
	}
	l, err := listen(lb.LoadBalancerArn, types.ProtocolEnumTcp, 443, tcp.TargetGroupArn)
	if err != nil {
		t.Fatal(err)
	}
	lArn := *l.Listeners[0].ListenerArn
	if !strings.Contains(lArn, ":listener/net/nlb/") || *l.Listeners[0].DefaultActions[0].TargetGroupArn != *tcp.TargetGroupArn {
		t.Errorf("listener: %+v", l.Listeners[0])
	}
	if s.ListenerAddr(lArn) == "" || s.LoadBalancerAddr(*lb.LoadBalancerArn, 443) != s.ListenerAddr(lArn) {
		t.Errorf("data path addresses: %q %q", s.ListenerAddr(lArn), s.LoadBalancerAddr(*lb.LoadBalancerArn, 443))
	}
	// The ForwardConfig form works too.
	l2, err := c.CreateListener(ctx, &elbv2.CreateListenerInput{LoadBalancerArn: lb.LoadBalancerArn, Protocol: types.ProtocolEnumTcp, Port: aws.Int32(444),
		DefaultActions: []types.Action{{Type: types.ActionTypeEnumForward, ForwardConfig: &types.ForwardActionConfig{
			TargetGroups: []types.TargetGroupTuple{{TargetGroupArn: tcp2.TargetGroupArn}}}}}})
	if err != nil || *l2.Listeners[0].DefaultActions[0].TargetGroupArn != *tcp2.TargetGroupArn {
		t.Fatalf("ForwardConfig listener: %+v %v", l2, err)
	}

	_, err = listen(lb.LoadBalancerArn, types.ProtocolEnumTcp, 443, tcp2.TargetGroupArn)
	var dl *types.DuplicateListenerException
	if !errors.As(err, &dl) {
		t.Errorf("duplicate port: %v", err)
	}
	_, err = listen(lb.LoadBalancerArn, types.ProtocolEnumTcp, 445, http.TargetGroupArn)
	var ip *types.IncompatibleProtocolsException
	if !errors.As(err, &ip) {
		t.Errorf("TCP listener to HTTP group: %v", err)
	}
	_, err = listen(alb.LoadBalancers[0].LoadBalancerArn, types.ProtocolEnumTcp, 80, http.TargetGroupArn)
	var up *types.UnsupportedProtocolException
	if !errors.As(err, &up) {
		t.Errorf("TCP on an ALB: %v", err)
	}
	_, err = listen(alb.LoadBalancers[0].LoadBalancerArn, types.ProtocolEnumHttp, 80, tcp.TargetGroupArn)
	if !errors.As(err, &ip) {
		t.Errorf("HTTP listener to TCP group: %v", err)
	}
	nlb2, _ := c.CreateLoadBalancer(ctx, &elbv2.CreateLoadBalancerInput{Name: aws.String("nlb2"), Type: types.LoadBalancerTypeEnumNetwork})
	_, err = listen(nlb2.LoadBalancers[0].LoadBalancerArn, types.ProtocolEnumTcp, 80, tcp.TargetGroupArn)
	var tgal *types.TargetGroupAssociationLimitException
	if !errors.As(err, &tgal) {
		t.Errorf("group on a second LB: %v", err)
	}
	_, err = listen(aws.String(*lb.LoadBalancerArn+"0"), types.ProtocolEnumTcp, 80, tcp.TargetGroupArn)
	if !errors.As(err, &lnf) {
		t.Errorf("listener on unknown LB: %v", err)
	}
	var tnf *types.TargetGroupNotFoundException
	_, err = listen(lb.LoadBalancerArn, types.ProtocolEnumTcp, 446, aws.String(*tcp.TargetGroupArn+"0"))
	if !errors.As(err, &tnf) {
		t.Errorf("listener to unknown group: %v", err)
	}
	if _, err := listen(alb.LoadBalancers[0].LoadBalancerArn, types.ProtocolEnumHttp, 80, http.TargetGroupArn); err != nil {
		t.Errorf("ALB HTTP listener: %v", err)
	}

	ls, err := c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: lb.LoadBalancerArn})
	if err != nil || len(ls.Listeners) != 2 {
		t.Fatalf("describe listeners: %+v %v", ls, err)
	}
	ls, err = c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{lArn}})
	if err != nil || len(ls.Listeners) != 1 || *ls.Listeners[0].Port != 443 {
		t.Fatalf("describe listener: %+v %v", ls, err)
	}
	var lsnf *types.ListenerNotFoundException
	_, err = c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{ListenerArns: []string{lArn + "0"}})
	if !errors.As(err, &lsnf) {
		t.Errorf("unknown listener: %v", err)
	}
	_, err = c.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(*lb.LoadBalancerArn + "0")})
	if !errors.As(err, &lnf) {
		t.Errorf("listeners of unknown LB: %v", err)
	}

	if _, err := c.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(lArn)}); err != nil {
		t.Fatal(err)
	}
	if s.ListenerAddr(lArn) != "" {
		t.Errorf("deleted listener still has an address")
	}
	_, err = c.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(lArn)})
	if !errors.As(err, &lsnf) {
		t.Errorf("delete listener twice: %v", err)
	}
	g, _ := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{*tcp.TargetGroupArn, *tcp2.TargetGroupArn}})
	if len(g.TargetGroups[0].LoadBalancerArns)+len(g.TargetGroups[1].LoadBalancerArns) != 1 {
		t.Errorf("LoadBalancerArns after deleting one listener: %+v", g.TargetGroups)
	}

	// Deleting the LB deletes its listeners; deleting it again succeeds.
	if _, err := c.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: lb.LoadBalancerArn}); err != nil {
		t.Errorf("delete missing LB: %v", err)
	}
	if _, err := c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: tcp2.TargetGroupArn}); err != nil {
		t.Errorf("group should be free after its LB is gone: %v", err)
	}
}

func TestDescribeVpcs(t *testing.T) {
	const vpcA, vpcB = "vpc-0a000000000000001", "vpc-0b000000000000002"
	s := start(t, elbv2sim.Options{VPCs: []elbv2sim.VPC{
		{ID: vpcA, CIDRs: []string{"127.0.0.0/8", "10.1.0.0/16"}},
		{ID: vpcB, CIDRs: []string{"10.2.0.0/16"}},
	}})
	c := ec2Client(s)
	out, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Vpcs) != 2 {
		t.Fatalf("vpcs: %+v", out.Vpcs)
	}
	a := out.Vpcs[0]
	if *a.VpcId != vpcA || *a.CidrBlock != "127.0.0.0/8" || len(a.CidrBlockAssociationSet) != 2 ||
		*a.CidrBlockAssociationSet[1].CidrBlock != "10.1.0.0/16" ||
		a.CidrBlockAssociationSet[1].CidrBlockState.State != ec2types.VpcCidrBlockStateCodeAssociated ||
		!*a.IsDefault || a.State != ec2types.VpcStateAvailable {
		t.Errorf("vpc-a: %+v", a)
	}
	out, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{vpcB}})
	if err != nil || len(out.Vpcs) != 1 || *out.Vpcs[0].VpcId != vpcB {
		t.Fatalf("by id: %+v %v", out, err)
	}
	out, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{vpcA}}}})
	if err != nil || len(out.Vpcs) != 1 || *out.Vpcs[0].VpcId != vpcA {
		t.Fatalf("by filter: %+v %v", out, err)
	}
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{"vpc-0ffffffffffffffff"}})
	wantCode(t, err, "InvalidVpcID.NotFound")
	_, err = c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{"vpc-nope"}})
	wantCode(t, err, "InvalidVpcID.Malformed")

	// Targets of a group in vpc-b must be inside 10.2.0.0/16.
	ec := client(s, 1)
	g := createTG(t, ec, elbv2.CreateTargetGroupInput{VpcId: aws.String(vpcB)})
	_, err = ec.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: g.TargetGroupArn,
		Targets: []types.TargetDescription{{Id: aws.String("10.1.0.5")}}})
	wantCode(t, err, "ValidationError")
	register(t, ec, *g.TargetGroupArn, types.TargetDescription{Id: aws.String("10.2.0.5")})
}
