package targets

import (
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

// Registry is the controller's in-memory view shared by the Service,
// binding and gate reconcilers: which Services bind which ports, what the
// cloud last reported per pod, and each binding's status. Everything in
// it is recomputed from Kubernetes and the cloud after a restart.
type Registry struct {
	mu       sync.RWMutex
	services map[types.NamespacedName]*ServiceEntry
	// bySelector holds the entries with a selector under
	// selectorIndexKey, so a pod's Services are found among those its
	// labels can match, not among every Service.
	bySelector map[string][]*ServiceEntry
	bindings   map[providers.BindingKey]*providers.Binding
	health     map[providers.BindingKey]*BindingHealth
	status     map[providers.BindingKey]*BindingStatus
	// gens counts changes of each binding, so an observation made for an
	// earlier version of a binding (another group, another port) is never
	// stored for the current one.
	gens    map[providers.BindingKey]uint64
	nextGen uint64
	zones   []string
	// balancers holds, per load balancer (BindingKey.Balancer), the
	// bindings it contributes to each Service.
	balancers map[string]map[types.NamespacedName][]providers.BindingKey
	// ingresses records, per Ingress, what its balancer last settled.
	ingresses map[types.NamespacedName]IngressSettled
	// lbServices records, per Service of type LoadBalancer, the version
	// of it whose listeners' bindings its balancer last settled.
	lbServices map[types.NamespacedName]string

	// Hooks wired by the controller: enqueue pods whose gate may change and
	// Services whose status changed.
	PodsChanged    func([]types.NamespacedName)
	ServiceChanged func(types.NamespacedName)
	// BalancerChanged is told, instead of ServiceChanged, when the status
	// of a load balancer's backend binding changed (by BindingKey.Balancer).
	BalancerChanged func(string)
	// BindingErrorChanged is told when a binding starts or stops failing:
	// gates of pods never observed in it show that error.
	BindingErrorChanged func(*ServiceEntry)
}

// ServiceEntry is what podlb binds for one Service: the bindings of its
// own annotation and those load balancers it is a backend of contribute.
// The registry never changes an entry it handed out; it stores a new one.
type ServiceEntry struct {
	Name     types.NamespacedName
	Selector labels.Selector // nil when the Service has no selector
	// Bindings are all the Service's bindings: its own annotation's, then
	// the load balancers', each part sorted by key.
	Bindings []providers.BindingKey
	// Problems and Ignored are those of the Service's own annotation.
	Problems []Problem
	Ignored  []string
	// Annotated is true while the Service's own annotation is in force
	// (SetService); an entry with only load balancers' bindings has none.
	Annotated bool

	own       []providers.BindingKey
	balancers map[string][]providers.BindingKey
}

// merge sets Bindings from the entry's parts.
func (e *ServiceEntry) merge() {
	e.Bindings = append([]providers.BindingKey(nil), e.own...)
	for _, owner := range slices.Sorted(maps.Keys(e.balancers)) {
		e.Bindings = append(e.Bindings, e.balancers[owner]...)
	}
}

// empty reports whether nothing binds the Service any more.
func (e *ServiceEntry) empty() bool { return !e.Annotated && len(e.balancers) == 0 }

// IngressSettled is what the balancer of an Ingress last put in the
// registry for it.
type IngressSettled struct {
	// Generation of the Ingress the balancer settled.
	Generation int64
	// Services are the backend Services it found: their bindings from
	// this Ingress, if any, are in the registry.
	Services []string
}

// PodTarget is one pod's target in one binding as last observed.
type PodTarget struct {
	Pod        types.NamespacedName
	State      providers.State
	CloudState string
	Reason     string
	Group      string
	// HealthySince is when podlb first saw the cloud report it healthy.
	HealthySince time.Time
	// Rejected is true when the cloud refused to register the target;
	// Reason then holds the cloud's error.
	Rejected bool
}

// BindingHealth is the last observation of one binding.
type BindingHealth struct {
	Group   string
	Serving bool
	// NotServingWhy says why no load balancer checks the group.
	NotServingWhy string
	Pods          map[types.UID]PodTarget
}

// BindingStatus is a binding's status for the Service annotation.
type BindingStatus struct {
	Group      string `json:"group,omitempty"`
	Owned      bool   `json:"owned,omitempty"`
	Desired    int    `json:"desired"`
	Registered int    `json:"registered"`
	Healthy    int    `json:"healthy"`
	Error      string `json:"error,omitempty"`
	// Rejected lists targets the cloud refused (at most ten), with the
	// cloud's error; the other targets are served.
	Rejected map[string]string `json:"rejected,omitempty"`
	Details  map[string]string `json:"details,omitempty"`
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		services:   map[types.NamespacedName]*ServiceEntry{},
		bySelector: map[string][]*ServiceEntry{},
		bindings:   map[providers.BindingKey]*providers.Binding{},
		health:     map[providers.BindingKey]*BindingHealth{},
		status:     map[providers.BindingKey]*BindingStatus{},
		gens:       map[providers.BindingKey]uint64{},
	}
}

