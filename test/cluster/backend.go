package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// backend is what runs "inside" a simulated pod: one HTTP/1.1 server on
// every TCP port of the pod's containers. It answers any request with the
// pod's name, 200 while the pod's containers are ready and 503 otherwise,
// so that both plain TCP clients and HTTP health checks see it. A request
// with ?sleep=<duration> (at most a minute) waits that long first, to model
// a request in flight during shutdown.
type backend struct {
	podName   string
	ready     atomic.Bool
	requests  atomic.Int64
	server    *http.Server
	listeners []net.Listener
}

const maxRequestSleep = time.Minute

// listenBackend binds ip on every port; it fails if any port is taken so the
// caller can try another address.
func listenBackend(podName, ip string, ports []int32) (*backend, error) {
	b := &backend{podName: podName}
	for _, port := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
		if err != nil {
			for _, open := range b.listeners {
				open.Close()
			}
			return nil, err
		}
		b.listeners = append(b.listeners, l)
	}
	b.server = &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          nil,
	}
	for _, l := range b.listeners {
		go func() { _ = b.server.Serve(l) }()
	}
	return b, nil
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

// shutdown stops accepting connections at once, lets requests in flight
// finish until deadline, then closes whatever is left.
func (b *backend) shutdown(deadline time.Time) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := b.server.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		b.server.Close()
	}
	for _, l := range b.listeners {
		l.Close() // in case Serve had not started yet
	}
}

// close drops everything immediately.
func (b *backend) close() {
	b.server.Close()
	for _, l := range b.listeners {
		l.Close()
	}
}
