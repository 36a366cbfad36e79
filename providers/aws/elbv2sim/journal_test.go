package elbv2sim_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// The journal names the access key each call was signed with, so tests
// can tell which of several clients sharing the emulator did what.
func TestJournalNamesTheCallersAccessKey(t *testing.T) {
	s := start(t, fast())
	clientWithKey := func(key string) *elbv2.Client {
		return elbv2.New(elbv2.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(s.URL()),
			Credentials:  credentials.NewStaticCredentialsProvider(key, "secret", ""),
		})
	}
	blue, green := clientWithKey("AKIDBLUE"), clientWithKey("AKIDGREEN")
	tg := createTG(t, blue, elbv2.CreateTargetGroupInput{})
	since := time.Now()
	ip := loopbackIP()
	target := types.TargetDescription{Id: aws.String(ip), Port: aws.Int32(8080)}
	register(t, green, *tg.TargetGroupArn, target)
	deregister(t, blue, *tg.TargetGroupArn, target)

	var got []elbv2sim.Call
	for _, c := range s.Calls(since) {
		if c.Op == "RegisterTargets" || c.Op == "DeregisterTargets" {
			got = append(got, c)
		}
	}
	if len(got) != 2 {
		t.Fatalf("journal holds %d target calls, want 2: %+v", len(got), got)
	}
	for i, want := range []struct{ op, key string }{{"RegisterTargets", "AKIDGREEN"}, {"DeregisterTargets", "AKIDBLUE"}} {
		if c := got[i]; c.Op != want.op || c.AccessKeyID != want.key || len(c.Targets) != 1 || c.Targets[0] != ip {
			t.Errorf("call %d is %+v, want %s by %s of %s", i, c, want.op, want.key, ip)
		}
	}
}
