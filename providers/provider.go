// Package providers defines what the cloud-agnostic core asks of a cloud
// and what every cloud shares: target identity, health states, plans,
// error classes, batching and client-side rate limits.
//
// The core computes desired targets and a plan; a provider only ever sees
// groups, targets and plans, never Kubernetes objects.
package providers

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"time"
	"unique"
)

// Provider is one cloud's load-balancer target API.
type Provider interface {
	// Name is the cloud's short name ("aws", "gcp"), used in keys, status
	// and metrics.
	Name() string
	// AnnotationKey is the Service annotation whose per-port values this
	// provider parses.
	AnnotationKey() string
	// ParseSpec validates one port's annotation value. A returned error is
	// shown to the user, so it names the field and what is wrong.
	ParseSpec(raw json.RawMessage) (Spec, error)
	// Ensure finds, creates or updates the cloud group(s) of a binding and
	// returns a handle. It is called on every reconcile and must be cheap
	// when nothing changed (providers cache what they resolved).
	Ensure(ctx context.Context, b *Binding) (*Group, error)
	// Observe reports every target registered in the group with its health.
	Observe(ctx context.Context, g *Group) ([]Observed, error)
	// Apply registers, then deregisters, the plan's targets, batched.
	// Targets the cloud refuses individually are isolated and returned as
	// *TargetErrors while the rest is applied; a failure of a whole call
	// (throttled, transient, group not found) is returned as is and
	// deregistration does not happen in that pass.
	Apply(ctx context.Context, g *Group, p Plan) error
	// Release undoes Ensure when the binding goes away or names another
	// group: owned groups are deleted after verifying ownership; from a
	// shared group only ours, the targets this cluster registered, are
	// deregistered. ref is the persisted Group.Ref, so Release works after
	// a restart and after the annotation is gone. Releasing a group that no
	// longer exists succeeds.
	Release(ctx context.Context, key BindingKey, ref string, ours []TargetKey) error
}

// WriteHolder is a Provider whose target writes wait for client-side
// budget. HoldWrite waits for a token of the bucket the plan's first call
// draws on and returns a context whose first call of that bucket spends
// it: the core plans again once it holds the token, so what arrived
// while it waited rides in the call.
type WriteHolder interface {
	HoldWrite(ctx context.Context, p Plan) (context.Context, error)
}

// Settler is a Provider whose registrations may still be taking effect
// when Apply has returned (GCP follows each attach operation in the
// background) and whose Apply waits only for the plan's own
// registrations before its deregistrations. The core then sends a plan's
// registrations and its deregistrations in separate Applies, each
// deregistration once the registrations settling when it was first due
// have settled: register before deregister holds, and no pass waits for
// an operation.
type Settler interface {
	// Settling returns a channel closed once every registration of g
	// sent so far has taken effect or failed; nil when none is settling.
	Settling(g *Group) <-chan struct{}
}

// PartReader is a Provider whose group is read in parts (GCP: a NEG and
// a health call per zone), so that a read for a few waiting targets need
// not read the parts where nothing waits.
type PartReader interface {
	// ObserveParts reads the parts of g where the targets of would be,
	// and reports every target registered in them, as Observe does; in
	// tells whether a target of another read lies in a part read now.
	ObserveParts(ctx context.Context, g *Group, of []Target) (observed []Observed, in func(Observed) bool, err error)
}

// PartWriter is a Provider whose plan goes out in calls of their own per
// part of a group (GCP: each zone's NEG is attached to and detached from
// apart), so that changes in different parts gain nothing by waiting for
// each other's company.
type PartWriter interface {
	// WritePart names the part of its group that t is written in.
	WritePart(t Target) string
}

// Spec is a provider's parsed per-port annotation value.
type Spec interface {
	// Summary is a short human description for status and events.
	Summary() string
}

// BindingKey names one Service port bound on one cloud, either by the
// Service's own annotation or as a backend of a load balancer podlb
// provisions: the same port may be bound both ways, and behind several
// load balancers, each with a group of its own.
type BindingKey struct {
	Namespace string
	Service   string
	Provider  string
	Port      int32
	// Balancer is the BalancerKey, as its String gives it, of the load
	// balancer whose backend this binding registers; empty for a binding
	// of the Service's own annotation.
	Balancer string
}

// String reads "namespace/service:port@provider", followed by
// " via balancer" for a load balancer's backend.
func (k BindingKey) String() string {
	s := fmt.Sprintf("%s/%s:%d@%s", k.Namespace, k.Service, k.Port, k.Provider)
	if k.Balancer != "" {
		s += " via " + k.Balancer
	}
	return s
}

// ReadinessMode says when the gate of a pod may turn True.
type ReadinessMode string

const (
	// ReadyWhenHealthy waits for the load balancer to report the target
	// healthy: the default, the one that protects rollouts.
	ReadyWhenHealthy ReadinessMode = "healthy"
	// ReadyWhenRegistered only waits for the registration to be accepted,
	// for groups that no load balancer health-checks (yet).
	ReadyWhenRegistered ReadinessMode = "registered"
)

