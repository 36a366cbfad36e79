package gcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
	"k8s.io/utils/clock"

	"github.com/podlb/podlb/providers"
)

// Options configure the GCP provider.
type Options struct {
	// Cluster is the --cluster-name, part of generated NEG names and of
	// the ownership record in each NEG's description.
	Cluster string
	// Project holds the NEGs and, unless a reference says otherwise, the
	// backend services.
	Project string
	// Network and Subnetwork of the NEGs (names, paths or URLs); empty
	// lets GCE use the default network.
	Network    string
	Subnetwork string
	// Endpoint overrides the Compute API endpoint: an https:// URL (a
	// Private Service Connect endpoint) with the usual credentials, or an
	// http:// URL (an emulator) with none unless TokenSource is given.
	Endpoint string
	// TokenSource, when set, supplies the access tokens sent instead of
	// Application Default Credentials (FileTokenSource).
	TokenSource oauth2.TokenSource
	// ClientOptions are added to the Compute client (credentials, quota
	// project, user agent).
	ClientOptions []option.ClientOption
	// BatchSize is the most endpoints per attach or detach call; GCE's
	// limit (and the default) is 500.
	BatchSize int
	// Limits are client-side token buckets per Compute method; "*" covers
	// methods not listed.
	Limits map[string]providers.Limit
	// GroupCacheTTL is how long Ensure trusts what it resolved while the
	// NEGs are serving; backend services change under podlb's feet.
	GroupCacheTTL time.Duration
	// EndpointResync is how long the set of attached endpoints learned from
	// listNetworkEndpoints and podlb's own operations is trusted before it
	// is checked again, to notice changes made by others: by a getHealth
	// that reports exactly those endpoints, or else by a list.
	EndpointResync time.Duration

	// clock times the group cache; tests step a fake one rather than
	// sleep through the TTL, so a slow machine cannot expire an entry
	// twice.
	clock clock.PassiveClock
}

// Provider implements providers.Provider for zonal NEGs.
type Provider struct {
	opts  Options
	c     clients
	calls *providers.Caller

	// Look-ups batched across bindings: at start-up every binding looks
	// for its NEGs and reads its backend service at once.
	negsByName *providers.Batcher[string, map[string]*compute.NetworkEndpointGroup]
	services   *providers.Batcher[serviceRef, *compute.BackendService]
	checks     *providers.Batcher[serviceRef, *compute.HealthCheck]

	mu       sync.Mutex
	renewing sync.Mutex
	// listed is the last list of every NEG of the project, kept for the
	// first Ensure of each binding after a start (see listedNEGs).
	listed   negList
	listing  singleflight.Group
	bindings map[providers.BindingKey]*bindingState
	negs     map[string]*negState // by NEG resource path
	// balancerScopes are where EnsureHTTP and EnsureL4 put each load
	// balancer, for deleting it and for moving it to another scope.
	balancerScopes map[balancerRef]map[scope]bool

	// beforeBackendWrite, when set, runs between reading a backend service
	// and writing its backends (tests race it with other writers).
	beforeBackendWrite func()
	// beforeURLMapWrite, when set, runs between reading a URL map and
	// replacing it (tests race it with other writers).
	beforeURLMapWrite func()

	// followCtx outlives passes: endpoint operations are followed to
	// their end after the pass that sent them returned (see Apply).
	// Close cancels it and waits for the followers.
	followCtx  context.Context
	stopFollow context.CancelFunc
	followers  sync.WaitGroup
	// zones runs a read's or a write's zones at once; its workers stop
	// with followCtx.
	zones *zoneWorkers
}

// bindingState is what Ensure resolved for one binding.
type bindingState struct {
	spec, zones string
	// swept is name|zones of the last aggregated look for NEGs of this
	// binding; a different value means look again.
	swept string
	// cleanupFailed keeps NEGs in zones without nodes that could not be
	// removed, retried when the cache expires.
	cleanupFailed string
	group         *providers.Group
	fetched       time.Time
	// expires is when the group is resolved again, spread over a fifth
	// of the TTL. basis is what it was resolved from, which renewDue
	// compares: the backend service's fingerprint and its health check's
	// judge delay ("" when there is no backend service or the entry must
	// be resolved in full); bs names the backend service.
	expires time.Time
	basis   string
	bs      serviceRef
}

// groupState is Group.Provider: everything Observe and Apply need.
type groupState struct {
	key   providers.BindingKey
	name  string
	zones []string          // zones with a NEG of this binding, sorted
	links map[string]string // zone -> NEG selfLink
	bs    *serviceRef
	// inService holds the zones whose NEG is a backend of bs; checked is
	// true when bs has a health check.
	inService     map[string]bool
	checked       bool
	bsDisplay     string
	notServingWhy string
}

// judged is whether the cloud judges zone's endpoints: its NEG is a
// backend of a backend service with a health check, so getHealth has
// verdicts to give.
func (gs *groupState) judged(zone string) bool {
	return gs.bs != nil && gs.checked && gs.inService[zone]
}

// cacheTTL is a group's time in the cache, spread over a fifth of the TTL
// so groups resolved together at start-up do not expire together.
func (p *Provider) cacheTTL() time.Duration {
	return p.opts.GroupCacheTTL + time.Duration(rand.Int64N(int64(p.opts.GroupCacheTTL/5)+1))
}

// judging is how long a health check needs to judge an endpoint that
// starts answering (healthy threshold x check interval) and one that
// stops (unhealthy threshold x check interval).
type judging struct{ healthy, unhealthy time.Duration }

// computeJudging is the judging of Compute's default health check
// (healthy and unhealthy after 2 checks 5 s apart), for a group whose
// backend service has none.
var computeJudging = judging{healthy: 10 * time.Second, unhealthy: 10 * time.Second}

// renewBasis is what a cache entry resolved from bs with this judging is
// renewed against.
func renewBasis(bs *compute.BackendService, j judging) string {
	return bs.Fingerprint + "|" + j.healthy.String() + "|" + j.unhealthy.String()
}

// readJudging reads bs's health checks (reads made at once share list
// calls) for their judging.
func (p *Provider) readJudging(ctx context.Context, bs *compute.BackendService) (judging, error) {
	checks := map[serviceRef]*compute.HealthCheck{}
	for _, ref := range checkRefs(bs) {
		hc, found, err := p.checks.Get(ctx, ref)
		if err == nil && !found {
			err = providers.Errorf(providers.NotFound, "", "health check %s of backend service %s not found", ref.path(""), bs.Name)
		}
		if err != nil {
			return judging{}, err
		}
		checks[ref] = hc
	}
	j, _ := judgingOf(bs, checks)
	return j, nil
}

// judgingOf is how long bs's health check needs to judge an endpoint,
// with Compute's defaults for fields left unset (interval 5 s, both
// thresholds 2), and the longest where there are several (Compute allows
// one for NEG backends). ok is false when a check bs names is not in
// checks.
func judgingOf(bs *compute.BackendService, checks map[serviceRef]*compute.HealthCheck) (j judging, ok bool) {
	refs := checkRefs(bs)
	if len(refs) == 0 {
		return computeJudging, true
	}
	for _, ref := range refs {
		hc := checks[ref]
		if hc == nil {
			return judging{}, false
		}
		j.healthy = max(j.healthy, checkTime(hc.CheckIntervalSec, hc.HealthyThreshold))
		j.unhealthy = max(j.unhealthy, checkTime(hc.CheckIntervalSec, hc.UnhealthyThreshold))
	}
	return j, true
}

// checkTime is threshold checks interval seconds apart, with Compute's
// defaults (2 checks, 5 s) for values left unset.
func checkTime(interval, threshold int64) time.Duration {
	if interval <= 0 {
		interval = 5
	}
	if threshold <= 0 {
		threshold = 2
	}
	return time.Duration(interval*threshold) * time.Second
}

// checkRefs are the health checks bs names. Legacy HTTP(S) health checks,
// which NEG backends cannot use, are left out.
func checkRefs(bs *compute.BackendService) []serviceRef {
	var refs []serviceRef
	for _, link := range bs.HealthChecks {
		switch parts := strings.Split(resourcePath(link), "/"); {
		case len(parts) == 5 && parts[0] == "projects" && parts[2] == "global" && parts[3] == "healthChecks":
			refs = append(refs, serviceRef{Project: parts[1], Name: parts[4]})
		case len(parts) == 6 && parts[0] == "projects" && parts[2] == "regions" && parts[4] == "healthChecks":
			refs = append(refs, serviceRef{Project: parts[1], Region: parts[3], Name: parts[5]})
		}
	}
	return refs
}

