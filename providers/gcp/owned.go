package gcp

import (
	"context"
	"encoding/json"
	"fmt"

	compute "google.golang.org/api/compute/v1"

	"github.com/podlb/podlb/providers"
)

var _ providers.OwnedLister = (*Provider)(nil)

// ownerFrom decodes a NEG description written by Description; ok is false
// for NEGs podlb did not create.
func ownerFrom(description string) (owner, bool) {
	var o owner
	if err := json.Unmarshal([]byte(description), &o); err != nil || o.ManagedBy != managedBy || o.Cluster == "" {
		return owner{}, false
	}
	return o, true
}

func (o owner) key() providers.BindingKey {
	return providers.BindingKey{Namespace: o.Namespace, Service: o.Service, Provider: "gcp", Port: o.Port, Balancer: o.Balancer}
}

// ownedByAnother reports the binding, other than key in this cluster,
// that podlb created a NEG for.
func (p *Provider) ownedByAnother(description string, key providers.BindingKey) (owner, bool) {
	o, ok := ownerFrom(description)
	if !ok || (o.Cluster == p.opts.Cluster && o.key() == key) {
		return owner{}, false
	}
	return o, true
}

// foreign refuses a NEG of the binding's name that is not this binding's,
// naming its owner when podlb created it for another Service port.
func (p *Provider) foreign(spec *Spec, name, zone, description string) error {
	field := nameField(spec)
	if o, ok := ownerFrom(description); ok {
		return providers.Errorf(providers.Invalid, field, "a NEG named %s in zone %s was created by podlb for cluster %s, Service %s/%s port %d; podlb will not attach endpoints to NEGs another Service owns: choose another name",
			name, zone, o.Cluster, o.Namespace, o.Service, o.Port)
	}
	return providers.Errorf(providers.Invalid, field, "a NEG named %s exists in zone %s and is not podlb's for this Service port; podlb will not touch it", name, zone)
}

// OwnedGroups implements providers.OwnedLister: every NEG whose
// description says this cluster's podlb created it, from one paginated
// aggregated list. A binding's NEGs share one name across zones, so each
// name is one group. The backend service the NEGs were added to is not
// recorded on them; Release of the returned Ref deletes NEGs that no
// backend service uses and reports the others.
func (p *Provider) OwnedGroups(ctx context.Context) ([]providers.OwnedGroup, error) {
	seen := map[string]bool{}
	var out []providers.OwnedGroup
	err := p.eachNEG(ctx, "", func() { clear(seen); out = out[:0] }, func(_ string, n *compute.NetworkEndpointGroup) {
		o, ok := ownerFrom(n.Description)
		id := fmt.Sprintf("%s|%v", n.Name, o)
		if !ok || o.Cluster != p.opts.Cluster || seen[id] {
			return
		}
		seen[id] = true
		out = append(out, providers.OwnedGroup{Key: o.key(), Ref: Ref(n.Name, "")})
	})
	return out, err
}
