package aws

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// BenchmarkResolveAtStartup resolves 1,000 bindings of users' target
// groups at once, as a controller does when it starts: the production
// client-side limits against the emulator with AWS's published account
// buckets and 50-150 ms per call. It reports the time until every binding
// has its group and the calls made per operation. The bindings come all
// at once, or one every 10 ms as a controller's pass over its Services
// hands them out.
func BenchmarkResolveAtStartup(b *testing.B) {
	for _, every := range []time.Duration{0, 10 * time.Millisecond} {
		b.Run(fmt.Sprintf("arrivals-every-%s", every), func(b *testing.B) { benchmarkResolve(b, every) })
	}
}

func benchmarkResolve(b *testing.B, every time.Duration) {
	const groups = 1000
	srv, err := elbv2sim.Start(elbv2sim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c := elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL()), Credentials: simCredentials})
	arns := make([]string, groups)
	for i := range arns {
		out, err := c.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{
			Name: aws.String(fmt.Sprintf("svc-%04d", i)), Protocol: types.ProtocolEnumTcp, Port: aws.Int32(8080),
			VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: types.TargetTypeEnumIp,
		})
		if err != nil {
			b.Fatal(err)
		}
		arns[i] = aws.ToString(out.TargetGroups[0].TargetGroupArn)
	}
	srv.SetThrottles(elbv2sim.AWSThrottle())
	srv.SetLatency(50*time.Millisecond, 100*time.Millisecond)
	b.ResetTimer()
	for range b.N {
		p, err := New(ctx, Options{
			Cluster: "bench", Region: "us-east-1", VPCID: elbv2sim.DefaultVPCID,
			ELBv2Endpoint: srv.URL(), EC2Endpoint: srv.URL(), Credentials: simCredentials,
		})
		if err != nil {
			b.Fatal(err)
		}
		before := srv.Stats()
		began := time.Now()
		var wg sync.WaitGroup
		for i, arn := range arns {
			spec, err := ParseSpec([]byte(`{"arn": "` + arn + `"}`))
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(every)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := p.Ensure(ctx, &providers.Binding{
					Key:     providers.BindingKey{Namespace: "bench", Service: fmt.Sprintf("svc-%04d", i), Provider: "aws", Port: 80},
					Cluster: "bench", Protocol: "TCP", TargetPort: 8080, Mode: providers.ReadyWhenHealthy, Spec: spec,
				})
				if err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(time.Since(began).Seconds(), "s/1000-bindings")
		after := srv.Stats()
		for _, op := range []string{"DescribeTargetGroups", "DescribeTags"} {
			b.ReportMetric(float64(after[op].Calls-before[op].Calls), op+"-calls")
		}
	}
}
