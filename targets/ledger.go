package targets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/providers"
)

// The ledger is podlb's durable record of what it did to the cloud, one
// ConfigMap per binding in the controller's own namespace:
//
//   - the group reference, so a group can be released after the annotation
//     that named it is gone, or after a restart;
//   - for shared groups (not created by podlb), every target this binding
//     registered or wants there, so only those are ever deregistered, and
//     none that another binding of the same group still records. A shared
//     group may hold targets of other clusters or of people, and nothing in
//     the cloud says who registered a target.
//
// ConfigMaps in podlb's namespace rather than annotations on the Service:
// they survive edits of the Service by other tools, need write access only
// to podlb's own namespace, and hold up to a MiB where annotations share
// 256 KiB with everything else. Targets are added before they are
// registered and removed after they are deregistered, so a crash can leave
// a stale entry (harmless: deregistering a missing target succeeds) but
// never an unrecorded target.
type Ledger struct {
	client    client.Client
	reader    client.Reader // uncached: the ledger is read rarely, written often
	namespace string

	// loading serialises the one list that fills entries at start.
	loading sync.Mutex
	mu      sync.Mutex
	entries map[providers.BindingKey]*LedgerEntry
	// byService indexes entries by Service, for Bindings. A Service has
	// one or a few bindings: a slice holds them in an eighth of a map's
	// memory.
	byService map[types.NamespacedName][]providers.BindingKey
	// loaded is true once every stored entry has been read: a binding
	// missing from entries then has none.
	loaded bool
	// refLabelled is true once every stored entry carries the ref label.
	refLabelled bool
	// raced is true once a write met an entry another writer changed:
	// memory may then miss stored entries, and lists go to the API server.
	raced bool
}

// LedgerEntry is what the ledger knows of one binding.
type LedgerEntry struct {
	Ref string
	// Targets this cluster registered in the group, each with the pod it
	// was registered for ("" when not known): health of a target counts
	// for a pod only when it was registered for that pod, or when the
	// cloud has had time to judge the pod since.
	Targets map[providers.TargetKey]types.UID
	// Binding is the last good binding, restored while a later edit of the
	// annotation is broken, also after a restart.
	Binding *StoredBinding
	// Previous are groups the binding moved away from: they keep serving
	// until the pods are healthy in Ref, and are released then.
	Previous []PreviousGroup
	// version is the ConfigMap's resourceVersion, "" when not stored.
	version string
}

// StoredBinding is what it takes to rebuild a binding without its
// annotation.
type StoredBinding struct {
	PortName   string                  `json:"portName,omitempty"`
	Protocol   string                  `json:"protocol"`
	TargetPort int32                   `json:"targetPort,omitempty"`
	Mode       providers.ReadinessMode `json:"mode"`
	Spec       string                  `json:"spec"`
}

// PreviousGroup is a group a binding left, with this cluster's targets in
// it.
type PreviousGroup struct {
	Ref     string                `json:"ref"`
	Targets []providers.TargetKey `json:"targets,omitempty"`
}

// StoreBinding records what rebuilds b.
func StoreBinding(b *providers.Binding) *StoredBinding {
	return &StoredBinding{PortName: b.PortName, Protocol: b.Protocol, TargetPort: b.TargetPort, Mode: b.Mode, Spec: b.SpecRaw}
}

// Restore rebuilds the binding of key from what was stored, parsing the
// spec again with its provider.
func (s *StoredBinding) Restore(key providers.BindingKey, cluster string, p providers.Provider) (*providers.Binding, error) {
	spec, err := p.ParseSpec(json.RawMessage(s.Spec))
	if err != nil {
		return nil, err
	}
	return &providers.Binding{Key: key, Cluster: cluster, PortName: s.PortName, Protocol: s.Protocol, TargetPort: s.TargetPort,
		Mode: s.Mode, Spec: spec, SpecRaw: s.Spec}, nil
}

func (s *StoredBinding) equal(o *StoredBinding) bool {
	if s == nil || o == nil {
		return s == o
	}
	return *s == *o
}

