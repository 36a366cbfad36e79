package targets

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/podlb/podlb/providers"
)

// ComputePlan diffs desired targets against what the cloud reports.
//
// Draining targets count as absent: they receive no new traffic, so a
// desired one is registered again. Only targets podlb owns are ever
// deregistered: all of them in a group podlb created, in a shared group
// only those recorded in ours (the ledger).
func ComputePlan(desired []Desired, observed []providers.Observed, ownedGroup bool, ours map[providers.TargetKey]types.UID) providers.Plan {
	active := make(map[providers.TargetKey]bool, len(observed))
	for _, o := range observed {
		if o.State != providers.Draining {
			active[o.Key()] = true
		}
	}
	want := make(map[providers.TargetKey]bool, len(desired))
	var plan providers.Plan
	for _, d := range desired {
		want[d.Key()] = true
		if !active[d.Key()] {
			plan.Register = append(plan.Register, d.Target)
		}
	}
	for _, o := range observed {
		if o.State == providers.Draining || want[o.Key()] {
			continue
		}
		if _, recorded := ours[o.Key()]; ownedGroup || recorded {
			plan.Deregister = append(plan.Deregister, o.Target)
		}
	}
	providers.SortTargets(plan.Register)
	providers.SortTargets(plan.Deregister)
	return plan
}
