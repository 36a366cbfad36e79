package elbv2sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// Every target has one checker goroutine. Goroutines are cheap, so this
// scales to thousands of targets; the first check after registration is
// jittered so a large batch does not probe in lockstep.

// interval and timeout are the effective check timing for g. Callers hold s.mu.
func (s *Server) interval(g *targetGroup) time.Duration {
	if s.opts.HealthCheckInterval > 0 {
		return s.opts.HealthCheckInterval
	}
	return time.Duration(g.hc.interval) * time.Second
}

func (s *Server) timeout(g *targetGroup) time.Duration {
	if s.opts.HealthCheckTimeout > 0 {
		return s.opts.HealthCheckTimeout
	}
	// A group timeout longer than an overridden interval would stall the
	// checker, so cap it.
	return min(time.Duration(g.hc.timeout)*time.Second, s.interval(g))
}

// CheckTiming is how the emulator health-checks a group's targets: the
// interval and timeout it runs (Options may replace the group's) and the
// group's thresholds of consecutive checks.
type CheckTiming struct {
	Interval, Timeout                    time.Duration
	HealthyThreshold, UnhealthyThreshold int
}

// CheckTiming returns how the group's targets are checked; false if the
// group does not exist.
func (s *Server) CheckTiming(tgArn string) (CheckTiming, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.tgs[tgArn]
	if g == nil {
		return CheckTiming{}, false
	}
	return CheckTiming{Interval: s.interval(g), Timeout: s.timeout(g),
		HealthyThreshold: int(g.hc.healthy), UnhealthyThreshold: int(g.hc.unhealthy)}, true
}

// startChecker launches the checker of t. Callers hold s.mu.
func (s *Server) startChecker(g *targetGroup, t *target) {
	if s.closed {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	t.cancel = cancel
	s.wg.Add(1)
	go s.check(ctx, g, t)
}

type probeSpec struct {
	protocol string
	addr     string
	path     string
	matcher  string
	timeout  time.Duration
	epoch    uint64
}

type probeResult struct {
	ok     bool
	reason string
	desc   string
}

// step decides the checker's next move: a probe to run now, or how long to
// wait (negative: until woken). Callers hold s.mu.
func (s *Server) step(g *targetGroup, t *target, now time.Time) (*probeSpec, time.Duration) {
	if !s.served(g, t) {
		return nil, -1 // unused targets are not checked
	}
	if t.phase == phaseRegistering {
		end := t.regStart.Add(s.opts.RegistrationDelay)
		if now.Before(end) {
			return nil, end.Sub(now)
		}
		t.phase = phaseInitial
		iv := s.interval(g)
		t.nextProbe = now.Add(rand.N(iv/4 + 1))
	}
	if now.Before(t.nextProbe) {
		return nil, t.nextProbe.Sub(now)
	}
	t.nextProbe = now.Add(s.interval(g))
	return &probeSpec{
		protocol: g.hc.protocol,
		addr:     s.dialAddr(net.JoinHostPort(t.key.id, strconv.Itoa(int(g.healthCheckPort(t))))),
		path:     g.hc.path,
		matcher:  g.hc.matcher,
		timeout:  s.timeout(g),
		epoch:    t.epoch,
	}, 0
}

func (s *Server) check(ctx context.Context, g *targetGroup, t *target) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		spec, wait := s.step(g, t, time.Now())
		wake := g.changed
		s.mu.Unlock()

		if spec != nil {
			res := probe(ctx, spec)
			s.mu.Lock()
			if ctx.Err() == nil && t.epoch == spec.epoch && s.served(g, t) {
				s.record(g, t, res, time.Now())
			}
			s.mu.Unlock()
			continue
		}
		var tm *time.Timer
		var timer <-chan time.Time
		if wait >= 0 {
			tm = time.NewTimer(wait)
			timer = tm.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-timer:
		}
		if tm != nil {
			tm.Stop()
		}
	}
}

