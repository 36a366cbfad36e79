package loadbalancers

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestBuildIngressGroupModelsTheGroup(t *testing.T) {
	shopFront := ingress("shop", "front", createdAt(1),
		defaultBackend("web", "http"),
		tls("shop-tls", "shop.example.com", "*.shop.example.com"),
		rule("shop.example.com",
			path("/", prefix, "web", "http"),
			path("/api/", prefix, "api", 8000),
			path("/healthz", exact, "web", 8080),
		),
		rule("*.shop.example.com", path("/static", implSpec, "static", 80)),
	)
	shopAPI := ingress("shop", "api", createdAt(2),
		// The same route to the same backend is no conflict.
		rule("shop.example.com", path("/api", prefix, "api", 8000), path("/api", exact, "api", 8000)),
		rule("", path("", implSpec, "static", "http")),
	)
	blog := ingress("blog", "blog", createdAt(3),
		tls("", "blog.example.com"),
		rule("blog.example.com", path("/", prefix, "web", 80)),
	)
	lb, problems := BuildIngressGroup("public", []*networkingv1.Ingress{blog, shopAPI, shopFront}, shopServices)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	front, apiOwner, blogOwner := nn("shop", "front"), nn("shop", "api"), nn("blog", "blog")
	want := &HTTPLoadBalancer{
		Group: "public",
		Members: []Member{
			{Ingress: front, Created: epoch.Add(1 * 60e9)},
			{Ingress: apiOwner, Created: epoch.Add(2 * 60e9)},
			{Ingress: blogOwner, Created: epoch.Add(3 * 60e9)},
		},
		Routes: []Route{
			{Host: "blog.example.com", Path: "/", PathType: Prefix, Backend: blogWeb, Owner: blogOwner},
			{Host: "shop.example.com", Path: "/healthz", PathType: Exact, Backend: webAdmin, Owner: front},
			{Host: "shop.example.com", Path: "/api", PathType: Exact, Backend: api, Owner: apiOwner},
			{Host: "shop.example.com", Path: "/api", PathType: Prefix, Backend: api, Owner: front},
			{Host: "shop.example.com", Path: "/", PathType: Prefix, Backend: webHTTP, Owner: front},
			{Host: "*.shop.example.com", Path: "/static", PathType: Prefix, Backend: static, Owner: front},
			{Host: "", Path: "/", PathType: Prefix, Backend: static, Owner: apiOwner},
		},
		DefaultBackend: &webHTTP,
		TLSHosts: map[string]TLSHost{
			"shop.example.com":   {Secret: nn("shop", "shop-tls"), Owner: front},
			"*.shop.example.com": {Secret: nn("shop", "shop-tls"), Owner: front},
			"blog.example.com":   {Secret: nn("blog", ""), Owner: blogOwner},
		},
		Backends: []Backend{blogWeb, api, static, webHTTP, webAdmin},
	}
	if !reflect.DeepEqual(lb, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(lb), dump(want))
	}
	wantPriorities := map[RouteKey]int{}
	for i, r := range want.Routes {
		wantPriorities[r.Key()] = i + 1
	}
	if got := lb.Priorities(); !reflect.DeepEqual(got, wantPriorities) {
		t.Errorf("priorities %v, want %v", got, wantPriorities)
	}
}

func dump(lb *HTTPLoadBalancer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "group %s members %v default %v\n", lb.Group, lb.Members, lb.DefaultBackend)
	for _, r := range lb.Routes {
		fmt.Fprintf(&b, "  route %q %s %s -> %s (%s)\n", r.Host, r.PathType, r.Path, r.Backend, r.Owner)
	}
	fmt.Fprintf(&b, "  tls %v\n  backends %v", lb.TLSHosts, lb.Backends)
	return b.String()
}

// wantProblem is a problem as tests check it: object, exact field and a
// substring of the message.
type wantProblem struct {
	object types.NamespacedName
	field  string
	substr string
}

func checkProblems(t *testing.T, name string, got []Problem, want []wantProblem) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d problems %v, want %d", name, len(got), got, len(want))
		return
	}
	for i, w := range want {
		g := got[i]
		if g.Object != w.object || g.Field != w.field || !strings.Contains(g.Message, w.substr) {
			t.Errorf("%s: problem %d is %q, want %s field %q containing %q", name, i, g, w.object, w.field, w.substr)
		}
	}
}

func routeKeys(lb *HTTPLoadBalancer) []string {
	var out []string
	for _, r := range lb.Routes {
		out = append(out, fmt.Sprintf("%s %s %s>%s", r.Host, r.PathType, r.Path, r.Backend.Service))
	}
	return out
}

