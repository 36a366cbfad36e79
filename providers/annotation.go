package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DecodeStrict decodes one JSON value into v, refusing fields v does not
// have and anything after the value, so a typo in an annotation is an
// error rather than a silently ignored setting.
func DecodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

var (
	// serviceNameRE is a Kubernetes Service name: an RFC 1035 label.
	serviceNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	// portNameRE is a Kubernetes port name (IANA service name): at most
	// 15 lowercase letters, digits and inner single hyphens, with a letter.
	portNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$`)
)

// ParseServicePortKey splits a "service:port" key of an annotation's
// per-backend settings, the port being a number or a port name.
func ParseServicePortKey(key string) (service, port string, err error) {
	service, port, found := strings.Cut(key, ":")
	switch {
	case !found:
		return "", "", fmt.Errorf("%q is not service:port", key)
	case !serviceNameRE.MatchString(service):
		return "", "", fmt.Errorf("%q: %q is not a Service name", key, service)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", "", fmt.Errorf("%q: port %s is not a number in 1-65535", key, port)
		}
		return service, port, nil
	}
	if !portNameRE.MatchString(port) || strings.Contains(port, "--") || strings.Trim(port, "0123456789-") == "" {
		return "", "", fmt.Errorf("%q: %q is neither a port number nor a port name", key, port)
	}
	return service, port, nil
}

// ValidateBackends checks, in key order, that each key of an annotation's
// per-backend settings is a "service:port" key and each value passes
// validate, which is given the field's name, backends["service:port"].
func ValidateBackends[B any](backends map[string]B, validate func(b B, field string) error) error {
	for _, key := range slices.Sorted(maps.Keys(backends)) {
		field := fmt.Sprintf("backends[%q]", key)
		if _, _, err := ParseServicePortKey(key); err != nil {
			return Errorf(Invalid, field, "%v", err)
		}
		if err := validate(backends[key], field); err != nil {
			return err
		}
	}
	return nil
}

// ParseAnnotation decodes the value of annotation key into a new S (all
// of whose fields are optional: a blank value gives the zero S) and runs
// checks on it in order; every error is prefixed with the key, so it
// reads like `key: field: what is wrong`.
func ParseAnnotation[S any](key, raw string, checks ...func(*S) error) (*S, error) {
	s := new(S)
	if strings.TrimSpace(raw) != "" {
		if err := DecodeAnnotation([]byte(raw), s); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	for _, check := range checks {
		if err := check(s); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
	}
	return s, nil
}

// DecodeAnnotation is DecodeStrict for an annotation whose fields are
// all optional, with a classified error to show the user: a value of the
// wrong type names its field; anything else lists the fields v has.
func DecodeAnnotation(raw []byte, v any) error {
	err := DecodeStrict(raw, v)
	if err == nil {
		return nil
	}
	if f := decodeErrorField(err); f != "" {
		return Errorf(Invalid, f, "wrong type: %v", err)
	}
	return Errorf(Invalid, "", "want a JSON object of optional fields (%s): %v", strings.Join(JSONFields(reflect.TypeOf(v)), ", "), err)
}

// decodeErrorField names the field a DecodeStrict error is about when the
// JSON holds a value of the wrong type there (e.g. "subnets" for a string
// where a list belongs); "" for other errors.
func decodeErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}

// CheckPorts checks a list of ports: each 1-65535, none listed twice.
// Errors name the entry, as field[i].
func CheckPorts(field string, ports []int32) error {
	seen := map[int32]bool{}
	for i, port := range ports {
		f := fmt.Sprintf("%s[%d]", field, i)
		if port < 1 || port > 65535 {
			return Errorf(Invalid, f, "%d is not a port (1-65535)", port)
		}
		if seen[port] {
			return Errorf(Invalid, f, "port %d is listed twice", port)
		}
		seen[port] = true
	}
	return nil
}

// CheckList validates a list field of an annotation: every value passes
// valid (what says what it must be, e.g. "a subnet ID"), none repeats, and
// there are at most max (0: no limit). Errors name the entry, as
// field[i], or the field for the count.
func CheckList(field string, values []string, valid func(string) bool, what string, max int) error {
	seen := map[string]bool{}
	for i, v := range values {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !valid(v) {
			return Errorf(Invalid, f, "%q is not %s", v, what)
		}
		if seen[v] {
			return Errorf(Invalid, f, "%q is listed twice", v)
		}
		seen[v] = true
	}
	if max > 0 && len(values) > max {
		return Errorf(Invalid, field, "%d listed; at most %d", len(values), max)
	}
	return nil
}
