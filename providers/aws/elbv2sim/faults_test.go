package elbv2sim_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func TestThrottlingRecoveredByRetryer(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	g := createTG(t, client(s, 1), elbv2.CreateTargetGroupInput{})
	arn := aws.String(*g.TargetGroupArn)
	td := []types.TargetDescription{{Id: aws.String("10.0.0.1")}}

	// Two calls at once, then one every 20 ms: the standard retryer rides
	// it out.
	s.SetThrottle("RegisterTargets", elbv2sim.Bucket{Capacity: 2, RefillPerSec: 50})
	c := client(s, 20)
	for range 8 {
		if _, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: arn, Targets: td}); err != nil {
			t.Fatalf("with retries: %v", err)
		}
	}
	st := s.Stats()["RegisterTargets"]
	if st.Throttled == 0 || st.Calls != 8+st.Throttled || st.Errors != st.Throttled {
		t.Errorf("stats: %+v", st)
	}

	// An empty bucket that never refills: Throttling surfaces once retries
	// are exhausted, as HTTP 400.
	s.SetThrottle("DescribeTargetGroups", elbv2sim.Bucket{Capacity: 1, RefillPerSec: 0})
	c3 := client(s, 3)
	if _, err := c3.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
		t.Fatal(err)
	}
	_, err := c3.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	wantCode(t, err, "Throttling")
	if httpStatus(err) != http.StatusBadRequest {
		t.Errorf("status %d", httpStatus(err))
	}
	if st := s.Stats()["DescribeTargetGroups"]; st.Throttled != 3 {
		t.Errorf("three attempts should be throttled: %+v", st)
	}
	s.SetThrottle("DescribeTargetGroups", elbv2sim.Bucket{})
	if _, err := c3.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
		t.Errorf("bucket removed: %v", err)
	}
}

func TestThrottleClassesAreShared(t *testing.T) {
	o := elbv2sim.Options{Throttle: elbv2sim.AWSThrottle()}
	o.Throttle[elbv2sim.ClassTargets] = elbv2sim.Bucket{Capacity: 2, RefillPerSec: 0}
	s := start(t, o)
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	td := types.TargetDescription{Id: aws.String("10.0.0.1")}
	register(t, c, *g.TargetGroupArn, td)
	deregister(t, c, *g.TargetGroupArn, td)
	_, err := c.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: g.TargetGroupArn, Targets: []types.TargetDescription{td}})
	wantCode(t, err, "Throttling")
	// Other classes have their own buckets.
	if _, err := c.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn}); err != nil {
		t.Errorf("describe: %v", err)
	}
	// An operation's own bucket takes precedence over its class's.
	s.SetThrottle("DeregisterTargets", elbv2sim.Bucket{Capacity: 5, RefillPerSec: 1})
	deregister(t, c, *g.TargetGroupArn, td)
	// And the whole set can be switched off.
	s.SetThrottles(nil)
	register(t, c, *g.TargetGroupArn, td)
}

func TestServerErrors(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	g := createTG(t, client(s, 1), elbv2.CreateTargetGroupInput{})

	s.SetErrorRate(1)
	_, err := client(s, 1).DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	wantCode(t, err, "ServiceUnavailable")
	if httpStatus(err) != http.StatusServiceUnavailable {
		t.Errorf("status %d", httpStatus(err))
	}
	// Half the calls fail: the retryer gets through.
	s.SetErrorRate(0.5)
	c := client(s, 30)
	for range 10 {
		if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
			t.Fatalf("with retries: %v", err)
		}
	}
	s.SetErrorRate(0)
	if st := s.Stats()["DescribeTargetGroups"]; st.Injected == 0 || st.Errors != st.Injected {
		t.Errorf("stats: %+v", st)
	}

	// A specific error for the next call of one operation.
	s.InjectError("DescribeTargetHealth", "HealthUnavailable", 1)
	_, err = client(s, 1).DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn})
	var hu *types.HealthUnavailableException
	if !errors.As(err, &hu) || httpStatus(err) != http.StatusInternalServerError {
		t.Errorf("HealthUnavailable: %v (status %d)", err, httpStatus(err))
	}
	if _, err := client(s, 1).DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn}); err != nil {
		t.Errorf("only one call should fail: %v", err)
	}
	// 500s are retried by the standard retryer.
	s.InjectError("DescribeTargetHealth", "HealthUnavailable", 2)
	if _, err := client(s, 3).DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: g.TargetGroupArn}); err != nil {
		t.Errorf("retried past two HealthUnavailable: %v", err)
	}
}

