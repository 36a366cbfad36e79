package computesim

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
)

// The list filter supports the two GCE syntaxes podlb-like clients use:
//
//	name = "k8s1-abc"        literal (with * as wildcard), also != and :
//	name eq k8s1-.*          RE2 full match, also ne
//
// joined by whitespace or AND, each clause optionally in parentheses. Field
// names are JSON names, dotted for nested fields (description, zone, ...).
// OR is not supported and answers 400 invalid.
type clause struct {
	field, op string
	re        *regexp.Regexp
}

var clauseRE = regexp.MustCompile(`^\s*\(?\s*([A-Za-z][A-Za-z0-9_.]*)\s*(!=|=|:|eq\s|ne\s)\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s()]+)\s*\)?\s*`)
var andRE = regexp.MustCompile(`^(?i)AND\s+`)

func parseFilter(f string) ([]clause, *apiError) {
	var out []clause
	rest := strings.TrimSpace(f)
	for rest != "" {
		m := clauseRE.FindStringSubmatch(rest)
		if m == nil {
			return nil, errInvalidField("filter", f, "Invalid list filter expression.")
		}
		rest = rest[len(m[0]):]
		if loc := andRE.FindStringIndex(rest); loc != nil {
			rest = rest[loc[1]:]
		}
		op := strings.TrimSpace(m[2])
		val := m[3]
		if strings.HasPrefix(val, `"`) {
			if uq, err := strconv.Unquote(val); err == nil {
				val = uq
			}
		} else if strings.HasPrefix(val, `'`) {
			val = strings.Trim(val, `'`)
		}
		var pattern string
		switch op {
		case "eq", "ne":
			pattern = "^(?:" + val + ")$"
		default:
			parts := strings.Split(val, "*")
			for i := range parts {
				parts[i] = regexp.QuoteMeta(parts[i])
			}
			pattern = "^" + strings.Join(parts, ".*") + "$"
		}
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, errInvalidField("filter", f, "Invalid regular expression.")
		}
		out = append(out, clause{field: m[1], op: op, re: re})
	}
	return out, nil
}

func matchFilter(cs []clause, m proto.Message) bool {
	if len(cs) == 0 {
		return true
	}
	b, err := marshalOpts.Marshal(m)
	if err != nil {
		return false
	}
	var doc map[string]any
	if json.Unmarshal(b, &doc) != nil {
		return false
	}
	for _, c := range cs {
		v, ok := lookupField(doc, c.field)
		hit := ok && c.re.MatchString(v)
		switch c.op {
		case "!=", "ne":
			hit = !hit
		}
		if !hit {
			return false
		}
	}
	return true
}

func lookupField(doc map[string]any, field string) (string, bool) {
	var cur any = doc
	for _, p := range strings.Split(field, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		cur, ok = mm[p]
		if !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}
