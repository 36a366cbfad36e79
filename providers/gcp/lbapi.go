package gcp

import (
	"context"

	compute "google.golang.org/api/compute/v1"

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

// kind reaches one resource kind in either scope through the Compute
// services. Method ids (for limits and metrics) are GCE's: global and
// regional collections have their own.
type kind[T comparable] struct {
	what           string // for messages: "URL map"
	global, region string // method id prefixes: "urlMaps", "regionUrlMaps"
	// about is a resource's name and description (its owner).
	about  func(T) (name, description string)
	get    func(ctx context.Context, c *clients, project string, sc scope, name string) (T, error)
	insert func(ctx context.Context, c *clients, project string, sc scope, r T) (*compute.Operation, error)
	remove func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error)
	// list is set for the kinds podlb creates per backend, which a
	// deletion has to find without knowing the backends.
	list func(ctx context.Context, c *clients, project string, sc scope, filter string, each func(T)) error
}

func (k kind[T]) op(sc scope, verb string) string {
	if sc.region == "" {
		return k.global + "." + verb
	}
	return k.region + "." + verb
}

// name is a resource's name.
func (k kind[T]) name(r T) string {
	name, _ := k.about(r)
	return name
}

// description is a resource's description, which names its owner.
func (k kind[T]) description(r T) string {
	_, description := k.about(r)
	return description
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
	err = p.calls.Call(ctx, k.op(sc, "get"), func(ctx context.Context) (err error) {
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
const generatedNames = "name eq " + generatedPrefix + "-.*"

// all lists the kind's resources with generated names in a scope.
func (k kind[T]) all(ctx context.Context, p *Provider, sc scope) ([]T, error) {
	return k.matching(ctx, p, sc, generatedNames)
}

// matching lists the kind's resources in a scope that filter ("": all)
// matches, starting over when the call is retried.
func (k kind[T]) matching(ctx context.Context, p *Provider, sc scope, filter string) ([]T, error) {
	var out []T
	err := k.eachIn(ctx, p, p.opts.Project, sc, filter, func() { out = out[:0] }, func(r T) { out = append(out, r) })
	return out, err
}

// eachIn hands each of the kind's resources of project in a scope that
// filter ("": all) matches to each; restart runs before every attempt,
// as a retried list starts over.
func (k kind[T]) eachIn(ctx context.Context, p *Provider, project string, sc scope, filter string, restart func(), each func(T)) error {
	return p.calls.Call(ctx, k.op(sc, "list"), func(ctx context.Context) error {
		restart()
		return k.list(ctx, &p.c, project, sc, filter, each)
	})
}

// lister is a list call of the Compute services, P its page.
type lister[C any, P any] interface {
	Filter(string) C
	Pages(context.Context, func(P) error) error
}

// eachListed runs a list call, filtered unless filter is "", and hands
// the items of each page to each.
func eachListed[C lister[C, P], P any, T any](ctx context.Context, call C, filter string, items func(P) []T, each func(T)) error {
	if filter != "" {
		call = call.Filter(filter)
	}
	return call.Pages(ctx, func(page P) error {
		for _, r := range items(page) {
			each(r)
		}
		return nil
	})
}

var healthChecks = kind[*compute.HealthCheck]{
	what: "health check", global: "healthChecks", region: "regionHealthChecks",
	about: func(r *compute.HealthCheck) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.HealthCheck, error) {
		if sc.region == "" {
			return c.hcs.Get(project, name).Context(ctx).Do()
		}
		return c.rhcs.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.HealthCheck) (*compute.Operation, error) {
		if sc.region == "" {
			return c.hcs.Insert(project, r).Context(ctx).Do()
		}
		return c.rhcs.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.hcs.Delete(project, name).Context(ctx).Do()
		}
		return c.rhcs.Delete(project, sc.region, name).Context(ctx).Do()
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter string, each func(*compute.HealthCheck)) error {
		items := func(l *compute.HealthCheckList) []*compute.HealthCheck { return l.Items }
		if sc.region == "" {
			return eachListed(ctx, c.hcs.List(project), filter, items, each)
		}
		return eachListed(ctx, c.rhcs.List(project, sc.region), filter, items, each)
	},
}

// updateHealthCheck replaces a health check (they carry no fingerprint).
func (p *Provider) updateHealthCheck(ctx context.Context, sc scope, hc *compute.HealthCheck) error {
	return p.mutate(ctx, healthChecks.op(sc, "update"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.hcs.Update(p.opts.Project, hc.Name, hc).Context(ctx).Do()
		}
		return p.c.rhcs.Update(p.opts.Project, sc.region, hc.Name, hc).Context(ctx).Do()
	})
}

