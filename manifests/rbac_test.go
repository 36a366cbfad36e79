package manifests

import "testing"

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
