package elbv2sim

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// The VPC model: VPCs with CIDRs, subnets with a CIDR inside the VPC and an
// Availability Zone, and security groups. EC2 DescribeVpcs, DescribeSubnets
// and DescribeSecurityGroups answer from it; RegisterTargets decides a
// target's zone by it.

// idShape is AWS's resource ID format: a prefix and 8 (older resources) or
// 17 lowercase hex digits, as described in
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html
var idShape = regexp.MustCompile(`^(vpc|subnet|sg|eipalloc)-([0-9a-f]{8}|[0-9a-f]{17})$`)

// wellFormed reports whether id is a resource ID of the given kind
// ("vpc", "subnet", "sg").
func wellFormed(kind, id string) bool {
	m := idShape.FindStringSubmatch(id)
	return m != nil && m[1] == kind
}

// derivedID makes a well-formed 17-digit ID of the given kind from seed,
// for subnets and security groups the options do not name.
func derivedID(kind, seed string) string {
	sum := sha256.Sum256([]byte(seed))
	return kind + "-0" + hex.EncodeToString(sum[:8])
}

type vpcInfo struct {
	id             string
	cidrs          []string
	prefixes       []netip.Prefix
	subnets        []subnetInfo
	securityGroups []string
}

type subnetInfo struct {
	Subnet
	prefix netip.Prefix
}

// newVPC checks one VPC of the options and fills in what it leaves out: a
// VPC without Subnets gets one subnet per CIDR, covering it, in zones a, b,
// ... of the region, tagged for load balancers (LoadBalancerRoleTags); every
// VPC has its default security group.
func newVPC(v VPC, region string) (vpcInfo, error) {
	if !wellFormed("vpc", v.ID) {
		return vpcInfo{}, fmt.Errorf("elbv2sim: VPC ID %q is not of the form vpc- and 8 or 17 lowercase hex digits", v.ID)
	}
	if len(v.CIDRs) == 0 {
		return vpcInfo{}, fmt.Errorf("elbv2sim: VPC %s needs at least one CIDR", v.ID)
	}
	vi := vpcInfo{id: v.ID, cidrs: v.CIDRs, securityGroups: []string{derivedID("sg", v.ID)}}
	for _, c := range v.CIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil || !p.Addr().Is4() {
			return vpcInfo{}, fmt.Errorf("elbv2sim: VPC %s: CIDR %q is not an IPv4 prefix", v.ID, c)
		}
		vi.prefixes = append(vi.prefixes, p.Masked())
	}
	subnets := v.Subnets
	if len(subnets) == 0 {
		for i, p := range vi.prefixes {
			subnets = append(subnets, Subnet{
				ID:               derivedID("subnet", fmt.Sprintf("%s/%d", v.ID, i)),
				AvailabilityZone: region + string(rune('a'+i%6)),
				CIDR:             p.String(),
				Tags:             LoadBalancerRoleTags(),
			})
		}
	}
	for _, sn := range subnets {
		if !wellFormed("subnet", sn.ID) {
			return vpcInfo{}, fmt.Errorf("elbv2sim: VPC %s: subnet ID %q is not of the form subnet- and 8 or 17 lowercase hex digits", v.ID, sn.ID)
		}
		p, err := netip.ParsePrefix(sn.CIDR)
		if err != nil || !p.Addr().Is4() {
			return vpcInfo{}, fmt.Errorf("elbv2sim: subnet %s: CIDR %q is not an IPv4 prefix", sn.ID, sn.CIDR)
		}
		p = p.Masked()
		if !slices.ContainsFunc(vi.prefixes, func(v netip.Prefix) bool { return v.Bits() <= p.Bits() && v.Contains(p.Addr()) }) {
			return vpcInfo{}, fmt.Errorf("elbv2sim: subnet %s: CIDR %s is not inside the CIDRs of VPC %s", sn.ID, sn.CIDR, v.ID)
		}
		for _, o := range vi.subnets {
			if o.prefix.Overlaps(p) {
				return vpcInfo{}, fmt.Errorf("elbv2sim: subnets %s and %s overlap", o.ID, sn.ID)
			}
		}
		if sn.AvailabilityZone == "" {
			return vpcInfo{}, fmt.Errorf("elbv2sim: subnet %s needs an AvailabilityZone", sn.ID)
		}
		vi.subnets = append(vi.subnets, subnetInfo{Subnet: sn, prefix: p})
	}
	for _, sg := range v.SecurityGroups {
		if !wellFormed("sg", sg) {
			return vpcInfo{}, fmt.Errorf("elbv2sim: VPC %s: security group ID %q is not of the form sg- and 8 or 17 lowercase hex digits", v.ID, sg)
		}
		vi.securityGroups = append(vi.securityGroups, sg)
	}
	return vi, nil
}

