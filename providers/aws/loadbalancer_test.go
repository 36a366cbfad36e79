package aws

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/podlb/podlb/providers"
)

func TestParseLoadBalancerSpecAccepts(t *testing.T) {
	full := `{"scheme": "internal", "subnets": ["subnet-0123abcd", "subnet-0123456789abcdef0"],
		"securityGroups": ["sg-0123abcd"],
		"certificateArns": ["arn:aws:acm:eu-west-1:123456789012:certificate/12345678-90ab-cdef-1234-567890abcdef"],
		"sslPolicy": "ELBSecurityPolicy-TLS13-1-2-2021-06", "redirectToHTTPS": true, "idleTimeoutSeconds": 4000,
		"tags": {"team": "shop"}, "group": "public-1",
		"backends": {"web:http": {"healthCheck": {"path": "/ready", "protocol": "HTTP", "intervalSeconds": 10, "timeoutSeconds": 5},
			"deregistrationDelaySeconds": 0}, "api:8080": {}}}`
	for _, raw := range []string{"", "  ", "{}", "null", `{"scheme": "internet-facing"}`, `{"idleTimeoutSeconds": 1}`, full} {
		if _, err := ParseLoadBalancerSpec(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	s, err := ParseLoadBalancerSpec(full)
	if err != nil {
		t.Fatal(err)
	}
	if s.Scheme != "internal" || len(s.Subnets) != 2 || !s.RedirectToHTTPS || *s.IdleTimeoutSeconds != 4000 ||
		s.Backends["web:http"].HealthCheck.Path != "/ready" || s.Group != "public-1" || len(s.CertificateARNs) != 1 {
		t.Errorf("decoded %+v", s)
	}
}

func TestParseLoadBalancerSpecRejectsNamingTheField(t *testing.T) {
	arn := "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-90ab-cdef-1234-567890abcdef"
	cases := []struct{ raw, field, message string }{
		{`{"scheme": "public"}`, "scheme", `scheme: must be internet-facing or internal, got "public"`},
		{`{"schema": "internal"}`, "", `unknown field "schema"`},
		{`{} {}`, "", "unexpected data after the JSON value"},
		{`[]`, "", "want a JSON object of optional fields (scheme, subnets, securityGroups, certificateArns"},
		{`{"subnets": "subnet-0123abcd"}`, "subnets", "subnets: wrong type: json: cannot unmarshal string"},
		{`{"subnets": ["subnet-0123abcd"]}`, "subnets", "at least 2 Availability Zones"},
		{`{"subnets": ["subnet-0123abcd", "subnet-0123abc"]}`, "subnets[1]", `"subnet-0123abc" is not a subnet ID`},
		{`{"subnets": ["subnet-0123abcd", "subnet-0123ABCD"]}`, "subnets[1]", "not a subnet ID"},
		{`{"subnets": ["subnet-0123abcd", "subnet-0123abcd"]}`, "subnets[1]", "listed twice"},
		{`{"securityGroups": ["sg-0123456789abcdef"]}`, "securityGroups[0]", "not a security group ID"},
		{`{"securityGroups": ["sg-00000001", "sg-00000002", "sg-00000003", "sg-00000004", "sg-00000005", "sg-00000006"]}`, "securityGroups", "6 listed; at most 5"},
		{`{"certificateArns": ["arn:aws:iam::123456789012:server-certificate/x"]}`, "certificateArns[0]", "not an ACM certificate ARN"},
		{`{"certificateArns": ["` + arn + `", "` + arn + `"]}`, "certificateArns[1]", "listed twice"},
		{`{"sslPolicy": "TLS13"}`, "sslPolicy", "not an ELB security policy name"},
		{`{"redirectToHTTPS": "yes"}`, "redirectToHTTPS", "redirectToHTTPS: wrong type"},
		{`{"idleTimeoutSeconds": 0}`, "idleTimeoutSeconds", "0 is outside 1-4000"},
		{`{"idleTimeoutSeconds": 4001}`, "idleTimeoutSeconds", "4001 is outside 1-4000"},
		{`{"tags": {"aws:x": "y"}}`, "tags", `tag key "aws:x" is reserved`},
		{`{"group": "Public"}`, "group", "not a group name"},
		{`{"group": "-a"}`, "group", "not a group name"},
		{`{"group": "` + strings.Repeat("a", 64) + `"}`, "group", "not a group name"},
		{`{"backends": {"web": {}}}`, `backends["web"]`, `"web" is not service:port`},
		{`{"backends": {"Web:80": {}}}`, `backends["Web:80"]`, "not a Service name"},
		{`{"backends": {"web:0": {}}}`, `backends["web:0"]`, "not a number in 1-65535"},
		{`{"backends": {"web:http_2": {}}}`, `backends["web:http_2"]`, "neither a port number nor a port name"},
		{`{"backends": {"web:80": {"deregistrationDelaySeconds": 3601}}}`, `backends["web:80"].deregistrationDelaySeconds`, "outside 0-3600"},
		{`{"backends": {"web:80": {"healthCheck": {"path": "ready"}}}}`, `backends["web:80"].healthCheck.path`, "must start with /"},
		{`{"backends": {"web:80": {"healthCheck": {"intervalSeconds": 5, "timeoutSeconds": 5}}}}`, `backends["web:80"].healthCheck.timeoutSeconds`, "less than intervalSeconds"},
		{`{"backends": {"web:80": {"healthCheck": {"protocol": "TCP"}}}}`, `backends["web:80"].healthCheck.protocol`, "does not apply to an ALB's target groups; use HTTP or HTTPS"},
		{`{"backends": {"web:80": {"healthCheck": {"protocol": "GRPC"}}}}`, `backends["web:80"].healthCheck.protocol`, "not one of"},
		{`{"backends": {"web:80": {"interval": 5}}}`, "", `unknown field "interval"`},
	}
	for _, c := range cases {
		_, err := ParseLoadBalancerSpec(c.raw)
		var pe *providers.Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: want a classified error, got %v", c.raw, err)
			continue
		}
		if pe.Class != providers.Invalid || pe.Field != c.field {
			t.Errorf("%s: got %s field %q (%v); want Invalid field %q", c.raw, pe.Class, pe.Field, err, c.field)
		}
		if msg := err.Error(); !strings.HasPrefix(msg, LoadBalancerAnnotationKey+": ") || !strings.Contains(msg, c.message) {
			t.Errorf("%s: message %q, want %q: ... containing %q", c.raw, msg, LoadBalancerAnnotationKey, c.message)
		}
	}
}

func TestLoadBalancerFieldDocsCoverEveryField(t *testing.T) {
	for _, c := range []struct {
		t    reflect.Type
		docs []providers.FieldDoc
	}{
		{reflect.TypeFor[LoadBalancerSpec](), LoadBalancerFieldDocs()},
		{reflect.TypeFor[BackendSpec](), LoadBalancerBackendFieldDocs()},
		{reflect.TypeFor[CreateSpec](), CreateFieldDocs()},
	} {
		var documented []string
		for _, d := range c.docs {
			documented = append(documented, d.Field)
			if d.Default == "" || d.Notes == "" {
				t.Errorf("%s.%s: default or notes missing", c.t, d.Field)
			}
		}
		if fields := providers.JSONFields(c.t); !slices.Equal(fields, documented) {
			t.Errorf("%s: documented %v, fields %v", c.t, documented, fields)
		}
	}
}
