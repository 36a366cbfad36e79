package cluster

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A client that keeps sending requests while a backend shuts down gets
// answers and then "connection refused". It never gets EOF (a connection
// accepted and closed unanswered); a reset is only possible for a dial
// that began before the backend stopped listening (the kernel completed
// the handshake, the stop reset it), never for a later one.
func TestBackendShutdownAnswersThenRefuses(t *testing.T) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for round := range 40 {
		b, err := listenBackend("web", "127.0.0.1", backendPorts{tcp: []int32{0}})
		if err != nil {
			t.Fatal(err)
		}
		b.ready.Store(true)
		url := "http://" + b.listeners[0].Addr().String() + "/"
		// The stop's reset can reach a client before shutdown records
		// when it stopped listening: wait for the record.
		stoppedAt := func() time.Time {
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
				if at := b.stoppedAt(); !at.IsZero() {
					return at
				}
			}
			return time.Time{}
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Go(func() {
				for {
					dialed := time.Now()
					resp, err := client.Get(url)
					switch {
					case errors.Is(err, syscall.ECONNRESET) && dialed.Before(stoppedAt()):
						continue // raced the stop
					case err != nil:
						errs <- err
						return
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK || string(body) != "web" {
						errs <- fmt.Errorf("%s %q %v", resp.Status, body, err)
						return
					}
				}
			})
		}
		time.Sleep(5 * time.Millisecond)
		b.shutdown(time.Now().Add(5 * time.Second))
		wg.Wait()
		close(errs)
		for err := range errs {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("round %d: want answers, then connection refused; got %v", round, err)
			}
		}
	}
}

// A UDP port of the pod answers each datagram with the pod's name, and
// stops answering once the backend shuts down.
func TestBackendAnswersDatagramsUntilShutdown(t *testing.T) {
	b, err := listenBackend("dns", "127.0.0.1", backendPorts{tcp: []int32{0}, udp: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp", b.udp[0].LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func() (string, error) {
		if _, err := c.Write([]byte("who")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	if got, err := ask(); err != nil || got != "dns" {
		t.Fatalf("answer %q, %v; want the pod's name", got, err)
	}
	b.shutdown(time.Now().Add(time.Second))
	if got, err := ask(); err == nil {
		t.Errorf("answered %q after shutdown", got)
	}
}