const (
	ledgerLabelManagedBy = "app.kubernetes.io/managed-by"
	ledgerLabelService   = "podlb.io/service-hash"
	annNamespace         = "podlb.io/namespace"
	annService           = "podlb.io/service"
	annPort              = "podlb.io/port"
	annProvider          = "podlb.io/provider"
	// The balancer of a load balancer's backend binding, on its entry
	// only: entries of Services' own bindings are as they always were.
	annBalancer         = "podlb.io/balancer"
	ledgerLabelBalancer = "podlb.io/balancer-hash"
)

// NewLedger returns a ledger kept in namespace.
func NewLedger(c client.Client, reader client.Reader, namespace string) *Ledger {
	return &Ledger{client: c, reader: reader, namespace: namespace, entries: map[providers.BindingKey]*LedgerEntry{}}
}

func shortHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])[:16]
}

func ledgerName(k providers.BindingKey) string {
	parts := []string{k.Namespace, k.Service, k.Provider, strconv.Itoa(int(k.Port))}
	if k.Balancer != "" {
		parts = append(parts, k.Balancer)
	}
	return "podlb-" + k.Provider + "-" + shortHash(parts...)
}

// Get returns the binding's entry, loading it once from the API server.
// The leader is the only writer, so after the first read memory is
// authoritative.
func (l *Ledger) Get(ctx context.Context, k providers.BindingKey) (*LedgerEntry, error) {
	if e, ok, loaded := l.cached(k); ok {
		return e.clone(), nil
	} else if !loaded {
		// At start every binding asks at once: one list of all entries
		// costs less than one read each.
		if err := l.load(ctx); err == nil {
			if e, ok, _ := l.cached(k); ok {
				return e.clone(), nil
			}
			return l.keep(k, &LedgerEntry{Targets: map[providers.TargetKey]types.UID{}}), nil
		}
	}
	var (
		cm corev1.ConfigMap
		e  *LedgerEntry
	)
	err := l.reader.Get(ctx, client.ObjectKey{Namespace: l.namespace, Name: ledgerName(k)}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		e = &LedgerEntry{Targets: map[providers.TargetKey]types.UID{}}
	case err != nil:
		return nil, fmt.Errorf("reading ledger %s/%s: %w", l.namespace, ledgerName(k), err)
	default:
		e = entryFromConfigMap(&cm)
	}
	return l.keep(k, e), nil
}

func (l *Ledger) cached(k providers.BindingKey) (e *LedgerEntry, ok, loaded bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok = l.entries[k]
	return e, ok, l.loaded
}

// keep caches e for k unless an entry got there first, and returns a
// copy of the cached one.
func (l *Ledger) keep(k providers.BindingKey, e *LedgerEntry) *LedgerEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.entries[k]; ok {
		return cur.clone()
	}
	l.set(k, e)
	return e.clone()
}

// set and remove change entries and their index; l.mu is held.
func (l *Ledger) set(k providers.BindingKey, e *LedgerEntry) {
	l.entries[k] = e
	svc := types.NamespacedName{Namespace: k.Namespace, Name: k.Service}
	if l.byService == nil {
		l.byService = map[types.NamespacedName][]providers.BindingKey{}
	}
	if !slices.Contains(l.byService[svc], k) {
		l.byService[svc] = append(l.byService[svc], k)
	}
}

func (l *Ledger) remove(k providers.BindingKey) {
	delete(l.entries, k)
	svc := types.NamespacedName{Namespace: k.Namespace, Name: k.Service}
	if keys := slices.DeleteFunc(l.byService[svc], func(b providers.BindingKey) bool { return b == k }); len(keys) > 0 {
		l.byService[svc] = keys
	} else {
		delete(l.byService, svc)
	}
}

