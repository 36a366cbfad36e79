package loadbalancers

import (
	"slices"
	"testing"
)

func TestBackendServicesListsEveryNamedServiceOnceResolvedOrNot(t *testing.T) {
	ing := ingress("shop", "front",
		defaultBackend("static", 80),
		rule("a.example.com", path("/", prefix, "web", "http"), path("/api", prefix, "api", 8000)),
		rule("b.example.com", path("/", prefix, "web", 80), path("/gone", exact, "missing", 80)),
		rule("c.example.com"))
	got := BackendServices(ing)
	if want := []string{"api", "missing", "static", "web"}; !slices.Equal(got, want) {
		t.Errorf("BackendServices = %v, want %v", got, want)
	}
	if got := BackendServices(ingress("shop", "empty")); len(got) != 0 {
		t.Errorf("an Ingress without backends names %v", got)
	}
}