// SetService records the bindings of a Service's own annotation and
// returns the keys of bindings that were added, changed or removed.
// Bindings load balancers contribute to the Service stay as they are.
func (r *Registry) SetService(e *ServiceEntry, bindings []*providers.Binding) (changed []providers.BindingKey, removed []providers.BindingKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.services[e.Name]
	want := map[providers.BindingKey]bool{}
	for _, b := range bindings {
		want[b.Key] = true
		if r.putBindingLocked(b) {
			changed = append(changed, b.Key)
		}
	}
	if old != nil {
		for _, k := range old.own {
			if !want[k] {
				removed = append(removed, k)
				r.dropBindingLocked(k)
			}
		}
		e.balancers = old.balancers
	}
	e.own = make([]providers.BindingKey, 0, len(bindings))
	for _, b := range bindings {
		e.own = append(e.own, b.Key)
	}
	e.Annotated = true
	e.merge()
	r.putServiceLocked(e)
	return changed, removed
}

// putBindingLocked stores a binding and reports whether it is new or
// changed.
func (r *Registry) putBindingLocked(b *providers.Binding) bool {
	prev, ok := r.bindings[b.Key]
	r.bindings[b.Key] = b
	if ok && sameBinding(prev, b) {
		return false
	}
	// Health seen for the previous version may be of another group or
	// port: it must not open gates for this one.
	r.nextGen++
	r.gens[b.Key] = r.nextGen
	delete(r.health, b.Key)
	return true
}

// RemoveService forgets the bindings of a Service's own annotation and
// returns their keys. The entry stays while load balancers bind the
// Service.
func (r *Registry) RemoveService(nn types.NamespacedName) []providers.BindingKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.services[nn]
	if e == nil {
		return nil
	}
	for _, k := range e.own {
		r.dropBindingLocked(k)
	}
	rest := &ServiceEntry{Name: nn, Selector: e.Selector, balancers: e.balancers}
	r.storeLocked(rest)
	return e.own
}

// storeLocked stores an entry with its bindings merged, or drops it when
// nothing binds the Service any more.
func (r *Registry) storeLocked(e *ServiceEntry) {
	if e.empty() {
		r.deleteServiceLocked(e.Name)
		return
	}
	e.merge()
	r.putServiceLocked(e)
}

// putServiceLocked stores an entry under its name and its selector's
// index key, replacing the one stored before.
func (r *Registry) putServiceLocked(e *ServiceEntry) {
	r.deleteServiceLocked(e.Name)
	r.services[e.Name] = e
	if e.Selector == nil {
		return
	}
	key := selectorIndexKey(e.Name.Namespace, e.Selector)
	r.bySelector[key] = append(r.bySelector[key], e)
}

