package elbv2sim

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"
)

// The data path of application load balancer listeners: an HTTP/1.1
// server (TLS-terminating for HTTPS) that evaluates the listener's rules
// for each request and proxies it to a target, or answers it itself.

// newALBTransport carries proxied requests. Every request gets its own
// target connection, so a target that leaves has nothing pooled.
func newALBTransport() *http.Transport {
	return &http.Transport{
		DisableKeepAlives: true,
		// Targets' certificates are not verified, as in AWS.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialLoopback(ctx, addr, 5*time.Second)
		},
		ResponseHeaderTimeout: time.Minute,
	}
}

// protocolListener wraps accepted connections in TLS while the listener's
// protocol is HTTPS, so ModifyListener can switch it.
type protocolListener struct {
	net.Listener
	s   *Server
	l   *listener
	cfg *tls.Config
}

func (pl *protocolListener) Accept() (net.Conn, error) {
	c, err := pl.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pl.s.mu.Lock()
	https := pl.l.protocol == "HTTPS"
	pl.s.mu.Unlock()
	if https {
		return tls.Server(c, pl.cfg), nil
	}
	return c, nil
}

func (s *Server) serveHTTP(l *listener) {
	defer s.wg.Done()
	s.mu.Lock()
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.route(l, w, r) }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{s}, "", 0),
		// HTTP/1.1 only: http2 would need TLSNextProto.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	srv := l.srv
	closed := s.closed || s.listeners[l.arn] != l
	s.mu.Unlock()
	if closed {
		return
	}
	_ = srv.Serve(&protocolListener{Listener: l.ln, s: s, l: l, cfg: s.tlsConfig(l)})
}

// logWriter passes the data path's server errors (failed TLS handshakes,
// for instance) to Options.Logf.
type logWriter struct{ s *Server }

func (w logWriter) Write(b []byte) (int, error) {
	w.s.logf("data path: %s", strings.TrimSpace(string(b)))
	return len(b), nil
}

// choose evaluates l's rules in priority order, the default rule last.
// Callers hold s.mu.
func (l *listener) choose(r *http.Request) *action {
	for _, ru := range l.rules {
		if ru.matches(r) {
			return ru.act
		}
	}
	return l.act
}

// route answers one request on l.
func (s *Server) route(l *listener, w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	lb := s.lbs[l.lbArn]
	if s.closed || s.listeners[l.arn] != l || lb == nil || !lb.active(time.Now()) {
		s.mu.Unlock()
		// Not (yet) serving: AWS would not even resolve the DNS name.
		http.Error(w, "503 Service Temporarily Unavailable", http.StatusServiceUnavailable)
		return
	}
	a := l.choose(r)
	switch {
	case a.fixed != nil:
		f := *a.fixed
		s.mu.Unlock()
		if f.contentType != "" {
			w.Header().Set("Content-Type", f.contentType)
		}
		w.WriteHeader(f.status)
		_, _ = w.Write([]byte(f.body))
		return
	case a.redirect != nil:
		rd := *a.redirect
		proto, port := l.protocol, l.port
		s.mu.Unlock()
		status := http.StatusMovedPermanently
		if rd.status == "HTTP_302" {
			status = http.StatusFound
		}
		http.Redirect(w, r, redirectURL(rd, r, proto, port), status)
		return
	}
	var t *target
	var g *targetGroup
	if g = a.pickGroup(); g != nil {
		t = s.pick(g)
	}
	if t == nil {
		s.mu.Unlock()
		http.Error(w, "503 Service Temporarily Unavailable", http.StatusServiceUnavailable)
		return
	}
	t.inflight++
	addr := s.dialAddr(net.JoinHostPort(t.key.id, strconv.Itoa(int(t.key.port))))
	scheme := "http"
	if g.protocol == "HTTPS" {
		scheme = "https"
	}
	xff := lb.attrs["routing.http.xff_header_processing.mode"]
	listenerProto, listenerPort := strings.ToLower(l.protocol), strconv.Itoa(int(l.port))
	s.mu.Unlock()
	defer s.requestDone(g, t)

	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = scheme, addr
			pr.Out.Host = r.Host // the target sees the client's Host
			client, _, _ := net.SplitHostPort(r.RemoteAddr)
			switch xff {
			case "remove":
				pr.Out.Header.Del("X-Forwarded-For")
			case "preserve":
				pr.Out.Header["X-Forwarded-For"] = r.Header["X-Forwarded-For"]
			default:
				if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
					client = strings.Join(prior, ", ") + ", " + client
				}
				pr.Out.Header.Set("X-Forwarded-For", client)
			}
			pr.Out.Header.Set("X-Forwarded-Proto", listenerProto)
			pr.Out.Header.Set("X-Forwarded-Port", listenerPort)
		},
		Transport: s.albTransport,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			switch {
			case errors.Is(err, context.Canceled):
				// The client went away; nobody reads the answer.
			case isTimeout(err):
				http.Error(w, "504 Gateway Time-out", http.StatusGatewayTimeout)
			default:
				http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
			}
		},
	}
	proxy.ServeHTTP(w, r)
}

// requestDone ends a proxied request to t; a draining target with nothing
// left in flight completes its deregistration now.
func (s *Server) requestDone(g *targetGroup, t *target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t.inflight--
	if t.inflight == 0 && t.phase == phaseDraining && g.targets != nil && g.targets[t.key] == t {
		s.removeTarget(g, t)
	}
}

// redirectURL fills the #{protocol}, #{host}, #{port}, #{path} and
// #{query} placeholders of rd from the request, as AWS's redirect action
// does (#{path} without its leading slash).
func redirectURL(rd redirect, r *http.Request, listenerProto string, listenerPort int32) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	repl := strings.NewReplacer(
		"#{protocol}", strings.ToLower(listenerProto),
		"#{host}", host,
		"#{port}", strconv.Itoa(int(listenerPort)),
		"#{path}", strings.TrimPrefix(r.URL.Path, "/"),
		"#{query}", r.URL.RawQuery,
	)
	scheme := strings.ToLower(repl.Replace(rd.protocol))
	port := repl.Replace(rd.port)
	u := scheme + "://" + repl.Replace(rd.host)
	if !(scheme == "http" && port == "80") && !(scheme == "https" && port == "443") {
		u += ":" + port
	}
	u += repl.Replace(rd.path)
	if q := repl.Replace(rd.query); q != "" {
		u += "?" + q
	}
	return u
}
