package controller

import (
	"context"
	"maps"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
)

// SlimPod keeps only what podlb reads of a pod, in a CachedPod, so that
// caching every pod of a large cluster costs a fraction of the full
// objects: no env, volumes, images, managed fields, owner references,
// container statuses or containers without a preStop hook; of the
// conditions only those podlb decides by, and of their texts only the
// gate's own. Strings that repeat across pods (namespace, node,
// condition types, the gate's message) are shared, not held once per
// pod, and so are whole label maps: the pods of a ReplicaSet carry equal
// ones.
func SlimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &CachedPod{
		ObjectMeta: slimMeta(&p.ObjectMeta, false),
		labels:     shareLabels(p.Labels),
		nodeName:   providers.Intern(p.Spec.NodeName),
		podIP:      p.Status.PodIP,
		phase:      corev1.PodPhase(providers.Intern(string(p.Status.Phase))),
		grace:      p.Spec.TerminationGracePeriodSeconds,
	}
	if slim.labels != nil {
		slim.Labels = slim.labels.m
	}
	if len(p.Spec.ReadinessGates) > 0 {
		slim.gates = make([]corev1.PodConditionType, len(p.Spec.ReadinessGates))
		for i, g := range p.Spec.ReadinessGates {
			slim.gates[i] = internType(g.ConditionType)
		}
	}
	slim.keepConditions(p)
	// PodIPs repeats PodIP in single-stack clusters: keep it only when it
	// says more.
	if len(p.Status.PodIPs) > 1 || (len(p.Status.PodIPs) == 1 && p.Status.PodIPs[0].IP != p.Status.PodIP) {
		slim.podIPs = p.Status.PodIPs
	}
	// Only preStop hooks are read of containers (how long a pod drains);
	// containers without one are left out.
	for _, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			slim.preStops = append(slim.preStops, corev1.Container{Name: providers.Intern(c.Name), Lifecycle: &corev1.Lifecycle{PreStop: c.Lifecycle.PreStop}})
		}
	}
	return slim, nil
}

// CachedPod is how a pod sits in the cache: what SlimPod keeps, in about
// a fifth of the memory a corev1.Pod holding the same would take (the
// struct alone is 1,240 bytes). Nothing reads it as it is: the cache
// hands Get and List a *corev1.Pod built from it (DeepCopyObject), event
// handlers and metrics fill one with Into.
type CachedPod struct {
	metav1.ObjectMeta // its Labels are labels' map, shared
	labels            *labelSet
	nodeName, podIP   string
	phase             corev1.PodPhase
	grace             *int64
	podIPs            []corev1.PodIP // only when they say more than podIP
	gates             []corev1.PodConditionType
	preStops          []corev1.Container // name and lifecycle only
	conditions        []cachedCondition
	// The gate's reason, message and last write: the gate compares them,
	// and paces rewrites of the message by the last write.
	gateReason, gateMessage string
	gateProbe               metav1.Time
}

// cachedCondition is a pod condition without its texts.
type cachedCondition struct {
	kind   corev1.PodConditionType
	status corev1.ConditionStatus
	since  metav1.Time
}

// keepConditions keeps the conditions podlb reads: ContainersReady (when
// a pod may be registered), Ready, podlb's gate and the pod's other
// readiness gates (a pod held only by podlb's gate is registered); c's
// gates must be set.
func (c *CachedPod) keepConditions(p *corev1.Pod) {
	wanted := func(t corev1.PodConditionType) bool {
		return t == corev1.ContainersReady || t == corev1.PodReady || t == targets.GateConditionType || slices.Contains(c.gates, t)
	}
	// Sized exactly: the cache holds one slice per pod.
	n := 0
	for _, pc := range p.Status.Conditions {
		if wanted(pc.Type) {
			n++
		}
	}
	if n == 0 {
		return
	}
	c.conditions = make([]cachedCondition, 0, n)
	for _, pc := range p.Status.Conditions {
		if !wanted(pc.Type) {
			continue
		}
		c.conditions = append(c.conditions, cachedCondition{kind: internType(pc.Type), status: corev1.ConditionStatus(providers.Intern(string(pc.Status))), since: pc.LastTransitionTime})
		if pc.Type == targets.GateConditionType {
			c.gateReason, c.gateMessage, c.gateProbe = providers.Intern(pc.Reason), providers.Intern(pc.Message), pc.LastProbeTime
		}
	}
}

