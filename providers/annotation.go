package providers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
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

// DecodeErrorField names the field a DecodeStrict error is about when the
// JSON holds a value of the wrong type there (e.g. "subnets" for a string
// where a list belongs); "" for other errors.
func DecodeErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}
