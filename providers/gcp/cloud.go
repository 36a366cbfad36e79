package gcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/podlb/podlb/providers"
)

// Operation names, as the Compute API's method ids, for limits and metrics.
const (
	opNEGInsert     = "networkEndpointGroups.insert"
	opNEGGet        = "networkEndpointGroups.get"
	opNEGDelete     = "networkEndpointGroups.delete"
	opNEGAggregated = "networkEndpointGroups.aggregatedList"
	opNEGAttach     = "networkEndpointGroups.attachNetworkEndpoints"
	opNEGDetach     = "networkEndpointGroups.detachNetworkEndpoints"
	opNEGList       = "networkEndpointGroups.listNetworkEndpoints"
	opBSGet         = "backendServices.get"
	opBSPatch       = "backendServices.patch"
	opBSGetHealth   = "backendServices.getHealth"
	opRBSGet        = "regionBackendServices.get"
	opBSList        = "backendServices.list"
	opRBSList       = "regionBackendServices.list"
	opRBSPatch      = "regionBackendServices.patch"
	opRBSGetHealth  = "regionBackendServices.getHealth"
	// opOperationsWait is zoneOperations.wait and its regional and global
	// kin: one call returns when the operation is done (or after about
	// two minutes), where polling get cost a call per poll.
	opOperationsWait = "operations.wait"
)

// DefaultLimits keep podlb well inside Compute's per-project quotas (which
// are counted per minute or per 100 s and shared with every other tool in
// the project): endpoint changes and health reads get their own buckets,
// the look-ups and writes of setting up NEGs theirs (a cold start creates
// a NEG per zone and binding), anything else shares a slow one.
func DefaultLimits() map[string]providers.Limit {
	limits := map[string]providers.Limit{
		// Attach and detach draw from one bucket (see New): a scale-up
		// only attaches and may then use the whole share.
		opNEGAttach:      {QPS: 4, Burst: 20},
		opBSGetHealth:    {QPS: 5, Burst: 20},
		opRBSGetHealth:   {QPS: 5, Burst: 20},
		opNEGList:        {QPS: 5, Burst: 20},
		opNEGAggregated:  {QPS: 5, Burst: 20},
		opOperationsWait: {QPS: 5, Burst: 20},
		opNEGGet:         {QPS: 5, Burst: 20},
		opBSGet:          {QPS: 5, Burst: 20},
		opRBSGet:         {QPS: 5, Burst: 20},
		opBSList:         {QPS: 5, Burst: 20},
		opRBSList:        {QPS: 5, Burst: 20},
		opNEGInsert:      {QPS: 2, Burst: 10},
		opBSPatch:        {QPS: 1, Burst: 5},
		opRBSPatch:       {QPS: 1, Burst: 5},
		"*":              {QPS: 1, Burst: 5},
	}
	// The load balancers podlb provisions. Reads (gets, and the lists
	// that find a load balancer's backend services and health checks)
	// count against Compute's per-project "Read requests per minute"
	// quota: every EnsureHTTP reads each of its resources, so they get
	// the pace of the NEG look-ups. Writes count against "Write requests
	// per minute" and each starts an operation (the per-project
	// operations quota): a new load balancer inserts a health check and a
	// backend service per backend and half a dozen more, an edit one URL
	// map update, so a small burst and a slow pace leave room for the NEG
	// writes.
	for collections, verbs := range lbMethods {
		for _, c := range collections {
			for _, verb := range verbs {
				l := providers.Limit{QPS: 1, Burst: 10}
				if verb == "get" || verb == "list" {
					l = providers.Limit{QPS: 5, Burst: 20}
				}
				limits[c+"."+verb] = l
			}
		}
	}
	return limits
}

