package targets

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// NodeInfoOf reads a node's zone and cloud instance. The zone comes from
// the well-known label, falling back to the providerID; the instance is the
// providerID's last segment ("aws:///us-east-1a/i-0abc" -> "i-0abc",
// "gce://project/us-central1-a/vm-1" -> "vm-1"), or the node name.
func NodeInfoOf(n *corev1.Node) NodeInfo {
	ni := NodeInfo{Zone: n.Labels[corev1.LabelTopologyZone], Instance: n.Name, Deleting: n.DeletionTimestamp != nil}
	id := n.Spec.ProviderID
	if _, rest, ok := strings.Cut(id, "://"); ok {
		parts := strings.Split(strings.Trim(rest, "/"), "/")
		if last := parts[len(parts)-1]; last != "" {
			ni.Instance = last
		}
		if ni.Zone == "" && len(parts) >= 2 {
			ni.Zone = parts[len(parts)-2]
		}
	}
	return ni
}

// ZonesOf lists the distinct zones of the nodes, sorted.
func ZonesOf(nodes []corev1.Node) []string {
	seen := map[string]bool{}
	var zones []string
	for i := range nodes {
		z := NodeInfoOf(&nodes[i]).Zone
		if z != "" && !seen[z] {
			seen[z] = true
			zones = append(zones, z)
		}
	}
	sort.Strings(zones)
	return zones
}