// renewDue renews, with one list of the backend services and one of the
// health checks of key's backend service scope, the cache entries in that
// scope that are due (expired, or expiring within the spread of the TTL):
// each binding would otherwise read its backend service and health check
// when its entry expires, calls per binding every TTL. An entry is
// renewed only when its backend service's fingerprint, which changes with
// every update of it, and its health check's judge delay are those it was
// resolved from; any other entry stays expired and its binding resolves
// its group in full (as does one whose health check lies in another
// scope). Only one renewal runs at a time; those that wait find their
// entry renewed or due.
func (p *Provider) renewDue(ctx context.Context, key providers.BindingKey) {
	p.renewing.Lock()
	defer p.renewing.Unlock()
	now := p.opts.clock.Now()
	soon := now.Add(p.opts.GroupCacheTTL / 5)
	p.mu.Lock()
	st := p.bindings[key]
	if st == nil || now.Before(st.expires) {
		p.mu.Unlock()
		return // renewed by the renewal this one waited for
	}
	scope := st.bs
	p.mu.Unlock()
	checks := map[serviceRef]*compute.HealthCheck{}
	err := p.listHealthChecks(ctx, scope.Project, scope.Region, func(hc *compute.HealthCheck) {
		checks[serviceRef{Project: scope.Project, Region: scope.Region, Name: hc.Name}] = hc
	})
	if err != nil {
		return
	}
	current := map[string]string{}
	err = p.listBackendServices(ctx, scope.Project, scope.Region, func(bs *compute.BackendService) {
		current[bs.Name] = ""
		if j, ok := judgingOf(bs, checks); ok {
			current[bs.Name] = renewBasis(bs, j)
		}
	})
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.bindings {
		if st.group == nil || st.basis == "" || !st.expires.Before(soon) ||
			st.bs.Project != scope.Project || st.bs.Region != scope.Region {
			continue
		}
		if current[st.bs.Name] == st.basis {
			st.expires = p.opts.clock.Now().Add(p.cacheTTL())
		} else {
			st.basis = "" // changed or gone: resolve in full
		}
	}
}

// negState is podlb's knowledge of one NEG's endpoints, and the lock that
// keeps one endpoint call being sent per NEG.
type negState struct {
	ops sync.Mutex

	mu       sync.Mutex
	attached map[providers.TargetKey]string // ip:port -> VM name
	listed   time.Time                      // zero: unknown, list first
	// inFlight holds the endpoints of operations followed in the
	// background (see Apply): being attached counts as attached and being
	// detached as gone, for every plan and observation until their
	// operation ends, whatever a list says meanwhile.
	inFlight map[providers.TargetKey]moving
	flights  []*flight
	// What followed operations left for the next Apply: endpoints refused
	// one by one, and the failure of an operation as a whole.
	refused map[providers.TargetKey]refusedEndpoint
	failed  error
	// landed are the changes whose operations ended lately, with when:
	// a list or getHealth answered before one ended does not show it.
	landed map[providers.TargetKey]landing
}

// landing is an endpoint change whose operation ended at at.
type landing struct {
	instance string
	attach   bool
	at       time.Time
}

// landedKept is how long an ended change is remembered for the reads
// begun before it: longer than a read waits for its budget and call.
const landedKept = 2 * time.Minute

// moving is an endpoint whose operation is followed.
type moving struct {
	instance string
	attach   bool
}

// flight is one followed operation; done closes when it has ended.
type flight struct {
	attach bool
	batch  []providers.Target
	done   chan struct{}
}

type refusedEndpoint struct {
	err    error
	attach bool
	at     time.Time
}

// refusedKept is how long a refusal a followed operation left waits for
// its endpoint to be changed again; a pod gone meanwhile never asks.
const refusedKept = 10 * time.Minute

// New builds the provider and its Compute client.
func New(ctx context.Context, o Options) (*Provider, error) {
	if o.Cluster == "" {
		return nil, errors.New("gcp: a cluster name is required")
	}
	if o.Project == "" {
		return nil, errors.New("gcp: a project is required")
	}
	if o.BatchSize <= 0 || o.BatchSize > 500 {
		o.BatchSize = 500
	}
	if o.GroupCacheTTL <= 0 {
		o.GroupCacheTTL = 5 * time.Minute
	}
	if o.EndpointResync <= 0 {
		o.EndpointResync = 5 * time.Minute
	}
	if o.clock == nil {
		o.clock = clock.RealClock{}
	}
	limits := effectiveLimits(o.Limits)
	auth, err := authOptions(o)
	if err != nil {
		return nil, err
	}
	co := append(slices.Clone(o.ClientOptions), auth...)
	followCtx, stopFollow := context.WithCancel(context.Background())
	p := &Provider{
		opts:       o,
		followCtx:  followCtx,
		stopFollow: stopFollow,
		calls:      newCaller(limits),
		bindings:   map[providers.BindingKey]*bindingState{},
		negs:       map[string]*negState{},

		balancerScopes: map[balancerRef]map[scope]bool{},
		zones:          newZoneWorkers(followCtx, zoneWorkerCount),
	}
	// Endpoint changes count against the project's write quota whichever
	// way they go; 4/s of it leaves room for NEG inserts and other tools.
	if _, own := o.Limits[opNEGDetach]; !own {
		p.calls.Share(opNEGAttach, opNEGDetach)
	}
	p.negsByName = &providers.Batcher[string, map[string]*compute.NetworkEndpointGroup]{Max: 1000, Call: p.lookupNEGs}
	p.services = &providers.Batcher[serviceRef, *compute.BackendService]{Max: 1000, Call: p.lookupBackendServices}
	p.checks = &providers.Batcher[serviceRef, *compute.HealthCheck]{Max: 1000, Call: p.lookupHealthChecks}
	c, err := newClients(ctx, co)
	if err != nil {
		stopFollow()
		return nil, fmt.Errorf("gcp: %w", err)
	}
	p.c = *c
	return p, nil
}

// Close stops following operations and the zone workers.
func (p *Provider) Close() error {
	p.stopFollow()
	p.followers.Wait()
	return nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return "gcp" }

// AnnotationKey implements providers.Provider.
func (p *Provider) AnnotationKey() string { return AnnotationKey }

