package computesim_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

func TestHealthCheckCRUD(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.done(e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: &computepb.HealthCheck{
		Name: proto.String("hc"), Type: proto.String("HTTP"),
		HttpHealthCheck: &computepb.HTTPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT")},
	}}))
	hc, err := e.hcs.Get(e.ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: "hc"})
	if err != nil {
		t.Fatal(err)
	}
	if hc.GetCheckIntervalSec() != 5 || hc.GetTimeoutSec() != 5 || hc.GetHealthyThreshold() != 2 || hc.GetUnhealthyThreshold() != 2 ||
		hc.GetHttpHealthCheck().GetRequestPath() != "/" || hc.GetSelfLink() != hcURL("hc") {
		t.Fatalf("defaults: %v", hc)
	}
	// TCP with a fixed port; default port 80 when nothing is said.
	e.done(e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: &computepb.HealthCheck{
		Name: proto.String("tcp"), TcpHealthCheck: &computepb.TCPHealthCheck{},
	}}))
	tcp, _ := e.hcs.Get(e.ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: "tcp"})
	if tcp.GetType() != "TCP" || tcp.GetTcpHealthCheck().GetPort() != 80 || tcp.GetTcpHealthCheck().GetPortSpecification() != "USE_FIXED_PORT" {
		t.Fatalf("tcp defaults: %v", tcp)
	}

	for name, bad := range map[string]*computepb.HealthCheck{
		"timeout > interval": {Name: proto.String("bad"), Type: proto.String("TCP"), CheckIntervalSec: proto.Int32(5), TimeoutSec: proto.Int32(6)},
		"grpc":               {Name: proto.String("bad"), Type: proto.String("GRPC")},
		"serving port+port":  {Name: proto.String("bad"), Type: proto.String("TCP"), TcpHealthCheck: &computepb.TCPHealthCheck{Port: proto.Int32(80), PortSpecification: proto.String("USE_SERVING_PORT")}},
		"threshold":          {Name: proto.String("bad"), Type: proto.String("TCP"), HealthyThreshold: proto.Int32(11)},
	} {
		_, err := e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: bad})
		c, r := apiCode(t, err)
		if c != http.StatusBadRequest || r != "invalid" {
			t.Errorf("%s: %d %s", name, c, r)
		}
	}
	_, err = e.hcs.Insert(e.ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: &computepb.HealthCheck{Name: proto.String("hc"), Type: proto.String("TCP")}})
	expectErr(t, err, http.StatusConflict, "alreadyExists")

	// Patch merges; update replaces.
	e.done(e.hcs.Patch(e.ctx, &computepb.PatchHealthCheckRequest{Project: project, HealthCheck: "hc", HealthCheckResource: &computepb.HealthCheck{
		CheckIntervalSec: proto.Int32(10), HttpHealthCheck: &computepb.HTTPHealthCheck{RequestPath: proto.String("/ready")},
	}}))
	hc, _ = e.hcs.Get(e.ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: "hc"})
	if hc.GetCheckIntervalSec() != 10 || hc.GetTimeoutSec() != 5 || hc.GetHttpHealthCheck().GetRequestPath() != "/ready" ||
		hc.GetHttpHealthCheck().GetPortSpecification() != "USE_SERVING_PORT" {
		t.Fatalf("after patch: %v", hc)
	}
	_, err = e.hcs.Patch(e.ctx, &computepb.PatchHealthCheckRequest{Project: project, HealthCheck: "hc", HealthCheckResource: &computepb.HealthCheck{TimeoutSec: proto.Int32(11)}})
	expectErr(t, err, http.StatusBadRequest, "invalid")
	e.done(e.hcs.Update(e.ctx, &computepb.UpdateHealthCheckRequest{Project: project, HealthCheck: "hc", HealthCheckResource: &computepb.HealthCheck{
		Name: proto.String("hc"), Type: proto.String("TCP"), TcpHealthCheck: &computepb.TCPHealthCheck{PortSpecification: proto.String("USE_SERVING_PORT")},
	}}))
	hc, _ = e.hcs.Get(e.ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: "hc"})
	if hc.GetType() != "TCP" || hc.HttpHealthCheck != nil || hc.GetCheckIntervalSec() != 5 {
		t.Fatalf("after update: %v", hc)
	}

	// In use by a backend service: 400 resourceInUseByAnotherResource.
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("bs"), Protocol: proto.String("TCP"), HealthChecks: []string{"global/healthChecks/hc"},
	}}))
	_, err = e.hcs.Delete(e.ctx, &computepb.DeleteHealthCheckRequest{Project: project, HealthCheck: "hc"})
	expectErr(t, err, http.StatusBadRequest, "resourceInUseByAnotherResource")
	e.done(e.hcs.Delete(e.ctx, &computepb.DeleteHealthCheckRequest{Project: project, HealthCheck: "tcp"}))
	_, err = e.hcs.Get(e.ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: "tcp"})
	expectErr(t, err, http.StatusNotFound, "notFound")
}

