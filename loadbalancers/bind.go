package loadbalancers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// backendBinder hands the backends of one provisioned load balancer to
// the target machinery and takes back those it dropped. The Ingress and
// the Service reconcilers share it: their backends are the same kind of
// binding, keyed by their balancer.
type backendBinder struct {
	Client   client.Client
	Registry *targets.Registry
	Ledger   *targets.Ledger
	// Providers by cloud name: who deregisters a dropped binding's
	// targets.
	Providers      map[string]providers.Provider
	Timing         targets.Timing
	EnqueueBinding func(providers.BindingKey)
	// SelectionChanged is told which pods' gates may change; nil: nobody.
	SelectionChanged func(namespace string, selectors ...labels.Selector)
}

// put puts a balancer's backend bindings (per cloud, per Service) in
// force and releases those it no longer has; it returns when to try again
// when a release failed.
func (b backendBinder) put(ctx context.Context, key providers.BalancerKey, bound map[string]cloudPart) (time.Duration, error) {
	byService := map[types.NamespacedName][]*providers.Binding{}
	for _, cloud := range slices.Sorted(maps.Keys(bound)) {
		for nn, bs := range bound[cloud] {
			byService[nn] = append(byService[nn], bs...)
		}
	}
	selectors := map[types.NamespacedName]labels.Selector{}
	for nn := range byService {
		var svc corev1.Service
		if err := b.Client.Get(ctx, client.ObjectKey{Namespace: nn.Namespace, Name: nn.Name}, &svc); err == nil && len(svc.Spec.Selector) > 0 {
			selectors[nn] = labels.SelectorFromSet(svc.Spec.Selector)
		}
	}
	changed, removed := b.Registry.SetBalancerBindings(key.String(), byService, selectors)
	for _, k := range changed {
		b.EnqueueBinding(k)
	}
	touched := map[string][]labels.Selector{}
	for _, k := range append(slices.Clone(changed), removed...) {
		if sel := selectors[types.NamespacedName{Namespace: k.Namespace, Name: k.Service}]; sel != nil {
			touched[k.Namespace] = append(touched[k.Namespace], sel)
		}
	}
	if b.SelectionChanged != nil {
		for ns, sels := range touched {
			b.SelectionChanged(ns, sels...)
		}
	}
	return b.release(ctx, key, removed)
}

// release deregisters the targets of bindings the balancer dropped, and
// of any its ledger still holds that it no longer has.
func (b backendBinder) release(ctx context.Context, key providers.BalancerKey, removed []providers.BindingKey) (time.Duration, error) {
	held, err := b.Ledger.BalancerBindings(ctx, key.String())
	if err != nil {
		return 0, err
	}
	drop := map[providers.BindingKey]bool{}
	for _, k := range removed {
		drop[k] = true
	}
	for _, k := range held {
		if b.Registry.Binding(k) == nil {
			drop[k] = true
		}
	}
	var failed []string
	for _, k := range slices.SortedFunc(maps.Keys(drop), func(a, c providers.BindingKey) int { return strings.Compare(a.String(), c.String()) }) {
		targets.DeleteBindingMetrics(k)
		p, ok := b.Providers[k.Provider]
		if !ok {
			continue
		}
		if _, err := targets.ReleaseBinding(ctx, b.Ledger, p, k); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", k, err))
		}
	}
	if len(failed) > 0 {
		log.FromContext(ctx).Info("releasing backend bindings failed; retrying", "errors", failed)
		return max(b.Timing.Poll, time.Second), nil
	}
	return 0, nil
}

// retryAfter is how long to wait after a cloud's error: briefly for what
// passes by itself, the longest backoff for what needs a user's edit.
func retryAfter(t targets.Timing, err error) time.Duration {
	switch providers.ClassOf(err) {
	case providers.Throttled, providers.Transient, providers.NotFound:
		return max(t.Poll, time.Second)
	}
	return t.MaxBackoff
}
