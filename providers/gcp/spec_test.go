package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"

	"github.com/podlb/podlb/providers"
)

func TestParseSpecAccepts(t *testing.T) {
	for _, raw := range []string{
		`{}`,
		`{"name":"web-80"}`,
		`{"backendService":"web"}`,
		`{"backendService":"projects/p-1/global/backendServices/web","balancingMode":"RATE","maxRatePerEndpoint":50}`,
		`{"backendService":"regions/us-central1/backendServices/web","maxConnectionsPerEndpoint":10,"capacityScaler":0}`,
		`{"backendService":"https://www.googleapis.com/compute/v1/projects/p/regions/europe-west1/backendServices/tcp","balancingMode":"CONNECTION","maxConnectionsPerEndpoint":1,"capacityScaler":0.5}`,
		`{"backendService":"global/backendServices/web","capacityScaler":1}`,
	} {
		if _, err := ParseSpec(json.RawMessage(raw)); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

func TestParseSpecRejectsNamingTheField(t *testing.T) {
	long := strings.Repeat("a", 64)
	cases := []struct{ raw, field string }{
		{`{"nam":"x"}`, ""},
		{`[]`, ""},
		{`{} {}`, ""},
		{`{"name":"Web"}`, "name"},
		{`{"name":"9web"}`, "name"},
		{`{"name":"web-"}`, "name"},
		{`{"name":"` + long + `"}`, "name"},
		{`{"backendService":"projects/p/global/urlMaps/x"}`, "backendService"},
		{`{"backendService":"http://example.com/x"}`, "backendService"},
		{`{"backendService":"Web"}`, "backendService"},
		{`{"backendService":"ftp://x/compute/v1/global/backendServices/x"}`, "backendService"},
		{`{"backendService":"regions//backendServices/x"}`, "backendService"},
		{`{"balancingMode":"RATE","maxRatePerEndpoint":1}`, "balancingMode"},
		{`{"capacityScaler":1}`, "capacityScaler"},
		{`{"maxRatePerEndpoint":1}`, "maxRatePerEndpoint"},
		{`{"maxConnectionsPerEndpoint":1}`, "maxConnectionsPerEndpoint"},
		{`{"backendService":"web","balancingMode":"UTILIZATION"}`, "balancingMode"},
		{`{"backendService":"web","balancingMode":"rate"}`, "balancingMode"},
		{`{"backendService":"web","balancingMode":"RATE"}`, "maxRatePerEndpoint"},
		{`{"backendService":"web","balancingMode":"CONNECTION"}`, "maxConnectionsPerEndpoint"},
		{`{"backendService":"web","balancingMode":"RATE","maxRatePerEndpoint":0}`, "maxRatePerEndpoint"},
		{`{"backendService":"web","balancingMode":"RATE","maxRatePerEndpoint":5,"maxConnectionsPerEndpoint":5}`, "maxConnectionsPerEndpoint"},
		{`{"backendService":"web","balancingMode":"RATE","maxConnectionsPerEndpoint":5}`, "maxConnectionsPerEndpoint"},
		{`{"backendService":"web","balancingMode":"CONNECTION","maxRatePerEndpoint":5}`, "maxRatePerEndpoint"},
		{`{"backendService":"web","maxConnectionsPerEndpoint":-1}`, "maxConnectionsPerEndpoint"},
		{`{"backendService":"web","capacityScaler":0.05}`, "capacityScaler"},
		{`{"backendService":"web","capacityScaler":1.5}`, "capacityScaler"},
	}
	for _, c := range cases {
		_, err := ParseSpec(json.RawMessage(c.raw))
		if err == nil {
			t.Errorf("%s: accepted", c.raw)
			continue
		}
		var pe *providers.Error
		if !errors.As(err, &pe) || pe.Class != providers.Invalid || pe.Field != c.field {
			t.Errorf("%s: got %#v (%v), want Invalid naming field %q", c.raw, pe, err, c.field)
		}
	}
}

func TestParseServiceRef(t *testing.T) {
	cases := map[string]serviceRef{
		"web":                                      {Name: "web"},
		"global/backendServices/web":               {Name: "web"},
		"regions/us-east1/backendServices/web":     {Region: "us-east1", Name: "web"},
		"projects/p/global/backendServices/web":    {Project: "p", Name: "web"},
		"projects/p/regions/r1/backendServices/ab": {Project: "p", Region: "r1", Name: "ab"},
		"https://compute.googleapis.com/compute/v1/projects/p/global/backendServices/web": {Project: "p", Name: "web"},
	}
	for in, want := range cases {
		got, err := parseServiceRef(in)
		if err != nil || got != want {
			t.Errorf("%s: got %+v, %v; want %+v", in, got, err, want)
		}
	}
	if got := (serviceRef{Name: "web"}).path("proj"); got != "projects/proj/global/backendServices/web" {
		t.Errorf("path: %s", got)
	}
}

func TestNEGName(t *testing.T) {
	key := func(ns, svc string, port int32) providers.BindingKey {
		return providers.BindingKey{Namespace: ns, Service: svc, Provider: "gcp", Port: port}
	}
	long := strings.Repeat("verylongname", 10)
	names := map[string]string{}
	inputs := []struct {
		cluster string
		key     providers.BindingKey
	}{
		{"prod", key("default", "web", 80)},
		{"prod", key("default", "web", 443)},
		{"prod", key("default", "web2", 80)},
		{"prod", key("default2", "web", 80)},
		{"staging", key("default", "web", 80)},
		{"prod-eu-west-cluster-1", key(long, long, 65535)},
		{"prod-eu-west-cluster-1", key(long, long+"x", 65535)},
		{"prod-eu-west-cluster-1", key(long+"x", long, 65535)},
		{"prod-eu-west-cluster-2", key(long, long, 65535)},
		{"Prod_Cluster!", key("a-", "-b", 1)},
		{"", key("", "", 1)},
		{"1234", key("9ns", "svc", 8080)},
	}
	for _, in := range inputs {
		n := NEGName(in.cluster, in.key)
		if len(n) > 63 || !rfc1035.MatchString(n) {
			t.Errorf("%q %v: %q is not a valid NEG name", in.cluster, in.key, n)
		}
		if n != NEGName(in.cluster, in.key) {
			t.Errorf("%q: not deterministic", n)
		}
		id := fmt.Sprint(in.cluster, in.key)
		if prev, dup := names[n]; dup {
			t.Errorf("%q and %q both named %q", prev, id, n)
		}
		names[n] = id
	}
	if n := NEGName("prod", key("default", "web", 80)); !strings.HasPrefix(n, "pl-prod-default-web-80-") {
		t.Errorf("name %q is not readable", n)
	}
}

func TestOwnership(t *testing.T) {
	k := providers.BindingKey{Namespace: "ns", Service: "web", Provider: "gcp", Port: 80}
	d := Description("c1", k)
	if !OwnedBy(d, "c1", k) {
		t.Fatalf("own description %s not recognised", d)
	}
	other := k
	other.Port = 81
	for _, c := range []struct {
		desc, cluster string
		key           providers.BindingKey
	}{
		{d, "c2", k},
		{d, "c1", other},
		{"", "c1", k},
		{"created by hand", "c1", k},
		{`{"cluster":"c1","namespace":"ns","service":"web","port":80}`, "c1", k},
	} {
		if OwnedBy(c.desc, c.cluster, c.key) {
			t.Errorf("%q claimed for %s %v", c.desc, c.cluster, c.key)
		}
	}
}

func TestMapState(t *testing.T) {
	for in, want := range map[string]providers.State{
		"HEALTHY": providers.Healthy, "UNHEALTHY": providers.Unhealthy, "DRAINING": providers.Draining,
		"UNKNOWN": providers.Pending, "": providers.Pending, "TIMEOUT": providers.Pending,
	} {
		if got := mapState(in); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func TestClassify(t *testing.T) {
	apiErr := func(code int, reason string) error {
		ge := &googleapi.Error{Code: code, Message: reason}
		if reason != "" {
			ge.Errors = []googleapi.ErrorItem{{Reason: reason}}
		}
		// As the Compute client returns it, wrapped by a caller.
		return fmt.Errorf("call: %w", ge)
	}
	for _, c := range []struct {
		err  error
		want providers.Class
	}{
		{apiErr(403, "rateLimitExceeded"), providers.Throttled},
		{apiErr(429, ""), providers.Throttled},
		{apiErr(404, "notFound"), providers.NotFound},
		{apiErr(400, "invalid"), providers.Invalid},
		{apiErr(400, "resourceInUseByAnotherResource"), providers.Invalid},
		{apiErr(403, "quotaExceeded"), providers.Invalid},
		{apiErr(403, "forbidden"), providers.Invalid},
		{apiErr(412, "conditionNotMet"), providers.Transient},
		{apiErr(409, "alreadyExists"), providers.Transient},
		{apiErr(503, "backendError"), providers.Transient},
		{errors.New("connection reset"), providers.Transient},
	} {
		if got := providers.ClassOf(classify("test", c.err)); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, got, c.want)
		}
	}
	if !isCode(classify("test", apiErr(http.StatusConflict, "alreadyExists")), 409) {
		t.Error("classified error lost its code")
	}
}

// Compute's calls are sent again, each with a token of its own, only
// when that is safe and may help: throttled calls (they did nothing) and
// reads that met a server error; never a write that may have taken
// effect, nor a read at rest put off for want of a spare token.
func TestCallsSendAgainOnlyWhatIsSafeAndWanted(t *testing.T) {
	serverError := &googleapi.Error{Code: http.StatusServiceUnavailable}
	throttled := &googleapi.Error{Code: http.StatusTooManyRequests}
	rateLimited := &googleapi.Error{Code: http.StatusForbidden, Errors: []googleapi.ErrorItem{{Reason: "rateLimitExceeded"}}}
	for _, c := range []struct {
		op    string
		err   error
		rest  bool
		sends int
	}{
		{opBSGetHealth, serverError, false, callAttempts},
		{opNEGList, serverError, false, callAttempts},
		{opNEGAggregated, serverError, false, callAttempts},
		{opOperationsWait, serverError, false, callAttempts},
		{"urlMaps.get", serverError, false, callAttempts},
		{opNEGAttach, serverError, false, 1}, // it may have taken effect
		{"urlMaps.update", serverError, false, 1},
		{opNEGAttach, throttled, false, callAttempts}, // refused, so nothing happened
		{opNEGAttach, rateLimited, false, callAttempts},
		{opBSGetHealth, &googleapi.Error{Code: http.StatusNotFound}, false, 1},
		{opBSGetHealth, nil, false, 1},
		{opBSGetHealth, nil, true, 0}, // put off: its caller schedules it again
	} {
		name := c.op + " ok"
		if ge, ok := c.err.(*googleapi.Error); ok {
			name = fmt.Sprintf("%s %d %v", c.op, ge.Code, ge.Errors)
		}
		if c.rest {
			name += " at rest"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const burst = 10
			calls := newCaller(map[string]providers.Limit{c.op: {QPS: 0.001, Burst: burst}, "*": {QPS: 0.001, Burst: burst}})
			ctx := context.Background()
			if c.rest {
				// Empty the bucket down to its reserve: no spare token.
				for range burst - burst/2 {
					if err := calls.Call(ctx, c.op, func(context.Context) error { return nil }); err != nil {
						t.Fatal(err)
					}
				}
				ctx = providers.AtRest(ctx)
			}
			sends := 0
			err := calls.Call(ctx, c.op, func(context.Context) error { sends++; return c.err })
			if sends != c.sends {
				t.Errorf("sent %d times (%v), want %d", sends, err, c.sends)
			}
			var po *providers.PutOffError
			if putOff := errors.As(err, &po); putOff != c.rest {
				t.Errorf("put off %v (%v), want %v", putOff, err, c.rest)
			}
		})
	}
}

func TestMergeBackendsKeepsOthersAndChecksMode(t *testing.T) {
	link := func(zone string) string { return canonicalPrefix + negPath("p", zone, "neg") }
	foreign := &compute.Backend{Group: link("us-central1-f"), BalancingMode: "CONNECTION", MaxConnectionsPerEndpoint: 7}
	bs := &compute.BackendService{Protocol: "TCP", Backends: []*compute.Backend{
		foreign,
		{Group: link("us-central1-a"), BalancingMode: "CONNECTION", MaxConnectionsPerEndpoint: 3},
		{Group: link("us-central1-c"), BalancingMode: "CONNECTION", MaxConnectionsPerEndpoint: 3},
	}}
	spec := &Spec{BackendService: "web"}
	out, changed, err := mergeBackends(bs, []string{link("us-central1-a"), link("us-central1-b")}, map[string]bool{resourcePath(link("us-central1-c")): true}, spec, "web")
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	sent := *foreign
	sent.ForceSendFields = []string{"CapacityScaler"}
	if len(out) != 3 || !reflect.DeepEqual(out[0], &sent) || out[1].MaxConnectionsPerEndpoint != 3 || out[2].MaxConnectionsPerEndpoint != DefaultMaxConnectionsPerEndpoint {
		t.Fatalf("backends: %v", out)
	}
	if _, changed, _ := mergeBackends(&compute.BackendService{Protocol: "TCP", Backends: out}, []string{link("us-central1-a"), link("us-central1-b")}, nil, spec, "web"); changed {
		t.Error("second merge changed something")
	}
	rate := 5.0
	_, _, err = mergeBackends(bs, nil, nil, &Spec{BackendService: "web", BalancingMode: "RATE", MaxRatePerEndpoint: &rate}, "web")
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Field != "balancingMode" || pe.Class != providers.Invalid {
		t.Fatalf("RATE on TCP: %v", err)
	}
	conns := int32(9)
	out, changed, _ = mergeBackends(bs, []string{link("us-central1-a")}, nil, &Spec{BackendService: "web", MaxConnectionsPerEndpoint: &conns}, "web")
	if !changed || out[1].MaxConnectionsPerEndpoint != 9 {
		t.Fatalf("stated capacity not enforced: %v", out)
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"name":"web"}`, `{"backendService":"web","balancingMode":"RATE","maxRatePerEndpoint":1e3}`,
		`{"backendService":"regions/r/backendServices/x","capacityScaler":0.1}`, `null`, `{"name":"` + strings.Repeat("z", 70) + `"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseSpec(json.RawMessage(raw))
		if err != nil {
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Class != providers.Invalid {
				t.Fatalf("unclassified rejection %v", err)
			}
			return
		}
		if s.Name != "" && (len(s.Name) > 63 || !rfc1035.MatchString(s.Name)) {
			t.Fatalf("accepted name %q", s.Name)
		}
		if s.BackendService == "" && s.mode() != "" {
			t.Fatalf("balancing without a backend service accepted")
		}
		if c := s.CapacityScaler; c != nil && *c != 0 && (*c < 0.1 || *c > 1) {
			t.Fatalf("capacityScaler %v accepted", *c)
		}
		again, err := ParseSpec(json.RawMessage(s.Summary()))
		if err != nil || again.Summary() != s.Summary() {
			t.Fatalf("summary %s does not parse back: %v", s.Summary(), err)
		}
	})
}
