package gcp

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// clientCall finds the Compute calls the provider makes through its
// clients: c.<client>.<Method>(.
var clientCall = regexp.MustCompile(`c\.([a-z]+)\.([A-Z][A-Za-z]+)\(`)

// clientCollections are the permission collections of the provider's
// clients (see clients in cloud.go).
var clientCollections = map[string]string{
	"negs": "networkEndpointGroups", "bs": "backendServices", "rbs": "regionBackendServices",
	"hcs": "healthChecks", "rhcs": "regionHealthChecks", "ums": "urlMaps", "rums": "regionUrlMaps",
	"thps": "targetHttpProxies", "rthps": "regionTargetHttpProxies",
	"tsps": "targetHttpsProxies", "rtsps": "regionTargetHttpsProxies",
	"ttps": "targetTcpProxies", "rttps": "regionTargetTcpProxies", "tslps": "targetSslProxies",
	"gfrs": "globalForwardingRules", "frs": "forwardingRules", "gaddr": "globalAddresses", "addr": "addresses",
	"zops": "zoneOperations", "rops": "regionOperations", "gops": "globalOperations",
}

// methodVerbs are the permissions Compute checks for each client method:
// reads of a resource's parts are authorised as get, patches as update,
// and waiting on an operation as get.
var methodVerbs = map[string]string{
	"Get": "get", "GetHealth": "get", "Wait": "get", "ListNetworkEndpoints": "get", "List": "list", "AggregatedList": "list",
	"Insert": "create", "Delete": "delete", "Patch": "update", "Update": "update",
	"SetUrlMap": "setUrlMap", "SetSslCertificates": "setSslCertificates",
	"AttachNetworkEndpoints": "attachNetworkEndpoints", "DetachNetworkEndpoints": "detachNetworkEndpoints",
}

func TestCustomRoleGrantsEveryComputeCall(t *testing.T) {
	raw, err := os.ReadFile("../../manifests/gcp/podlb-role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role struct {
		IncludedPermissions []string `json:"includedPermissions"`
	}
	if err := yaml.Unmarshal(raw, &role); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range clientCall.FindAllStringSubmatch(string(src), -1) {
			collection, verb := clientCollections[m[1]], methodVerbs[m[2]]
			if collection == "" || verb == "" {
				t.Errorf("%s: c.%s.%s: which permission does it need? Add it to the maps of this test", f, m[1], m[2])
				continue
			}
			calls++
			if perm := "compute." + collection + "." + verb; !slices.Contains(role.IncludedPermissions, perm) {
				t.Errorf("%s calls c.%s.%s, which needs %s: the custom role lacks it", f, m[1], m[2], perm)
			}
		}
	}
	if calls < 50 {
		t.Errorf("found only %d calls: the pattern misses the provider's call sites", calls)
	}
	for _, ops := range []string{"zoneOperations", "globalOperations", "regionOperations"} {
		if !slices.Contains(role.IncludedPermissions, "compute."+ops+".get") {
			t.Errorf("the custom role cannot wait for %s", ops)
		}
	}
}