func TestBuildIngressGroupProblemsNameIngressAndField(t *testing.T) {
	a, b := nn("shop", "a"), nn("shop", "b")
	var unknownType networkingv1.PathType = "Regex"
	resourceBackend := networkingv1.HTTPIngressPath{Path: "/bucket", PathType: ptr(prefix), Backend: networkingv1.IngressBackend{
		Resource: &corev1.TypedLocalObjectReference{Kind: "StorageBucket", Name: "assets"},
	}}
	noType := networkingv1.HTTPIngressPath{Path: "/x", Backend: *serviceBackend("web", 80)}
	cases := []struct {
		name   string
		ings   []*networkingv1.Ingress
		want   []wantProblem
		routes []string
	}{
		{
			name: "unknown Service, port number and port name; the other paths stay",
			ings: []*networkingv1.Ingress{ingress("shop", "a", rule("h",
				path("/a", prefix, "nope", 80),
				path("/b", prefix, "web", 81),
				path("/c", prefix, "web", "https"),
				path("/d", prefix, "web", 80),
			))},
			want: []wantProblem{
				{a, "spec.rules[0].http.paths[0].backend.service.name", "Service shop/nope not found"},
				{a, "spec.rules[0].http.paths[1].backend.service.port.number", "has no port 81 (it has 80 (http), 8080 (admin))"},
				{a, "spec.rules[0].http.paths[2].backend.service.port.name", `has no port named "https"`},
			},
			routes: []string{"h Prefix /d>web"},
		},
		{
			name: "resource backend, UDP port, ExternalName Service",
			ings: []*networkingv1.Ingress{ingress("shop", "a", rule("h",
				resourceBackend,
				path("/dns", prefix, "dns", 53),
				path("/ext", prefix, "external", 80),
			))},
			want: []wantProblem{
				{a, "spec.rules[0].http.paths[0].backend.resource", `StorageBucket "assets" is a resource backend`},
				{a, "spec.rules[0].http.paths[1].backend.service.port.number", "is UDP"},
				{a, "spec.rules[0].http.paths[2].backend.service.name", "ExternalName"},
			},
		},
		{
			name: "bad paths and path types",
			ings: []*networkingv1.Ingress{ingress("shop", "a",
				rule("h", path("a", prefix, "web", 80), path("/a*", prefix, "web", 80)),
				rule("h", path("/?", exact, "web", 80), noType, path("/r", unknownType, "web", 80), path("", prefix, "web", 80)),
			)},
			want: []wantProblem{
				{a, "spec.rules[0].http.paths[0].path", `"a" must start with /`},
				{a, "spec.rules[0].http.paths[1].path", "wildcards"},
				{a, "spec.rules[1].http.paths[0].path", "wildcards"},
				{a, "spec.rules[1].http.paths[1].pathType", "is required"},
				{a, "spec.rules[1].http.paths[2].pathType", `unknown path type "Regex"`},
				{a, "spec.rules[1].http.paths[3].path", `"" must start with /`},
			},
		},
		{
			name: "a later member's conflicting route is refused, naming the holder",
			ings: []*networkingv1.Ingress{
				ingress("shop", "b", createdAt(2), rule("h", path("/api", prefix, "web", 80), path("/x", prefix, "web", 80))),
				ingress("shop", "a", createdAt(1), rule("h", path("/api", prefix, "api", 8000))),
			},
			want: []wantProblem{
				{b, "spec.rules[0].http.paths[0]", "Prefix /api on host h already goes to shop/api:8000, routed by Ingress shop/a"},
			},
			routes: []string{"h Prefix /api>api", "h Prefix /x>web"},
		},
		{
			name: "a trailing slash does not make a prefix a different route",
			ings: []*networkingv1.Ingress{
				ingress("shop", "a", createdAt(1), rule("", path("/api", prefix, "api", 8000))),
				ingress("shop", "b", createdAt(2), rule("", path("/api/", prefix, "web", 80), path("/api/", exact, "web", 80))),
			},
			want: []wantProblem{
				{b, "spec.rules[0].http.paths[0]", "Prefix /api on every host already goes to shop/api:8000"},
			},
			routes: []string{" Exact /api/>web", " Prefix /api>api"},
		},
		{
			name: "ImplementationSpecific is Prefix and competes with it",
			ings: []*networkingv1.Ingress{
				ingress("shop", "a", createdAt(1), rule("h", path("/", prefix, "api", 8000))),
				ingress("shop", "b", createdAt(2), rule("h", path("", implSpec, "web", 80))),
			},
			want:   []wantProblem{{b, "spec.rules[0].http.paths[0]", "Prefix / on host h already goes to shop/api:8000"}},
			routes: []string{"h Prefix />api"},
		},
		{
			name: "a conflict within one Ingress",
			ings: []*networkingv1.Ingress{
				ingress("shop", "a", rule("h", path("/x", exact, "api", 8000), path("/x", exact, "web", 80))),
			},
			want:   []wantProblem{{a, "spec.rules[0].http.paths[1]", "routed by Ingress shop/a"}},
			routes: []string{"h Exact /x>api"},
		},
		{
			name: "default backends: the first member's wins",
			ings: []*networkingv1.Ingress{
				ingress("shop", "b", createdAt(2), defaultBackend("api", 8000)),
				ingress("shop", "a", createdAt(1), defaultBackend("web", 80)),
				ingress("shop", "c", createdAt(3), defaultBackend("web", "http")),
			},
			want: []wantProblem{{b, "spec.defaultBackend", "already shop/web:80, set by Ingress shop/a"}},
		},
		{
			name: "a broken default backend",
			ings: []*networkingv1.Ingress{ingress("shop", "a", defaultBackend("web", 1))},
			want: []wantProblem{{a, "spec.defaultBackend.service.port.number", "has no port 1"}},
		},
		{
			name: "TLS hosts: the first member's Secret wins",
			ings: []*networkingv1.Ingress{
				ingress("shop", "a", createdAt(1), tls("a-tls", "h", "i"), tls("a-tls")),
				ingress("shop", "b", createdAt(2), tls("b-tls", "i", "j"), tls("", "h"), tls("b-tls")),
				ingress("shop", "c", createdAt(3), tls("a-tls", "h")),
			},
			want: []wantProblem{
				{b, "spec.tls[0].hosts[0]", "host i already uses Secret shop/a-tls, listed by Ingress shop/a"},
				{b, "spec.tls[1].hosts[0]", "host h already uses Secret shop/a-tls"},
				{b, "spec.tls[2]", "every host already uses Secret shop/a-tls"},
			},
		},
		{
			name: "a broken order annotation is reported and counts as 0",
			ings: []*networkingv1.Ingress{
				ingress("shop", "b", createdAt(1), annotation(GroupOrderAnnotation, "first"), rule("h", path("/", prefix, "web", 80))),
				ingress("shop", "a", createdAt(2), annotation(GroupOrderAnnotation, "-1"), rule("h", path("/", prefix, "api", 8000))),
			},
			want: []wantProblem{
				{b, "metadata.annotations[podlb.io/group-order]", `"first" is not an integer`},
				{b, "spec.rules[0].http.paths[0]", "routed by Ingress shop/a"},
			},
			routes: []string{"h Prefix />api"},
		},
	}
	for _, c := range cases {
		lb, problems := BuildIngressGroup("g", c.ings, shopServices)
		checkProblems(t, c.name, problems, c.want)
		if c.routes != nil && !reflect.DeepEqual(routeKeys(lb), c.routes) {
			t.Errorf("%s: routes %q, want %q", c.name, routeKeys(lb), c.routes)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestMembersAreOrderedByAnnotationThenCreationThenName(t *testing.T) {
	ings := []*networkingv1.Ingress{
		ingress("b", "late", createdAt(9)),
		ingress("b", "x", createdAt(5)),
		ingress("a", "y", createdAt(5)),
		ingress("a", "x", createdAt(5)),
		ingress("z", "first", createdAt(99), annotation(GroupOrderAnnotation, "-10")),
		ingress("z", "last", createdAt(0), annotation(GroupOrderAnnotation, " 3 ")),
		nil,
	}
	lb, problems := BuildIngressGroup("g", ings, shopServices)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	var got []string
	for _, m := range lb.Members {
		got = append(got, fmt.Sprintf("%s@%d", m.Ingress, m.Order))
	}
	want := []string{"z/first@-10", "a/x@0", "a/y@0", "b/x@0", "b/late@0", "z/last@3"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("members %v, want %v", got, want)
	}
}

// The same Ingresses in any order give the same model and problems.
func TestBuildIngressGroupIsDeterministic(t *testing.T) {
	ings := []*networkingv1.Ingress{
		ingress("shop", "a", createdAt(1), defaultBackend("web", 80), tls("a", "h"), rule("h", path("/x", prefix, "web", 80), path("/y", exact, "api", 8000))),
		ingress("shop", "b", createdAt(1), defaultBackend("api", 8000), tls("b", "h"), rule("h", path("/x", prefix, "api", 8000), path("/z", prefix, "nope", 1))),
		ingress("shop", "c", createdAt(1), rule("*.h", path("/y", exact, "api", 8000)), rule("", path("/", prefix, "static", 80))),
		ingress("blog", "d", createdAt(1), annotation(GroupOrderAnnotation, "x"), rule("h", path("/x", exact, "web", 80))),
	}
	wantLB, wantProblems := BuildIngressGroup("g", ings, shopServices)
	if len(wantProblems) != 5 {
		t.Fatalf("the fixture should have 5 problems, has %v", wantProblems)
	}
	for _, perm := range permutations(len(ings)) {
		shuffled := make([]*networkingv1.Ingress, len(ings))
		for i, j := range perm {
			shuffled[i] = ings[j]
		}
		lb, problems := BuildIngressGroup("g", shuffled, shopServices)
		if !reflect.DeepEqual(lb, wantLB) || !reflect.DeepEqual(problems, wantProblems) {
			t.Fatalf("order %v gives\n%s\n%v\nwant\n%s\n%v", perm, dump(lb), problems, dump(wantLB), wantProblems)
		}
	}
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func TestRouteEvaluationOrder(t *testing.T) {
	first, second := nn("x", "1"), nn("x", "2")
	rank := map[types.NamespacedName]int{first: 0, second: 1}
	routes := []Route{
		{Host: "", Path: "/", PathType: Prefix, Owner: first},
		{Host: "*.a.com", Path: "/", PathType: Prefix, Owner: first},
		{Host: "b.com", Path: "/", PathType: Prefix, Owner: first},
		{Host: "a.com", Path: "/", PathType: Prefix, Owner: first},
		{Host: "a.com", Path: "/zz", PathType: Prefix, Owner: first},
		{Host: "a.com", Path: "/bb", PathType: Prefix, Owner: second},
		{Host: "a.com", Path: "/aa", PathType: Prefix, Owner: second},
		{Host: "a.com", Path: "/long/path", PathType: Prefix, Owner: second},
		{Host: "a.com", Path: "/", PathType: Exact, Owner: second},
		{Host: "a.com", Path: "/long/path", PathType: Exact, Owner: first},
		{Host: "*.b.com", Path: "/x", PathType: Exact, Owner: first},
	}
	sortRoutes(routes, rank)
	var got []string
	for _, r := range routes {
		got = append(got, fmt.Sprintf("%s %s %s %s", r.Host, r.PathType, r.Path, r.Owner.Name))
	}
	want := []string{
		"a.com Exact /long/path 1",
		"a.com Exact / 2",
		"a.com Prefix /long/path 2",
		"a.com Prefix /zz 1",
		"a.com Prefix /aa 2",
		"a.com Prefix /bb 2",
		"a.com Prefix / 1",
		"b.com Prefix / 1",
		"*.a.com Prefix / 1",
		"*.b.com Exact /x 1",
		" Prefix / 1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("order\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// For every host the first route in evaluation order that matches a
// request is the one Kubernetes picks: the longest matching path, Exact
// over Prefix on a tie.
func TestEvaluationOrderPicksWhatKubernetesPicks(t *testing.T) {
	ing := ingress("shop", "a", rule("h",
		path("/", prefix, "web", 80),
		path("/a", prefix, "api", 8000),
		path("/a", exact, "static", 80),
		path("/a/b", prefix, "web", 8080),
		path("/a/b/", exact, "api", 8000),
		path("/ab", prefix, "static", 80),
	))
	lb, problems := BuildIngressGroup("g", []*networkingv1.Ingress{ing}, shopServices)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	for _, c := range []struct{ request, backend string }{
		{"/", "shop/web:80"}, {"/x", "shop/web:80"}, {"/a", "shop/static:80"}, {"/a/", "shop/api:8000"},
		{"/a/x", "shop/api:8000"}, {"/a/b", "shop/web:8080"}, {"/a/b/", "shop/api:8000"}, {"/a/b/c", "shop/web:8080"},
		{"/ab", "shop/static:80"}, {"/abc", "shop/web:80"},
	} {
		got := "nothing"
		for _, r := range lb.Routes {
			if r.Matches(c.request) {
				got = r.Backend.String()
				break
			}
		}
		if got != c.backend {
			t.Errorf("%s goes to %s, want %s", c.request, got, c.backend)
		}
	}
}
