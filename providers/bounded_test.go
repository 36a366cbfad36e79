package providers

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBoundedShortensLongQuotedValuesAndKeepsTheExplanation(t *testing.T) {
	huge := strings.Repeat("é", 50000)
	msg := fmt.Sprintf("%q is not a target group ARN", huge)
	got := Bounded(msg, MaxMessage)
	if !strings.HasSuffix(got, `" (100000 bytes) is not a target group ARN`) || len(got) > 2*MaxQuoted+60 {
		t.Errorf("Bounded kept %d bytes: %q", len(got), got)
	}
	if !utf8.ValidString(got) {
		t.Errorf("Bounded split a rune: %q", got)
	}
	short := `podlb.io/aws-target-groups["http"].arn: "x" is not an ARN`
	if got := Bounded(short, MaxMessage); got != short {
		t.Errorf("a short message changed: %q", got)
	}
	// Quotes the message itself holds (an escaped one inside a value, an
	// unpaired one from a JSON syntax error) neither break nor hide text.
	odd := `invalid character '"' after ` + fmt.Sprintf("%q", `a"b`)
	if got := Bounded(odd, MaxMessage); got != odd {
		t.Errorf("Bounded(%q) = %q", odd, got)
	}
}

func TestBoundedCutsWhatIsStillTooLong(t *testing.T) {
	got := Bounded(strings.Repeat("ж", 1000), 101)
	if len(got) > 101 || !strings.HasSuffix(got, "…") || !utf8.ValidString(got) {
		t.Errorf("Bounded kept %d bytes: %q", len(got), got)
	}
}
