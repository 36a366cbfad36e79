package aws

import (
	"fmt"

	"github.com/podlb/podlb/providers"
)

// CreateFieldDocs documents every field of CreateSpec (the value of
// "create") for the guide, with the limits validation enforces.
func CreateFieldDocs() []providers.FieldDoc {
	docs := []providers.FieldDoc{{Field: "protocol", Default: "`TCP` (`UDP` for UDP ports)", Notes: providers.CodeList(", ", protocols...)}}
	docs = append(docs, healthCheckFieldDocs("AWS's default for the group protocol", hcProtocols)...)
	return append(docs,
		deregistrationDelayFieldDoc(),
		tagsFieldDoc(),
	)
}

// awsDefault is what an unset field means for most settings.
const awsDefault = "AWS's default"

// healthCheckFieldDocs documents HealthCheckSpec as "healthCheck.*".
func healthCheckFieldDocs(protocolDefault string, protocols []string) []providers.FieldDoc {
	return []providers.FieldDoc{
		{Field: "healthCheck.protocol", Default: protocolDefault, Notes: providers.CodeList(", ", protocols...)},
		{Field: "healthCheck.port", Default: "`traffic-port`", Notes: "or a port number"},
		{Field: "healthCheck.path", Default: awsDefault, Notes: "must start with `/`"},
		{Field: "healthCheck.intervalSeconds", Default: awsDefault, Notes: intervalRange.String()},
		{Field: "healthCheck.timeoutSeconds", Default: awsDefault, Notes: timeoutRange.String() + ", less than the interval"},
		{Field: "healthCheck.healthyThreshold", Default: awsDefault, Notes: thresholdRange.String()},
		{Field: "healthCheck.unhealthyThreshold", Default: awsDefault, Notes: thresholdRange.String()},
		{Field: "healthCheck.matcher", Default: awsDefault, Notes: "HTTP codes, e.g. `200` or `200-399`"},
	}
}

func deregistrationDelayFieldDoc() providers.FieldDoc {
	return providers.FieldDoc{Field: "deregistrationDelaySeconds", Default: awsDefault + " (300)", Notes: deregistrationDelayRange.String()}
}

func tagsFieldDoc() providers.FieldDoc {
	return providers.FieldDoc{Field: "tags", Default: "none", Notes: fmt.Sprintf("at most %d; keys under %s are reserved", maxTags, providers.CodeList(" and ", reservedTagPrefixes...))}
}

// LoadBalancerFieldDocs documents every field of LoadBalancerSpec (the
// value of podlb.io/aws-load-balancer) for the guide, with the limits
// validation enforces.
func LoadBalancerFieldDocs() []providers.FieldDoc {
	return []providers.FieldDoc{
		{Field: "scheme", Default: "`internet-facing`", Notes: providers.CodeList(" or ", loadBalancerSchemes...)},
		{Field: "subnets", Default: "one per Availability Zone of the cluster's VPC among those tagged `kubernetes.io/role/elb` (internet-facing) or `kubernetes.io/role/internal-elb` (internal), preferring those tagged `kubernetes.io/cluster/<cluster-name>` and skipping those tagged for other clusters only", Notes: fmt.Sprintf("subnet IDs (`subnet-` and 8 or 17 hex digits); for an Ingress at least %d, in different Availability Zones", minSubnets)},
		{Field: "securityGroups", Default: awsDefault + " (the VPC's default security group)", Notes: fmt.Sprintf("security group IDs (`sg-` and 8 or 17 hex digits), at most %d", maxSecurityGroups)},
		{Field: "certificateArns", Default: "none: no HTTPS listener", Notes: fmt.Sprintf("ACM certificate ARNs, at most %d; the first is the listener's default", maxCertificates)},
		{Field: "tlsPorts", Default: "none: every TCP port is plain TCP", Notes: "Services only: TCP ports whose listeners terminate TLS with `certificateArns`"},
		{Field: "sslPolicy", Default: "AWS's default policy", Notes: "a predefined policy name, `ELBSecurityPolicy-...`; for a Service, needs `tlsPorts`"},
		{Field: "redirectToHTTPS", Default: "`false`", Notes: "Ingresses only: the HTTP listener answers with a redirect to HTTPS"},
		{Field: "idleTimeoutSeconds", Default: awsDefault + " (60)", Notes: "Ingresses only: " + idleTimeoutRange.String()},
		{Field: "elasticIps", Default: "none: AWS assigns the addresses", Notes: "internet-facing Services only: Elastic IP allocation IDs, one per listed subnet in the same order; fixed when the load balancer is created"},
		{Field: "crossZone", Default: awsDefault + " (off)", Notes: "Services only: the Network Load Balancer's cross-zone load balancing"},
		{Field: "proxyProtocol", Default: "false", Notes: "Services only: every listener's target group sends a PROXY v2 header with the client's address"},
		tagsFieldDoc(),
		{Field: "group", Default: "none: the Ingress or Service gets its own load balancer", Notes: "Ingresses (or Services) with the same group share one; 1–63 lowercase letters, digits and hyphens"},
		{Field: "backends", Default: "none", Notes: "per backend, keyed by `service:port` (port number or name): the fields below"},
	}
}

// LoadBalancerBackendFieldDocs documents BackendSpec, the value of each
// entry of "backends".
func LoadBalancerBackendFieldDocs() []providers.FieldDoc {
	return append(healthCheckFieldDocs("`HTTP` (`TCP` for a Service; path and matcher need HTTP or HTTPS)", nlbHealthCheckProtos), deregistrationDelayFieldDoc())
}

func (r intRange) String() string { return fmt.Sprintf("%d–%d", r.min, r.max) }
