package cluster

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// backend is what runs "inside" a simulated pod: one HTTP/1.1 server on
// every TCP port of the pod's containers. It answers any request with the
// pod's name, 200 while the pod's containers are ready and 503 otherwise,
// so that both plain TCP clients and HTTP health checks see it. A request
// with ?sleep=<duration> (at most a minute) waits that long first, to model
// a request in flight during shutdown. On every UDP port it answers each
// datagram with the pod's name, until it shuts down.
type backend struct {
	podName   string
	ready     atomic.Bool
	requests  atomic.Int64
	server    *http.Server
	listeners []net.Listener
	udp       []net.PacketConn
	serving   sync.WaitGroup // the Serve loops

	mu      sync.Mutex
	conns   map[net.Conn]http.ConnState // open connections
	stopped time.Time                   // when the listeners stopped
}

const maxRequestSleep = time.Minute

// listenBackend binds ip on every port; it fails if any port is taken so the
// caller can try another address.
func listenBackend(podName, ip string, ports backendPorts) (*backend, error) {
	b := &backend{podName: podName, conns: map[net.Conn]http.ConnState{}}
	for _, port := range ports.tcp {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
		if err != nil {
			b.close()
			return nil, err
		}
		b.listeners = append(b.listeners, l)
	}
	for _, port := range ports.udp {
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
		if err != nil {
			b.close()
			return nil, err
		}
		b.udp = append(b.udp, c)
	}
	b.server = &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          nil,
		ConnState:         b.track,
	}
	for _, l := range b.listeners {
		b.serving.Go(func() { _ = b.server.Serve(l) })
	}
	for _, c := range b.udp {
		go b.answerDatagrams(c)
	}
	return b, nil
}

// answerDatagrams replies to every datagram with the pod's name until the
// socket is closed.
func (b *backend) answerDatagrams(c net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		b.requests.Add(1)
		_, _ = c.WriteTo([]byte(b.podName), from)
	}
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	if s := r.URL.Query().Get("sleep"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			select {
			case <-time.After(min(d, maxRequestSleep)):
			case <-r.Context().Done():
				return
			}
		}
	}
	w.Header().Set("X-Pod-Name", b.podName)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !b.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = io.WriteString(w, b.podName)
}

func (b *backend) track(c net.Conn, st http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st == http.StateClosed || st == http.StateHijacked {
		delete(b.conns, c)
	} else {
		b.conns[c] = st
	}
}

// stoppedAt is when the backend stopped listening (zero while it
// listens). A connection dialled before then may have been completed by
// the kernel and reset by the stop; one dialled after it is refused.
func (b *backend) stoppedAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopped
}

// open counts the connections not closed yet.
func (b *backend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// shutdown stops accepting connections, answers every connection already
// accepted (by the kernel too) and lets requests in flight finish until
// deadline, then closes whatever is left.
//
// http.Server.Shutdown is not used: it closes without an answer a
// connection whose request it reads after the shutdown began (the client
// sees EOF), and it closes listeners with connections still in their
// accept queue, which resets them. Instead each listener stops when its
// accept queue is empty, everything accepted is served, and the server
// closes once no connection is left.
func (b *backend) shutdown(deadline time.Time) {
	for _, c := range b.udp {
		c.Close()
	}
	for _, l := range b.listeners {
		stopListening(l, deadline)
	}
	b.mu.Lock()
	if b.stopped.IsZero() { // else close got there first
		b.stopped = time.Now()
	}
	b.mu.Unlock()
	// Answers carry "Connection: close" from now on; idle keep-alive
	// connections are closed.
	b.server.SetKeepAlivesEnabled(false)
	for _, l := range b.listeners {
		l.Close()
	}
	b.serving.Wait() // every accepted connection is tracked now
	for b.open() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	b.server.Close()
}

// close drops everything immediately, connections in flight included, as
// a machine that dies does.
func (b *backend) close() {
	b.mu.Lock()
	if b.stopped.IsZero() {
		b.stopped = time.Now()
	}
	b.mu.Unlock()
	if b.server != nil {
		b.server.Close()
	}
	for _, l := range b.listeners {
		l.Close()
	}
	for _, c := range b.udp {
		c.Close()
	}
}
