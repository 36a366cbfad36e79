package providers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	apiCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_cloud_api_calls_total",
		Help: "Cloud API calls by provider, operation and result (ok or the error class).",
	}, []string{"provider", "operation", "result"})
	apiLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podlb_cloud_api_call_duration_seconds",
		Help:    "Cloud API call latency, SDK retries included.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"provider", "operation"})
	apiWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podlb_cloud_api_limiter_wait_seconds",
		Help:    "Time spent waiting for the client-side rate limiter.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"provider", "operation"})
	apiDeferred = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_cloud_api_calls_deferred_total",
		Help: "Calls nothing waited for (reads at rest) put off because the client-side bucket held no spare token.",
	}, []string{"provider", "operation"})
)

func init() {
	metrics.Registry.MustRegister(apiCalls, apiLatency, apiWait, apiDeferred)
}

// PutOffError is Call's error for a call made AtRest when its bucket
// holds no token beyond the reserve kept for work that waits.
type PutOffError struct {
	Op string
	// Refill is how long the bucket takes to refill its reserve and
	// one spare token from empty: about when to try again.
	Refill time.Duration
}

func (e *PutOffError) Error() string {
	return e.Op + ": no spare token in the client-side bucket: put off behind work that waits"
}

type atRest struct{}

// AtRest marks ctx's calls as work nothing waits for (a read of a group
// whose pods all have their verdict): Call makes them only from tokens
// beyond half the bucket's burst and never queues them, so they cannot
// delay a call a pod waits for; without such a token it returns a
// *PutOffError at once.
func AtRest(ctx context.Context) context.Context { return context.WithValue(ctx, atRest{}, true) }

// IsAtRest reports whether ctx was made by AtRest.
func IsAtRest(ctx context.Context) bool { return ctx.Value(atRest{}) != nil }

// Limit is a token bucket: QPS refill per second, Burst capacity.
type Limit struct {
	QPS   float64
	Burst int
}

// Unthrottled gives every operation of defaults a limit that never paces,
// for tests against an emulator that must not wait on client-side buckets.
func Unthrottled(defaults map[string]Limit) map[string]Limit {
	out := make(map[string]Limit, len(defaults))
	for op := range defaults {
		out[op] = Limit{QPS: 10000, Burst: 10000}
	}
	return out
}

func (l Limit) String() string {
	return strconv.FormatFloat(l.QPS, 'g', -1, 64) + ":" + strconv.Itoa(l.Burst)
}

// ParseLimits reads "Operation=qps:burst,Operation=qps:burst".
func ParseLimits(s string) (map[string]Limit, error) {
	out := map[string]Limit{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		op, val, ok := strings.Cut(item, "=")
		qps, burst, ok2 := strings.Cut(val, ":")
		if !ok || !ok2 || op == "" {
			return nil, fmt.Errorf("rate limit %q: want Operation=qps:burst", item)
		}
		q, err := strconv.ParseFloat(qps, 64)
		if err != nil || q <= 0 {
			return nil, fmt.Errorf("rate limit %q: qps must be a positive number", item)
		}
		b, err := strconv.Atoi(burst)
		if err != nil || b < 1 {
			return nil, fmt.Errorf("rate limit %q: burst must be a positive integer", item)
		}
		out[op] = Limit{QPS: q, Burst: b}
	}
	return out, nil
}

// FormatLimits is the inverse of ParseLimits, sorted by operation.
func FormatLimits(m map[string]Limit) string {
	ops := make([]string, 0, len(m))
	for op := range m {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = op + "=" + m[op].String()
	}
	return strings.Join(parts, ",")
}

// Caller runs a provider's cloud calls through one client-side token
// bucket per operation and records metrics. Cloud limits are per account
// or project and shared with every other tool, so podlb stays under them
// instead of learning them from throttling errors.
type Caller struct {
	provider string
	limiters map[string]*rate.Limiter
	classify func(op string, err error) error
	// attempts is how many times in all Call tries an operation that may
	// be sent again (see Retry); 0 or 1: once.
	attempts int
	// alsoRetry tells what may be sent again besides throttled calls.
	alsoRetry func(op string, err error) bool
}

