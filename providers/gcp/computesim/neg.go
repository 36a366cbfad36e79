package computesim

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

const (
	// maxEndpointsPerCall is GCE's limit on one attach or detach call.
	maxEndpointsPerCall = 500
	// DefaultMaxEndpointsPerNEG is GCE's per-NEG endpoint quota.
	DefaultMaxEndpointsPerNEG = 10000
)

type neg struct {
	pb        *computepb.NetworkEndpointGroup
	path      string
	zone      string
	endpoints map[string]*endpoint // by ip:port
}

type endpoint struct {
	instance   string // name
	ip         string
	port       int32
	attachedAt time.Time
}

func epKey(ip string, port int32) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

type instance struct {
	pb   *computepb.Instance
	zone string
	name string
	ip   string
	// aliases are the VM's alias IP ranges (AddInstance, SetAliasRanges),
	// the only addresses besides ip its endpoints may use.
	aliases []netip.Prefix
}

// owns reports whether an endpoint IP may belong to the VM: a
// GCE_VM_IP_PORT endpoint is the VM's primary internal IP or an address
// of one of its alias IP ranges
// (https://cloud.google.com/load-balancing/docs/negs/zonal-neg-concepts,
// "NEGs with GCE_VM_IP_PORT endpoints").
func (in *instance) owns(addr netip.Addr) bool {
	if addr.String() == in.ip {
		return true
	}
	for _, p := range in.aliases {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func negPath(r *http.Request) string {
	return fmt.Sprintf("projects/%s/zones/%s/networkEndpointGroups/%s", r.PathValue("project"), r.PathValue("zone"), r.PathValue("neg"))
}

func (s *Server) negInsert(r *http.Request) (proto.Message, *apiError) {
	project, zone := r.PathValue("project"), r.PathValue("zone")
	if e := validateZone(zone); e != nil {
		return nil, e
	}
	in := &computepb.NetworkEndpointGroup{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := validateName(in.GetName()); e != nil {
		return nil, e
	}
	typ := in.GetNetworkEndpointType()
	if typ == "" {
		typ = "GCE_VM_IP_PORT"
	}
	if typ != "GCE_VM_IP_PORT" {
		return nil, errInvalidField("resource.networkEndpointType", typ, "Only GCE_VM_IP_PORT zonal network endpoint groups are emulated.")
	}
	if in.DefaultPort != nil && (in.GetDefaultPort() < 1 || in.GetDefaultPort() > 65535) {
		return nil, errInvalidField("resource.defaultPort", fmt.Sprint(in.GetDefaultPort()), "Must be between 1 and 65535.")
	}
	if len(in.GetDescription()) > 2048 {
		return nil, errInvalidField("resource.description", in.GetDescription()[:20]+"...", "Must be at most 2048 characters.")
	}
	path := fmt.Sprintf("projects/%s/zones/%s/networkEndpointGroups/%s", project, zone, in.GetName())
	network := in.GetNetwork()
	if network == "" {
		network = "default"
	}
	pb := &computepb.NetworkEndpointGroup{
		Kind:                proto.String("compute#networkEndpointGroup"),
		Id:                  proto.Uint64(newID()),
		CreationTimestamp:   proto.String(nowStamp()),
		Name:                proto.String(in.GetName()),
		Description:         in.Description,
		NetworkEndpointType: proto.String(typ),
		Network:             proto.String(normalizeRef(project, network, "networks", "global")),
		DefaultPort:         in.DefaultPort,
		Zone:                proto.String(selfLink(fmt.Sprintf("projects/%s/zones/%s", project, zone))),
		SelfLink:            proto.String(selfLink(path)),
		Size:                proto.Int32(0),
		Annotations:         in.Annotations,
	}
	if in.GetSubnetwork() != "" {
		pb.Subnetwork = proto.String(normalizeRef(project, in.GetSubnetwork(), "subnetworks", "regions/"+regionOfZone(zone)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.negs[path] != nil {
		return nil, errAlreadyExists(path)
	}
	return s.startOpLocked(r, opScope{project: project, zone: zone}, "insert", path, pb.GetId(), func() *apiError {
		if s.negs[path] != nil {
			return errAlreadyExists(path)
		}
		s.negs[path] = &neg{pb: pb, path: path, zone: zone, endpoints: map[string]*endpoint{}}
		return nil
	}), nil
}

func (n *neg) snapshot() *computepb.NetworkEndpointGroup {
	pb := proto.CloneOf(n.pb)
	pb.Size = proto.Int32(int32(len(n.endpoints)))
	return pb
}

func (s *Server) negGet(r *http.Request) (proto.Message, *apiError) {
	path := negPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.negs[path]
	if n == nil {
		return nil, errNotFound(path)
	}
	return n.snapshot(), nil
}

func (s *Server) negList(r *http.Request) (proto.Message, *apiError) {
	project, zone := r.PathValue("project"), r.PathValue("zone")
	if e := validateZone(zone); e != nil {
		return nil, e
	}
	cs, e := parseFilter(r.URL.Query().Get("filter"))
	if e != nil {
		return nil, e
	}
	pfx := fmt.Sprintf("projects/%s/zones/%s/networkEndpointGroups/", project, zone)
	items := s.matchingNEGs(pfx, cs)
	q := r.URL.Query()
	start, end, next, e := pageBounds(len(items), q.Get("maxResults"), q.Get("pageToken"))
	if e != nil {
		return nil, e
	}
	out := &computepb.NetworkEndpointGroupList{
		Kind:     proto.String("compute#networkEndpointGroupList"),
		Id:       proto.String(strings.TrimSuffix(pfx, "/")),
		SelfLink: proto.String(selfLink(strings.TrimSuffix(pfx, "/"))),
		Items:    items[start:end],
	}
	if next != "" {
		out.NextPageToken = proto.String(next)
	}
	return out, nil
}

// matchingNEGs returns snapshots of the NEGs whose path starts with pfx and
// that match the filter, sorted by path (zone, then name).
func (s *Server) matchingNEGs(pfx string, cs []clause) []*computepb.NetworkEndpointGroup {
	s.mu.Lock()
	var all []*computepb.NetworkEndpointGroup
	for p, n := range s.negs {
		if strings.HasPrefix(p, pfx) {
			all = append(all, n.snapshot())
		}
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].GetSelfLink() < all[j].GetSelfLink() })
	var out []*computepb.NetworkEndpointGroup
	for _, n := range all {
		if matchFilter(cs, n) {
			out = append(out, n)
		}
	}
	return out
}

func (s *Server) negAggregatedList(r *http.Request) (proto.Message, *apiError) {
	project := r.PathValue("project")
	q := r.URL.Query()
	cs, e := parseFilter(q.Get("filter"))
	if e != nil {
		return nil, e
	}
	items := s.matchingNEGs(fmt.Sprintf("projects/%s/zones/", project), cs)
	start, end, next, e := pageBounds(len(items), q.Get("maxResults"), q.Get("pageToken"))
	if e != nil {
		return nil, e
	}
	out := &computepb.NetworkEndpointGroupAggregatedList{
		Kind:     proto.String("compute#networkEndpointGroupAggregatedList"),
		Id:       proto.String(fmt.Sprintf("projects/%s/aggregated/networkEndpointGroups", project)),
		SelfLink: proto.String(selfLink(fmt.Sprintf("projects/%s/aggregated/networkEndpointGroups", project))),
		Items:    map[string]*computepb.NetworkEndpointGroupsScopedList{},
	}
	for _, n := range items[start:end] {
		key := "zones/" + lastSegment(n.GetZone())
		sl := out.Items[key]
		if sl == nil {
			sl = &computepb.NetworkEndpointGroupsScopedList{}
			out.Items[key] = sl
		}
		sl.NetworkEndpointGroups = append(sl.NetworkEndpointGroups, n)
	}
	if next != "" {
		out.NextPageToken = proto.String(next)
	}
	return out, nil
}

func (s *Server) negDelete(r *http.Request) (proto.Message, *apiError) {
	project, zone := r.PathValue("project"), r.PathValue("zone")
	path := negPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.negs[path]
	if n == nil {
		return nil, errNotFound(path)
	}
	if user := s.negUserLocked(path); user != "" {
		return nil, errInUse(path, user)
	}
	return s.startOpLocked(r, opScope{project: project, zone: zone}, "delete", path, n.pb.GetId(), func() *apiError {
		if s.negs[path] == nil {
			return errNotFound(path)
		}
		if user := s.negUserLocked(path); user != "" {
			return errInUse(path, user)
		}
		delete(s.negs, path)
		s.syncTargetsLocked()
		return nil
	}), nil
}

// negUserLocked names a backend service that has the NEG as a backend.
func (s *Server) negUserLocked(path string) string {
	var users []string
	for bsPath, bs := range s.backendServices {
		for _, b := range bs.pb.GetBackends() {
			if ResourcePath(b.GetGroup()) == path {
				users = append(users, bsPath)
			}
		}
	}
	sort.Strings(users)
	if len(users) == 0 {
		return ""
	}
	return users[0]
}

// endpointChange is a validated attach or detach request.
type endpointChange struct {
	eps []*endpoint
}

func (s *Server) parseEndpoints(r *http.Request, detach bool) (*neg, *endpointChange, *apiError) {
	path := negPath(r)
	in := &computepb.NetworkEndpointGroupsAttachEndpointsRequest{}
	if detach {
		// Same shape; decode into the detach message for strictness.
		d := &computepb.NetworkEndpointGroupsDetachEndpointsRequest{}
		if _, e := readBody(r, d); e != nil {
			return nil, nil, e
		}
		in.NetworkEndpoints = d.NetworkEndpoints
	} else if _, e := readBody(r, in); e != nil {
		return nil, nil, e
	}
	s.stats.endpoints(methodOf(r), len(in.GetNetworkEndpoints()))
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.negs[path]
	if n == nil {
		return nil, nil, errNotFound(path)
	}
	eps := in.GetNetworkEndpoints()
	if len(eps) == 0 {
		return nil, nil, errInvalid("Required field 'networkEndpoints' not specified")
	}
	if len(eps) > maxEndpointsPerCall {
		return nil, nil, errInvalidField("networkEndpoints", fmt.Sprint(len(eps)),
			fmt.Sprintf("Exceeded maximum allowed number of network endpoints per request: %d.", maxEndpointsPerCall))
	}
	ch := &endpointChange{}
	seen := map[string]bool{}
	for i, ne := range eps {
		field := fmt.Sprintf("resource.networkEndpoints[%d]", i)
		instName := lastSegment(ResourcePath(ne.GetInstance()))
		if strings.Contains(ne.GetInstance(), "/zones/") && !strings.Contains(ne.GetInstance(), "/zones/"+n.zone+"/") {
			return nil, nil, errInvalidField(field+".instance", ne.GetInstance(), "The instance must be in the zone of the network endpoint group.")
		}
		var inst *instance
		if instName != "" {
			inst = s.instances[n.zone+"/"+instName]
		}
		if !detach {
			if instName == "" {
				return nil, nil, errInvalid("Required field '%s.instance' not specified", field)
			}
			if inst == nil {
				return nil, nil, errInvalidField(field+".instance", ne.GetInstance(),
					fmt.Sprintf("Instance '%s' does not exist in zone '%s'.", instName, n.zone))
			}
		}
		ip := ne.GetIpAddress()
		if ip == "" && inst != nil {
			ip = inst.ip // GCE defaults to the VM's primary internal IP
		}
		if ip == "" {
			return nil, nil, errInvalid("Required field '%s.ipAddress' not specified", field)
		}
		addr, err := netip.ParseAddr(ip)
		if err != nil || !addr.Is4() {
			return nil, nil, errInvalidField(field+".ipAddress", ip, "Must be a valid IPv4 address.")
		}
		// GCE_VM_IP_PORT endpoints must use the VM's primary IP or one of
		// its alias ranges, else GCE answers this. The emulator also
		// refuses what it could not health-check: anything not loopback.
		if !detach && (!s.reachable(addr) || !inst.owns(addr)) {
			return nil, nil, errInvalidField("resource.ipAddress", ip, fmt.Sprintf(
				"Specified IP address %s doesn't belong to the (sub)network default or to the instance %s.", ip, instName))
		}
		port := ne.GetPort()
		if ne.Port == nil {
			port = n.pb.GetDefaultPort()
		}
		if port < 1 || port > 65535 {
			return nil, nil, errInvalidField(field+".port", fmt.Sprint(ne.GetPort()), "Port must be between 1 and 65535 (no default port set on the network endpoint group).")
		}
		k := epKey(ip, port)
		if seen[k] {
			return nil, nil, errInvalidField(field, k, "Duplicate network endpoint in the request.")
		}
		seen[k] = true
		ch.eps = append(ch.eps, &endpoint{instance: instName, ip: ip, port: port})
	}
	if !detach && len(n.endpoints)+len(ch.eps) > s.opts.MaxEndpointsPerNEG {
		return nil, nil, s.errEndpointQuota()
	}
	return n, ch, nil
}

// changeEndpoints is attach and detach: the request is validated at once
// (sizes, unknown instance, bad IP or port answer 400 synchronously), and
// apply changes the NEG, as it is then, when the operation runs.
func (s *Server) changeEndpoints(r *http.Request, detach bool, method string, apply func(n *neg, eps []*endpoint) *apiError) (proto.Message, *apiError) {
	n, ch, e := s.parseEndpoints(r, detach)
	if e != nil {
		return nil, e
	}
	path := n.path
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startOpLocked(r, opScope{project: r.PathValue("project"), zone: n.zone}, method, path, n.pb.GetId(), func() *apiError {
		n := s.negs[path]
		if n == nil {
			return errNotFound(path)
		}
		if e := apply(n, ch.eps); e != nil {
			return e
		}
		s.syncTargetsLocked()
		return nil
	}), nil
}

func (s *Server) errEndpointQuota() *apiError {
	return &apiError{http.StatusForbidden, "quotaExceeded", fmt.Sprintf(
		"Quota 'NETWORK_ENDPOINTS_PER_NETWORK_ENDPOINT_GROUP' exceeded. Limit: %d.", s.opts.MaxEndpointsPerNEG)}
}

// negAttach attaches endpoints. An endpoint that is already attached when
// the operation runs fails the whole operation with 400 (nothing is
// attached), as does exceeding the per-NEG quota.
func (s *Server) negAttach(r *http.Request) (proto.Message, *apiError) {
	return s.changeEndpoints(r, false, "attachNetworkEndpoints", func(n *neg, eps []*endpoint) *apiError {
		for _, ep := range eps {
			if old := n.endpoints[epKey(ep.ip, ep.port)]; old != nil {
				return &apiError{http.StatusBadRequest, "alreadyExists", fmt.Sprintf(
					"Network endpoint (instance: %s, ipAddress: %s, port: %d) already exists in network endpoint group '%s'.",
					old.instance, ep.ip, ep.port, n.path)}
			}
		}
		if len(n.endpoints)+len(eps) > s.opts.MaxEndpointsPerNEG {
			return s.errEndpointQuota()
		}
		now := time.Now()
		for _, ep := range eps {
			e := *ep
			e.attachedAt = now
			n.endpoints[epKey(e.ip, e.port)] = &e
		}
		return nil
	})
}

// negDetach detaches endpoints. An endpoint that is not attached when the
// operation runs fails the whole operation with 400 (nothing is detached).
func (s *Server) negDetach(r *http.Request) (proto.Message, *apiError) {
	return s.changeEndpoints(r, true, "detachNetworkEndpoints", func(n *neg, eps []*endpoint) *apiError {
		for _, ep := range eps {
			old := n.endpoints[epKey(ep.ip, ep.port)]
			if old == nil || (ep.instance != "" && ep.instance != old.instance) {
				return &apiError{http.StatusBadRequest, "notFound", fmt.Sprintf(
					"Network endpoint (instance: %s, ipAddress: %s, port: %d) does not exist in network endpoint group '%s'.",
					ep.instance, ep.ip, ep.port, n.path)}
			}
		}
		for _, ep := range eps {
			delete(n.endpoints, epKey(ep.ip, ep.port))
		}
		return nil
	})
}

// negListEndpoints lists a NEG's endpoints. The apiv1 client sends the whole
// request object as the body, so healthStatus is looked for both at the top
// level (GCE's documented body) and inside
// networkEndpointGroupsListEndpointsRequestResource (what the client sends).
func (s *Server) negListEndpoints(r *http.Request) (proto.Message, *apiError) {
	path := negPath(r)
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, errInvalid("Invalid JSON payload received. %v", err)
	}
	show := false
	if len(strings.TrimSpace(string(b))) > 0 {
		var body map[string]json.RawMessage
		if err := json.Unmarshal(b, &body); err != nil {
			return nil, errInvalid("Invalid JSON payload received. %v", err)
		}
		var hs string
		_ = json.Unmarshal(body["healthStatus"], &hs)
		if inner, ok := body["networkEndpointGroupsListEndpointsRequestResource"]; ok {
			var res struct {
				HealthStatus string `json:"healthStatus"`
			}
			_ = json.Unmarshal(inner, &res)
			if res.HealthStatus != "" {
				hs = res.HealthStatus
			}
		}
		switch hs {
		case "", "SKIP":
		case "SHOW":
			show = true
		default:
			return nil, errInvalidField("healthStatus", hs, "Must be SHOW or SKIP.")
		}
	}
	q := r.URL.Query()
	cs, e := parseFilter(q.Get("filter"))
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	n := s.negs[path]
	if n == nil {
		s.mu.Unlock()
		return nil, errNotFound(path)
	}
	eps := make([]*endpoint, 0, len(n.endpoints))
	for _, ep := range n.endpoints {
		eps = append(eps, ep)
	}
	sortEndpoints(eps)
	var idx map[string][]*target
	if show {
		idx = s.healthIndexLocked(path)
	}
	var items []*computepb.NetworkEndpointWithHealthStatus
	for _, ep := range eps {
		item := &computepb.NetworkEndpointWithHealthStatus{NetworkEndpoint: &computepb.NetworkEndpoint{
			Instance:  proto.String(ep.instance),
			IpAddress: proto.String(ep.ip),
			Port:      proto.Int32(ep.port),
		}}
		if !matchFilter(cs, item.NetworkEndpoint) {
			continue
		}
		if show {
			item.Healths = s.endpointHealthsLocked(idx, ep)
		}
		items = append(items, item)
	}
	s.mu.Unlock()
	start, end, next, e := pageBounds(len(items), q.Get("maxResults"), q.Get("pageToken"))
	if e != nil {
		return nil, e
	}
	out := &computepb.NetworkEndpointGroupsListNetworkEndpoints{
		Kind:  proto.String("compute#networkEndpointGroupsListNetworkEndpoints"),
		Id:    proto.String(path),
		Items: items[start:end],
	}
	if next != "" {
		out.NextPageToken = proto.String(next)
	}
	return out, nil
}

func sortEndpoints(eps []*endpoint) {
	sort.Slice(eps, func(i, j int) bool {
		a, _ := netip.ParseAddr(eps[i].ip)
		b, _ := netip.ParseAddr(eps[j].ip)
		if c := a.Compare(b); c != 0 {
			return c < 0
		}
		return eps[i].port < eps[j].port
	})
}

// ---- instances ----

// AddInstance registers a VM so endpoints can name it. ip is its primary
// internal IP (used when an attached endpoint omits ipAddress);
// aliasRanges are its alias IP ranges (CIDRs), where its other endpoints'
// addresses must lie.
func (s *Server) AddInstance(zone, name, ip string, aliasRanges ...string) error {
	if e := validateZone(zone); e != nil {
		return e
	}
	if e := validateName(name); e != nil {
		return e
	}
	project := s.opts.Project
	if project == "" {
		project = "computesim"
	}
	s.mu.Lock()
	s.addInstanceLocked(project, zone, name, ip, "")
	s.mu.Unlock()
	return s.SetAliasRanges(zone, name, aliasRanges...)
}

func (s *Server) addInstanceLocked(project, zone, name, ip, machineType string) *instance {
	path := fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name)
	if machineType == "" {
		machineType = "e2-standard-4"
	}
	pb := &computepb.Instance{
		Kind:              proto.String("compute#instance"),
		Id:                proto.Uint64(newID()),
		CreationTimestamp: proto.String(nowStamp()),
		Name:              proto.String(name),
		Zone:              proto.String(selfLink(fmt.Sprintf("projects/%s/zones/%s", project, zone))),
		MachineType:       proto.String(normalizeRef(project, lastSegment(machineType), "machineTypes", "zones/"+zone)),
		Status:            proto.String("RUNNING"),
		SelfLink:          proto.String(selfLink(path)),
		NetworkInterfaces: []*computepb.NetworkInterface{{
			Name:      proto.String("nic0"),
			Network:   proto.String(selfLink(fmt.Sprintf("projects/%s/global/networks/default", project))),
			NetworkIP: proto.String(ip),
		}},
	}
	in := &instance{pb: pb, zone: zone, name: name, ip: ip}
	s.instances[zone+"/"+name] = in
	return in
}

// SetAliasRanges replaces a VM's alias IP ranges (CIDRs, as GKE gives each
// node its pod range). Endpoints of the VM must use its primary IP or an
// address in these ranges.
func (s *Server) SetAliasRanges(zone, name string, cidrs ...string) error {
	prefixes := make([]netip.Prefix, 0, len(cidrs))
	ranges := make([]*computepb.AliasIpRange, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("computesim: alias range of %s: %w", name, err)
		}
		prefixes = append(prefixes, p.Masked())
		ranges = append(ranges, &computepb.AliasIpRange{IpCidrRange: proto.String(p.Masked().String())})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[zone+"/"+name]
	if in == nil {
		return fmt.Errorf("computesim: no instance %s in zone %s", name, zone)
	}
	in.aliases = prefixes
	in.pb.NetworkInterfaces[0].AliasIpRanges = ranges
	return nil
}

// RemoveInstance deletes a VM. Like GCE, deleting a VM removes its
// endpoints from every NEG (they drain like detached ones).
func (s *Server) RemoveInstance(zone, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeInstanceLocked(zone, name)
}

func (s *Server) removeInstanceLocked(zone, name string) {
	delete(s.instances, zone+"/"+name)
	for _, n := range s.negs {
		if n.zone != zone {
			continue
		}
		for k, ep := range n.endpoints {
			if ep.instance == name {
				delete(n.endpoints, k)
			}
		}
	}
	s.syncTargetsLocked()
}

func (s *Server) instanceInsert(r *http.Request) (proto.Message, *apiError) {
	project, zone := r.PathValue("project"), r.PathValue("zone")
	if e := validateZone(zone); e != nil {
		return nil, e
	}
	in := &computepb.Instance{}
	if _, e := readBody(r, in); e != nil {
		return nil, e
	}
	if e := validateName(in.GetName()); e != nil {
		return nil, e
	}
	ip := ""
	if nics := in.GetNetworkInterfaces(); len(nics) > 0 {
		ip = nics[0].GetNetworkIP()
	}
	path := fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, in.GetName())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.instances[zone+"/"+in.GetName()] != nil {
		return nil, errAlreadyExists(path)
	}
	if ip == "" {
		ip = fmt.Sprintf("10.128.%d.%d", (len(s.instances)/250)%250, len(s.instances)%250+2)
	}
	return s.startOpLocked(r, opScope{project: project, zone: zone}, "insert", path, 0, func() *apiError {
		if s.instances[zone+"/"+in.GetName()] != nil {
			return errAlreadyExists(path)
		}
		s.addInstanceLocked(project, zone, in.GetName(), ip, in.GetMachineType())
		return nil
	}), nil
}

func (s *Server) instanceGet(r *http.Request) (proto.Message, *apiError) {
	project, zone, name := r.PathValue("project"), r.PathValue("zone"), r.PathValue("instance")
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[zone+"/"+name]
	if in == nil {
		return nil, errNotFound(fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name))
	}
	return proto.CloneOf(in.pb), nil
}

