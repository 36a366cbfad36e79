package computesim

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Faults are the injectable misbehaviours, settable at start (Options) and
// at run time (SetFaults, or POST /_sim/faults with this as JSON).
type Faults struct {
	Latency              time.Duration  `json:"latency"`
	ErrorRate            float64        `json:"errorRate"`
	OperationFailureRate float64        `json:"operationFailureRate"`
	OperationFailureCode int            `json:"operationFailureCode"`
	RateLimits           map[string]int `json:"rateLimits"`
	RateWindow           time.Duration  `json:"rateWindow"`
	// SynchronizedWindows starts quota windows on multiples of RateWindow
	// of the clock rather than at the first call. GCE enforces its
	// per-minute rate quotas on synchronized intervals: a quota spent at
	// 10:00:15 refills at 10:01:00
	// (https://cloud.google.com/compute/docs/api-rate-limits).
	SynchronizedWindows bool `json:"synchronizedWindows"`
	// MaxConcurrentOperations caps operations in flight (RUNNING, see
	// Options.OperationDelay); a mutation arriving at the cap answers 403
	// rateLimitExceeded, GCE's answer when a project's concurrent
	// operation limit is reached
	// (https://cloud.google.com/compute/operations-quota). 0: no cap.
	MaxConcurrentOperations int `json:"maxConcurrentOperations"`
	// RateLimitRate is the fraction (0..1) of calls answered 403
	// rateLimitExceeded whatever the quota windows say: a project whose
	// quota other tools keep spending.
	RateLimitRate float64 `json:"rateLimitRate"`
}

// OperationFailure makes a future operation fail; see FailNextOperation.
type OperationFailure struct {
	// Method restricts the failure to one method, such as
	// "networkEndpointGroups.attachNetworkEndpoints"; empty matches any.
	Method string
	// Code is the httpErrorStatusCode; default 503.
	Code int
	// Reason is the legacy reason (for the message); default "backendError".
	Reason string
	// Message is the error message; a generic one by default.
	Message string
}

type faultState struct {
	mu       sync.Mutex
	f        Faults
	window   time.Time
	counts   map[string]int
	failNext []OperationFailure
}

func (fs *faultState) init(o Options) {
	fs.f = Faults{
		Latency:              o.Latency,
		ErrorRate:            o.ErrorRate,
		OperationFailureRate: o.OperationFailureRate,
		OperationFailureCode: o.OperationFailureCode,
		RateLimits:           maps.Clone(o.RateLimits),
		RateWindow:           o.RateWindow,
		RateLimitRate:        o.RateLimitRate,

		SynchronizedWindows:     o.SynchronizedWindows,
		MaxConcurrentOperations: o.MaxConcurrentOperations,
	}
	fs.window = time.Now()
	fs.counts = map[string]int{}
}

func (fs *faultState) snapshot() Faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.f
	f.RateLimits = maps.Clone(f.RateLimits)
	return f
}

// admit counts a call against the quota window and answers 403
// rateLimitExceeded when any of its limits (method, class, "*") is spent.
// Rejected calls do not consume quota.
func (fs *faultState) admit(method, class string) *apiError {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if r := fs.f.RateLimitRate; r > 0 && rand.Float64() < r {
		return &apiError{http.StatusForbidden, "rateLimitExceeded", fmt.Sprintf(
			"Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com' (%s; injected by computesim).", method)}
	}
	if len(fs.f.RateLimits) == 0 {
		return nil
	}
	now := time.Now()
	if w := fs.f.RateWindow; w > 0 && fs.f.SynchronizedWindows {
		if start := now.Truncate(w); !start.Equal(fs.window) {
			fs.window = start
			clear(fs.counts)
		}
	} else if w > 0 && now.Sub(fs.window) >= w {
		// Fixed windows aligned to the first one.
		fs.window = fs.window.Add(now.Sub(fs.window) / w * w)
		clear(fs.counts)
	}
	keys := []string{method, class, "*"}
	for _, k := range keys {
		if lim, ok := fs.f.RateLimits[k]; ok && fs.counts[k] >= lim {
			metric := "Queries"
			switch class {
			case "read":
				metric = "Read requests"
			case "write":
				metric = "Write requests"
			}
			return &apiError{http.StatusForbidden, "rateLimitExceeded", fmt.Sprintf(
				"Quota exceeded for quota metric '%s' and limit '%s per %v' (%s: %d) of service 'compute.googleapis.com'.",
				metric, metric, fs.f.RateWindow, k, lim)}
		}
	}
	for _, k := range keys {
		fs.counts[k]++
	}
	return nil
}