// ParseSpec implements providers.Provider.
func (p *Provider) ParseSpec(raw json.RawMessage) (providers.Spec, error) {
	s, err := ParseSpec(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// serviceRef is the parsed backendService, parsing again for specs not
// made by ParseSpec.
func (s *Spec) serviceRef() (*serviceRef, error) {
	if s.BackendService == "" {
		return nil, nil
	}
	if s.bs == nil {
		ref, err := parseServiceRef(s.BackendService)
		if err != nil {
			return nil, providers.Errorf(providers.Invalid, "backendService", "%v", err)
		}
		s.bs = &ref
	}
	return s.bs, nil
}

// Ref is the durable reference of a binding's NEGs: "NAME|BACKEND" with
// BACKEND the backend service's resource path, empty without one. A new
// backend service alone changes it, so the core releases the old one.
func Ref(name, backendServicePath string) string { return name + "|" + backendServicePath }

func parseRef(ref string) (name, backendServicePath string, err error) {
	name, bsPath, ok := strings.Cut(ref, "|")
	if !ok || !rfc1035.MatchString(name) {
		return "", "", providers.Errorf(providers.Invalid, "", "%q is not a GCP NEG reference (NAME|BACKEND_SERVICE_PATH)", ref)
	}
	return name, bsPath, nil
}

// Ensure implements providers.Provider. Steady state costs nothing: the
// resolved group is cached while it serves, for GroupCacheTTL. A new spec
// or zone set, an expired cache or a group that does not serve yet costs
// one backend service get (plus a patch when backends must change); a
// changed zone set or name, and the first Ensure after start, add one
// aggregated NEG list, an insert per missing zone and, for zones without
// nodes, a delete.
func (p *Provider) Ensure(ctx context.Context, b *providers.Binding) (*providers.Group, error) {
	spec, ok := b.Spec.(*Spec)
	if !ok {
		return nil, providers.Errorf(providers.Invalid, "", "spec %T is not a GCP NEG spec", b.Spec)
	}
	ref, err := spec.serviceRef()
	if err != nil {
		return nil, err
	}
	name := spec.Name
	if name == "" {
		name = NEGName(p.opts.Cluster, b.Key)
	}
	zones := strings.Join(b.Zones, ",")
	summary := spec.Summary()

	p.mu.Lock()
	st := p.bindings[b.Key]
	if st == nil {
		st = &bindingState{}
		p.bindings[b.Key] = st
	}
	cached := st.group != nil && st.spec == summary && st.zones == zones
	if cached && st.group.Serving && st.basis != "" && !p.opts.clock.Now().Before(st.expires) {
		p.mu.Unlock()
		p.renewDue(ctx, b.Key)
		p.mu.Lock()
	}
	if cached && st.group.Serving && p.opts.clock.Now().Before(st.expires) {
		g := *st.group
		p.mu.Unlock()
		g.Created = false
		return &g, nil
	}
	sweep := st.swept != name+"|"+zones ||
		(st.cleanupFailed != "" && p.opts.clock.Since(st.fetched) >= p.opts.GroupCacheTTL)
	cleanupFailed := st.cleanupFailed
	var prev *groupState
	if st.group != nil {
		prev = st.group.Provider.(*groupState)
	}
	p.mu.Unlock()

	gs := &groupState{key: b.Key, name: name, bs: ref, links: map[string]string{}, inService: map[string]bool{}}
	stale := map[string]string{} // zone -> NEG selfLink, ours, in a zone without nodes
	created := false
	swept := sweep || prev == nil || prev.name != name
	if swept {
		find := p.findNEGs
		if prev == nil {
			find = p.findNEGsAfterStart
		}
		found, err := find(ctx, name)
		if err != nil {
			return nil, err
		}
		// In zone order, so a refusal names the same zone on every retry
		// and stays one Warning.
		for _, zone := range slices.Sorted(maps.Keys(found)) {
			n := found[zone]
			ours := OwnedBy(n.Description, p.opts.Cluster, b.Key)
			_, another := p.ownedByAnother(n.Description, b.Key)
			switch {
			case (slices.Contains(b.Zones, zone) && !ours) || another:
				// Another binding's NEG in any zone: one name, two owners.
				return nil, p.foreign(spec, name, zone, n.Description)
			case slices.Contains(b.Zones, zone):
				gs.links[zone] = n.SelfLink
			case ours:
				stale[zone] = n.SelfLink
			}
		}
		for _, zone := range b.Zones {
			if gs.links[zone] != "" {
				continue
			}
			link, err := p.createNEG(ctx, spec, b.Key, zone, name)
			if err != nil {
				return nil, err
			}
			gs.links[zone] = link
			created = true
		}
	} else {
		maps.Copy(gs.links, prev.links)
	}
	gs.zones = slices.Sorted(maps.Keys(gs.links))

	g := &providers.Group{
		Display:    "neg/" + name,
		Owned:      true,
		JudgeDelay: computeJudging.healthy,
		FailDelay:  computeJudging.unhealthy,
		Created:    created,
		Provider:   gs,
		Status:     map[string]string{"negs": name, "zones": strings.Join(gs.zones, ",")},
	}
	bsPath, basis := "", ""
	if ref != nil {
		bsPath = ref.path(p.opts.Project)
		gs.bsDisplay = displayPath(bsPath, p.opts.Project)
		g.Display += " (backend service " + gs.bsDisplay + ")"
		g.Status["backendService"] = bsPath
		bs, err := p.backendService(ctx, *ref)
		if providers.ClassOf(err) == providers.NotFound {
			return nil, providers.Errorf(providers.NotFound, "backendService", "backend service %s not found", bsPath)
		}
		if err != nil {
			return nil, providers.WithField("backendService", err)
		}
		bs, err = p.alignBackends(ctx, *ref, bs, gs, stale, spec)
		if err != nil {
			return nil, err
		}
		gs.checked = len(bs.HealthChecks) > 0
		for _, back := range bs.Backends {
			for zone, link := range gs.links {
				if resourcePath(back.Group) == resourcePath(link) {
					gs.inService[zone] = true
				}
			}
		}
		g.DrainSeconds = drainingOf(bs)
		j, err := p.readJudging(ctx, bs)
		switch {
		case providers.ClassOf(err) == providers.Invalid:
			// Most likely a role without compute.healthChecks.get: the
			// binding goes on, judging as before health checks were read.
			j = computeJudging
			g.Warning = fmt.Sprintf("health check of backend service %s not read (%v); pods that reuse an address are judged by Compute's default check (2 x 5 s)", gs.bsDisplay, err)
			g.Status["healthCheck"] = g.Warning
		case err != nil:
			return nil, providers.WithField("backendService", err)
		}
		g.JudgeDelay, g.FailDelay = j.healthy, j.unhealthy
		basis = renewBasis(bs, j)
	}
	g.Ref = Ref(name, bsPath)
	switch {
	case len(gs.zones) == 0:
		gs.notServingWhy = "the cluster has no nodes in any zone, so there is no NEG"
	case ref == nil:
		gs.notServingWhy = "NEG is in no backend service"
	case !gs.checked:
		gs.notServingWhy = "backend service " + gs.bsDisplay + " has no health check"
	case len(gs.inService) < len(gs.zones):
		gs.notServingWhy = "backend service " + gs.bsDisplay + " does not have every zone's NEG as a backend yet"
	}
	g.Serving = gs.notServingWhy == ""
	g.NotServingWhy = gs.notServingWhy

	// NEGs of zones that lost their last node go only after they left the
	// backend service; a failure here must not hold up the live zones.
	if swept {
		var cleanup []string
		for _, zone := range slices.Sorted(maps.Keys(stale)) {
			if err := p.deleteOwnedNEG(ctx, zone, name); err != nil {
				cleanup = append(cleanup, fmt.Sprintf("zone %s: %v", zone, err))
			}
		}
		cleanupFailed = ""
		if len(cleanup) > 0 {
			cleanupFailed = "NEGs of zones without nodes not deleted: " + strings.Join(cleanup, "; ")
		}
	}
	if cleanupFailed != "" {
		g.Status["cleanup"] = cleanupFailed
	}

	if cleanupFailed != "" {
		basis = "" // the clean-up is retried by resolving in full
	}
	p.mu.Lock()
	st.spec, st.zones, st.group, st.fetched = summary, zones, g, p.opts.clock.Now()
	st.expires = st.fetched.Add(p.cacheTTL())
	st.basis = basis
	if ref != nil {
		st.bs = *ref
		st.bs.Project = p.project(*ref)
	}
	st.swept = name + "|" + zones
	st.cleanupFailed = cleanupFailed
	p.mu.Unlock()
	out := *g
	return &out, nil
}

// createNEG inserts one zone's NEG; an existing one is adopted only when
// its description says it is this binding's.
func (p *Provider) createNEG(ctx context.Context, spec *Spec, key providers.BindingKey, zone, name string) (string, error) {
	n := &compute.NetworkEndpointGroup{
		Name:                name,
		Description:         Description(p.opts.Cluster, key),
		NetworkEndpointType: "GCE_VM_IP_PORT",
	}
	if p.opts.Network != "" {
		n.Network = p.opts.Network
	}
	if p.opts.Subnetwork != "" {
		n.Subnetwork = p.opts.Subnetwork
	}
	err := p.mutate(ctx, opNEGInsert, func(ctx context.Context) (*compute.Operation, error) {
		return p.c.negs.Insert(p.opts.Project, zone, n).Context(ctx).Do()
	})
	if err != nil && !isCode(err, 409) {
		return "", providers.WithField(nameField(spec), err)
	}
	created := err == nil
	// Created now or by someone in between: read it back for its link and
	// to check whose it is.
	got, err := p.getNEG(ctx, zone, name)
	if err != nil {
		return "", err
	}
	if !OwnedBy(got.Description, p.opts.Cluster, key) {
		return "", p.foreign(spec, name, zone, got.Description)
	}
	path := negPath(p.opts.Project, zone, name)
	if created {
		// A NEG podlb just made is empty: its record starts known, so the
		// first attaches are recorded without a list.
		p.neg(path).set(nil, time.Now())
	} else {
		p.forgetNEG(path)
	}
	return got.SelfLink, nil
}

func nameField(spec *Spec) string {
	if spec.Name != "" {
		return "name"
	}
	return ""
}

func (p *Provider) deleteOwnedNEG(ctx context.Context, zone, name string) error {
	// An attach still followed would land in a NEG being deleted.
	if err := p.neg(negPath(p.opts.Project, zone, name)).awaitFlights(ctx, nil); err != nil {
		return err
	}
	err := p.deleteNEG(ctx, zone, name)
	if err == nil {
		p.forgetNEG(negPath(p.opts.Project, zone, name))
		return nil
	}
	if _, reason := errorCode(err); reason == "resourceInUseByAnotherResource" {
		return providers.Errorf(providers.Invalid, "", "NEG %s in zone %s is still a backend elsewhere; remove it there so podlb can delete it: %v", name, zone, err)
	}
	return err
}

// alignBackends makes every zone's NEG a backend of the service with the
// annotation's settings and removes the NEGs in drop (ours, zones without
// nodes). Backends the annotation says nothing about are left as found,
// so settings changed by other tools survive. A concurrent writer makes
// the fingerprint stale (412): read again and retry.
func (p *Provider) alignBackends(ctx context.Context, ref serviceRef, bs *compute.BackendService, gs *groupState, drop map[string]string, spec *Spec) (*compute.BackendService, error) {
	dropPaths := map[string]bool{}
	for _, link := range drop {
		dropPaths[resourcePath(link)] = true
	}
	want := make([]string, 0, len(gs.zones))
	for _, zone := range gs.zones {
		want = append(want, gs.links[zone])
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		backends, changed, err := mergeBackends(bs, want, dropPaths, spec, gs.bsDisplayOr(ref, p.opts.Project))
		if err != nil {
			return nil, err
		}
		if !changed {
			return bs, nil
		}
		if p.beforeBackendWrite != nil {
			p.beforeBackendWrite()
		}
		err = p.writeBackends(ctx, ref, bs, backends)
		if err == nil {
			next := *bs
			next.Backends = backends
			// The write gave the service a fingerprint not known here.
			next.Fingerprint = ""
			return &next, nil
		}
		if !isCode(err, 412) || attempt == attempts {
			return nil, providers.WithField("backendService", err)
		}
		if bs, err = p.backendService(ctx, ref); err != nil {
			return nil, providers.WithField("backendService", err)
		}
	}
}

func (gs *groupState) bsDisplayOr(ref serviceRef, project string) string {
	if gs.bsDisplay != "" {
		return gs.bsDisplay
	}
	return displayPath(ref.path(project), project)
}

// mergeBackends computes the backend list: want present with the spec's
// settings, drop absent, everything else untouched.
func mergeBackends(bs *compute.BackendService, want []string, drop map[string]bool, spec *Spec, display string) ([]*compute.Backend, bool, error) {
	protocol := bs.Protocol
	connection := protocol == "TCP" || protocol == "SSL" || protocol == "UDP"
	mode := spec.mode()
	switch {
	case mode == "" && connection:
		mode = "CONNECTION"
	case mode == "":
		mode = "RATE"
	case mode == "RATE" && connection:
		return nil, false, providers.Errorf(providers.Invalid, "balancingMode", "backend service %s has protocol %s; its NEG backends use CONNECTION with maxConnectionsPerEndpoint", display, protocol)
	case mode == "CONNECTION" && !connection:
		return nil, false, providers.Errorf(providers.Invalid, "balancingMode", "backend service %s has protocol %s; its NEG backends use RATE with maxRatePerEndpoint", display, protocol)
	}
	wanted := map[string]bool{}
	for _, link := range want {
		wanted[resourcePath(link)] = true
	}
	present := map[string]bool{}
	changed := false
	out := make([]*compute.Backend, 0, len(bs.Backends)+len(want))
	for _, back := range bs.Backends {
		path := resourcePath(back.Group)
		if drop[path] {
			changed = true
			continue
		}
		// A copy: bs may be shared. Compute states every backend's
		// capacityScaler (1 unless set): sent back as read, a 0 (no new
		// traffic) stays 0.
		nb := *back
		nb.ForceSendFields = append(slices.Clone(back.ForceSendFields), "CapacityScaler")
		if wanted[path] && !present[path] {
			present[path] = true
			if applySettings(&nb, spec, mode) {
				changed = true
			}
		}
		out = append(out, &nb)
	}
	for _, link := range want {
		if present[resourcePath(link)] {
			continue
		}
		nb := &compute.Backend{Group: link}
		nb.BalancingMode = mode
		if mode == "RATE" {
			nb.MaxRatePerEndpoint = DefaultMaxRatePerEndpoint
		} else {
			nb.MaxConnectionsPerEndpoint = DefaultMaxConnectionsPerEndpoint
		}
		applySettings(nb, spec, mode)
		if spec.CapacityScaler != nil {
			nb.ForceSendFields = []string{"CapacityScaler"}
		}
		out = append(out, nb)
		changed = true
	}
	return out, changed, nil
}

// applySettings enforces the balancing fields the annotation states on a
// backend, reporting whether anything changed.
func applySettings(b *compute.Backend, spec *Spec, mode string) bool {
	changed := false
	if spec.mode() != "" {
		if b.BalancingMode != mode {
			b.BalancingMode, changed = mode, true
		}
		if mode == "RATE" {
			rate := float64(DefaultMaxRatePerEndpoint)
			if spec.MaxRatePerEndpoint != nil {
				rate = *spec.MaxRatePerEndpoint
			}
			// Compute keeps rates and scalers as 32-bit floats.
			if float32(b.MaxRatePerEndpoint) != float32(rate) {
				b.MaxRatePerEndpoint, changed = rate, true
			}
		} else {
			conns := int64(DefaultMaxConnectionsPerEndpoint)
			if spec.MaxConnectionsPerEndpoint != nil {
				conns = int64(*spec.MaxConnectionsPerEndpoint)
			}
			if b.MaxConnectionsPerEndpoint != conns {
				b.MaxConnectionsPerEndpoint, changed = conns, true
			}
		}
		// The other mode's capacities are rejected beside this mode.
		if mode == "RATE" {
			changed = changed || b.MaxConnections != 0 || b.MaxConnectionsPerEndpoint != 0 || b.MaxConnectionsPerInstance != 0
			b.MaxConnections, b.MaxConnectionsPerEndpoint, b.MaxConnectionsPerInstance = 0, 0, 0
			b.MaxRate, b.MaxRatePerInstance = 0, 0
		} else {
			changed = changed || b.MaxRate != 0 || b.MaxRatePerEndpoint != 0 || b.MaxRatePerInstance != 0
			b.MaxRate, b.MaxRatePerEndpoint, b.MaxRatePerInstance = 0, 0, 0
			b.MaxConnections, b.MaxConnectionsPerInstance = 0, 0
		}
	}
	if c := spec.CapacityScaler; c != nil && float32(b.CapacityScaler) != float32(*c) {
		b.CapacityScaler, changed = *c, true
	}
	return changed
}

// displayPath shortens a backend service path for messages when it is in
// the provider's project.
func displayPath(path, project string) string {
	return strings.TrimPrefix(path, "projects/"+project+"/")
}

// Observe implements providers.Provider. Calls per zone and poll: one
// getHealth while the NEG is a backend of a health-checked service, plus
// one listNetworkEndpoints (per 500 endpoints) when the attached set is
// unknown (first look, after a failed operation), or older than
// EndpointResync and not borne out by the getHealth; one
// listNetworkEndpoints when no health check judges the NEG. Zones are
// read in parallel.
func (p *Provider) Observe(ctx context.Context, g *providers.Group) ([]providers.Observed, error) {
	gs, ok := g.Provider.(*groupState)
	if !ok {
		return nil, providers.Errorf(providers.Invalid, "", "group %s is not a GCP NEG group", g.Display)
	}
	return p.observeZones(ctx, g, gs, gs.zones)
}

// WritePart implements providers.PartWriter: each zone's NEG is attached
// to and detached from in calls of its own.
func (p *Provider) WritePart(t providers.Target) string { return t.Zone }

// ObserveParts implements providers.PartReader: it reads only the zones
// of the targets of, one getHealth each instead of one per zone of the
// group.
func (p *Provider) ObserveParts(ctx context.Context, g *providers.Group, of []providers.Target) ([]providers.Observed, func(providers.Observed) bool, error) {
	gs, ok := g.Provider.(*groupState)
	if !ok {
		return nil, nil, providers.Errorf(providers.Invalid, "", "group %s is not a GCP NEG group", g.Display)
	}
	read := map[string]bool{}
	for _, t := range of {
		read[t.Zone] = true
	}
	zones := slices.DeleteFunc(slices.Clone(gs.zones), func(z string) bool { return !read[z] })
	observed, err := p.observeZones(ctx, g, gs, zones)
	return observed, func(o providers.Observed) bool { return read[o.Zone] }, err
}

// observeZones reads the given zones of the group in parallel. At rest
// it takes the tokens of all the zones' calls at once or puts the whole
// read off.
func (p *Provider) observeZones(ctx context.Context, g *providers.Group, gs *groupState, zoneNames []string) ([]providers.Observed, error) {
	if providers.IsAtRest(ctx) {
		// The calls observeZone will make: a list where the attached
		// endpoints are not known or no health check judges them, a
		// getHealth where one does (a stale record that getHealth does
		// not bear out is listed on a spare token of its own).
		var calls []string
		for _, zone := range zoneNames {
			judged := gs.judged(zone)
			if !judged || !p.neg(negPath(p.opts.Project, zone, gs.name)).known() {
				calls = append(calls, opNEGList)
			}
			if judged {
				calls = append(calls, healthOp(*gs.bs))
			}
		}
		var err error
		if ctx, err = p.calls.HoldSpare(ctx, calls...); err != nil {
			return nil, fmt.Errorf("reading endpoints of %s: %w", g.Display, err)
		}
	}
	zones := make([][]providers.Observed, len(zoneNames))
	err := p.zones.inParallel(zoneNames, func(i int, zone string) (err error) {
		if zones[i], err = p.observeZone(ctx, gs, zone); err != nil {
			return fmt.Errorf("zone %s: %w", zone, err)
		}
		return nil
	})
	if err != nil {
		err = combine(err, "reading endpoints of "+g.Display)
		if c := providers.ClassOf(err); c == providers.NotFound || c == providers.Invalid {
			// A NEG or backend changed behind podlb's back: resolve again.
			p.invalidate(gs.key, c == providers.NotFound)
		}
		return nil, err
	}
	// The observation is kept until the next read: one slice of its
	// exact size, not the slack of appending zone after zone.
	out := slices.Concat(zones...)
	providers.SortObserved(out)
	return out, nil
}

func (p *Provider) observeZone(ctx context.Context, gs *groupState, zone string) ([]providers.Observed, error) {
	path := negPath(p.opts.Project, zone, gs.name)
	group := "zones/" + zone + "/networkEndpointGroups/" + gs.name
	ns := p.neg(path)
	judged := gs.judged(zone)
	began := time.Now()
	attached, fresh := ns.snapshot(p.opts.EndpointResync)
	list := func() (err error) {
		if attached, err = p.listEndpoints(ctx, zone, gs.name); err != nil {
			return err
		}
		attached = ns.set(attached, began)
		fresh = true
		return nil
	}
	if attached == nil || !judged {
		if err := list(); err != nil {
			return nil, err
		}
	}
	target := func(k providers.TargetKey, instance string) providers.Target {
		return providers.Target{IP: k.IP, Port: k.Port, Zone: zone, Instance: instance}
	}
	var out []providers.Observed
	if !judged {
		why := gs.notServingWhy
		if why == "" {
			why = "NEG is in no backend service"
		}
		for k, instance := range attached {
			out = append(out, providers.Observed{Target: target(k, instance), State: providers.Unused, CloudState: "attached", Reason: why, Group: group})
		}
		return out, nil
	}
	health, err := p.groupHealth(ctx, *gs.bs, gs.links[zone])
	if err != nil {
		return nil, err
	}
	if !fresh && !(bearsOut(attached, health) && ns.confirm(began)) {
		// An old record that getHealth does not bear out: something
		// changed, by podlb's operations or someone else's; list it. The
		// record is marked unknown first, so a list that fails or is put
		// off leaves it unknown, and the next read lists before its
		// getHealth (and a read at rest counts that list's token).
		ns.expire()
		if err := list(); err != nil {
			return nil, err
		}
	}
	// The observation is kept until the next, so its targets hold the
	// one shared copy of their state and reason; the reason names the
	// backend service and is built once per state a read.
	type words struct{ state, reason string }
	said := map[string]words{}
	wordsOf := func(state string) words {
		w, ok := said[state]
		if !ok {
			w = words{providers.Intern(state), providers.Intern(stateReason(state, gs.bsDisplay))}
			said[state] = w
		}
		return w
	}
	reported := map[providers.TargetKey]bool{}
	for _, h := range health {
		k, ok := endpointKey(h.IpAddress, h.Port)
		if !ok {
			continue
		}
		instance, isAttached := attached[k]
		if instance == "" {
			instance = instanceName(h.Instance)
		}
		w := wordsOf(h.HealthState)
		o := providers.Observed{Target: target(k, instance), State: mapState(w.state), CloudState: w.state, Reason: w.reason, Group: group}
		switch {
		case isAttached && o.State == providers.Draining:
			// Re-attached while the old attachment drains: it is in the
			// NEG, only not judged yet.
			w = wordsOf("UNKNOWN")
			o.State, o.CloudState, o.Reason = providers.Pending, w.state, w.reason
		case !isAttached && ns.detaching(k, began):
			// Its detach operation runs, or ended after getHealth
			// answered: it is leaving.
			w = wordsOf("DRAINING")
			o.State, o.CloudState, o.Reason = providers.Draining, w.state, w.reason
		case !isAttached && o.State != providers.Draining:
			// Attached by someone else or before podlb's last list:
			// believe the backend service and list again next time.
			ns.expire()
		}
		if reported[k] {
			continue
		}
		reported[k] = true
		out = append(out, o)
	}
	unreported := stateReason("", gs.bsDisplay)
	for k, instance := range attached {
		if !reported[k] {
			out = append(out, providers.Observed{Target: target(k, instance), State: providers.Pending, CloudState: "UNKNOWN", Reason: unreported, Group: group})
		}
	}
	return out, nil
}

func endpointKey(ip string, port int64) (providers.TargetKey, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil || port <= 0 || port > 65535 {
		return providers.TargetKey{}, false
	}
	return providers.TargetKey{IP: addr, Port: int32(port)}, true
}

// Apply implements providers.Provider: every zone's attach batches first
// (zones in parallel, batches within a zone one after the other); only
// when none failed as a whole, the detach batches the same way.
// Endpoints GCE refuses one by one (see refusal), targets in a zone
// without a NEG and targets without a VM are set aside and come back as
// *providers.TargetErrors once everything else is applied.
//
// Apply returns once GCE has accepted the calls: their operations
// (seconds on GCE) are followed in the background, so a pod that turns
// ready meanwhile goes out in the next pass instead of waiting for them.
// What such an operation leaves (endpoints refused one by one, a failure
// as a whole) comes back from the next Apply that changes those endpoints
// or that NEG, and a plan that detaches is held by any such failure of
// its group. Only the attaches of a plan that also detaches are awaited;
// attaches of earlier plans still followed are the caller's to wait for
// (see Settling), so that a pass need not wait for an operation.
func (p *Provider) Apply(ctx context.Context, g *providers.Group, plan providers.Plan) error {
	gs, ok := g.Provider.(*groupState)
	if !ok {
		return providers.Errorf(providers.Invalid, "", "group %s is not a GCP NEG group", g.Display)
	}
	follow := len(plan.Deregister) == 0
	if !follow {
		if err := p.earlierFailures(gs); err != nil {
			return combine(err, "changing endpoints of "+g.Display)
		}
	}
	refused := map[providers.TargetKey]error{}
	attach := map[string][]providers.Target{}
	for _, t := range plan.Register {
		switch {
		case gs.links[t.Zone] == "":
			// The next Ensure creates the zone's NEG.
			refused[t.Key()] = providers.Errorf(providers.Transient, "", "node %s is in zone %q, which has no NEG %s yet (zones: %s)", t.Node, t.Zone, gs.name, strings.Join(gs.zones, ", "))
		case t.Instance == "":
			refused[t.Key()] = providers.Errorf(providers.Invalid, "", "node %s has no GCE instance (providerID gce://PROJECT/ZONE/NAME), which GCE_VM_IP_PORT endpoints need", t.Node)
		default:
			attach[t.Zone] = append(attach[t.Zone], t)
		}
	}
	if err := p.changeZones(ctx, gs, attach, true, follow, refused); err != nil {
		return combine(err, "attaching endpoints to "+g.Display)
	}
	detach := map[string][]providers.Target{}
	for _, t := range plan.Deregister {
		// A zone without a NEG of ours has nothing of ours to detach.
		if gs.links[t.Zone] != "" {
			detach[t.Zone] = append(detach[t.Zone], t)
		}
	}
	if err := p.changeZones(ctx, gs, detach, false, true, refused); err != nil {
		return combine(err, "detaching endpoints from "+g.Display)
	}
	if len(refused) > 0 {
		return &providers.TargetErrors{Failed: refused}
	}
	return nil
}

// HoldWrite implements providers.WriteHolder: Apply attaches first.
func (p *Provider) HoldWrite(ctx context.Context, plan providers.Plan) (context.Context, error) {
	return p.calls.HoldPlan(ctx, plan, opNEGAttach, opNEGDetach)
}

// earlierFailures returns what failed as a whole among the operations of
// the group's NEGs followed so far, detaches included.
func (p *Provider) earlierFailures(gs *groupState) error {
	var errs *multierror.Error
	for _, zone := range gs.zones {
		ns := p.neg(negPath(p.opts.Project, zone, gs.name))
		if err := ns.takeFailure(); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("zone %s: an earlier operation: %w", zone, err))
		}
	}
	return errs.ErrorOrNil()
}

