package computesim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/internal/connhistory"
)

// Options configures an emulator. The zero value is usable: it listens on
// 127.0.0.1 at a free port, accepts any project, completes operations
// immediately and injects no faults.
type Options struct {
	// Addr is the API listen address; default "127.0.0.1:0".
	Addr string
	// Project, when set, is the only project the API answers for; other
	// projects get 404. Empty accepts any project.
	Project string

	// OperationDelay is how long an operation stays RUNNING before it takes
	// effect and reports DONE. 0 applies mutations within the call.
	OperationDelay time.Duration

	// ProgrammingDelay is how long a newly attached endpoint takes to be
	// programmed into the load balancer: until then it is not health
	// checked, so it reports no health and gets no traffic. Google does
	// not document this latency; users see tens of seconds.
	ProgrammingDelay time.Duration
	// DetachProgrammingDelay is how long a detach takes to reach the load
	// balancer: a detached endpoint that was HEALTHY keeps getting new
	// connections and requests for this long, and only then starts
	// draining (its connections close after the draining timeout, or at
	// once without draining). This is the tail a rollout must cover with
	// a preStop delay. Not documented either; 0 (the default) takes
	// detaches in at once.
	DetachProgrammingDelay time.Duration
	// HealthCheckInterval and HealthCheckTimeout, when non-zero, replace
	// every health check's checkIntervalSec / timeoutSec for probing (the
	// API keeps reporting the configured values), so tests run at ms scale.
	HealthCheckInterval time.Duration
	HealthCheckTimeout  time.Duration
	// DrainingTimeout, when non-zero, replaces every non-zero
	// connectionDraining.drainingTimeoutSec on the data path (again the API
	// reports the configured value); services without draining keep none.
	DrainingTimeout time.Duration

	// Latency is added to every API call.
	Latency time.Duration
	// ErrorRate is the fraction of API calls answered with a 5xx error
	// (500 internalError or 503 backendError) before doing anything.
	ErrorRate float64
	// OperationFailureRate is the fraction of operations that end in
	// failure (httpErrorStatusCode OperationFailureCode) without effect.
	OperationFailureRate float64
	// OperationFailureCode is the HTTP status injected operation failures
	// report; default 503.
	OperationFailureCode int
	// RateLimits caps calls per RateWindow. Keys are method names such as
	// "networkEndpointGroups.attachNetworkEndpoints", the classes "read"
	// and "write", or "*" for all calls. Over the limit the API answers
	// 403 rateLimitExceeded until the window ends.
	RateLimits map[string]int
	// RateWindow is the fixed quota window; default 100s, as GCE's quotas
	// were (they are per minute now).
	RateWindow time.Duration
	// SynchronizedWindows starts each quota window on a multiple of
	// RateWindow of the clock, as GCE's per-minute quotas do; otherwise
	// windows follow from the first call.
	SynchronizedWindows bool
	// MaxConcurrentOperations caps operations in flight (with an
	// OperationDelay): mutations beyond it answer 403 rateLimitExceeded
	// ("Quota on concurrent operations exceeded"). 0 sets no cap.
	MaxConcurrentOperations int
	// RateLimitRate is the fraction (0..1) of calls answered 403
	// rateLimitExceeded regardless of RateLimits, before doing anything.
	RateLimitRate float64

	// MaxEndpointsPerNEG is the NEG endpoint quota, answered 403
	// quotaExceeded; default DefaultMaxEndpointsPerNEG (GCE's 10,000).
	MaxEndpointsPerNEG int

	// ListenHost is where forwarding rules listen when they ask for no
	// loopback address of their own; default "127.0.0.1".
	ListenHost string
	// AddressRange is where reserved addresses (addresses and
	// globalAddresses) get their IPs, one each; it must lie in 127.0.0.0/8.
	// Default DefaultAddressRange.
	AddressRange netip.Prefix
	// ProbeWorkers bounds concurrent health probes; default 64.
	ProbeWorkers int
	// TargetAddr maps an endpoint's "ip:port" to the address the emulator
	// really connects to for health checks and traffic. The local cluster
	// reports pod IPs in 10.0.0.0/8 and serves them on the mirrored
	// 127.0.0.0/8 address; nil connects to the endpoint address itself.
	// Only endpoints that map to loopback are accepted.
	TargetAddr func(addr string) string
	// Logf, when set, receives one line per notable event.
	Logf func(format string, args ...any)
	// ConnectionHistory is how many of the latest connections through
	// forwarding rules Connection can explain; 0 keeps none.
	ConnectionHistory int

	// Permissions maps a caller's OAuth access token (the Bearer token of
	// its Authorization header) to the IAM permissions it holds, such as
	// a custom role's includedPermissions. A call lacking one answers 403
	// forbidden "Required 'compute.X' permission for 'projects/...'" (see
	// permissions.go). Callers with another token, or none, hold every
	// permission, as a project owner does.
	Permissions map[string][]string
}

