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

// newConnRecordLocked records an accepted connection and the target it
// goes to (nil: none), or returns nil when no history is kept.
func (s *Server) newConnRecordLocked(c net.Conn, t *target) *ConnRecord {
	r := &ConnRecord{Client: c.RemoteAddr().String(), Accepted: time.Now()}
	if t != nil {
		r.Target = net.JoinHostPort(t.key.id, fmt.Sprint(t.key.port))
	}
	return s.conns.Add(r.Client, r)
}

// Connection returns the record of the last connection from client (the
// client socket's local "ip:port"), when Options.ConnectionHistory keeps
// one.
func (s *Server) Connection(client string) (ConnRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.conns.Get(client)
	if !ok {
		return ConnRecord{}, false
	}
	return *r, true
}
