package targets

import (
	"context"
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podlb/podlb/providers"
)

// ledgerLabelRef holds a hash of an entry's group reference, so the
// bindings that use one group are found with one list call.
const ledgerLabelRef = "podlb.io/ref-hash"

// LedgerRecord is one binding's ledger entry, as listed.
type LedgerRecord struct {
	Key   providers.BindingKey
	Entry *LedgerEntry
}

// All lists every entry of the ledger.
func (l *Ledger) All(ctx context.Context) ([]LedgerRecord, error) {
	recs, _, err := l.list(ctx, client.MatchingLabels{ledgerLabelManagedBy: "podlb"})
	return recs, err
}

// WithRef lists the entries, of any binding, that record the group ref.
// Entries written before the ref label existed carry none: until every
// entry has been labelled once, all entries are listed and the unlabelled
// ones labelled on the way.
func (l *Ledger) WithRef(ctx context.Context, ref string) ([]LedgerRecord, error) {
	l.mu.Lock()
	labelled := l.refLabelled
	l.mu.Unlock()
	if labelled {
		recs, _, err := l.list(ctx, client.MatchingLabels{ledgerLabelManagedBy: "podlb", ledgerLabelRef: shortHash(ref)})
		return withRef(recs, ref), err
	}
	recs, unlabelled, err := l.list(ctx, client.MatchingLabels{ledgerLabelManagedBy: "podlb"})
	if err != nil {
		return nil, err
	}
	if l.label(ctx, unlabelled) {
		l.mu.Lock()
		l.refLabelled = true
		l.mu.Unlock()
	}
	return withRef(recs, ref), nil
}

func withRef(recs []LedgerRecord, ref string) []LedgerRecord {
	var out []LedgerRecord
	for _, r := range recs {
		if r.Entry.Ref == ref {
			out = append(out, r)
		}
	}
	return out
}

// list reads ledger ConfigMaps from the API server, sorted by binding, and
// returns those without a ref label apart.
func (l *Ledger) list(ctx context.Context, sel client.MatchingLabels) ([]LedgerRecord, []*corev1.ConfigMap, error) {
	var list corev1.ConfigMapList
	if err := l.reader.List(ctx, &list, client.InNamespace(l.namespace), sel); err != nil {
		return nil, nil, fmt.Errorf("listing ledger: %w", err)
	}
	var recs []LedgerRecord
	var unlabelled []*corev1.ConfigMap
	for i := range list.Items {
		cm := &list.Items[i]
		k, ok := ledgerKey(cm)
		if !ok {
			continue
		}
		recs = append(recs, LedgerRecord{Key: k, Entry: entryFromConfigMap(cm)})
		if _, has := cm.Labels[ledgerLabelRef]; !has {
			unlabelled = append(unlabelled, cm)
		}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Key.String() < recs[j].Key.String() })
	return recs, unlabelled, nil
}

// label adds the ref label to entries written before it existed,
// reporting whether all of them now carry it. The cached version of a
// relabelled entry follows, so the next Put does not conflict.
func (l *Ledger) label(ctx context.Context, cms []*corev1.ConfigMap) bool {
	ok := true
	for _, cm := range cms {
		// Update, guarded by the listed version: the role grants no patch.
		cm.Labels[ledgerLabelRef] = shortHash(cm.Data["ref"])
		if err := l.client.Update(ctx, cm); err != nil {
			ok = false
			continue
		}
		if k, known := ledgerKey(cm); known {
			l.mu.Lock()
			if e := l.entries[k]; e != nil && e.Ref == cm.Data["ref"] {
				e.version = cm.ResourceVersion
			}
			l.mu.Unlock()
		}
	}
	return ok
}

// OursAlone is the part of own, binding k's targets in the group ref,
// that only binding k recorded: the targets to deregister when k lets go
// of the group. A target another binding also recorded there stays, since
// that binding still wants it.
func (l *Ledger) OursAlone(ctx context.Context, k providers.BindingKey, ref string, own []providers.TargetKey) ([]providers.TargetKey, error) {
	if len(own) == 0 {
		return nil, nil
	}
	others, err := l.WithRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	return exclusiveTargets(k, own, others), nil
}

// exclusiveTargets returns the targets of own that no record other than
// self's holds, sorted.
func exclusiveTargets(self providers.BindingKey, own []providers.TargetKey, records []LedgerRecord) []providers.TargetKey {
	held := map[providers.TargetKey]bool{}
	for _, r := range records {
		if r.Key == self {
			continue
		}
		for t := range r.Entry.Targets {
			held[t] = true
		}
	}
	out := make([]providers.TargetKey, 0, len(own))
	for _, t := range own {
		if !held[t] {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, compareKeys)
	return out
}

// recordWanted adds every desired target to the entry, reporting whether
// any was new. Targets are recorded before they are registered, and also
// when another binding registered them first: the record is what keeps
// them in the group while this binding wants them, when that other
// binding lets go (see OursAlone). A target this binding did not register
// is recorded for no pod, so its health counts for a pod only after the
// group's judge delay.
func recordWanted(e *LedgerEntry, desired []Desired) bool {
	changed := false
	for _, d := range desired {
		if _, ok := e.Targets[d.Key()]; !ok {
			e.Targets[d.Key()] = ""
			changed = true
		}
	}
	return changed
}
