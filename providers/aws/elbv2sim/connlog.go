package elbv2sim

import (
	"fmt"
	"net"
	"time"
)

// ConnRecord is what the emulator knows about one client connection
// through a network load balancer's TCP or TLS listener: which target it
// was forwarded to, enough to explain a failed request after the fact.
type ConnRecord struct {
	// Client is the client's address as the listener saw it, which is
	// the client socket's local address.
	Client   string
	Accepted time.Time
	// Target is the "ip:port" the connection was forwarded to; "" when
	// no target could take it and it was closed at once.
	Target string
	// DialErr is the error connecting to the target, if any: the client's
	// connection was closed without an answer.
	DialErr string
}

// String is one line for a test log.
func (r ConnRecord) String() string {
	s := fmt.Sprintf("client %s accepted %s", r.Client, r.Accepted.Format("15:04:05.000"))
	if r.Target == "" {
		return s + ", no usable target"
	}
	s += ", forwarded to " + r.Target
	if r.DialErr != "" {
		s += ": " + r.DialErr
	}
	return s
}

// connLog remembers the last Options.ConnectionHistory connections, by
// client address. Guarded by Server.mu.
type connLog struct {
	max   int
	order []*ConnRecord
	recs  map[string]*ConnRecord
}

// newConnRecordLocked records an accepted connection and the target it
// goes to (nil: none), or returns nil when no history is kept.
func (s *Server) newConnRecordLocked(c net.Conn, t *target) *ConnRecord {
	l := &s.conns
	if l.max <= 0 {
		return nil
	}
	if l.recs == nil {
		l.recs = map[string]*ConnRecord{}
	}
	r := &ConnRecord{Client: c.RemoteAddr().String(), Accepted: time.Now()}
	if t != nil {
		r.Target = net.JoinHostPort(t.key.id, fmt.Sprint(t.key.port))
	}
	if len(l.order) >= l.max {
		// A client port in use again replaced the entry already.
		if old := l.order[0]; l.recs[old.Client] == old {
			delete(l.recs, old.Client)
		}
		l.order = l.order[1:]
	}
	l.order = append(l.order, r)
	l.recs[r.Client] = r
	return r
}

// Connection returns the record of the last connection from client (the
// client socket's local "ip:port"), when Options.ConnectionHistory keeps
// one.
func (s *Server) Connection(client string) (ConnRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.conns.recs[client]
	if r == nil {
		return ConnRecord{}, false
	}
	return *r, true
}