// operationFailure decides at operation start whether it will fail.
func (fs *faultState) operationFailure(method string) *apiError {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, f := range fs.failNext {
		if f.Method != "" && f.Method != method {
			continue
		}
		fs.failNext = append(fs.failNext[:i:i], fs.failNext[i+1:]...)
		return injectedError(f.Code, f.Reason, f.Message)
	}
	if fs.f.OperationFailureRate > 0 && rand.Float64() < fs.f.OperationFailureRate {
		return injectedError(fs.f.OperationFailureCode, "", "")
	}
	return nil
}

func injectedError(code int, reason, msg string) *apiError {
	if code == 0 {
		code = http.StatusServiceUnavailable
	}
	if reason == "" {
		reason = "backendError"
		if code == http.StatusInternalServerError {
			reason = "internalError"
		}
	}
	if msg == "" {
		msg = "Internal error. Please try again or contact Google Support. (injected by computesim)"
	}
	return &apiError{code, reason, msg}
}

// Faults returns the current fault settings.
func (s *Server) Faults() Faults { return s.faults.snapshot() }

// SetFaults replaces the fault settings. A changed RateWindow starts a new
// window; counts carry over otherwise.
func (s *Server) SetFaults(f Faults) {
	fs := &s.faults
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f.RateWindow <= 0 {
		f.RateWindow = fs.f.RateWindow
	}
	if f.OperationFailureCode == 0 {
		f.OperationFailureCode = http.StatusServiceUnavailable
	}
	if f.RateWindow != fs.f.RateWindow {
		fs.window = time.Now()
		clear(fs.counts)
	}
	f.RateLimits = maps.Clone(f.RateLimits)
	fs.f = f
}

// SetLatency sets the latency added to every API call.
func (s *Server) SetLatency(d time.Duration) { s.updateFaults(func(f *Faults) { f.Latency = d }) }

// SetErrorRate sets the fraction of API calls answered with 5xx.
func (s *Server) SetErrorRate(r float64) { s.updateFaults(func(f *Faults) { f.ErrorRate = r }) }

// SetOperationFailureRate sets the fraction of operations that fail.
func (s *Server) SetOperationFailureRate(r float64) {
	s.updateFaults(func(f *Faults) { f.OperationFailureRate = r })
}

// SetRateLimit caps calls of key (a method, "read", "write" or "*") per
// window; n < 0 removes the limit.
func (s *Server) SetRateLimit(key string, n int) {
	s.updateFaults(func(f *Faults) {
		if f.RateLimits == nil {
			f.RateLimits = map[string]int{}
		}
		if n < 0 {
			delete(f.RateLimits, key)
		} else {
			f.RateLimits[key] = n
		}
	})
}

// SetRateLimitRate sets the fraction (0..1) of calls answered 403
// rateLimitExceeded regardless of the quota windows.
func (s *Server) SetRateLimitRate(r float64) {
	s.updateFaults(func(f *Faults) { f.RateLimitRate = r })
}

// SetRateWindow sets the quota window length and starts a new window.
func (s *Server) SetRateWindow(d time.Duration) {
	s.updateFaults(func(f *Faults) { f.RateWindow = d })
	s.faults.mu.Lock()
	s.faults.window = time.Now()
	clear(s.faults.counts)
	s.faults.mu.Unlock()
}

// FailNextOperation queues a failure for the next operation (of f.Method,
// if set): it ends with f.Code and has no effect. Deterministic, for tests.
func (s *Server) FailNextOperation(f OperationFailure) {
	s.faults.mu.Lock()
	s.faults.failNext = append(s.faults.failNext, f)
	s.faults.mu.Unlock()
}