// effectiveLimits lays own over DefaultLimits. podlb waits on the
// operation of every attach and detach, so unless own sets the
// operations bucket it is kept at least as large as the endpoint writes'
// (both directions when detach has a bucket of its own): raised alone,
// the write share would be paced by the waits at their default instead.
func effectiveLimits(own map[string]providers.Limit) map[string]providers.Limit {
	limits := DefaultLimits()
	maps.Copy(limits, own)
	if _, set := own[opOperationsWait]; set {
		return limits
	}
	writes := limits[opNEGAttach]
	if detach, split := own[opNEGDetach]; split {
		writes = providers.Limit{QPS: writes.QPS + detach.QPS, Burst: writes.Burst + detach.Burst}
	}
	wait := limits[opOperationsWait]
	limits[opOperationsWait] = providers.Limit{QPS: max(wait.QPS, writes.QPS), Burst: max(wait.Burst, writes.Burst)}
	return limits
}

// lbMethods are the Compute methods the load balancers podlb provisions
// use, global and regional collection, by method id.
var lbMethods = map[[2]string][]string{
	{"healthChecks", "regionHealthChecks"}:             {"get", "list", "insert", "update", "delete"},
	{"backendServices", "regionBackendServices"}:       {"list", "insert", "delete"},
	{"urlMaps", "regionUrlMaps"}:                       {"get", "insert", "update", "delete"},
	{"targetHttpProxies", "regionTargetHttpProxies"}:   {"get", "insert", "delete", "setUrlMap"},
	{"targetHttpsProxies", "regionTargetHttpsProxies"}: {"get", "insert", "delete", "setUrlMap", "setSslCertificates"},
	{"targetTcpProxies", "regionTargetTcpProxies"}:     {"get", "list", "insert", "delete"},
	// Target SSL proxies are global; the regional name is never called.
	{"targetSslProxies", "regionTargetSslProxies"}: {"get", "list", "insert", "delete", "setSslCertificates"},
	{"globalForwardingRules", "forwardingRules"}:   {"get", "list", "insert", "delete"},
	{"globalAddresses", "addresses"}:               {"get"},
}

// classify maps Compute errors to podlb's classes. The legacy reason sits
// in the wrapped *googleapi.Error; operation failures carry only a code.
func classify(op string, err error) error {
	code, reason := errorCode(err)
	if code != 0 {
		err = &providers.CloudError{Op: op, Code: reason, Message: errorMessage(err), Err: err}
	}
	switch {
	case code == 0:
		return providers.Classify(providers.Transient, "", err)
	case code == http.StatusTooManyRequests || reason == "rateLimitExceeded" || reason == "userRateLimitExceeded":
		// The Compute client does not retry these; the core backs off.
		return providers.Classify(providers.Throttled, "", err)
	case code == http.StatusNotFound:
		return providers.Classify(providers.NotFound, "", err)
	case code == http.StatusPreconditionFailed, code == http.StatusConflict, code >= 500:
		// 412: a fingerprint went stale, re-read and retry. 409: callers
		// that create resources check for it before this matters.
		return providers.Classify(providers.Transient, "", err)
	case code == http.StatusBadRequest, code == http.StatusForbidden, code == http.StatusUnauthorized:
		// invalid, resourceInUseByAnotherResource, quotaExceeded,
		// forbidden: retrying unchanged cannot help.
		return providers.Classify(providers.Invalid, "", err)
	}
	return providers.Classify(providers.Transient, "", err)
}

// errorMessage is the server's message without the client's decorations.
func errorMessage(err error) string {
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Message != "" {
		return ge.Message
	}
	return err.Error()
}

// errorCode extracts the HTTP status and the legacy reason of a Compute
// error (0, "" for anything else).
func errorCode(err error) (int, string) {
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code < 0 {
		return 0, ""
	}
	if len(ge.Errors) > 0 {
		return ge.Code, ge.Errors[0].Reason
	}
	return ge.Code, ""
}

func isCode(err error, code int) bool {
	c, _ := errorCode(err)
	return c == code
}

