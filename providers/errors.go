package providers

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
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

// Kind names what kind of problem err is, leaving out what sets one
// occurrence apart from the next (an address, a pod, a zone): the cloud's
// error code where the cloud gave one, else the class and field podlb gave
// it. Two targets refused for the same reason are of one kind.
func Kind(err error) string {
	var ce *CloudError
	if errors.As(err, &ce) {
		if ce.Code != "" {
			return ce.Code
		}
		return ce.Op
	}
	var e *Error
	if errors.As(err, &e) {
		return strings.TrimSuffix(string(e.Class)+" "+e.Field, " ")
	}
	return string(Transient)
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
	if _, ok := AsTargetErrors(err); ok {
		return err
	}
	return &Error{Class: class, Field: field, Err: err}
}

// ClassOf reports the class of err; unclassified errors are transient. A
// *TargetErrors (not wrapped in an *Error) is Invalid: the rest of the plan
// was applied, and sending the refused targets again unchanged cannot help;
// each target's own error in Failed carries its own class.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	if _, ok := AsTargetErrors(err); ok {
		return Invalid
	}
	return Transient
}

// TargetErrors is returned by Provider.Apply when the cloud refused some
// targets one by one; every other target of the plan was applied.
type TargetErrors struct {
	// Failed holds, per refused target, the classified cloud error.
	Failed map[TargetKey]error
}

// targetErrorsShown is how many refused targets Error names with their
// error, and targetNamesShown how many it names at all.
const (
	targetErrorsShown = 3
	targetNamesShown  = 10
)

// Error names the refused targets in address order, the first few with
// their error, so the same refusals always read the same.
func (e *TargetErrors) Error() string {
	keys := e.Keys()
	var b strings.Builder
	if len(keys) == 1 {
		b.WriteString("1 target refused: ")
	} else {
		fmt.Fprintf(&b, "%d targets refused: ", len(keys))
	}
	for i, k := range keys {
		switch {
		case i == targetNamesShown:
			fmt.Fprintf(&b, " and %d more", len(keys)-i)
			return b.String()
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(k.String())
		if i < targetErrorsShown {
			fmt.Fprintf(&b, " (%v)", e.Failed[k])
		}
	}
	return b.String()
}

// Keys lists the refused targets sorted by IP and port.
func (e *TargetErrors) Keys() []TargetKey {
	keys := make([]TargetKey, 0, len(e.Failed))
	for k := range e.Failed {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b TargetKey) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return keys
}

// AsTargetErrors finds a *TargetErrors in err's chain.
func AsTargetErrors(err error) (*TargetErrors, bool) {
	var te *TargetErrors
	if errors.As(err, &te) && te != nil {
		return te, true
	}
	return nil, false
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

// KeptError says that a deletion removed everything of podlb's it could,
// but that resources podlb did not create depend on the rest (Kept, each
// naming podlb's resource and what holds it), so it stays. Trying again
// cannot help until a person removes those; the caller reports Kept and
// moves on rather than retrying forever. Kept errors are Invalid.
type KeptError struct {
	Kept []string
}

func (e *KeptError) Error() string {
	return "kept because resources podlb did not create depend on them: " + strings.Join(e.Kept, "; ")
}

// Kept returns an Invalid *KeptError, or nil when nothing is kept.
func Kept(kept []string) error {
	if len(kept) == 0 {
		return nil
	}
	return &Error{Class: Invalid, Err: &KeptError{Kept: kept}}
}

// AsKept finds a *KeptError in err's chain.
func AsKept(err error) (*KeptError, bool) {
	var ke *KeptError
	if errors.As(err, &ke) && ke != nil {
		return ke, true
	}
	return nil, false
}
