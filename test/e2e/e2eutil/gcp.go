package e2eutil

import (
	"context"
	"net/http"

	"google.golang.org/api/option"

	"github.com/podlb/podlb/providers"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
	"github.com/podlb/podlb/providers/gcp/computesim"
)

// GCPProvider builds podlb's GCP provider against the emulator, sending
// PodlbGCPToken. A mutate that gives its own HTTP client must send it too
// (computesim.AuthTransport).
func GCPProvider(ctx context.Context, sim *computesim.Server, cluster, project string, mutate func(*gcpprovider.Options)) (providers.Provider, error) {
	// Tests run many bindings at once; quota-sized client buckets would
	// make them wait on each other.
	fast := providers.Limit{QPS: 200, Burst: 200}
	limits := map[string]providers.Limit{}
	for op := range gcpprovider.DefaultLimits() {
		limits[op] = fast
	}
	o := gcpprovider.Options{
		Cluster: cluster, Project: project, Endpoint: sim.URL(),
		Limits:        limits,
		ClientOptions: []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: computesim.AuthTransport(PodlbGCPToken, nil)})},
	}
	if mutate != nil {
		mutate(&o)
	}
	return gcpprovider.New(ctx, o)
}