// Server is a running emulator.
type Server struct {
	opts    Options
	ln      net.Listener
	httpSrv *http.Server
	base    string

	mu              sync.Mutex
	negs            map[string]*neg // key: resource path
	instances       map[string]*instance
	healthChecks    map[string]*healthCheck
	backendServices map[string]*backendService
	tcpProxies      map[string]*tcpProxy
	urlMaps         map[string]*urlMap
	sslCerts        map[string]*sslCert
	httpProxies     map[string]*httpProxy // target HTTP and HTTPS proxies
	addresses       map[string]*address
	nextAddress     netip.Addr
	ca              certAuthority
	upstream        *http.Transport // HTTP data path to endpoints
	forwardingRules map[string]*forwardingRule
	ops             map[string]*operation
	targets         map[string]*target // active health targets by key
	draining        map[*target]struct{}
	rr              map[string]uint64
	closing         bool
	conns           connhistory.Log[ConnRecord]

	faults faultState
	stats  statsState

	permMu sync.Mutex
	perms  map[string][]string // Options.Permissions, by token

	sched *scheduler
	opq   *opQueue
	// running counts delayed operations not DONE yet (under mu).
	running int
	closeCh chan struct{}
	wg      sync.WaitGroup
}

// Start starts an emulator with opts.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.ListenHost == "" {
		opts.ListenHost = "127.0.0.1"
	}
	if opts.RateWindow <= 0 {
		opts.RateWindow = 100 * time.Second
	}
	if opts.OperationFailureCode == 0 {
		opts.OperationFailureCode = http.StatusServiceUnavailable
	}
	if opts.ProbeWorkers <= 0 {
		opts.ProbeWorkers = 64
	}
	if opts.MaxEndpointsPerNEG <= 0 {
		opts.MaxEndpointsPerNEG = DefaultMaxEndpointsPerNEG
	}
	if !opts.AddressRange.IsValid() {
		opts.AddressRange = DefaultAddressRange
	}
	if !opts.AddressRange.Addr().Is4() || !opts.AddressRange.Addr().IsLoopback() || opts.AddressRange.Bits() < 8 {
		return nil, fmt.Errorf("computesim: AddressRange %s is not within 127.0.0.0/8", opts.AddressRange)
	}
	opts.AddressRange = opts.AddressRange.Masked()
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:            opts,
		ln:              ln,
		base:            "http://" + ln.Addr().String(),
		negs:            map[string]*neg{},
		instances:       map[string]*instance{},
		healthChecks:    map[string]*healthCheck{},
		backendServices: map[string]*backendService{},
		tcpProxies:      map[string]*tcpProxy{},
		urlMaps:         map[string]*urlMap{},
		sslCerts:        map[string]*sslCert{},
		httpProxies:     map[string]*httpProxy{},
		addresses:       map[string]*address{},
		forwardingRules: map[string]*forwardingRule{},
		ops:             map[string]*operation{},
		targets:         map[string]*target{},
		draining:        map[*target]struct{}{},
		rr:              map[string]uint64{},
		closeCh:         make(chan struct{}),
		conns:           connhistory.Log[ConnRecord]{Max: opts.ConnectionHistory},
		perms:           map[string][]string{},
	}
	for token, granted := range opts.Permissions {
		s.perms[token] = slices.Clone(granted)
	}
	dialTimeout := 2 * time.Second
	if opts.HealthCheckTimeout > 0 {
		dialTimeout = max(opts.HealthCheckTimeout, 100*time.Millisecond)
	}
	s.upstream = newUpstreamTransport(dialTimeout)
	s.faults.init(opts)
	s.stats.init()
	s.sched = newScheduler(s, opts.ProbeWorkers)
	s.opq = newOpQueue(s)

	mux := http.NewServeMux()
	s.routes(mux)
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(ln)
	}()
	return s, nil
}

