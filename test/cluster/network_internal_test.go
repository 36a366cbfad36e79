package cluster

import (
	"net/netip"
	"testing"
)

// Clusters started by one process (RunMainClusters) must not share
// addresses: each network holds its own octet, so pod blocks, node
// addresses and GCE node names of two clusters are disjoint.
func TestNetworksOfOneProcessAreDisjoint(t *testing.T) {
	var nets []*network
	t.Cleanup(func() {
		for _, n := range nets {
			n.release()
		}
	})
	for range 3 {
		n, err := allocateNetwork()
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, n)
	}
	names := map[string]bool{}
	for i, a := range nets {
		c := &Cluster{opts: Options{Nodes: 3, Cloud: "gce", Zones: []string{"us-central1-a"}, Region: "us-central1", GCEProject: "p"}, net: a}
		for _, n := range c.planNodes() {
			if names[n.Name] {
				t.Errorf("node name %s planned by two clusters", n.Name)
			}
			names[n.Name] = true
		}
		for _, b := range nets[i+1:] {
			if a.octet == b.octet {
				t.Fatalf("two networks of one process hold octet %d", a.octet)
			}
			pa := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, a.octet, 0, 0}), 16)
			for node := range 3 {
				if blk := b.podBlock(node, 3); pa.Overlaps(blk) {
					t.Errorf("pod block %s of one network overlaps the other's %s", blk, pa)
				}
			}
		}
	}
}
