package loadbalancers

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// hostRank puts exact hosts before wildcard hosts before the empty host
// (every host), so the more specific rule is evaluated first.
func hostRank(host string) int {
	switch {
	case host == "":
		return 2
	case strings.HasPrefix(host, "*."):
		return 1
	}
	return 0
}

// sortRoutes puts routes in evaluation order for clouds that evaluate
// rules one by one (AWS listener rules): by host (exact, wildcard, empty;
// then alphabetically), then Exact before Prefix, longer paths first, then
// the owner's place in the group, then the path. Kubernetes gives a
// request to the longest matching path and Exact over Prefix on a tie;
// evaluating in this order gives the same answer. Routes of equal length
// and type on one host never match the same request, so the last two keys
// only make the order deterministic.
func sortRoutes(routes []Route, ownerRank map[types.NamespacedName]int) {
	sort.SliceStable(routes, func(i, j int) bool {
		a, b := routes[i], routes[j]
		if ra, rb := hostRank(a.Host), hostRank(b.Host); ra != rb {
			return ra < rb
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		if a.PathType != b.PathType {
			return a.PathType == Exact
		}
		if len(a.Path) != len(b.Path) {
			return len(a.Path) > len(b.Path)
		}
		if oa, ob := ownerRank[a.Owner], ownerRank[b.Owner]; oa != ob {
			return oa < ob
		}
		return a.Path < b.Path
	})
}

// Priorities numbers the routes 1, 2, 3... in evaluation order (the order
// of lb.Routes), for clouds whose rules carry a priority (AWS listener
// rules, where a lower number is evaluated first).
//
// The numbering is dense and does not try to keep numbers stable: adding
// or removing a route moves every route after it by one, and leaves the
// routes before it as they were. ELBv2 refuses two rules with the same
// priority, so a cloud side renumbers the existing rules
// (SetRulePriorities) before it creates a new one.
func (lb *HTTPLoadBalancer) Priorities() map[RouteKey]int {
	out := make(map[RouteKey]int, len(lb.Routes))
	for i, r := range lb.Routes {
		out[r.Key()] = i + 1
	}
	return out
}

// groupOrder sorts the members of a group into group order:
// GroupOrderAnnotation (lower first, 0 when unset), creation time, then
// namespace/name. It returns each sorted object's order value and a
// Problem for every value that is not an integer (ordered as 0); kind
// names the objects in those problems.
func groupOrder[T metav1.Object](objs []T, kind string) ([]T, []int, []Problem) {
	type entry struct {
		obj   T
		order int
	}
	var entries []entry
	var problems []Problem
	for _, o := range objs {
		e := entry{obj: o}
		if raw, ok := o.GetAnnotations()[GroupOrderAnnotation]; ok {
			n, err := strconv.Atoi(strings.TrimSpace(raw))
			if err != nil {
				problems = append(problems, Problem{Object: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()},
					Field:   "metadata.annotations[" + GroupOrderAnnotation + "]",
					Message: fmt.Sprintf("%q is not an integer; the %s is ordered as 0", raw, kind)})
			}
			e.order = n
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, c := entries[i], entries[j]
		if a.order != c.order {
			return a.order < c.order
		}
		if ta, tc := a.obj.GetCreationTimestamp().Time, c.obj.GetCreationTimestamp().Time; !ta.Equal(tc) {
			return ta.Before(tc)
		}
		if a.obj.GetNamespace() != c.obj.GetNamespace() {
			return a.obj.GetNamespace() < c.obj.GetNamespace()
		}
		return a.obj.GetName() < c.obj.GetName()
	})
	out := make([]T, len(entries))
	orders := make([]int, len(entries))
	for i, e := range entries {
		out[i], orders[i] = e.obj, e.order
	}
	return out, orders, problems
}