func (s *Server) updateFaults(fn func(*Faults)) {
	f := s.Faults()
	fn(&f)
	s.SetFaults(f)
}

// ---- accounting ----

// MethodStats counts the calls of one API method.
type MethodStats struct {
	Calls       int64 `json:"calls"`
	Errors      int64 `json:"errors"`      // answered with an HTTP error (rate limited included)
	RateLimited int64 `json:"rateLimited"` // answered 403 rateLimitExceeded
	// Forbidden counts calls refused for a permission Options.Permissions
	// does not grant (403 forbidden).
	Forbidden int64 `json:"forbidden,omitempty"`
	// Operations completed, and of those failed (mutations only).
	Operations       int64 `json:"operations,omitempty"`
	OperationsFailed int64 `json:"operationsFailed,omitempty"`
	// Endpoints carried by attach/detach calls: total and largest call.
	Endpoints        int64 `json:"endpoints,omitempty"`
	MaxEndpointsCall int64 `json:"maxEndpointsPerCall,omitempty"`
}

// ProxyStats counts connections through forwarding rules.
//
// For rules to target HTTP(S) proxies the counts are of requests: accepted,
// forwarded to an endpoint, answered 502/503 for want of a reachable
// HEALTHY endpoint, and cut off when draining ended.
type ProxyStats struct {
	Accepted  int64 `json:"accepted"`  // connections accepted by a forwarding rule
	Forwarded int64 `json:"forwarded"` // connected to an endpoint
	Rejected  int64 `json:"rejected"`  // closed: no HEALTHY endpoint reachable
	Drained   int64 `json:"drained"`   // closed at the end of connection draining
}

// Stats is a snapshot of the emulator's accounting.
type Stats struct {
	Methods map[string]MethodStats `json:"methods"`
	Proxy   ProxyStats             `json:"proxy"`
}

// MethodNames lists the methods with any calls, sorted.
func (st Stats) MethodNames() []string {
	var out []string
	for k := range st.Methods {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type statsState struct {
	mu      sync.Mutex
	methods map[string]*MethodStats
	proxy   ProxyStats
}

func (ss *statsState) init() { ss.methods = map[string]*MethodStats{} }

func (ss *statsState) get(m string) *MethodStats {
	st := ss.methods[m]
	if st == nil {
		st = &MethodStats{}
		ss.methods[m] = st
	}
	return st
}

func (ss *statsState) call(m string) {
	ss.mu.Lock()
	ss.get(m).Calls++
	ss.mu.Unlock()
}

func (ss *statsState) fail(m string) {
	ss.mu.Lock()
	ss.get(m).Errors++
	ss.mu.Unlock()
}

func (ss *statsState) rateLimited(m string) {
	ss.mu.Lock()
	st := ss.get(m)
	st.Errors++
	st.RateLimited++
	ss.mu.Unlock()
}

func (ss *statsState) forbidden(m string) {
	ss.mu.Lock()
	st := ss.get(m)
	st.Errors++
	st.Forbidden++
	ss.mu.Unlock()
}

func (ss *statsState) endpoints(m string, n int) {
	ss.mu.Lock()
	st := ss.get(m)
	st.Endpoints += int64(n)
	st.MaxEndpointsCall = max(st.MaxEndpointsCall, int64(n))
	ss.mu.Unlock()
}

func (ss *statsState) operation(m string, failed bool) {
	ss.mu.Lock()
	st := ss.get(m)
	st.Operations++
	if failed {
		st.OperationsFailed++
	}
	ss.mu.Unlock()
}

func (ss *statsState) proxyAdd(fn func(*ProxyStats)) {
	ss.mu.Lock()
	fn(&ss.proxy)
	ss.mu.Unlock()
}

// Stats returns a snapshot of per-method call counters and proxy counters.
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	out := Stats{Methods: map[string]MethodStats{}, Proxy: s.stats.proxy}
	for k, v := range s.stats.methods {
		out.Methods[k] = *v
	}
	return out
}

// ResetStats zeroes all counters.
func (s *Server) ResetStats() {
	s.stats.mu.Lock()
	clear(s.stats.methods)
	s.stats.proxy = ProxyStats{}
	s.stats.mu.Unlock()
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.Stats())
}