// load reads every stored entry once, in pages.
func (l *Ledger) load(ctx context.Context) error {
	l.loading.Lock()
	defer l.loading.Unlock()
	if _, _, loaded := l.cached(providers.BindingKey{}); loaded {
		return nil
	}
	opts := []client.ListOption{client.InNamespace(l.namespace), client.MatchingLabels{ledgerLabelManagedBy: "podlb"}, client.Limit(500)}
	for {
		var list corev1.ConfigMapList
		if err := l.reader.List(ctx, &list, opts...); err != nil {
			return fmt.Errorf("listing ledger: %w", err)
		}
		for i := range list.Items {
			if k, ok := ledgerKey(&list.Items[i]); ok && ledgerName(k) == list.Items[i].Name {
				l.keep(k, entryFromConfigMap(&list.Items[i]))
			}
		}
		if list.Continue == "" {
			break
		}
		opts = append(opts, client.Continue(list.Continue))
	}
	l.mu.Lock()
	l.loaded = true
	l.mu.Unlock()
	return nil
}

// Put stores the entry when it differs from what is stored.
func (l *Ledger) Put(ctx context.Context, k providers.BindingKey, e *LedgerEntry) error {
	cur, err := l.Get(ctx, k)
	if err != nil {
		return err
	}
	if cur.version != "" && cur.equal(e) {
		return nil
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: l.namespace,
			Name:      ledgerName(k),
			Labels: map[string]string{
				ledgerLabelManagedBy: "podlb",
				ledgerLabelService:   shortHash(k.Namespace, k.Service),
				ledgerLabelRef:       shortHash(e.Ref),
			},
			Annotations: map[string]string{
				annNamespace: k.Namespace,
				annService:   k.Service,
				annPort:      strconv.Itoa(int(k.Port)),
				annProvider:  k.Provider,
			},
			ResourceVersion: cur.version,
		},
		Data: map[string]string{"ref": e.Ref, "targets": formatTargets(e.Targets)},
	}
	if k.Balancer != "" {
		cm.Annotations[annBalancer] = k.Balancer
		cm.Labels[ledgerLabelBalancer] = shortHash(k.Balancer)
	}
	if e.Binding != nil {
		raw, err := json.Marshal(e.Binding)
		if err != nil {
			return err
		}
		cm.Data["binding"] = string(raw)
	}
	if len(e.Previous) > 0 {
		raw, err := json.Marshal(e.Previous)
		if err != nil {
			return err
		}
		cm.Data["previous"] = string(raw)
	}
	if cur.version == "" {
		err = l.client.Create(ctx, cm)
		if apierrors.IsAlreadyExists(err) {
			l.forgetRaced(k)
		}
	} else {
		err = l.client.Update(ctx, cm)
		if apierrors.IsConflict(err) {
			l.forgetRaced(k)
		}
	}
	if err != nil {
		return fmt.Errorf("writing ledger %s/%s: %w", l.namespace, cm.Name, err)
	}
	stored := e.clone()
	stored.version = cm.ResourceVersion
	l.mu.Lock()
	l.set(k, stored)
	l.mu.Unlock()
	return nil
}

// Delete removes the binding's entry.
func (l *Ledger) Delete(ctx context.Context, k providers.BindingKey) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: l.namespace, Name: ledgerName(k)}}
	if err := l.client.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ledger %s/%s: %w", l.namespace, cm.Name, err)
	}
	l.forget(k)
	return nil
}

func (l *Ledger) forget(k providers.BindingKey) {
	l.mu.Lock()
	l.remove(k)
	l.mu.Unlock()
}

func (l *Ledger) forgetRaced(k providers.BindingKey) {
	l.mu.Lock()
	l.remove(k)
	l.raced = true
	l.mu.Unlock()
}

