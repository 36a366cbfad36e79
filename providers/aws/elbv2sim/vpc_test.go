package elbv2sim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

func TestDefaultVPCSubnetsAndSecurityGroups(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := ec2Client(s)
	out, err := c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, sn := range out.Subnets {
		if *sn.VpcId != elbv2sim.DefaultVPCID || sn.State != ec2types.SubnetStateAvailable {
			t.Errorf("subnet %+v", sn)
		}
		got[*sn.SubnetId] = *sn.CidrBlock + " " + *sn.AvailabilityZone
	}
	want := map[string]string{
		elbv2sim.DefaultSubnetIDs[0]: "127.0.0.0/8 us-east-1a",
		elbv2sim.DefaultSubnetIDs[1]: "10.0.0.0/17 us-east-1b",
	}
	if len(got) != 2 || got[elbv2sim.DefaultSubnetIDs[0]] != want[elbv2sim.DefaultSubnetIDs[0]] || got[elbv2sim.DefaultSubnetIDs[1]] != want[elbv2sim.DefaultSubnetIDs[1]] {
		t.Errorf("subnets %v, want %v", got, want)
	}
	for _, id := range append([]string{elbv2sim.DefaultVPCID, elbv2sim.DefaultSecurityGroupID}, elbv2sim.DefaultSubnetIDs...) {
		if !idShape(id) {
			t.Errorf("default ID %q has not AWS's shape", id)
		}
	}

	byFilter := func(in *ec2.DescribeSubnetsInput) []string {
		t.Helper()
		out, err := c.DescribeSubnets(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, sn := range out.Subnets {
			ids = append(ids, *sn.SubnetId)
		}
		return ids
	}
	if ids := byFilter(&ec2.DescribeSubnetsInput{SubnetIds: elbv2sim.DefaultSubnetIDs[1:]}); len(ids) != 1 || ids[0] != elbv2sim.DefaultSubnetIDs[1] {
		t.Errorf("by id: %v", ids)
	}
	if ids := byFilter(&ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("subnet-id"), Values: elbv2sim.DefaultSubnetIDs[:1]}}}); len(ids) != 1 || ids[0] != elbv2sim.DefaultSubnetIDs[0] {
		t.Errorf("subnet-id filter: %v", ids)
	}
	if ids := byFilter(&ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{"vpc-0123456789abcdef0"}}}}); len(ids) != 0 {
		t.Errorf("another VPC's subnets: %v", ids)
	}
	_, err = c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-default"}})
	wantCode(t, err, "InvalidSubnetID.Malformed")
	_, err = c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSubnetID.NotFound")
	_, err = c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{"vpc-A"}}}})
	wantCode(t, err, "InvalidVpcID.Malformed")

	sgs, err := c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{elbv2sim.DefaultSecurityGroupID}})
	if err != nil || len(sgs.SecurityGroups) != 1 || *sgs.SecurityGroups[0].GroupName != "default" || *sgs.SecurityGroups[0].VpcId != elbv2sim.DefaultVPCID {
		t.Fatalf("default security group: %+v %v", sgs, err)
	}
	sgs, err = c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{elbv2sim.DefaultVPCID}}}})
	if err != nil || len(sgs.SecurityGroups) != 1 {
		t.Errorf("by vpc-id: %+v %v", sgs, err)
	}
	_, err = c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-web"}})
	wantCode(t, err, "InvalidGroupId.Malformed")
	_, err = c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{"sg-12345678"}})
	wantCode(t, err, "InvalidGroup.NotFound")

	// ELBv2 checks the VPC ID's shape too.
	_, err = client(s, 1).CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("badvpc"), Protocol: types.ProtocolEnumTcp,
		Port: aws.Int32(80), VpcId: aws.String("vpc-default"), TargetType: types.TargetTypeEnumIp})
	wantCode(t, err, "ValidationError")
}

