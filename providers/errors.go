package providers

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Class says how the core should react to a cloud error.
type Class string

const (
	// Throttled: the cloud's rate limit. Back off quietly.
	Throttled Class = "throttled"
	// NotFound: a named resource does not exist. The user must act; retry
	// slowly, warn once.
	NotFound Class = "not-found"
	// Invalid: the request can never succeed as configured (bad field,
	// wrong target type, wrong VPC, quota). Warn once, retry slowly.
	Invalid Class = "invalid"
	// Transient: anything else, retried with backoff.
	Transient Class = "transient"
)

// Error is a classified error. Field, when set, names the annotation field
// the user should fix.
type Error struct {
	Class Class
	Field string
	Err   error
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns a classified error naming a field.
func Errorf(class Class, field, format string, args ...any) error {
	return &Error{Class: class, Field: field, Err: fmt.Errorf(format, args...)}
}

// Classify wraps err with a class unless it already has one.
func Classify(class Class, field string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Class: class, Field: field, Err: err}
}

// ClassOf reports the class of err; unclassified errors are transient.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Transient
}

// IsUserError reports whether err needs a person to change something,
// as opposed to waiting it out.
func IsUserError(err error) bool {
	c := ClassOf(err)
	return c == NotFound || c == Invalid
}

// WithField names the annotation field behind err, keeping its class.
func WithField(field string, err error) error {
	if err == nil || field == "" {
		return err
	}
	var e *Error
	if errors.As(err, &e) && e.Field != "" {
		return err
	}
	return &Error{Class: ClassOf(err), Field: field, Err: err}
}

// TargetErrors is returned by Provider.Apply when the cloud refused some
// targets one by one; every other target of the plan was applied.
type TargetErrors struct {
	// Failed holds, per refused target, the classified cloud error.
	Failed map[TargetKey]error
}

func (e *TargetErrors) Error() string {
	keys := make([]TargetKey, 0, len(e.Failed))
	for k := range e.Failed {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	parts := make([]string, 0, min(len(keys), 3))
	for _, k := range keys[:min(len(keys), 3)] {
		parts = append(parts, fmt.Sprintf("%s: %v", k, e.Failed[k]))
	}
	if len(keys) > 3 {
		parts = append(parts, fmt.Sprintf("and %d more", len(keys)-3))
	}
	return fmt.Sprintf("%d target(s) refused: %s", len(keys), strings.Join(parts, "; "))
}

// AsTargetErrors finds a *TargetErrors in err's chain.
func AsTargetErrors(err error) (*TargetErrors, bool) {
	var te *TargetErrors
	if errors.As(err, &te) {
		return te, true
	}
	return nil, false
}