func TestBackendServiceValidationAndFingerprint(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	e.createNEG(zoneA, "neg-a", 80)
	e.createNEG(zoneB, "neg-b", 80)
	e.createNEG("europe-west1-b", "neg-eu", 80)
	e.createHC("hc", "HTTP", 2, 2)

	insert := func(bs *computepb.BackendService) error {
		return e.opErr(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: bs}))
	}
	backend := func(group, mode string) *computepb.Backend {
		b := &computepb.Backend{Group: proto.String(group), BalancingMode: proto.String(mode)}
		switch mode {
		case "RATE":
			b.MaxRatePerEndpoint = proto.Float32(100)
		case "CONNECTION":
			b.MaxConnectionsPerEndpoint = proto.Int32(100)
		}
		return b
	}
	svc := func(protocol string, bs ...*computepb.Backend) *computepb.BackendService {
		return &computepb.BackendService{Name: proto.String("web"), Protocol: proto.String(protocol), HealthChecks: []string{hcURL("hc")}, Backends: bs}
	}
	for name, c := range map[string]struct {
		bs     *computepb.BackendService
		code   int
		reason string
	}{
		"RATE on TCP":        {svc("TCP", backend(negURL(zoneA, "neg-a"), "RATE")), 400, "invalid"},
		"CONNECTION on HTTP": {svc("HTTP", backend(negURL(zoneA, "neg-a"), "CONNECTION")), 400, "invalid"},
		"UTILIZATION":        {svc("HTTP", &computepb.Backend{Group: proto.String(negURL(zoneA, "neg-a")), BalancingMode: proto.String("UTILIZATION"), MaxUtilization: proto.Float32(0.8)}), 400, "invalid"},
		"default mode":       {svc("HTTP", &computepb.Backend{Group: proto.String(negURL(zoneA, "neg-a")), MaxRatePerEndpoint: proto.Float32(1)}), 400, "invalid"},
		"RATE without max":   {svc("HTTP", &computepb.Backend{Group: proto.String(negURL(zoneA, "neg-a")), BalancingMode: proto.String("RATE")}), 400, "invalid"},
		"missing NEG":        {svc("HTTP", backend(negURL(zoneA, "nope"), "RATE")), 404, "notFound"},
		"duplicate group":    {svc("HTTP", backend(negURL(zoneA, "neg-a"), "RATE"), backend("projects/"+project+"/zones/"+zoneA+"/networkEndpointGroups/neg-a", "RATE")), 400, "invalid"},
		"capacityScaler":     {svc("HTTP", &computepb.Backend{Group: proto.String(negURL(zoneA, "neg-a")), BalancingMode: proto.String("RATE"), MaxRatePerEndpoint: proto.Float32(1), CapacityScaler: proto.Float32(0.05)}), 400, "invalid"},
		"no health check":    {&computepb.BackendService{Name: proto.String("web"), Protocol: proto.String("HTTP"), Backends: []*computepb.Backend{backend(negURL(zoneA, "neg-a"), "RATE")}}, 400, "invalid"},
		"missing hc":         {&computepb.BackendService{Name: proto.String("web"), HealthChecks: []string{hcURL("nope")}}, 404, "notFound"},
		"draining":           {&computepb.BackendService{Name: proto.String("web"), ConnectionDraining: &computepb.ConnectionDraining{DrainingTimeoutSec: proto.Int32(3601)}}, 400, "invalid"},
		"protocol":           {&computepb.BackendService{Name: proto.String("web"), Protocol: proto.String("UDP")}, 400, "invalid"},
	} {
		c1, r := apiCode(t, insert(c.bs))
		if c1 != c.code || r != c.reason {
			t.Errorf("%s: got %d %s, want %d %s", name, c1, r, c.code, c.reason)
		}
	}

	// A valid one, referencing the NEG by the emulator's own URL form.
	own := e.srv.URL() + "/compute/v1/projects/" + project + "/zones/" + zoneA + "/networkEndpointGroups/neg-a"
	if err := insert(svc("HTTP", backend(own, "RATE"))); err != nil {
		t.Fatal(err)
	}
	err := insert(svc("HTTP"))
	expectErr(t, err, http.StatusConflict, "alreadyExists")
	got, err := e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetBackends()[0].GetGroup() != negURL(zoneA, "neg-a") || got.GetBackends()[0].GetCapacityScaler() != 1 || got.GetFingerprint() == "" ||
		got.GetConnectionDraining().GetDrainingTimeoutSec() != 0 || got.GetKind() != "compute#backendService" {
		t.Fatalf("backend service: %v", got)
	}

	// NEG in use by the backend service cannot be deleted.
	_, err = e.negs.Delete(e.ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-a"})
	expectErr(t, err, http.StatusBadRequest, "resourceInUseByAnotherResource")

	// Fingerprints: stale answers 412, current works and changes it, an
	// omitted one is accepted.
	fp := got.GetFingerprint()
	e.done(e.bs.Patch(e.ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: &computepb.BackendService{
		Fingerprint: proto.String(fp),
		Backends:    []*computepb.Backend{backend(negURL(zoneA, "neg-a"), "RATE"), backend(negURL(zoneB, "neg-b"), "RATE")},
	}}))
	_, err = e.bs.Patch(e.ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: &computepb.BackendService{
		Fingerprint: proto.String(fp), Description: proto.String("stale"),
	}})
	expectErr(t, err, http.StatusPreconditionFailed, "conditionNotMet")
	got, _ = e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "web"})
	if got.GetFingerprint() == fp || len(got.GetBackends()) != 2 || got.GetProtocol() != "HTTP" || len(got.GetHealthChecks()) != 1 {
		t.Fatalf("after patch: %v", got)
	}
	fp2 := got.GetFingerprint()
	// Without a fingerprint, patch and update fail as with a stale one.
	draining := &computepb.BackendService{ConnectionDraining: &computepb.ConnectionDraining{DrainingTimeoutSec: proto.Int32(30)}}
	_, err = e.bs.Patch(e.ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: draining})
	expectErr(t, err, http.StatusPreconditionFailed, "conditionNotMet")
	noFingerprint := svc("HTTP", backend(negURL(zoneB, "neg-b"), "RATE"))
	_, err = e.bs.Update(e.ctx, &computepb.UpdateBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: noFingerprint})
	expectErr(t, err, http.StatusPreconditionFailed, "conditionNotMet")
	draining.Fingerprint = proto.String(fp2)
	e.done(e.bs.Patch(e.ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: draining}))
	got, _ = e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "web"})
	if got.GetFingerprint() == fp2 || got.GetConnectionDraining().GetDrainingTimeoutSec() != 30 || len(got.GetBackends()) != 2 {
		t.Fatalf("after the patch: %v", got)
	}
	// Update replaces the whole resource, with the same fingerprint rule.
	upd := svc("HTTP", backend(negURL(zoneB, "neg-b"), "RATE"))
	upd.Fingerprint = proto.String(fp2)
	_, err = e.bs.Update(e.ctx, &computepb.UpdateBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: upd})
	expectErr(t, err, http.StatusPreconditionFailed, "conditionNotMet")
	upd.Fingerprint = got.Fingerprint
	e.done(e.bs.Update(e.ctx, &computepb.UpdateBackendServiceRequest{Project: project, BackendService: "web", BackendServiceResource: upd}))
	got, _ = e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "web"})
	if len(got.GetBackends()) != 1 || got.GetConnectionDraining().GetDrainingTimeoutSec() != 0 {
		t.Fatalf("after update: %v", got)
	}
	// neg-a is free again.
	e.done(e.negs.Delete(e.ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "neg-a"}))

	// List.
	it := e.bs.List(e.ctx, &computepb.ListBackendServicesRequest{Project: project})
	n := 0
	for {
		_, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("list: %d", n)
	}

	// Regional backend services: only NEGs of their region.
	rbsInsert := func(group string) error {
		return e.opErr(e.rbs.Insert(e.ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: region, BackendServiceResource: &computepb.BackendService{
			Name: proto.String("regional"), Protocol: proto.String("HTTP"), HealthChecks: []string{hcURL("hc")},
			Backends: []*computepb.Backend{backend(group, "RATE")},
		}}))
	}
	expectErr(t, rbsInsert(negURL("europe-west1-b", "neg-eu")), http.StatusBadRequest, "invalid")
	if err := rbsInsert(negURL(zoneB, "neg-b")); err != nil {
		t.Fatal(err)
	}
	rg, err := e.rbs.Get(e.ctx, &computepb.GetRegionBackendServiceRequest{Project: project, Region: region, BackendService: "regional"})
	if err != nil || !strings.Contains(rg.GetSelfLink(), "/regions/"+region+"/backendServices/regional") || !strings.HasSuffix(rg.GetRegion(), "/regions/"+region) {
		t.Fatalf("regional get: %v %v", rg, err)
	}
	e.done(e.rbs.Patch(e.ctx, &computepb.PatchRegionBackendServiceRequest{Project: project, Region: region, BackendService: "regional",
		BackendServiceResource: &computepb.BackendService{Fingerprint: rg.Fingerprint, Description: proto.String("x")}}))
	_, err = e.rbs.Patch(e.ctx, &computepb.PatchRegionBackendServiceRequest{Project: project, Region: region, BackendService: "regional",
		BackendServiceResource: &computepb.BackendService{Fingerprint: rg.Fingerprint, Description: proto.String("y")}})
	expectErr(t, err, http.StatusPreconditionFailed, "conditionNotMet")
	health, err := e.rbs.GetHealth(e.ctx, &computepb.GetHealthRegionBackendServiceRequest{Project: project, Region: region, BackendService: "regional",
		ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: proto.String(negURL(zoneB, "neg-b"))}})
	if err != nil || len(health.GetHealthStatus()) != 0 || health.GetKind() != "compute#backendServiceGroupHealth" {
		t.Fatalf("regional getHealth: %v %v", health, err)
	}
	rit := e.rbs.List(e.ctx, &computepb.ListRegionBackendServicesRequest{Project: project, Region: region})
	if x, err := rit.Next(); err != nil || x.GetName() != "regional" {
		t.Fatalf("regional list: %v %v", x, err)
	}
	e.done(e.rbs.Delete(e.ctx, &computepb.DeleteRegionBackendServiceRequest{Project: project, Region: region, BackendService: "regional"}))

	// getHealth errors.
	_, err = e.bs.GetHealth(e.ctx, &computepb.GetHealthBackendServiceRequest{Project: project, BackendService: "nope",
		ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: proto.String(negURL(zoneB, "neg-b"))}})
	expectErr(t, err, http.StatusNotFound, "notFound")
	_, err = e.bs.GetHealth(e.ctx, &computepb.GetHealthBackendServiceRequest{Project: project, BackendService: "web",
		ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: proto.String(negURL("europe-west1-b", "neg-eu"))}})
	expectErr(t, err, http.StatusBadRequest, "invalid")

	e.done(e.bs.Delete(e.ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: "web"}))
	_, err = e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "web"})
	expectErr(t, err, http.StatusNotFound, "notFound")
}

