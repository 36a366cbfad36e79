package providers

import (
	"context"
	"strconv"
)

// BalancerKey names one load balancer podlb provisions: an Ingress group
// (Name is the group, Namespace empty when the group spans namespaces) or
// a lone Ingress (its namespace and name).
type BalancerKey struct {
	Namespace string
	Name      string
}

func (k BalancerKey) String() string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

// HTTPBalancer is one HTTP(S) load balancer as the core wants it,
// computed from the Ingresses of one group. A cloud sees routes and
// backends, never Kubernetes objects.
type HTTPBalancer struct {
	Key     BalancerKey
	Cluster string
	// Routes in evaluation order: for clouds that evaluate rules by
	// priority, the first route has the highest.
	Routes []HTTPRoute
	// Default is the backend ID serving requests no route matches; empty
	// means those requests get 404.
	Default string
	// DefaultWarming is a backend the default is about to switch to (see
	// HTTPRoute.Warming); empty for none.
	DefaultWarming string
	// Backends are the Service ports the routes and Default point to, by
	// ID (HTTPBackend.ID).
	Backends map[string]HTTPBackend
	// Spec is the cloud's parsed load-balancer annotation, as returned by
	// its ParseBalancerSpec; nil when the object carries none.
	Spec any
}

// HTTPRoute sends requests for Host and Path to a backend.
type HTTPRoute struct {
	// Host is exact, a wildcard "*.example.com", or empty for any host.
	Host string
	// Path starts with "/". Exact routes match it only; the others match
	// it and everything below it, element by element (Kubernetes Prefix).
	Path    string
	Exact   bool
	Backend string
	// Warming is a backend the route is about to switch to, "" for none.
	// It gets none of the route's traffic, but a cloud that judges the
	// health only of targets its load balancer uses must count it as used
	// (AWS: a forward weight of 0), so its pods turn healthy before the
	// switch.
	Warming string
}

// HTTPBackend is one Service port behind the load balancer.
type HTTPBackend struct {
	Namespace string
	Service   string
	// Port is the Service port; PortName its name, empty if it has none
	// (annotations may key backend settings by either).
	Port     int32
	PortName string
	// HealthCheckPath is the path to check when the annotation does not
	// set one (from the pods' HTTP readiness probe); empty: the cloud's
	// default.
	HealthCheckPath string
}

// ID is the backend's key in HTTPBalancer.Backends and in the bindings
// that register its pods: "namespace/service:port".
func (b HTTPBackend) ID() string {
	return b.Namespace + "/" + b.Service + ":" + strconv.Itoa(int(b.Port))
}

// BalancerStatus is what a provisioned load balancer tells users.
type BalancerStatus struct {
	// Hostname (AWS) or IP (GCP) clients reach it at.
	Hostname string
	IP       string
	// Details are the cloud resources, for the status annotation.
	Details map[string]string
}

// HTTPBalancers provisions HTTP(S) load balancers on one cloud.
type HTTPBalancers interface {
	// ParseBalancerSpec validates the cloud's load-balancer annotation
	// value; an error names the field and what is wrong.
	ParseBalancerSpec(raw string) (any, error)
	// EnsureHTTP brings everything of lb but the targets in line with it
	// by minimal changes: the load balancer, its listeners or proxies,
	// its rules or URL map, and one target group or backend service per
	// backend, each recorded as podlb's for this cluster and key. A change
	// never disturbs the routes it does not touch. Resources podlb did not
	// create are never modified or removed. It returns the status and,
	// per backend ID, the Spec of the target binding that registers the
	// backend's pods (Provider.Ensure understands it).
	EnsureHTTP(ctx context.Context, lb *HTTPBalancer) (*BalancerStatus, map[string]Spec, error)
	// DeleteHTTP removes what EnsureHTTP created for key, in dependency
	// order, verifying each resource is podlb's for this cluster and key
	// first. What is already gone counts as deleted. When resources podlb
	// did not create still carry or use some of podlb's (a user's rule on
	// podlb's listener, a user's URL map using podlb's backend service),
	// it deletes everything else and answers a *KeptError naming them.
	DeleteHTTP(ctx context.Context, cluster string, key BalancerKey) error
}

// L4Balancer is one TCP/UDP load balancer for Services of type
// LoadBalancer: one Service, or a group of Services sharing it. Each
// listener forwards to the pods of one Service port.
type L4Balancer struct {
	Key     BalancerKey
	Cluster string
	// Listeners in a stable order; no two share a port and protocol
	// family (the core refuses such conflicts within a group first).
	Listeners []L4Listener
	// Spec is the cloud's parsed load-balancer annotation (the first
	// member's, for a group), as returned by ParseL4Spec.
	Spec any
}

// L4Listener is one port of the load balancer.
type L4Listener struct {
	Port int32
	// Protocol is the Service port's: TCP or UDP.
	Protocol string
	Backend  L4Backend
}

// L4Backend is the Service port a listener forwards to.
type L4Backend struct {
	Namespace string
	Service   string
	Port      int32
	PortName  string
}

// ID is the backend's key in EnsureL4's result and in the bindings that
// register its pods: "namespace/service:port".
func (b L4Backend) ID() string {
	return b.Namespace + "/" + b.Service + ":" + strconv.Itoa(int(b.Port))
}

// L4Balancers provisions TCP/UDP load balancers on one cloud.
type L4Balancers interface {
	// ParseL4Spec validates the cloud's load-balancer annotation value
	// for a Service of type LoadBalancer; fields that only apply to
	// HTTP are refused, naming the field.
	ParseL4Spec(raw string) (any, error)
	// EnsureL4 brings the load balancer, its listeners and one group per
	// listener in line with lb by minimal changes; a listener's traffic is
	// never disturbed by changes to others. A listener the cloud cannot
	// serve (UDP where only VM-level backends can take it) or whose port
	// is held by a listener podlb did not create is left out and named in
	// the result's Refused, with the reason naming the holder; such a
	// listener is never modified or removed. It returns, per backend ID,
	// the Spec of the target binding that registers the backend's pods.
	EnsureL4(ctx context.Context, lb *L4Balancer) (*L4Result, error)
	// DeleteL4 removes what EnsureL4 created for key, in dependency
	// order, verifying each resource is podlb's first. What is already
	// gone counts as deleted.
	DeleteL4(ctx context.Context, cluster string, key BalancerKey) error
}

// L4Result is what EnsureL4 reports.
type L4Result struct {
	Status BalancerStatus
	Specs  map[string]Spec
	// Refused maps a listener ("80/TCP") to why it is not served.
	Refused map[string]string
}
