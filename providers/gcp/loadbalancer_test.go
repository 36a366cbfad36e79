package gcp

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/podlb/podlb/providers"
)

func TestParseLoadBalancerSpecAccepts(t *testing.T) {
	full := `{"scheme": "internal", "region": "europe-west1", "proxySubnet": "proxy-only", "address": "10.0.0.5",
		"sslCertificates": ["shop-cert", "blog-cert"], "sslPolicy": "modern", "redirectToHTTPS": true, "timeoutSec": 600,
		"group": "internal-apps",
		"backends": {"web:http": {"healthCheck": {"path": "/ready", "port": 8080, "checkIntervalSec": 10},
			"maxRatePerEndpoint": 50.5, "drainingTimeoutSec": 30}, "api:8000": {"balancingMode": "RATE"}}}`
	for _, raw := range []string{"", "{}", "null", `{"scheme": "external"}`, `{"region": "us-central1", "proxySubnet": "p"}`,
		`{"address": "shop-ip"}`, `{"address": "2001:db8::1"}`, full} {
		if _, err := ParseLoadBalancerSpec(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
	s, err := ParseLoadBalancerSpec(full)
	if err != nil {
		t.Fatal(err)
	}
	b := s.Backends["web:http"]
	if s.Scheme != "internal" || s.Region != "europe-west1" || *s.TimeoutSec != 600 || *b.HealthCheck.Port != 8080 ||
		*b.MaxRatePerEndpoint != 50.5 || *b.DrainingTimeoutSec != 30 || len(s.SSLCertificates) != 2 {
		t.Errorf("decoded %+v", s)
	}
}

func TestParseLoadBalancerSpecRejectsNamingTheField(t *testing.T) {
	cases := []struct{ raw, field, message string }{
		{`{"scheme": "public"}`, "scheme", `scheme: must be external or internal, got "public"`},
		{`{"scheme": "INTERNAL"}`, "scheme", "must be external or internal"},
		{`{"zone": "a"}`, "", `unknown field "zone"`},
		{`{} []`, "", "unexpected data after the JSON value"},
		{`{"timeoutSec": "30s"}`, "timeoutSec", "timeoutSec: wrong type"},
		{`"x"`, "", "want a JSON object of optional fields (scheme, region, proxySubnet"},
		{`{"scheme": "internal"}`, "region", "set its region"},
		{`{"scheme": "internal", "region": "us-east1"}`, "proxySubnet", "needs the proxy-only subnet"},
		{`{"proxySubnet": "p"}`, "proxySubnet", "applies only to regional load balancers"},
		{`{"region": "US-east1"}`, "region", `"US-east1" is not a region name`},
		{`{"region": "r", "proxySubnet": "1p"}`, "proxySubnet", "not a subnet name"},
		{`{"sslPolicy": "p_1"}`, "sslPolicy", "not an SSL policy name"},
		{`{"group": "` + strings.Repeat("g", 64) + `"}`, "group", "not a group name"},
		{`{"group": "9lives"}`, "group", "starting with a letter"},
		{`{"address": "10.0.0.256"}`, "address", "neither an address name"},
		{`{"sslCertificates": ["a", "B"]}`, "sslCertificates[1]", `"B" is not a certificate name`},
		{`{"sslCertificates": ["a", "a"]}`, "sslCertificates[1]", "listed twice"},
		{`{"sslCertificates": ["a1","a2","a3","a4","a5","a6","a7","a8","a9","b1","b2","b3","b4","b5","b6","b7"]}`, "sslCertificates", "16 listed; at most 15"},
		{`{"timeoutSec": 0}`, "timeoutSec", "at least 1"},
		{`{"backends": {"web-80": {}}}`, `backends["web-80"]`, "not service:port"},
		{`{"backends": {"web:99999": {}}}`, `backends["web:99999"]`, "not a number in 1-65535"},
		{`{"backends": {"web:80": {"maxRatePerEndpoint": 0}}}`, `backends["web:80"].maxRatePerEndpoint`, "positive number"},
		{`{"backends": {"web:80": {"drainingTimeoutSec": -1}}}`, `backends["web:80"].drainingTimeoutSec`, "outside 0-3600"},
		{`{"backends": {"web:80": {"drainingTimeoutSec": 3601}}}`, `backends["web:80"].drainingTimeoutSec`, "outside 0-3600"},
		{`{"backends": {"web:80": {"healthCheck": {"path": "x"}}}}`, `backends["web:80"].healthCheck.path`, "must start with /"},
		{`{"backends": {"web:80": {"healthCheck": {"port": 0}}}}`, `backends["web:80"].healthCheck.port`, "outside 1-65535"},
		{`{"backends": {"web:80": {"healthCheck": {"checkIntervalSec": 301}}}}`, `backends["web:80"].healthCheck.checkIntervalSec`, "outside 1-300"},
		{`{"backends": {"web:80": {"healthCheck": {"timeoutSec": 5}}}}`, "", `unknown field "timeoutSec"`},
		{`{"backends": {"web:80": {"balancingMode": "CONNECTION"}}}`, `backends["web:80"].balancingMode`, "its backends use RATE"},
		{`{"backends": {"web:80": {"balancingMode": "UTILIZATION"}}}`, `backends["web:80"].balancingMode`, "instance group backends only"},
		{`{"backends": {"web:80": {"balancingMode": "rate"}}}`, `backends["web:80"].balancingMode`, `"rate" is not one of RATE, CONNECTION`},
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
		{reflect.TypeFor[Spec](), FieldDocs()},
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
