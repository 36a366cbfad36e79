package computesim

import (
	"net/http"
	"net/url"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// route is where a URL map sends a request: a backend service (resource
// path) or a redirect; neither means 404.
type route struct {
	service  string
	redirect *computepb.HttpRedirectAction
}

// routeRequest applies a URL map to a host and path: the host rule of the
// exact host, else of the longest matching "*.suffix", else of "*", picks a
// path matcher, whose longest matching path rule (exact "/x", or prefix
// "/x/*" matching "/x/" and below; exact wins a tie) decides, else its
// default; without a host rule the URL map's default decides.
func routeRequest(um *computepb.UrlMap, host, path string) route {
	host = strings.ToLower(host)
	if h, _, err := splitHostPortLoose(host); err == nil {
		host = h
	}
	matcher := ""
	best := -1
	for _, hr := range um.GetHostRules() {
		for _, h := range hr.GetHosts() {
			h = strings.ToLower(h)
			score := -1
			switch {
			case h == host:
				score = 1 << 20 // exact beats any wildcard
			case h == "*":
				score = 0
			case strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:]):
				score = len(h)
			}
			if score > best {
				best, matcher = score, hr.GetPathMatcher()
			}
		}
	}
	if best < 0 {
		return route{service: ResourcePath(um.GetDefaultService()), redirect: um.GetDefaultUrlRedirect()}
	}
	for _, pm := range um.GetPathMatchers() {
		if pm.GetName() != matcher {
			continue
		}
		bestLen, exact := -1, false
		var chosen *computepb.PathRule
		for _, pr := range pm.GetPathRules() {
			for _, p := range pr.GetPaths() {
				n, isExact := -1, false
				if pfx, ok := strings.CutSuffix(p, "*"); ok {
					if strings.HasPrefix(path, pfx) {
						n = len(pfx)
					}
				} else if p == path {
					n, isExact = len(p), true
				}
				if n > bestLen || n == bestLen && n >= 0 && isExact && !exact {
					bestLen, exact, chosen = n, isExact, pr
				}
			}
		}
		if chosen != nil {
			return route{service: ResourcePath(chosen.GetService()), redirect: chosen.GetUrlRedirect()}
		}
		return route{service: ResourcePath(pm.GetDefaultService()), redirect: pm.GetDefaultUrlRedirect()}
	}
	return route{}
}

// splitHostPortLoose splits "host:port" and leaves a bare host alone.
func splitHostPortLoose(hostport string) (string, string, error) {
	if i := strings.LastIndex(hostport, ":"); i >= 0 && !strings.Contains(hostport[i:], "]") {
		return strings.Trim(hostport[:i], "[]"), hostport[i+1:], nil
	}
	return hostport, "", nil
}

// redirectURL is where a redirect action sends a request for u (whose
// scheme and host must be set), and with which status code.
func redirectURL(rd *computepb.HttpRedirectAction, u *url.URL) (string, int) {
	out := *u
	if rd.GetHttpsRedirect() {
		out.Scheme = "https"
	}
	if h := rd.GetHostRedirect(); h != "" {
		out.Host = h
	}
	if p := rd.GetPathRedirect(); p != "" {
		out.Path, out.RawPath = p, ""
	}
	if rd.GetStripQuery() {
		out.RawQuery = ""
	}
	code := redirectCodes[rd.GetRedirectResponseCode()]
	if code == 0 {
		code = http.StatusMovedPermanently
	}
	return out.String(), code
}

// runURLMapTests runs a URL map's tests and reports the failures.
func runURLMapTests(um *computepb.UrlMap) []*computepb.TestFailure {
	var out []*computepb.TestFailure
	for _, t := range um.GetTests() {
		rt := routeRequest(um, t.GetHost(), t.GetPath())
		f := &computepb.TestFailure{Host: t.Host, Path: t.Path}
		failed := false
		if t.Service != nil && ResourcePath(t.GetService()) != rt.service {
			f.ExpectedService, f.ActualService = t.Service, proto.String(selfLinkOrEmpty(rt.service))
			failed = true
		}
		if t.ExpectedOutputUrl != nil || t.ExpectedRedirectResponseCode != nil {
			actual, code := "", 0
			if rt.redirect != nil {
				actual, code = redirectURL(rt.redirect, &url.URL{Scheme: "http", Host: t.GetHost(), Path: t.GetPath()})
			}
			if t.ExpectedOutputUrl != nil && rt.redirect != nil && actual != t.GetExpectedOutputUrl() {
				f.ExpectedOutputUrl, f.ActualOutputUrl = t.ExpectedOutputUrl, proto.String(actual)
				failed = true
			}
			if t.ExpectedRedirectResponseCode != nil && int(t.GetExpectedRedirectResponseCode()) != code {
				f.ExpectedRedirectResponseCode, f.ActualRedirectResponseCode = t.ExpectedRedirectResponseCode, proto.Int32(int32(code))
				failed = true
			}
		}
		if failed {
			out = append(out, f)
		}
	}
	return out
}

func selfLinkOrEmpty(path string) string {
	if path == "" {
		return ""
	}
	return selfLink(path)
}