// Retry makes Call try an operation up to attempts times in all when the
// cloud throttled it (it did nothing) or when alsoRetry (may be nil)
// says its error leaves it safe and worth sending again, each retry
// after a jittered backoff and with a token of its own. A retry the SDK
// made by itself would bypass the buckets: when podlb's bucket is as
// large as the account's, those extra calls keep the account's bucket
// empty and throttling feeds itself. A call put off at rest is never
// retried: its caller schedules it again.
func (c *Caller) Retry(attempts int, alsoRetry func(op string, err error) bool) {
	c.attempts, c.alsoRetry = attempts, alsoRetry
}

// NewCaller builds a Caller. Operations missing from limits use fallback.
// classify turns an operation's SDK error into a classified *Error.
func NewCaller(provider string, limits map[string]Limit, fallback Limit, classify func(op string, err error) error) *Caller {
	c := &Caller{provider: provider, limiters: map[string]*rate.Limiter{}, classify: classify}
	for op, l := range limits {
		c.limiters[op] = rate.NewLimiter(rate.Limit(l.QPS), l.Burst)
	}
	// Operations without a limit of their own share one bucket rather than
	// going unlimited.
	if _, ok := c.limiters["*"]; !ok {
		c.limiters["*"] = rate.NewLimiter(rate.Limit(fallback.QPS), fallback.Burst)
	}
	return c
}

// Share makes ops draw from the first one's bucket, for operations the
// cloud counts against one bucket of its own.
func (c *Caller) Share(ops ...string) {
	if len(ops) == 0 {
		return
	}
	lim := c.limiter(ops[0])
	for _, op := range ops[1:] {
		c.limiters[op] = lim
	}
}

func (c *Caller) limiter(op string) *rate.Limiter {
	if lim, ok := c.limiters[op]; ok {
		return lim
	}
	return c.limiters["*"]
}

func (c *Caller) wait(ctx context.Context, op string) error {
	start := time.Now()
	if err := c.limiter(op).Wait(ctx); err != nil {
		return Classify(Transient, "", err)
	}
	apiWait.WithLabelValues(c.provider, op).Observe(time.Since(start).Seconds())
	return nil
}

// spareTake is the tokens of one bucket that calls at rest want.
type spareTake struct {
	op  string // the first operation named that draws on the bucket
	lim *rate.Limiter
	n   int
}

// spare takes the tokens of every bucket in takes if each has that many
// left beyond the reserve of half its burst (calls too many to fit beside
// the reserve wait for a full bucket), without waiting; otherwise it
// takes none and answers the put-off error of the first bucket short.
func (c *Caller) spare(takes ...spareTake) error {
	now := time.Now()
	taken := make([]*rate.Reservation, 0, len(takes))
	for _, t := range takes {
		if t.lim.TokensAt(now) >= float64(min(reserve(t.lim)+t.n, t.lim.Burst())) {
			r := t.lim.ReserveN(now, t.n)
			if r.OK() && r.DelayFrom(now) == 0 {
				taken = append(taken, r)
				continue
			}
			r.CancelAt(now)
		}
		for _, r := range taken {
			r.CancelAt(now)
		}
		apiDeferred.WithLabelValues(c.provider, t.op).Inc()
		return Classify(Throttled, "", &PutOffError{Op: t.op, Refill: c.reserveRefill(t.op, t.n)})
	}
	return nil
}

func reserve(lim *rate.Limiter) int { return lim.Burst() / 2 }

// reserveRefill is how long op's bucket takes to refill its reserve and
// n spare tokens.
func (c *Caller) reserveRefill(op string, n int) time.Duration {
	lim := c.limiter(op)
	if lim.Limit() == rate.Inf || lim.Limit() <= 0 {
		return 0
	}
	return time.Duration(float64(reserve(lim)+n) / float64(lim.Limit()) * float64(time.Second))
}

// heldToken marks a context whose next Calls drawing on the bucket have
// their tokens already; its value counts the tokens left.
type heldToken struct{ bucket *rate.Limiter }

func holding(ctx context.Context, lim *rate.Limiter, n int) context.Context {
	left := new(atomic.Int32)
	left.Store(int32(n))
	return context.WithValue(ctx, heldToken{lim}, left)
}

