package targets

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podlb/podlb/providers"
)

// Sweeper releases what no Service asks for any more but podlb still
// holds: ledger entries whose Service is gone or no longer names the
// binding (deleted while podlb was down, its finalizer removed by hand),
// and groups podlb created whose creation was never recorded (a crash
// between creating and recording) or whose record was lost.
//
// Whether a binding is wanted is decided from the live Services, parsed
// as the Service reconciler parses them, never from the ledger alone: a
// group created a moment ago has no entry yet but its Service wants it.
// A Service whose annotation has problems for a provider, or which is
// being deleted (its finalizer's work), is left alone entirely for that
// provider.
type Sweeper struct {
	// Reader reads Services from the API server, not a cache, so a Service
	// created a moment ago is seen.
	Reader    client.Reader
	Ledger    *Ledger
	Registry  *Registry
	Providers []providers.Provider
	Cluster   string
	// Interval is the time between sweeps; the first runs once the start
	// has settled (see settle).
	Interval time.Duration
	// FirstAfter and FirstBy bound when the first sweep runs: not before
	// FirstAfter (the Service pass registers the bindings meanwhile), and
	// once every registered binding has reported, or at FirstBy. Zero
	// means 5 s and 2 minutes.
	FirstAfter, FirstBy time.Duration
}

