package computesim

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// DefaultAddressRange is where reserved addresses come from unless
// Options.AddressRange says otherwise: each gets its own loopback IP, so
// forwarding rules on different addresses can share a port, as on GCE.
var DefaultAddressRange = netip.MustParsePrefix("127.254.0.0/16")

type address struct {
	pb     *computepb.Address // status and users are filled in on read
	path   string
	region string
	ip     netip.Addr
}

func addressPath(r *http.Request) (string, *apiError) {
	coll, _, e := scopedCollection(r, "addresses")
	if e != nil {
		return "", e
	}
	return coll + "/" + r.PathValue("addr"), nil
}

// addressUsersLocked lists the links of the forwarding rules that use an
// address, sorted.
func (s *Server) addressUsersLocked(path string) []string {
	var users []string
	for p, fr := range s.forwardingRules {
		if fr.addressPath == path {
			users = append(users, selfLink(p))
		}
	}
	slices.Sort(users)
	return users
}

// snapshotLocked is the address as GCE reports it: IN_USE with its users
// while a forwarding rule uses it, RESERVED otherwise.
func (s *Server) addressSnapshotLocked(a *address) *computepb.Address {
	pb := proto.CloneOf(a.pb)
	pb.Users = s.addressUsersLocked(a.path)
	pb.Status = proto.String("RESERVED")
	if len(pb.Users) > 0 {
		pb.Status = proto.String("IN_USE")
	}
	return pb
}

// ipTakenLocked reports whether an IP belongs to an address or a
// forwarding rule already.
func (s *Server) ipTakenLocked(ip netip.Addr) bool {
	for _, a := range s.addresses {
		if a.ip == ip {
			return true
		}
	}
	for _, fr := range s.forwardingRules {
		if fr.ip == ip {
			return true
		}
	}
	return false
}

// allocateIPLocked picks the next free IP of the address range.
func (s *Server) allocateIPLocked() (netip.Addr, *apiError) {
	rng := s.opts.AddressRange
	ip := s.nextAddress
	for range 1 << 16 {
		if !rng.Contains(ip) || ip == rng.Addr() {
			ip = rng.Addr().Next()
		}
		if !s.ipTakenLocked(ip) {
			s.nextAddress = ip.Next()
			return ip, nil
		}
		ip = ip.Next()
	}
	return netip.Addr{}, &apiError{http.StatusForbidden, "quotaExceeded", fmt.Sprintf("Quota 'STATIC_ADDRESSES' exceeded: no free address left in %s.", rng)}
}

func (s *Server) addressInsert(r *http.Request) (proto.Message, *apiError) {
	project := r.PathValue("project")
	coll, region, e := scopedCollection(r, "addresses")
	if e != nil {
		return nil, e
	}
	in := &computepb.Address{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := validateName(in.GetName()); e != nil {
		return nil, e
	}
	if in.Users != nil || in.Status != nil {
		return nil, errInvalid("Invalid value for field 'resource': status and users are output only.")
	}
	switch t := in.GetAddressType(); t {
	case "":
		in.AddressType = proto.String("EXTERNAL")
	case "EXTERNAL", "INTERNAL":
	default:
		return nil, errInvalidField("resource.addressType", t, "Must be EXTERNAL or INTERNAL.")
	}
	switch v := in.GetIpVersion(); v {
	case "":
		in.IpVersion = proto.String("IPV4")
	case "IPV4":
	default:
		return nil, errInvalidField("resource.ipVersion", v, "Only IPV4 addresses are emulated.")
	}
	var want netip.Addr
	if in.GetAddress() != "" {
		a, err := netip.ParseAddr(in.GetAddress())
		if err != nil || !a.Is4() || !a.IsLoopback() {
			return nil, errInvalidField("resource.address", in.GetAddress(), "The emulator only reserves IPv4 loopback addresses (127.0.0.0/8).")
		}
		want = a
	}
	path := coll + "/" + in.GetName()
	stampNew(in, "compute#address", project, region, path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addresses[path] != nil {
		return nil, errAlreadyExists(path)
	}
	return s.startOpLocked(r, scopeOf(r), "insert", path, in.GetId(), func() *apiError {
		if s.addresses[path] != nil {
			return errAlreadyExists(path)
		}
		ip := want
		if ip.IsValid() {
			if s.ipTakenLocked(ip) {
				return errInvalidField("resource.address", ip.String(), "The address is already reserved or in use.")
			}
		} else {
			var e *apiError
			if ip, e = s.allocateIPLocked(); e != nil {
				return e
			}
		}
		pb := proto.CloneOf(in)
		pb.Address = proto.String(ip.String())
		s.addresses[path] = &address{pb: pb, path: path, region: region, ip: ip}
		return nil
	}), nil
}

func (s *Server) addressGet(r *http.Request) (proto.Message, *apiError) {
	path, e := addressPath(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.addresses[path]
	if a == nil {
		return nil, errNotFound(path)
	}
	return s.addressSnapshotLocked(a), nil
}

func (s *Server) addressList(r *http.Request) (proto.Message, *apiError) {
	coll, _, e := scopedCollection(r, "addresses")
	if e != nil {
		return nil, e
	}
	// listPage copies under s.mu; the snapshot needs s.mu too, so the
	// status is computed by a message func that runs with it held.
	items, next, e := listPage(s, r, s.addresses, s.addressSnapshotLocked, under[*address](coll))
	if e != nil {
		return nil, e
	}
	return &computepb.AddressList{Kind: proto.String("compute#addressList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) addressDelete(r *http.Request) (proto.Message, *apiError) {
	path, e := addressPath(r)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return deleteLocked(s, r, path, s.addresses, func(a *address) uint64 { return a.pb.GetId() },
		func() string { return firstUser(s.addressUsersLocked(path)) }, nil)
}

// resolveAddressLocked turns a forwarding rule's IPAddress into the IP to
// serve on and, when it names a reserved address (by URL, path, name, or
// its IP literal), that address's path. Reserved addresses must be in the
// rule's scope. An empty ref is ephemeral: no IP is chosen here.
func (s *Server) resolveAddressLocked(project, region, ref string) (netip.Addr, string, *apiError) {
	if ref == "" {
		return netip.Addr{}, "", nil
	}
	if ip, err := netip.ParseAddr(ref); err == nil {
		for p, a := range s.addresses {
			if a.ip == ip && sameScope(p, region) {
				return ip, p, nil
			}
		}
		return ip, "", nil
	}
	p := qualify(project, ref, scopePrefix(region)+"/addresses")
	if !strings.Contains(p, "/addresses/") {
		return netip.Addr{}, "", errInvalidField("resource.IPAddress", ref, "Must be an IP address or the URL of an address resource.")
	}
	a := s.addresses[p]
	if a == nil {
		return netip.Addr{}, "", errNotFound(p)
	}
	if !sameScope(p, region) {
		return netip.Addr{}, "", errInvalidField("resource.IPAddress", ref, "The address must be in the same scope (global or region) as the forwarding rule.")
	}
	return a.ip, p, nil
}
