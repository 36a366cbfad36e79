package loadbalancers_test

import (
	"testing"

	"github.com/podlb/podlb/loadbalancers"
	awsprovider "github.com/podlb/podlb/providers/aws"
	gcpprovider "github.com/podlb/podlb/providers/gcp"
)

// The model only looks for the annotations; the providers parse them.
// Both must mean the same keys.
func TestCloudAnnotationsAreTheProvidersKeys(t *testing.T) {
	for cloud, key := range map[string]string{"aws": awsprovider.LoadBalancerAnnotationKey, "gcp": gcpprovider.LoadBalancerAnnotationKey} {
		if got := loadbalancers.CloudAnnotations[cloud]; got != key {
			t.Errorf("%s: the model reads %q, the provider parses %q", cloud, got, key)
		}
	}
	if len(loadbalancers.CloudAnnotations) != 2 {
		t.Errorf("clouds %v: a new cloud needs its provider's key checked here", loadbalancers.CloudAnnotations)
	}
}
