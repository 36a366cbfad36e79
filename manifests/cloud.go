package manifests

import (
	_ "embed"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

var (
	//go:embed aws/iam-policy.json
	awsIAMPolicyJSON string
	//go:embed gcp/podlb-role.yaml
	gcpRoleYAML []byte
)

// policyClusterPlaceholder is the cluster name the shipped IAM policy's
// tag conditions carry; users replace it with their --cluster-name.
const policyClusterPlaceholder = `"my-cluster"`

// AWSIAMPolicy is manifests/aws/iam-policy.json for cluster: the
// placeholder my-cluster in its conditions replaced, as the guide tells
// users to.
func AWSIAMPolicy(cluster string) []byte {
	return []byte(strings.ReplaceAll(awsIAMPolicyJSON, policyClusterPlaceholder, `"`+cluster+`"`))
}

// GCPRolePermissions is the includedPermissions of the custom role
// manifests/gcp/podlb-role.yaml.
func GCPRolePermissions() ([]string, error) {
	var role struct {
		IncludedPermissions []string `json:"includedPermissions"`
	}
	if err := yaml.Unmarshal(gcpRoleYAML, &role); err != nil {
		return nil, fmt.Errorf("gcp/podlb-role.yaml: %w", err)
	}
	if len(role.IncludedPermissions) == 0 {
		return nil, fmt.Errorf("gcp/podlb-role.yaml: includedPermissions is empty")
	}
	return role.IncludedPermissions, nil
}