func TestLatency(t *testing.T) {
	s := start(t, elbv2sim.Options{Latency: 40 * time.Millisecond})
	c := client(s, 1)
	t0 := time.Now()
	if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 40*time.Millisecond {
		t.Errorf("answered after %v", d)
	}
	s.SetLatency(0, 20*time.Millisecond)
	if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
		t.Fatal(err)
	}
}

func TestStats(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	c := client(s, 1)
	g := createTG(t, c, elbv2.CreateTargetGroupInput{})
	register(t, c, *g.TargetGroupArn, types.TargetDescription{Id: aws.String("10.0.0.1")}, types.TargetDescription{Id: aws.String("10.0.0.2")})
	register(t, c, *g.TargetGroupArn, types.TargetDescription{Id: aws.String("10.0.0.3")})
	deregister(t, c, *g.TargetGroupArn, types.TargetDescription{Id: aws.String("10.0.0.3")})
	_, _ = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{"nope"}})

	st := s.Stats()
	if r := st["RegisterTargets"]; r.Calls != 2 || r.Targets != 3 || r.MaxTargets != 2 || r.Errors != 0 {
		t.Errorf("RegisterTargets: %+v", r)
	}
	if d := st["DeregisterTargets"]; d.Calls != 1 || d.Targets != 1 {
		t.Errorf("DeregisterTargets: %+v", d)
	}
	if d := st["DescribeTargetGroups"]; d.Calls != 1 || d.Errors != 1 {
		t.Errorf("DescribeTargetGroups: %+v", d)
	}

	resp, err := http.Get(s.URL() + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Operations map[string]elbv2sim.OpStats `json:"operations"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || body.Operations["RegisterTargets"].Targets != 3 || body.Operations["CreateTargetGroup"].Calls != 1 {
		t.Errorf("JSON stats: %+v %v", body, err)
	}

	s.ResetStats()
	if len(s.Stats()) != 0 {
		t.Errorf("after reset: %+v", s.Stats())
	}
	register(t, c, *g.TargetGroupArn, types.TargetDescription{Id: aws.String("10.0.0.4")})
	req, _ := http.NewRequest(http.MethodDelete, s.URL()+"/_sim/stats", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE stats: %v %v", resp, err)
	}
	if len(s.Stats()) != 0 {
		t.Errorf("after DELETE: %+v", s.Stats())
	}
}

func TestUnknownAction(t *testing.T) {
	s := start(t, elbv2sim.Options{})
	resp, err := http.PostForm(s.URL(), map[string][]string{"Action": {"Frobnicate"}, "Version": {"2015-12-01"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestThrottleRate(t *testing.T) {
	s := start(t, elbv2sim.Options{ThrottleRate: 1})
	c := client(s, 1)
	_, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{})
	wantCode(t, err, "Throttling")
	s.SetThrottleRate(0.5)
	throttled := 0
	for range 200 {
		if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
			wantCode(t, err, "Throttling")
			throttled++
		}
	}
	// 200 draws at one half: far outside [60, 140] is not chance.
	if throttled < 60 || throttled > 140 {
		t.Errorf("%d of 200 calls throttled at rate 0.5", throttled)
	}
	if st := s.Stats()["DescribeTargetGroups"]; st.Throttled != int64(throttled)+1 {
		t.Errorf("stats %+v, want %d throttled", st, throttled+1)
	}
	s.SetThrottleRate(0)
	if _, err := c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{}); err != nil {
		t.Errorf("rate 0: %v", err)
	}
}