func idShape(id string) bool {
	_, hexPart, ok := strings.Cut(id, "-")
	if !ok || (len(hexPart) != 8 && len(hexPart) != 17) {
		return false
	}
	return strings.Trim(hexPart, "0123456789abcdef") == ""
}

func TestVPCOptionsAreChecked(t *testing.T) {
	good := "vpc-0a000000000000001"
	for name, v := range map[string]elbv2sim.VPC{
		"malformed VPC ID":     {ID: "vpc-a", CIDRs: []string{"10.0.0.0/16"}},
		"malformed subnet ID":  {ID: good, CIDRs: []string{"10.0.0.0/16"}, Subnets: []elbv2sim.Subnet{{ID: "subnet-a", AvailabilityZone: "us-east-1a", CIDR: "10.0.0.0/24"}}},
		"subnet outside VPC":   {ID: good, CIDRs: []string{"10.0.0.0/16"}, Subnets: []elbv2sim.Subnet{{ID: "subnet-0a000001", AvailabilityZone: "us-east-1a", CIDR: "10.1.0.0/24"}}},
		"subnet without CIDR":  {ID: good, CIDRs: []string{"10.0.0.0/16"}, Subnets: []elbv2sim.Subnet{{ID: "subnet-0a000001", AvailabilityZone: "us-east-1a"}}},
		"overlapping subnets":  {ID: good, CIDRs: []string{"10.0.0.0/16"}, Subnets: []elbv2sim.Subnet{{ID: "subnet-0a000001", AvailabilityZone: "us-east-1a", CIDR: "10.0.0.0/24"}, {ID: "subnet-0a000002", AvailabilityZone: "us-east-1b", CIDR: "10.0.0.128/25"}}},
		"malformed group ID":   {ID: good, CIDRs: []string{"10.0.0.0/16"}, SecurityGroups: []string{"sg-web"}},
		"subnet without zone":  {ID: good, CIDRs: []string{"10.0.0.0/16"}, Subnets: []elbv2sim.Subnet{{ID: "subnet-0a000001", CIDR: "10.0.0.0/24"}}},
		"VPC CIDR not a range": {ID: good, CIDRs: []string{"10.0.0.1"}},
	} {
		if s, err := elbv2sim.Start(elbv2sim.Options{VPCs: []elbv2sim.VPC{v}}); err == nil {
			s.Close()
			t.Errorf("%s: started", name)
		}
	}

	// A VPC without subnets gets one per CIDR, covering it.
	s := start(t, elbv2sim.Options{VPCs: []elbv2sim.VPC{{ID: good, CIDRs: []string{"10.0.0.0/8", "172.16.0.0/16"}}}})
	out, err := ec2Client(s).DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{good}}}})
	if err != nil || len(out.Subnets) != 2 {
		t.Fatalf("derived subnets: %+v %v", out, err)
	}
	if *out.Subnets[0].CidrBlock != "10.0.0.0/8" || *out.Subnets[0].AvailabilityZone != "us-east-1a" ||
		*out.Subnets[1].CidrBlock != "172.16.0.0/16" || *out.Subnets[1].AvailabilityZone != "us-east-1b" ||
		!idShape(*out.Subnets[0].SubnetId) || *out.Subnets[0].SubnetId == *out.Subnets[1].SubnetId {
		t.Errorf("derived subnets: %+v", out.Subnets)
	}
	// Their IPs need no zone.
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{VpcId: aws.String(good)})
	register(t, c, *g.TargetGroupArn, types.TargetDescription{Id: aws.String("10.9.9.9"), Port: aws.Int32(80)})
}

