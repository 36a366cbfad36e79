package gcp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/gcp/computesim"
)

func TestAuthFollowsTheEndpointUnlessATokenSourceIsGiven(t *testing.T) {
	for _, c := range []struct {
		endpoint  string
		haveToken bool
		want      authMode
	}{
		{"", false, authDefault},
		{"https://compute-myendpoint.p.googleapis.com", false, authDefault},
		{"https://compute-myendpoint.p.googleapis.com/compute/v1/", false, authDefault},
		{"http://127.0.0.1:8085", false, authNone},
		{"", true, authToken},
		{"https://compute-myendpoint.p.googleapis.com", true, authToken},
		{"http://127.0.0.1:8085", true, authToken},
	} {
		got, err := chooseAuth(c.endpoint, c.haveToken)
		if err != nil || got != c.want {
			t.Errorf("chooseAuth(%q, token %v) = %v, %v; want %v", c.endpoint, c.haveToken, got, err, c.want)
		}
	}
}

func TestAnEndpointWithoutSchemeOrHostIsRefused(t *testing.T) {
	for _, endpoint := range []string{"compute-myendpoint.p.googleapis.com", "ftp://compute.example", "https://", "://x"} {
		if _, err := chooseAuth(endpoint, false); err == nil || !strings.Contains(err.Error(), "https://") {
			t.Errorf("chooseAuth(%q): %v, want an error asking for an https:// URL", endpoint, err)
		}
	}
}

func writeToken(t *testing.T, path, token string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFileTokenSourceReadsTheTokenAgainEachTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "  ya29.first\n")
	ts, err := FileTokenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil || tok.AccessToken != "ya29.first" || tok.Type() != "Bearer" {
		t.Fatalf("Token() = %+v, %v; want Bearer ya29.first", tok, err)
	}
	// The clients cache a token until near its expiry: it must come soon
	// for them to read the file again.
	if left := time.Until(tok.Expiry); left <= 0 || left > tokenRecheck {
		t.Errorf("token expires in %v, want within %v", left, tokenRecheck)
	}
	writeToken(t, path, "ya29.second")
	if tok, err := ts.Token(); err != nil || tok.AccessToken != "ya29.second" {
		t.Fatalf("after rotation Token() = %+v, %v; want ya29.second", tok, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Token(); err == nil {
		t.Fatal("Token() with the file gone: no error")
	}
}

func TestFileTokenSourceRefusesAMissingOrEmptyFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := FileTokenSource(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing file: %v, want an error naming it", err)
	}
	empty := filepath.Join(dir, "empty")
	writeToken(t, empty, " \n\t")
	if _, err := FileTokenSource(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("blank file: %v, want an error saying it is empty", err)
	}
}

// The REST clients cache tokens; a rotated file must still reach the
// cloud, over an http:// endpoint too. The emulator refuses everything
// to one token and nothing to another.
func TestTheProviderSendsTheFilesTokenAndItsReplacement(t *testing.T) {
	srv, err := computesim.Start(computesim.Options{Project: project, Permissions: map[string][]string{"ya29.refused": {}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "ya29.refused\n")
	ts, err := FileTokenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := New(ctx, Options{Cluster: cluster, Project: project, Endpoint: srv.URL(), TokenSource: ts,
		Limits: providers.Unthrottled(DefaultLimits())})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	get := func() error {
		_, err := p.c.negs.Get(project, zones3[0], "absent").Context(ctx).Do()
		return err
	}
	if err := get(); !isCode(err, 403) {
		t.Fatalf("get with the refused token: %v, want 403", err)
	}
	writeToken(t, path, "ya29.granted")
	deadline := time.Now().Add(2 * tokenRecheck)
	for err := get(); !isCode(err, 404); err = get() {
		if !isCode(err, 403) || time.Now().After(deadline) {
			t.Fatalf("get after rotation: %v, want 404 within %v", err, 2*tokenRecheck)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spanCounter counts the spans any tracer of the process starts.
type spanCounter struct {
	noop.TracerProvider
	spans atomic.Int64
}

func (c *spanCounter) Tracer(string, ...trace.TracerOption) trace.Tracer {
	return countingTracer{c: c}
}

type countingTracer struct {
	noop.Tracer
	c *spanCounter
}

func (t countingTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	t.c.spans.Add(1)
	return t.Tracer.Start(ctx, name, opts...)
}

// The provider's calls carry no telemetry of the clients' own: with a
// tracer installed, a health read starts no span.
func TestCloudCallsStartNoTelemetrySpans(t *testing.T) {
	counter := &spanCounter{}
	before := otel.GetTracerProvider()
	otel.SetTracerProvider(counter)
	t.Cleanup(func() { otel.SetTracerProvider(before) })

	e := newEnv(t)
	e.backendService("tcp", "TCP", 10)
	g := e.ensure(binding(`{"backendService":"tcp"}`, zones3...))
	// Only the provider's own calls from here: the test arranges the
	// cloud with clients of its own.
	counter.spans.Store(0)
	e.srv.ResetStats()
	e.observe(g)
	if n := e.srv.Stats().Methods["backendServices.getHealth"].Calls; n == 0 {
		t.Fatal("the emulator saw no health read")
	}
	if n := counter.spans.Load(); n != 0 {
		t.Fatalf("the cloud clients started %d spans", n)
	}
}
