package gcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"path"
	"reflect"
	"strings"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/proto"

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
	opBSUpdate      = "backendServices.update"
	opBSGetHealth   = "backendServices.getHealth"
	opRBSGet        = "regionBackendServices.get"
	opBSList        = "backendServices.list"
	opRBSList       = "regionBackendServices.list"
	opRBSPatch      = "regionBackendServices.patch"
	opRBSUpdate     = "regionBackendServices.update"
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
		// The apiv1 client does not retry these; the core backs off.
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
	code, reason := 0, ""
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		code = ae.HTTPCode()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		if code <= 0 {
			code = ge.Code
		}
		if len(ge.Errors) > 0 {
			reason = ge.Errors[0].Reason
		}
	}
	if code < 0 {
		code = 0
	}
	return code, reason
}

func isCode(err error, code int) bool {
	c, _ := errorCode(err)
	return c == code
}

// clients are the REST clients the provider uses: NEGs and backend
// services for bindings, and the global and regional pieces of the
// Application Load Balancers it provisions.
type clients struct {
	negs *compute.NetworkEndpointGroupsClient
	bs   *compute.BackendServicesClient
	rbs  *compute.RegionBackendServicesClient

	hcs   *compute.HealthChecksClient
	rhcs  *compute.RegionHealthChecksClient
	ums   *compute.UrlMapsClient
	rums  *compute.RegionUrlMapsClient
	thps  *compute.TargetHttpProxiesClient
	rthps *compute.RegionTargetHttpProxiesClient
	tsps  *compute.TargetHttpsProxiesClient
	rtsps *compute.RegionTargetHttpsProxiesClient
	ttps  *compute.TargetTcpProxiesClient
	rttps *compute.RegionTargetTcpProxiesClient
	tslps *compute.TargetSslProxiesClient
	gfrs  *compute.GlobalForwardingRulesClient
	frs   *compute.ForwardingRulesClient
	gaddr *compute.GlobalAddressesClient
	addr  *compute.AddressesClient
	zops  *compute.ZoneOperationsClient
	rops  *compute.RegionOperationsClient
	gops  *compute.GlobalOperationsClient
}

