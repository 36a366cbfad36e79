package elbv2sim

import (
	"encoding/xml"
	"sort"
	"strings"
)

const maxTagsPerResource = 50

type xTag struct {
	Key   string
	Value string `xml:",omitempty"`
}

type xTagDescription struct {
	ResourceArn string
	Tags        list[xTag]
}

type xTagDescriptions struct {
	TagDescriptions list[xTagDescription]
}

// readTags reads Tags.member.N.{Key,Value}, refusing a key given twice.
func readTags(p params) ([]xTag, *apiError) {
	var out []xTag
	seen := map[string]bool{}
	for _, m := range p.members("Tags") {
		k := p.get(m + ".Key")
		if k == "" || len(k) > 128 {
			return nil, validation("Tag keys must be 1 to 128 characters long")
		}
		if seen[k] {
			return nil, newErr("DuplicateTagKeys", "Tag key '%s' was specified more than once", k)
		}
		seen[k] = true
		out = append(out, xTag{Key: k, Value: p.get(m + ".Value")})
	}
	if len(out) > maxTagsPerResource {
		return nil, newErr("TooManyTags", "You've reached the limit on the number of tags for this resource")
	}
	return out, nil
}

// setTags records the tags a resource was created with. Callers hold s.mu.
func (s *Server) setTags(arn string, tags []xTag) {
	if len(tags) == 0 {
		return
	}
	s.tags[arn] = map[string]string{}
	for _, t := range tags {
		s.tags[arn][t.Key] = t.Value
	}
}

// resource checks that an ARN names an existing taggable resource, with the
// not-found code of its kind. Callers hold s.mu.
func (s *Server) resource(arn string) *apiError {
	switch {
	case !strings.HasPrefix(arn, "arn:"):
	case strings.Contains(arn, ":targetgroup/"):
		if s.tgs[arn] == nil {
			return newErr("TargetGroupNotFound", "Target groups '%s' not found", arn)
		}
		return nil
	case strings.Contains(arn, ":loadbalancer/"):
		if s.lbs[arn] == nil {
			return newErr("LoadBalancerNotFound", "Load balancers '%s' not found", arn)
		}
		return nil
	case strings.Contains(arn, ":listener/"):
		if s.listeners[arn] == nil {
			return newErr("ListenerNotFound", "Listeners '%s' not found", arn)
		}
		return nil
	case strings.Contains(arn, ":listener-rule/"):
		if s.rules[arn] == nil {
			return newErr("RuleNotFound", "Rules '%s' not found", arn)
		}
		return nil
	}
	return validation("'%s' is not a valid resource ARN", arn)
}

func resourceArns(p params) ([]string, *apiError) {
	arns := p.strings("ResourceArns")
	if len(arns) == 0 {
		return nil, validation("At least one resource ARN must be specified")
	}
	if len(arns) > 20 {
		return nil, validation("1 validation error detected: Value at 'resourceArns' failed to satisfy constraint: Member must have length less than or equal to 20")
	}
	return arns, nil
}

func (s *Server) addTags(p params) (any, *apiError) {
	arns, err := resourceArns(p)
	if err != nil {
		return nil, err
	}
	tags, err := readTags(p)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, validation("At least one tag must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range arns {
		if err := s.resource(a); err != nil {
			return nil, err
		}
		n := len(s.tags[a])
		for _, t := range tags {
			if _, ok := s.tags[a][t.Key]; !ok {
				n++
			}
		}
		if n > maxTagsPerResource {
			return nil, newErr("TooManyTags", "You've reached the limit on the number of tags for resource '%s'", a)
		}
	}
	for _, a := range arns {
		if s.tags[a] == nil {
			s.tags[a] = map[string]string{}
		}
		for _, t := range tags {
			s.tags[a][t.Key] = t.Value
		}
	}
	return nil, nil
}