// Settling implements providers.Settler: a channel closed once the attach
// operations of the group's NEGs followed now have ended.
func (p *Provider) Settling(g *providers.Group) <-chan struct{} {
	gs, ok := g.Provider.(*groupState)
	if !ok {
		return nil
	}
	var running []chan struct{}
	for _, zone := range gs.zones {
		ns := p.neg(negPath(p.opts.Project, zone, gs.name))
		ns.mu.Lock()
		for _, f := range ns.flights {
			if f.attach {
				running = append(running, f.done)
			}
		}
		ns.mu.Unlock()
	}
	switch len(running) {
	case 0:
		return nil
	case 1:
		return running[0]
	}
	all := make(chan struct{})
	go func() {
		for _, done := range running {
			<-done
		}
		close(all)
	}()
	return all
}

// changeZones changes every zone's endpoints in parallel, adding the
// endpoints GCE refused to refused.
func (p *Provider) changeZones(ctx context.Context, gs *groupState, byZone map[string][]providers.Target, attach, follow bool, refused map[providers.TargetKey]error) error {
	var mu sync.Mutex
	return p.zones.inParallel(slices.Collect(maps.Keys(byZone)), func(_ int, zone string) error {
		zoneRefused, err := p.changeEndpoints(ctx, zone, gs.name, byZone[zone], attach, follow)
		mu.Lock()
		maps.Copy(refused, zoneRefused)
		mu.Unlock()
		return err
	})
}

