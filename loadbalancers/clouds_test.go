package loadbalancers

import (
	"slices"
	"testing"
)

func TestClouds(t *testing.T) {
	both := []string{"gcp", "aws"}
	cases := []struct {
		name        string
		annotations map[string]string
		served      []string
		want        []string
		unserved    []string
	}{
		{"no annotation: every served cloud, sorted", nil, both, []string{"aws", "gcp"}, nil},
		{"unrelated annotations count as none", map[string]string{"podlb.io/group-order": "1", "podlb.io/load-balancer": "x"}, []string{"aws"}, []string{"aws"}, nil},
		{"one annotation picks its cloud", map[string]string{AWSAnnotation: "{}"}, both, []string{"aws"}, nil},
		{"both annotations", map[string]string{AWSAnnotation: "", GCPAnnotation: ""}, both, []string{"aws", "gcp"}, nil},
		{"an unserved cloud is reported, not provisioned elsewhere", map[string]string{GCPAnnotation: "{}"}, []string{"aws"}, nil, []string{"gcp"}},
		{"served and unserved", map[string]string{GCPAnnotation: "{}", AWSAnnotation: "{}"}, []string{"aws"}, []string{"aws"}, []string{"gcp"}},
		{"an unknown cloud is reported", map[string]string{"podlb.io/azure-load-balancer": "{}", AWSAnnotation: "{}"}, both, []string{"aws"}, []string{"azure"}},
		{"a misspelt cloud is reported and selects nothing", map[string]string{"podlb.io/gpc-load-balancer": "{}"}, both, nil, []string{"gpc"}},
		{"nothing served", map[string]string{AWSAnnotation: "{}"}, nil, nil, []string{"aws"}},
	}
	for _, c := range cases {
		if got := Clouds(c.annotations, c.served); !slices.Equal(got, c.want) {
			t.Errorf("%s: Clouds = %v, want %v", c.name, got, c.want)
		}
		if got := UnservedClouds(c.annotations, c.served); !slices.Equal(got, c.unserved) {
			t.Errorf("%s: UnservedClouds = %v, want %v", c.name, got, c.unserved)
		}
	}
}

// Every known cloud's annotation has the shape unknown ones are found by,
// and names its own cloud.
func TestCloudAnnotationsHaveTheCommonShape(t *testing.T) {
	for cloud, key := range CloudAnnotations {
		if got := namedClouds(map[string]string{key: ""}); !slices.Equal(got, []string{cloud}) {
			t.Errorf("%s: %q names %v", cloud, key, got)
		}
	}
}
