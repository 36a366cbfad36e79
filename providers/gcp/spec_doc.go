package gcp

import (
	"fmt"

	"github.com/podlb/podlb/providers"
)

// FieldDocs documents every field of Spec for the guide, with the limits
// validation enforces.
func FieldDocs() []providers.FieldDoc {
	return []providers.FieldDoc{
		{Field: "name", Default: "`pl-<cluster>-<namespace>-<service>-<port>-<hash>`",
			Notes: fmt.Sprintf("NEG name in every zone, RFC 1035, at most %d characters", maxNameLength)},
		{Field: "backendService", Default: "none",
			Notes: "a name (global, in `--gcp-project`), or `global/backendServices/NAME`, `regions/REGION/backendServices/NAME`, either prefixed with `projects/PROJECT/`, or a full Compute URL"},
		{Field: "balancingMode", Default: "from the backend service's protocol: `CONNECTION` for TCP, SSL and UDP, `RATE` otherwise",
			Notes: providers.CodeList(" or ", balancingMode...) + " (`UTILIZATION` is for instance groups only)"},
		{Field: "maxRatePerEndpoint", Default: fmt.Sprintf("%d for new backends", DefaultMaxRatePerEndpoint), Notes: "with `RATE`; requests per second"},
		{Field: "maxConnectionsPerEndpoint", Default: fmt.Sprintf("%d for new backends", DefaultMaxConnectionsPerEndpoint), Notes: "with `CONNECTION`"},
		{Field: "capacityScaler", Default: "left as is", Notes: fmt.Sprintf("0 (no new traffic) or %.1f–%.1f", minCapacityScaler, maxCapacityScaler)},
	}
}