// storedBindings answers Bindings from memory once every stored entry
// was loaded and no write raced another writer: the leader is then the
// only writer and memory holds every stored entry. At start a thousand
// Services each ask once; one list answers them all.
func (l *Ledger) storedBindings(ctx context.Context, namespace, service string) ([]providers.BindingKey, bool) {
	if err := l.load(ctx); err != nil {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.raced {
		return nil, false
	}
	var keys []providers.BindingKey
	for _, k := range l.byService[types.NamespacedName{Namespace: namespace, Name: service}] {
		if l.entries[k].version != "" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys, true
}

// Bindings lists the bindings the ledger holds for a Service, also those
// no longer in its annotations.
func (l *Ledger) Bindings(ctx context.Context, namespace, service string) ([]providers.BindingKey, error) {
	if keys, ok := l.storedBindings(ctx, namespace, service); ok {
		return keys, nil
	}
	var list corev1.ConfigMapList
	if err := l.reader.List(ctx, &list, client.InNamespace(l.namespace),
		client.MatchingLabels{ledgerLabelManagedBy: "podlb", ledgerLabelService: shortHash(namespace, service)}); err != nil {
		return nil, fmt.Errorf("listing ledger: %w", err)
	}
	var keys []providers.BindingKey
	for i := range list.Items {
		k, ok := ledgerKey(&list.Items[i])
		if !ok || k.Namespace != namespace || k.Service != service {
			continue // a hash collision; not this Service's
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	return keys, nil
}

// ledgerKey reads the binding a ledger ConfigMap records.
func ledgerKey(cm *corev1.ConfigMap) (providers.BindingKey, bool) {
	a := cm.Annotations
	port, err := strconv.Atoi(a[annPort])
	if err != nil || a[annNamespace] == "" || a[annService] == "" || a[annProvider] == "" {
		return providers.BindingKey{}, false
	}
	return providers.BindingKey{Namespace: a[annNamespace], Service: a[annService], Provider: a[annProvider], Port: int32(port), Balancer: a[annBalancer]}, true
}

// BalancerBindings lists the bindings the ledger holds for the backends
// of a load balancer (BindingKey.Balancer), also those it no longer has.
func (l *Ledger) BalancerBindings(ctx context.Context, balancer string) ([]providers.BindingKey, error) {
	recs, _, err := l.list(ctx, client.MatchingLabels{ledgerLabelManagedBy: "podlb", ledgerLabelBalancer: shortHash(balancer)})
	if err != nil {
		return nil, err
	}
	var keys []providers.BindingKey
	for _, r := range recs {
		if r.Key.Balancer == balancer {
			keys = append(keys, r.Key)
		}
	}
	return keys, nil
}

func entryFromConfigMap(cm *corev1.ConfigMap) *LedgerEntry {
	e := &LedgerEntry{Ref: cm.Data["ref"], Targets: map[providers.TargetKey]types.UID{}, version: cm.ResourceVersion}
	for _, line := range strings.Split(cm.Data["targets"], "\n") {
		addr, uid, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k, err := providers.ParseTargetKey(addr); err == nil {
			e.Targets[k] = types.UID(uid)
		}
	}
	if raw := cm.Data["binding"]; raw != "" {
		var b StoredBinding
		if json.Unmarshal([]byte(raw), &b) == nil {
			e.Binding = &b
		}
	}
	if raw := cm.Data["previous"]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &e.Previous)
	}
	return e
}

// formatTargets writes one "ip:port uid" line per target, sorted.
func formatTargets(ts map[providers.TargetKey]types.UID) string {
	lines := make([]string, 0, len(ts))
	for k, uid := range ts {
		line := k.String()
		if uid != "" {
			line += " " + string(uid)
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func (e *LedgerEntry) clone() *LedgerEntry {
	c := &LedgerEntry{Ref: e.Ref, Targets: maps.Clone(e.Targets), version: e.version, Previous: slices.Clone(e.Previous)}
	if c.Targets == nil {
		c.Targets = map[providers.TargetKey]types.UID{}
	}
	if e.Binding != nil {
		b := *e.Binding
		c.Binding = &b
	}
	return c
}

func (e *LedgerEntry) equal(o *LedgerEntry) bool {
	return e.Ref == o.Ref && maps.Equal(e.Targets, o.Targets) && e.Binding.equal(o.Binding) &&
		slices.EqualFunc(e.Previous, o.Previous, func(a, b PreviousGroup) bool { return a.Ref == b.Ref && slices.Equal(a.Targets, b.Targets) })
}