// clients are the Compute services the provider uses: NEGs and backend
// services for bindings, and the global and regional pieces of the
// Application Load Balancers it provisions. They are the JSON client of
// the Compute API: its types are plain structs, where the protobuf types
// of the gRPC-style client build the descriptors of the whole API (about
// 10 MB of live heap) on first use.
type clients struct {
	negs *compute.NetworkEndpointGroupsService
	bs   *compute.BackendServicesService
	rbs  *compute.RegionBackendServicesService

	hcs   *compute.HealthChecksService
	rhcs  *compute.RegionHealthChecksService
	ums   *compute.UrlMapsService
	rums  *compute.RegionUrlMapsService
	thps  *compute.TargetHttpProxiesService
	rthps *compute.RegionTargetHttpProxiesService
	tsps  *compute.TargetHttpsProxiesService
	rtsps *compute.RegionTargetHttpsProxiesService
	ttps  *compute.TargetTcpProxiesService
	rttps *compute.RegionTargetTcpProxiesService
	tslps *compute.TargetSslProxiesService
	gfrs  *compute.GlobalForwardingRulesService
	frs   *compute.ForwardingRulesService
	gaddr *compute.GlobalAddressesService
	addr  *compute.AddressesService
	zops  *compute.ZoneOperationsService
	rops  *compute.RegionOperationsService
	gops  *compute.GlobalOperationsService
}

// newClients makes the Compute services.
func newClients(ctx context.Context, co []option.ClientOption) (*clients, error) {
	s, err := compute.NewService(ctx, co...)
	if err != nil {
		return nil, err
	}
	return &clients{
		negs: s.NetworkEndpointGroups, bs: s.BackendServices, rbs: s.RegionBackendServices,
		hcs: s.HealthChecks, rhcs: s.RegionHealthChecks, ums: s.UrlMaps, rums: s.RegionUrlMaps,
		thps: s.TargetHttpProxies, rthps: s.RegionTargetHttpProxies,
		tsps: s.TargetHttpsProxies, rtsps: s.RegionTargetHttpsProxies,
		ttps: s.TargetTcpProxies, rttps: s.RegionTargetTcpProxies, tslps: s.TargetSslProxies,
		gfrs: s.GlobalForwardingRules, frs: s.ForwardingRules, gaddr: s.GlobalAddresses, addr: s.Addresses,
		zops: s.ZoneOperations, rops: s.RegionOperations, gops: s.GlobalOperations,
	}, nil
}

// newCaller paces and classifies Compute's calls and sends again those
// retryable allows besides throttled ones.
func newCaller(limits map[string]providers.Limit) *providers.Caller {
	c := providers.NewCaller("gcp", limits, limits["*"], classify)
	c.Retry(callAttempts, retryable)
	return c
}

// callAttempts is how many times in all a call that may be sent again
// (see retryable) is tried before its error goes to the core, which
// backs the whole binding off.
const callAttempts = 3

// retryable tells what Compute's calls may send again besides throttled
// ones (a 403 rateLimitExceeded or 429 did nothing, and the Compute
// client does not retry it): reads that met a server error, since they
// change nothing. A write that met one may have taken effect. Without
// retries, a reconcile of a dozen calls under partial throttling almost
// never completes, and a throttled operation wait reports a successful
// attach as failed.
func retryable(op string, err error) bool {
	if providers.ClassOf(err) != providers.Transient {
		return false
	}
	code, _ := errorCode(err)
	return code >= 500 && isRead(op)
}

// isRead tells the methods that change nothing: gets, lists, health
// reads and operation waits.
func isRead(op string) bool {
	_, verb, _ := strings.Cut(op, ".")
	return verb == "get" || verb == "getHealth" || verb == "wait" || strings.HasPrefix(verb, "list") || verb == "aggregatedList"
}

// wait awaits an operation with the operations' wait methods, each call
// through the operations bucket. An operation answered DONE costs no call.
func (p *Provider) wait(ctx context.Context, op *compute.Operation) error {
	_, err := p.waitDone(ctx, op)
	return err
}

