package gcp

import (
	"context"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"google.golang.org/protobuf/proto"

	"github.com/podlb/podlb/providers"
)

// scope is where a load balancer's resources live: global (region "") or
// one region. Compute serves each kind from a global and a regional
// collection with the same shapes and different request types.
type scope struct{ region string }

// path is the relative path of a resource of collection in this scope.
func (sc scope) path(project, collection, name string) string {
	if sc.region == "" {
		return "projects/" + project + "/global/" + collection + "/" + name
	}
	return "projects/" + project + "/regions/" + sc.region + "/" + collection + "/" + name
}

// lbResource is what every load-balancer resource podlb manages offers.
type lbResource interface {
	comparable
	GetName() string
	GetDescription() string
	GetSelfLink() string
}

// kind reaches one resource kind in either scope through the apiv1
// clients. Method ids (for limits and metrics) are GCE's: global and
// regional collections have their own.
type kind[T lbResource] struct {
	what           string // for messages: "URL map"
	global, region string // method id prefixes: "urlMaps", "regionUrlMaps"
	get            func(ctx context.Context, c *clients, project string, sc scope, name string) (T, error)
	insert         func(ctx context.Context, c *clients, project string, sc scope, r T) (*compute.Operation, error)
	remove         func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error)
	// list is set for the kinds podlb creates per backend, which a
	// deletion has to find without knowing the backends.
	list func(ctx context.Context, c *clients, project string, sc scope, filter *string, each func(T)) error
}

func (k kind[T]) op(sc scope, verb string) string {
	if sc.region == "" {
		return k.global + "." + verb
	}
	return k.region + "." + verb
}

// read gets a resource of the provider's project; found is false when it
// does not exist.
func (k kind[T]) read(ctx context.Context, p *Provider, sc scope, name string) (r T, found bool, err error) {
	r, err = k.getIn(ctx, p, p.opts.Project, sc, name)
	if providers.ClassOf(err) == providers.NotFound {
		var zero T
		return zero, false, nil
	}
	return r, err == nil, err
}

// getIn gets a resource of project.
func (k kind[T]) getIn(ctx context.Context, p *Provider, project string, sc scope, name string) (r T, err error) {
	err = p.call(ctx, k.op(sc, "get"), func(ctx context.Context) (err error) {
		r, err = k.get(ctx, &p.c, project, sc, name)
		return err
	})
	return r, err
}

// create inserts a resource and awaits the operation.
func (k kind[T]) create(ctx context.Context, p *Provider, sc scope, r T) error {
	return p.mutate(ctx, k.op(sc, "insert"), func(ctx context.Context) (*compute.Operation, error) {
		return k.insert(ctx, &p.c, p.opts.Project, sc, r)
	})
}

// del deletes a resource; one already gone counts as deleted.
func (k kind[T]) del(ctx context.Context, p *Provider, sc scope, name string) error {
	err := p.mutate(ctx, k.op(sc, "delete"), func(ctx context.Context) (*compute.Operation, error) {
		return k.remove(ctx, &p.c, p.opts.Project, sc, name)
	})
	if providers.ClassOf(err) == providers.NotFound {
		return nil
	}
	return err
}

// generatedNames is a list filter (RE2, full match) for the names podlb
// generates, so a list skips the project's other resources.
var generatedNames = proto.String("name eq " + generatedPrefix + "-.*")

// all lists the kind's resources with generated names in a scope.
func (k kind[T]) all(ctx context.Context, p *Provider, sc scope) ([]T, error) {
	return k.matching(ctx, p, sc, generatedNames)
}

// matching lists the kind's resources in a scope that filter (nil: all)
// matches, starting over when the call is retried.
func (k kind[T]) matching(ctx context.Context, p *Provider, sc scope, filter *string) ([]T, error) {
	var out []T
	err := k.eachIn(ctx, p, p.opts.Project, sc, filter, func() { out = out[:0] }, func(r T) { out = append(out, r) })
	return out, err
}

// eachIn hands each of the kind's resources of project in a scope that
// filter (nil: all) matches to each; restart runs before every attempt,
// as a retried list starts over.
func (k kind[T]) eachIn(ctx context.Context, p *Provider, project string, sc scope, filter *string, restart func(), each func(T)) error {
	return p.call(ctx, k.op(sc, "list"), func(ctx context.Context) error {
		restart()
		return k.list(ctx, &p.c, project, sc, filter, each)
	})
}