// contains reports whether addr is inside one of the VPC's CIDRs.
func (v *vpcInfo) contains(addr netip.Addr) bool {
	return slices.ContainsFunc(v.prefixes, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// subnetOf is the subnet holding addr, or nil.
func (v *vpcInfo) subnetOf(addr netip.Addr) *subnetInfo {
	for i := range v.subnets {
		if v.subnets[i].prefix.Contains(addr) {
			return &v.subnets[i]
		}
	}
	return nil
}

// hasZone reports whether one of the VPC's subnets is in zone az.
func (v *vpcInfo) hasZone(az string) bool {
	return slices.ContainsFunc(v.subnets, func(s subnetInfo) bool { return s.AvailabilityZone == az })
}

// ec2Filters reads Filter.N.Name / Filter.N.Value.M, refusing names the
// call does not support.
func ec2Filters(p params, supported ...string) (map[string][]string, *apiError) {
	filters := map[string][]string{}
	for _, n := range p.indices("Filter") {
		f := "Filter." + itoa(n)
		name := p.get(f + ".Name")
		if !slices.Contains(supported, name) && !(strings.HasPrefix(name, "tag:") && slices.Contains(supported, "tag:")) {
			return nil, newErr("InvalidParameterValue", "The filter '%s' is not supported by this emulator", name)
		}
		for _, m := range p.indices(f + ".Value") {
			filters[name] = append(filters[name], p.get(f+".Value."+itoa(m)))
		}
	}
	return filters, nil
}

// matches reports whether one of vals is among the filter's values (true
// when the filter is not given).
func matches(filters map[string][]string, name string, vals ...string) bool {
	want, ok := filters[name]
	if !ok {
		return true
	}
	for _, v := range vals {
		if slices.Contains(want, v) {
			return true
		}
	}
	return false
}

// matchesTags applies the tag-key and tag:<key> filters: every one given
// must match one of the tags.
func matchesTags(filters map[string][]string, tags map[string]string) bool {
	for name, want := range filters {
		switch {
		case name == "tag-key":
			if !slices.ContainsFunc(want, func(k string) bool { _, ok := tags[k]; return ok }) {
				return false
			}
		case strings.HasPrefix(name, "tag:"):
			v, ok := tags[strings.TrimPrefix(name, "tag:")]
			if !ok || !slices.Contains(want, v) {
				return false
			}
		}
	}
	return true
}

// ec2IDs reads Prefix.N and checks each ID's shape; a malformed one answers
// the kind's .Malformed code, as listed in
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html
func ec2IDs(p params, prefix, kind, code string) ([]string, *apiError) {
	var ids []string
	for _, n := range p.indices(prefix) {
		id := p.get(prefix + "." + itoa(n))
		if !wellFormed(kind, id) {
			return nil, newErr(code, "Invalid id: \"%s\"", id)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

type xSubnet struct {
	SubnetID                string    `xml:"subnetId"`
	SubnetArn               string    `xml:"subnetArn"`
	State                   string    `xml:"state"`
	VpcID                   string    `xml:"vpcId"`
	OwnerID                 string    `xml:"ownerId"`
	CidrBlock               string    `xml:"cidrBlock"`
	AvailabilityZone        string    `xml:"availabilityZone"`
	AvailableIPAddressCount int       `xml:"availableIpAddressCount"`
	DefaultForAz            bool      `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool      `xml:"mapPublicIpOnLaunch"`
	Tags                    []xEC2Tag `xml:"tagSet>item"`
}

type xEC2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xSubnetSet struct {
	XMLName xml.Name  `xml:"subnetSet"`
	Items   []xSubnet `xml:"item"`
}

// describeSubnets answers SubnetId.N and the vpc-id, subnet-id and
// availability-zone filters.
func (s *Server) describeSubnets(p params) (any, *apiError) {
	ids, err := ec2IDs(p, "SubnetId", "subnet", "InvalidSubnetID.Malformed")
	if err != nil {
		return nil, err
	}
	// Filters as documented in
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSubnets.html
	filters, err := ec2Filters(p, "vpc-id", "subnet-id", "availability-zone", "state", "tag-key", "tag:")
	if err != nil {
		return nil, err
	}
	for _, v := range filters["vpc-id"] {
		if !wellFormed("vpc", v) {
			return nil, newErr("InvalidVpcID.Malformed", "Invalid id: \"%s\"", v)
		}
	}
	found := map[string]bool{}
	out := xSubnetSet{Items: []xSubnet{}}
	for _, v := range s.vpcs {
		for _, sn := range v.subnets {
			if len(ids) > 0 && !slices.Contains(ids, sn.ID) {
				continue
			}
			found[sn.ID] = true
			if !matches(filters, "vpc-id", v.id) || !matches(filters, "subnet-id", sn.ID) ||
				!matches(filters, "availability-zone", sn.AvailabilityZone) || !matches(filters, "state", "available") ||
				!matchesTags(filters, sn.Tags) {
				continue
			}
			var tags []xEC2Tag
			for _, k := range slices.Sorted(maps.Keys(sn.Tags)) {
				tags = append(tags, xEC2Tag{Key: k, Value: sn.Tags[k]})
			}
			out.Items = append(out.Items, xSubnet{
				SubnetID:  sn.ID,
				SubnetArn: fmt.Sprintf("arn:aws:ec2:%s:%s:subnet/%s", s.opts.Region, s.opts.AccountID, sn.ID),
				State:     "available", VpcID: v.id, OwnerID: s.opts.AccountID,
				CidrBlock: sn.prefix.String(), AvailabilityZone: sn.AvailabilityZone,
				// AWS reserves five addresses in every subnet.
				AvailableIPAddressCount: max(1<<(32-sn.prefix.Bits())-5, 0),
				Tags:                    tags,
			})
		}
	}
	for _, id := range ids {
		if !found[id] {
			return nil, newErr("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
		}
	}
	return out, nil
}

type xSecurityGroup struct {
	GroupID     string `xml:"groupId"`
	GroupName   string `xml:"groupName"`
	Description string `xml:"groupDescription"`
	VpcID       string `xml:"vpcId"`
	OwnerID     string `xml:"ownerId"`
}

type xSecurityGroupSet struct {
	XMLName xml.Name         `xml:"securityGroupInfo"`
	Items   []xSecurityGroup `xml:"item"`
}

// describeSecurityGroups answers GroupId.N and the group-id and vpc-id
// filters. Each VPC's first group is its default group.
func (s *Server) describeSecurityGroups(p params) (any, *apiError) {
	ids, err := ec2IDs(p, "GroupId", "sg", "InvalidGroupId.Malformed")
	if err != nil {
		return nil, err
	}
	filters, err := ec2Filters(p, "group-id", "vpc-id")
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	out := xSecurityGroupSet{Items: []xSecurityGroup{}}
	for _, v := range s.vpcs {
		for i, sg := range v.securityGroups {
			if len(ids) > 0 && !slices.Contains(ids, sg) {
				continue
			}
			found[sg] = true
			if !matches(filters, "group-id", sg) || !matches(filters, "vpc-id", v.id) {
				continue
			}
			name, desc := sg, "security group "+sg
			if i == 0 {
				name, desc = "default", "default VPC security group"
			}
			out.Items = append(out.Items, xSecurityGroup{GroupID: sg, GroupName: name, Description: desc, VpcID: v.id, OwnerID: s.opts.AccountID})
		}
	}
	for _, id := range ids {
		if !found[id] {
			return nil, newErr("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
		}
	}
	return out, nil
}

// hasSecurityGroup reports whether sg belongs to the VPC.
func (v *vpcInfo) hasSecurityGroup(sg string) bool { return slices.Contains(v.securityGroups, sg) }
