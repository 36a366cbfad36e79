package providers

import "context"

// OwnedLister is implemented by providers that can list the groups podlb
// created in this cluster, from the ownership records in the cloud (tags,
// descriptions) rather than from podlb's ledger. The sweep uses it to find
// groups whose creation was never recorded, or whose record was lost.
type OwnedLister interface {
	// OwnedGroups lists every group this cluster's podlb created and still
	// owns, with the binding its ownership record names. It lists only
	// this cluster's groups.
	OwnedGroups(ctx context.Context) ([]OwnedGroup, error)
}

// OwnedGroup is one group podlb created, as its ownership record says.
type OwnedGroup struct {
	// Key is the binding the group was created for.
	Key BindingKey
	// Ref is what Release takes to delete the group.
	Ref string
}
