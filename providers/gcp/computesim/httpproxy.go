package computesim

import (
	"fmt"
	"net/http"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// httpProxy is a target HTTP or HTTPS proxy, global or regional. Both kinds
// are kept as a TargetHttpsProxy (a superset of TargetHttpProxy's fields)
// so that one code path serves the four collections.
type httpProxy struct {
	pb     *computepb.TargetHttpsProxy
	path   string
	region string
	https  bool
	gen    uint64
}

func proxyCollection(https bool) string {
	if https {
		return "targetHttpsProxies"
	}
	return "targetHttpProxies"
}

func proxyPath(r *http.Request, https bool) (path, region string, e *apiError) {
	coll, region, e := scopedCollection(r, proxyCollection(https))
	if e != nil {
		return "", "", e
	}
	return coll + "/" + r.PathValue("tp"), region, nil
}

// message is the proxy as its own collection reports it.
func (hp *httpProxy) message() proto.Message {
	if hp.https {
		return proto.CloneOf(hp.pb)
	}
	out := &computepb.TargetHttpProxy{}
	b, _ := protojson.Marshal(hp.pb)
	_ = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, out)
	return out
}

// resolveURLMapLocked canonicalises a proxy's URL map reference, which
// must exist in the proxy's scope.
func (s *Server) resolveURLMapLocked(project, region, field, ref string) (string, *apiError) {
	if ref == "" {
		return "", errInvalid("Required field '%s' not specified", field)
	}
	p := qualify(project, ref, scopePrefix(region)+"/urlMaps")
	if s.urlMaps[p] == nil {
		return "", errNotFound(p)
	}
	if !sameScope(p, region) {
		return "", errInvalidField(field, ref, "The URL map must be in the same scope (global or region) as the target proxy.")
	}
	return selfLink(p), nil
}

// resolveCertsLocked canonicalises a proxy's certificate references: 1 to
// 15 certificates that exist in the proxy's scope, the first being the
// one served to clients whose SNI matches none.
func (s *Server) resolveCertsLocked(project, region, field string, refs []string) ([]string, *apiError) {
	if len(refs) == 0 {
		return nil, errInvalid("Required field '%s' not specified: a target HTTPS proxy needs at least one SSL certificate.", field)
	}
	if len(refs) > maxSSLCertificatesPerProxy {
		return nil, errInvalid("Invalid value for field '%s': at most %d SSL certificates are allowed per target HTTPS proxy.", field, maxSSLCertificatesPerProxy)
	}
	out := make([]string, len(refs))
	for i, ref := range refs {
		p := qualify(project, ref, scopePrefix(region)+"/sslCertificates")
		if s.sslCerts[p] == nil {
			return nil, errNotFound(p)
		}
		if !sameScope(p, region) {
			return nil, errInvalidField(fmt.Sprintf("%s[%d]", field, i), ref, "The SSL certificate must be in the same scope (global or region) as the target proxy.")
		}
		out[i] = selfLink(p)
	}
	return out, nil
}

// readProxy decodes an insert body of either kind into a TargetHttpsProxy.
func readProxy(r *http.Request, https bool) (*computepb.TargetHttpsProxy, *apiError) {
	out := &computepb.TargetHttpsProxy{}
	if https {
		_, e := readBody(r, out)
		return out, e
	}
	in := &computepb.TargetHttpProxy{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	b, _ := protojson.Marshal(in)
	_ = protojson.Unmarshal(b, out)
	return out, nil
}

func (s *Server) proxyInsert(https bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		project := r.PathValue("project")
		coll, region, e := scopedCollection(r, proxyCollection(https))
		if e != nil {
			return nil, e
		}
		in, e := readProxy(r, https)
		if e != nil {
			return nil, e
		}
		if e := validateName(in.GetName()); e != nil {
			return nil, e
		}
		if in.CertificateMap != nil || in.ServerTlsPolicy != nil || in.SslPolicy != nil || in.AuthorizationPolicy != nil {
			return nil, errInvalid("Invalid value for field 'resource': certificate maps, SSL policies and TLS or authorization policies are not emulated.")
		}
		path := coll + "/" + in.GetName()
		s.mu.Lock()
		defer s.mu.Unlock()
		check := func() *apiError {
			um, e := s.resolveURLMapLocked(project, region, "resource.urlMap", in.GetUrlMap())
			if e != nil {
				return e
			}
			in.UrlMap = proto.String(um)
			if https {
				certs, e := s.resolveCertsLocked(project, region, "resource.sslCertificates", in.GetSslCertificates())
				if e != nil {
					return e
				}
				in.SslCertificates = certs
			}
			return nil
		}
		if e := check(); e != nil {
			return nil, e
		}
		if s.httpProxies[path] != nil {
			return nil, errAlreadyExists(path)
		}
		kind := "compute#targetHttpProxy"
		if https {
			kind = "compute#targetHttpsProxy"
		}
		stampNew(in, kind, project, region, path)
		in.Fingerprint = proto.String(fingerprint(in, 1))
		return s.startOpLocked(r, scopeOf(r), "insert", path, in.GetId(), func() *apiError {
			if s.httpProxies[path] != nil {
				return errAlreadyExists(path)
			}
			if e := check(); e != nil {
				return e
			}
			s.httpProxies[path] = &httpProxy{pb: in, path: path, region: region, https: https, gen: 1}
			return nil
		}), nil
	}
}