// URL is the API endpoint to give option.WithEndpoint, like
// "http://127.0.0.1:34567".
func (s *Server) URL() string { return s.base }

// Addr is the API listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the API, every forwarding rule listener, every proxied
// connection and the health checker.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	close(s.closeCh)
	var lns []*forwardingRule
	for _, fr := range s.forwardingRules {
		lns = append(lns, fr)
	}
	for _, t := range s.targets {
		t.closeConnsLocked(ConnServerClosing)
	}
	for t := range s.draining {
		t.closeConnsLocked(ConnServerClosing)
	}
	s.mu.Unlock()
	for _, fr := range lns {
		fr.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.httpSrv.Shutdown(ctx)
	if err != nil {
		_ = s.httpSrv.Close()
	}
	s.upstream.CloseIdleConnections()
	s.sched.stop()
	s.opq.stop()
	s.wg.Wait()
	return nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// ---- errors ----

// apiError is a Compute API error. It is answered either synchronously as
// an HTTP error or as the error of a failed operation.
type apiError struct {
	code    int
	reason  string // legacy reason: notFound, alreadyExists, invalid, ...
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.code, e.reason, e.message) }

func errNotFound(path string) *apiError {
	return &apiError{http.StatusNotFound, "notFound", fmt.Sprintf("The resource '%s' was not found", path)}
}

func errAlreadyExists(path string) *apiError {
	return &apiError{http.StatusConflict, "alreadyExists", fmt.Sprintf("The resource '%s' already exists", path)}
}

func errInvalid(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "invalid", fmt.Sprintf(format, args...)}
}

func errInvalidField(field, value, why string) *apiError {
	return errInvalid("Invalid value for field '%s': '%s'. %s", field, value, why)
}

func errInUse(path, user string) *apiError {
	return &apiError{http.StatusBadRequest, "resourceInUseByAnotherResource",
		fmt.Sprintf("The %s resource '%s' is already being used by '%s'", resourceKind(path), path, user)}
}

func errConditionNotMet(what string) *apiError {
	return &apiError{http.StatusPreconditionFailed, "conditionNotMet",
		fmt.Sprintf("Invalid fingerprint. The fingerprint of the %s has changed; get the resource again and retry.", what)}
}

// operationErrorCode maps a legacy reason to the UPPER_SNAKE code that
// operations report in error.errors[].code.
func operationErrorCode(e *apiError) string {
	switch e.reason {
	case "notFound":
		return "RESOURCE_NOT_FOUND"
	case "alreadyExists":
		return "RESOURCE_ALREADY_EXISTS"
	case "invalid":
		return "INVALID_FIELD_VALUE"
	case "resourceInUseByAnotherResource":
		return "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
	case "conditionNotMet":
		return "CONDITION_NOT_MET"
	case "quotaExceeded":
		return "QUOTA_EXCEEDED"
	case "backendError":
		return "SERVICE_UNAVAILABLE"
	case "internalError":
		return "INTERNAL_ERROR"
	}
	if e.code >= 500 {
		return "INTERNAL_ERROR"
	}
	return strings.ToUpper(e.reason)
}

func domainFor(reason string) string {
	switch reason {
	case "rateLimitExceeded", "quotaExceeded":
		return "usageLimits"
	}
	return "global"
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	body := map[string]any{
		"error": map[string]any{
			"code":    e.code,
			"message": e.message,
			"errors": []map[string]any{{
				"message": e.message,
				"domain":  domainFor(e.reason),
				"reason":  e.reason,
			}},
		},
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.code)
	_ = json.NewEncoder(w).Encode(body)
}

// ---- JSON ----

var (
	marshalOpts   = protojson.MarshalOptions{}
	unmarshalOpts = protojson.UnmarshalOptions{}
)

