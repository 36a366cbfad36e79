package aws

import (
	"errors"
	"strings"
	"testing"

	"github.com/podlb/podlb/providers"
)

func TestParseSpecAccepts(t *testing.T) {
	for _, raw := range []string{
		`{"arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-80/73e2d6bc24d8a067"}`,
		`{"arn": "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/a/0123456789abcdef"}`,
		`{"name": "web-80"}`,
		`{"create": {}}`,
		`{"create": {"protocol": "HTTP", "healthCheck": {"path": "/healthz", "port": "traffic-port", "intervalSeconds": 10, "timeoutSeconds": 5, "healthyThreshold": 2, "unhealthyThreshold": 3, "matcher": "200-399"}, "deregistrationDelaySeconds": 30, "tags": {"team": "shop"}}}`,
	} {
		if _, err := ParseSpec([]byte(raw)); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

func TestParseSpecRejectsWithField(t *testing.T) {
	cases := []struct{ raw, field, substr string }{
		{`{"arn": "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/x/1"}`, "arn", "not a target group ARN"},
		{`{"arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/x/0123456789abcdef"}`, "arn", "not a target group ARN"},
		{`{"name": "-web"}`, "name", "not a target group name"},
		{`{"name": "a-name-that-is-much-longer-than-32-chars"}`, "name", "not a target group name"},
		{`{"arn": "x", "name": "y"}`, "", "exactly one"},
		{`{}`, "", "exactly one"},
		{`{"nmae": "web"}`, "", "unknown field"},
		{`"web"`, "", "want"},
		{`{"create": {"protocol": "GENEVE"}}`, "create.protocol", "not one of"},
		{`{"create": {"deregistrationDelaySeconds": 4000}}`, "create.deregistrationDelaySeconds", "outside 0-3600"},
		{`{"create": {"healthCheck": {"intervalSeconds": 1}}}`, "create.healthCheck.intervalSeconds", "outside 5-300"},
		{`{"create": {"healthCheck": {"timeoutSeconds": 200}}}`, "create.healthCheck.timeoutSeconds", "outside 2-120"},
		{`{"create": {"healthCheck": {"healthyThreshold": 11}}}`, "create.healthCheck.healthyThreshold", "outside 2-10"},
		{`{"create": {"healthCheck": {"intervalSeconds": 10, "timeoutSeconds": 10}}}`, "create.healthCheck.timeoutSeconds", "less than"},
		{`{"create": {"healthCheck": {"port": "http"}}}`, "create.healthCheck.port", "traffic-port"},
		{`{"create": {"healthCheck": {"path": "healthz"}}}`, "create.healthCheck.path", "start with /"},
		{`{"create": {"healthCheck": {"matcher": "2xx"}}}`, "create.healthCheck.matcher", "HTTP code"},
		{`{"create": {"tags": {"podlb.io/cluster": "x"}}}`, "create.tags", "reserved"},
	}
	for _, c := range cases {
		_, err := ParseSpec([]byte(c.raw))
		var pe *providers.Error
		if !errors.As(err, &pe) {
			t.Errorf("%s: want a classified error, got %v", c.raw, err)
			continue
		}
		if pe.Class != providers.Invalid || pe.Field != c.field || !strings.Contains(pe.Err.Error(), c.substr) {
			t.Errorf("%s: got %s field %q %q; want field %q containing %q", c.raw, pe.Class, pe.Field, pe.Err, c.field, c.substr)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add(`{"arn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-80/73e2d6bc24d8a067"}`)
	f.Add(`{"create": {"healthCheck": {"intervalSeconds": 10}}}`)
	f.Add(`{"name": "x"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseSpec([]byte(raw))
		if err != nil {
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Class != providers.Invalid {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		// Whatever parses is exactly one kind and round-trips.
		again, err := ParseSpec([]byte(s.Summary()))
		if err != nil || again.Summary() != s.Summary() {
			t.Fatalf("round trip of %s: %v", s.Summary(), err)
		}
	})
}

func TestOwnedName(t *testing.T) {
	k := providers.BindingKey{Namespace: "production-payments", Service: "checkout-frontend-v2", Provider: "aws", Port: 443}
	n := OwnedName("cluster-a", k)
	if len(n) > 32 || !tgNamePattern.MatchString(n) {
		t.Fatalf("%q is not a valid target group name", n)
	}
	if n != OwnedName("cluster-a", k) {
		t.Error("not deterministic")
	}
	seen := map[string]bool{n: true}
	for _, other := range []providers.BindingKey{
		{Namespace: k.Namespace, Service: k.Service, Port: 80},
		{Namespace: k.Namespace, Service: "checkout-frontend-v3", Port: 443},
		{Namespace: "production-paymentz", Service: k.Service, Port: 443},
	} {
		m := OwnedName("cluster-a", other)
		if seen[m] {
			t.Errorf("collision for %v: %s", other, m)
		}
		seen[m] = true
	}
	if OwnedName("cluster-b", k) == n {
		t.Error("two clusters would share a group name")
	}
	if n := OwnedName("c", providers.BindingKey{Namespace: "---", Service: "Ä", Port: 1}); !tgNamePattern.MatchString(n) {
		t.Errorf("odd names still give a valid name: %q", n)
	}
}

func TestProtocolServes(t *testing.T) {
	for _, c := range []struct {
		group, port string
		ok          bool
	}{
		{"TCP", "TCP", true}, {"HTTP", "TCP", true}, {"TCP_UDP", "UDP", true}, {"UDP", "TCP", false},
		{"TCP", "UDP", false}, {"TCP", "SCTP", false}, {"TLS", "", true},
	} {
		if got := protocolServes(c.group, c.port); got != c.ok {
			t.Errorf("%s serving %s: %v", c.group, c.port, got)
		}
	}
}

func TestOwnership(t *testing.T) {
	k := providers.BindingKey{Namespace: "ns", Service: "svc", Port: 80}
	tags := ownerTags("c1", k)
	if !ownedBy(tags, "c1", k) {
		t.Fatal("own tags not recognised")
	}
	if ownedBy(tags, "c2", k) || ownedBy(tags, "c1", providers.BindingKey{Namespace: "ns", Service: "svc", Port: 81}) {
		t.Error("another cluster or port must not pass as owner")
	}
	delete(tags, TagService)
	if ownedBy(tags, "c1", k) {
		t.Error("a missing tag must not pass as owner")
	}
}

// unhealthy.draining is still registered (only its connections drain), so
// it must not read as a target on its way out.
func TestMapStateKeepsUnhealthyDrainingRegistered(t *testing.T) {
	for s, want := range map[string]providers.State{
		"healthy": providers.Healthy, "initial": providers.Pending, "unhealthy": providers.Unhealthy,
		"unused": providers.Unused, "draining": providers.Draining, "unhealthy.draining": providers.Unhealthy,
		"unavailable": providers.Pending,
	} {
		if got := mapState(s); got != want {
			t.Errorf("%s -> %s, want %s", s, got, want)
		}
	}
}
