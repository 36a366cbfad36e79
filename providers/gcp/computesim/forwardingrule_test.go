package computesim_test

import (
	"net/http"
	"net/netip"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// Every rule without an address gets an ephemeral IP of its own, as in
// GCE: two load balancers on port 80 never share one, another rule may
// join an ephemeral IP on another port, and not on a port it uses.
func TestEphemeralRulesGetAnIPOfTheirOwn(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.createHC("hc", "TCP", 1, 1)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("bs", "hc", 0)}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("bs")}}))
	rule := func(name, ip, port string) (*computepb.ForwardingRule, error) {
		err := e.opErr(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
			Name: proto.String(name), Target: proto.String("tp"), IPAddress: proto.String(ip), PortRange: proto.String(port)}}))
		if err != nil {
			return nil, err
		}
		return e.frs.Get(e.ctx, &computepb.GetGlobalForwardingRuleRequest{Project: project, ForwardingRule: name})
	}
	a, err := rule("a", "", "80")
	if err != nil {
		t.Fatal(err)
	}
	b, err := rule("b", "", "80")
	if err != nil {
		t.Fatal(err)
	}
	if a.GetIPAddress() == b.GetIPAddress() || !computesim.DefaultAddressRange.Contains(mustAddr(t, a.GetIPAddress())) {
		t.Errorf("ephemeral IPs %s and %s: want two of %s", a.GetIPAddress(), b.GetIPAddress(), computesim.DefaultAddressRange)
	}
	if _, err := rule("a-443", a.GetIPAddress(), "443"); err != nil {
		t.Errorf("another port of a's ephemeral IP: %v", err)
	}
	_, err = rule("a-again", a.GetIPAddress(), "80")
	expectErr(t, err, http.StatusBadRequest, "invalid")
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