// zoneWorkers run the zones of a read or a write besides the one the
// calling goroutine takes. They live as long as the provider: a
// goroutine made for one call grows its stack through the Compute
// client's deep calls each time (a cost the idle CPU profile showed for
// every read), a worker only after the collector shrank it.
type zoneWorkers struct{ work chan func() }

// zoneWorkerCount covers the zones the default health readers and write
// slots run at once; beyond it zones get goroutines of their own.
const zoneWorkerCount = 16

func newZoneWorkers(ctx context.Context, n int) *zoneWorkers {
	w := &zoneWorkers{work: make(chan func())}
	for range n {
		go func() {
			for {
				select {
				case f := <-w.work:
					f()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return w
}

// inParallel calls f for each zone at once and gathers their errors. The
// last zone (the only one, for most groups) runs in the calling
// goroutine, the others on idle workers, or on goroutines of their own
// when none is idle: a zone never waits for another's.
func (w *zoneWorkers) inParallel(zones []string, f func(i int, zone string) error) error {
	if len(zones) == 0 {
		return nil
	}
	errs := make([]error, len(zones))
	var wg sync.WaitGroup
	for i, zone := range zones[:len(zones)-1] {
		wg.Add(1)
		run := func() {
			defer wg.Done()
			errs[i] = f(i, zone)
		}
		select {
		case w.work <- run:
		default:
			go run()
		}
	}
	last := len(zones) - 1
	errs[last] = f(last, zones[last])
	wg.Wait()
	var all *multierror.Error
	for _, err := range errs {
		if err != nil {
			all = multierror.Append(all, err)
		}
	}
	return all.ErrorOrNil()
}

// changeEndpoints attaches or detaches endpoints of one NEG in batches,
// one call being sent at a time. Each batch's operation is awaited, or
// with follow followed in the background once GCE accepted the call.
// Endpoints being changed the same way are not sent again; one being
// detached is attached again only once its detach has ended. An
// operation fails as a whole when one endpoint is already attached (or
// already gone), so after a failed operation the NEG is listed and the
// rest of the batch tried once more. When that fails because of some
// endpoints, the batch is split until each refused endpoint stands alone;
// those are returned with their errors, and with them the endpoints that
// followed operations refused earlier.
func (p *Provider) changeEndpoints(ctx context.Context, zone, name string, ts []providers.Target, attach, follow bool) (map[providers.TargetKey]error, error) {
	ns := p.neg(negPath(p.opts.Project, zone, name))
	ns.ops.Lock()
	defer ns.ops.Unlock()
	ts = slices.Clone(ts)
	iso := p.isolator(ctx, ns, zone, name, attach)
	ts, iso.Refused = ns.takeRefused(ts, attach)
	if err := ns.takeFailure(); err != nil {
		return iso.Refused, fmt.Errorf("zone %s: an earlier operation: %w", zone, err)
	}
	if attach {
		keys := make(map[providers.TargetKey]bool, len(ts))
		for _, t := range ts {
			keys[t.Key()] = true
		}
		if err := ns.awaitFlights(ctx, func(f *flight) bool {
			return !f.attach && slices.ContainsFunc(f.batch, func(t providers.Target) bool { return keys[t.Key()] })
		}); err != nil {
			return iso.Refused, err
		}
		ts = ns.notAttached(ts, p.opts.EndpointResync)
	} else {
		ts = ns.notDetaching(ts)
	}
	providers.SortTargets(ts)
	var errs *multierror.Error
	for _, batch := range providers.Batches(ts, p.opts.BatchSize) {
		var err error
		if follow {
			var op *compute.Operation
			if op, err = p.sendBatch(ctx, ns, zone, name, batch, attach); err == nil {
				p.follow(ns, zone, name, batch, attach, op)
				continue
			}
		} else {
			err = p.endpointBatch(ctx, ns, zone, name, batch, attach)
		}
		if err = p.recoverBatch(ctx, ns, zone, name, batch, attach, err, iso); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("zone %s: %w", zone, err))
		}
	}
	return iso.Refused, errs.ErrorOrNil()
}

// recoverBatch handles a batch whose call or operation failed with err:
// after a failed operation refused for its endpoints, it lists the NEG and
// sends what is still to do once more; what fails then goes to the
// Isolator. It returns what failed as a whole.
func (p *Provider) recoverBatch(ctx context.Context, ns *negState, zone, name string, batch []providers.Target, attach bool, err error, iso *providers.Isolator) error {
	var opErr *operationError
	if errors.As(err, &opErr) && isCode(err, 400) {
		began := time.Now()
		if cur, lerr := p.listEndpoints(ctx, zone, name); lerr == nil {
			ns.set(cur, began)
			batch, err = unapplied(slices.Clone(batch), cur, attach), nil
			if len(batch) > 0 {
				err = p.endpointBatch(ctx, ns, zone, name, batch, attach)
			}
		}
	}
	if err != nil {
		err = iso.Run(batch, err)
	}
	if err != nil {
		ns.expire()
	}
	return err
}

// follow follows an accepted operation in the background: its endpoints
// count as changed meanwhile, and what it leaves (see negState.land)
// waits for the next Apply.
func (p *Provider) follow(ns *negState, zone, name string, batch []providers.Target, attach bool, op *compute.Operation) {
	f := ns.begin(batch, attach)
	fctx := p.followCtx
	p.followers.Add(1)
	go func() {
		defer p.followers.Done()
		iso := p.isolator(fctx, ns, zone, name, attach)
		err := p.finishBatch(fctx, ns, batch, attach, op)
		if err != nil {
			err = p.recoverBatch(fctx, ns, zone, name, batch, attach, err, iso)
		}
		ns.land(f, iso.Refused, err)
	}()
}

// isolator splits a refused batch of one NEG's attaches or detaches.
func (p *Provider) isolator(ctx context.Context, ns *negState, zone, name string, attach bool) *providers.Isolator {
	return &providers.Isolator{
		Apply: func(batch []providers.Target) error { return p.endpointBatch(ctx, ns, zone, name, batch, attach) },
		Judge: refusal,
	}
}

// refusal reads an attach or detach error. GCE refuses a whole call for
// one bad endpoint with 400 (an IP that is not the VM's or not IPv4, a VM
// of another zone, a duplicate, and in the operation an endpoint already
// attached or already gone), and with 403 quotaExceeded when the NEG has
// no room. Other 403s (permissions), throttling, 404 and 5xx are about the
// call.
func refusal(err error) providers.Refusal {
	code, reason := errorCode(err)
	var done *alreadyWanted
	switch {
	case errors.As(err, &done):
		return providers.AlreadyApplied
	case code == http.StatusBadRequest:
		return providers.SomeTargets
	case code == http.StatusForbidden && reason == "quotaExceeded":
		return providers.GroupFull
	}
	return providers.WholeCall
}

// operationError marks a failure reported by a finished operation rather
// than by the request.
type operationError struct{ err error }

func (e *operationError) Error() string { return e.err.Error() }
func (e *operationError) Unwrap() error { return e.err }

// endpointBatch attaches or detaches one batch and awaits its operation.
func (p *Provider) endpointBatch(ctx context.Context, ns *negState, zone, name string, batch []providers.Target, attach bool) error {
	op, err := p.sendBatch(ctx, ns, zone, name, batch, attach)
	if err != nil {
		return err
	}
	return p.finishBatch(ctx, ns, batch, attach, op)
}

// sendBatch sends one batch's attach or detach call.
func (p *Provider) sendBatch(ctx context.Context, ns *negState, zone, name string, batch []providers.Target, attach bool) (*compute.Operation, error) {
	eps := make([]*compute.NetworkEndpoint, len(batch))
	for i, t := range batch {
		instance := ns.instance(t)
		eps[i] = &compute.NetworkEndpoint{IpAddress: t.IP.String(), Port: int64(t.Port)}
		if instance != "" {
			eps[i].Instance = instance
		}
	}
	var op *compute.Operation
	method := opNEGAttach
	if !attach {
		method = opNEGDetach
	}
	err := p.calls.Call(ctx, method, func(ctx context.Context) (err error) {
		if attach {
			op, err = p.c.negs.AttachNetworkEndpoints(p.opts.Project, zone, name,
				&compute.NetworkEndpointGroupsAttachEndpointsRequest{NetworkEndpoints: eps}).Context(ctx).Do()
		} else {
			op, err = p.c.negs.DetachNetworkEndpoints(p.opts.Project, zone, name,
				&compute.NetworkEndpointGroupsDetachEndpointsRequest{NetworkEndpoints: eps}).Context(ctx).Do()
		}
		return err
	})
	return op, err
}

// finishBatch awaits a batch's operation and records its result.
func (p *Provider) finishBatch(ctx context.Context, ns *negState, batch []providers.Target, attach bool, op *compute.Operation) error {
	if done, err := p.waitDone(ctx, op); err != nil {
		if alreadyDone(done, attach) {
			if len(batch) == 1 {
				ns.record(batch, attach) // it is as wanted: the Isolator counts it applied
			}
			err = &alreadyWanted{err}
		}
		return &operationError{err}
	}
	ns.record(batch, attach)
	return nil
}

// alreadyWanted marks an operation that failed only because endpoints
// already are as wanted.
type alreadyWanted struct{ err error }

func (e *alreadyWanted) Error() string { return e.err.Error() }
func (e *alreadyWanted) Unwrap() error { return e.err }

// alreadyDone reports whether a failed operation failed only because
// endpoints already are as wanted: attached, or gone. A retry after an
// attach or detach whose operation podlb could not follow to its end (its
// poll was throttled) meets this; such endpoints are applied, not refused.
func alreadyDone(op *compute.Operation, attach bool) bool {
	want := "RESOURCE_ALREADY_EXISTS"
	if !attach {
		want = "RESOURCE_NOT_FOUND"
	}
	if op == nil || op.Error == nil {
		return false
	}
	for _, e := range op.Error.Errors {
		if e.Code != want {
			return false
		}
	}
	return op.Status == "DONE" && len(op.Error.Errors) > 0
}

// Release implements providers.Provider. ref names the NEGs and the
// backend service they were added to. When the binding still uses NEGs
// of the same name (only the backend service changed), the NEGs and their
// endpoints stay and only leave the old backend service; otherwise every
// zone's NEG of ours leaves that backend service and is deleted. NEGs
// whose description is not this binding's are never touched; what is
// already gone counts as released.
func (p *Provider) Release(ctx context.Context, key providers.BindingKey, ref string, _ []providers.TargetKey) error {
	name, bsPath, err := parseRef(ref)
	if err != nil {
		return err
	}
	p.mu.Lock()
	keepNEGs := false
	if st := p.bindings[key]; st != nil && st.group != nil {
		current := st.group.Provider.(*groupState)
		switch {
		case st.group.Ref == ref:
			delete(p.bindings, key)
		case current.name == name:
			keepNEGs = true
		}
	}
	p.mu.Unlock()
	if keepNEGs && bsPath == "" {
		return nil
	}

	found, err := p.findNEGs(ctx, name)
	if err != nil {
		return err
	}
	ours := map[string]string{} // zone -> selfLink
	for zone, n := range found {
		if OwnedBy(n.Description, p.opts.Cluster, key) {
			ours[zone] = n.SelfLink
		}
	}
	if bsPath != "" && len(ours) > 0 {
		bsRef, err := parseServiceRef(bsPath)
		if err != nil {
			return providers.Classify(providers.Invalid, "", err)
		}
		if err := p.removeBackends(ctx, bsRef, ours); err != nil {
			return err
		}
	}
	if keepNEGs {
		return nil
	}
	var errs *multierror.Error
	for _, zone := range slices.Sorted(maps.Keys(ours)) {
		if err := p.deleteOwnedNEG(ctx, zone, name); err != nil {
			errs = multierror.Append(errs, fmt.Errorf("zone %s: %w", zone, err))
		}
	}
	if err := errs.ErrorOrNil(); err != nil {
		return combine(err, "deleting NEGs "+name)
	}
	return nil
}

// removeBackends takes our NEGs out of a backend service; a service that
// is gone has nothing to remove.
func (p *Provider) removeBackends(ctx context.Context, ref serviceRef, links map[string]string) error {
	drop := map[string]bool{}
	for _, link := range links {
		drop[resourcePath(link)] = true
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		bs, err := p.backendService(ctx, ref)
		if providers.ClassOf(err) == providers.NotFound {
			return nil
		}
		if err != nil {
			return err
		}
		var keep []*compute.Backend
		for _, back := range bs.Backends {
			if !drop[resourcePath(back.Group)] {
				keep = append(keep, back)
			}
		}
		if len(keep) == len(bs.Backends) {
			return nil
		}
		if p.beforeBackendWrite != nil {
			p.beforeBackendWrite()
		}
		err = p.writeBackends(ctx, ref, bs, keep)
		if err == nil || providers.ClassOf(err) == providers.NotFound {
			return nil
		}
		if !isCode(err, 412) || attempt == attempts {
			return err
		}
	}
}

// neg returns the shared state of one NEG.
func (p *Provider) neg(path string) *negState {
	p.mu.Lock()
	defer p.mu.Unlock()
	ns := p.negs[path]
	if ns == nil {
		ns = &negState{}
		p.negs[path] = ns
	}
	return ns
}

func (p *Provider) forgetNEG(path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.negs, path)
}

// invalidate makes the next Ensure of key resolve again, with an
// aggregated look for its NEGs when one went missing.
func (p *Provider) invalidate(key providers.BindingKey, lookAgain bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.bindings[key]; st != nil {
		st.fetched = time.Time{}
		if st.group != nil {
			st.group.Serving = false
		}
		if lookAgain {
			st.swept = ""
		}
	}
}

// snapshot returns the attached endpoints as the followed operations
// will leave them (nil: not known, list first), and whether the record is
// fresh enough to trust without a check.
func (ns *negState) snapshot(ttl time.Duration) (map[providers.TargetKey]string, bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.forgetLandedLocked()
	if !ns.knownLocked() {
		return nil, false
	}
	return ns.movedLocked(ns.attached), ns.freshLocked(ttl)
}

// confirm makes the record count as listed at began, when a getHealth
// begun then bore it out (see bearsOut) and no operation on the NEG ran
// since: none is followed and none ended after began. It reports whether
// it did.
func (ns *negState) confirm(began time.Time) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if !ns.knownLocked() || len(ns.inFlight) > 0 {
		return false
	}
	for _, l := range ns.landed {
		if !l.at.Before(began) {
			return false
		}
	}
	if began.After(ns.listed) {
		ns.listed = began
	}
	return true
}

