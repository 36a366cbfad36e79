package gcp_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/option"

	"github.com/podlb/podlb/providers/gcp/computesim"
	"github.com/podlb/podlb/test/e2e/e2eutil"
)

// The suite's controller sends e2eutil.PodlbGCPToken, which the emulator
// holds to the custom role: every other test of the suite passing shows
// the role suffices. This one shows the role is in force: listing VMs,
// which it does not grant, is refused.
func TestPodlbIsHeldToTheCustomRole(t *testing.T) {
	ctx := context.Background()
	c, err := compute.NewInstancesRESTClient(ctx, option.WithEndpoint(sim.URL()),
		option.WithHTTPClient(&http.Client{Transport: computesim.AuthTransport(e2eutil.PodlbGCPToken, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.List(ctx, &computepb.ListInstancesRequest{Project: project, Zone: zones[0]}).Next()
	var ae *apierror.APIError
	if !errors.As(err, &ae) || ae.HTTPCode() != http.StatusForbidden {
		t.Fatalf("instances.list as podlb: %v, want 403", err)
	}
}
