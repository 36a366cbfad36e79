package loadbalancers

import (
	"reflect"
	"testing"
)

func TestMatchesFollowsKubernetesPathSemantics(t *testing.T) {
	cases := []struct {
		route Route
		path  string
		want  bool
	}{
		{Route{Path: "/", PathType: Prefix}, "/", true},
		{Route{Path: "/", PathType: Prefix}, "/anything/at/all", true},
		{Route{Path: "/", PathType: Prefix}, "", false},
		{Route{Path: "/foo", PathType: Exact}, "/foo", true},
		{Route{Path: "/foo", PathType: Exact}, "/foo/", false},
		{Route{Path: "/foo", PathType: Exact}, "/bar", false},
		{Route{Path: "/foo", PathType: Exact}, "/FOO", false},
		{Route{Path: "/foo/", PathType: Exact}, "/foo", false},
		{Route{Path: "/foo/", PathType: Exact}, "/foo/", true},
		{Route{Path: "/foo", PathType: Prefix}, "/foo", true},
		{Route{Path: "/foo", PathType: Prefix}, "/foo/", true},
		{Route{Path: "/foo", PathType: Prefix}, "/foo/bar", true},
		{Route{Path: "/foo", PathType: Prefix}, "/foobar", false},
		{Route{Path: "/foo", PathType: Prefix}, "/Foo", false},
		{Route{Path: "/aaa/bb", PathType: Prefix}, "/aaa/bbb", false},
		{Route{Path: "/aaa/bbb", PathType: Prefix}, "/aaa/bbb", true},
		{Route{Path: "/aaa/bbb", PathType: Prefix}, "/aaa/bbb/ccc", true},
		{Route{Path: "/aaa/bbb", PathType: Prefix}, "/aaa/bbbxyz", false},
		{Route{Path: "/aaa/bbb", PathType: Prefix}, "/aaa", false},
		{Route{Path: "/x", PathType: "Regex"}, "/x", false},
	}
	for _, c := range cases {
		if got := c.route.Matches(c.path); got != c.want {
			t.Errorf("%s %s matching %q: got %v", c.route.PathType, c.route.Path, c.path, got)
		}
	}
}

func TestCloudPathForms(t *testing.T) {
	cases := []struct {
		route    Route
		aws, gcp []string
	}{
		{Route{Path: "/a", PathType: Exact}, []string{"/a"}, []string{"/a"}},
		{Route{Path: "/", PathType: Exact}, []string{"/"}, []string{"/"}},
		{Route{Path: "/a/b", PathType: Prefix}, []string{"/a/b", "/a/b/*"}, []string{"/a/b", "/a/b/*"}},
		{Route{Path: "/", PathType: Prefix}, []string{"/*"}, nil},
	}
	for _, c := range cases {
		if got := AWSPathPatterns(c.route); !reflect.DeepEqual(got, c.aws) {
			t.Errorf("AWS %s %s: %q, want %q", c.route.PathType, c.route.Path, got, c.aws)
		}
		if got := GCPPathRules(c.route); !reflect.DeepEqual(got, c.gcp) {
			t.Errorf("GCP %s %s: %q, want %q", c.route.PathType, c.route.Path, got, c.gcp)
		}
	}
}

// glob matches path against a cloud path pattern: '*' is any run of
// characters (including '/'), '?' exactly one.
func glob(pattern, path string) bool {
	if pattern == "" {
		return path == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(path); i++ {
			if glob(pattern[1:], path[i:]) {
				return true
			}
		}
		return false
	case '?':
		return path != "" && glob(pattern[1:], path[1:])
	}
	return path != "" && path[0] == pattern[0] && glob(pattern[1:], path[1:])
}

func TestGlob(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"/a/*", "/a/", true}, {"/a/*", "/a/b/c", true}, {"/a/*", "/a", false}, {"/a?", "/ab", true},
		{"/a?", "/a", false}, {"/*", "/", true}, {"/a", "/a", true}, {"/a", "/ab", false}, {"*", "", true},
	} {
		if got := glob(c.pattern, c.path); got != c.want {
			t.Errorf("glob(%q, %q) = %v", c.pattern, c.path, got)
		}
	}
}

// The clouds' pattern forms accept exactly the paths the Kubernetes
// semantics accept, over many routes and request paths.
func TestCloudPathFormsAgreeWithKubernetesSemantics(t *testing.T) {
	routePaths := []string{"/", "/a", "/a/b", "/ab", "/a.b", "/a-b/c_d", "/%2F", "/a/b/c/d"}
	requests := []string{"/"}
	for _, p := range []string{"a", "b", "ab", "a.b", "a-b", "c_d", "%2F", "", "x", "A"} {
		requests = append(requests, "/"+p)
		for _, q := range []string{"a", "b", "c", "ab", "bc", "", "c_d", "c/d", "c/d/e"} {
			requests = append(requests, "/"+p+"/"+q)
		}
	}
	requests = append(requests, "", "a", "//", "/a//b")
	for _, rp := range routePaths {
		for _, pt := range []PathType{Exact, Prefix} {
			r := Route{Path: rp, PathType: pt}
			aws, gcp := AWSPathPatterns(r), GCPPathRules(r)
			for _, req := range requests {
				want := r.Matches(req)
				if got := anyGlob(aws, req); got != want {
					t.Errorf("AWS %v for %s %s, request %q: %v, Kubernetes says %v", aws, pt, rp, req, got, want)
				}
				// No GCP path rule means the path matcher's default service,
				// which sees every request path.
				gotGCP := anyGlob(gcp, req)
				if gcp == nil {
					gotGCP = req != "" && req[0] == '/'
				}
				if gotGCP != want {
					t.Errorf("GCP %v for %s %s, request %q: %v, Kubernetes says %v", gcp, pt, rp, req, gotGCP, want)
				}
			}
		}
	}
}

func anyGlob(patterns []string, path string) bool {
	for _, p := range patterns {
		if glob(p, path) {
			return true
		}
	}
	return false
}
