package aws

import (
	"fmt"

	"github.com/podlb/podlb/providers"
)

// CreateFieldDocs documents every field of CreateSpec (the value of
// "create") for the guide, with the limits validation enforces.
func CreateFieldDocs() []providers.FieldDoc {
	const awsDefault = "AWS's default"
	return []providers.FieldDoc{
		{Field: "protocol", Default: "`TCP` (`UDP` for UDP ports)", Notes: providers.CodeList(", ", protocols...)},
		{Field: "healthCheck.protocol", Default: "AWS's default for the group protocol", Notes: providers.CodeList(", ", hcProtocols...)},
		{Field: "healthCheck.port", Default: "`traffic-port`", Notes: "or a port number"},
		{Field: "healthCheck.path", Default: awsDefault, Notes: "must start with `/`"},
		{Field: "healthCheck.intervalSeconds", Default: awsDefault, Notes: intervalRange.String()},
		{Field: "healthCheck.timeoutSeconds", Default: awsDefault, Notes: timeoutRange.String() + ", less than the interval"},
		{Field: "healthCheck.healthyThreshold", Default: awsDefault, Notes: thresholdRange.String()},
		{Field: "healthCheck.unhealthyThreshold", Default: awsDefault, Notes: thresholdRange.String()},
		{Field: "healthCheck.matcher", Default: awsDefault, Notes: "HTTP codes, e.g. `200` or `200-399`"},
		{Field: "deregistrationDelaySeconds", Default: awsDefault + " (300)", Notes: deregistrationDelayRange.String()},
		{Field: "tags", Default: "none", Notes: fmt.Sprintf("at most %d; keys under %s are reserved", maxTags, providers.CodeList(" and ", reservedTagPrefixes...))},
	}
}

func (r intRange) String() string { return fmt.Sprintf("%d–%d", r.min, r.max) }