func (s *Server) removeTags(p params) (any, *apiError) {
	arns, err := resourceArns(p)
	if err != nil {
		return nil, err
	}
	keys := p.strings("TagKeys")
	if len(keys) == 0 {
		return nil, validation("At least one tag key must be specified")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range arns {
		if err := s.resource(a); err != nil {
			return nil, err
		}
	}
	for _, a := range arns {
		for _, k := range keys {
			delete(s.tags[a], k)
		}
	}
	return nil, nil
}

func (s *Server) describeTags(p params) (any, *apiError) {
	arns, err := resourceArns(p)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []xTagDescription{}
	for _, a := range arns {
		if err := s.resource(a); err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(s.tags[a]))
		for k := range s.tags[a] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tags := []xTag{}
		for _, k := range keys {
			tags = append(tags, xTag{Key: k, Value: s.tags[a][k]})
		}
		out = append(out, xTagDescription{ResourceArn: a, Tags: listOf(tags)})
	}
	return xTagDescriptions{TagDescriptions: listOf(out)}, nil
}

// EC2 DescribeVpcs, in EC2's own response shape.

type xCidrState struct {
	State string `xml:"state"`
}

type xCidrAssoc struct {
	CidrBlock      string     `xml:"cidrBlock"`
	AssociationID  string     `xml:"associationId"`
	CidrBlockState xCidrState `xml:"cidrBlockState"`
}

type xVpc struct {
	VpcID          string       `xml:"vpcId"`
	OwnerID        string       `xml:"ownerId"`
	State          string       `xml:"state"`
	CidrBlock      string       `xml:"cidrBlock"`
	CidrBlockAssoc []xCidrAssoc `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID  string       `xml:"dhcpOptionsId"`
	InstanceTenant string       `xml:"instanceTenancy"`
	IsDefault      bool         `xml:"isDefault"`
}

type xVpcSet struct {
	XMLName xml.Name `xml:"vpcSet"`
	Items   []xVpc   `xml:"item"`
}

// describeVpcs filters by VpcId.N and by the vpc-id / cidr / cidr-block-association.cidr-block filters.
func (s *Server) describeVpcs(p params) (any, *apiError) {
	ids, err := ec2IDs(p, "VpcId", "vpc", "InvalidVpcID.Malformed")
	if err != nil {
		return nil, err
	}
	filters, err := ec2Filters(p, "vpc-id", "cidr", "cidr-block-association.cidr-block", "is-default", "state")
	if err != nil {
		return nil, err
	}
	match := func(name string, vals ...string) bool { return matches(filters, name, vals...) }
	byID := map[string]*vpcInfo{}
	for i := range s.vpcs {
		byID[s.vpcs[i].id] = &s.vpcs[i]
	}
	var sel []*vpcInfo
	if len(ids) > 0 {
		for _, id := range ids {
			v := byID[id]
			if v == nil {
				return nil, newErr("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
			}
			sel = append(sel, v)
		}
	} else {
		for i := range s.vpcs {
			sel = append(sel, &s.vpcs[i])
		}
	}
	out := xVpcSet{Items: []xVpc{}}
	for i, v := range sel {
		isDefault := v.id == s.vpcs[0].id
		if !match("vpc-id", v.id) || !match("cidr", v.cidrs[0]) ||
			!match("cidr-block-association.cidr-block", v.cidrs...) ||
			!match("is-default", boolStr(isDefault)) || !match("state", "available") {
			continue
		}
		x := xVpc{VpcID: v.id, OwnerID: s.opts.AccountID, State: "available", CidrBlock: v.cidrs[0],
			DhcpOptionsID: "default", InstanceTenant: "default", IsDefault: isDefault}
		for j, c := range v.cidrs {
			x.CidrBlockAssoc = append(x.CidrBlockAssoc, xCidrAssoc{
				CidrBlock: c, AssociationID: "vpc-cidr-assoc-" + itoa(i+1) + itoa(j+1),
				CidrBlockState: xCidrState{State: "associated"},
			})
		}
		out.Items = append(out.Items, x)
	}
	return out, nil
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
