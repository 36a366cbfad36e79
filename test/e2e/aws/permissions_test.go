package aws_test

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// The suite's controller signs with e2eutil.PodlbAWSKey, which the
// emulator holds to manifests/aws/iam-policy.json: every other test of the
// suite passing shows the policy suffices. This one shows the policy is in
// force: a create without the cluster tag, which the policy does not
// allow, is refused.
func TestPodlbIsHeldToTheShippedIAMPolicy(t *testing.T) {
	c := elbv2.New(elbv2.Options{Region: emuclient.AWSRegion, BaseEndpoint: aws.String(sim.URL()),
		Credentials: credentials.NewStaticCredentialsProvider(e2eutil.PodlbAWSKey, "secret", "")})
	_, err := c.CreateTargetGroup(context.Background(), &elbv2.CreateTargetGroupInput{Name: aws.String("untagged"),
		Protocol: types.ProtocolEnumTcp, Port: aws.Int32(80), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Fatalf("untagged CreateTargetGroup as podlb: %v, want AccessDenied", err)
	}
}