// bearsOut reports whether getHealth's answer is exactly the recorded
// endpoints: each once, on its VM, none draining (a draining endpoint
// may have been detached and attached again, or detached by someone
// else). Then getHealth stands for a list: an endpoint attached or
// detached behind podlb's back shows as one too many or one missing.
func bearsOut(attached map[providers.TargetKey]string, health []*compute.HealthStatus) bool {
	if len(health) != len(attached) {
		return false
	}
	seen := make(map[providers.TargetKey]bool, len(health))
	for _, h := range health {
		k, ok := endpointKey(h.IpAddress, h.Port)
		instance, recorded := attached[k]
		if !ok || !recorded || seen[k] || h.HealthState == "DRAINING" ||
			(h.Instance != "" && lastSegment(h.Instance) != instance) {
			return false
		}
		seen[k] = true
	}
	return true
}

// set records a list of the NEG begun at began, with the changes whose
// operations ended since applied, and returns it as the followed
// operations will leave it: a list taken while they run does not show
// them yet.
func (ns *negState) set(attached map[providers.TargetKey]string, began time.Time) map[providers.TargetKey]string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.attached = maps.Clone(attached)
	if ns.attached == nil {
		ns.attached = map[providers.TargetKey]string{}
	}
	ns.forgetLandedLocked()
	for k, l := range ns.landed {
		switch {
		case l.at.Before(began):
		case l.attach:
			ns.attached[k] = l.instance
		default:
			delete(ns.attached, k)
		}
	}
	ns.listed = began
	return ns.movedLocked(ns.attached)
}

