package computesim_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

func TestNEGCRUD(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.createNEG(zoneA, "neg-a", 8080)
	e.createNEG(zoneA, "neg-b", 8080)
	e.createNEG(zoneB, "neg-a", 8080)

	got, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-a"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSelfLink() != negURL(zoneA, "neg-a") || got.GetSize() != 0 || got.GetDefaultPort() != 8080 ||
		got.GetDescription() != `{"cluster":"c1","service":"ns/svc"}` || got.GetNetworkEndpointType() != "GCE_VM_IP_PORT" ||
		!strings.HasSuffix(got.GetZone(), "/zones/"+zoneA) || !strings.HasSuffix(got.GetNetwork(), "/global/networks/default") {
		t.Fatalf("unexpected NEG: %v", got)
	}
	if computesim.ResourcePath(got.GetSelfLink()) != "projects/"+project+"/zones/"+zoneA+"/networkEndpointGroups/neg-a" {
		t.Fatalf("ResourcePath(%s)", got.GetSelfLink())
	}

	// Errors: duplicate, bad name, bad zone, missing, wrong type.
	_, err = e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("neg-a")}})
	expectErr(t, err, http.StatusConflict, "alreadyExists")
	for _, bad := range []string{"Neg", "1neg", "neg-", strings.Repeat("a", 64)} {
		_, err = e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
			NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String(bad)}})
		expectErr(t, err, http.StatusBadRequest, "invalid")
	}
	_, err = e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("serverless"), NetworkEndpointType: proto.String("SERVERLESS")}})
	expectErr(t, err, http.StatusBadRequest, "invalid")
	_, err = e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "nope"})
	expectErr(t, err, http.StatusNotFound, "notFound")
	_, err = e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: "other", Zone: zoneA, NetworkEndpointGroup: "neg-a"})
	expectErr(t, err, http.StatusNotFound, "notFound")

	// List with filters and pagination.
	names := func(it *compute.NetworkEndpointGroupIterator) []string {
		var out []string
		for {
			n, err := it.Next()
			if err == iterator.Done {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n.GetName())
		}
	}
	list := func(filter string, max uint32) []string {
		req := &computepb.ListNetworkEndpointGroupsRequest{Project: project, Zone: zoneA}
		if filter != "" {
			req.Filter = proto.String(filter)
		}
		if max > 0 {
			req.MaxResults = proto.Uint32(max)
		}
		return names(e.negs.List(e.ctx, req))
	}
	if got := list("", 0); fmt.Sprint(got) != "[neg-a neg-b]" {
		t.Fatalf("list: %v", got)
	}
	if got := list("", 1); fmt.Sprint(got) != "[neg-a neg-b]" {
		t.Fatalf("paged list: %v", got)
	}
	for filter, want := range map[string]string{
		`name = "neg-b"`:                   "[neg-b]",
		`name eq neg-b`:                    "[neg-b]",
		`name eq neg-.*`:                   "[neg-a neg-b]",
		`name != "neg-b"`:                  "[neg-a]",
		`(name = "neg-a") AND (size = 0)`:  "[neg-a]",
		`description = "*service*ns/svc*"`: "[neg-a neg-b]",
		`name = "zzz"`:                     "[]",
	} {
		if got := list(filter, 0); fmt.Sprint(got) != want {
			t.Errorf("filter %s: got %v want %s", filter, got, want)
		}
	}
	it := e.negs.List(e.ctx, &computepb.ListNetworkEndpointGroupsRequest{Project: project, Zone: zoneA, Filter: proto.String("name ==== x")})
	_, err = it.Next()
	expectErr(t, err, http.StatusBadRequest, "invalid")

	// Aggregated list keys items by zones/{zone}.
	agg := e.negs.AggregatedList(e.ctx, &computepb.AggregatedListNetworkEndpointGroupsRequest{Project: project, Filter: proto.String(`name = "neg-a"`)})
	var keys []string
	for {
		p, err := agg.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range p.Value.GetNetworkEndpointGroups() {
			keys = append(keys, p.Key+"/"+n.GetName())
		}
	}
	if fmt.Sprint(keys) != "[zones/us-central1-a/neg-a zones/us-central1-b/neg-a]" {
		t.Fatalf("aggregated: %v", keys)
	}

	// Delete.
	e.done(e.negs.Delete(e.ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-b"}))
	_, err = e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-b"})
	expectErr(t, err, http.StatusNotFound, "notFound")
	_, err = e.negs.Delete(e.ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-b"})
	expectErr(t, err, http.StatusNotFound, "notFound")
}

func TestAttachDetach(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	if err := e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.AddInstance(zoneB, "node-2", "10.0.0.2", loopbackPods); err != nil {
		t.Fatal(err)
	}
	e.createNEG(zoneA, "neg", 8080)

	e.done(e.attach(zoneA, "neg",
		ep("node-1", "127.23.4.5", 8080),
		ep("node-1", "127.23.4.6", 8081),
		&computepb.NetworkEndpoint{Instance: proto.String("https://www.googleapis.com/compute/v1/projects/" + project + "/zones/" + zoneA + "/instances/node-1"), IpAddress: proto.String("127.23.4.7")}, // default port
	))
	n, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg"})
	if err != nil || n.GetSize() != 3 {
		t.Fatalf("size after attach: %v %v", n.GetSize(), err)
	}
	eps := e.srv.Endpoints(zoneA, "neg")
	if len(eps) != 3 || eps[2].IPAddress != "127.23.4.7" || eps[2].Port != 8080 || eps[0].Instance != "node-1" || eps[0].AttachedAt.IsZero() {
		t.Fatalf("Endpoints: %+v", eps)
	}

	// listNetworkEndpoints, with the body the apiv1 client sends.
	it := e.negs.ListNetworkEndpoints(e.ctx, &computepb.ListNetworkEndpointsNetworkEndpointGroupsRequest{
		Project: project, Zone: zoneA, NetworkEndpointGroup: "neg",
		NetworkEndpointGroupsListEndpointsRequestResource: &computepb.NetworkEndpointGroupsListEndpointsRequest{HealthStatus: proto.String("SHOW")},
		MaxResults: proto.Uint32(2),
	})
	var listed []string
	for {
		x, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ne := x.GetNetworkEndpoint()
		listed = append(listed, fmt.Sprintf("%s/%s:%d", ne.GetInstance(), ne.GetIpAddress(), ne.GetPort()))
	}
	if fmt.Sprint(listed) != "[node-1/127.23.4.5:8080 node-1/127.23.4.6:8081 node-1/127.23.4.7:8080]" {
		t.Fatalf("listNetworkEndpoints: %v", listed)
	}

	// Synchronous validation errors.
	_, err = e.attach(zoneA, "neg", ep("node-9", "127.23.4.8", 80))
	expectErr(t, err, http.StatusBadRequest, "invalid") // unknown instance
	_, err = e.attach(zoneA, "neg", ep("node-2", "127.23.4.8", 80))
	expectErr(t, err, http.StatusBadRequest, "invalid") // instance in another zone
	_, err = e.attach(zoneA, "neg", ep("node-1", "10.9.9.9", 80))
	expectErr(t, err, http.StatusBadRequest, "invalid") // not routable to the emulator
	_, err = e.attach(zoneA, "neg", ep("node-1", "127.23.4.8", 80), ep("node-1", "127.23.4.8", 80))
	expectErr(t, err, http.StatusBadRequest, "invalid") // duplicate in request
	_, err = e.attach(zoneA, "missing", ep("node-1", "127.23.4.8", 80))
	expectErr(t, err, http.StatusNotFound, "notFound")
	var many []*computepb.NetworkEndpoint
	for i := range 501 {
		many = append(many, ep("node-1", fmt.Sprintf("127.24.%d.%d", i/200, i%200+1), 80))
	}
	_, err = e.attach(zoneA, "neg", many...)
	expectErr(t, err, http.StatusBadRequest, "invalid")
	_, err = e.detach(zoneA, "neg", many...)
	expectErr(t, err, http.StatusBadRequest, "invalid")
	// Exactly 500 is allowed.
	e.done(e.attach(zoneA, "neg", many[:500]...))
	e.done(e.detach(zoneA, "neg", many[:500]...))

	// Attaching an attached endpoint fails the operation, atomically.
	err = e.opErr(e.attach(zoneA, "neg", ep("node-1", "127.23.4.9", 80), ep("node-1", "127.23.4.5", 8080)))
	expectErr(t, err, http.StatusBadRequest, "")
	if len(e.srv.Endpoints(zoneA, "neg")) != 3 {
		t.Fatal("failed attach had an effect")
	}
	// Detaching a missing endpoint fails the operation, atomically.
	err = e.opErr(e.detach(zoneA, "neg", ep("node-1", "127.23.4.5", 8080), ep("node-1", "127.23.9.9", 80)))
	expectErr(t, err, http.StatusBadRequest, "")
	if len(e.srv.Endpoints(zoneA, "neg")) != 3 {
		t.Fatal("failed detach had an effect")
	}

	e.done(e.detach(zoneA, "neg", ep("node-1", "127.23.4.5", 8080), ep("", "127.23.4.7", 8080)))
	if eps := e.srv.Endpoints(zoneA, "neg"); len(eps) != 1 || eps[0].IPAddress != "127.23.4.6" {
		t.Fatalf("after detach: %+v", eps)
	}

	st := e.srv.Stats().Methods["networkEndpointGroups.attachNetworkEndpoints"]
	if st.MaxEndpointsCall != 501 || st.Calls < 8 || st.Errors < 6 || st.OperationsFailed != 1 {
		t.Fatalf("attach stats: %+v", st)
	}
}

func TestInstancesAPIAndVMDeletion(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.done(e.inst.Insert(e.ctx, &computepb.InsertInstanceRequest{Project: project, Zone: zoneA, InstanceResource: &computepb.Instance{
		Name:              proto.String("vm-1"),
		NetworkInterfaces: []*computepb.NetworkInterface{{NetworkIP: proto.String("127.30.0.1")}},
	}}))
	got, err := e.inst.Get(e.ctx, &computepb.GetInstanceRequest{Project: project, Zone: zoneA, Instance: "vm-1"})
	if err != nil || got.GetNetworkInterfaces()[0].GetNetworkIP() != "127.30.0.1" || got.GetStatus() != "RUNNING" {
		t.Fatalf("instance: %v %v", got, err)
	}
	_, err = e.inst.Get(e.ctx, &computepb.GetInstanceRequest{Project: project, Zone: zoneB, Instance: "vm-1"})
	expectErr(t, err, http.StatusNotFound, "notFound")
	e.createNEG(zoneA, "neg", 80)
	// An endpoint without ipAddress takes the VM's primary IP.
	e.done(e.attach(zoneA, "neg", &computepb.NetworkEndpoint{Instance: proto.String("vm-1")}))
	if eps := e.srv.Endpoints(zoneA, "neg"); len(eps) != 1 || eps[0].IPAddress != "127.30.0.1" || eps[0].Port != 80 {
		t.Fatalf("endpoints: %+v", eps)
	}
	// Deleting the VM removes its endpoints, as on GCE.
	e.done(e.inst.Delete(e.ctx, &computepb.DeleteInstanceRequest{Project: project, Zone: zoneA, Instance: "vm-1"}))
	if eps := e.srv.Endpoints(zoneA, "neg"); len(eps) != 0 {
		t.Fatalf("endpoints after VM deletion: %+v", eps)
	}
}

func TestOperationsDelayed(t *testing.T) {
	e := newEnv(t, computesim.Options{OperationDelay: 100 * time.Millisecond})
	op, err := e.negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("slow"), DefaultPort: proto.Int32(80)}})
	if err != nil {
		t.Fatal(err)
	}
	if op.Done() || op.Proto().GetStatus() != computepb.Operation_RUNNING || op.Proto().GetKind() != "compute#operation" ||
		!strings.HasSuffix(op.Proto().GetTargetLink(), "/networkEndpointGroups/slow") || op.Proto().GetOperationType() != "insert" ||
		!strings.HasSuffix(op.Proto().GetZone(), "/zones/"+zoneA) {
		t.Fatalf("fresh operation: %v", op.Proto())
	}
	// Not visible until the operation completes.
	_, err = e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "slow"})
	expectErr(t, err, http.StatusNotFound, "notFound")
	// zoneOperations.get, as op.Wait polls it.
	eventually(t, "operation DONE", 5*time.Second, func() bool {
		got, err := e.zops.Get(e.ctx, &computepb.GetZoneOperationRequest{Project: project, Zone: zoneA, Operation: op.Name()})
		if err != nil {
			t.Fatal(err)
		}
		return got.GetStatus() == computepb.Operation_DONE
	})
	if err := op.Wait(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "slow"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.zops.Get(e.ctx, &computepb.GetZoneOperationRequest{Project: project, Zone: zoneA, Operation: "operation-nope"})
	expectErr(t, err, http.StatusNotFound, "notFound")
	// The wait method returns once the operation is done.
	op2, err := e.negs.Delete(e.ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.zops.Wait(e.ctx, &computepb.WaitZoneOperationRequest{Project: project, Zone: zoneA, Operation: op2.Name()})
	if err != nil || got.GetStatus() != computepb.Operation_DONE {
		t.Fatalf("wait: %v %v", got, err)
	}
}

func TestOperationFailures(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)

	e.srv.FailNextOperation(computesim.OperationFailure{Method: "networkEndpointGroups.attachNetworkEndpoints", Code: 500})
	op, err := e.attach(zoneA, "neg", ep("node-1", "127.23.4.5", 80))
	if err != nil {
		t.Fatal(err)
	}
	err = op.Wait(e.ctx)
	expectErr(t, err, http.StatusInternalServerError, "")
	if op.Proto().GetHttpErrorStatusCode() != 500 || op.Proto().GetHttpErrorMessage() == "" || len(op.Proto().GetError().GetErrors()) != 1 {
		t.Fatalf("failed operation: %v", op.Proto())
	}
	if len(e.srv.Endpoints(zoneA, "neg")) != 0 {
		t.Fatal("failed operation had an effect")
	}

	e.srv.SetOperationFailureRate(1)
	err = e.opErr(e.attach(zoneA, "neg", ep("node-1", "127.23.4.5", 80)))
	expectErr(t, err, http.StatusServiceUnavailable, "")
	e.srv.SetOperationFailureRate(0)
	e.done(e.attach(zoneA, "neg", ep("node-1", "127.23.4.5", 80)))

	st := e.srv.Stats().Methods["networkEndpointGroups.attachNetworkEndpoints"]
	if st.Operations != 3 || st.OperationsFailed != 2 || st.Endpoints != 3 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestConcurrentAttach(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	errs := make(chan error, 10)
	for g := range 10 {
		go func() {
			var eps []*computepb.NetworkEndpoint
			for i := range 100 {
				eps = append(eps, ep("node-1", fmt.Sprintf("127.40.%d.%d", g, i+1), 80))
			}
			op, err := e.attach(zoneA, "neg", eps...)
			if err == nil {
				err = op.Wait(e.ctx)
			}
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg"})
	if err != nil || n.GetSize() != 1000 {
		t.Fatalf("size %d %v", n.GetSize(), err)
	}
}

func TestNEGEndpointQuota(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	for b := range 20 {
		var eps []*computepb.NetworkEndpoint
		for i := range 500 {
			eps = append(eps, ep("node-1", fmt.Sprintf("127.50.%d.%d", b, i%250+1), int32(1000+i/250)))
		}
		e.done(e.attach(zoneA, "neg", eps...))
	}
	_, err := e.attach(zoneA, "neg", ep("node-1", "127.51.0.1", 80))
	expectErr(t, err, http.StatusForbidden, "quotaExceeded")
}

func TestSmallerEndpointQuotaFillsUpTheSameWay(t *testing.T) {
	e := newEnv(t, computesim.Options{MaxEndpointsPerNEG: 3})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	_, err := e.attach(zoneA, "neg", ep("node-1", "127.52.0.1", 80), ep("node-1", "127.52.0.2", 80),
		ep("node-1", "127.52.0.3", 80), ep("node-1", "127.52.0.4", 80))
	expectErr(t, err, http.StatusForbidden, "quotaExceeded")
	e.done(e.attach(zoneA, "neg", ep("node-1", "127.52.0.1", 80), ep("node-1", "127.52.0.2", 80), ep("node-1", "127.52.0.3", 80)))
	_, err = e.attach(zoneA, "neg", ep("node-1", "127.52.0.4", 80))
	expectErr(t, err, http.StatusForbidden, "quotaExceeded")
}

func TestEndpointIPMustBeTheVMsPrimaryOrInItsAliasRanges(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "127.53.0.1")
	_ = e.srv.AddInstance(zoneA, "node-2", "127.54.0.1", "127.54.1.0/24")
	e.createNEG(zoneA, "neg", 80)
	refused := func(instance, ip string) {
		t.Helper()
		_, err := e.attach(zoneA, "neg", ep(instance, ip, 80))
		expectErr(t, err, http.StatusBadRequest, "invalid")
		if !strings.Contains(err.Error(), "doesn't belong to the (sub)network default or to the instance "+instance) {
			t.Fatalf("message: %v", err)
		}
	}
	// Without alias ranges only the primary IP is the VM's.
	refused("node-1", "127.53.9.9")
	// Another VM's primary IP or alias range is not this one's.
	refused("node-1", "127.54.0.1")
	refused("node-1", "127.54.1.7")
	refused("node-2", "127.54.2.1")
	if err := e.srv.SetAliasRanges(zoneA, "node-1", "127.53.1.0/24"); err != nil {
		t.Fatal(err)
	}
	refused("node-1", "127.53.2.1")
	e.done(e.attach(zoneA, "neg", ep("node-1", "127.53.1.7", 80), ep("node-1", "127.53.0.1", 81),
		ep("node-2", "127.54.1.7", 80), ep("node-2", "127.54.0.1", 80)))
	if n := len(e.srv.Endpoints(zoneA, "neg")); n != 4 {
		t.Fatalf("%d endpoints", n)
	}
	if err := e.srv.SetAliasRanges(zoneA, "node-9", "127.53.1.0/24"); err == nil {
		t.Fatal("alias ranges for a VM that does not exist")
	}
}

func TestListMethods(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-b", "10.0.0.2", loopbackPods)
	_ = e.srv.AddInstance(zoneA, "node-a", "10.0.0.1", loopbackPods)
	e.createHC("hc-1", "TCP", 2, 2)
	e.createHC("hc-2", "HTTP", 2, 2)
	e.createNEG(zoneA, "neg", 80)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("bs", "hc-1", 0, negURL(zoneA, "neg"))}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("tp"), Service: proto.String("bs")}}))
	e.done(e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project,
		ForwardingRuleResource: &computepb.ForwardingRule{Name: proto.String("fr"), Target: proto.String("tp")}}))

	var got []string
	hcs := e.hcs.List(e.ctx, &computepb.ListHealthChecksRequest{Project: project, Filter: proto.String(`type = "HTTP"`)})
	for x, err := hcs.Next(); err != iterator.Done; x, err = hcs.Next() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, x.GetName())
	}
	ins := e.inst.List(e.ctx, &computepb.ListInstancesRequest{Project: project, Zone: zoneA})
	for x, err := ins.Next(); err != iterator.Done; x, err = ins.Next() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, x.GetName())
	}
	tps := e.tps.List(e.ctx, &computepb.ListTargetTcpProxiesRequest{Project: project})
	for x, err := tps.Next(); err != iterator.Done; x, err = tps.Next() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, x.GetName())
	}
	frs := e.frs.List(e.ctx, &computepb.ListGlobalForwardingRulesRequest{Project: project})
	for x, err := frs.Next(); err != iterator.Done; x, err = frs.Next() {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, x.GetName())
	}
	if fmt.Sprint(got) != "[hc-2 node-a node-b tp fr]" {
		t.Fatalf("lists: %v", got)
	}
}
