package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	uberzap "go.uber.org/zap"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// countingStringer counts how often zap encodes it.
type countingStringer struct{ n *int }

func (c countingStringer) String() string { *c.n++; return "counted" }

func TestDeferredValuesAreEncodedOnlyWhenALineIsWritten(t *testing.T) {
	var buf bytes.Buffer
	log := DeferValues(zap.New(zap.WriteTo(&buf), zap.RawZapOpts(uberzap.AddCaller())))

	encoded := 0
	quiet := log.WithName("binding").WithValues("value", countingStringer{&encoded}, "n", 1)
	if encoded != 0 {
		t.Fatalf("values encoded %d times before any line was written", encoded)
	}
	sibling := log.WithName("other").WithValues("k", "v")
	loud := quiet.WithValues("more", "yes")
	loud.Info("first")
	loud.Error(errors.New("boom"), "second")
	sibling.Info("third")
	if encoded != 1 {
		t.Fatalf("values encoded %d times for two lines of one logger, want once", encoded)
	}

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}
	for i, want := range []map[string]any{
		{"msg": "first", "logger": "binding", "value": "counted", "n": float64(1), "more": "yes"},
		{"msg": "second", "logger": "binding", "value": "counted", "more": "yes", "error": "boom"},
		{"msg": "third", "logger": "other", "k": "v"},
	} {
		var got map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("line %d: %s = %v, want %v (%s)", i, k, got[k], v, lines[i])
			}
		}
		// The deferring sink must not show up as the caller.
		if c, _ := got["caller"].(string); !strings.Contains(c, "logsink_test.go") {
			t.Errorf("line %d: caller %q, want this test file", i, c)
		}
		if i == 2 && got["value"] != nil {
			t.Errorf("a sibling logger carries another's values: %s", lines[i])
		}
	}
}