func (r *Registry) deleteServiceLocked(nn types.NamespacedName) {
	old := r.services[nn]
	if old == nil {
		return
	}
	delete(r.services, nn)
	if old.Selector == nil {
		return
	}
	key := selectorIndexKey(nn.Namespace, old.Selector)
	rest := slices.DeleteFunc(r.bySelector[key], func(e *ServiceEntry) bool { return e.Name == nn })
	if len(rest) == 0 {
		delete(r.bySelector, key)
	} else {
		r.bySelector[key] = rest
	}
}

// selectorIndexKey is where SelectingServices finds a selector: under
// its SelectorPair ("ns/key=value"), or under "ns/" for selectors without
// one, which are tested against every pod of the namespace.
func selectorIndexKey(namespace string, sel labels.Selector) string {
	pair, _ := SelectorPair(sel)
	return namespace + "/" + pair
}

// SelectorPair is the first requirement of one label value of sel, in
// key order, as "key=value": every pod sel selects carries that pair, so
// the pod's own label pairs find sel in an index by it. ok is false when
// sel has no such requirement.
func SelectorPair(sel labels.Selector) (pair string, ok bool) {
	reqs, _ := sel.Requirements()
	for _, req := range reqs {
		switch req.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			if vals := req.Values(); vals.Len() == 1 {
				return req.Key() + "=" + vals.UnsortedList()[0], true
			}
		}
	}
	return "", false
}

// SetBalancerBindings records the bindings one load balancer (owner, the
// BindingKey.Balancer of its bindings) contributes to each backend
// Service, replacing what it contributed before, and returns the keys
// of bindings that were added, changed or removed. selectors are the
// backend Services' selectors, used for entries the Service's own
// annotation does not make. Releasing removed bindings in the cloud is
// the caller's.
func (r *Registry) SetBalancerBindings(owner string, bindings map[types.NamespacedName][]*providers.Binding, selectors map[types.NamespacedName]labels.Selector) (changed, removed []providers.BindingKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.balancers == nil {
		r.balancers = map[string]map[types.NamespacedName][]providers.BindingKey{}
	}
	prev := r.balancers[owner]
	now := map[types.NamespacedName][]providers.BindingKey{}
	want := map[providers.BindingKey]bool{}
	for nn, bs := range bindings {
		for _, b := range bs {
			if b.Key.Balancer != owner || b.Key.Namespace != nn.Namespace || b.Key.Service != nn.Name {
				continue // not this owner's binding of this Service: never stored
			}
			want[b.Key] = true
			now[nn] = append(now[nn], b.Key)
			if r.putBindingLocked(b) {
				changed = append(changed, b.Key)
			}
		}
		sortKeys(now[nn])
	}
	for _, keys := range prev {
		for _, k := range keys {
			if !want[k] {
				removed = append(removed, k)
				r.dropBindingLocked(k)
			}
		}
	}
	touched := map[types.NamespacedName]bool{}
	for nn := range prev {
		touched[nn] = true
	}
	for nn := range now {
		touched[nn] = true
	}
	for nn := range touched {
		e := &ServiceEntry{Name: nn, Selector: selectors[nn]}
		if old := r.services[nn]; old != nil {
			c := *old
			e = &c
			if !e.Annotated && selectors[nn] != nil {
				e.Selector = selectors[nn]
			}
		}
		e.balancers = maps.Clone(e.balancers)
		if e.balancers == nil {
			e.balancers = map[string][]providers.BindingKey{}
		}
		if keys := now[nn]; len(keys) > 0 {
			e.balancers[owner] = keys
		} else {
			delete(e.balancers, owner)
		}
		r.storeLocked(e)
	}
	if len(now) == 0 {
		delete(r.balancers, owner)
	} else {
		r.balancers[owner] = now
	}
	sortKeys(changed)
	sortKeys(removed)
	return changed, removed
}

// RemoveBalancer forgets every binding a load balancer contributes and
// returns their keys.
func (r *Registry) RemoveBalancer(owner string) []providers.BindingKey {
	_, removed := r.SetBalancerBindings(owner, nil, nil)
	return removed
}

