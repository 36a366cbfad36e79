// Package computesim emulates the parts of the Compute Engine v1 REST API
// that podlb uses: zonal network endpoint groups (GCE_VM_IP_PORT), zonal,
// regional and global operations, global and regional health checks,
// backend services, URL maps, SSL certificates, target HTTP and HTTPS
// proxies, addresses and forwarding rules, global and regional target TCP
// proxies, global target SSL proxies, and enough of instances to validate
// endpoints.
//
// The unmodified cloud.google.com/go/compute/apiv1 REST clients talk to it
// over plain HTTP, in process like httptest or standalone (cmd/cloudsim):
//
//	srv, _ := computesim.Start(computesim.Options{})
//	defer srv.Close()
//	c, _ := compute.NewNetworkEndpointGroupsRESTClient(ctx,
//		option.WithEndpoint(srv.URL()), option.WithoutAuthentication())
//
// It is not a mock: backend services health-check the real endpoints over
// TCP or HTTP, and every forwarding rule listens on its own loopback port and
// proxies TCP connections (target TCP proxies; target SSL proxies after
// terminating TLS) or HTTP/1.1 requests routed by a URL map (target
// HTTP(S) proxies) to HEALTHY endpoints, draining detached ones.
//
// # Wire conventions
//
//   - Requests and answers are Compute v1 JSON (protojson of computepb, so
//     int64/uint64 fields such as id travel as strings). Request bodies are
//     decoded strictly: unknown fields answer 400 invalid, as on GCE.
//   - selfLinks and every URL the emulator emits use GCE's canonical prefix
//     https://www.googleapis.com/compute/v1/ (never the emulator's own
//     address), so link comparisons behave as against the cloud. References
//     it receives may be canonical URLs, URLs with any other prefix (the
//     emulator's own included), "projects/..." paths, "global/..." or
//     "zones/..." paths, or bare names. ResourcePath reduces any of them to
//     "projects/p/zones/z/networkEndpointGroups/n" for comparisons.
//   - Errors are {"error":{"code","message","errors":[{message,domain,
//     reason}]}} and surface as *apierror.APIError; the legacy reason
//     (notFound, alreadyExists, invalid, resourceInUseByAnotherResource,
//     conditionNotMet, rateLimitExceeded, quotaExceeded, backendError) is in
//     the wrapped *googleapi.Error's Errors[0].Reason.
//   - Mutations answer an Operation (zonal for NEGs and instances, regional
//     for regional resources, global otherwise) and take effect when
//     it completes, Options.OperationDelay after the call; with 0 they take
//     effect within the call and the Operation is already DONE. A failed
//     operation has status DONE, httpErrorStatusCode, httpErrorMessage (like
//     "BAD REQUEST") and error.errors[{code, message}] with GCE-style codes
//     (RESOURCE_ALREADY_EXISTS, RESOURCE_NOT_FOUND, ...), which op.Wait turns
//     into an *apierror.APIError with that HTTP code. The .../wait methods
//     are served too.
//
// # Choices where GCE's behaviour is not documented
//
//   - Synchronous (HTTP error) versus operation error: request validation —
//     malformed body, bad names, missing referenced resources (404), more
//     than 500 endpoints per attach/detach (400 invalid), unknown or
//     wrong-zone instance (400 invalid), endpoint IP outside 127.0.0.0/8 or,
//     for a VM given alias ranges (SetAliasRanges), neither its primary IP
//     nor in them (400 invalid with GCE's "doesn't belong to the
//     (sub)network" wording),
//     resources in use (400 resourceInUseByAnotherResource), stale
//     fingerprints (412 conditionNotMet), an existing name (409
//     alreadyExists) — answers at once. Conflicts that depend on the state
//     when the operation runs fail the operation.
//   - Attaching an endpoint (ip:port) that is already in the NEG fails the
//     whole operation with 400 RESOURCE_ALREADY_EXISTS and attaches nothing;
//     detaching an endpoint that is not in the NEG (or names another
//     instance) fails the whole operation with 400 RESOURCE_NOT_FOUND and
//     detaches nothing. Controllers must therefore track in-flight
//     operations and re-list after a failure, as the GKE NEG controller does.
//   - An endpoint without port takes the NEG's defaultPort; without
//     ipAddress it takes the VM's primary IP. Endpoint identity is ip:port.
//   - Deleting a VM (RemoveInstance, instances.delete) removes its endpoints
//     from every NEG, as GCE does.
//   - Backend service patch/update without the current fingerprint (stale
//     or missing) answer 412 conditionNotMet, as the BackendService
//     reference documents. The fingerprint changes on every mutation.
//   - A backend service with NEG backends needs exactly one health check
//     (of its scope, when named without a path); the default balancing
//     mode is UTILIZATION, which NEG backends reject; HTTP, HTTPS and HTTP2
//     services reject CONNECTION, TCP and SSL ones RATE. The scheme (default
//     EXTERNAL globally, INTERNAL_MANAGED in a region) is one of EXTERNAL,
//     EXTERNAL_MANAGED, INTERNAL (not for HTTP-family protocols),
//     INTERNAL_MANAGED and INTERNAL_SELF_MANAGED.
//   - getHealth for a group that is not a backend of the service answers 400
//     invalid. It answers the documented states only, HEALTHY and
//     UNHEALTHY: endpoints not judged yet (UNKNOWN) and detached ones
//     draining their connections (DRAINING) are absent from it; Health
//     shows them.
//   - listNetworkEndpoints reads healthStatus both from the documented body
//     and from the whole-request body the apiv1 client sends; with SHOW each
//     endpoint lists one health per backend service using its NEG.
//   - URL maps: patch and update need the current fingerprint; a missing or
//     stale one answers 412 conditionNotMet (GCE documents that an
//     up-to-date fingerprint must be provided). A URL map may have neither
//     defaultService nor defaultUrlRedirect: requests no host rule matches
//     then get 404. Path matchers need exactly one of defaultService and
//     defaultUrlRedirect, path rules one of service and urlRedirect. Route
//     rules, route actions, header actions, custom error policies and
//     prefixRedirect answer 400 (not emulated) instead of being ignored.
//     All services of a URL map must be HTTP-family backend services of its
//     scope with one load balancing scheme. A host may appear in one host
//     rule only. Tests run on insert, update and patch (a failing test
//     answers 400 invalid) and in validate, which loads the given resource
//     whether or not the URL map in the path exists.
//   - SSL certificates are SELF_MANAGED only (MANAGED answers 400); the
//     chain and key must parse and match (400 invalid). Reads never return
//     the private key. IssueCertificate and CertificatePEM make
//     certificates signed by a per-emulator CA that RootCAs trusts.
//   - Target TCP proxies take a TCP or SSL backend service of their own
//     scope (a regional proxy one of its region, else 400 invalid). Target
//     SSL proxies are global, take the same services and need 1 to 15
//     global certificates (setSslCertificates replaces them); SSL policies
//     and certificate maps answer 400 (not emulated).
//   - Target HTTPS proxies need 1 to 15 certificates of their scope;
//     unknown certificates and URL maps answer 404 notFound, ones of the
//     other scope 400 invalid. Certificate maps, SSL policies and TLS or
//     authorization policies answer 400 (not emulated).
//   - Addresses (addresses and globalAddresses) each get their own IPv4 in
//     Options.AddressRange (default 127.254.0.0/16), or the loopback
//     address asked for; others answer 400. Status is IN_USE with users
//     while a forwarding rule uses the address, RESERVED otherwise.
//     Deleting an address in use answers 400 resourceInUseByAnotherResource.
//   - Forwarding rules take IPAddress as a literal, an address URL or path,
//     or a bare address name of their scope. A rule on an IP that another
//     rule uses on an overlapping port answers 400 invalid "Specified IP
//     address is in-use and would result in a conflict"; other ports of the
//     same address are fine (80 and 443 of one address, as usual). A rule's
//     scheme must equal that of every backend service its target reaches
//     (400 invalid). Rules to HTTP(S) proxies take one port, by default 80
//     (HTTP) or 443 (HTTPS). The rule listens on its address's IP at its
//     port when that port is free, else (for reserved addresses) at a free
//     port of that IP; an ephemeral rule gets an IP of its own from
//     Options.AddressRange (as GCE gives each rule a distinct ephemeral
//     IP), listened on the same way. ForwardingRuleAddr and
//     ForwardingRuleURL tell where to connect.
//   - aggregatedList only lists zones that have NEGs (GCE also lists empty
//     zones with a warning).
//   - Quotas: Options.RateLimits counts calls per fixed window per method
//     name ("networkEndpointGroups.attachNetworkEndpoints"), per class
//     ("read": gets, lists, getHealth, listNetworkEndpoints and operation
//     polls; "write": mutations) and overall ("*"). Rejected calls do not
//     use quota. With Options.SynchronizedWindows the windows start on
//     multiples of RateWindow of the clock, as GCE's per-minute quotas
//     refill at the start of each minute. Options.MaxConcurrentOperations
//     caps operations in flight: further mutations answer 403
//     rateLimitExceeded until some finish, as GCE's concurrent operation
//     limits do. Options.RateLimitRate (SetRateLimitRate) answers a random
//     fraction of all calls the same way, for quota spent by other tools.
//     The NEG endpoint quota (10,000, Options.MaxEndpointsPerNEG) answers
//     403 quotaExceeded, synchronously when the request alone cannot fit
//     and in the operation when others filled the NEG meanwhile.
//   - IAM: Options.Permissions (SetPermissions) holds a caller, known by
//     its Bearer token (AuthTransport), to a list of permissions. Each
//     call needs its method's permission (insert is create, patch is
//     update, getHealth, listNetworkEndpoints and operation waits are get)
//     and use of every resource its body names (useReadOnly for health
//     checks, get for SSL certificates, use of the VM of each attached
//     endpoint and of a reserved address named by its IP); a missing one
//     answers 403 forbidden "Required 'compute.X' permission for
//     'projects/...'" before anything else (permissions.go).
//
// # Health checking and the data path
//
// Each endpoint of each NEG that is a backend of a backend service is one
// health target with GCE's state machine: UNKNOWN when attached, HEALTHY
// after healthyThreshold consecutive passes, UNHEALTHY after
// unhealthyThreshold consecutive failures, checked for as long as it is
// attached; DRAINING after detach (or removal of its backend) while the
// service's connection draining lasts. TCP checks connect (and match
// request/response when set); HTTP checks GET requestPath and want 200.
// Probes run from one scheduler goroutine and a bounded worker pool, with
// jitter, so thousands of endpoints cost a handful of goroutines. Only
// addresses in 127.0.0.0/8 are ever contacted.
//
// A forwarding rule to a target TCP proxy accepts connections and splices
// each to a HEALTHY endpoint of the proxy's backend service, round-robin
// across all its NEG backends whose capacityScaler is not 0, trying up to
// three endpoints. With none healthy the client connection is closed (GCE
// proxies fail the connection; there is no fail-open). A rule to a target
// SSL proxy does the same after a TLS 1.2+ handshake, presenting its
// certificates as HTTPS rules do (below). PROXY_V1 headers are
// sent when the proxy asks for them. Connections to a detached endpoint are
// kept for the draining timeout and then closed; without draining they are
// closed at once.
//
// A forwarding rule to a target HTTP or HTTPS proxy serves HTTP/1.1 (TLS
// 1.2+ for HTTPS, presenting the first of the proxy's certificates valid for
// the SNI name, else its first certificate). Each request is routed by the
// proxy's URL map: the host rule of the Host header's exact host, else of
// the longest matching "*.suffix" wildcard (which needs at least one more
// label), else of "*", picks a path matcher; without one the URL map's
// default applies. In the matcher the longest matching path rule wins:
// "/x" matches only "/x", "/x/*" matches "/x/" and everything below but not
// "/x"; an exact path wins a tie with a prefix of the same length; the
// query string is ignored; no rule means the matcher's default. Redirects
// answer with their code (301 by default). The request then goes to a
// HEALTHY endpoint of the chosen service, round-robin as for TCP, with
// X-Forwarded-For, X-Forwarded-Proto and Via: 1.1 google; the service's
// timeoutSec bounds it. With no HEALTHY endpoint the answer is 503 "no
// healthy upstream"; when the endpoints tried all refuse connections, 502.
// Backends of HTTPS services are reached over TLS without verification, as
// GCE does; HTTP2 services are reached over HTTP/1.1. A request in flight
// to a detached endpoint may finish while the service drains connections;
// when draining ends (or at once without draining) it is cut off and the
// client's connection closed. ConnRecord covers TCP and SSL proxies only.
//
// Programming takes time both ways: a new endpoint is neither probed nor
// served before Options.ProgrammingDelay, and with
// Options.DetachProgrammingDelay a detached endpoint that was HEALTHY
// keeps getting new connections and requests for that long before it
// drains, as load balancers that learn of a detach late do.
//
// Time scales: HealthCheckInterval, HealthCheckTimeout and DrainingTimeout
// override the configured seconds for the emulator's clocks while the API
// keeps reporting the configured values, so tests run at millisecond scale.
//
// # Not emulated
//
// Backend buckets, advanced routing (route rules and actions, header
// actions, weighted services), managed certificates, certificate maps, SSL
// policies, HTTP/2 and QUIC on the front end, setBackendService and
// setProxyHeader of target TCP and SSL proxies, forwarding rules to backend services (passthrough) or other targets, NEG
// types other than GCE_VM_IP_PORT, health check types other than TCP and
// HTTP, the RATE capacity limits (maxRatePerEndpoint is validated but not
// enforced), IAM conditions and deny policies, and labels.
package computesim
