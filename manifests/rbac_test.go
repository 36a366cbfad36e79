package manifests

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// The ServiceAccount the bindings name is the one the base creates, and
// both roles grant something: a check against these rules checks podlb.
func TestControllerRBACParsesAndIsConsistent(t *testing.T) {
	r, err := ControllerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ClusterRole.Rules) == 0 || len(r.Role.Rules) == 0 {
		t.Fatalf("empty rules: cluster %v, namespace %v", r.ClusterRole.Rules, r.Role.Rules)
	}
	sa := r.ServiceAccount
	for _, subjects := range [][]string{
		{r.ClusterRoleBinding.Subjects[0].Name, r.ClusterRoleBinding.Subjects[0].Namespace},
		{r.RoleBinding.Subjects[0].Name, r.RoleBinding.Subjects[0].Namespace},
	} {
		if subjects[0] != sa.Name || subjects[1] != sa.Namespace {
			t.Errorf("binding subject %v is not the ServiceAccount %s/%s", subjects, sa.Namespace, sa.Name)
		}
	}
	if r.ClusterRoleBinding.RoleRef.Name != r.ClusterRole.Name || r.RoleBinding.RoleRef.Name != r.Role.Name {
		t.Errorf("bindings refer to %q and %q, roles are %q and %q",
			r.ClusterRoleBinding.RoleRef.Name, r.RoleBinding.RoleRef.Name, r.ClusterRole.Name, r.Role.Name)
	}
}

// The Ingress controller reads Ingresses and IngressClasses through the
// cache, patches Ingresses (finalizer, status annotation) and writes
// their address through the status subresource.
func TestControllerRBACCoversIngresses(t *testing.T) {
	r, err := ControllerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ resource, verb string }{
		{"ingresses", "get"}, {"ingresses", "list"}, {"ingresses", "watch"}, {"ingresses", "patch"},
		{"ingresses/status", "patch"},
		{"ingressclasses", "get"}, {"ingressclasses", "list"}, {"ingressclasses", "watch"},
	} {
		if !allows(r.ClusterRole.Rules, "networking.k8s.io", want.resource, want.verb) {
			t.Errorf("the ClusterRole does not allow %s %s", want.verb, want.resource)
		}
	}
	if allows(r.ClusterRole.Rules, "networking.k8s.io", "ingresses", "update") {
		t.Error("podlb only patches Ingresses; update is more than it needs")
	}
}

// The Service load balancer controller patches Services (finalizer,
// status annotation) and writes their address through the status
// subresource.
func TestControllerRBACCoversLoadBalancerServices(t *testing.T) {
	r, err := ControllerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ resource, verb string }{
		{"services", "get"}, {"services", "list"}, {"services", "watch"}, {"services", "patch"},
		{"services/status", "patch"},
	} {
		if !allows(r.ClusterRole.Rules, "", want.resource, want.verb) {
			t.Errorf("the ClusterRole does not allow %s %s", want.verb, want.resource)
		}
	}
	for _, more := range []string{"update", "create", "delete"} {
		if allows(r.ClusterRole.Rules, "", "services", more) || allows(r.ClusterRole.Rules, "", "services/status", more) {
			t.Errorf("podlb only patches Services; %s is more than it needs", more)
		}
	}
}

func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, rule := range rules {
		if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
			return true
		}
	}
	return false
}
