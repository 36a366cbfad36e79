// Package manifests gives Go code the controller's RBAC exactly as the
// kustomize base installs it, so tools that reason about podlb's
// permissions (kubectl podlb check) read them from the one place they are
// written.
package manifests

import (
	_ "embed"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

var (
	//go:embed base/serviceaccount.yaml
	serviceAccountYAML []byte
	//go:embed base/clusterrole.yaml
	clusterRoleYAML []byte
	//go:embed base/clusterrolebinding.yaml
	clusterRoleBindingYAML []byte
	//go:embed base/role.yaml
	roleYAML []byte
	//go:embed base/rolebinding.yaml
	roleBindingYAML []byte
)

// RBAC is the controller's identity and permissions in manifests/base:
// cluster-wide rules, and rules in its own namespace.
type RBAC struct {
	ServiceAccount     *corev1.ServiceAccount
	ClusterRole        *rbacv1.ClusterRole
	ClusterRoleBinding *rbacv1.ClusterRoleBinding
	Role               *rbacv1.Role
	RoleBinding        *rbacv1.RoleBinding
}

// ControllerRBAC parses the base's RBAC manifests.
func ControllerRBAC() (*RBAC, error) {
	r := &RBAC{}
	for _, m := range []struct {
		file string
		data []byte
		into any
	}{
		{"base/serviceaccount.yaml", serviceAccountYAML, &r.ServiceAccount},
		{"base/clusterrole.yaml", clusterRoleYAML, &r.ClusterRole},
		{"base/clusterrolebinding.yaml", clusterRoleBindingYAML, &r.ClusterRoleBinding},
		{"base/role.yaml", roleYAML, &r.Role},
		{"base/rolebinding.yaml", roleBindingYAML, &r.RoleBinding},
	} {
		if err := yaml.UnmarshalStrict(m.data, m.into); err != nil {
			return nil, fmt.Errorf("manifests/%s: %w", m.file, err)
		}
	}
	return r, nil
}
