package loadbalancers

import (
	"regexp"
	"slices"
	"sort"
)

// The per-cloud load-balancer annotations. Their values (JSON) are parsed
// by the providers (providers/aws, providers/gcp ParseLoadBalancerSpec);
// here only their presence matters.
const (
	AWSAnnotation = "podlb.io/aws-load-balancer"
	GCPAnnotation = "podlb.io/gcp-load-balancer"
)

// CloudAnnotations maps each cloud's short name to its load-balancer
// annotation.
var CloudAnnotations = map[string]string{
	"aws": AWSAnnotation,
	"gcp": GCPAnnotation,
}

// cloudAnnotationRE matches the annotation shape of any cloud, so a cloud
// podlb does not know (or a typo such as podlb.io/gpc-load-balancer) is
// reported rather than silently ignored.
var cloudAnnotationRE = regexp.MustCompile(`^podlb\.io/([a-z0-9]+)-load-balancer$`)

// Clouds returns, sorted, the clouds that should provision a load balancer
// for an object with these annotations, out of the clouds this controller
// serves: those whose annotation the object carries; when it carries none,
// every served cloud. An object that only names clouds this controller
// does not serve gets none (see UnservedClouds to warn about them).
func Clouds(annotations map[string]string, served []string) []string {
	named := namedClouds(annotations)
	var out []string
	for _, c := range served {
		if len(named) == 0 || slices.Contains(named, c) {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// UnservedClouds returns, sorted, the clouds an object's annotations name
// that this controller does not serve: known clouds not configured here,
// and unknown names of the annotation's shape. The caller warns about
// them.
func UnservedClouds(annotations map[string]string, served []string) []string {
	var out []string
	for _, c := range namedClouds(annotations) {
		if !slices.Contains(served, c) {
			out = append(out, c)
		}
	}
	return out
}

// namedClouds lists, sorted, the clouds whose load-balancer annotation is
// present, known or not.
func namedClouds(annotations map[string]string) []string {
	var out []string
	for k := range annotations {
		if m := cloudAnnotationRE.FindStringSubmatch(k); m != nil {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out
}
