package twoclusters_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sync"
	"time"
)

// endpointCall is one attach or detach of NEG endpoints a controller sent.
type endpointCall struct {
	Method    string // attachNetworkEndpoints or detachNetworkEndpoints
	Zone, NEG string
	IPs       []string
	At        time.Time
}

// callLog records, on the client side, the endpoint changes one
// controller's GCP provider sends: the Compute emulator serves both
// controllers and cannot tell them apart.
type callLog struct {
	mu    sync.Mutex
	calls []endpointCall
}

var endpointPath = regexp.MustCompile(`/zones/([^/]+)/networkEndpointGroups/([^/]+)/((?:attach|detach)NetworkEndpoints)$`)

// transport wraps next, recording attach and detach requests (whether or
// not they succeed: asking is what must never happen for another
// cluster's endpoints).
func (l *callLog) transport(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		m := endpointPath.FindStringSubmatch(r.URL.Path)
		if m == nil || r.Body == nil {
			return next.RoundTrip(r)
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct {
			NetworkEndpoints []struct {
				IPAddress string `json:"ipAddress"`
			} `json:"networkEndpoints"`
		}
		c := endpointCall{Method: m[3], Zone: m[1], NEG: m[2], At: time.Now()}
		if err := json.Unmarshal(body, &in); err != nil {
			c.IPs = []string{"unparsable body: " + err.Error()}
		}
		for _, ep := range in.NetworkEndpoints {
			c.IPs = append(c.IPs, ep.IPAddress)
		}
		l.mu.Lock()
		l.calls = append(l.calls, c)
		l.mu.Unlock()
		return next.RoundTrip(r)
	})
}

// since returns the calls recorded at or after t.
func (l *callLog) since(t time.Time) []endpointCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []endpointCall
	for _, c := range l.calls {
		if !c.At.Before(t) {
			out = append(out, c)
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
