package computesim

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// The HTTP data path: a forwarding rule to a target HTTP(S) proxy serves
// HTTP/1.1 (over TLS for HTTPS proxies), routes each request with the
// proxy's URL map and forwards it to a HEALTHY endpoint of the chosen
// backend service.

// Bodies of the answers the load balancer itself gives, as GCE's
// Application Load Balancers word them.
const (
	bodyNoHealthyUpstream = "no healthy upstream"
	bodyConnectFailure    = "upstream connect error or disconnect/reset before headers"
)

// hopHeaders are the hop-by-hop headers a proxy does not forward.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func newUpstreamTransport(dialTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		// Like GCE's load balancers, HTTPS backends are not verified.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // emulating GCE
	}
}

// serveHTTPRule starts serving a forwarding rule to a target HTTP proxy,
// or with TLS to a target HTTPS proxy. Callers hold s.mu.
func (s *Server) serveHTTPRule(fr *forwardingRule, https bool) {
	fr.httpSrv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveHTTP(fr, w, r) }),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		// HTTP/1.1 only: an empty TLSNextProto map disables HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ln := fr.ln
	if https {
		ln = s.tlsListener(fr, []string{"http/1.1"})
	}
	srv := fr.httpSrv
	fr.wg.Add(1)
	go func() {
		defer fr.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// tlsListener terminates TLS 1.2+ on a rule's listener with its proxy's
// certificates.
func (s *Server) tlsListener(fr *forwardingRule, protos []string) net.Listener {
	return tls.NewListener(fr.ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.certificateFor(fr, hello.ServerName)
		},
	})
}

// certificateFor picks the certificate an HTTPS or SSL proxy rule
// presents: the first of its proxy's certificates valid for the SNI name,
// else the first one (the primary, as GCE serves to clients without a
// matching SNI).
func (s *Server) certificateFor(fr *forwardingRule, sni string) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var refs []string
	target := ResourcePath(fr.pb.GetTarget())
	if hp := s.httpProxies[target]; hp != nil {
		refs = hp.pb.GetSslCertificates()
	} else if tp := s.tcpProxies[target]; tp != nil {
		refs = tp.pb.GetSslCertificates()
	} else {
		return nil, errors.New("the target proxy is gone")
	}
	var first *tls.Certificate
	for _, ref := range refs {
		c := s.sslCerts[ResourcePath(ref)]
		if c == nil {
			continue
		}
		if first == nil {
			first = &c.cert
		}
		if sni != "" && c.cert.Leaf.VerifyHostname(sni) == nil {
			return &c.cert, nil
		}
	}
	if first == nil {
		return nil, errors.New("the target proxy has no certificate")
	}
	return first, nil
}

// routeHTTPLocked applies the rule's proxy's URL map to a request.
func (s *Server) routeHTTPLocked(fr *forwardingRule, r *http.Request) (route, bool) {
	if s.forwardingRules[fr.path] != fr {
		return route{}, false
	}
	hp := s.httpProxies[ResourcePath(fr.pb.GetTarget())]
	if hp == nil {
		return route{}, false
	}
	um := s.urlMaps[ResourcePath(hp.pb.GetUrlMap())]
	if um == nil {
		return route{}, false
	}
	return routeRequest(um.pb, r.Host, r.URL.Path), true
}