func (s *Server) proxyGet(https bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		path, _, e := proxyPath(r, https)
		if e != nil {
			return nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		hp := s.httpProxies[path]
		if hp == nil {
			return nil, errNotFound(path)
		}
		return hp.message(), nil
	}
}

func (s *Server) proxyList(https bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		coll, _, e := scopedCollection(r, proxyCollection(https))
		if e != nil {
			return nil, e
		}
		items, next, e := listPage(s, r, s.httpProxies, func(hp *httpProxy) *computepb.TargetHttpsProxy { return hp.pb }, under[*httpProxy](coll))
		if e != nil {
			return nil, e
		}
		if https {
			return &computepb.TargetHttpsProxyList{Kind: proto.String("compute#targetHttpsProxyList"), Id: proto.String(coll),
				SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
		}
		out := &computepb.TargetHttpProxyList{Kind: proto.String("compute#targetHttpProxyList"), Id: proto.String(coll),
			SelfLink: proto.String(selfLink(coll)), NextPageToken: next}
		for _, it := range items {
			out.Items = append(out.Items, (&httpProxy{pb: it}).message().(*computepb.TargetHttpProxy))
		}
		return out, nil
	}
}

func (s *Server) proxyDelete(https bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		path, _, e := proxyPath(r, https)
		if e != nil {
			return nil, e
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return deleteLocked(s, r, path, s.httpProxies, func(hp *httpProxy) uint64 { return hp.pb.GetId() },
			func() string { return s.frUserLocked(path) }, nil)
	}
}

// proxySet runs a setUrlMap or setSslCertificates call: change edits a
// copy of the proxy (after validating against the current resources) and
// the copy replaces the proxy when the operation completes.
func (s *Server) proxySet(r *http.Request, https bool, opType string, change func(project, region string, next *computepb.TargetHttpsProxy) *apiError) (proto.Message, *apiError) {
	project := r.PathValue("project")
	path, region, e := proxyPath(r, https)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hp := s.httpProxies[path]
	if hp == nil {
		return nil, errNotFound(path)
	}
	if e := change(project, region, proto.CloneOf(hp.pb)); e != nil {
		return nil, e
	}
	return s.startOpLocked(r, scopeOf(r), opType, path, hp.pb.GetId(), func() *apiError {
		cur := s.httpProxies[path]
		if cur == nil {
			return errNotFound(path)
		}
		next := proto.CloneOf(cur.pb)
		if e := change(project, region, next); e != nil {
			return e
		}
		cur.gen++
		next.Fingerprint = proto.String(fingerprint(next, cur.gen))
		cur.pb = next
		return nil
	}), nil
}

func (s *Server) proxySetURLMap(https bool) handlerFunc {
	return func(r *http.Request) (proto.Message, *apiError) {
		in := &computepb.UrlMapReference{}
		if _, e := readBody(r, in); e != nil {
			return nil, e
		}
		return s.proxySet(r, https, "setUrlMap", func(project, region string, next *computepb.TargetHttpsProxy) *apiError {
			um, e := s.resolveURLMapLocked(project, region, "resource.urlMap", in.GetUrlMap())
			if e != nil {
				return e
			}
			next.UrlMap = proto.String(um)
			return nil
		})
	}
}

func (s *Server) proxySetCertificates(r *http.Request) (proto.Message, *apiError) {
	// The global and regional request bodies differ in type only.
	var refs []string
	if r.PathValue("region") == "" {
		in := &computepb.TargetHttpsProxiesSetSslCertificatesRequest{}
		if _, e := readBody(r, in); e != nil {
			return nil, e
		}
		refs = in.GetSslCertificates()
	} else {
		in := &computepb.RegionTargetHttpsProxiesSetSslCertificatesRequest{}
		if _, e := readBody(r, in); e != nil {
			return nil, e
		}
		refs = in.GetSslCertificates()
	}
	return s.proxySet(r, true, "setSslCertificates", func(project, region string, next *computepb.TargetHttpsProxy) *apiError {
		certs, e := s.resolveCertsLocked(project, region, "resource.sslCertificates", refs)
		if e != nil {
			return e
		}
		next.SslCertificates = certs
		return nil
	})
}

// frUserLocked names one forwarding rule whose target is path, or "".
func (s *Server) frUserLocked(path string) string {
	var users []string
	for p, fr := range s.forwardingRules {
		if ResourcePath(fr.pb.GetTarget()) == path {
			users = append(users, p)
		}
	}
	return firstUser(users)
}
