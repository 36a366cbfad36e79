// Package loadgen sends steady traffic through a load balancer the way its
// clients would, one HTTP request per new TCP connection, and counts what
// they saw. The sandbox, the benchmarks and the end-to-end tests measure
// rollouts with it.
package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// Load is traffic to one load balancer address.
type Load struct {
	addr string
	// host is the Host header, for load balancers that route by host;
	// empty sends addr.
	host string
	// path is the request path, "/" unless set.
	path   string
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    Result
	client *http.Client
}

// Result is what the clients saw.
type Result struct {
	OK, Failed int
	// Errors holds the first failures, for messages.
	Errors []string
	// Failures holds the same first failures with the client's address,
	// which the load balancer emulators can explain.
	Failures []Failure
	// FirstFailure and LastFailure are when the first and the last
	// request failed (zero if none): the span of all failures, kept or
	// not.
	FirstFailure, LastFailure time.Time
	// Backends counts answers per pod name.
	Backends map[string]int
}

// Failure is one failed request.
type Failure struct {
	At time.Time
	// Local is the client socket's "ip:port" ("" when it never
	// connected): what the load balancer saw as the client.
	Local string
	Err   string
}

// maxErrors bounds Result.Errors.
const maxErrors = 10

// Start starts workers that each send a request every interval until Stop.
func Start(addr string, workers int, interval time.Duration) *Load {
	return StartHost(addr, "", workers, interval)
}

// StartHost is Start with requests for host (the Host header), through a
// load balancer that routes by host at addr.
func StartHost(addr, host string, workers int, interval time.Duration) *Load {
	return StartPath(addr, host, "/", workers, interval)
}

// StartPath is StartHost with requests for path.
func StartPath(addr, host, path string, workers int, interval time.Duration) *Load {
	l := &Load{addr: addr, host: host, path: path, stop: make(chan struct{}), res: Result{Backends: map[string]int{}},
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	for range workers {
		l.wg.Add(1)
		go l.worker(interval)
	}
	return l
}

func (l *Load) worker(interval time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		backend, local, err := l.once()
		l.mu.Lock()
		if err != nil {
			now := time.Now()
			l.res.Failed++
			if l.res.FirstFailure.IsZero() {
				l.res.FirstFailure = now
			}
			l.res.LastFailure = now
			if len(l.res.Errors) < maxErrors {
				l.res.Errors = append(l.res.Errors, now.Format("15:04:05.000 ")+err.Error())
				l.res.Failures = append(l.res.Failures, Failure{At: now, Local: local, Err: err.Error()})
			}
		} else {
			l.res.OK++
			l.res.Backends[backend]++
		}
		l.mu.Unlock()
	}
}

// once sends one request and returns the answering pod's name and the
// client socket's address.
func (l *Load) once() (backend, local string, err error) {
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { local = ci.Conn.LocalAddr().String() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+l.addr+l.path, nil)
	if err != nil {
		return "", "", err
	}
	req.Host = l.host
	resp, err := l.client.Do(req)
	if err != nil {
		return "", local, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(bufio.NewReader(resp.Body))
	if err != nil {
		return "", local, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", local, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), local, nil
}

// Snapshot returns the counts so far.
func (l *Load) Snapshot() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.Backends = maps.Clone(l.res.Backends)
	r.Errors = append([]string(nil), l.res.Errors...)
	r.Failures = append([]Failure(nil), l.res.Failures...)
	return r
}

// Stop ends the load and returns the result.
func (l *Load) Stop() Result {
	close(l.stop)
	l.wg.Wait()
	return l.Snapshot()
}