func TestRegisterTargetAvailabilityZones(t *testing.T) {
	s := start(t, elbv2sim.Options{RegistrationDelay: time.Minute})
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	reg := func(id, az string) error {
		td := types.TargetDescription{Id: aws.String(id), Port: aws.Int32(80)}
		if az != "" {
			td.AvailabilityZone = aws.String(az)
		}
		_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: g.TargetGroupArn, Targets: []types.TargetDescription{td}})
		return err
	}
	for _, tc := range []struct {
		id, az, code string
	}{
		{"127.0.0.5", "", ""},                          // in subnet a: zone detected
		{"127.0.0.6", "us-east-1a", ""},                // may name its subnet's zone
		{"127.0.0.7", "us-east-1b", "ValidationError"}, // but no other
		{"10.0.0.8", "all", "ValidationError"},         // all is for IPs outside the VPC
		{"10.0.200.1", "", "ValidationError"},          // in the VPC, in no subnet: needs a zone
		{"10.0.200.2", "us-east-1b", ""},
		{"10.0.200.3", "us-east-1z", "ValidationError"}, // not a zone of the VPC
		{"172.16.0.1", "", "ValidationError"},           // outside the VPC: needs a zone
		{"172.16.0.2", "all", ""},
		{"100.64.0.1", "us-east-1a", ""}, // RFC 6598
		{"192.168.0.1", "all", ""},
		{"8.8.8.8", "all", "InvalidTarget"}, // publicly routable
		{"54.1.2.3", "us-east-1a", "InvalidTarget"},
	} {
		err := reg(tc.id, tc.az)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%s in %q: %v", tc.id, tc.az, err)
		case tc.code != "" && apiCode(err) != tc.code:
			t.Errorf("%s in %q: want %s, got %v", tc.id, tc.az, tc.code, err)
		}
	}
	// DescribeTargetHealth reports the zone as registered.
	for _, tg := range s.Targets(*g.TargetGroupArn) {
		if tg.ID == "127.0.0.5" && tg.AvailabilityZone != "" || tg.ID == "10.0.200.2" && tg.AvailabilityZone != "us-east-1b" {
			t.Errorf("target %s zone %q", tg.ID, tg.AvailabilityZone)
		}
	}

	inst := createTG(t, c, elbv2.CreateTargetGroupInput{TargetType: types.TargetTypeEnumInstance})
	_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: inst.TargetGroupArn,
		Targets: []types.TargetDescription{{Id: aws.String("i-0123456789abcdef0"), AvailabilityZone: aws.String("us-east-1a")}}})
	wantCode(t, err, "ValidationError")
}

func TestThrottlingCodesAreRetriedAsThrottling(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	s.SetThrottle("DescribeTargetGroups", elbv2sim.Bucket{Capacity: 1, RefillPerSec: 0.001})
	s.SetThrottle(elbv2sim.ClassEC2, elbv2sim.Bucket{Capacity: 1, RefillPerSec: 0.001})
	c, ec := client(s, 1), ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL()),
		Credentials: ec2Client(s).Options().Credentials, RetryMaxAttempts: 1})
	throttles := retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}
	_, _ = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	_, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	wantCode(t, err, "Throttling")
	if throttles.IsErrorThrottle(err) != aws.TrueTernary || httpStatus(err) != http.StatusBadRequest {
		t.Errorf("ELBv2 throttling not classified as throttling: %v", err)
	}
	_, _ = ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	_, err = ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}) // the same EC2 bucket
	wantCode(t, err, "RequestLimitExceeded")
	if throttles.IsErrorThrottle(err) != aws.TrueTernary {
		t.Errorf("EC2 throttling not classified as throttling: %v", err)
	}
}

func TestUnimplementedActionsAreCounted(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	for range 2 {
		_, err := c.DescribeAccountLimits(ctx, &elbv2.DescribeAccountLimitsInput{})
		wantCode(t, err, "InvalidAction")
	}
	_, err := ec2Client(s).DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
	wantCode(t, err, "InvalidAction")
	resp, err := http.Get(s.URL() + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Operations map[string]elbv2sim.OpStats `json:"operations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if got := st.Operations["DescribeAccountLimits"]; got.Calls != 2 || got.Unimplemented != 2 || got.Errors != 2 {
		t.Errorf("DescribeAccountLimits: %+v", got)
	}
	if got := st.Operations["DescribeInstances"]; got.Unimplemented != 1 {
		t.Errorf("DescribeInstances: %+v", got)
	}
}