// drain hands every item of a list iterator to each.
func drain[T any](it interface{ Next() (T, error) }, each func(T)) error {
	for {
		r, err := it.Next()
		if err == iterator.Done {
			return nil
		}
		if err != nil {
			return err
		}
		each(r)
	}
}

var healthChecks = kind[*computepb.HealthCheck]{
	what: "health check", global: "healthChecks", region: "regionHealthChecks",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.HealthCheck, error) {
		if sc.region == "" {
			return c.hcs.Get(ctx, &computepb.GetHealthCheckRequest{Project: project, HealthCheck: name})
		}
		return c.rhcs.Get(ctx, &computepb.GetRegionHealthCheckRequest{Project: project, Region: sc.region, HealthCheck: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.HealthCheck) (*compute.Operation, error) {
		if sc.region == "" {
			return c.hcs.Insert(ctx, &computepb.InsertHealthCheckRequest{Project: project, HealthCheckResource: r})
		}
		return c.rhcs.Insert(ctx, &computepb.InsertRegionHealthCheckRequest{Project: project, Region: sc.region, HealthCheckResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.hcs.Delete(ctx, &computepb.DeleteHealthCheckRequest{Project: project, HealthCheck: name})
		}
		return c.rhcs.Delete(ctx, &computepb.DeleteRegionHealthCheckRequest{Project: project, Region: sc.region, HealthCheck: name})
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter *string, each func(*computepb.HealthCheck)) error {
		if sc.region == "" {
			return drain(c.hcs.List(ctx, &computepb.ListHealthChecksRequest{Project: project, Filter: filter}), each)
		}
		return drain(c.rhcs.List(ctx, &computepb.ListRegionHealthChecksRequest{Project: project, Region: sc.region, Filter: filter}), each)
	},
}

// updateHealthCheck replaces a health check (they carry no fingerprint).
func (p *Provider) updateHealthCheck(ctx context.Context, sc scope, hc *computepb.HealthCheck) error {
	return p.mutate(ctx, healthChecks.op(sc, "update"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.hcs.Update(ctx, &computepb.UpdateHealthCheckRequest{Project: p.opts.Project, HealthCheck: hc.GetName(), HealthCheckResource: hc})
		}
		return p.c.rhcs.Update(ctx, &computepb.UpdateRegionHealthCheckRequest{Project: p.opts.Project, Region: sc.region, HealthCheck: hc.GetName(), HealthCheckResource: hc})
	})
}

var backendServices = kind[*computepb.BackendService]{
	what: "backend service", global: "backendServices", region: "regionBackendServices",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.BackendService, error) {
		if sc.region == "" {
			return c.bs.Get(ctx, &computepb.GetBackendServiceRequest{Project: project, BackendService: name})
		}
		return c.rbs.Get(ctx, &computepb.GetRegionBackendServiceRequest{Project: project, Region: sc.region, BackendService: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.BackendService) (*compute.Operation, error) {
		if sc.region == "" {
			return c.bs.Insert(ctx, &computepb.InsertBackendServiceRequest{Project: project, BackendServiceResource: r})
		}
		return c.rbs.Insert(ctx, &computepb.InsertRegionBackendServiceRequest{Project: project, Region: sc.region, BackendServiceResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.bs.Delete(ctx, &computepb.DeleteBackendServiceRequest{Project: project, BackendService: name})
		}
		return c.rbs.Delete(ctx, &computepb.DeleteRegionBackendServiceRequest{Project: project, Region: sc.region, BackendService: name})
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter *string, each func(*computepb.BackendService)) error {
		if sc.region == "" {
			return drain(c.bs.List(ctx, &computepb.ListBackendServicesRequest{Project: project, Filter: filter}), each)
		}
		return drain(c.rbs.List(ctx, &computepb.ListRegionBackendServicesRequest{Project: project, Region: sc.region, Filter: filter}), each)
	},
}

// patchBackendService changes the fields set in patch, guarded by its
// fingerprint; the backend list (the target bindings') is left alone
// because patch omits it.
func (p *Provider) patchBackendService(ctx context.Context, sc scope, name string, patch *computepb.BackendService) error {
	return p.mutate(ctx, backendServices.op(sc, "patch"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.bs.Patch(ctx, &computepb.PatchBackendServiceRequest{Project: p.opts.Project, BackendService: name, BackendServiceResource: patch})
		}
		return p.c.rbs.Patch(ctx, &computepb.PatchRegionBackendServiceRequest{Project: p.opts.Project, Region: sc.region, BackendService: name, BackendServiceResource: patch})
	})
}

var urlMaps = kind[*computepb.UrlMap]{
	what: "URL map", global: "urlMaps", region: "regionUrlMaps",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.UrlMap, error) {
		if sc.region == "" {
			return c.ums.Get(ctx, &computepb.GetUrlMapRequest{Project: project, UrlMap: name})
		}
		return c.rums.Get(ctx, &computepb.GetRegionUrlMapRequest{Project: project, Region: sc.region, UrlMap: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.UrlMap) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ums.Insert(ctx, &computepb.InsertUrlMapRequest{Project: project, UrlMapResource: r})
		}
		return c.rums.Insert(ctx, &computepb.InsertRegionUrlMapRequest{Project: project, Region: sc.region, UrlMapResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ums.Delete(ctx, &computepb.DeleteUrlMapRequest{Project: project, UrlMap: name})
		}
		return c.rums.Delete(ctx, &computepb.DeleteRegionUrlMapRequest{Project: project, Region: sc.region, UrlMap: name})
	},
}

// updateURLMap replaces a URL map, guarded by the fingerprint in um.
// Update rather than patch: a patch leaves out an emptied list (host
// rules, path matchers), so it could never remove the last route.
func (p *Provider) updateURLMap(ctx context.Context, sc scope, um *computepb.UrlMap) error {
	return p.mutate(ctx, urlMaps.op(sc, "update"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.ums.Update(ctx, &computepb.UpdateUrlMapRequest{Project: p.opts.Project, UrlMap: um.GetName(), UrlMapResource: um})
		}
		return p.c.rums.Update(ctx, &computepb.UpdateRegionUrlMapRequest{Project: p.opts.Project, Region: sc.region, UrlMap: um.GetName(), UrlMapResource: um})
	})
}

var httpProxies = kind[*computepb.TargetHttpProxy]{
	what: "target HTTP proxy", global: "targetHttpProxies", region: "regionTargetHttpProxies",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.TargetHttpProxy, error) {
		if sc.region == "" {
			return c.thps.Get(ctx, &computepb.GetTargetHttpProxyRequest{Project: project, TargetHttpProxy: name})
		}
		return c.rthps.Get(ctx, &computepb.GetRegionTargetHttpProxyRequest{Project: project, Region: sc.region, TargetHttpProxy: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.TargetHttpProxy) (*compute.Operation, error) {
		if sc.region == "" {
			return c.thps.Insert(ctx, &computepb.InsertTargetHttpProxyRequest{Project: project, TargetHttpProxyResource: r})
		}
		return c.rthps.Insert(ctx, &computepb.InsertRegionTargetHttpProxyRequest{Project: project, Region: sc.region, TargetHttpProxyResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.thps.Delete(ctx, &computepb.DeleteTargetHttpProxyRequest{Project: project, TargetHttpProxy: name})
		}
		return c.rthps.Delete(ctx, &computepb.DeleteRegionTargetHttpProxyRequest{Project: project, Region: sc.region, TargetHttpProxy: name})
	},
}

var httpsProxies = kind[*computepb.TargetHttpsProxy]{
	what: "target HTTPS proxy", global: "targetHttpsProxies", region: "regionTargetHttpsProxies",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.TargetHttpsProxy, error) {
		if sc.region == "" {
			return c.tsps.Get(ctx, &computepb.GetTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: name})
		}
		return c.rtsps.Get(ctx, &computepb.GetRegionTargetHttpsProxyRequest{Project: project, Region: sc.region, TargetHttpsProxy: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.TargetHttpsProxy) (*compute.Operation, error) {
		if sc.region == "" {
			return c.tsps.Insert(ctx, &computepb.InsertTargetHttpsProxyRequest{Project: project, TargetHttpsProxyResource: r})
		}
		return c.rtsps.Insert(ctx, &computepb.InsertRegionTargetHttpsProxyRequest{Project: project, Region: sc.region, TargetHttpsProxyResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.tsps.Delete(ctx, &computepb.DeleteTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: name})
		}
		return c.rtsps.Delete(ctx, &computepb.DeleteRegionTargetHttpsProxyRequest{Project: project, Region: sc.region, TargetHttpsProxy: name})
	},
}

// setProxyURLMap points a target HTTP or HTTPS proxy at another URL map.
func (p *Provider) setProxyURLMap(ctx context.Context, sc scope, https bool, proxy, urlMap string) error {
	ref := &computepb.UrlMapReference{UrlMap: &urlMap}
	k := httpProxies.op(sc, "setUrlMap")
	if https {
		k = httpsProxies.op(sc, "setUrlMap")
	}
	project := p.opts.Project
	return p.mutate(ctx, k, func(ctx context.Context) (*compute.Operation, error) {
		switch {
		case !https && sc.region == "":
			return p.c.thps.SetUrlMap(ctx, &computepb.SetUrlMapTargetHttpProxyRequest{Project: project, TargetHttpProxy: proxy, UrlMapReferenceResource: ref})
		case !https:
			return p.c.rthps.SetUrlMap(ctx, &computepb.SetUrlMapRegionTargetHttpProxyRequest{Project: project, Region: sc.region, TargetHttpProxy: proxy, UrlMapReferenceResource: ref})
		case sc.region == "":
			return p.c.tsps.SetUrlMap(ctx, &computepb.SetUrlMapTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: proxy, UrlMapReferenceResource: ref})
		}
		return p.c.rtsps.SetUrlMap(ctx, &computepb.SetUrlMapRegionTargetHttpsProxyRequest{Project: project, Region: sc.region, TargetHttpsProxy: proxy, UrlMapReferenceResource: ref})
	})
}

// setProxyCertificates replaces an HTTPS proxy's certificates.
func (p *Provider) setProxyCertificates(ctx context.Context, sc scope, proxy string, certs []string) error {
	project := p.opts.Project
	return p.mutate(ctx, httpsProxies.op(sc, "setSslCertificates"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.tsps.SetSslCertificates(ctx, &computepb.SetSslCertificatesTargetHttpsProxyRequest{Project: project, TargetHttpsProxy: proxy,
				TargetHttpsProxiesSetSslCertificatesRequestResource: &computepb.TargetHttpsProxiesSetSslCertificatesRequest{SslCertificates: certs}})
		}
		return p.c.rtsps.SetSslCertificates(ctx, &computepb.SetSslCertificatesRegionTargetHttpsProxyRequest{Project: project, Region: sc.region, TargetHttpsProxy: proxy,
			RegionTargetHttpsProxiesSetSslCertificatesRequestResource: &computepb.RegionTargetHttpsProxiesSetSslCertificatesRequest{SslCertificates: certs}})
	})
}

var forwardingRules = kind[*computepb.ForwardingRule]{
	what: "forwarding rule", global: "globalForwardingRules", region: "forwardingRules",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.ForwardingRule, error) {
		if sc.region == "" {
			return c.gfrs.Get(ctx, &computepb.GetGlobalForwardingRuleRequest{Project: project, ForwardingRule: name})
		}
		return c.frs.Get(ctx, &computepb.GetForwardingRuleRequest{Project: project, Region: sc.region, ForwardingRule: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.ForwardingRule) (*compute.Operation, error) {
		if sc.region == "" {
			return c.gfrs.Insert(ctx, &computepb.InsertGlobalForwardingRuleRequest{Project: project, ForwardingRuleResource: r})
		}
		return c.frs.Insert(ctx, &computepb.InsertForwardingRuleRequest{Project: project, Region: sc.region, ForwardingRuleResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.gfrs.Delete(ctx, &computepb.DeleteGlobalForwardingRuleRequest{Project: project, ForwardingRule: name})
		}
		return c.frs.Delete(ctx, &computepb.DeleteForwardingRuleRequest{Project: project, Region: sc.region, ForwardingRule: name})
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter *string, each func(*computepb.ForwardingRule)) error {
		if sc.region == "" {
			return drain(c.gfrs.List(ctx, &computepb.ListGlobalForwardingRulesRequest{Project: project, Filter: filter}), each)
		}
		return drain(c.frs.List(ctx, &computepb.ListForwardingRulesRequest{Project: project, Region: sc.region, Filter: filter}), each)
	},
}

var tcpProxies = kind[*computepb.TargetTcpProxy]{
	what: "target TCP proxy", global: "targetTcpProxies", region: "regionTargetTcpProxies",
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*computepb.TargetTcpProxy, error) {
		if sc.region == "" {
			return c.ttps.Get(ctx, &computepb.GetTargetTcpProxyRequest{Project: project, TargetTcpProxy: name})
		}
		return c.rttps.Get(ctx, &computepb.GetRegionTargetTcpProxyRequest{Project: project, Region: sc.region, TargetTcpProxy: name})
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *computepb.TargetTcpProxy) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ttps.Insert(ctx, &computepb.InsertTargetTcpProxyRequest{Project: project, TargetTcpProxyResource: r})
		}
		return c.rttps.Insert(ctx, &computepb.InsertRegionTargetTcpProxyRequest{Project: project, Region: sc.region, TargetTcpProxyResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ttps.Delete(ctx, &computepb.DeleteTargetTcpProxyRequest{Project: project, TargetTcpProxy: name})
		}
		return c.rttps.Delete(ctx, &computepb.DeleteRegionTargetTcpProxyRequest{Project: project, Region: sc.region, TargetTcpProxy: name})
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter *string, each func(*computepb.TargetTcpProxy)) error {
		if sc.region == "" {
			return drain(c.ttps.List(ctx, &computepb.ListTargetTcpProxiesRequest{Project: project, Filter: filter}), each)
		}
		return drain(c.rttps.List(ctx, &computepb.ListRegionTargetTcpProxiesRequest{Project: project, Region: sc.region, Filter: filter}), each)
	},
}

// sslProxies are global only, as on GCE: a regional proxy Network Load
// Balancer terminates no TLS.
var sslProxies = kind[*computepb.TargetSslProxy]{
	what: "target SSL proxy", global: "targetSslProxies", region: "regionTargetSslProxies",
	get: func(ctx context.Context, c *clients, project string, _ scope, name string) (*computepb.TargetSslProxy, error) {
		return c.tslps.Get(ctx, &computepb.GetTargetSslProxyRequest{Project: project, TargetSslProxy: name})
	},
	insert: func(ctx context.Context, c *clients, project string, _ scope, r *computepb.TargetSslProxy) (*compute.Operation, error) {
		return c.tslps.Insert(ctx, &computepb.InsertTargetSslProxyRequest{Project: project, TargetSslProxyResource: r})
	},
	remove: func(ctx context.Context, c *clients, project string, _ scope, name string) (*compute.Operation, error) {
		return c.tslps.Delete(ctx, &computepb.DeleteTargetSslProxyRequest{Project: project, TargetSslProxy: name})
	},
	list: func(ctx context.Context, c *clients, project string, _ scope, filter *string, each func(*computepb.TargetSslProxy)) error {
		return drain(c.tslps.List(ctx, &computepb.ListTargetSslProxiesRequest{Project: project, Filter: filter}), each)
	},
}

// setSSLProxyCertificates replaces a target SSL proxy's certificates.
func (p *Provider) setSSLProxyCertificates(ctx context.Context, proxy string, certs []string) error {
	return p.mutate(ctx, sslProxies.op(scope{}, "setSslCertificates"), func(ctx context.Context) (*compute.Operation, error) {
		return p.c.tslps.SetSslCertificates(ctx, &computepb.SetSslCertificatesTargetSslProxyRequest{Project: p.opts.Project, TargetSslProxy: proxy,
			TargetSslProxiesSetSslCertificatesRequestResource: &computepb.TargetSslProxiesSetSslCertificatesRequest{SslCertificates: certs}})
	})
}

// addressIP resolves a reserved address of the scope by name.
func (p *Provider) addressIP(ctx context.Context, sc scope, name string) (string, bool, error) {
	var a *computepb.Address
	op := "globalAddresses.get"
	if sc.region != "" {
		op = "addresses.get"
	}
	err := p.call(ctx, op, func(ctx context.Context) (err error) {
		if sc.region == "" {
			a, err = p.c.gaddr.Get(ctx, &computepb.GetGlobalAddressRequest{Project: p.opts.Project, Address: name})
		} else {
			a, err = p.c.addr.Get(ctx, &computepb.GetAddressRequest{Project: p.opts.Project, Region: sc.region, Address: name})
		}
		return err
	})
	if providers.ClassOf(err) == providers.NotFound {
		return "", false, nil
	}
	return a.GetAddress(), err == nil, err
}
