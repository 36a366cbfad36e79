package computesim_test

import (
	"net/http"
	"strings"
	"testing"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers/gcp/computesim"
)

// restrictedToken identifies the caller held to the test's permissions;
// the env's own clients send no token and may do anything.
const restrictedToken = "podlb-token"

func restrictedOptions(e *env) []option.ClientOption {
	return []option.ClientOption{option.WithEndpoint(e.srv.URL()),
		option.WithHTTPClient(&http.Client{Transport: computesim.AuthTransport(restrictedToken, nil)})}
}

// wantForbidden checks err is GCE's 403 for a missing permission, naming
// it and the resource.
func wantForbidden(t *testing.T, err error, permission, resource string) {
	t.Helper()
	expectErr(t, err, http.StatusForbidden, "forbidden")
	if want := "Required '" + permission + "' permission for '" + resource + "'"; !strings.Contains(err.Error(), want) {
		t.Errorf("%v: want %q", err, want)
	}
}

func TestPermissionsEachMethodNeedsItsOwnAndUseOfWhatItNames(t *testing.T) {
	granted := []string{"compute.networkEndpointGroups.create", "compute.networkEndpointGroups.get",
		"compute.zoneOperations.get", "compute.networks.use", "compute.backendServices.get", "compute.backendServices.update"}
	e := newEnv(t, computesim.Options{Permissions: map[string][]string{restrictedToken: granted}})
	negs, err := compute.NewNetworkEndpointGroupsRESTClient(e.ctx, restrictedOptions(e)...)
	if err != nil {
		t.Fatal(err)
	}
	defer negs.Close()
	bs, err := compute.NewBackendServicesRESTClient(e.ctx, restrictedOptions(e)...)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	negPath := "projects/" + project + "/zones/" + zoneA + "/networkEndpointGroups/"

	// Granted: create (which names the network, so uses it), wait, get.
	op, err := negs.Insert(e.ctx, &computepb.InsertNetworkEndpointGroupRequest{Project: project, Zone: zoneA,
		NetworkEndpointGroupResource: &computepb.NetworkEndpointGroup{Name: proto.String("mine"),
			NetworkEndpointType: proto.String("GCE_VM_IP_PORT"), DefaultPort: proto.Int32(80), Network: proto.String("default")}})
	e.done(op, err)
	if _, err := negs.Get(e.ctx, &computepb.GetNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "mine"}); err != nil {
		t.Errorf("get with compute.networkEndpointGroups.get: %v", err)
	}

	// Not granted: delete and list.
	_, err = negs.Delete(e.ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: project, Zone: zoneA, NetworkEndpointGroup: "mine"})
	wantForbidden(t, err, "compute.networkEndpointGroups.delete", negPath+"mine")
	it := negs.List(e.ctx, &computepb.ListNetworkEndpointGroupsRequest{Project: project, Zone: zoneA})
	_, err = it.Next()
	wantForbidden(t, err, "compute.networkEndpointGroups.list", "projects/"+project+"/zones/"+zoneA+"/networkEndpointGroups")
	// A 403 is final: the client does not retry it.
	if st := e.srv.Stats().Methods["networkEndpointGroups.delete"]; st.Calls != 1 || st.Forbidden != 1 {
		t.Errorf("networkEndpointGroups.delete stats %+v: want one refused call", st)
	}

	// Attaching needs its own permission and use of the VM each endpoint
	// names.
	if err := e.srv.AddInstance(zoneA, "vm-1", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	attach := func() error {
		_, err := negs.AttachNetworkEndpoints(e.ctx, &computepb.AttachNetworkEndpointsNetworkEndpointGroupRequest{
			Project: project, Zone: zoneA, NetworkEndpointGroup: "mine",
			NetworkEndpointGroupsAttachEndpointsRequestResource: &computepb.NetworkEndpointGroupsAttachEndpointsRequest{
				NetworkEndpoints: []*computepb.NetworkEndpoint{ep("vm-1", "127.0.0.1", 80)}}})
		return err
	}
	wantForbidden(t, attach(), "compute.networkEndpointGroups.attachNetworkEndpoints", negPath+"mine")
	e.srv.SetPermissions(restrictedToken, append(granted, "compute.networkEndpointGroups.attachNetworkEndpoints"))
	wantForbidden(t, attach(), "compute.instances.use", "projects/"+project+"/zones/"+zoneA+"/instances/vm-1")

	// Adding the NEG to a backend service uses it.
	e.createHC("hc", "TCP", 1, 1)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("svc", "hc", 0)}))
	patch := func() error {
		cur, err := e.bs.Get(e.ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: "svc"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = bs.Patch(e.ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: "svc",
			BackendServiceResource: &computepb.BackendService{Fingerprint: cur.Fingerprint, Backends: []*computepb.Backend{{Group: proto.String(negURL(zoneA, "mine")),
				BalancingMode: proto.String("CONNECTION"), MaxConnectionsPerEndpoint: proto.Int32(10)}}}})
		return err
	}
	wantForbidden(t, patch(), "compute.networkEndpointGroups.use", negPath+"mine")
	e.srv.SetPermissions(restrictedToken, append(granted, "compute.networkEndpointGroups.use"))
	if err := patch(); err != nil {
		t.Errorf("patch with update and the NEG's use: %v", err)
	}
}

func TestPermissionsAForwardingRuleUsesItsTargetAndCallersWithoutATokenMayDoAnything(t *testing.T) {
	e := newEnv(t, computesim.Options{Permissions: map[string][]string{restrictedToken: {"compute.globalForwardingRules.create"}}})
	e.createHC("hc", "TCP", 1, 1)
	e.done(e.bs.Insert(e.ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: tcpBackendService("svc", "hc", 0)}))
	e.done(e.tps.Insert(e.ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: &computepb.TargetTcpProxy{
		Name: proto.String("proxy"), Service: proto.String("projects/" + project + "/global/backendServices/svc")}}))
	frs, err := compute.NewGlobalForwardingRulesRESTClient(e.ctx, restrictedOptions(e)...)
	if err != nil {
		t.Fatal(err)
	}
	defer frs.Close()
	rule := &computepb.ForwardingRule{Name: proto.String("fr"), PortRange: proto.String("8080"), LoadBalancingScheme: proto.String("EXTERNAL"),
		Target: proto.String("projects/" + project + "/global/targetTcpProxies/proxy")}
	_, err = frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: rule})
	wantForbidden(t, err, "compute.targetTcpProxies.use", "projects/"+project+"/global/targetTcpProxies/proxy")
	// The env's clients send no token: they act as the project's owner.
	if _, err := e.frs.Insert(e.ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: rule}); err != nil {
		t.Errorf("insert without a token: %v", err)
	}
}
