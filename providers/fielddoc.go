package providers

import (
	"reflect"
	"strings"
)

// FieldDoc documents one field of a provider's annotation value for the
// guide's reference tables. Providers build their FieldDocs from the same
// values their validation uses, so the allowed values cannot drift.
type FieldDoc struct {
	// Field is the JSON path below the documented type, e.g.
	// healthCheck.intervalSeconds.
	Field string
	// Default is what an unset field means.
	Default string
	// Notes are the allowed values and constraints.
	Notes string
}

// JSONFields lists the JSON paths of t's leaf fields, in declaration
// order: fields that hold a struct (or a pointer to one) are walked into,
// unexported and untagged ones skipped.
func JSONFields(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			for _, sub := range JSONFields(ft) {
				out = append(out, name+"."+sub)
			}
			continue
		}
		out = append(out, name)
	}
	return out
}

// CodeList formats values as Markdown code, joined by sep, for FieldDoc
// notes.
func CodeList(sep string, vs ...string) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = "`" + v + "`"
	}
	return strings.Join(out, sep)
}
