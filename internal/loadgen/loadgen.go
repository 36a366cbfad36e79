// Package loadgen sends steady traffic through a load balancer the way its
// clients would, one HTTP request per new TCP connection, and counts what
// they saw. The sandbox, the benchmarks and the end-to-end tests measure
// rollouts with it.
package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Load is traffic to one load balancer address.
type Load struct {
	addr   string
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
	// Backends counts answers per pod name.
	Backends map[string]int
}

// maxErrors bounds Result.Errors.
const maxErrors = 10

// Start starts workers that each send a request every interval until Stop.
func Start(addr string, workers int, interval time.Duration) *Load {
	l := &Load{addr: addr, stop: make(chan struct{}), res: Result{Backends: map[string]int{}},
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
		backend, err := l.once()
		l.mu.Lock()
		if err != nil {
			l.res.Failed++
			if len(l.res.Errors) < maxErrors {
				l.res.Errors = append(l.res.Errors, time.Now().Format("15:04:05.000 ")+err.Error())
			}
		} else {
			l.res.OK++
			l.res.Backends[backend]++
		}
		l.mu.Unlock()
	}
}

func (l *Load) once() (string, error) {
	resp, err := l.client.Get("http://" + l.addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(bufio.NewReader(resp.Body))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(body)), nil
}

// Snapshot returns the counts so far.
func (l *Load) Snapshot() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.res
	r.Backends = maps.Clone(l.res.Backends)
	r.Errors = append([]string(nil), l.res.Errors...)
	return r
}

// Stop ends the load and returns the result.
func (l *Load) Stop() Result {
	close(l.stop)
	l.wg.Wait()
	return l.Snapshot()
}
