package elbv2sim_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// restrictedKey signs the calls evaluated against the test's policy; the
// helpers' key "a" is not in Options.Policies and may do anything.
const restrictedKey = "AKIDRESTRICTED"

// startWithPolicy starts an emulator where restrictedKey is bound by doc,
// and returns an admin client and a restricted one.
func startWithPolicy(t *testing.T, doc string) (*elbv2sim.Server, *elbv2.Client, *elbv2.Client) {
	t.Helper()
	pol, err := elbv2sim.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	o := fast()
	o.ProvisioningDelay = -1
	o.Policies = map[string]*elbv2sim.Policy{restrictedKey: pol}
	s := start(t, o)
	restricted := elbv2.New(elbv2.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.URL()), Retryer: retryer(3)(),
		Credentials: credentials.NewStaticCredentialsProvider(restrictedKey, "secret", ""),
	})
	return s, client(s, 1), restricted
}

// wantDenied checks err is the service's 403 refusal whose message names
// the action, the resource (when not empty) and the reason.
func wantDenied(t *testing.T, err error, code, action, resource, reason string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusForbidden {
		t.Errorf("%v: want HTTP 403", err)
	}
	msg := ae.ErrorMessage()
	want := "is not authorized to perform: " + action
	if resource != "" {
		want += " on resource: " + resource
	}
	if !strings.Contains(msg, "User: arn:aws:iam::123456789012:user/"+restrictedKey+" ") || !strings.Contains(msg, want) || !strings.Contains(msg, reason) {
		t.Errorf("message %q: want the user, %q and %q", msg, want, reason)
	}
}

const noPolicyAllows = "because no identity-based policy allows"

func TestPolicyAllowsWhatAStatementAllowsAndDeniesTheRestByDefault(t *testing.T) {
	s, _, c := startWithPolicy(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"elasticloadbalancing:Describe*","Resource":"*"}}`)
	if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
		t.Fatalf("DescribeTargetGroups under Describe*: %v", err)
	}
	_, err := c.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("denied"), Protocol: types.ProtocolEnumTcp,
		Port: aws.Int32(80), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp})
	wantDenied(t, err, "AccessDenied", "elasticloadbalancing:CreateTargetGroup",
		"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/denied/*", noPolicyAllows+" the elasticloadbalancing:CreateTargetGroup action")
	// A refusal is final: the SDK's retryer, allowed 3 attempts, sends
	// the call once.
	if st := s.Stats()["CreateTargetGroup"]; st.Calls != 1 || st.Denied != 1 {
		t.Errorf("CreateTargetGroup stats %+v: want 1 call, denied", st)
	}
	// EC2 has its own code for the same refusal.
	e := ec2.New(ec2.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.URL()),
		Credentials: credentials.NewStaticCredentialsProvider(restrictedKey, "secret", "")})
	_, err = e.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
	wantDenied(t, err, "UnauthorizedOperation", "ec2:DescribeSubnets", "", noPolicyAllows+" the ec2:DescribeSubnets action")
}

func TestPolicyExplicitDenyWinsOverAnAllow(t *testing.T) {
	_, admin, c := startWithPolicy(t, `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"elasticloadbalancing:*","Resource":"*"},
		{"Effect":"Deny","Action":"elasticloadbalancing:DeleteTargetGroup","Resource":"arn:aws:elasticloadbalancing:*:*:targetgroup/keep-*/*"}]}`)
	keep := createTG(t, admin, elbv2.CreateTargetGroupInput{Name: aws.String("keep-me")})
	other := createTG(t, admin, elbv2.CreateTargetGroupInput{})
	_, err := c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: keep.TargetGroupArn})
	wantDenied(t, err, "AccessDenied", "elasticloadbalancing:DeleteTargetGroup", *keep.TargetGroupArn, "with an explicit deny in an identity-based policy")
	if _, err := c.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: other.TargetGroupArn}); err != nil {
		t.Errorf("deleting a group the Deny does not name: %v", err)
	}
}

func TestPolicyResourceMustMatchTheARNTheCallActsOn(t *testing.T) {
	_, admin, c := startWithPolicy(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow",
		"Action":["elasticloadbalancing:RegisterTargets"],"Resource":"arn:aws:elasticloadbalancing:*:*:targetgroup/ours-*/*"}}`)
	ours := createTG(t, admin, elbv2.CreateTargetGroupInput{Name: aws.String("ours-1")})
	theirs := createTG(t, admin, elbv2.CreateTargetGroupInput{Name: aws.String("theirs-1")})
	target := []types.TargetDescription{{Id: aws.String("127.0.0.1"), Port: aws.Int32(8080)}}
	if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: ours.TargetGroupArn, Targets: target}); err != nil {
		t.Errorf("registering into a group the Resource matches: %v", err)
	}
	_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: theirs.TargetGroupArn, Targets: target})
	wantDenied(t, err, "AccessDenied", "elasticloadbalancing:RegisterTargets", *theirs.TargetGroupArn, noPolicyAllows)
}