// Binding is everything a provider needs to know about one bound port.
type Binding struct {
	Key BindingKey
	// Cluster is this controller's --cluster-name, for naming and
	// ownership records.
	Cluster string
	// PortName and Protocol are the Service port's.
	PortName string
	Protocol string
	// TargetPort is the numeric target port when the Service states one,
	// 0 when it is a name resolved per pod.
	TargetPort int32
	Mode       ReadinessMode
	Spec       Spec
	// SpecRaw is the annotation value Spec was parsed from, kept so the
	// binding can be restored while a later edit of the annotation is
	// broken.
	SpecRaw string
	// Zones that have nodes of this cluster, sorted; providers with zonal
	// groups create one group per zone.
	Zones []string
}

// Target is one pod endpoint behind a group.
type Target struct {
	IP   netip.Addr
	Port int32
	// Zone, Node and Instance locate the pod: its node's zone, the node
	// name and the cloud's VM name or id for that node.
	Zone     string
	Node     string
	Instance string
}

// TargetKey identifies a target within one binding.
type TargetKey struct {
	IP   netip.Addr
	Port int32
}

func (t Target) Key() TargetKey { return TargetKey{IP: t.IP, Port: t.Port} }

func (k TargetKey) String() string { return netip.AddrPortFrom(k.IP, uint16(k.Port)).String() }

// MarshalText writes "ip:port", so keys read well in JSON.
func (k TargetKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads "ip:port".
func (k *TargetKey) UnmarshalText(b []byte) error {
	v, err := ParseTargetKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// ParseTargetKey reads "ip:port" as written by TargetKey.String.
func ParseTargetKey(s string) (TargetKey, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return TargetKey{}, err
	}
	return TargetKey{IP: ap.Addr(), Port: int32(ap.Port())}, nil
}

// State is a target's health as the core understands it, whatever the
// cloud calls it.
type State string

const (
	// Healthy: the load balancer sends it traffic.
	Healthy State = "healthy"
	// Pending: registered, not yet judged (registration in progress,
	// initial health checks).
	Pending State = "pending"
	// Unhealthy: failing health checks.
	Unhealthy State = "unhealthy"
	// Unused: registered in a group that no load balancer uses, so nobody
	// health-checks it.
	Unused State = "unused"
	// Draining: being removed; no new traffic.
	Draining State = "draining"
)

// Observed is a registered target with its health as the cloud reports it.
type Observed struct {
	Target
	State State
	// CloudState and Reason are the cloud's own words, shown to users
	// (e.g. "initial", "Elb.InitialHealthChecking").
	CloudState string
	Reason     string
	// Group is the concrete cloud group that holds the target (for zonal
	// clouds the zone's group), for messages.
	Group string
}

// Group is a provider's handle on the cloud group(s) of one binding.
type Group struct {
	// Ref is a durable reference the provider can resolve again after a
	// restart (an ARN, a NEG name); the core persists it.
	Ref string
	// Display names the group for people: in gate messages, events and
	// status ("targetgroup/web-80/73e2d6bc24d8a067").
	Display string
	// Owned groups were created by podlb for this binding: every target in
	// them is podlb's. Shared groups may hold targets of others, so only
	// targets podlb recorded registering may be deregistered.
	Owned bool
	// Serving is false when no load balancer uses the group, so targets
	// will never be health-checked; the reason says what is missing.
	Serving       bool
	NotServingWhy string
	// DrainSeconds is how long the load balancer drains a deregistered
	// target, to compare with pods' termination grace.
	DrainSeconds int64
	// JudgeDelay is how long the load balancer needs to judge a target
	// that starts answering: healthy threshold x check interval. A target
	// registered for an earlier pod with the same IP:port counts for a new
	// pod only once this much time has passed since the new pod's
	// containers became ready.
	JudgeDelay time.Duration
	// FailDelay is how long the load balancer needs to judge a target
	// that stops answering: unhealthy threshold x check interval. Until
	// then it may send new connections to a killed pod still registered.
	FailDelay time.Duration
	// Warning names a problem that does not stop the binding, for a
	// Warning Event (once while it lasts); Status says more.
	Warning string
	// Created is true on the reconcile that created the group.
	Created bool
	// Provider is the provider's own state, opaque to the core.
	Provider any
	// Status holds provider-specific facts for the Service's status
	// annotation (ARN, NEG names and zones, backend service).
	Status map[string]string
}

// Plan is the change set for one binding.
type Plan struct {
	Register   []Target
	Deregister []Target
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Register) == 0 && len(p.Deregister) == 0 }

// SortTargets orders targets by IP and port so plans, batches and tests
// are deterministic.
func SortTargets(ts []Target) {
	sort.Slice(ts, func(i, j int) bool {
		if c := ts[i].IP.Compare(ts[j].IP); c != 0 {
			return c < 0
		}
		return ts[i].Port < ts[j].Port
	})
}

// SortObserved orders observed targets by IP and port, a target's
// draining entry after its other one.
func SortObserved(out []Observed) {
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].IP.Compare(out[j].IP); c != 0 {
			return c < 0
		}
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].State != Draining && out[j].State == Draining
	})
}

// Batches splits targets into chunks of at most size.
func Batches[T any](items []T, size int) [][]T {
	if size <= 0 {
		size = len(items)
	}
	var out [][]T
	for len(items) > 0 {
		n := min(size, len(items))
		out = append(out, items[:n:n])
		items = items[n:]
	}
	return out
}

// Intern returns the one shared copy of s: what a controller keeps per
// pod or target repeats a few words (label keys and values, zones,
// states, VM names) thousands of times over.
func Intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