func (s *Server) instanceList(r *http.Request) (proto.Message, *apiError) {
	project, zone := r.PathValue("project"), r.PathValue("zone")
	coll := fmt.Sprintf("projects/%s/zones/%s/instances", project, zone)
	inZone := func(_ string, in *instance) bool { return in.zone == zone }
	items, next, e := listPage(s, r, s.instances, func(in *instance) *computepb.Instance { return in.pb }, inZone)
	if e != nil {
		return nil, e
	}
	return &computepb.InstanceList{Kind: proto.String("compute#instanceList"), Id: proto.String(coll),
		SelfLink: proto.String(selfLink(coll)), Items: items, NextPageToken: next}, nil
}

func (s *Server) instanceDelete(r *http.Request) (proto.Message, *apiError) {
	project, zone, name := r.PathValue("project"), r.PathValue("zone"), r.PathValue("instance")
	path := fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[zone+"/"+name]
	if in == nil {
		return nil, errNotFound(path)
	}
	return s.startOpLocked(r, opScope{project: project, zone: zone}, "delete", path, in.pb.GetId(), func() *apiError {
		if s.instances[zone+"/"+name] == nil {
			return errNotFound(path)
		}
		s.removeInstanceLocked(zone, name)
		return nil
	}), nil
}

// Endpoint is an emulator-side view of one attached endpoint.
type Endpoint struct {
	Instance   string    `json:"instance"`
	IPAddress  string    `json:"ipAddress"`
	Port       int32     `json:"port"`
	AttachedAt time.Time `json:"attachedAt"`
}

// Endpoints lists the endpoints attached to a NEG (zone and name), sorted by
// IP and port; nil when the NEG does not exist. Any project matches.
func (s *Server) Endpoints(zone, negName string) []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.negs {
		if n.zone != zone || n.pb.GetName() != negName {
			continue
		}
		eps := make([]*endpoint, 0, len(n.endpoints))
		for _, ep := range n.endpoints {
			eps = append(eps, ep)
		}
		sortEndpoints(eps)
		out := make([]Endpoint, 0, len(eps))
		for _, ep := range eps {
			out = append(out, Endpoint{Instance: ep.instance, IPAddress: ep.ip, Port: ep.port, AttachedAt: ep.attachedAt})
		}
		return out
	}
	return nil
}
