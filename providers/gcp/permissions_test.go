package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2/apierror"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"

	"github.com/podlb/podlb/manifests"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/providers/gcp/computesim"
)

// podlbToken identifies the provider's calls in these tests; the emulator
// holds it to the custom role. Clients without a token arrange the users'
// side and may do anything.
const podlbToken = "podlb"

// rolePermissions is manifests/gcp/podlb-role.yaml's includedPermissions.
func rolePermissions(t *testing.T) []string {
	t.Helper()
	perms, err := manifests.GCPRolePermissions()
	if err != nil {
		t.Fatal(err)
	}
	return perms
}

// roleScenario drives the provider through what it does to the cloud,
// holding it to permissions: bindings into a user's global and regional
// backend services (NEGs created in the cluster's network and subnetwork,
// endpoints attached, observed, detached, released), a global HTTPS load
// balancer on a reserved address with a redirect, changed and deleted, a
// regional internal one, and TCP/TLS proxy load balancers, global and
// regional internal, on reserved addresses, deleted again. It returns the
// first error.
func roleScenario(ctx context.Context, permissions []string) (*computesim.Server, error) {
	srv, p, err := roleSetting(ctx, permissions)
	if err != nil {
		return srv, err
	}
	defer p.Close()
	bind := func(svc, raw string) (*providers.Group, error) {
		spec, err := ParseSpec([]byte(raw))
		if err != nil {
			return nil, err
		}
		return p.Ensure(ctx, &providers.Binding{
			Key:     providers.BindingKey{Namespace: "shop", Service: svc, Provider: "gcp", Port: 80},
			Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: spec, Zones: zones3[:1],
		})
	}
	cycle := func(g *providers.Group, svc string) error {
		tg := target("127.0.0.1", 8080, zones3[0])
		if err := p.Apply(ctx, g, providers.Plan{Register: []providers.Target{tg}}); err != nil {
			return fmt.Errorf("attach: %w", err)
		}
		if _, err := p.Observe(ctx, g); err != nil {
			return fmt.Errorf("observe: %w", err)
		}
		if err := p.Apply(ctx, g, providers.Plan{Deregister: []providers.Target{tg}}); err != nil {
			return fmt.Errorf("detach: %w", err)
		}
		key := providers.BindingKey{Namespace: "shop", Service: svc, Provider: "gcp", Port: 80}
		if err := p.Release(ctx, key, g.Ref, nil); err != nil {
			return fmt.Errorf("release: %w", err)
		}
		return nil
	}
	for svc, raw := range map[string]string{
		"web": `{"backendService":"users-web"}`,
		"api": `{"backendService":"projects/` + project + `/regions/` + lbRegion + `/backendServices/users-api"}`,
	} {
		g, err := bind(svc, raw)
		if err != nil {
			return srv, fmt.Errorf("binding %s: %w", svc, err)
		}
		if err := cycle(g, svc); err != nil {
			return srv, fmt.Errorf("binding %s: %w", svc, err)
		}
	}

	// HTTP(S) load balancers, global external and regional internal, each
	// changed step by step (certificates, routes and a health check, a URL
	// map someone else set on the HTTPS proxy, the redirect, HTTPS) and
	// deleted.
	for _, base := range []string{`"address":"shop-ip"`,
		`"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only","address":"shop-rip"`} {
		be := apiBE
		lb := &providers.HTTPBalancer{Key: lbKey, Cluster: cluster,
			Backends: map[string]providers.HTTPBackend{webBE.ID(): webBE, apiBE.ID(): be},
			Routes: []providers.HTTPRoute{{Host: "www.example.com", Path: "/api", Backend: apiBE.ID()},
				{Host: "www.example.com", Path: "/", Backend: webBE.ID()}}}
		for i, step := range []struct {
			annotation string
			change     func() error
		}{
			{`"sslCertificates":["shop-cert"],"redirectToHTTPS":true`, nil},
			{`"sslCertificates":["blog-cert"],"redirectToHTTPS":true`, nil},
			{`"sslCertificates":["blog-cert"],"redirectToHTTPS":true`, func() error {
				lb.Routes = lb.Routes[1:]
				be.HealthCheckPath = "/healthz"
				lb.Backends[apiBE.ID()] = be
				return nil
			}},
			{`"sslCertificates":["blog-cert"],"redirectToHTTPS":true`, func() error {
				return roleDrift(ctx, srv, strings.Contains(base, "region"))
			}},
			{`"sslCertificates":["blog-cert"]`, nil},
			{``, nil},
		} {
			if step.change != nil {
				if err := step.change(); err != nil {
					return srv, err
				}
			}
			spec, err := ParseLoadBalancerSpec("{" + strings.TrimSuffix(base+","+step.annotation, ",") + "}")
			if err != nil {
				return srv, err
			}
			lb.Spec = spec
			_, specs, err := p.EnsureHTTP(ctx, lb)
			if err != nil {
				return srv, fmt.Errorf("HTTP load balancer {%s} step %d: %w", base, i, err)
			}
			if i == 0 {
				g, err := p.Ensure(ctx, &providers.Binding{Key: providers.BindingKey{Namespace: "shop", Service: "web", Provider: "gcp", Port: 80},
					Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: specs[webBE.ID()], Zones: zones3[:1]})
				if err != nil {
					return srv, fmt.Errorf("HTTP load balancer {%s}: binding: %w", base, err)
				}
				if err := cycle(g, "web"); err != nil {
					return srv, fmt.Errorf("HTTP load balancer {%s}: %w", base, err)
				}
			}
		}
		if err := p.DeleteHTTP(ctx, cluster, lbKey); err != nil {
			return srv, fmt.Errorf("deleting the HTTP load balancer {%s}: %w", base, err)
		}
	}

	// TCP and TLS proxy load balancers: global with a certificate change,
	// regional internal.
	for _, steps := range [][]string{
		{`{"address":"edge-ip","sslCertificates":["shop-cert"],"tlsPorts":[6379]}`, `{"address":"edge-ip","sslCertificates":["blog-cert"],"tlsPorts":[6379]}`},
		{`{"scheme":"internal","region":"` + lbRegion + `","proxySubnet":"proxy-only","address":"edge-rip"}`},
	} {
		for _, annotation := range steps {
			spec, err := ParseNetworkLoadBalancerSpec(annotation)
			if err != nil {
				return srv, err
			}
			lb := &providers.L4Balancer{Key: edgeKey, Cluster: cluster, Spec: spec,
				Listeners: []providers.L4Listener{l4(5432, "TCP", "db"), l4(6379, "TCP", "cache")}}
			if _, err := p.EnsureL4(ctx, lb); err != nil {
				return srv, fmt.Errorf("TCP load balancer %s: %w", annotation, err)
			}
		}
		if err := p.DeleteL4(ctx, cluster, edgeKey); err != nil {
			return srv, fmt.Errorf("deleting the TCP load balancer %s: %w", steps[0], err)
		}
	}
	return srv, nil
}