// settle waits for the first sweep's moment. A sweep reads every group of
// the account and its tags from the same describe budget as the bindings'
// look-ups: at a thousand Services, sweeping at once halved the pace of a
// start, and nothing it finds is urgent.
func (s *Sweeper) settle(ctx context.Context) {
	after, by := s.FirstAfter, s.FirstBy
	if after <= 0 {
		after = 5 * time.Second
	}
	if by <= 0 {
		by = 2 * time.Minute
	}
	deadline := time.Now().Add(by)
	wait := after
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if s.Registry == nil || s.Registry.Unreported() == 0 || !time.Now().Before(deadline) {
			return
		}
		wait = time.Second
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader writes to the cloud.
func (s *Sweeper) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: sweep once the start has settled,
// then every Interval.
func (s *Sweeper) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("sweep")
	ctx = log.IntoContext(ctx, logger)
	interval := s.Interval
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	for _, p := range s.Providers {
		// Present from the start, so the first leak is an increase too.
		sweptGroups.WithLabelValues(p.Name())
	}
	s.settle(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			sweeps.WithLabelValues("failed").Inc()
			logger.Info("sweep incomplete; trying again next time", "error", err.Error())
		} else if err == nil {
			sweeps.WithLabelValues("ok").Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Orphan is a group podlb holds for a binding no Service asks for.
type Orphan struct {
	Key providers.BindingKey
	Ref string
	// Recorded is true when the ledger holds the entry for Key with Ref.
	Recorded bool
}

// Sweep looks once and releases every orphan it is sure of.
func (s *Sweeper) Sweep(ctx context.Context) error {
	var svcs corev1.ServiceList
	if err := s.Reader.List(ctx, &svcs); err != nil {
		return fmt.Errorf("listing Services: %w", err)
	}
	records, err := s.Ledger.All(ctx)
	if err != nil {
		return err
	}
	var owned []providers.OwnedGroup
	served := map[string]bool{}
	var errs []string
	for _, p := range s.Providers {
		served[p.Name()] = true
		lister, ok := p.(providers.OwnedLister)
		if !ok {
			continue
		}
		groups, err := lister.OwnedGroups(ctx)
		if err != nil {
			// The ledger's orphans can still go; this cloud's unrecorded
			// groups wait for the next sweep.
			errs = append(errs, fmt.Sprintf("%s: listing owned groups: %v", p.Name(), err))
			continue
		}
		owned = append(owned, groups...)
	}
	orphans := FindOrphans(WantsOf(svcs.Items, s.Cluster, s.Providers), records, owned, served)
	for _, o := range orphans {
		if err := s.release(ctx, o); err != nil {
			errs = append(errs, fmt.Sprintf("%s %s: %v", o.Key, o.Ref, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d problems: %v", len(errs), errs)
	}
	return nil
}

// release checks once more, on the Service as it is now and on the
// registry, that nothing wants the binding, then releases the group and
// drops the ledger entry.
func (s *Sweeper) release(ctx context.Context, o Orphan) error {
	var svc corev1.Service
	err := s.Reader.Get(ctx, client.ObjectKey{Namespace: o.Key.Namespace, Name: o.Key.Service}, &svc)
	switch {
	case err == nil:
		if WantsOf([]corev1.Service{svc}, s.Cluster, s.Providers).Keeps(o.Key) {
			return nil
		}
	case !apierrors.IsNotFound(err):
		return err
	}
	if s.Registry.Binding(o.Key) != nil {
		return nil
	}
	var p providers.Provider
	for _, cand := range s.Providers {
		if cand.Name() == o.Key.Provider {
			p = cand
		}
	}
	if p == nil {
		return nil
	}
	var ours []providers.TargetKey
	if o.Recorded {
		entry, err := s.Ledger.Get(ctx, o.Key)
		if err != nil {
			return err
		}
		if entry.Ref != o.Ref {
			return nil // recorded something else meanwhile; next sweep decides
		}
		if err := releasePrevious(ctx, s.Ledger, p, o.Key, entry); err != nil {
			return err
		}
		if ours, err = s.Ledger.OursAlone(ctx, o.Key, entry.Ref, keysOf(entry.Targets)); err != nil {
			return err
		}
	}
	if err := p.Release(ctx, o.Key, o.Ref, ours); err != nil {
		return err
	}
	sweptGroups.WithLabelValues(o.Key.Provider).Inc()
	log.FromContext(ctx).Info("released a group no Service asks for", "binding", o.Key.String(), "group", o.Ref, "deregistered", len(ours))
	if o.Recorded {
		return s.Ledger.Delete(ctx, o.Key)
	}
	return nil
}

// Wants is what the live Services ask of podlb, for deciding what may go.
type Wants struct {
	bindings map[providers.BindingKey]bool
	// held are Service and provider pairs left alone entirely: their
	// annotation has problems for the provider (the last good bindings
	// stay in force) or the Service is being deleted.
	held map[heldKey]bool
}

type heldKey struct{ namespace, service, provider string }

// WantsOf parses the Services as the Service reconciler does.
func WantsOf(svcs []corev1.Service, cluster string, provs []providers.Provider) Wants {
	w := Wants{bindings: map[providers.BindingKey]bool{}, held: map[heldKey]bool{}}
	for i := range svcs {
		svc := &svcs[i]
		if svc.DeletionTimestamp != nil {
			for _, p := range provs {
				w.held[heldKey{svc.Namespace, svc.Name, p.Name()}] = true
			}
			continue
		}
		parsed := ParseService(svc, cluster, provs)
		for _, b := range parsed.Bindings {
			w.bindings[b.Key] = true
		}
		for _, pr := range parsed.Problems {
			if pr.Provider != "" {
				w.held[heldKey{svc.Namespace, svc.Name, pr.Provider}] = true
			}
		}
	}
	return w
}

// Keeps reports whether a Service still asks for the binding, or may.
func (w Wants) Keeps(k providers.BindingKey) bool {
	return w.bindings[k] || w.held[heldKey{k.Namespace, k.Service, k.Provider}]
}

// FindOrphans lists what may be released: ledger entries and owned
// groups of served providers whose binding no Service keeps. Bindings of
// load balancers' backends are never listed: no Service annotation names
// them, and their balancer releases them. An owned
// group of a binding that still has a ledger entry is left to that
// entry's release (which knows the group's full reference); a later sweep
// finds it if it is still there.
func FindOrphans(w Wants, records []LedgerRecord, owned []providers.OwnedGroup, served map[string]bool) []Orphan {
	var out []Orphan
	recorded := map[providers.BindingKey]bool{}
	for _, r := range records {
		recorded[r.Key] = true
		if !served[r.Key.Provider] || w.Keeps(r.Key) || r.Entry.Ref == "" || r.Key.Balancer != "" {
			continue
		}
		out = append(out, Orphan{Key: r.Key, Ref: r.Entry.Ref, Recorded: true})
	}
	seen := map[Orphan]bool{}
	for _, g := range owned {
		o := Orphan{Key: g.Key, Ref: g.Ref}
		if !served[g.Key.Provider] || w.Keeps(g.Key) || recorded[g.Key] || seen[o] || g.Key.Balancer != "" {
			continue
		}
		seen[o] = true
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key.String() < out[j].Key.String()
		}
		return out[i].Ref < out[j].Ref
	})
	return out
}