// waitDone is wait that also returns the finished operation (nil for a
// nil op).
func (p *Provider) waitDone(ctx context.Context, op *compute.Operation) (*compute.Operation, error) {
	if op == nil {
		return nil, nil
	}
	for op.Status != "DONE" {
		var next *compute.Operation
		err := p.calls.Call(ctx, opOperationsWait, func(ctx context.Context) (err error) {
			next, err = p.c.waitOnce(ctx, p.opts.Project, op)
			return err
		})
		if err != nil {
			return op, err
		}
		op = next
	}
	if err := opError(op); err != nil {
		return op, classify(op.OperationType, err)
	}
	return op, nil
}

// waitOnce calls the wait method of the operation's scope.
func (c *clients) waitOnce(ctx context.Context, project string, op *compute.Operation) (*compute.Operation, error) {
	switch {
	case op.Zone != "":
		return c.zops.Wait(project, path.Base(op.Zone), op.Name).Context(ctx).Do()
	case op.Region != "":
		return c.rops.Wait(project, path.Base(op.Region), op.Name).Context(ctx).Do()
	default:
		return c.gops.Wait(project, op.Name).Context(ctx).Do()
	}
}

// opError reports a finished operation's failure as an API error of its
// HTTP status, with the operation's errors in the message.
func opError(op *compute.Operation) error {
	code := op.HttpErrorStatusCode
	if code == 0 || (code >= 200 && code <= 299) {
		return nil
	}
	msg := op.HttpErrorMessage
	if op.Error != nil {
		for _, e := range op.Error.Errors {
			msg += fmt.Sprintf("; %s: %s", e.Code, e.Message)
		}
	}
	return &googleapi.Error{Code: int(code), Message: msg}
}

// mutate runs one mutating call and awaits its operation.
func (p *Provider) mutate(ctx context.Context, name string, call func(ctx context.Context) (*compute.Operation, error)) error {
	var op *compute.Operation
	err := p.calls.Call(ctx, name, func(ctx context.Context) (err error) {
		op, err = call(ctx)
		return err
	})
	if err != nil {
		return err
	}
	return p.wait(ctx, op)
}

// findNEGs finds the NEGs of one name in every zone. Look-ups made at
// once share one aggregated list (see lookupNEGs).
func (p *Provider) findNEGs(ctx context.Context, name string) (map[string]*compute.NetworkEndpointGroup, error) {
	found, _, err := p.negsByName.Get(ctx, name)
	if found == nil {
		found = map[string]*compute.NetworkEndpointGroup{}
	}
	return found, err
}

// lookupNEGs lists the NEGs of names, by name and zone: one name with a
// filtered aggregated list, several with one list of every NEG, which is
// also kept for the Ensures of a start (see listedNEGs).
func (p *Provider) lookupNEGs(ctx context.Context, names []string) (map[string]map[string]*compute.NetworkEndpointGroup, error) {
	filter := ""
	if len(names) == 1 {
		filter = fmt.Sprintf("name = %q", names[0])
	}
	all := map[string]map[string]*compute.NetworkEndpointGroup{}
	start := time.Now()
	err := p.eachNEG(ctx, filter, func() { clear(all) }, func(zone string, n *compute.NetworkEndpointGroup) {
		if all[n.Name] == nil {
			all[n.Name] = map[string]*compute.NetworkEndpointGroup{}
		}
		all[n.Name][zone] = n
	})
	if err != nil {
		return nil, err
	}
	if filter == "" {
		p.keepListed(start, all)
	}
	out := make(map[string]map[string]*compute.NetworkEndpointGroup, len(names))
	for _, n := range names {
		if zones := all[n]; zones != nil {
			out[n] = zones
		}
	}
	return out, nil
}

// negList is a list of the project's NEGs by name and zone, of the names
// at least one of whose NEGs this cluster's podlb created.
type negList struct {
	at     time.Time
	byName map[string]map[string]*compute.NetworkEndpointGroup
}

// listedFor is how long a list of every NEG answers the first Ensure of
// a binding after a start. At start every binding looks for its NEGs;
// batched, each list serves only the look-ups waiting at once (one per
// worker), and lists every NEG of the project all the same. One list then
// serves the whole start. Only names found are answered from it: a name
// it lacks is looked up afresh, and a NEG made since is found by its
// insert's conflict, whose owner is checked (createNEG).
const listedFor = time.Minute