// roleDrift points the HTTPS proxy of lbKey at the redirect URL map, as a
// person editing the load balancer by hand might; EnsureHTTP repairs it.
func roleDrift(ctx context.Context, srv *computesim.Server, regional bool) error {
	svc, err := testService(ctx, srv)
	if err != nil {
		return err
	}
	proxy, urlMap := BalancerResourceName(cluster, lbKey, kindHTTPSProxy), BalancerResourceName(cluster, lbKey, kindRedirectMap)
	if regional {
		ref := "projects/" + project + "/regions/" + lbRegion + "/urlMaps/" + urlMap
		op, err := svc.RegionTargetHttpsProxies.SetUrlMap(project, lbRegion, proxy, &compute.UrlMapReference{UrlMap: ref}).Context(ctx).Do()
		return waitOp(ctx, svc, op, err)
	}
	ref := "projects/" + project + "/global/urlMaps/" + urlMap
	op, err := svc.TargetHttpsProxies.SetUrlMap(project, proxy, &compute.UrlMapReference{UrlMap: ref}).Context(ctx).Do()
	return waitOp(ctx, svc, op, err)
}

// roleSetting starts an emulator that holds podlb's calls to permissions,
// arranges what users own there (roleArrange) and returns a provider
// that calls as podlb.
func roleSetting(ctx context.Context, permissions []string) (*computesim.Server, *Provider, error) {
	// Operations take a moment, so the provider waits on them.
	srv, err := computesim.Start(computesim.Options{Project: project, Permissions: map[string][]string{podlbToken: permissions},
		OperationDelay: 2 * time.Millisecond, HealthCheckInterval: 20 * time.Millisecond, HealthCheckTimeout: 100 * time.Millisecond})
	if err != nil {
		return nil, nil, err
	}
	for _, z := range zones3 {
		if err := srv.AddInstance(z, vm(z), "127.0.0.1", "127.0.0.0/8"); err != nil {
			return srv, nil, err
		}
	}
	if err := roleArrange(ctx, srv); err != nil {
		return srv, nil, err
	}
	p, err := New(ctx, Options{Cluster: cluster, Project: project, Endpoint: srv.URL(),
		Network: "default", Subnetwork: "default", Limits: providers.Unthrottled(DefaultLimits()),
		ClientOptions: []option.ClientOption{option.WithHTTPClient(&http.Client{Transport: computesim.AuthTransport(podlbToken, nil)})}})
	if err != nil {
		return srv, nil, fmt.Errorf("New: %w", err)
	}
	return srv, p, nil
}

