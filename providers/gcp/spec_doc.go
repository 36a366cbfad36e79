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

// LoadBalancerFieldDocs documents every field of LoadBalancerSpec (the
// value of podlb.io/gcp-load-balancer) for the guide, with the limits
// validation enforces.
func LoadBalancerFieldDocs() []providers.FieldDoc {
	name := fmt.Sprintf("a name: RFC 1035, at most %d characters", maxNameLength)
	return []providers.FieldDoc{
		{Field: "scheme", Default: "`external`", Notes: providers.CodeList(" or ", loadBalancerSchemes...) + "; `internal` needs `region` and `proxySubnet`"},
		{Field: "region", Default: "none: global", Notes: "makes the load balancer regional"},
		{Field: "proxySubnet", Default: "none", Notes: name + "; the region's proxy-only subnet, for regional load balancers"},
		{Field: "address", Default: "an ephemeral address", Notes: "a reserved static address's name, or an IP address; a Service's ports all listen on it"},
		{Field: "sslCertificates", Default: "none: no HTTPS proxy", Notes: fmt.Sprintf("certificate names, at most %d, the project's global ones or, with `region`, that region's; for a Service, of the SSL proxies of `tlsPorts`", maxSSLCertificates)},
		{Field: "tlsPorts", Default: "none: every TCP port is plain TCP", Notes: "Services only, global ones: TCP ports served by a target SSL proxy with `sslCertificates`"},
		{Field: "sslPolicy", Default: "Compute's default policy", Notes: name + "; for a Service, needs `tlsPorts`"},
		{Field: "redirectToHTTPS", Default: "`false`", Notes: "Ingresses only: the HTTP side answers with a redirect to HTTPS"},
		{Field: "timeoutSec", Default: "Compute's default (30)", Notes: "at least 1; the backend services' request timeout (a Service's: its idle timeout)"},
		{Field: "proxyProtocol", Default: "false", Notes: "Services only: the TCP and SSL proxies send a PROXY v1 header with the client's address"},
		{Field: "group", Default: "none: the Ingress or Service gets its own load balancer", Notes: "Ingresses (or Services) with the same group share one; " + name},
		{Field: "backends", Default: "none", Notes: "per backend, keyed by `service:port` (port number or name): the fields below"},
	}
}

// LoadBalancerBackendFieldDocs documents BackendSpec, the value of each
// entry of "backends".
func LoadBalancerBackendFieldDocs() []providers.FieldDoc {
	return []providers.FieldDoc{
		{Field: "healthCheck.path", Default: "the readiness probe's path when every pod agrees, else `/`; for a Service none: a TCP check", Notes: "must start with `/`; for a Service, makes the check HTTP"},
		{Field: "healthCheck.port", Default: "the serving port", Notes: "1–65535"},
		{Field: "healthCheck.checkIntervalSec", Default: "Compute's default (5)", Notes: fmt.Sprintf("%d–%d", minCheckIntervalSec, maxCheckIntervalSec)},
		{Field: "balancingMode", Default: "`RATE` for an Ingress, `CONNECTION` for a Service", Notes: "only the default is allowed: an Application Load Balancer balances requests, a Service's proxy load balancer connections (`UTILIZATION` is for instance groups)"},
		{Field: "maxRatePerEndpoint", Default: fmt.Sprintf("%d", DefaultMaxRatePerEndpoint), Notes: "requests per second, positive; Ingresses only (a Service's backends balance by CONNECTION)"},
		{Field: "drainingTimeoutSec", Default: "10 (podlb's: Compute's 0 cuts requests in flight when an endpoint is detached)", Notes: fmt.Sprintf("%d–%d", minDrainingTimeoutSec, maxDrainingTimeoutSec)},
	}
}