var backendServices = kind[*compute.BackendService]{
	what: "backend service", global: "backendServices", region: "regionBackendServices",
	about: func(r *compute.BackendService) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.BackendService, error) {
		if sc.region == "" {
			return c.bs.Get(project, name).Context(ctx).Do()
		}
		return c.rbs.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.BackendService) (*compute.Operation, error) {
		if sc.region == "" {
			return c.bs.Insert(project, r).Context(ctx).Do()
		}
		return c.rbs.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.bs.Delete(project, name).Context(ctx).Do()
		}
		return c.rbs.Delete(project, sc.region, name).Context(ctx).Do()
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter string, each func(*compute.BackendService)) error {
		items := func(l *compute.BackendServiceList) []*compute.BackendService { return l.Items }
		if sc.region == "" {
			return eachListed(ctx, c.bs.List(project), filter, items, each)
		}
		return eachListed(ctx, c.rbs.List(project, sc.region), filter, items, each)
	},
}

// patchBackendService changes the fields set in patch, guarded by its
// fingerprint; the backend list (the target bindings') is left alone
// because patch omits it.
func (p *Provider) patchBackendService(ctx context.Context, sc scope, name string, patch *compute.BackendService) error {
	return p.mutate(ctx, backendServices.op(sc, "patch"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.bs.Patch(p.opts.Project, name, patch).Context(ctx).Do()
		}
		return p.c.rbs.Patch(p.opts.Project, sc.region, name, patch).Context(ctx).Do()
	})
}

var urlMaps = kind[*compute.UrlMap]{
	what: "URL map", global: "urlMaps", region: "regionUrlMaps",
	about: func(r *compute.UrlMap) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.UrlMap, error) {
		if sc.region == "" {
			return c.ums.Get(project, name).Context(ctx).Do()
		}
		return c.rums.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.UrlMap) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ums.Insert(project, r).Context(ctx).Do()
		}
		return c.rums.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ums.Delete(project, name).Context(ctx).Do()
		}
		return c.rums.Delete(project, sc.region, name).Context(ctx).Do()
	},
}

// updateURLMap replaces a URL map, guarded by the fingerprint in um.
// Update rather than patch: a replacement needs no care for which emptied
// lists (host rules, path matchers) a patch must name to remove them.
func (p *Provider) updateURLMap(ctx context.Context, sc scope, um *compute.UrlMap) error {
	return p.mutate(ctx, urlMaps.op(sc, "update"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.ums.Update(p.opts.Project, um.Name, um).Context(ctx).Do()
		}
		return p.c.rums.Update(p.opts.Project, sc.region, um.Name, um).Context(ctx).Do()
	})
}

var httpProxies = kind[*compute.TargetHttpProxy]{
	what: "target HTTP proxy", global: "targetHttpProxies", region: "regionTargetHttpProxies",
	about: func(r *compute.TargetHttpProxy) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.TargetHttpProxy, error) {
		if sc.region == "" {
			return c.thps.Get(project, name).Context(ctx).Do()
		}
		return c.rthps.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.TargetHttpProxy) (*compute.Operation, error) {
		if sc.region == "" {
			return c.thps.Insert(project, r).Context(ctx).Do()
		}
		return c.rthps.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.thps.Delete(project, name).Context(ctx).Do()
		}
		return c.rthps.Delete(project, sc.region, name).Context(ctx).Do()
	},
}