func TestHealthTransitions(t *testing.T) {
	e := newEnv(t, computesim.Options{})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "HTTP", 2, 2)
	web := startHTTPBackend(t, "127.23.1.1")
	sick := startHTTPBackend(t, "127.23.1.2")
	sick.status.Store(503)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("web"), Protocol: proto.String("HTTP"), HealthChecks: []string{hcURL("hc")},
		Backends: []*computepb.Backend{{Group: proto.String(negURL(zoneA, "neg")), BalancingMode: proto.String("RATE"), MaxRatePerEndpoint: proto.Float32(10)}},
	}}))
	e.done(e.attach(zoneA, "neg", ep("node-1", web.ip, web.port), ep("node-1", sick.ip, sick.port), ep("node-1", "127.23.1.3", 1)))
	webKey, sickKey, deadKey := web.ip+":"+itoa(web.port), sick.ip+":"+itoa(sick.port), "127.23.1.3:1"

	// A freshly attached endpoint is UNKNOWN before its checks pass.
	h := e.srv.Health("web")
	if len(h) != 3 || h[0].State != computesim.StateUnknown {
		t.Fatalf("just attached: %+v", h)
	}
	eventually(t, "states settle", 5*time.Second, func() bool {
		h := e.getHealth("web", negURL(zoneA, "neg"))
		return h[webKey] == "HEALTHY" && h[sickKey] == "UNHEALTHY" && h[deadKey] == "UNHEALTHY"
	})
	for _, x := range e.srv.Health("web") {
		if x.IPAddress == web.ip && (x.FirstHealthyAt.Before(x.AttachedAt) || x.FirstHealthyAt.IsZero()) {
			t.Fatalf("times: %+v", x)
		}
	}

	// Health keeps being checked: the backend failing, stopping, coming back.
	web.status.Store(500)
	eventually(t, "web UNHEALTHY on 500", 5*time.Second, func() bool { return e.getHealth("web", negURL(zoneA, "neg"))[webKey] == "UNHEALTHY" })
	web.status.Store(200)
	eventually(t, "web HEALTHY again", 5*time.Second, func() bool { return e.getHealth("web", negURL(zoneA, "neg"))[webKey] == "HEALTHY" })
	web.stop()
	eventually(t, "web UNHEALTHY when stopped", 5*time.Second, func() bool { return e.getHealth("web", negURL(zoneA, "neg"))[webKey] == "UNHEALTHY" })
	web.restart(t)
	sick.status.Store(200)
	eventually(t, "both HEALTHY", 5*time.Second, func() bool {
		h := e.getHealth("web", negURL(zoneA, "neg"))
		return h[webKey] == "HEALTHY" && h[sickKey] == "HEALTHY"
	})

	// listNetworkEndpoints with healthStatus SHOW reports the same.
	it := e.negs.ListNetworkEndpoints(e.ctx, &computepb.ListNetworkEndpointsNetworkEndpointGroupsRequest{
		Project: project, Zone: zoneA, NetworkEndpointGroup: "neg",
		NetworkEndpointGroupsListEndpointsRequestResource: &computepb.NetworkEndpointGroupsListEndpointsRequest{HealthStatus: proto.String("SHOW")},
	})
	x, err := it.Next()
	if err != nil || len(x.GetHealths()) != 1 || x.GetHealths()[0].GetHealthState() != "HEALTHY" ||
		!strings.HasSuffix(x.GetHealths()[0].GetBackendService().GetBackendService(), "/global/backendServices/web") ||
		x.GetHealths()[0].GetHealthCheck().GetHealthCheck() != hcURL("hc") {
		t.Fatalf("listNetworkEndpoints SHOW: %v %v", x, err)
	}

	// getHealth answers instance URLs and ports.
	resp, err := e.bs.GetHealth(e.ctx, &computepb.GetHealthBackendServiceRequest{Project: project, BackendService: "web",
		ResourceGroupReferenceResource: &computepb.ResourceGroupReference{Group: proto.String("projects/" + project + "/zones/" + zoneA + "/networkEndpointGroups/neg")}})
	if err != nil || len(resp.GetHealthStatus()) != 3 ||
		resp.GetHealthStatus()[0].GetInstance() != "https://www.googleapis.com/compute/v1/projects/"+project+"/zones/"+zoneA+"/instances/node-1" {
		t.Fatalf("getHealth: %v %v", resp, err)
	}

	// Detached without draining: gone at once.
	e.done(e.detach(zoneA, "neg", ep("node-1", "127.23.1.3", 1)))
	if _, ok := e.getHealth("web", negURL(zoneA, "neg"))[deadKey]; ok {
		t.Fatal("detached endpoint still reported")
	}
}