// forgetLandedLocked forgets the changes no read still running began
// before, and the map's room once none is left.
func (ns *negState) forgetLandedLocked() {
	maps.DeleteFunc(ns.landed, func(_ providers.TargetKey, l landing) bool { return time.Since(l.at) > landedKept })
	if len(ns.landed) == 0 {
		ns.landed = nil
	}
}

// movedLocked returns a copy of attached with the followed operations
// applied.
func (ns *negState) movedLocked(attached map[providers.TargetKey]string) map[providers.TargetKey]string {
	out := maps.Clone(attached)
	for k, m := range ns.inFlight {
		if m.attach {
			out[k] = m.instance
		} else {
			delete(out, k)
		}
	}
	return out
}

// detaching reports whether a followed operation is detaching k, or a
// detach of k ended since since.
func (ns *negState) detaching(k providers.TargetKey, since time.Time) bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if m, ok := ns.inFlight[k]; ok {
		return !m.attach
	}
	l, ok := ns.landed[k]
	return ok && !l.attach && !l.at.Before(since)
}

func (ns *negState) expire() {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.listed = time.Time{}
}

// record applies a completed operation to the known endpoints, and
// keeps it for the lists begun before it (set).
func (ns *negState) record(batch []providers.Target, attach bool) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	now := time.Now()
	ns.forgetLandedLocked()
	if ns.landed == nil {
		ns.landed = make(map[providers.TargetKey]landing, len(batch))
	}
	for _, t := range batch {
		ns.landed[t.Key()] = landing{t.Instance, attach, now}
	}
	if ns.attached == nil {
		return // unknown until listed; keep it so
	}
	for _, t := range batch {
		if attach {
			ns.attached[t.Key()] = t.Instance
		} else {
			delete(ns.attached, t.Key())
		}
	}
}

