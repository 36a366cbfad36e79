package e2eutil

import (
	"fmt"

	"github.com/podlb/podlb/manifests"
	"github.com/podlb/podlb/providers/aws/elbv2sim"
)

// The end-to-end suites run podlb under the permissions its users grant
// it: its AWS provider signs with PodlbAWSKey, which the ELBv2 emulator
// holds to manifests/aws/iam-policy.json (AWSPolicies), and its GCP
// provider sends PodlbGCPToken, which the Compute emulator holds to the
// custom role (GCPPermissions). The suites' own clients sign otherwise and
// may do anything, as the administrator arranging what users own.
const (
	PodlbAWSKey   = "AKIDPODLBCONTROLLER"
	PodlbGCPToken = "podlb-controller"
)

// AWSPolicies holds each access key to the shipped IAM policy for its
// cluster, for elbv2sim.Options.Policies.
func AWSPolicies(clusterByKey map[string]string) (map[string]*elbv2sim.Policy, error) {
	out := map[string]*elbv2sim.Policy{}
	for key, cluster := range clusterByKey {
		pol, err := elbv2sim.ParsePolicy(manifests.AWSIAMPolicy(cluster))
		if err != nil {
			return nil, fmt.Errorf("manifests/aws/iam-policy.json: %w", err)
		}
		out[key] = pol
	}
	return out, nil
}

// GCPPermissions holds PodlbGCPToken to the custom role, for
// computesim.Options.Permissions.
func GCPPermissions() (map[string][]string, error) {
	perms, err := manifests.GCPRolePermissions()
	if err != nil {
		return nil, err
	}
	return map[string][]string{PodlbGCPToken: perms}, nil
}
