package elbv2sim

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// The UDP data path of network load balancer listeners (UDP and TCP_UDP).
// A datagram from a client address:port belongs to a flow: the first one
// picks a target as TCP connections do, later ones go to the same target
// until the flow has been idle for udpIdleTimeout (AWS's UDP idle timeout
// is 120 seconds). Replies from the target come back to the client from
// the listener's address. A flow whose target leaves the group picks
// again.

const udpIdleTimeout = 120 * time.Second

type udpFlow struct {
	t       *target
	g       *targetGroup
	backend *net.UDPConn // connected to the target
	once    sync.Once
	last    time.Time // last datagram from the client; guarded by s.mu
}

func (f *udpFlow) close() { f.once.Do(func() { _ = f.backend.Close() }) }

// listenTCPAndUDP opens a TCP listener and a UDP socket on the same free
// port of host.
func listenTCPAndUDP(host string) (net.Listener, *net.UDPConn, error) {
	var lastErr error
	for range 20 {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, nil, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		addr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			var udp *net.UDPConn
			if udp, err = net.ListenUDP("udp", addr); err == nil {
				return ln, udp, nil
			}
		}
		_ = ln.Close()
		lastErr = err
	}
	return nil, nil, lastErr
}

// UDP datagrams are at most 65507 bytes over IPv4.
const maxDatagram = 65507

func (s *Server) serveUDP(l *listener) {
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := l.udp.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f := s.flow(l, client)
		if f != nil {
			_, _ = f.backend.Write(buf[:n])
		}
	}
}

// flow finds or starts the flow of a client address; nil drops the
// datagram (not a UDP listener, no usable target, not active).
func (s *Server) flow(l *listener, client *net.UDPAddr) *udpFlow {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.serving(l) || (l.protocol != "UDP" && l.protocol != "TCP_UDP") {
		return nil
	}
	key := client.String()
	now := time.Now()
	if f := l.flows[key]; f != nil {
		// The flow keeps its target while the target is registered (draining
		// included) and the flow is not idle.
		if f.g.targets[f.t.key] == f.t && now.Sub(f.last) < udpIdleTimeout {
			f.last = now
			return f
		}
		s.dropFlow(l, key, f)
	}
	g := l.defaultGroup()
	t := s.pick(g)
	if t == nil {
		return nil
	}
	raddr := s.dialAddr(net.JoinHostPort(t.key.id, strconv.Itoa(int(t.key.port))))
	if loopbackOnly(raddr) != nil {
		return nil
	}
	ua, err := net.ResolveUDPAddr("udp", raddr)
	if err != nil {
		return nil
	}
	b, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil
	}
	f := &udpFlow{t: t, g: g, backend: b, last: now}
	if l.flows == nil {
		l.flows = map[string]*udpFlow{}
	}
	l.flows[key] = f
	s.wg.Add(1)
	go s.replies(l, key, f, client)
	return f
}

// replies copies the target's datagrams back to the client until the flow
// is closed or idle.
func (s *Server) replies(l *listener, key string, f *udpFlow, client *net.UDPAddr) {
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		_ = f.backend.SetReadDeadline(time.Now().Add(udpIdleTimeout))
		n, err := f.backend.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.mu.Lock()
				idle := time.Since(f.last) >= udpIdleTimeout
				if idle {
					s.dropFlow(l, key, f)
				}
				s.mu.Unlock()
				if idle {
					return
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ICMP port unreachable and the like: the target is not
			// listening; keep the flow, as a UDP load balancer cannot tell.
			continue
		}
		_, _ = l.udp.WriteToUDP(buf[:n], client)
	}
}

// dropFlow forgets and closes a flow. Callers hold s.mu.
func (s *Server) dropFlow(l *listener, key string, f *udpFlow) {
	if l.flows[key] == f {
		delete(l.flows, key)
	}
	f.close()
}