func (s *Server) serveHTTP(fr *forwardingRule, w http.ResponseWriter, r *http.Request) {
	s.stats.proxyAdd(func(p *ProxyStats) { p.Accepted++ })
	s.mu.Lock()
	rt, ok := s.routeHTTPLocked(fr, r)
	var cands []*target
	var bsProtocol string
	var timeout time.Duration
	if ok && rt.redirect == nil && rt.service != "" {
		cands = s.healthyTargetsLocked(rt.service)
		if bs := s.backendServices[rt.service]; bs != nil {
			bsProtocol = bs.pb.GetProtocol()
			timeout = time.Duration(bs.pb.GetTimeoutSec()) * time.Second
		}
	}
	s.mu.Unlock()
	switch {
	case !ok:
		http.Error(w, bodyNoHealthyUpstream, http.StatusServiceUnavailable)
		return
	case rt.redirect != nil:
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		loc, code := redirectURL(rt.redirect, &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery})
		w.Header().Set("Location", loc)
		w.WriteHeader(code)
		return
	case rt.service == "":
		http.Error(w, "The requested URL "+r.URL.Path+" was not found on this server.", http.StatusNotFound)
		return
	case len(cands) == 0:
		s.stats.proxyAdd(func(p *ProxyStats) { p.Rejected++ })
		http.Error(w, bodyNoHealthyUpstream, http.StatusServiceUnavailable)
		return
	}
	scheme := "http"
	if bsProtocol == "HTTPS" {
		scheme = "https"
	}
	for i, t := range cands {
		if i >= 3 {
			break // like a proxy's retry budget
		}
		switch s.forwardHTTP(fr, t, scheme, timeout, w, r) {
		case forwarded:
			return
		case failed:
			http.Error(w, bodyConnectFailure, http.StatusBadGateway)
			return
		}
	}
	s.stats.proxyAdd(func(p *ProxyStats) { p.Rejected++ })
	http.Error(w, bodyConnectFailure, http.StatusBadGateway)
}

type forwardResult int

const (
	forwarded forwardResult = iota // answered, from the endpoint
	retry                          // endpoint not reachable: try another
	failed                         // endpoint failed after the request was sent
)

// forwardHTTP sends one request to one endpoint and relays the answer.
// The request is one of the endpoint's connections while it runs, so that
// detaching the endpoint drains it: it may finish within the draining
// timeout and is cancelled after it.
func (s *Server) forwardHTTP(fr *forwardingRule, t *target, scheme string, timeout time.Duration, w http.ResponseWriter, r *http.Request) forwardResult {
	addr := s.dialAddr(epKey(t.ip, t.port))
	if host, _, err := net.SplitHostPort(addr); err != nil {
		return retry
	} else if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		return retry // only loopback addresses are ever contacted
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	pc := &proxyConn{rule: fr, cancel: cancel}
	s.mu.Lock()
	if !t.takesNewTraffic(time.Now()) || s.closing || s.forwardingRules[fr.path] != fr {
		s.mu.Unlock()
		return retry
	}
	t.conns[pc] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(t.conns, pc)
		s.mu.Unlock()
	}()

	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = scheme, addr
	out.Host = r.Host
	// The transport closes the body it is given, also when the dial fails;
	// the handler's own body must stay readable for the next endpoint.
	if r.Body != nil && r.Body != http.NoBody {
		out.Body = io.NopCloser(r.Body)
	}
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
			ip = prior + ", " + ip
		}
		out.Header.Set("X-Forwarded-For", ip)
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	out.Header.Set("X-Forwarded-Proto", proto)
	out.Header.Add("Via", "1.1 google")

	resp, err := s.upstream.RoundTrip(out)
	if err != nil {
		s.mu.Lock()
		cut := pc.closed
		s.mu.Unlock()
		if cut {
			// Draining ended, or the endpoint went without draining: the
			// client's connection is closed, as GCE closes connections.
			panic(http.ErrAbortHandler)
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" && ctx.Err() == nil {
			return retry
		}
		s.logf("computesim: %s -> %s: %v", lastSegment(fr.path), epKey(t.ip, t.port), err)
		return failed
	}
	defer resp.Body.Close()
	s.mu.Lock()
	t.served++
	s.mu.Unlock()
	s.stats.proxyAdd(func(p *ProxyStats) { p.Forwarded++ })
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.Header().Add("Via", "1.1 google")
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil && ctx.Err() != nil {
		panic(http.ErrAbortHandler) // cut mid-answer, as above
	}
	return forwarded
}

// ForwardingRuleURL is the base URL ("http://127.254.0.1:80") of a
// forwarding rule to a target HTTP(S) proxy, or "" when there is no such
// rule (yet).
func (s *Server) ForwardingRuleURL(name string) string {
	addr := s.ForwardingRuleAddr(name)
	if addr == "" {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fr := range s.forwardingRules {
		if fr.pb.GetName() == name && fr.ln.Addr().String() == addr {
			if targetKind(ResourcePath(fr.pb.GetTarget())) == "targetHttpsProxies" {
				return "https://" + addr
			}
			return "http://" + addr
		}
	}
	return ""
}