func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := marshalOpts.Marshal(m)
	if err != nil {
		writeAPIError(w, &apiError{500, "internalError", err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_, _ = w.Write(b)
}

// readBody decodes a request body strictly, as GCE rejects unknown fields,
// and returns the raw JSON too (patch needs to know which fields were sent).
func readBody(r *http.Request, m proto.Message) ([]byte, *apiError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, errInvalid("Required field 'resource' not specified")
	}
	if err := unmarshalOpts.Unmarshal(b, m); err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	return b, nil
}

// ---- routing and the per-call pipeline ----

type handlerFunc func(r *http.Request) (proto.Message, *apiError)

// route registers one API method. write marks mutating methods (quota class
// "write"); everything else counts as "read".
func (s *Server) route(mux *http.ServeMux, pattern, method string, write bool, h handlerFunc) {
	class := "read"
	if write {
		class = "write"
	}
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.serveAPI(w, r, method, class, h)
	})
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, method, class string, h handlerFunc) {
	f := s.faults.snapshot()
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	s.stats.call(method)
	if s.opts.Project != "" && r.PathValue("project") != s.opts.Project {
		s.stats.fail(method)
		writeAPIError(w, errNotFound("projects/"+r.PathValue("project")))
		return
	}
	if e := s.authorize(r, method); e != nil {
		s.stats.forbidden(method)
		writeAPIError(w, e)
		return
	}
	if e := s.faults.admit(method, class); e != nil {
		s.stats.rateLimited(method)
		writeAPIError(w, e)
		return
	}
	if e := s.admitOperation(r, class, f.MaxConcurrentOperations); e != nil {
		s.stats.rateLimited(method)
		writeAPIError(w, e)
		return
	}
	if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
		s.stats.fail(method)
		if rand.IntN(2) == 0 {
			writeAPIError(w, &apiError{http.StatusInternalServerError, "internalError", "Internal error. Please try again or contact Google Support."})
		} else {
			writeAPIError(w, &apiError{http.StatusServiceUnavailable, "backendError", "The service is currently unavailable."})
		}
		return
	}
	resp, e := h(withMethod(r, method))
	if e != nil {
		s.stats.fail(method)
		s.logf("computesim: %s %s: %v", r.Method, r.URL.Path, e)
		writeAPIError(w, e)
		return
	}
	writeProto(w, resp)
}

type methodKey struct{}

func withMethod(r *http.Request, method string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), methodKey{}, method))
}

func methodOf(r *http.Request) string {
	m, _ := r.Context().Value(methodKey{}).(string)
	return m
}

const prefix = "/compute/v1/projects/{project}"