func TestTCPHealthCheckScale(t *testing.T) {
	e := newEnv(t, computesim.Options{HealthCheckInterval: 200 * time.Millisecond, HealthCheckTimeout: 100 * time.Millisecond})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "TCP", 2, 2)
	up := startTCPBackend(t, "127.25.0.1")
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("bs", "hc", 0, negURL(zoneA, "neg"))}))
	// 1,500 endpoints nobody listens on, plus one that is up.
	for b := range 3 {
		var eps []*computepb.NetworkEndpoint
		for i := range 500 {
			eps = append(eps, ep("node-1", "127.26."+itoa(int32(b))+"."+itoa(int32(i%250+1)), int32(1000+i/250)))
		}
		e.done(e.attach(zoneA, "neg", eps...))
	}
	e.done(e.attach(zoneA, "neg", ep("node-1", up.ip, up.port)))
	eventually(t, "all endpoints checked", 20*time.Second, func() bool {
		h := e.srv.Health("bs")
		if len(h) != 1501 {
			return false
		}
		for _, x := range h {
			want := computesim.StateUnhealthy
			if x.IPAddress == up.ip {
				want = computesim.StateHealthy
			}
			if x.State != want {
				return false
			}
		}
		return true
	})
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// A newly attached endpoint is not checked (so never HEALTHY, never
// served) until its programming delay has passed.
func TestProgrammingDelayHoldsNewEndpoints(t *testing.T) {
	const delay = 800 * time.Millisecond
	e := newEnv(t, computesim.Options{ProgrammingDelay: delay, HealthCheckInterval: 50 * time.Millisecond})
	_ = e.srv.AddInstance(zoneA, "node-1", "10.0.0.1", loopbackPods)
	e.createNEG(zoneA, "neg", 80)
	e.createHC("hc", "HTTP", 2, 2)
	web := startHTTPBackend(t, "127.23.2.1")
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: &computepb.BackendService{
		Name: proto.String("web"), Protocol: proto.String("HTTP"), HealthChecks: []string{hcURL("hc")},
		Backends: []*computepb.Backend{{Group: proto.String(negURL(zoneA, "neg")), BalancingMode: proto.String("RATE"), MaxRatePerEndpoint: proto.Float32(10)}},
	}}))
	e.done(e.attach(zoneA, "neg", ep("node-1", web.ip, web.port)))
	key := web.ip + ":" + itoa(web.port)
	attached := time.Now()
	for time.Since(attached) < delay/2 {
		if s := e.getHealth("web", negURL(zoneA, "neg"))[key]; s == "HEALTHY" {
			t.Fatalf("HEALTHY %v after attach, before the programming delay of %v", time.Since(attached), delay)
		}
		time.Sleep(20 * time.Millisecond)
	}
	eventually(t, "HEALTHY once programmed", 5*time.Second, func() bool { return e.getHealth("web", negURL(zoneA, "neg"))[key] == "HEALTHY" })
	for _, x := range e.srv.Health("web") {
		if x.FirstHealthyAt.Sub(x.AttachedAt) < delay {
			t.Errorf("first HEALTHY %v after attach, want at least %v", x.FirstHealthyAt.Sub(x.AttachedAt), delay)
		}
	}
}