// record applies one check result with the group's thresholds. Callers hold s.mu.
func (s *Server) record(g *targetGroup, t *target, r probeResult, now time.Time) {
	if t.phase != phaseInitial && t.phase != phaseHealthy && t.phase != phaseUnhealthy {
		return
	}
	if r.ok {
		t.okRun++
		t.failRun = 0
		if t.phase != phaseHealthy && t.okRun >= int(g.hc.healthy) {
			t.phase = phaseHealthy
			t.stopUnhealthyDraining()
			if t.healthyAt.IsZero() {
				t.healthyAt = now
			}
			s.logf("target %s:%d healthy in %s", t.key.id, t.key.port, g.name)
		}
		return
	}
	t.failRun++
	t.okRun = 0
	if t.phase == phaseUnhealthy || t.failRun >= int(g.hc.unhealthy) {
		t.failReason, t.failDesc = r.reason, r.desc
		if t.phase != phaseUnhealthy {
			s.logf("target %s:%d unhealthy in %s: %s", t.key.id, t.key.port, g.name, r.reason)
			t.phase = phaseUnhealthy
			s.turnedUnhealthy(g, t, now)
		}
	}
}

// turnedUnhealthy applies a network group's
// target_health_state.unhealthy.* attributes, as documented in
// https://docs.aws.amazon.com/elasticloadbalancing/latest/network/target-group-health-checks.html#unhealthy-target-connection-termination
// With connection termination on (the default) the target's connections
// are reset at once. With it off and a draining interval, the target is
// unhealthy.draining for the interval, keeps its connections and gets no
// new ones, then its connections are reset; without an interval its
// connections stay. Application load balancer groups keep their requests.
// Callers hold s.mu.
func (s *Server) turnedUnhealthy(g *targetGroup, t *target, now time.Time) {
	if g.servesHTTP() {
		return
	}
	if g.attrs["target_health_state.unhealthy.connection_termination.enabled"] != "false" {
		t.closeConns()
		return
	}
	n, _ := strconv.Atoi(g.attrs["target_health_state.unhealthy.draining_interval_seconds"])
	d := time.Duration(n) * time.Second
	if d > 0 && s.opts.UnhealthyDrainingInterval > 0 {
		d = s.opts.UnhealthyDrainingInterval
	}
	if d <= 0 {
		return
	}
	epoch := t.epoch
	t.unhealthyTimer = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && t.epoch == epoch && t.phase == phaseUnhealthy && t.unhealthyDraining() {
			t.closeConns()
			t.unhealthyTimer = nil
		}
	})
}

// dialAddr is where the emulator connects to reach a target address.
func (s *Server) dialAddr(addr string) string {
	if s.opts.TargetAddr != nil {
		return s.opts.TargetAddr(addr)
	}
	return addr
}

// loopbackOnly refuses any address outside 127.0.0.0/8: the emulator must
// never send traffic anywhere else.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(a) {
		return fmt.Errorf("elbv2sim: refusing to connect to %s outside 127.0.0.0/8: %w", addr, os.ErrDeadlineExceeded)
	}
	return nil
}

func dialLoopback(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := loopbackOnly(addr); err != nil {
		// Behave like an unreachable host: wait out the timeout.
		<-ctx.Done()
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

var probeTransport = &http.Transport{
	DisableKeepAlives: true,
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // health checks do not verify certificates, as in AWS
	// The request's context bounds the whole check, dial included.
	DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return dialLoopback(ctx, addr, 2*time.Minute)
	},
	MaxIdleConnsPerHost: -1,
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

func failed(err error) probeResult {
	if isTimeout(err) {
		return probeResult{reason: "Target.Timeout", desc: "Request timed out"}
	}
	return probeResult{reason: "Target.FailedHealthChecks", desc: "Health checks failed"}
}

// probe runs one health check against the real target.
func probe(ctx context.Context, p *probeSpec) probeResult {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := loopbackOnly(p.addr); err != nil {
		<-ctx.Done() // as if the target never answered
		return failed(err)
	}
	switch p.protocol {
	case "HTTP", "HTTPS":
		scheme := "http"
		if p.protocol == "HTTPS" {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+p.addr+p.path, nil)
		if err != nil {
			return failed(err)
		}
		req.Header.Set("User-Agent", "ELB-HealthChecker/2.0")
		resp, err := probeTransport.RoundTrip(req)
		if err != nil {
			return failed(err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		match, _ := parseMatcher(p.matcher)
		if match != nil && match(resp.StatusCode) {
			return probeResult{ok: true}
		}
		return probeResult{reason: "Target.ResponseCodeMismatch",
			desc: fmt.Sprintf("Health checks failed with these codes: [%d]", resp.StatusCode)}
	default:
		c, err := dialLoopback(ctx, p.addr, p.timeout)
		if err != nil {
			return failed(err)
		}
		_ = c.Close()
		return probeResult{ok: true}
	}
}