var httpsProxies = kind[*compute.TargetHttpsProxy]{
	what: "target HTTPS proxy", global: "targetHttpsProxies", region: "regionTargetHttpsProxies",
	about: func(r *compute.TargetHttpsProxy) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.TargetHttpsProxy, error) {
		if sc.region == "" {
			return c.tsps.Get(project, name).Context(ctx).Do()
		}
		return c.rtsps.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.TargetHttpsProxy) (*compute.Operation, error) {
		if sc.region == "" {
			return c.tsps.Insert(project, r).Context(ctx).Do()
		}
		return c.rtsps.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.tsps.Delete(project, name).Context(ctx).Do()
		}
		return c.rtsps.Delete(project, sc.region, name).Context(ctx).Do()
	},
}

// setProxyURLMap points a target HTTP or HTTPS proxy at another URL map.
func (p *Provider) setProxyURLMap(ctx context.Context, sc scope, https bool, proxy, urlMap string) error {
	ref := &compute.UrlMapReference{UrlMap: urlMap}
	k := httpProxies.op(sc, "setUrlMap")
	if https {
		k = httpsProxies.op(sc, "setUrlMap")
	}
	project := p.opts.Project
	return p.mutate(ctx, k, func(ctx context.Context) (*compute.Operation, error) {
		switch {
		case !https && sc.region == "":
			return p.c.thps.SetUrlMap(project, proxy, ref).Context(ctx).Do()
		case !https:
			return p.c.rthps.SetUrlMap(project, sc.region, proxy, ref).Context(ctx).Do()
		case sc.region == "":
			return p.c.tsps.SetUrlMap(project, proxy, ref).Context(ctx).Do()
		}
		return p.c.rtsps.SetUrlMap(project, sc.region, proxy, ref).Context(ctx).Do()
	})
}

// setProxyCertificates replaces an HTTPS proxy's certificates.
func (p *Provider) setProxyCertificates(ctx context.Context, sc scope, proxy string, certs []string) error {
	project := p.opts.Project
	return p.mutate(ctx, httpsProxies.op(sc, "setSslCertificates"), func(ctx context.Context) (*compute.Operation, error) {
		if sc.region == "" {
			return p.c.tsps.SetSslCertificates(project, proxy,
				&compute.TargetHttpsProxiesSetSslCertificatesRequest{SslCertificates: certs}).Context(ctx).Do()
		}
		return p.c.rtsps.SetSslCertificates(project, sc.region, proxy,
			&compute.RegionTargetHttpsProxiesSetSslCertificatesRequest{SslCertificates: certs}).Context(ctx).Do()
	})
}

var forwardingRules = kind[*compute.ForwardingRule]{
	what: "forwarding rule", global: "globalForwardingRules", region: "forwardingRules",
	about: func(r *compute.ForwardingRule) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.ForwardingRule, error) {
		if sc.region == "" {
			return c.gfrs.Get(project, name).Context(ctx).Do()
		}
		return c.frs.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.ForwardingRule) (*compute.Operation, error) {
		if sc.region == "" {
			return c.gfrs.Insert(project, r).Context(ctx).Do()
		}
		return c.frs.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.gfrs.Delete(project, name).Context(ctx).Do()
		}
		return c.frs.Delete(project, sc.region, name).Context(ctx).Do()
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter string, each func(*compute.ForwardingRule)) error {
		items := func(l *compute.ForwardingRuleList) []*compute.ForwardingRule { return l.Items }
		if sc.region == "" {
			return eachListed(ctx, c.gfrs.List(project), filter, items, each)
		}
		return eachListed(ctx, c.frs.List(project, sc.region), filter, items, each)
	},
}

