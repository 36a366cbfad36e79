package loadbalancers

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// GroupOrderAnnotation orders the members of a group: lower first, 0 when
// unset. Members with the same order follow creation time, then
// namespace/name. An earlier member keeps a route, the default backend or
// a TLS host that a later member claims differently.
const GroupOrderAnnotation = "podlb.io/group-order"

// Member is one Ingress of a group, in the group's order.
type Member struct {
	Ingress types.NamespacedName
	// Order is the value of GroupOrderAnnotation (0 when unset or broken).
	Order   int
	Created time.Time
}

// PathType is how a route's path matches a request path.
type PathType string

const (
	// Exact matches the request path exactly, case-sensitively.
	Exact PathType = "Exact"
	// Prefix matches path element by element: "/a" matches "/a", "/a/"
	// and "/a/b" but not "/ab".
	Prefix PathType = "Prefix"
)

// RouteKey identifies a route within a load balancer. Two members that
// claim the same key compete for it.
type RouteKey struct {
	Host     string
	Path     string
	PathType PathType
}

// Route sends requests for Host (empty: every host; "*.example.com": one
// label in front of example.com) matching Path to Backend.
type Route struct {
	Host string
	// Path starts with "/". A Prefix path carries no trailing "/" (except
	// the root "/"), since Kubernetes ignores it: "/a/" and "/a" are the
	// same route.
	Path     string
	PathType PathType
	Backend  Backend
	// Warming is the backend the route is switching to while Backend
	// still takes its traffic (see HoldSwitches); nil for none.
	Warming *Backend
	// Owner is the Ingress that contributed the route.
	Owner types.NamespacedName
}

// Key is the route's identity.
func (r Route) Key() RouteKey { return RouteKey{Host: r.Host, Path: r.Path, PathType: r.PathType} }

// Backend is one Service port behind the load balancer.
type Backend struct {
	Namespace string
	Service   string
	// Port is the Service port number, resolved from the Ingress's number
	// or name.
	Port int32
	// PortName is the Service port's name, empty if it has none.
	PortName string
	// TargetPort is the Service port's targetPort: the pods' port.
	TargetPort intstr.IntOrString
}

// same reports whether two backends send traffic to the same Service port.
func (b Backend) same(o Backend) bool {
	return b.Namespace == o.Namespace && b.Service == o.Service && b.Port == o.Port
}

// String is namespace/service:port.
func (b Backend) String() string {
	return b.Namespace + "/" + b.Service + ":" + strconv.Itoa(int(b.Port))
}

// TLSHost is the certificate an Ingress names for a host.
type TLSHost struct {
	// Secret is the TLS Secret in the owner's namespace; its Name is empty
	// when the Ingress lists the host without a secretName (the cloud's
	// own certificates then serve it).
	Secret types.NamespacedName
	Owner  types.NamespacedName
}

// HTTPLoadBalancer is the desired state of one Application Load Balancer
// built from the Ingresses of one group.
type HTTPLoadBalancer struct {
	Group string
	// Members in group order (see GroupOrderAnnotation).
	Members []Member
	// Routes in evaluation order (see Priorities).
	Routes []Route
	// DefaultBackend serves requests no route matches; nil leaves it to
	// the cloud (a fixed 404).
	DefaultBackend *Backend
	// DefaultWarming is the backend the default is switching to (see
	// HoldSwitches); nil for none.
	DefaultWarming *Backend
	// TLSHosts maps each host listed under spec.tls (empty: hosts not
	// listed) to its certificate.
	TLSHosts map[string]TLSHost
	// Backends are the distinct Service ports of the routes and the
	// default backend, sorted by namespace, Service and port.
	Backends []Backend
}

// Problem is something wrong with one Ingress of a group. The caller shows
// it as a Warning event on that Ingress.
type Problem struct {
	Object types.NamespacedName
	// Field is the path to what to fix, e.g.
	// spec.rules[0].http.paths[1].backend.service.port.name.
	Field   string
	Message string
}

// String reads "namespace/name: field: message".
func (p Problem) String() string {
	if p.Field == "" {
		return p.Object.String() + ": " + p.Message
	}
	return p.Object.String() + ": " + p.Field + ": " + p.Message
}