// A role that cannot read health checks (made before podlb read them)
// still serves bindings: the judge delay is Compute's default check's,
// and the group's warning and status name the missing permission. With
// the role as shipped there is no warning and the checks' own settings
// count.
func TestABindingWhoseHealthCheckCannotBeReadIsServedWithAWarning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := rolePermissions(t)
	for _, tc := range []struct {
		name        string
		permissions []string
	}{
		{"role as shipped", full},
		{"without health check reads", slices.DeleteFunc(slices.Clone(full), func(p string) bool { return strings.HasSuffix(p, "ealthChecks.get") })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, p, err := roleSetting(ctx, tc.permissions)
			if srv != nil {
				t.Cleanup(func() { _ = srv.Close() })
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Close() })
			for svc, raw := range map[string]string{
				"web": `{"backendService":"users-web"}`,
				"api": `{"backendService":"projects/` + project + `/regions/` + lbRegion + `/backendServices/users-api"}`,
			} {
				spec, err := ParseSpec([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				g, err := p.Ensure(ctx, &providers.Binding{
					Key:     providers.BindingKey{Namespace: "shop", Service: svc, Provider: "gcp", Port: 80},
					Cluster: cluster, Protocol: "TCP", Mode: providers.ReadyWhenHealthy, Spec: spec, Zones: zones3[:1],
				})
				if err != nil {
					t.Fatalf("%s: %v", svc, err)
				}
				if !g.Serving || g.JudgeDelay != computeJudging.healthy || g.FailDelay != computeJudging.unhealthy || g.Status["healthCheck"] != g.Warning {
					t.Errorf("%s: serving %v, judge delays %s / %s, status %q; want serving, %+v, the warning", svc, g.Serving, g.JudgeDelay, g.FailDelay, g.Status["healthCheck"], computeJudging)
				}
				perm := "compute.healthChecks.get"
				if svc == "api" {
					perm = "compute.regionHealthChecks.get"
				}
				if named := strings.Contains(g.Warning, "'"+perm+"'"); named != (len(tc.permissions) < len(full)) {
					t.Errorf("%s: warning %q; want one naming %s only without it", svc, g.Warning, perm)
				}
			}
		})
	}
}