// keepListed keeps a list of every NEG begun at start, of the names this
// cluster owns a NEG of.
func (p *Provider) keepListed(start time.Time, all map[string]map[string]*compute.NetworkEndpointGroup) {
	ours := map[string]map[string]*compute.NetworkEndpointGroup{}
	for name, zones := range all {
		for _, n := range zones {
			if o, ok := ownerFrom(n.Description); ok && o.Cluster == p.opts.Cluster {
				ours[name] = maps.Clone(zones)
				break
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if start.After(p.listed.at) {
		p.listed = negList{at: start, byName: ours}
		// Whole NEGs of every binding: not kept once stale.
		time.AfterFunc(time.Until(start.Add(listedFor)), func() { p.dropListed(start) })
	}
}

// dropListed forgets the list begun at start, unless a later one took
// its place.
func (p *Provider) dropListed(start time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listed.at.Equal(start) {
		p.listed = negList{}
	}
}

// findNEGsAfterStart is findNEGs for a binding's first Ensure after a
// start: answered from a list of every NEG, made once for all bindings
// that ask at once, when that list holds the name.
func (p *Provider) findNEGsAfterStart(ctx context.Context, name string) (map[string]*compute.NetworkEndpointGroup, error) {
	found, ok, fresh := p.listedNEGs(name)
	if !fresh {
		ch := p.listing.DoChan("", func() (any, error) {
			// Detached from the first caller: the others wait on it.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			_, err := p.lookupNEGs(ctx, nil)
			return nil, err
		})
		select {
		case r := <-ch:
			if r.Err != nil {
				return nil, r.Err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		found, ok, _ = p.listedNEGs(name)
	}
	if ok {
		return found, nil
	}
	return p.findNEGs(ctx, name)
}

// listedNEGs answers a look-up of name from the last list of every NEG
// while it is fresh: found is false when the list does not hold name.
func (p *Provider) listedNEGs(name string) (zones map[string]*compute.NetworkEndpointGroup, found, fresh bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.listed.at) > listedFor {
		p.listed = negList{}
		return nil, false, false
	}
	zones, found = p.listed.byName[name]
	return maps.Clone(zones), found, true
}

// unlist drops a NEG podlb deleted from the kept list.
func (p *Provider) unlist(zone, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if zones := p.listed.byName[name]; zones != nil {
		delete(zones, zone)
		if len(zones) == 0 {
			delete(p.listed.byName, name)
		}
	}
}

// eachNEG hands every NEG of the project that matches filter ("" for all)
// to fn with its zone, through one aggregated list paced like the rest.
// A retried list starts over: reset is called before each attempt.
func (p *Provider) eachNEG(ctx context.Context, filter string, reset func(), fn func(zone string, n *compute.NetworkEndpointGroup)) error {
	return p.calls.Call(ctx, opNEGAggregated, func(ctx context.Context) error {
		reset()
		req := p.c.negs.AggregatedList(p.opts.Project)
		if filter != "" {
			req = req.Filter(filter)
		}
		return req.Pages(ctx, func(page *compute.NetworkEndpointGroupAggregatedList) error {
			for key, scoped := range page.Items {
				for _, n := range scoped.NetworkEndpointGroups {
					zone := lastSegment(n.Zone)
					if zone == "" {
						zone = strings.TrimPrefix(key, "zones/")
					}
					fn(zone, n)
				}
			}
			return nil
		})
	})
}

func (p *Provider) getNEG(ctx context.Context, zone, name string) (*compute.NetworkEndpointGroup, error) {
	var n *compute.NetworkEndpointGroup
	err := p.calls.Call(ctx, opNEGGet, func(ctx context.Context) (err error) {
		n, err = p.c.negs.Get(p.opts.Project, zone, name).Context(ctx).Do()
		return err
	})
	return n, err
}

func (p *Provider) deleteNEG(ctx context.Context, zone, name string) error {
	err := p.mutate(ctx, opNEGDelete, func(ctx context.Context) (*compute.Operation, error) {
		return p.c.negs.Delete(p.opts.Project, zone, name).Context(ctx).Do()
	})
	if err == nil || providers.ClassOf(err) == providers.NotFound {
		p.unlist(zone, name)
		return nil
	}
	return err
}

// listEndpoints returns the endpoints attached to a NEG: ip:port -> VM
// name. One call per 500 endpoints (pages are fetched in one limiter slot).
func (p *Provider) listEndpoints(ctx context.Context, zone, name string) (map[providers.TargetKey]string, error) {
	out := map[providers.TargetKey]string{}
	err := p.calls.Call(ctx, opNEGList, func(ctx context.Context) error {
		clear(out)
		req := p.c.negs.ListNetworkEndpoints(p.opts.Project, zone, name,
			&compute.NetworkEndpointGroupsListEndpointsRequest{HealthStatus: "SKIP"}).MaxResults(500)
		return req.Pages(ctx, func(page *compute.NetworkEndpointGroupsListNetworkEndpoints) error {
			for _, ep := range page.Items {
				if ep.NetworkEndpoint == nil {
					continue
				}
				if k, ok := endpointKey(ep.NetworkEndpoint.IpAddress, ep.NetworkEndpoint.Port); ok {
					out[k] = instanceName(ep.NetworkEndpoint.Instance)
				}
			}
			return nil
		})
	})
	return out, err
}

// backendService reads one backend service. Reads made at once share
// list calls (see lookupBackendServices).
func (p *Provider) backendService(ctx context.Context, ref serviceRef) (*compute.BackendService, error) {
	ref.Project = p.project(ref)
	bs, found, err := p.services.Get(ctx, ref)
	if err == nil && !found {
		err = providers.Errorf(providers.NotFound, "", "backend service %s not found", ref.path(p.opts.Project))
	}
	return bs, err
}

// lookupBackendServices reads backend services: one with a get, several
// with one list per project and region.
func (p *Provider) lookupBackendServices(ctx context.Context, refs []serviceRef) (map[serviceRef]*compute.BackendService, error) {
	return lookupScoped(ctx, refs, backendServices.name, p.getBackendService, p.listBackendServices)
}

// lookupHealthChecks reads health checks as lookupBackendServices reads
// backend services.
func (p *Provider) lookupHealthChecks(ctx context.Context, refs []serviceRef) (map[serviceRef]*compute.HealthCheck, error) {
	return lookupScoped(ctx, refs, healthChecks.name, p.getHealthCheck, p.listHealthChecks)
}

// lookupScoped reads resources of one kind by reference: one with get,
// several with one list per project and region; those not found are left
// out.
func lookupScoped[T any](ctx context.Context, refs []serviceRef, nameOf func(T) string,
	get func(context.Context, serviceRef) (T, error),
	list func(ctx context.Context, project, region string, fn func(T)) error) (map[serviceRef]T, error) {
	out := map[serviceRef]T{}
	if len(refs) == 1 {
		r, err := get(ctx, refs[0])
		if err != nil {
			if providers.ClassOf(err) == providers.NotFound {
				return out, nil
			}
			return nil, err
		}
		out[refs[0]] = r
		return out, nil
	}
	type scope struct{ project, region string }
	want := map[scope]map[string]bool{}
	for _, r := range refs {
		sc := scope{r.Project, r.Region}
		if want[sc] == nil {
			want[sc] = map[string]bool{}
		}
		want[sc][r.Name] = true
	}
	for sc, names := range want {
		err := list(ctx, sc.project, sc.region, func(r T) {
			if name := nameOf(r); names[name] {
				out[serviceRef{Project: sc.project, Region: sc.region, Name: name}] = r
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p *Provider) getBackendService(ctx context.Context, ref serviceRef) (*compute.BackendService, error) {
	return backendServices.getIn(ctx, p, ref.Project, scope{ref.Region}, ref.Name)
}

// listBackendServices hands every backend service of a project (in a
// region, or global) to fn. A retried list starts over, so fn may see a
// service twice; callers keep the last.
func (p *Provider) listBackendServices(ctx context.Context, project, region string, fn func(*compute.BackendService)) error {
	return backendServices.eachIn(ctx, p, project, scope{region}, "", func() {}, fn)
}

func (p *Provider) getHealthCheck(ctx context.Context, ref serviceRef) (*compute.HealthCheck, error) {
	return healthChecks.getIn(ctx, p, ref.Project, scope{ref.Region}, ref.Name)
}

// listHealthChecks hands every health check of a project (in a region,
// or global) to fn; a retried list starts over, as listBackendServices'.
func (p *Provider) listHealthChecks(ctx context.Context, project, region string, fn func(*compute.HealthCheck)) error {
	return healthChecks.eachIn(ctx, p, project, scope{region}, "", func() {}, fn)
}

// writeBackends stores a backend service's backend list, guarded by the
// fingerprint it was read with. Patch leaves out a field it has no value
// for, so an empty list is sent as such by name.
func (p *Provider) writeBackends(ctx context.Context, ref serviceRef, cur *compute.BackendService, backends []*compute.Backend) error {
	project := p.project(ref)
	patch := &compute.BackendService{Backends: backends, Fingerprint: cur.Fingerprint}
	if len(backends) == 0 {
		patch.ForceSendFields = []string{"Backends"}
	}
	if ref.Region == "" {
		return p.mutate(ctx, opBSPatch, func(ctx context.Context) (*compute.Operation, error) {
			return p.c.bs.Patch(project, ref.Name, patch).Context(ctx).Do()
		})
	}
	return p.mutate(ctx, opRBSPatch, func(ctx context.Context) (*compute.Operation, error) {
		return p.c.rbs.Patch(project, ref.Region, ref.Name, patch).Context(ctx).Do()
	})
}

// groupHealth asks a backend service for the health of one NEG's
// endpoints.
func (p *Provider) groupHealth(ctx context.Context, ref serviceRef, negURL string) ([]*compute.HealthStatus, error) {
	var out *compute.BackendServiceGroupHealth
	project := p.project(ref)
	group := &compute.ResourceGroupReference{Group: negURL}
	read := func(ctx context.Context) (err error) {
		out, err = p.c.bs.GetHealth(project, ref.Name, group).Context(ctx).Do()
		return err
	}
	if ref.Region != "" {
		read = func(ctx context.Context) (err error) {
			out, err = p.c.rbs.GetHealth(project, ref.Region, ref.Name, group).Context(ctx).Do()
			return err
		}
	}
	if err := p.calls.Call(ctx, healthOp(ref), read); err != nil {
		return nil, err
	}
	return out.HealthStatus, nil
}

// healthOp is the getHealth operation of a backend service; regional
// ones have a bucket of their own.
func healthOp(ref serviceRef) string {
	if ref.Region != "" {
		return opRBSGetHealth
	}
	return opBSGetHealth
}

func (p *Provider) project(ref serviceRef) string {
	if ref.Project != "" {
		return ref.Project
	}
	return p.opts.Project
}

// resourcePath reduces a Compute URL or path to "projects/...", for
// comparing references.
func resourcePath(ref string) string {
	ref = urlPrefixRE.ReplaceAllString(ref, "")
	return strings.TrimPrefix(ref, "/")
}

// instanceName is the name of the VM an endpoint's instance field (a
// name or a URL) names, one copy shared by every endpoint on that VM:
// a slice of the URL would keep the whole URL for as long as the
// observation lasts.
func instanceName(instance string) string {
	return providers.Intern(lastSegment(instance))
}

func lastSegment(s string) string {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func negPath(project, zone, name string) string {
	return "projects/" + project + "/zones/" + zone + "/networkEndpointGroups/" + name
}

const canonicalPrefix = "https://www.googleapis.com/compute/v1/"
