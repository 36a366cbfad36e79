package loadbalancers

import "strings"

// Matches reports whether a request path matches the route's path, with
// Kubernetes semantics: Exact compares the whole path, case-sensitively;
// Prefix compares element by element, so "/a" matches "/a", "/a/" and
// "/a/b" but not "/ab", and "/" matches every path. The host is not
// considered.
func (r Route) Matches(path string) bool {
	switch r.PathType {
	case Exact:
		return path == r.Path
	case Prefix:
		if r.Path == "/" {
			return strings.HasPrefix(path, "/")
		}
		return path == r.Path || strings.HasPrefix(path, r.Path+"/")
	}
	return false
}

// AWSPathPatterns gives the values of an ELBv2 path-pattern condition that
// match exactly the requests r.Matches accepts. Path patterns are
// case-sensitive, like Kubernetes paths, and read '*' (any characters)
// and '?' (one character) as wildcards; BuildIngressGroup refuses paths
// containing either, so nothing needs escaping.
//
//	Exact  /a  ->  /a
//	Prefix /a  ->  /a, /a/*
//	Prefix /   ->  /*
func AWSPathPatterns(r Route) []string {
	switch {
	case r.PathType == Exact:
		return []string{r.Path}
	case r.Path == "/":
		return []string{"/*"}
	}
	return []string{r.Path, r.Path + "/*"}
}

// GCPPathRules gives the paths of a URL map path rule that match exactly
// the requests r.Matches accepts. A path rule may end in "/*" and holds no
// other wildcard.
//
//	Exact  /a  ->  /a
//	Prefix /a  ->  /a, /a/*
//	Prefix /   ->  none: the route's backend becomes the defaultService of
//	               the host's path matcher, which serves every path no rule
//	               matches
//
// A path matcher refuses the same path in two rules, and Exact /a and
// Prefix /a both give /a. Walking lb.Routes in order (Exact first) and
// skipping a path already used on the host gives /a to the Exact route,
// which is the one Kubernetes picks.
func GCPPathRules(r Route) []string {
	switch {
	case r.PathType == Exact:
		return []string{r.Path}
	case r.Path == "/":
		return nil
	}
	return []string{r.Path, r.Path + "/*"}
}
