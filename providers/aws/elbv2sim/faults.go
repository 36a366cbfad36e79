package elbv2sim

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bucket is a token bucket: Capacity calls at once, refilled at
// RefillPerSec. A call finding it empty is answered Throttling.
type Bucket struct {
	Capacity     int
	RefillPerSec float64
}

// Throttle classes: an operation without a bucket of its own draws from its
// class's bucket, so operations of one class share it as in AWS.
const (
	ClassTargets      = "class:targets"      // RegisterTargets, DeregisterTargets
	ClassDescribe     = "class:describe"     // every Describe* of ELBv2
	ClassMutate       = "class:mutate"       // every other ELBv2 mutation
	ClassLoadBalancer = "class:loadbalancer" // CreateLoadBalancer, DeleteLoadBalancer
	ClassEC2          = "class:ec2"          // EC2 calls
)

// AWSThrottle returns the buckets AWS documents for ELBv2 (per account and
// region).
func AWSThrottle() map[string]Bucket {
	return map[string]Bucket{
		ClassTargets:      {Capacity: 20, RefillPerSec: 4},
		ClassDescribe:     {Capacity: 40, RefillPerSec: 10},
		ClassMutate:       {Capacity: 20, RefillPerSec: 3},
		ClassLoadBalancer: {Capacity: 10, RefillPerSec: 0.2},
	}
}

func opClass(op string) string {
	switch {
	case op == "RegisterTargets" || op == "DeregisterTargets":
		return ClassTargets
	case op == "CreateLoadBalancer" || op == "DeleteLoadBalancer":
		return ClassLoadBalancer
	case ec2Ops[op] != nil:
		return ClassEC2
	case strings.HasPrefix(op, "Describe"):
		return ClassDescribe
	}
	return ClassMutate
}

type injected struct {
	code    string
	message string
	left    int
}

// faults holds the run-time adjustable misbehaviour.
type faults struct {
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	latency   time.Duration
	jitter    time.Duration
	errorRate float64
	// throttleRate is the fraction of calls answered Throttling whatever
	// the buckets say, to test throttling handling without timing.
	throttleRate float64
	inject       map[string]*injected
}

func (f *faults) init(o Options) {
	f.buckets = map[string]*rate.Limiter{}
	f.inject = map[string]*injected{}
	for k, b := range o.Throttle {
		f.setBucket(k, b)
	}
	f.latency, f.jitter, f.errorRate, f.throttleRate = o.Latency, o.LatencyJitter, o.ErrorRate, o.ThrottleRate
}

func (f *faults) setBucket(key string, b Bucket) {
	if b.Capacity <= 0 {
		delete(f.buckets, key)
		return
	}
	f.buckets[key] = rate.NewLimiter(rate.Limit(b.RefillPerSec), b.Capacity)
}

// SetThrottle sets (or, with a zero Bucket, removes) the bucket of an
// operation or class; a new bucket starts full.
func (s *Server) SetThrottle(key string, b Bucket) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.setBucket(key, b)
}

// SetThrottles replaces every bucket, e.g. with AWSThrottle() or nil.
func (s *Server) SetThrottles(m map[string]Bucket) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.buckets = map[string]*rate.Limiter{}
	for k, b := range m {
		s.faults.setBucket(k, b)
	}
}

// SetLatency sets the added latency: base plus uniform [0, jitter).
func (s *Server) SetLatency(base, jitter time.Duration) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.latency, s.faults.jitter = base, jitter
}

// SetErrorRate sets the fraction (0..1) of calls answered ServiceUnavailable.
func (s *Server) SetErrorRate(r float64) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.errorRate = r
}

// SetThrottleRate sets the fraction (0..1) of calls answered Throttling
// regardless of the buckets.
func (s *Server) SetThrottleRate(r float64) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.throttleRate = r
}

// InjectError makes the next n calls of op fail with the given error code
// (e.g. "HealthUnavailable" for DescribeTargetHealth, "InternalFailure",
// "Throttling"); the HTTP status follows the code as AWS sends it. n <= 0
// clears it.
func (s *Server) InjectError(op, code string, n int) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if n <= 0 {
		delete(s.faults.inject, op)
		return
	}
	s.faults.inject[op] = &injected{code: code, message: "Injected by elbv2sim", left: n}
}

// admit applies latency, throttling and injected faults to one call; a
// non-nil answer replaces the operation's result.
func (s *Server) admit(r *http.Request, op string) *apiError {
	f := &s.faults
	f.mu.Lock()
	delay := f.latency
	if f.jitter > 0 {
		delay += rand.N(f.jitter)
	}
	f.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.buckets[op]
	if b == nil {
		b = f.buckets[opClass(op)]
	}
	if (b != nil && !b.Allow()) || (f.throttleRate > 0 && rand.Float64() < f.throttleRate) {
		s.stats.count(op, func(st *OpStats) { st.Throttled++ })
		return errThrottled(op)
	}
	if f.errorRate > 0 && rand.Float64() < f.errorRate {
		s.stats.count(op, func(st *OpStats) { st.Injected++ })
		return &apiError{code: "ServiceUnavailable", msg: "Service is unavailable, please try again later", status: http.StatusServiceUnavailable}
	}
	if in := f.inject[op]; in != nil {
		in.left--
		if in.left <= 0 {
			delete(f.inject, op)
		}
		s.stats.count(op, func(st *OpStats) { st.Injected++ })
		return newErr(in.code, "%s", in.message)
	}
	return nil
}

// OpStats counts the calls of one operation.
type OpStats struct {
	Calls     int64 `json:"calls"`
	Errors    int64 `json:"errors"`    // every error answer, throttled and injected included
	Throttled int64 `json:"throttled"` // answered Throttling by a bucket
	Injected  int64 `json:"injected"`  // failed by ErrorRate or InjectError
	// Denied counts calls Options.Policies refused.
	Denied int64 `json:"denied,omitempty"`
	// Unimplemented counts calls of an action the emulator does not
	// implement (answered InvalidAction), so a gap cannot hide.
	Unimplemented int64 `json:"unimplemented,omitempty"`
	// Targets is the number of targets named in successful calls
	// (RegisterTargets, DeregisterTargets); MaxTargets the largest call.
	Targets    int64 `json:"targets,omitempty"`
	MaxTargets int   `json:"maxTargets,omitempty"`
}

type statsBook struct {
	mu  sync.Mutex
	ops map[string]*OpStats
}

func (b *statsBook) count(op string, f func(*OpStats)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.ops[op]
	if st == nil {
		st = &OpStats{}
		b.ops[op] = st
	}
	f(st)
}

// Stats returns a copy of the per-operation counters.
func (s *Server) Stats() map[string]OpStats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	out := make(map[string]OpStats, len(s.stats.ops))
	for k, v := range s.stats.ops {
		out[k] = *v
	}
	return out
}

// ResetStats zeroes every counter.
func (s *Server) ResetStats() {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	s.stats.ops = map[string]*OpStats{}
}

// serveStats answers GET /_sim/stats with the counters as JSON
// ({"operations":{"RegisterTargets":{...}}}); DELETE resets them.
func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		st := s.Stats()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Operations map[string]OpStats `json:"operations"`
		}{st})
	case http.MethodDelete:
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "GET or DELETE", http.StatusMethodNotAllowed)
	}
}
