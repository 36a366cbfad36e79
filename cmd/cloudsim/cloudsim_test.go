package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// TestStandaloneServesBothClouds builds cloudsim, runs it as a user would
// and drives both clouds through the real SDK clients at the addresses it
// prints; SIGTERM ends it cleanly.
func TestStandaloneServesBothClouds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "cloudsim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-aws-addr", "127.0.0.1:0", "-gcp-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	endpoints := map[string]string{}
	lines := bufio.NewScanner(stdout)
	for len(endpoints) < 2 && lines.Scan() {
		if cloud, rest, ok := strings.Cut(lines.Text(), ": "); ok {
			endpoints[cloud] = url.FindString(rest)
		}
	}
	if endpoints["aws"] == "" || endpoints["gcp"] == "" {
		t.Fatalf("cloudsim printed no endpoints for both clouds: %v", endpoints)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	elb := elbv2.New(elbv2.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoints["aws"]),
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")})
	tg, err := elb.CreateTargetGroup(ctx, &elbv2.CreateTargetGroupInput{Name: aws.String("standalone"), Protocol: elbtypes.ProtocolEnumTcp,
		Port: aws.Int32(80), VpcId: aws.String(elbv2sim.DefaultVPCID), TargetType: elbtypes.TargetTypeEnumIp})
	if err != nil {
		t.Fatalf("aws: %v", err)
	}
	if got := aws.ToString(tg.TargetGroups[0].TargetGroupName); got != "standalone" {
		t.Errorf("aws: created %q", got)
	}

	negs, err := compute.NewNetworkEndpointGroupsRESTClient(ctx, option.WithEndpoint(endpoints["gcp"]), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	defer negs.Close()
	op, err := negs.Insert(ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: "p", Zone: "us-central1-a",
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("standalone"), NetworkEndpointType: proto.String("GCE_VM_IP_PORT")}})
	if err != nil {
		t.Fatalf("gcp: %v", err)
	}
	if err := op.Wait(ctx); err != nil {
		t.Fatalf("gcp operation: %v", err)
	}
	if _, err := negs.Get(ctx, &computepb.GetNetworkEndpointGroupRequest{Project: "p", Zone: "us-central1-a", NetworkEndpointGroup: "standalone"}); err != nil {
		t.Errorf("gcp get: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("cloudsim exited with %v on SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("cloudsim did not stop within 10 s of SIGTERM")
	}
}
