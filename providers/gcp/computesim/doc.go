// Package computesim emulates the parts of the Compute Engine v1 REST API
// that podlb uses: zonal network endpoint groups (GCE_VM_IP_PORT), zonal,
// regional and global operations, health checks, global and regional backend
// services, target TCP proxies, global forwarding rules, and enough of
// instances to validate endpoints.
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
// proxies TCP connections to HEALTHY endpoints, draining detached ones.
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
//     for regional backend services, global otherwise) and take effect when
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
//   - Backend service patch/update with a fingerprint that is not current
//     answer 412 conditionNotMet; without a fingerprint they are accepted
//     (last writer wins). The fingerprint changes on every mutation.
//   - A backend service with NEG backends needs exactly one health check;
//     the default balancing mode is UTILIZATION, which NEG backends reject.
//   - getHealth for a group that is not a backend of the service answers 400
//     invalid. Detached endpoints appear as DRAINING while their connections
//     drain, then disappear.
//   - listNetworkEndpoints reads healthStatus both from the documented body
//     and from the whole-request body the apiv1 client sends; with SHOW each
//     endpoint lists one health per backend service using its NEG.
//   - aggregatedList only lists zones that have NEGs (GCE also lists empty
//     zones with a warning).
//   - Quotas: Options.RateLimits counts calls per fixed window per method
//     name ("networkEndpointGroups.attachNetworkEndpoints"), per class
//     ("read": gets, lists, getHealth, listNetworkEndpoints and operation
//     polls; "write": mutations) and overall ("*"). Rejected calls do not
//     use quota. Options.RateLimitRate (SetRateLimitRate) answers a random
//     fraction of all calls the same way, for quota spent by other tools.
//     The NEG endpoint quota (10,000, Options.MaxEndpointsPerNEG) answers
//     403 quotaExceeded, synchronously when the request alone cannot fit
//     and in the operation when others filled the NEG meanwhile.
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
// proxies fail the connection; there is no fail-open). PROXY_V1 headers are
// sent when the proxy asks for them. Connections to a detached endpoint are
// kept for the draining timeout and then closed; without draining they are
// closed at once.
//
// Time scales: HealthCheckInterval, HealthCheckTimeout and DrainingTimeout
// override the configured seconds for the emulator's clocks while the API
// keeps reporting the configured values, so tests run at millisecond scale.
//
// # Not emulated
//
// URL maps and target HTTP(S) proxies (HTTP backend services are health
// checked but have no data path), regional forwarding rules, NEG types other
// than GCE_VM_IP_PORT, health check types other than TCP and HTTP, IAM, and
// labels.
package computesim
