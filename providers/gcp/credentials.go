package gcp

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

// authMode is how the Compute client authenticates.
type authMode int

const (
	// authDefault: Application Default Credentials (Workload Identity,
	// a key file, gcloud's login).
	authDefault authMode = iota
	// authNone: no credentials, for an emulator.
	authNone
	// authToken: the access tokens of Options.TokenSource.
	authToken
)

// chooseAuth decides how to authenticate from the endpoint override and
// whether a token source was given. A given token source always wins. An
// https:// endpoint (a Private Service Connect endpoint, say) is Google's
// and needs the usual credentials; an http:// one can only be an emulator,
// as Google serves nothing without TLS, and gets none.
func chooseAuth(endpoint string, haveToken bool) (authMode, error) {
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return 0, fmt.Errorf("gcp: Compute endpoint %q: want an https:// URL (http:// for an emulator)", endpoint)
		}
		if u.Scheme == "http" && !haveToken {
			return authNone, nil
		}
	}
	if haveToken {
		return authToken, nil
	}
	return authDefault, nil
}

// authOptions are the client options that carry out chooseAuth's choice.
func authOptions(o Options) ([]option.ClientOption, error) {
	a, err := chooseAuth(o.Endpoint, o.TokenSource != nil)
	if err != nil {
		return nil, err
	}
	// podlb counts and times every call itself (the call metrics); the
	// clients' own tracing and metrics wrapper would start a span and
	// record attributes per request for a tracer nobody set up, about a
	// fifth of a health read's CPU at rest.
	co := []option.ClientOption{option.WithTelemetryDisabled()}
	if o.Endpoint != "" {
		// The endpoint is the API's root; the JSON client takes the
		// base path of the Compute v1 API under it.
		co = append(co, option.WithEndpoint(strings.TrimSuffix(o.Endpoint, "/")+"/compute/v1/"))
	}
	switch a {
	case authNone:
		co = append(co, option.WithoutAuthentication())
	case authToken:
		co = append(co, option.WithTokenSource(o.TokenSource))
	}
	return co, nil
}

// tokenRecheck is how long a token read from a file is passed off as
// valid. The file does not say when its token expires; the clients cache
// a token until shortly before its expiry, so a short one makes them read
// the file again and pick up a rotated token within seconds.
const tokenRecheck = 5 * time.Second

// FileTokenSource serves the OAuth2 access token held in path, surrounding
// whitespace trimmed, read again whenever the clients ask for a token, so
// that a sidecar or token broker can rotate it. It reads the file once
// now: a missing or empty file is an error.
func FileTokenSource(path string) (oauth2.TokenSource, error) {
	ts := fileTokenSource{path: path}
	if _, err := ts.Token(); err != nil {
		return nil, err
	}
	return ts, nil
}

type fileTokenSource struct{ path string }

func (s fileTokenSource) Token() (*oauth2.Token, error) {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, fmt.Errorf("access token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("access token: %s is empty", s.path)
	}
	return &oauth2.Token{AccessToken: tok, TokenType: "Bearer", Expiry: time.Now().Add(tokenRecheck)}, nil
}