func TestPolicyResourceTagConditionReadsTheResourcesCurrentTags(t *testing.T) {
	_, admin, c := startWithPolicy(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow",
		"Action":"elasticloadbalancing:ModifyTargetGroupAttributes","Resource":"*",
		"Condition":{"StringEquals":{"aws:ResourceTag/owner":"me"}}}}`)
	mine := createTG(t, admin, elbv2.CreateTargetGroupInput{Tags: []types.Tag{{Key: aws.String("owner"), Value: aws.String("me")}}})
	yours := createTG(t, admin, elbv2.CreateTargetGroupInput{Tags: []types.Tag{{Key: aws.String("owner"), Value: aws.String("you")}}})
	untagged := createTG(t, admin, elbv2.CreateTargetGroupInput{})
	modify := func(g types.TargetGroup) error {
		_, err := c.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: g.TargetGroupArn,
			Attributes: []types.TargetGroupAttribute{{Key: aws.String("deregistration_delay.timeout_seconds"), Value: aws.String("5")}}})
		return err
	}
	if err := modify(mine); err != nil {
		t.Errorf("modifying a group tagged owner=me: %v", err)
	}
	wantDenied(t, modify(yours), "AccessDenied", "elasticloadbalancing:ModifyTargetGroupAttributes", *yours.TargetGroupArn, noPolicyAllows)
	wantDenied(t, modify(untagged), "AccessDenied", "elasticloadbalancing:ModifyTargetGroupAttributes", *untagged.TargetGroupArn, noPolicyAllows)
	// Retagging changes the decision: the condition sees current tags.
	if _, err := admin.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{*yours.TargetGroupArn},
		Tags: []types.Tag{{Key: aws.String("owner"), Value: aws.String("me")}}}); err != nil {
		t.Fatal(err)
	}
	if err := modify(yours); err != nil {
		t.Errorf("modifying a group retagged owner=me: %v", err)
	}
}

// A create carrying tags is also an AddTags on the new resource, with
// elasticloadbalancing:CreateAction set; a later AddTags is not.
func TestPolicyCreateWithTagsNeedsAddTagsWithCreateAction(t *testing.T) {
	createOnly := `{"Effect":"Allow","Action":"elasticloadbalancing:CreateTargetGroup","Resource":"*",
		"Condition":{"StringEquals":{"aws:RequestTag/cluster":"c1"}}}`
	tagOnCreate := `{"Effect":"Allow","Action":"elasticloadbalancing:AddTags","Resource":"*",
		"Condition":{"StringEquals":{"elasticloadbalancing:CreateAction":"CreateTargetGroup","aws:RequestTag/cluster":"c1"}}}`
	in := func(name, cluster string) *elbv2.CreateTargetGroupInput {
		return &elbv2.CreateTargetGroupInput{Name: aws.String(name), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80),
			VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp,
			Tags: []types.Tag{{Key: aws.String("cluster"), Value: aws.String(cluster)}}}
	}
	arnOf := func(name string) string {
		return "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/" + name + "/*"
	}

	_, _, c := startWithPolicy(t, `{"Version":"2012-10-17","Statement":[`+createOnly+`]}`)
	_, err := c.CreateTargetGroup(ctx, in("g1", "c1"))
	wantDenied(t, err, "AccessDenied", "elasticloadbalancing:AddTags", arnOf("g1"), noPolicyAllows)

	_, _, c = startWithPolicy(t, `{"Version":"2012-10-17","Statement":[`+createOnly+`,`+tagOnCreate+`]}`)
	out, err := c.CreateTargetGroup(ctx, in("g2", "c1"))
	if err != nil {
		t.Fatalf("create with the request tag and AddTags on create: %v", err)
	}
	_, err = c.CreateTargetGroup(ctx, in("g3", "c2"))
	wantDenied(t, err, "AccessDenied", "elasticloadbalancing:CreateTargetGroup", arnOf("g3"), noPolicyAllows)
	_, err = c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{*out.TargetGroups[0].TargetGroupArn},
		Tags: []types.Tag{{Key: aws.String("cluster"), Value: aws.String("c1")}}})
	wantDenied(t, err, "AccessDenied", "elasticloadbalancing:AddTags", *out.TargetGroups[0].TargetGroupArn, noPolicyAllows)
}

func TestPolicyConditionOperators(t *testing.T) {
	_, admin, c := startWithPolicy(t, `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"elasticloadbalancing:AddTags","Resource":"*",
		 "Condition":{"StringLike":{"aws:ResourceTag/team":"web-*"},"ForAllValues:StringEquals":{"aws:TagKeys":["env","tier"]}}},
		{"Effect":"Deny","Action":"elasticloadbalancing:AddTags","Resource":"*",
		 "Condition":{"StringNotEquals":{"aws:RequestTag/env":["dev","prod"]},"Null":{"aws:RequestTag/env":"false"}}}]}`)
	web := createTG(t, admin, elbv2.CreateTargetGroupInput{Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("web-a")}}})
	db := createTG(t, admin, elbv2.CreateTargetGroupInput{Tags: []types.Tag{{Key: aws.String("team"), Value: aws.String("db")}}})
	tag := func(g types.TargetGroup, kv ...string) error {
		var tags []types.Tag
		for i := 0; i < len(kv); i += 2 {
			tags = append(tags, types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
		}
		_, err := c.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{*g.TargetGroupArn}, Tags: tags})
		return err
	}
	for _, tc := range []struct {
		name   string
		g      types.TargetGroup
		kv     []string
		reason string // "" when allowed
	}{
		{"StringLike matches the resource tag", web, []string{"env", "prod"}, ""},
		{"StringLike does not match", db, []string{"env", "prod"}, noPolicyAllows},
		{"ForAllValues: a key outside the list", web, []string{"owner", "x"}, noPolicyAllows},
		{"StringNotEquals with Null false: a value outside the list", web, []string{"env", "test"}, "explicit deny"},
		{"Null false: no env tag in the request, the Deny does not apply", web, []string{"tier", "1"}, ""},
	} {
		err := tag(tc.g, tc.kv...)
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.reason != "":
			t.Run(tc.name, func(t *testing.T) {
				wantDenied(t, err, "AccessDenied", "elasticloadbalancing:AddTags", *tc.g.TargetGroupArn, tc.reason)
			})
		}
	}
}

func TestParsePolicyNamesTheElementAtFault(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"Version":"2008-10-17","Statement":[]}`, "Version"},
		{`{"Version":"2012-10-17","Statement":[{"Sid":"S1","Effect":"Permit","Action":"x","Resource":"*"}]}`, `Statement "S1": Effect "Permit"`},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}`, "Statement[0]: exactly one of Action and NotAction"},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"x","Resource":"*","Condition":{"NumericEquals":{"k":"1"}}}]}`, `Condition operator "NumericEquals"`},
	} {
		_, err := elbv2sim.ParsePolicy([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error naming %q", tc.doc, err, tc.want)
		}
	}
}