// GetObjectKind implements runtime.Object; the cache sets the kind of
// what it hands out.
func (c *CachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object, and returns a *corev1.Pod:
// the cache's Get and List copy what they hand out with it, so readers
// get the pod type they asked for.
func (c *CachedPod) DeepCopyObject() runtime.Object { return c.Pod() }

// Pod returns the pod, a copy sharing nothing with the cache.
func (c *CachedPod) Pod() *corev1.Pod {
	p := &corev1.Pod{}
	c.Into(p)
	c.ObjectMeta.DeepCopyInto(&p.ObjectMeta)
	if c.grace != nil {
		p.Spec.TerminationGracePeriodSeconds = ptr.To(*c.grace)
	}
	p.Status.PodIPs = slices.Clone(c.podIPs)
	p.Spec.Containers = nil
	for i := range c.preStops {
		p.Spec.Containers = append(p.Spec.Containers, *c.preStops[i].DeepCopy())
	}
	return p
}

// Into fills p with the pod, reusing p's slices; p shares the labels,
// pointers and containers with the cache and must not change them.
func (c *CachedPod) Into(p *corev1.Pod) {
	gates, conds := p.Spec.ReadinessGates[:0], p.Status.Conditions[:0]
	*p = corev1.Pod{
		ObjectMeta: c.ObjectMeta,
		Spec:       corev1.PodSpec{NodeName: c.nodeName, TerminationGracePeriodSeconds: c.grace, Containers: c.preStops},
		Status:     corev1.PodStatus{Phase: c.phase, PodIP: c.podIP, PodIPs: c.podIPs},
	}
	for _, g := range c.gates {
		gates = append(gates, corev1.PodReadinessGate{ConditionType: g})
	}
	for _, cc := range c.conditions {
		pc := corev1.PodCondition{Type: cc.kind, Status: cc.status, LastTransitionTime: cc.since}
		if cc.kind == targets.GateConditionType {
			pc.Reason, pc.Message, pc.LastProbeTime = c.gateReason, c.gateMessage, c.gateProbe
		}
		conds = append(conds, pc)
	}
	if len(gates) > 0 {
		p.Spec.ReadinessGates = gates
	}
	if len(conds) > 0 {
		p.Status.Conditions = conds
	}
}

// podView returns the pod an event handler was given, to read only: a
// *corev1.Pod as it is, the cache's CachedPod filled into buf (which
// then shares the cache's labels and pointers).
func podView(obj any, buf *corev1.Pod) (*corev1.Pod, bool) {
	switch p := obj.(type) {
	case *corev1.Pod:
		return p, true
	case *CachedPod:
		p.Into(buf)
		return buf, true
	}
	return nil, false
}

// cachedPods walks the pods in c's cache without copying them, each
// filled in turn into one reused pod.
func cachedPods(c cache.Cache) readiness.PodWalk {
	return func(ctx context.Context, visit func(*corev1.Pod)) error {
		store, err := informerStore(ctx, c, &corev1.Pod{})
		if err != nil {
			return err
		}
		var buf corev1.Pod
		for _, obj := range store.List() {
			if p, ok := podView(obj, &buf); ok {
				visit(p)
			}
		}
		return nil
	}
}

// cachedReader is targets.CachedReader over a cache's informers: a pod
// is its CachedPod filled into a pod of its own (sharing labels and
// pointers with the cache), a node the cache's own.
type cachedReader struct{ pods, nodes, slices *storeOf }

func newCachedReader(c cache.Cache) cachedReader {
	return cachedReader{pods: &storeOf{cache: c, kind: &corev1.Pod{}}, nodes: &storeOf{cache: c, kind: &corev1.Node{}},
		slices: &storeOf{cache: c, kind: &discoveryv1.EndpointSlice{}}}
}

func (r cachedReader) Slices(ctx context.Context, namespace, service string) ([]*targets.Slice, error) {
	objs, err := r.slices.byIndex(ctx, targets.SliceServiceIndex, namespace+"/"+service)
	if err != nil {
		return nil, err
	}
	out := make([]*targets.Slice, 0, len(objs))
	for _, o := range objs {
		if s, ok := sliceOf(o); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

func (r cachedReader) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, bool) {
	obj, ok := r.pods.get(ctx, namespace+"/"+name)
	if !ok {
		return nil, false
	}
	return podView(obj, &corev1.Pod{})
}

func (r cachedReader) Node(ctx context.Context, name string) (*corev1.Node, bool) {
	obj, ok := r.nodes.get(ctx, name)
	if !ok {
		return nil, false
	}
	n, ok := obj.(*corev1.Node)
	return n, ok
}

// SlimObject is the transform of every other cached kind (Services,
// Ingresses, IngressClasses): their managed fields go, and so does the
// last-applied-configuration annotation, a copy of the whole object that
// client-side apply writes on each and podlb never reads. podlb changes
// cached objects only by patches made from the difference between a copy
// and its change, which leave what the cache lacks untouched.
func SlimObject(obj any) (any, error) {
	obj, err := stripManagedFields(obj)
	if m, ok := obj.(metav1.Object); ok && err == nil {
		if a := m.GetAnnotations(); a != nil {
			delete(a, corev1.LastAppliedConfigAnnotation)
		}
	}
	return obj, err
}

var stripManagedFields = cache.TransformStripManagedFields()

// SlimNode keeps a node's name, labels and providerID; node status (images,
// conditions, capacity) is large and podlb needs none of it.
func SlimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta:   n.TypeMeta,
		ObjectMeta: slimMeta(&n.ObjectMeta, true),
		Spec:       corev1.NodeSpec{ProviderID: n.Spec.ProviderID},
	}, nil
}