// Hold waits for a token of op's bucket and returns a context whose first
// Call of an operation drawing on that bucket (op, or one Shared with it)
// spends it instead of waiting again. A batch waits for its token before
// it is filled, so what arrives meanwhile rides in it (see Batcher.Hold).
func (c *Caller) Hold(ctx context.Context, op string) (context.Context, error) {
	if err := c.wait(ctx, op); err != nil {
		return ctx, err
	}
	return holding(ctx, c.limiter(op), 1), nil
}

// HoldSpare is Hold for a read at rest, given the operation of each call
// it is to make (an operation named twice makes two calls): it takes the
// spare tokens of all of them at once, from every bucket they draw on, or
// none, so a read is put off whole before its first call, not after some
// of its calls spent tokens on answers the put-off part throws away.
// Outside rest it holds nothing and each Call waits for its own token.
func (c *Caller) HoldSpare(ctx context.Context, calls ...string) (context.Context, error) {
	if len(calls) == 0 || !IsAtRest(ctx) {
		return ctx, nil
	}
	var takes []spareTake
	for _, op := range calls {
		lim := c.limiter(op)
		i := slices.IndexFunc(takes, func(t spareTake) bool { return t.lim == lim })
		if i < 0 {
			i = len(takes)
			takes = append(takes, spareTake{op: op, lim: lim})
		}
		takes[i].n++
	}
	for _, t := range takes {
		if t.n > t.lim.Burst() {
			// More calls than the bucket ever holds: the read cannot be
			// made from spare tokens at once, so its calls wait for
			// their tokens as any read's do (it is still ranked last).
			return context.WithValue(ctx, atRest{}, nil), nil
		}
	}
	if err := c.spare(takes...); err != nil {
		return ctx, err
	}
	for _, t := range takes {
		ctx = holding(ctx, t.lim, t.n)
	}
	return ctx, nil
}

// HoldPlan holds the token of the first call a plan makes, for providers
// that register (registerOp) before they deregister (deregisterOp); see
// WriteHolder.
func (c *Caller) HoldPlan(ctx context.Context, p Plan, registerOp, deregisterOp string) (context.Context, error) {
	if len(p.Register) > 0 {
		return c.Hold(ctx, registerOp)
	}
	return c.Hold(ctx, deregisterOp)
}

// Call waits for op's token (unless ctx holds one, see Hold and
// HoldSpare), runs fn and classifies its error.
func (c *Caller) Call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	held, _ := ctx.Value(heldToken{c.limiter(op)}).(*atomic.Int32)
	rest := IsAtRest(ctx)
	for attempt := 1; ; attempt++ {
		switch {
		case attempt == 1 && held != nil && held.Add(-1) >= 0:
			// Its token is in hand.
		case rest:
			if err := c.spare(spareTake{op: op, lim: c.limiter(op), n: 1}); err != nil {
				return err
			}
		default:
			if err := c.wait(ctx, op); err != nil {
				return err
			}
		}
		start := time.Now()
		err := fn(ctx)
		apiLatency.WithLabelValues(c.provider, op).Observe(time.Since(start).Seconds())
		if err != nil && c.classify != nil {
			err = c.classify(op, err)
		}
		result := "ok"
		if err != nil {
			result = string(ClassOf(err))
		}
		apiCalls.WithLabelValues(c.provider, op, result).Inc()
		if attempt >= c.attempts || !c.retryable(op, err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryBackoff(attempt)):
		}
	}
}

func (c *Caller) retryable(op string, err error) bool {
	switch {
	case err == nil:
		return false
	case ClassOf(err) == Throttled:
		return true
	}
	return c.alsoRetry != nil && c.alsoRetry(op, err)
}

// retryBackoff is the pause before retry attempt+1 of a call: 200 ms
// doubling per attempt up to 5 s, jittered by half either way so that
// calls throttled together do not come back together.
func retryBackoff(attempt int) time.Duration {
	d := min(200*time.Millisecond<<(attempt-1), 5*time.Second)
	return d/2 + rand.N(d)
}

// CloudError is a cloud API error reduced to what a person needs: the
// operation, the cloud's error code and message, without request IDs that
// would make every occurrence look new.
type CloudError struct {
	Op, Code, Message string
	Err               error
}

func (e *CloudError) Error() string {
	if e.Code == "" {
		return e.Op + ": " + e.Message
	}
	return e.Op + ": " + e.Code + ": " + e.Message
}

func (e *CloudError) Unwrap() error { return e.Err }
