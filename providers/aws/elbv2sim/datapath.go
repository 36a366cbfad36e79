package elbv2sim

import (
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// proxyConn is one forwarded connection: client side and target side.
type proxyConn struct {
	once    sync.Once
	client  net.Conn
	backend net.Conn // nil until dialled
	mu      sync.Mutex
	closed  bool
}

func (pc *proxyConn) close() {
	pc.once.Do(func() {
		pc.mu.Lock()
		pc.closed = true
		b := pc.backend
		pc.mu.Unlock()
		_ = pc.client.Close()
		if b != nil {
			_ = b.Close()
		}
	})
}

// setBackend attaches the dialled target connection, unless the pair was
// closed meanwhile (then it reports false and the caller closes b).
func (pc *proxyConn) setBackend(b net.Conn) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.closed {
		return false
	}
	pc.backend = b
	return true
}

// serving reports whether l may take new traffic: the emulator is open, l
// still exists and its load balancer is active. Callers hold s.mu.
func (s *Server) serving(l *listener) bool {
	lb := s.lbs[l.lbArn]
	return !s.closed && s.listeners[l.arn] == l && lb != nil && lb.active(time.Now())
}

func (s *Server) serveListener(l *listener) {
	defer s.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.forward(l, c)
	}
}

// pick chooses the target for a new connection, round-robin over healthy
// targets. With none healthy but some unhealthy, the group fails open to
// every target past registration (unhealthy or in initial checks), as NLB
// does. Otherwise initial, draining and still-registering targets never get
// a new connection. Callers hold s.mu.
func (s *Server) pick(g *targetGroup) *target {
	var healthy, open []*target
	unhealthy := false
	for _, t := range g.order {
		if !s.served(g, t) {
			continue
		}
		switch t.phase {
		case phaseHealthy:
			healthy = append(healthy, t)
		case phaseUnhealthy:
			unhealthy = true
			if !t.unhealthyDraining() { // unhealthy.draining takes no new connections
				open = append(open, t)
			}
		case phaseInitial:
			open = append(open, t)
		}
	}
	cands := healthy
	if len(cands) == 0 && unhealthy {
		cands = open
	}
	if len(cands) == 0 {
		return nil
	}
	g.rr++
	return cands[g.rr%uint64(len(cands))]
}

// forward proxies one TCP connection of a network listener. A TLS
// listener terminates TLS with its certificates and forwards plain TCP; a
// UDP listener takes no TCP connections; a provisioning load balancer
// none at all.
func (s *Server) forward(l *listener, c net.Conn) {
	defer s.wg.Done()
	s.mu.Lock()
	g := l.defaultGroup()
	var t *target
	if s.serving(l) && l.protocol != "UDP" {
		t = s.pick(g)
	}
	rec := s.newConnRecordLocked(c, t)
	if t != nil && l.protocol == "TLS" {
		c = tls.Server(c, s.tlsConfig(l))
	}
	if t == nil {
		s.mu.Unlock()
		_ = c.Close() // no usable target: reset at once
		return
	}
	pc := &proxyConn{client: c}
	t.conns[pc] = struct{}{}
	l.conns[pc] = struct{}{}
	addr := s.dialAddr(net.JoinHostPort(t.key.id, strconv.Itoa(int(t.key.port))))
	s.mu.Unlock()

	defer func() {
		pc.close()
		s.mu.Lock()
		delete(t.conns, pc)
		delete(l.conns, pc)
		s.mu.Unlock()
	}()

	b, err := dialLoopback(s.ctx, addr, 5*time.Second)
	if err != nil {
		if rec != nil {
			s.mu.Lock()
			rec.DialErr = err.Error()
			s.mu.Unlock()
		}
		return
	}
	if !pc.setBackend(b) {
		_ = b.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Pass the half-close on so request/response protocols finish.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(b, c)
	go pipe(c, b)
	<-done
	<-done
}