// SetIngressSettled records what the balancer of an Ingress put in the
// registry for the Ingress's generation; the gate trusts the registry for
// the Ingress's backends only then.
func (r *Registry) SetIngressSettled(ing types.NamespacedName, s IngressSettled) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ingresses == nil {
		r.ingresses = map[types.NamespacedName]IngressSettled{}
	}
	s.Services = slices.Clone(s.Services)
	r.ingresses[ing] = s
}

// ForgetIngress drops what SetIngressSettled recorded.
func (r *Registry) ForgetIngress(ing types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.ingresses, ing)
}

// IngressSettledFor reports whether the balancer of an Ingress settled
// its generation and found Service service among its backends.
func (r *Registry) IngressSettledFor(ing types.NamespacedName, generation int64, service string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.ingresses[ing]
	return ok && s.Generation == generation && slices.Contains(s.Services, service)
}

// SetLoadBalancerServiceSettled records that the balancer of a Service of
// type LoadBalancer put in the registry the bindings of its listeners for
// the Service's version (an opaque summary of what decides them); the
// gate trusts the registry for that Service only then. It reports
// whether that changed what was recorded.
func (r *Registry) SetLoadBalancerServiceSettled(svc types.NamespacedName, version string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lbServices == nil {
		r.lbServices = map[types.NamespacedName]string{}
	}
	if v, ok := r.lbServices[svc]; ok && v == version {
		return false
	}
	r.lbServices[svc] = version
	return true
}

// ForgetLoadBalancerService drops what SetLoadBalancerServiceSettled
// recorded, and reports whether there was anything.
func (r *Registry) ForgetLoadBalancerService(svc types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.lbServices[svc]
	delete(r.lbServices, svc)
	return ok
}

// LoadBalancerServiceSettled reports whether the balancer of a Service of
// type LoadBalancer settled this version of it.
func (r *Registry) LoadBalancerServiceSettled(svc types.NamespacedName, version string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.lbServices[svc]
	return ok && v == version
}

func sortKeys(keys []providers.BindingKey) {
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
}

func (r *Registry) dropBindingLocked(k providers.BindingKey) {
	delete(r.bindings, k)
	delete(r.health, k)
	delete(r.status, k)
	delete(r.gens, k)
}

func sameBinding(a, b *providers.Binding) bool {
	return a.PortName == b.PortName && a.Protocol == b.Protocol && a.TargetPort == b.TargetPort &&
		a.Mode == b.Mode && a.Spec.Summary() == b.Spec.Summary()
}

// Binding returns a copy of the binding with the current zones, or nil.
func (r *Registry) Binding(k providers.BindingKey) *providers.Binding {
	b, _ := r.BindingAt(k)
	return b
}

// BindingAt returns a copy of the binding with the current zones and the
// binding's generation, to hand back to SetHealth; nil when unknown.
func (r *Registry) BindingAt(k providers.BindingKey) (*providers.Binding, uint64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	b, ok := r.bindings[k]
	if !ok {
		return nil, 0
	}
	c := *b
	c.Zones = append([]string(nil), r.zones...)
	return &c, r.gens[k]
}

// IfCurrent runs fn while generation gen of the binding is current and
// holds off its removal, so per-binding metric series are never written
// after the binding is gone. It reports whether fn ran.
func (r *Registry) IfCurrent(k providers.BindingKey, gen uint64, fn func()) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.bindings[k]; !ok || r.gens[k] != gen {
		return false
	}
	fn()
	return true
}

// Service returns the Service's entry, or nil.
func (r *Registry) Service(nn types.NamespacedName) *ServiceEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.services[nn]
}

// AllBindings lists every binding key.
func (r *Registry) AllBindings() []providers.BindingKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	keys := make([]providers.BindingKey, 0, len(r.bindings))
	for k := range r.bindings {
		keys = append(keys, k)
	}
	return keys
}

// BindingsOfService lists the binding keys of a Service.
func (r *Registry) BindingsOfService(nn types.NamespacedName) []providers.BindingKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if e := r.services[nn]; e != nil {
		return append([]providers.BindingKey(nil), e.Bindings...)
	}
	return nil
}