// begin marks a batch whose operation is followed in the background.
func (ns *negState) begin(batch []providers.Target, attach bool) *flight {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.inFlight == nil {
		ns.inFlight = map[providers.TargetKey]moving{}
	}
	for _, t := range batch {
		ns.inFlight[t.Key()] = moving{ns.instanceLocked(t), attach}
	}
	f := &flight{attach: attach, batch: batch, done: make(chan struct{})}
	ns.flights = append(ns.flights, f)
	return f
}

// land ends a followed operation: the endpoints GCE refused and, when it
// failed as a whole (err), that failure are kept for the next Apply, and
// the NEG is listed again before it is trusted.
func (ns *negState) land(f *flight, refused map[providers.TargetKey]error, err error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for _, t := range f.batch {
		delete(ns.inFlight, t.Key())
	}
	now := time.Now()
	for k, e := range refused {
		if ns.refused == nil {
			ns.refused = map[providers.TargetKey]refusedEndpoint{}
		}
		ns.refused[k] = refusedEndpoint{e, f.attach, now}
	}
	if err != nil {
		ns.failed = err
		ns.listed = time.Time{}
	}
	ns.flights = slices.DeleteFunc(ns.flights, func(g *flight) bool { return g == f })
	if len(ns.flights) == 0 {
		// A map keeps the room of its largest batch: a NEG at rest
		// holds none (1.5 MB over 3,000 NEGs after a fill).
		ns.inFlight, ns.flights = nil, nil
	}
	close(f.done)
}

// awaitFlights waits until the followed operations that match (all when
// match is nil) have ended.
func (ns *negState) awaitFlights(ctx context.Context, match func(*flight) bool) error {
	ns.mu.Lock()
	var flights []*flight
	for _, f := range ns.flights {
		if match == nil || match(f) {
			flights = append(flights, f)
		}
	}
	ns.mu.Unlock()
	for _, f := range flights {
		select {
		case <-f.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// takeRefused removes from ts the endpoints a followed operation of the
// same direction refused and returns them with their errors; refusals no
// one asked about for refusedKept, or of the other direction, are dropped.
func (ns *negState) takeRefused(ts []providers.Target, attach bool) ([]providers.Target, map[providers.TargetKey]error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	out := map[providers.TargetKey]error{}
	if len(ns.refused) == 0 {
		return ts, out
	}
	ts = slices.DeleteFunc(ts, func(t providers.Target) bool {
		r, ok := ns.refused[t.Key()]
		delete(ns.refused, t.Key())
		if ok && r.attach == attach {
			out[t.Key()] = r.err
			return true
		}
		return false
	})
	maps.DeleteFunc(ns.refused, func(_ providers.TargetKey, r refusedEndpoint) bool { return time.Since(r.at) > refusedKept })
	return ts, out
}

// takeFailure returns and forgets the failure of a followed operation.
func (ns *negState) takeFailure() error {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	err := ns.failed
	ns.failed = nil
	return err
}

// known is whether the attached endpoints are known: listed once, and
// not put in doubt since (a failed operation, an endpoint someone else
// attached).
func (ns *negState) known() bool {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.knownLocked()
}

func (ns *negState) knownLocked() bool { return ns.attached != nil && !ns.listed.IsZero() }

// freshLocked reports whether the record is known and younger than ttl.
func (ns *negState) freshLocked(ttl time.Duration) bool {
	return ns.knownLocked() && time.Since(ns.listed) < ttl
}

// notAttached drops the targets being attached, and those a fresh record
// shows attached: when a plan is sent again after some zones' calls
// failed (throttled), the zones that succeeded spend no operation, which
// under the concurrent-operation quota would fail with
// RESOURCE_ALREADY_EXISTS and hold the slot the zones still to do need.
func (ns *negState) notAttached(ts []providers.Target, ttl time.Duration) []providers.Target {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ts = slices.DeleteFunc(ts, func(t providers.Target) bool {
		m, ok := ns.inFlight[t.Key()]
		return ok && m.attach
	})
	if !ns.freshLocked(ttl) {
		return ts
	}
	return unapplied(ts, ns.attached, true)
}

// notDetaching drops the targets being detached. Other detaches are
// always sent: a record missing an endpoint someone attached since the
// list must not keep it serving.
func (ns *negState) notDetaching(ts []providers.Target) []providers.Target {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return slices.DeleteFunc(ts, func(t providers.Target) bool {
		m, ok := ns.inFlight[t.Key()]
		return ok && !m.attach
	})
}

// unapplied filters ts in place down to the targets whose change the
// attached set does not show yet: not in it for an attach, still in it
// for a detach.
func unapplied(ts []providers.Target, attached map[providers.TargetKey]string, attach bool) []providers.Target {
	return slices.DeleteFunc(ts, func(t providers.Target) bool {
		_, in := attached[t.Key()]
		return in == attach
	})
}

// instanceLocked is t's VM: its own, else the one it was attached on.
func (ns *negState) instanceLocked(t providers.Target) string {
	if t.Instance != "" {
		return t.Instance
	}
	if m, ok := ns.inFlight[t.Key()]; ok && m.instance != "" {
		return m.instance
	}
	return ns.attached[t.Key()]
}

func (ns *negState) instance(t providers.Target) string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return ns.instanceLocked(t)
}

// combine keeps the class (and field) of the first failure and the text
// of all of them.
func combine(err error, what string) error {
	var me *multierror.Error
	if !errors.As(err, &me) {
		return providers.Classify(providers.ClassOf(err), "", fmt.Errorf("%s: %w", what, err))
	}
	var errs []error
	for _, e := range me.Errors {
		if e != nil {
			errs = append(errs, e)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	field := ""
	var pe *providers.Error
	if errors.As(errs[0], &pe) {
		field = pe.Field
	}
	return &providers.Error{Class: providers.ClassOf(errs[0]), Field: field, Err: &failures{what: what, errs: errs}}
}

// failures reads as one line and unwraps to every failure.
type failures struct {
	what string
	errs []error
}

func (f *failures) Error() string {
	msgs := make([]string, len(f.errs))
	for i, e := range f.errs {
		msgs[i] = e.Error()
	}
	return f.what + ": " + strings.Join(msgs, "; ")
}

func (f *failures) Unwrap() []error { return f.errs }