// roleArrange makes what users own: backend services (global and
// regional) with health checks, certificates and reserved addresses.
func roleArrange(ctx context.Context, srv *computesim.Server) error {
	svc, err := testService(ctx, srv)
	if err != nil {
		return err
	}
	hcs, rhcs, bs, rbs := svc.HealthChecks, svc.RegionHealthChecks, svc.BackendServices, svc.RegionBackendServices
	gaddr, addr, rcerts := svc.GlobalAddresses, svc.Addresses, svc.RegionSslCertificates
	wait := func(op *compute.Operation, err error) error { return waitOp(ctx, svc, op, err) }
	hc := func(name string) *compute.HealthCheck {
		return &compute.HealthCheck{Name: name, Type: "TCP",
			TcpHealthCheck: &compute.TCPHealthCheck{PortSpecification: "USE_SERVING_PORT"}}
	}
	service := func(name, hc, scheme string) *compute.BackendService {
		return &compute.BackendService{Name: name, Protocol: "TCP", HealthChecks: []string{hc},
			LoadBalancingScheme: scheme}
	}
	regionalCert := func(name, domain string) error {
		certPEM, keyPEM, err := srv.CertificatePEM(domain)
		if err != nil {
			return err
		}
		return wait(rcerts.Insert(project, lbRegion, &compute.SslCertificate{Name: name,
			SelfManaged: &compute.SslCertificateSelfManagedSslCertificate{Certificate: certPEM, PrivateKey: keyPEM}}).Context(ctx).Do())
	}
	for _, step := range []func() error{
		func() error { return srv.IssueCertificate("shop-cert", "www.example.com") },
		func() error { return srv.IssueCertificate("blog-cert", "blog.example.com") },
		func() error {
			return wait(hcs.Insert(project, hc("users-hc")).Context(ctx).Do())
		},
		func() error {
			return wait(bs.Insert(project, service("users-web", "global/healthChecks/users-hc", "EXTERNAL")).Context(ctx).Do())
		},
		func() error {
			return wait(rhcs.Insert(project, lbRegion, hc("users-hc")).Context(ctx).Do())
		},
		func() error {
			return wait(rbs.Insert(project, lbRegion, service("users-api", "regions/"+lbRegion+"/healthChecks/users-hc", "INTERNAL_MANAGED")).Context(ctx).Do())
		},
		func() error { return regionalCert("shop-cert", "www.example.com") },
		func() error { return regionalCert("blog-cert", "blog.example.com") },
		func() error {
			return wait(gaddr.Insert(project, &compute.Address{Name: "shop-ip"}).Context(ctx).Do())
		},
		func() error {
			return wait(gaddr.Insert(project, &compute.Address{Name: "edge-ip"}).Context(ctx).Do())
		},
		func() error {
			return wait(addr.Insert(project, lbRegion, &compute.Address{Name: "shop-rip"}).Context(ctx).Do())
		},
		func() error {
			return wait(addr.Insert(project, lbRegion, &compute.Address{Name: "edge-rip"}).Context(ctx).Do())
		},
	} {
		if err := step(); err != nil {
			return fmt.Errorf("arranging: %w", err)
		}
	}
	return nil
}

func runRoleScenario(t *testing.T, permissions []string) (*computesim.Server, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := roleScenario(ctx, permissions)
	if srv != nil {
		t.Cleanup(func() { _ = srv.Close() })
	}
	return srv, err
}

// forbidden reports whether err, or the error of one target it refused,
// is GCE's 403 for a missing permission.
func forbidden(err error) bool {
	if te, ok := providers.AsTargetErrors(err); ok {
		for _, e := range te.Failed {
			if forbidden(e) {
				return true
			}
		}
	}
	var ae *apierror.APIError
	return errors.As(err, &ae) && ae.HTTPCode() == http.StatusForbidden && strings.Contains(err.Error(), "Required '")
}

func TestCustomRoleSufficesForEverythingThePodlbProviderDoes(t *testing.T) {
	srv, err := runRoleScenario(t, rolePermissions(t))
	if err != nil {
		t.Fatal(err)
	}
	// Other errors (lookups answering 404) are expected.
	for m, st := range srv.Stats().Methods {
		if st.Forbidden > 0 {
			t.Errorf("%s: %+v", m, st)
		}
	}
}

// notExercised are permissions of the role the emulator cannot show
// needed, with the reason.
var notExercised = map[string]string{
	"compute.sslPolicies.use":       "computesim does not emulate SSL policies (a proxy naming one is refused)",
	"compute.regionSslPolicies.use": "computesim does not emulate SSL policies (a proxy naming one is refused)",
}

// Each permission of the role is needed: without it the scenario fails
// with 403, classified as a user error rather than retried.
func TestEveryPermissionOfTheCustomRoleIsNeeded(t *testing.T) {
	full := rolePermissions(t)
	for _, perm := range full {
		t.Run(perm, func(t *testing.T) {
			if why, ok := notExercised[perm]; ok {
				t.Skip(why)
			}
			_, err := runRoleScenario(t, slices.DeleteFunc(slices.Clone(full), func(p string) bool { return p == perm }))
			if !forbidden(err) || !strings.Contains(err.Error(), "'"+perm+"'") {
				t.Fatalf("without %s the scenario ended with %v, want 403 naming it", perm, err)
			}
			if providers.ClassOf(err) != providers.Invalid {
				t.Errorf("%v: class %s, want invalid", err, providers.ClassOf(err))
			}
		})
	}
}
