package computesim

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// Outcomes of a connection through a forwarding rule, as ConnRecord reports
// them.
const (
	ConnOpen          = "open"
	ConnCompleted     = "completed"
	ConnNoEndpoint    = "no HEALTHY endpoint"
	ConnDialFailed    = "every endpoint tried refused or timed out"
	ConnDrained       = "closed at the end of connection draining"
	ConnDetached      = "closed: endpoint detached without connection draining"
	ConnRuleDeleted   = "closed: forwarding rule deleted"
	ConnServerClosing = "closed: emulator shutting down"
)

// ConnRecord is what the emulator knows about one client connection through
// a forwarding rule: enough to explain a failed request after the fact.
type ConnRecord struct {
	// Client is the client's address as the forwarding rule saw it, which
	// is the client socket's local address.
	Client   string
	Accepted time.Time
	Ended    time.Time
	Outcome  string
	// Tried lists the endpoints dialled in order, with the dial error of
	// each that failed.
	Tried []string
	// Endpoint is the "ip:port" the connection was spliced to.
	Endpoint string
	// The endpoint's health target when the connection ended: its state
	// and when it was attached, detached and will stop draining.
	State      string
	AttachedAt time.Time
	DetachedAt time.Time
	DrainUntil time.Time
	// BackendErr is the error reading the endpoint's side, if any (a reset
	// from the pod, for example).
	BackendErr string
}

// String is one line for a test log.
func (r ConnRecord) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client %s accepted %s, %s", r.Client, stamp(r.Accepted), r.Outcome)
	if !r.Ended.IsZero() {
		fmt.Fprintf(&b, " at %s", stamp(r.Ended))
	}
	if len(r.Tried) > 0 {
		fmt.Fprintf(&b, "; tried %s", strings.Join(r.Tried, ", "))
	}
	if r.Endpoint != "" {
		fmt.Fprintf(&b, "; endpoint %s %s attached %s detached %s drain until %s", r.Endpoint, r.State,
			stamp(r.AttachedAt), stamp(r.DetachedAt), stamp(r.DrainUntil))
	}
	if r.BackendErr != "" {
		fmt.Fprintf(&b, "; backend error %s", r.BackendErr)
	}
	return b.String()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format("15:04:05.000")
}

// newConnRecordLocked starts the record of an accepted connection, or
// returns nil when no history is kept.
func (s *Server) newConnRecordLocked(c net.Conn) *ConnRecord {
	r := &ConnRecord{Client: c.RemoteAddr().String(), Accepted: time.Now(), Outcome: ConnOpen}
	return s.conns.Add(r.Client, r)
}

// endConnLocked sets a record's outcome (the first one wins) and the
// endpoint's state at that moment.
func endConnLocked(r *ConnRecord, t *target, outcome string) {
	if r == nil || r.Outcome != ConnOpen {
		return
	}
	r.Outcome, r.Ended = outcome, time.Now()
	if t != nil {
		r.Endpoint = epKey(t.ip, t.port)
		r.State, r.AttachedAt, r.DetachedAt, r.DrainUntil = t.state, t.attachedAt, t.detachedAt, t.drainUntil
	}
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
	out := *r
	out.Tried = append([]string(nil), r.Tried...)
	return out, true
}