var tcpProxies = kind[*compute.TargetTcpProxy]{
	what: "target TCP proxy", global: "targetTcpProxies", region: "regionTargetTcpProxies",
	about: func(r *compute.TargetTcpProxy) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.TargetTcpProxy, error) {
		if sc.region == "" {
			return c.ttps.Get(project, name).Context(ctx).Do()
		}
		return c.rttps.Get(project, sc.region, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, sc scope, r *compute.TargetTcpProxy) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ttps.Insert(project, r).Context(ctx).Do()
		}
		return c.rttps.Insert(project, sc.region, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, sc scope, name string) (*compute.Operation, error) {
		if sc.region == "" {
			return c.ttps.Delete(project, name).Context(ctx).Do()
		}
		return c.rttps.Delete(project, sc.region, name).Context(ctx).Do()
	},
	list: func(ctx context.Context, c *clients, project string, sc scope, filter string, each func(*compute.TargetTcpProxy)) error {
		items := func(l *compute.TargetTcpProxyList) []*compute.TargetTcpProxy { return l.Items }
		if sc.region == "" {
			return eachListed(ctx, c.ttps.List(project), filter, items, each)
		}
		return eachListed(ctx, c.rttps.List(project, sc.region), filter, items, each)
	},
}

// sslProxies are global only, as on GCE: a regional proxy Network Load
// Balancer terminates no TLS.
var sslProxies = kind[*compute.TargetSslProxy]{
	what: "target SSL proxy", global: "targetSslProxies", region: "regionTargetSslProxies",
	about: func(r *compute.TargetSslProxy) (string, string) { return r.Name, r.Description },
	get: func(ctx context.Context, c *clients, project string, _ scope, name string) (*compute.TargetSslProxy, error) {
		return c.tslps.Get(project, name).Context(ctx).Do()
	},
	insert: func(ctx context.Context, c *clients, project string, _ scope, r *compute.TargetSslProxy) (*compute.Operation, error) {
		return c.tslps.Insert(project, r).Context(ctx).Do()
	},
	remove: func(ctx context.Context, c *clients, project string, _ scope, name string) (*compute.Operation, error) {
		return c.tslps.Delete(project, name).Context(ctx).Do()
	},
	list: func(ctx context.Context, c *clients, project string, _ scope, filter string, each func(*compute.TargetSslProxy)) error {
		items := func(l *compute.TargetSslProxyList) []*compute.TargetSslProxy { return l.Items }
		return eachListed(ctx, c.tslps.List(project), filter, items, each)
	},
}

// setSSLProxyCertificates replaces a target SSL proxy's certificates.
func (p *Provider) setSSLProxyCertificates(ctx context.Context, proxy string, certs []string) error {
	return p.mutate(ctx, sslProxies.op(scope{}, "setSslCertificates"), func(ctx context.Context) (*compute.Operation, error) {
		return p.c.tslps.SetSslCertificates(p.opts.Project, proxy,
			&compute.TargetSslProxiesSetSslCertificatesRequest{SslCertificates: certs}).Context(ctx).Do()
	})
}

// addressIP resolves a reserved address of the scope by name.
func (p *Provider) addressIP(ctx context.Context, sc scope, name string) (string, bool, error) {
	var a *compute.Address
	op := "globalAddresses.get"
	if sc.region != "" {
		op = "addresses.get"
	}
	err := p.calls.Call(ctx, op, func(ctx context.Context) (err error) {
		if sc.region == "" {
			a, err = p.c.gaddr.Get(p.opts.Project, name).Context(ctx).Do()
		} else {
			a, err = p.c.addr.Get(p.opts.Project, sc.region, name).Context(ctx).Do()
		}
		return err
	})
	if err != nil {
		if providers.ClassOf(err) == providers.NotFound {
			return "", false, nil
		}
		return "", false, err
	}
	return a.Address, true, nil
}
