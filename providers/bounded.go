package providers

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds of what podlb repeats of its input in Events and status: an
// annotation may hold 256 KiB, and an Event or a status quoting it whole
// would carry (and keep in podlb's memory, and the API server's) as much.
const (
	// MaxQuoted is how much of one quoted value a message keeps.
	MaxQuoted = 64
	// MaxMessage bounds a whole problem message.
	MaxMessage = 1024
)

// Bounded returns s with every double-quoted run longer than MaxQuoted
// (a value or key quoted by %q or by encoding/json) shortened to its
// start, "…" and its length, and the whole cut to limit bytes, so a
// message about a huge input is small and still says what is wrong.
func Bounded(s string, limit int) string {
	if len(s) <= MaxQuoted && len(s) <= limit {
		return s
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(s, '"')
		if open < 0 {
			b.WriteString(s)
			break
		}
		end := closingQuote(s, open+1)
		if end < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:open])
		quoted := s[open : end+1]
		if len(quoted) > MaxQuoted+2 {
			quoted = fmt.Sprintf(`%s…" (%d bytes)`, cutRunes(quoted[:MaxQuoted+1]), len(quoted)-2)
		}
		b.WriteString(quoted)
		s = s[end+1:]
	}
	out := b.String()
	if len(out) > limit {
		out = cutRunes(out[:limit-len("…")]) + "…"
	}
	return out
}

// closingQuote is the index of the unescaped '"' closing a quoted run
// that starts at from, or -1.
func closingQuote(s string, from int) int {
	for i := from; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// cutRunes drops the bytes of a rune that a byte cut split at the end
// of s.
func cutRunes(s string) string {
	for range utf8.UTFMax - 1 {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}
