package computesim_test

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// With DetachProgrammingDelay a detached HEALTHY endpoint keeps getting
// new connections until the load balancer learns of the detach, then
// drains: its open connections last the draining timeout after that.
func TestDetachedEndpointServesUntilTheDetachIsProgrammed(t *testing.T) {
	const tail, drain = time.Second, 400 * time.Millisecond
	e := newEnv(t, computesim.Options{DetachProgrammingDelay: tail, DrainingTimeout: drain})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "TCP", 1, 2)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project,
		BackendServiceResource: tcpBackendService("bs", "hc", 60, negURL(zoneA, "neg"))}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("global/backendServices/bs")}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: &computepb.ForwardingRule{
		Name: proto.String("fr"), Target: proto.String("projects/" + project + "/global/targetTcpProxies/tp"), PortRange: proto.String("80")}}))
	addr := e.srv.ForwardingRuleAddr("fr")
	a1, a2 := startTCPBackend(t, "127.28.0.1"), startTCPBackend(t, "127.28.0.2")
	e.done(e.attach(zoneA, "neg", ep("node-1", a1.ip, a1.port), ep("node-1", a2.ip, a2.port)))
	eventually(t, "both HEALTHY", 5*time.Second, func() bool {
		h := e.getHealth("bs", negURL(zoneA, "neg"))
		return len(h) == 2 && h[a1.ip+":"+itoa(a1.port)] == "HEALTHY" && h[a2.ip+":"+itoa(a2.port)] == "HEALTHY"
	})
	count := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			who, c, _ := dialLB(t, addr)
			if c != nil {
				_ = c.Close()
			}
			seen[who]++
		}
		return seen
	}

	// Taken before the call: the detach happens within it.
	detached := time.Now()
	e.done(e.detach(zoneA, "neg", ep("node-1", a1.ip, a1.port)))
	// The tail: the detached endpoint still gets its share...
	seen := count(6)
	if time.Since(detached) > tail {
		t.Fatalf("the connections took %v, longer than the tail they measure", time.Since(detached))
	}
	if seen[a1.ip] == 0 || seen[a2.ip] == 0 {
		t.Fatalf("new connections within the tail: %v, want both endpoints", seen)
	}
	// ...and getHealth no longer lists it.
	if st, listed := e.getHealth("bs", negURL(zoneA, "neg"))[a1.ip+":"+itoa(a1.port)]; listed {
		t.Fatalf("getHealth lists the detached endpoint as %q", st)
	}
	// A connection opened within the tail, held through the drain.
	var held net.Conn
	var heldR *bufio.Reader
	for range 10 {
		who, c, r := dialLB(t, addr)
		if who == a1.ip {
			held, heldR = c, r
			break
		}
		if c != nil {
			_ = c.Close()
		}
	}
	if held == nil {
		t.Fatal("never reached the detached endpoint within the tail")
	}
	defer held.Close()

	// Once programmed, it gets nothing new; the held connection drains.
	time.Sleep(time.Until(detached.Add(tail + 100*time.Millisecond)))
	if seen := count(6); seen[a1.ip] != 0 || seen[a2.ip] != 6 {
		t.Fatalf("after the tail: %v, want everything on %s", seen, a2.ip)
	}
	if _, err := io.WriteString(held, "still there\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := heldR.ReadString('\n'); err != nil || line != "still there\n" {
		t.Fatalf("the held connection broke before its draining timeout: %q %v", line, err)
	}
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := heldR.ReadString('\n'); err == nil {
		t.Fatal("the held connection was not closed after draining")
	}
	if since := time.Since(detached); since < tail+drain {
		t.Fatalf("closed %v after the detach, before tail and draining (%v)", since, tail+drain)
	}
}
