package computesim_test

import (
	"fmt"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// BenchmarkAttachDetach500 measures a full batch round trip through the real
// client while the emulator health-checks the endpoints of a backend service.
func BenchmarkAttachDetach500(b *testing.B) {
	e := newEnv(b, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "TCP", 2, 2)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("bs", "hc", 0, negURL(zoneA, "neg"))}))
	var eps []*computepb.NetworkEndpoint
	for i := range 500 {
		eps = append(eps, ep("node-1", fmt.Sprintf("127.31.%d.%d", i/250, i%250+1), 9))
	}
	b.ResetTimer()
	for range b.N {
		if err := e.opErr(e.attach(zoneA, "neg", eps...)); err != nil {
			b.Fatal(err)
		}
		if err := e.opErr(e.detach(zoneA, "neg", eps...)); err != nil {
			b.Fatal(err)
		}
	}
}