// SelectingServices returns the entries of Services in namespace whose
// selector matches the pod's labels.
func (r *Registry) SelectingServices(namespace string, podLabels map[string]string) []*ServiceEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*ServiceEntry
	set := labels.Set(podLabels)
	add := func(key string) {
		for _, e := range r.bySelector[key] {
			if e.Selector.Matches(set) {
				out = append(out, e)
			}
		}
	}
	add(namespace + "/")
	for k, v := range podLabels {
		add(namespace + "/" + k + "=" + v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name.String() < out[j].Name.String() })
	return out
}

// SetZones records the zones that have nodes; it reports whether they
// changed.
func (r *Registry) SetZones(zones []string) bool {
	sort.Strings(zones)
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Equal(r.zones, zones) {
		return false
	}
	r.zones = zones
	return true
}

// SetHealth stores an observation made for generation gen of a binding
// and notifies the pods whose target state changed. An observation of an
// earlier generation, or of a removed binding, is dropped.
func (r *Registry) SetHealth(k providers.BindingKey, gen uint64, h *BindingHealth) {
	r.mu.Lock()
	old := r.health[k]
	if _, ok := r.bindings[k]; !ok || r.gens[k] != gen {
		r.mu.Unlock()
		return
	}
	r.health[k] = h
	r.mu.Unlock()

	var changed []types.NamespacedName
	for uid, t := range h.Pods {
		if old == nil || old.Serving != h.Serving {
			changed = append(changed, t.Pod)
			continue
		}
		if o, ok := old.Pods[uid]; !ok || o.State != t.State || o.Reason != t.Reason || o.CloudState != t.CloudState {
			changed = append(changed, t.Pod)
		}
	}
	if old != nil {
		for uid, t := range old.Pods {
			if _, ok := h.Pods[uid]; !ok {
				changed = append(changed, t.Pod)
			}
		}
	}
	if len(changed) > 0 && r.PodsChanged != nil {
		r.PodsChanged(changed)
	}
}

// Health returns a binding's last observation, nil before the first one.
func (r *Registry) Health(k providers.BindingKey) *BindingHealth {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.health[k]
}

// SetStatus stores a binding's status and notifies its Service on change.
func (r *Registry) SetStatus(k providers.BindingKey, s *BindingStatus) {
	nn := types.NamespacedName{Namespace: k.Namespace, Name: k.Service}
	r.mu.Lock()
	old := r.status[k]
	_, ok := r.bindings[k]
	if ok {
		r.status[k] = s
	}
	svc := r.services[nn]
	r.mu.Unlock()
	if !ok {
		return
	}
	switch changed := old == nil || !sameStatus(old, s); {
	case !changed:
	case k.Balancer != "":
		if r.BalancerChanged != nil {
			r.BalancerChanged(k.Balancer)
		}
	case r.ServiceChanged != nil:
		r.ServiceChanged(nn)
	}
	if (old == nil && s.Error != "" || old != nil && old.Error != s.Error) && svc != nil && r.BindingErrorChanged != nil {
		r.BindingErrorChanged(svc)
	}
}

// Unreported counts the bindings that have no status yet: not reconciled
// once since they were registered.
func (r *Registry) Unreported() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for k := range r.bindings {
		if r.status[k] == nil {
			n++
		}
	}
	return n
}

// Status returns a copy of a binding's status, nil before the first one.
func (r *Registry) Status(k providers.BindingKey) *BindingStatus {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if s := r.status[k]; s != nil {
		c := *s
		return &c
	}
	return nil
}

func sameStatus(a, b *BindingStatus) bool {
	if a.Group != b.Group || a.Owned != b.Owned || a.Desired != b.Desired || a.Registered != b.Registered ||
		a.Healthy != b.Healthy || a.Error != b.Error || len(a.Details) != len(b.Details) || !maps.Equal(a.Rejected, b.Rejected) {
		return false
	}
	for k, v := range a.Details {
		if b.Details[k] != v {
			return false
		}
	}
	return true
}