// newClients makes every REST client, closing the made ones on failure.
func newClients(ctx context.Context, co []option.ClientOption) (*clients, error) {
	c := &clients{}
	var err error
	for _, mk := range []func(){
		func() { c.negs, err = compute.NewNetworkEndpointGroupsRESTClient(ctx, co...) },
		func() { c.bs, err = compute.NewBackendServicesRESTClient(ctx, co...) },
		func() { c.rbs, err = compute.NewRegionBackendServicesRESTClient(ctx, co...) },
		func() { c.hcs, err = compute.NewHealthChecksRESTClient(ctx, co...) },
		func() { c.rhcs, err = compute.NewRegionHealthChecksRESTClient(ctx, co...) },
		func() { c.ums, err = compute.NewUrlMapsRESTClient(ctx, co...) },
		func() { c.rums, err = compute.NewRegionUrlMapsRESTClient(ctx, co...) },
		func() { c.thps, err = compute.NewTargetHttpProxiesRESTClient(ctx, co...) },
		func() { c.rthps, err = compute.NewRegionTargetHttpProxiesRESTClient(ctx, co...) },
		func() { c.tsps, err = compute.NewTargetHttpsProxiesRESTClient(ctx, co...) },
		func() { c.rtsps, err = compute.NewRegionTargetHttpsProxiesRESTClient(ctx, co...) },
		func() { c.ttps, err = compute.NewTargetTcpProxiesRESTClient(ctx, co...) },
		func() { c.rttps, err = compute.NewRegionTargetTcpProxiesRESTClient(ctx, co...) },
		func() { c.tslps, err = compute.NewTargetSslProxiesRESTClient(ctx, co...) },
		func() { c.gfrs, err = compute.NewGlobalForwardingRulesRESTClient(ctx, co...) },
		func() { c.frs, err = compute.NewForwardingRulesRESTClient(ctx, co...) },
		func() { c.gaddr, err = compute.NewGlobalAddressesRESTClient(ctx, co...) },
		func() { c.addr, err = compute.NewAddressesRESTClient(ctx, co...) },
		func() { c.zops, err = compute.NewZoneOperationsRESTClient(ctx, co...) },
		func() { c.rops, err = compute.NewRegionOperationsRESTClient(ctx, co...) },
		func() { c.gops, err = compute.NewGlobalOperationsRESTClient(ctx, co...) },
	} {
		if mk(); err != nil {
			_ = c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *clients) close() error {
	var errs []error
	for _, cl := range []interface{ Close() error }{c.negs, c.bs, c.rbs, c.hcs, c.rhcs, c.ums, c.rums,
		c.thps, c.rthps, c.tsps, c.rtsps, c.ttps, c.rttps, c.tslps, c.gfrs, c.frs, c.gaddr, c.addr, c.zops, c.rops, c.gops} {
		if cl != nil && !reflect.ValueOf(cl).IsNil() {
			errs = append(errs, cl.Close())
		}
	}
	return errors.Join(errs...)
}

// Throttled calls are retried after throttleBackoff, doubling, up to
// throttleRetries times before the error goes to the core (which backs the
// whole binding off). A 403 rateLimitExceeded did nothing, so retrying is
// safe even for mutations; the apiv1 client does not retry it (the AWS
// SDK's standard retryer does, three attempts). Without this, a reconcile
// of a dozen calls under partial throttling almost never completes, and a
// throttled operation poll reports a successful attach as failed.
const throttleRetries = 2

var throttleBackoff = 200 * time.Millisecond

// call runs one Compute call through its limiter, retrying throttled ones.
func (p *Provider) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	delay := throttleBackoff
	for attempt := 0; ; attempt++ {
		err := p.calls.Call(ctx, op, fn)
		if attempt == throttleRetries || providers.ClassOf(err) != providers.Throttled {
			return err
		}
		// Jittered, so the bindings throttled together spread out.
		t := time.NewTimer(delay/2 + rand.N(delay/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
}

// wait awaits an operation with the operations' wait methods, each call
// through the operations bucket. An operation answered DONE costs no call.
func (p *Provider) wait(ctx context.Context, op *compute.Operation) error {
	_, err := p.waitDone(ctx, op)
	return err
}

// waitDone is wait that also returns the finished operation (nil for a
// nil op).
func (p *Provider) waitDone(ctx context.Context, op *compute.Operation) (*computepb.Operation, error) {
	if op == nil {
		return nil, nil
	}
	pb := op.Proto()
	for pb.GetStatus() != computepb.Operation_DONE {
		var next *computepb.Operation
		err := p.call(ctx, opOperationsWait, func(ctx context.Context) (err error) {
			next, err = p.waitOnce(ctx, pb)
			return err
		})
		if err != nil {
			return pb, err
		}
		pb = next
	}
	if err := opError(pb); err != nil {
		return pb, classify(pb.GetOperationType(), err)
	}
	return pb, nil
}

// waitOnce calls the wait method of the operation's scope.
func (p *Provider) waitOnce(ctx context.Context, op *computepb.Operation) (*computepb.Operation, error) {
	switch {
	case op.GetZone() != "":
		return p.c.zops.Wait(ctx, &computepb.WaitZoneOperationRequest{Project: p.opts.Project, Zone: path.Base(op.GetZone()), Operation: op.GetName()})
	case op.GetRegion() != "":
		return p.c.rops.Wait(ctx, &computepb.WaitRegionOperationRequest{Project: p.opts.Project, Region: path.Base(op.GetRegion()), Operation: op.GetName()})
	default:
		return p.c.gops.Wait(ctx, &computepb.WaitGlobalOperationRequest{Project: p.opts.Project, Operation: op.GetName()})
	}
}

// opError reports a finished operation's failure the way op.Poll does.
func opError(op *computepb.Operation) error {
	code := op.GetHttpErrorStatusCode()
	if op.HttpErrorStatusCode == nil || (code >= 200 && code <= 299) {
		return nil
	}
	ge := &googleapi.Error{Code: int(code), Message: fmt.Sprintf("%s: %v", op.GetHttpErrorMessage(), op.GetError())}
	if ae, ok := apierror.FromError(ge); ok {
		return ae
	}
	return ge
}

// mutate runs one mutating call and awaits its operation.
func (p *Provider) mutate(ctx context.Context, name string, call func(ctx context.Context) (*compute.Operation, error)) error {
	var op *compute.Operation
	err := p.call(ctx, name, func(ctx context.Context) (err error) {
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
func (p *Provider) findNEGs(ctx context.Context, name string) (map[string]*computepb.NetworkEndpointGroup, error) {
	found, _, err := p.negsByName.Get(ctx, name)
	if found == nil {
		found = map[string]*computepb.NetworkEndpointGroup{}
	}
	return found, err
}

// lookupNEGs lists the NEGs of names, by name and zone: one name with a
// filtered aggregated list, several with one list of every NEG, which is
// also kept for the Ensures of a start (see listedNEGs).
func (p *Provider) lookupNEGs(ctx context.Context, names []string) (map[string]map[string]*computepb.NetworkEndpointGroup, error) {
	filter := ""
	if len(names) == 1 {
		filter = fmt.Sprintf("name = %q", names[0])
	}
	all := map[string]map[string]*computepb.NetworkEndpointGroup{}
	start := time.Now()
	err := p.eachNEG(ctx, filter, func() { clear(all) }, func(zone string, n *computepb.NetworkEndpointGroup) {
		if all[n.GetName()] == nil {
			all[n.GetName()] = map[string]*computepb.NetworkEndpointGroup{}
		}
		all[n.GetName()][zone] = n
	})
	if err != nil {
		return nil, err
	}
	if filter == "" {
		p.keepListed(start, all)
	}
	out := make(map[string]map[string]*computepb.NetworkEndpointGroup, len(names))
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
	byName map[string]map[string]*computepb.NetworkEndpointGroup
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
func (p *Provider) keepListed(start time.Time, all map[string]map[string]*computepb.NetworkEndpointGroup) {
	ours := map[string]map[string]*computepb.NetworkEndpointGroup{}
	for name, zones := range all {
		for _, n := range zones {
			if o, ok := ownerFrom(n.GetDescription()); ok && o.Cluster == p.opts.Cluster {
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
func (p *Provider) findNEGsAfterStart(ctx context.Context, name string) (map[string]*computepb.NetworkEndpointGroup, error) {
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
func (p *Provider) listedNEGs(name string) (zones map[string]*computepb.NetworkEndpointGroup, found, fresh bool) {
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
func (p *Provider) eachNEG(ctx context.Context, filter string, reset func(), fn func(zone string, n *computepb.NetworkEndpointGroup)) error {
	return p.call(ctx, opNEGAggregated, func(ctx context.Context) error {
		reset()
		req := &computepb.AggregatedListNetworkEndpointGroupsRequest{Project: p.opts.Project}
		if filter != "" {
			req.Filter = proto.String(filter)
		}
		it := p.c.negs.AggregatedList(ctx, req)
		for {
			pair, err := it.Next()
			if err == iterator.Done {
				return nil
			}
			if err != nil {
				return err
			}
			for _, n := range pair.Value.GetNetworkEndpointGroups() {
				zone := lastSegment(n.GetZone())
				if zone == "" {
					zone = strings.TrimPrefix(pair.Key, "zones/")
				}
				fn(zone, n)
			}
		}
	})
}

func (p *Provider) getNEG(ctx context.Context, zone, name string) (*computepb.NetworkEndpointGroup, error) {
	var n *computepb.NetworkEndpointGroup
	err := p.call(ctx, opNEGGet, func(ctx context.Context) (err error) {
		n, err = p.c.negs.Get(ctx, &computepb.GetNetworkEndpointGroupRequest{Project: p.opts.Project, Zone: zone, NetworkEndpointGroup: name})
		return err
	})
	return n, err
}

func (p *Provider) deleteNEG(ctx context.Context, zone, name string) error {
	err := p.mutate(ctx, opNEGDelete, func(ctx context.Context) (*compute.Operation, error) {
		return p.c.negs.Delete(ctx, &computepb.DeleteNetworkEndpointGroupRequest{Project: p.opts.Project, Zone: zone, NetworkEndpointGroup: name})
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
	err := p.call(ctx, opNEGList, func(ctx context.Context) error {
		clear(out)
		it := p.c.negs.ListNetworkEndpoints(ctx, &computepb.ListNetworkEndpointsNetworkEndpointGroupsRequest{
			Project: p.opts.Project, Zone: zone, NetworkEndpointGroup: name,
			MaxResults: proto.Uint32(500),
			NetworkEndpointGroupsListEndpointsRequestResource: &computepb.NetworkEndpointGroupsListEndpointsRequest{HealthStatus: proto.String("SKIP")},
		})
		for {
			ep, err := it.Next()
			if err == iterator.Done {
				return nil
			}
			if err != nil {
				return err
			}
			if k, ok := endpointKey(ep.GetNetworkEndpoint().GetIpAddress(), ep.GetNetworkEndpoint().GetPort()); ok {
				out[k] = instanceName(ep.GetNetworkEndpoint().GetInstance())
			}
		}
	})
	return out, err
}

// backendService reads one backend service. Reads made at once share
// list calls (see lookupBackendServices).
func (p *Provider) backendService(ctx context.Context, ref serviceRef) (*computepb.BackendService, error) {
	ref.Project = p.project(ref)
	bs, found, err := p.services.Get(ctx, ref)
	if err == nil && !found {
		err = providers.Errorf(providers.NotFound, "", "backend service %s not found", ref.path(p.opts.Project))
	}
	return bs, err
}

// lookupBackendServices reads backend services: one with a get, several
// with one list per project and region.
func (p *Provider) lookupBackendServices(ctx context.Context, refs []serviceRef) (map[serviceRef]*computepb.BackendService, error) {
	return lookupScoped(ctx, refs, p.getBackendService, p.listBackendServices)
}

// lookupHealthChecks reads health checks as lookupBackendServices reads
// backend services.
func (p *Provider) lookupHealthChecks(ctx context.Context, refs []serviceRef) (map[serviceRef]*computepb.HealthCheck, error) {
	return lookupScoped(ctx, refs, p.getHealthCheck, p.listHealthChecks)
}

// lookupScoped reads resources of one kind by reference: one with get,
// several with one list per project and region; those not found are left
// out.
func lookupScoped[T interface{ GetName() string }](ctx context.Context, refs []serviceRef,
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
			if names[r.GetName()] {
				out[serviceRef{Project: sc.project, Region: sc.region, Name: r.GetName()}] = r
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (p *Provider) getBackendService(ctx context.Context, ref serviceRef) (*computepb.BackendService, error) {
	var bs *computepb.BackendService
	if ref.Region == "" {
		err := p.call(ctx, opBSGet, func(ctx context.Context) (err error) {
			bs, err = p.c.bs.Get(ctx, &computepb.GetBackendServiceRequest{Project: ref.Project, BackendService: ref.Name})
			return err
		})
		return bs, err
	}
	err := p.call(ctx, opRBSGet, func(ctx context.Context) (err error) {
		bs, err = p.c.rbs.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: ref.Project, Region: ref.Region, BackendService: ref.Name})
		return err
	})
	return bs, err
}

// listBackendServices hands every backend service of a project (in a
// region, or global) to fn. A retried list starts over, so fn may see a
// service twice; callers keep the last.
func (p *Provider) listBackendServices(ctx context.Context, project, region string, fn func(*computepb.BackendService)) error {
	if region == "" {
		return p.call(ctx, opBSList, func(ctx context.Context) error {
			it := p.c.bs.List(ctx, &computepb.ListBackendServicesRequest{Project: project})
			return eachOf(it.Next, fn)
		})
	}
	return p.call(ctx, opRBSList, func(ctx context.Context) error {
		it := p.c.rbs.List(ctx, &computepb.ListRegionBackendServicesRequest{Project: project, Region: region})
		return eachOf(it.Next, fn)
	})
}

func (p *Provider) getHealthCheck(ctx context.Context, ref serviceRef) (*computepb.HealthCheck, error) {
	return healthChecks.getIn(ctx, p, ref.Project, scope{ref.Region}, ref.Name)
}

// listHealthChecks hands every health check of a project (in a region,
// or global) to fn; a retried list starts over, as listBackendServices'.
func (p *Provider) listHealthChecks(ctx context.Context, project, region string, fn func(*computepb.HealthCheck)) error {
	return healthChecks.eachIn(ctx, p, project, scope{region}, nil, func() {}, fn)
}

func eachOf[T any](next func() (T, error), fn func(T)) error {
	for {
		v, err := next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return err
		}
		fn(v)
	}
}

// writeBackends stores a backend service's backend list, guarded by the
// fingerprint it was read with. Patch replaces the list but omits an empty
// one from its body, so emptying the list needs a full update.
func (p *Provider) writeBackends(ctx context.Context, ref serviceRef, cur *computepb.BackendService, backends []*computepb.Backend) error {
	project := p.project(ref)
	if len(backends) == 0 {
		next := proto.CloneOf(cur)
		next.Backends = nil
		if ref.Region == "" {
			return p.mutate(ctx, opBSUpdate, func(ctx context.Context) (*compute.Operation, error) {
				return p.c.bs.Update(ctx, &computepb.UpdateBackendServiceRequest{Project: project, BackendService: ref.Name, BackendServiceResource: next})
			})
		}
		return p.mutate(ctx, opRBSUpdate, func(ctx context.Context) (*compute.Operation, error) {
			return p.c.rbs.Update(ctx, &computepb.UpdateRegionBackendServiceRequest{Project: project, Region: ref.Region, BackendService: ref.Name, BackendServiceResource: next})
		})
	}
	patch := &computepb.BackendService{Backends: backends, Fingerprint: cur.Fingerprint}
	if ref.Region == "" {
		return p.mutate(ctx, opBSPatch, func(ctx context.Context) (*compute.Operation, error) {
			return p.c.bs.Patch(ctx, &computepb.PatchBackendServiceRequest{Project: project, BackendService: ref.Name, BackendServiceResource: patch})
		})
	}
	return p.mutate(ctx, opRBSPatch, func(ctx context.Context) (*compute.Operation, error) {
		return p.c.rbs.Patch(ctx, &computepb.PatchRegionBackendServiceRequest{Project: project, Region: ref.Region, BackendService: ref.Name, BackendServiceResource: patch})
	})
}

// groupHealth asks a backend service for the health of one NEG's
// endpoints.
func (p *Provider) groupHealth(ctx context.Context, ref serviceRef, negURL string) ([]*computepb.HealthStatus, error) {
	var out *computepb.BackendServiceGroupHealth
	project := p.project(ref)
	group := &computepb.ResourceGroupReference{Group: proto.String(negURL)}
	if ref.Region == "" {
		err := p.call(ctx, opBSGetHealth, func(ctx context.Context) (err error) {
			out, err = p.c.bs.GetHealth(ctx, &computepb.GetHealthBackendServiceRequest{Project: project, BackendService: ref.Name, ResourceGroupReferenceResource: group})
			return err
		})
		return out.GetHealthStatus(), err
	}
	err := p.call(ctx, opRBSGetHealth, func(ctx context.Context) (err error) {
		out, err = p.c.rbs.GetHealth(ctx, &computepb.GetHealthRegionBackendServiceRequest{Project: project, Region: ref.Region, BackendService: ref.Name, ResourceGroupReferenceResource: group})
		return err
	})
	return out.GetHealthStatus(), err
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