func (s *Server) routes(mux *http.ServeMux) {
	// Zonal network endpoint groups.
	negs := prefix + "/zones/{zone}/networkEndpointGroups"
	s.route(mux, "POST "+negs, "networkEndpointGroups.insert", true, s.negInsert)
	s.route(mux, "GET "+negs, "networkEndpointGroups.list", false, s.negList)
	s.route(mux, "GET "+negs+"/{neg}", "networkEndpointGroups.get", false, s.negGet)
	s.route(mux, "DELETE "+negs+"/{neg}", "networkEndpointGroups.delete", true, s.negDelete)
	s.route(mux, "POST "+negs+"/{neg}/attachNetworkEndpoints", "networkEndpointGroups.attachNetworkEndpoints", true, s.negAttach)
	s.route(mux, "POST "+negs+"/{neg}/detachNetworkEndpoints", "networkEndpointGroups.detachNetworkEndpoints", true, s.negDetach)
	s.route(mux, "POST "+negs+"/{neg}/listNetworkEndpoints", "networkEndpointGroups.listNetworkEndpoints", false, s.negListEndpoints)
	s.route(mux, "GET "+prefix+"/aggregated/networkEndpointGroups", "networkEndpointGroups.aggregatedList", false, s.negAggregatedList)

	// Instances.
	inst := prefix + "/zones/{zone}/instances"
	s.route(mux, "POST "+inst, "instances.insert", true, s.instanceInsert)
	s.route(mux, "GET "+inst, "instances.list", false, s.instanceList)
	s.route(mux, "GET "+inst+"/{instance}", "instances.get", false, s.instanceGet)
	s.route(mux, "DELETE "+inst+"/{instance}", "instances.delete", true, s.instanceDelete)

	// Operations.
	s.route(mux, "GET "+prefix+"/zones/{zone}/operations/{op}", "zoneOperations.get", false, s.opGet)
	s.route(mux, "POST "+prefix+"/zones/{zone}/operations/{op}/wait", "zoneOperations.wait", false, s.opWait)
	s.route(mux, "GET "+prefix+"/regions/{region}/operations/{op}", "regionOperations.get", false, s.opGet)
	s.route(mux, "POST "+prefix+"/regions/{region}/operations/{op}/wait", "regionOperations.wait", false, s.opWait)
	s.route(mux, "GET "+prefix+"/global/operations/{op}", "globalOperations.get", false, s.opGet)
	s.route(mux, "POST "+prefix+"/global/operations/{op}/wait", "globalOperations.wait", false, s.opWait)

	// Health checks, global and regional.
	for _, scope := range []struct{ path, coll string }{
		{prefix + "/global/healthChecks", "healthChecks"},
		{prefix + "/regions/{region}/healthChecks", "regionHealthChecks"},
	} {
		p, c := scope.path, scope.coll
		s.route(mux, "POST "+p, c+".insert", true, s.hcInsert)
		s.route(mux, "GET "+p, c+".list", false, s.hcList)
		s.route(mux, "GET "+p+"/{hc}", c+".get", false, s.hcGet)
		s.route(mux, "DELETE "+p+"/{hc}", c+".delete", true, s.hcDelete)
		s.route(mux, "PATCH "+p+"/{hc}", c+".patch", true, s.hcPatch)
		s.route(mux, "PUT "+p+"/{hc}", c+".update", true, s.hcUpdate)
	}

	// Backend services, global and regional.
	for _, scope := range []struct{ path, coll string }{
		{prefix + "/global/backendServices", "backendServices"},
		{prefix + "/regions/{region}/backendServices", "regionBackendServices"},
	} {
		p, c := scope.path, scope.coll
		s.route(mux, "POST "+p, c+".insert", true, s.bsInsert)
		s.route(mux, "GET "+p, c+".list", false, s.bsList)
		s.route(mux, "GET "+p+"/{bs}", c+".get", false, s.bsGet)
		s.route(mux, "DELETE "+p+"/{bs}", c+".delete", true, s.bsDelete)
		s.route(mux, "PATCH "+p+"/{bs}", c+".patch", true, s.bsPatch)
		s.route(mux, "PUT "+p+"/{bs}", c+".update", true, s.bsUpdate)
		s.route(mux, "POST "+p+"/{bs}/getHealth", c+".getHealth", false, s.bsGetHealth)
	}

	// Data path: target SSL proxies (global), target TCP proxies, URL
	// maps, SSL certificates, target HTTP(S) proxies, addresses and
	// forwarding rules (global and regional).
	sps := prefix + "/global/targetSslProxies"
	s.route(mux, "POST "+sps, "targetSslProxies.insert", true, s.tpInsert(true))
	s.route(mux, "GET "+sps, "targetSslProxies.list", false, s.tpList(true))
	s.route(mux, "GET "+sps+"/{tp}", "targetSslProxies.get", false, s.tpGet(true))
	s.route(mux, "DELETE "+sps+"/{tp}", "targetSslProxies.delete", true, s.tpDelete(true))
	s.route(mux, "POST "+sps+"/{tp}/setSslCertificates", "targetSslProxies.setSslCertificates", true, s.tpSetCertificates)
	for _, scope := range []struct{ path, prefix string }{
		{prefix + "/global/", ""},
		{prefix + "/regions/{region}/", "region"},
	} {
		p := scope.path
		// coll names a collection as GCE's method names do: urlMaps or
		// regionUrlMaps, targetHttpProxies or regionTargetHttpProxies...
		coll := func(c string) string {
			if scope.prefix == "" {
				return c
			}
			return scope.prefix + strings.ToUpper(c[:1]) + c[1:]
		}
		ums, c := p+"urlMaps", coll("urlMaps")
		s.route(mux, "POST "+ums, c+".insert", true, s.umInsert)
		s.route(mux, "GET "+ums, c+".list", false, s.umList)
		s.route(mux, "GET "+ums+"/{um}", c+".get", false, s.umGet)
		s.route(mux, "DELETE "+ums+"/{um}", c+".delete", true, s.umDelete)
		s.route(mux, "PATCH "+ums+"/{um}", c+".patch", true, s.umPatch)
		s.route(mux, "PUT "+ums+"/{um}", c+".update", true, s.umUpdate)
		s.route(mux, "POST "+ums+"/{um}/validate", c+".validate", false, s.umValidate)

		tps, c := p+"targetTcpProxies", coll("targetTcpProxies")
		s.route(mux, "POST "+tps, c+".insert", true, s.tpInsert(false))
		s.route(mux, "GET "+tps, c+".list", false, s.tpList(false))
		s.route(mux, "GET "+tps+"/{tp}", c+".get", false, s.tpGet(false))
		s.route(mux, "DELETE "+tps+"/{tp}", c+".delete", true, s.tpDelete(false))

		certs, c := p+"sslCertificates", coll("sslCertificates")
		s.route(mux, "POST "+certs, c+".insert", true, s.certInsert)
		s.route(mux, "GET "+certs, c+".list", false, s.certList)
		s.route(mux, "GET "+certs+"/{cert}", c+".get", false, s.certGet)
		s.route(mux, "DELETE "+certs+"/{cert}", c+".delete", true, s.certDelete)

		for _, https := range []bool{false, true} {
			px, c := p+proxyCollection(https), coll(proxyCollection(https))
			s.route(mux, "POST "+px, c+".insert", true, s.proxyInsert(https))
			s.route(mux, "GET "+px, c+".list", false, s.proxyList(https))
			s.route(mux, "GET "+px+"/{tp}", c+".get", false, s.proxyGet(https))
			s.route(mux, "DELETE "+px+"/{tp}", c+".delete", true, s.proxyDelete(https))
			// The global set* methods live outside /global/, as on GCE.
			set := px
			if scope.prefix == "" {
				set = prefix + "/" + proxyCollection(https)
			}
			s.route(mux, "POST "+set+"/{tp}/setUrlMap", c+".setUrlMap", true, s.proxySetURLMap(https))
			if https {
				s.route(mux, "POST "+set+"/{tp}/setSslCertificates", c+".setSslCertificates", true, s.proxySetCertificates)
			}
		}

		addrs, c := p+"addresses", "addresses"
		frs := p + "forwardingRules"
		fc := "forwardingRules"
		if scope.prefix == "" {
			c, fc = "globalAddresses", "globalForwardingRules"
		}
		s.route(mux, "POST "+addrs, c+".insert", true, s.addressInsert)
		s.route(mux, "GET "+addrs, c+".list", false, s.addressList)
		s.route(mux, "GET "+addrs+"/{addr}", c+".get", false, s.addressGet)
		s.route(mux, "DELETE "+addrs+"/{addr}", c+".delete", true, s.addressDelete)
		s.route(mux, "POST "+frs, fc+".insert", true, s.frInsert)
		s.route(mux, "GET "+frs, fc+".list", false, s.frList)
		s.route(mux, "GET "+frs+"/{fr}", fc+".get", false, s.frGet)
		s.route(mux, "DELETE "+frs+"/{fr}", fc+".delete", true, s.frDelete)
	}

	// Emulator-only endpoints.
	mux.HandleFunc("GET /_sim/stats", s.serveStats)
	mux.HandleFunc("POST /_sim/stats/reset", func(w http.ResponseWriter, r *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Faults())
	})
	mux.HandleFunc("POST /_sim/faults", s.serveSetFaults)
	mux.HandleFunc("GET /_sim/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Health(r.URL.Query().Get("backendService")))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, &apiError{http.StatusNotFound, "notFound",
			fmt.Sprintf("The requested URL %s %s was not found on this server (not emulated).", r.Method, r.URL.Path)})
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) serveSetFaults(w http.ResponseWriter, r *http.Request) {
	f := s.Faults()
	if err := json.NewDecoder(r.Body).Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.SetFaults(f)
	writeJSON(w, s.Faults())
}
