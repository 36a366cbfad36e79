package providers

import (
	"errors"
	"strings"
	"testing"
)

func TestParseServicePortKey(t *testing.T) {
	for _, c := range []struct{ key, service, port, err string }{
		{"web:80", "web", "80", ""},
		{"web:http", "web", "http", ""},
		{"my-api:grpc-web", "my-api", "grpc-web", ""},
		{"web:65535", "web", "65535", ""},
		{"web", "", "", "not service:port"},
		{"web:", "", "", "neither a port number nor a port name"},
		{":80", "", "", "not a Service name"},
		{"9web:80", "", "", "not a Service name"},
		{"web:65536", "", "", "not a number in 1-65535"},
		{"web:080", "", "", "not a number in 1-65535"},
		{"web:HTTP", "", "", "neither"},
		{"web:a--b", "", "", "neither"},
		{"web:-http", "", "", "neither"},
		{"web:1-2", "", "", "neither"},
		{"web:a-very-long-port-name", "", "", "neither"},
	} {
		service, port, err := ParseServicePortKey(c.key)
		switch {
		case c.err == "" && (err != nil || service != c.service || port != c.port):
			t.Errorf("%q: got %q %q %v", c.key, service, port, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: got error %v, want one containing %q", c.key, err, c.err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	type v struct {
		A int      `json:"a"`
		B []string `json:"b"`
	}
	for _, c := range []struct{ raw, err, field string }{
		{`{"a": 1, "b": ["x"]}`, "", ""},
		{`{"c": 1}`, `unknown field "c"`, ""},
		{`{"a": 1} x`, "unexpected data", ""},
		{`{"b": "x"}`, "cannot unmarshal", "b"},
		{`{`, "unexpected EOF", ""},
	} {
		var out v
		err := DecodeStrict([]byte(c.raw), &out)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.raw, err, c.err)
		}
		if got := decodeErrorField(err); got != c.field {
			t.Errorf("%s: field %q, want %q", c.raw, got, c.field)
		}
	}
}

func TestDecodeAnnotationNamesTheFieldOfAWrongType(t *testing.T) {
	type v struct {
		Scheme  string   `json:"scheme"`
		Subnets []string `json:"subnets"`
	}
	for _, c := range []struct{ raw, field, message string }{
		{`{"subnets": "subnet-1"}`, "subnets", "subnets: wrong type: "},
		{`{"scheme": 1}`, "scheme", "scheme: wrong type: "},
		{`{"sheme": "x"}`, "", `want a JSON object of optional fields (scheme, subnets): json: unknown field "sheme"`},
		{`[]`, "", "want a JSON object of optional fields (scheme, subnets)"},
	} {
		err := DecodeAnnotation([]byte(c.raw), &v{})
		var pe *Error
		if !errors.As(err, &pe) || pe.Class != Invalid || pe.Field != c.field || !strings.HasPrefix(err.Error(), c.message) {
			t.Errorf("%s: got %v, want Invalid field %q starting %q", c.raw, err, c.field, c.message)
		}
	}
}

// ParseAnnotation gives the zero value for a blank annotation, runs its
// checks in order up to the first that fails, and names the annotation
// in every error.
func TestParseAnnotationChecksInOrderAndNamesTheAnnotation(t *testing.T) {
	type spec struct {
		Scheme string `json:"scheme,omitempty"`
	}
	var ran []string
	check := func(name string, err error) func(*spec) error {
		return func(*spec) error { ran = append(ran, name); return err }
	}
	if s, err := ParseAnnotation("example.io/lb", "  ", check("first", nil)); err != nil || *s != (spec{}) || len(ran) != 1 {
		t.Fatalf("blank: %+v, %v, checks %v; want the zero spec, no error, the check run", s, err, ran)
	}
	ran = nil
	bad := Errorf(Invalid, "scheme", "must be external or internal")
	_, err := ParseAnnotation("example.io/lb", `{"scheme":"public"}`, check("first", bad), check("second", nil))
	if err == nil || err.Error() != "example.io/lb: scheme: must be external or internal" || ClassOf(err) != Invalid || len(ran) != 1 {
		t.Fatalf("a failed check: %v, checks %v; want it named after the annotation, Invalid, the second check not run", err, ran)
	}
	if _, err := ParseAnnotation("example.io/lb", `{"schema":"x"}`, check("first", nil)); err == nil || !strings.HasPrefix(err.Error(), "example.io/lb: ") || ClassOf(err) != Invalid {
		t.Fatalf("an unknown field: %v, want an Invalid error named after the annotation", err)
	}
}