// SlimEndpointSlice keeps what desired targets are built from, in a
// CachedSlice (see targets.SliceOf).
func SlimEndpointSlice(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	c := &CachedSlice{ObjectMeta: slimMeta(&s.ObjectMeta, false), labels: shareLabels(s.Labels), slice: targets.SliceOf(s)}
	if c.labels != nil {
		c.Labels = c.labels.m
	}
	return c, nil
}

// CachedSlice is how an EndpointSlice sits in the cache: its metadata and
// the targets.Slice the binding pass reads as it is, an endpoint in about
// a third of the memory a discoveryv1.Endpoint with its pointers and
// object reference takes. The cache's Get and List hand out a
// *discoveryv1.EndpointSlice built from it (DeepCopyObject), which holds
// only what the Slice kept.
type CachedSlice struct {
	metav1.ObjectMeta // its Labels are labels' map, shared
	labels            *labelSet
	slice             *targets.Slice
}

// GetObjectKind implements runtime.Object; the cache sets the kind of
// what it hands out.
func (c *CachedSlice) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object, and returns a
// *discoveryv1.EndpointSlice sharing nothing with the cache.
func (c *CachedSlice) DeepCopyObject() runtime.Object {
	s := &discoveryv1.EndpointSlice{AddressType: c.slice.AddressType, Endpoints: make([]discoveryv1.Endpoint, len(c.slice.Endpoints))}
	c.ObjectMeta.DeepCopyInto(&s.ObjectMeta)
	for _, p := range c.slice.Ports {
		s.Ports = append(s.Ports, *p.DeepCopy())
	}
	for i, ep := range c.slice.Endpoints {
		out := discoveryv1.Endpoint{Addresses: []string{ep.Address.String()},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: c.Namespace, Name: ep.Pod, UID: ep.UID}}
		if ep.Terminating {
			out.Conditions.Terminating = ptr.To(true)
		}
		if ep.Node != "" {
			out.NodeName = ptr.To(ep.Node)
		}
		if ep.Zone != "" {
			out.Zone = ptr.To(ep.Zone)
		}
		s.Endpoints[i] = out
	}
	return s
}

// sliceOf is the Slice of a cached EndpointSlice.
func sliceOf(obj any) (*targets.Slice, bool) {
	switch s := obj.(type) {
	case *CachedSlice:
		return s.slice, true
	case *discoveryv1.EndpointSlice:
		return targets.SliceOf(s), true
	}
	return nil, false
}

// slimMeta keeps what podlb reads of an object's metadata; the labels
// only when withLabels (a caller sharing them sets them itself).
func slimMeta(m *metav1.ObjectMeta, withLabels bool) metav1.ObjectMeta {
	out := metav1.ObjectMeta{
		Name:                       m.Name,
		Namespace:                  providers.Intern(m.Namespace),
		UID:                        m.UID,
		ResourceVersion:            m.ResourceVersion,
		Generation:                 m.Generation,
		DeletionTimestamp:          m.DeletionTimestamp,
		DeletionGracePeriodSeconds: m.DeletionGracePeriodSeconds,
	}
	if withLabels && len(m.Labels) > 0 {
		out.Labels = make(map[string]string, len(m.Labels))
		for k, v := range m.Labels {
			out.Labels[providers.Intern(k)] = providers.Intern(v)
		}
	}
	return out
}

// labelSet is a map of labels shared by the cached pods that carry the
// same labels: the pods of one ReplicaSet, tens to thousands of them.
// Each pod holds its set; the set goes when the last of them does.
type labelSet struct{ m map[string]string }

// labelSets finds a labelSet by labelsKey, without keeping it alive.
var labelSets sync.Map // string -> weak.Pointer[labelSet]

// shareLabels returns the shared set of labels equal to m, nil for none.
// Readers must not change the map: it is every such pod's.
func shareLabels(m map[string]string) *labelSet {
	if len(m) == 0 {
		return nil
	}
	key := labelsKey(m)
	if v, ok := labelSets.Load(key); ok {
		if set := v.(weak.Pointer[labelSet]).Value(); set != nil {
			return set
		}
	}
	set := &labelSet{m: make(map[string]string, len(m))}
	for k, v := range m {
		set.m[providers.Intern(k)] = providers.Intern(v)
	}
	ref := weak.Make(set)
	// Two pods racing here may each make a set; the one stored last is
	// shared from then on, and the other serves its pod just as well.
	labelSets.Store(key, ref)
	goruntime.AddCleanup(set, func(key string) { labelSets.CompareAndDelete(key, ref) }, key)
	return set
}

// labelsKey is m in one string, equal for equal maps: keys sorted, each
// pair and each key from its value split by a byte labels cannot hold.
func labelsKey(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	return b.String()
}

func internType(t corev1.PodConditionType) corev1.PodConditionType {
	return corev1.PodConditionType(providers.Intern(string(t)))
}
