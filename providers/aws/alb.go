package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
)

// Application Load Balancers for Ingresses: one ALB per balancer key, an
// HTTP listener on 80, an HTTPS listener on 443 when certificates are
// given, one rule per route on every listener that forwards, and one
// target group per backend whose pods the target bindings register.

var _ providers.HTTPBalancers = (*Provider)(nil)

// Tag keys of what podlb creates for a load balancer, beside TagCluster.
// A balancer's resources never carry TagNamespace, TagService and TagPort:
// those mark groups a binding owns and deletes.
const (
	// TagBalancer is the providers.BalancerKey, as its String gives it.
	TagBalancer = "podlb.io/balancer"
	// TagBackend is the HTTPBackend.ID a target group serves.
	TagBackend = "podlb.io/backend"
	// TagRoute identifies the route (and its part, when a route needs
	// several rules) a listener rule realises.
	TagRoute = "podlb.io/route"
	// TagBalancerType is "network" on what podlb creates for a Service's
	// Network Load Balancer. An Ingress's ALB resources carry none (they
	// predate it), so a Service and an Ingress of the same key never take
	// each other's resources for their own.
	TagBalancerType = "podlb.io/balancer-type"
)

// networkType is TagBalancerType's value on Network Load Balancer
// resources.
const networkType = "network"

// Ports of the listeners podlb creates.
const (
	httpPort  = 80
	httpsPort = 443
)

// maxRuleValues is ELBv2's limit of condition values per rule.
const maxRuleValues = 5

// balancerOwner is whose a load balancer's resource is: one cluster's
// load balancer of one key and type ("" for an ALB, networkType).
type balancerOwner struct {
	cluster string
	key     providers.BalancerKey
	typ     string
}

// tags mark a resource as podlb's for the owner: the ownership record
// checked before any change.
func (o balancerOwner) tags() map[string]string {
	tags := map[string]string{TagCluster: o.cluster, TagBalancer: o.key.String()}
	if o.typ != "" {
		tags[TagBalancerType] = o.typ
	}
	return tags
}

// owns reports whether tags mark a resource as podlb's for the owner.
func (o balancerOwner) owns(tags map[string]string) bool {
	return tags[TagCluster] == o.cluster && tags[TagBalancer] == o.key.String() && tags[TagBalancerType] == o.typ
}

// balancerTags mark a resource as podlb's for one ALB of one cluster.
func balancerTags(cluster string, key providers.BalancerKey) map[string]string {
	return balancerOwner{cluster: cluster, key: key}.tags()
}

// ownedByBalancer reports whether tags mark a resource as podlb's for this
// cluster's ALB of key.
func ownedByBalancer(tags map[string]string, cluster string, key providers.BalancerKey) bool {
	return balancerOwner{cluster: cluster, key: key}.owns(tags)
}

// nameHash is n hex digits of a hash of parts, for generated names.
func nameHash(n int, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:n]
}

// BalancerName is the deterministic name of the ALB podlb provisions for
// a balancer key: readable prefixes of namespace and name, then a hash of
// cluster and key, within AWS's 32 characters.
func BalancerName(cluster string, key providers.BalancerKey) string {
	return balancerName("pl-", cluster, key)
}

// balancerName is prefix, readable parts of the key and a hash of cluster
// and key, within AWS's 32 characters for a three-character prefix.
func balancerName(prefix, cluster string, key providers.BalancerKey) string {
	return prefix + namePart(key.Namespace, 7) + "-" + namePart(key.Name, 8) + "-" + nameHash(10, cluster, key.Namespace, key.Name)
}

// BalancerGroupName is the deterministic name of the target group of one
// backend of a balancer: "pb-", the Service's readable prefix and a hash of
// cluster, key and backend, within 32 characters.
func BalancerGroupName(cluster string, key providers.BalancerKey, backendID string) string {
	return "pb-" + namePart(backendService(backendID), 12) + "-" + nameHash(12, cluster, key.Namespace, key.Name, backendID)
}

// backendService is the Service of a "namespace/service:port" backend ID.
func backendService(id string) string {
	_, rest, _ := strings.Cut(id, "/")
	svc, _, _ := strings.Cut(rest, ":")
	return svc
}

// ParseBalancerSpec implements providers.HTTPBalancers.
func (p *Provider) ParseBalancerSpec(raw string) (any, error) {
	s, err := ParseLoadBalancerSpec(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// lbPlan is the load balancer an Ensure wants, computed before touching
// anything.
type lbPlan struct {
	balancerOwner
	spec   *LoadBalancerSpec
	lbType types.LoadBalancerTypeEnum
	name   string
	// tags are the owner's and the annotation's.
	tags map[string]string
}

func newLBPlan(owner balancerOwner, typ types.LoadBalancerTypeEnum, name string, spec *LoadBalancerSpec) *lbPlan {
	tags := owner.tags()
	maps.Copy(tags, spec.Tags)
	return &lbPlan{balancerOwner: owner, spec: spec, lbType: typ, name: name, tags: tags}
}

// albPlan is what EnsureHTTP computed from lb before touching anything.
type albPlan struct {
	*lbPlan
	lb *providers.HTTPBalancer
}

// balancerSpec is a balancer's parsed annotation, the defaults when it has
// none.
func balancerSpec(v any) (*LoadBalancerSpec, error) {
	switch s := v.(type) {
	case nil:
	case *LoadBalancerSpec:
		if s != nil {
			return s, nil
		}
	default:
		return nil, providers.Errorf(providers.Invalid, "", "the load balancer spec is a %T, not the AWS provider's", v)
	}
	return &LoadBalancerSpec{}, nil
}

// planALB checks lb and its annotation for what parsing cannot see, so a
// broken edit fails before anything changes.
func planALB(lb *providers.HTTPBalancer) (*albPlan, error) {
	spec, err := balancerSpec(lb.Spec)
	if err != nil {
		return nil, err
	}
	if spec.RedirectToHTTPS && len(spec.CertificateARNs) == 0 {
		return nil, providers.Errorf(providers.Invalid, "redirectToHTTPS", "needs an HTTPS listener: list its certificates in certificateArns")
	}
	for i, r := range lb.Routes {
		if _, ok := lb.Backends[r.Backend]; !ok {
			return nil, providers.Errorf(providers.Invalid, "", "route %d (%s%s) names backend %q, which is not among the balancer's backends", i, r.Host, r.Path, r.Backend)
		}
	}
	if _, ok := lb.Backends[lb.Default]; lb.Default != "" && !ok {
		return nil, providers.Errorf(providers.Invalid, "", "the default backend %q is not among the balancer's backends", lb.Default)
	}
	owner := balancerOwner{cluster: lb.Cluster, key: lb.Key}
	return &albPlan{lbPlan: newLBPlan(owner, types.LoadBalancerTypeEnumApplication, BalancerName(lb.Cluster, lb.Key), spec), lb: lb}, nil
}

// EnsureHTTP implements providers.HTTPBalancers. It waits for nothing: a
// load balancer still provisioning is reported with its DNS name.
func (p *Provider) EnsureHTTP(ctx context.Context, lb *providers.HTTPBalancer) (*providers.BalancerStatus, map[string]providers.Spec, error) {
	plan, err := planALB(lb)
	if err != nil {
		return nil, nil, err
	}
	alb, err := p.ensureLoadBalancer(ctx, plan.lbPlan)
	if err != nil {
		return nil, nil, err
	}
	albArn := aws.ToString(alb.LoadBalancerArn)
	groups, stale, err := p.ensureBalancerGroups(ctx, plan, alb)
	if err != nil {
		return nil, nil, err
	}
	if err := p.ensureListeners(ctx, plan, albArn, groups); err != nil {
		return nil, nil, err
	}
	// Only now does no rule of ours forward to a removed backend's group.
	// One still in use (by a rule of someone else's) is tried again on the
	// next pass.
	for _, arn := range stale {
		if err := p.deleteBalancerGroup(ctx, arn); err != nil && providers.ClassOf(err) != providers.Transient {
			return nil, nil, err
		}
	}
	specs := make(map[string]providers.Spec, len(groups))
	for id, arn := range groups {
		specs[id] = &Spec{Balancer: &BalancerGroup{ARN: arn, Balancer: lb.Key.String()}}
	}
	st := &providers.BalancerStatus{
		Hostname: aws.ToString(alb.DNSName),
		Details:  map[string]string{"loadBalancer": albArn, "scheme": string(alb.Scheme)},
	}
	if alb.State != nil {
		st.Details["state"] = string(alb.State.Code)
	}
	return st, specs, nil
}

// ensureLoadBalancer finds the load balancer by its name or creates it,
// and brings its tags and idle timeout in line.
func (p *Provider) ensureLoadBalancer(ctx context.Context, plan *lbPlan) (*types.LoadBalancer, error) {
	alb, err := p.describeALB(ctx, plan.name)
	if err != nil {
		return nil, err
	}
	scheme := types.LoadBalancerSchemeEnum(plan.spec.Scheme)
	if scheme == "" {
		scheme = types.LoadBalancerSchemeEnumInternetFacing
	}
	if alb == nil {
		if alb, err = p.createLoadBalancer(ctx, plan, scheme); err != nil {
			return nil, err
		}
	} else {
		tags, err := p.tags(ctx, aws.ToString(alb.LoadBalancerArn))
		if err != nil {
			return nil, err
		}
		if !plan.owns(tags) {
			return nil, providers.Errorf(providers.Invalid, "", "a load balancer named %s exists but is not tagged as podlb's for %s; podlb will not adopt it", plan.name, plan.key)
		}
		if alb.Scheme != scheme {
			return nil, providers.Errorf(providers.Invalid, "scheme", "load balancer %s is %s; AWS cannot change the scheme of a load balancer, so delete the Ingress or Service and create it again to get a %s one", plan.name, alb.Scheme, scheme)
		}
		if have := elasticIPs(alb); len(plan.spec.ElasticIPs) > 0 && !sameSet(have, plan.spec.ElasticIPs) {
			return nil, providers.Errorf(providers.Invalid, "elasticIps", "load balancer %s has Elastic IPs %v; AWS fixes them when it is created, so delete the Service (or set its type to ClusterIP) and create it again to get %v", plan.name, have, plan.spec.ElasticIPs)
		}
		if err := p.addTags(ctx, aws.ToString(alb.LoadBalancerArn), tags, plan.spec.Tags); err != nil {
			return nil, err
		}
	}
	if err := p.checkALBVPC(alb); err != nil {
		return nil, err
	}
	if plan.spec.IdleTimeoutSeconds != nil {
		if err := p.alignIdleTimeout(ctx, aws.ToString(alb.LoadBalancerArn), *plan.spec.IdleTimeoutSeconds); err != nil {
			return nil, err
		}
	}
	return alb, nil
}

// elasticIPs are the allocation IDs of a load balancer's addresses.
func elasticIPs(lb *types.LoadBalancer) []string {
	var out []string
	for _, az := range lb.AvailabilityZones {
		for _, a := range az.LoadBalancerAddresses {
			if id := aws.ToString(a.AllocationId); id != "" {
				out = append(out, id)
			}
		}
	}
	return out
}

// describeALB finds a load balancer by name; nil when there is none.
func (p *Provider) describeALB(ctx context.Context, name string) (*types.LoadBalancer, error) {
	var out *elbv2.DescribeLoadBalancersOutput
	err := p.calls.Call(ctx, "DescribeLoadBalancers", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{name}})
		return err
	})
	if providers.ClassOf(err) == providers.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(out.LoadBalancers) == 0 {
		return nil, nil
	}
	return &out.LoadBalancers[0], nil
}

// createLoadBalancer creates the load balancer, in the annotation's
// subnets or, without them, in those discovered by their role tags.
func (p *Provider) createLoadBalancer(ctx context.Context, plan *lbPlan, scheme types.LoadBalancerSchemeEnum) (*types.LoadBalancer, error) {
	subnets := plan.spec.Subnets
	if len(subnets) == 0 {
		need := 1
		if plan.lbType == types.LoadBalancerTypeEnumApplication {
			need = minSubnets
		}
		var err error
		if subnets, err = p.discoverSubnets(ctx, scheme, need); err != nil {
			return nil, err
		}
	}
	in := &elbv2.CreateLoadBalancerInput{
		Name:           aws.String(plan.name),
		Type:           plan.lbType,
		Scheme:         scheme,
		Subnets:        subnets,
		SecurityGroups: plan.spec.SecurityGroups,
		Tags:           tagList(plan.tags),
	}
	if eips := plan.spec.ElasticIPs; len(eips) > 0 {
		in.Subnets = nil
		for i, sn := range subnets {
			in.SubnetMappings = append(in.SubnetMappings, types.SubnetMapping{SubnetId: aws.String(sn), AllocationId: aws.String(eips[i])})
		}
	}
	var out *elbv2.CreateLoadBalancerOutput
	err := p.calls.Call(ctx, "CreateLoadBalancer", func(ctx context.Context) (err error) {
		out, err = p.elb.CreateLoadBalancer(ctx, in)
		return err
	})
	if err != nil {
		// An Elastic IP another load balancer holds is refused with a
		// generic code; the message names the allocation.
		if slices.ContainsFunc(plan.spec.ElasticIPs, func(id string) bool { return strings.Contains(err.Error(), id) }) {
			return nil, &providers.Error{Class: providers.Invalid, Field: "elasticIps", Err: err}
		}
		return nil, fieldOfCode(err)
	}
	if len(out.LoadBalancers) == 0 {
		return nil, providers.Errorf(providers.Transient, "", "CreateLoadBalancer returned no load balancer")
	}
	alb := &out.LoadBalancers[0]
	if err := p.checkALBVPC(alb); err != nil {
		// Subnets of another VPC: the load balancer just made is useless
		// and empty, so it goes again at once.
		if derr := p.deleteALB(ctx, aws.ToString(alb.LoadBalancerArn)); derr != nil {
			return nil, fmt.Errorf("%w (deleting it again: %v)", err, derr)
		}
		return nil, err
	}
	return alb, nil
}

// checkALBVPC refuses a load balancer outside the cluster's VPC: its
// targets, the pods, could never be reached.
func (p *Provider) checkALBVPC(alb *types.LoadBalancer) error {
	if vpc := aws.ToString(alb.VpcId); p.opts.VPCID != "" && vpc != p.opts.VPCID {
		return providers.Errorf(providers.Invalid, "subnets", "load balancer %s is in %s, but this cluster runs in %s: list subnets of the cluster's VPC", aws.ToString(alb.LoadBalancerName), vpc, p.opts.VPCID)
	}
	return nil
}

const idleTimeoutAttribute = "idle_timeout.timeout_seconds"

func (p *Provider) alignIdleTimeout(ctx context.Context, arn string, seconds int32) error {
	return p.alignLBAttribute(ctx, arn, idleTimeoutAttribute, strconv.Itoa(int(seconds)), "idleTimeoutSeconds")
}

// alignLBAttribute sets one load balancer attribute unless it already has
// the value; an error names field.
func (p *Provider) alignLBAttribute(ctx context.Context, arn, key, want, field string) error {
	var out *elbv2.DescribeLoadBalancerAttributesOutput
	err := p.calls.Call(ctx, "DescribeLoadBalancerAttributes", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeLoadBalancerAttributes(ctx, &elbv2.DescribeLoadBalancerAttributesInput{LoadBalancerArn: aws.String(arn)})
		return err
	})
	if err != nil {
		return err
	}
	for _, a := range out.Attributes {
		if aws.ToString(a.Key) == key && aws.ToString(a.Value) == want {
			return nil
		}
	}
	err = p.calls.Call(ctx, "ModifyLoadBalancerAttributes", func(ctx context.Context) error {
		_, err := p.elb.ModifyLoadBalancerAttributes(ctx, &elbv2.ModifyLoadBalancerAttributesInput{
			LoadBalancerArn: aws.String(arn),
			Attributes:      []types.LoadBalancerAttribute{{Key: aws.String(key), Value: aws.String(want)}},
		})
		return err
	})
	return providers.WithField(field, err)
}

// ensureBalancerGroups finds or creates the target group of every backend
// and aligns its settings. It returns the groups by backend ID and the
// groups of this balancer no backend wants any more.
func (p *Provider) ensureBalancerGroups(ctx context.Context, plan *albPlan, alb *types.LoadBalancer) (map[string]string, []string, error) {
	lb := plan.lb
	attached, err := p.attachedGroups(ctx, aws.ToString(alb.LoadBalancerArn), plan.balancerOwner)
	if err != nil {
		return nil, nil, err
	}
	vpc := aws.ToString(alb.VpcId)
	groups := map[string]string{}
	for _, id := range sortedKeys(lb.Backends) {
		be := lb.Backends[id]
		field, c := backendSettings(plan.spec, be)
		c.Tags = plan.spec.Tags
		g := attached[id]
		if g == nil {
			name := BalancerGroupName(lb.Cluster, lb.Key, id)
			if g, err = p.findOrCreateBalancerGroup(ctx, plan.balancerOwner, name, id, vpc, groupPort{port: be.Port, protocol: "HTTP"}, c, field); err != nil {
				return nil, nil, err
			}
		}
		tg := g.tg
		if err := p.addTags(ctx, aws.ToString(tg.TargetGroupArn), g.tags, plan.spec.Tags); err != nil {
			return nil, nil, err
		}
		if err := p.alignSettings(ctx, tg, c, field); err != nil {
			return nil, nil, err
		}
		groups[id] = aws.ToString(tg.TargetGroupArn)
	}
	var stale []string
	for _, id := range sortedKeys(attached) {
		if _, ok := groups[id]; !ok {
			stale = append(stale, aws.ToString(attached[id].tg.TargetGroupArn))
		}
	}
	return groups, stale, nil
}

// backendSettings gives the target group settings of a backend from the
// annotation's backends["service:port"] (port by number or name) and the
// pods' readiness probe, and the field errors about them name.
func backendSettings(spec *LoadBalancerSpec, be providers.HTTPBackend) (string, *CreateSpec) {
	field, c := annotatedBackend(spec, be.Service, be.Port, be.PortName)
	c.Protocol = "HTTP"
	if be.HealthCheckPath != "" && (c.HealthCheck == nil || c.HealthCheck.Path == "") {
		if c.HealthCheck == nil {
			c.HealthCheck = &HealthCheckSpec{}
		}
		c.HealthCheck.Path = be.HealthCheckPath
	}
	// AWS refuses a timeout that is not below the interval, and an HTTP
	// group's default timeout (5 s) is not below the shortest interval the
	// annotation may set: a short interval alone gets a timeout that fits.
	if hc := c.HealthCheck; hc != nil && hc.IntervalSeconds != nil && hc.TimeoutSeconds == nil && *hc.IntervalSeconds <= albDefaultTimeout {
		hc.TimeoutSeconds = aws.Int32(max(*hc.IntervalSeconds-1, timeoutRange.min))
	}
	return field, c
}

// albDefaultTimeout is AWS's health check timeout of an HTTP target group
// for target type ip.
const albDefaultTimeout = 5

// annotatedBackend gives the target group settings of a Service port from
// the annotation's backends["service:port"] (port by number or name), and
// the field errors about them name.
func annotatedBackend(spec *LoadBalancerSpec, service string, port int32, portName string) (string, *CreateSpec) {
	keys := []string{service + ":" + strconv.Itoa(int(port))}
	if portName != "" {
		keys = append(keys, service+":"+portName)
	}
	c := &CreateSpec{}
	field := fmt.Sprintf("backends[%q]", keys[0])
	for _, k := range keys {
		if bs, ok := spec.Backends[k]; ok {
			field = fmt.Sprintf("backends[%q]", k)
			c.DeregistrationDelaySeconds = bs.DeregistrationDelaySeconds
			if bs.HealthCheck != nil {
				hc := *bs.HealthCheck
				c.HealthCheck = &hc
			}
			break
		}
	}
	return field, c
}

// attachedGroups are the target groups the load balancer's listeners and
// rules use that are tagged as owner's, by backend ID.
func (p *Provider) attachedGroups(ctx context.Context, lbArn string, owner balancerOwner) (map[string]*taggedGroup, error) {
	ours, err := p.ownedAttachedGroups(ctx, lbArn, owner)
	if err != nil {
		return nil, err
	}
	groups := map[string]*taggedGroup{}
	for _, g := range ours {
		groups[g.tags[TagBackend]] = g
	}
	return groups, nil
}

// ownedAttachedGroups are the target groups the load balancer uses that
// are tagged as owner's for a backend, in ARN order.
func (p *Provider) ownedAttachedGroups(ctx context.Context, lbArn string, owner balancerOwner) ([]*taggedGroup, error) {
	var out *elbv2.DescribeTargetGroupsOutput
	err := p.calls.Call(ctx, "DescribeTargetGroups", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{LoadBalancerArn: aws.String(lbArn)})
		return err
	})
	if err != nil {
		return nil, err
	}
	byArn := map[string]*types.TargetGroup{}
	for i := range out.TargetGroups {
		byArn[aws.ToString(out.TargetGroups[i].TargetGroupArn)] = &out.TargetGroups[i]
	}
	arns := slices.Sorted(maps.Keys(byArn))
	tags, err := p.tagsOf(ctx, arns)
	if err != nil {
		return nil, err
	}
	var groups []*taggedGroup
	for _, arn := range arns {
		if t := tags[arn]; owner.owns(t) && t[TagBackend] != "" {
			groups = append(groups, &taggedGroup{tg: byArn[arn], tags: t})
		}
	}
	return groups, nil
}

// taggedGroup is a target group with its tags.
type taggedGroup struct {
	tg   *types.TargetGroup
	tags map[string]string
}

// findOrCreateBalancerGroup finds a backend's group by its name (one no
// rule or listener uses yet, say after a failed pass) or creates it.
func (p *Provider) findOrCreateBalancerGroup(ctx context.Context, owner balancerOwner, name, id, vpc string, gp groupPort, c *CreateSpec, field string) (*taggedGroup, error) {
	tg, err := p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{name}}, "")
	switch {
	case err == nil:
		tags, err := p.tags(ctx, aws.ToString(tg.TargetGroupArn))
		if err != nil {
			return nil, err
		}
		if !owner.owns(tags) || tags[TagBackend] != id {
			return nil, providers.Errorf(providers.Invalid, "", "a target group named %s exists but is not tagged as podlb's for backend %s of %s; podlb will not adopt it", name, id, owner.key)
		}
		return &taggedGroup{tg: tg, tags: tags}, nil
	case providers.ClassOf(err) != providers.NotFound:
		return nil, err
	}
	tags := owner.tags()
	tags[TagBackend] = id
	in := createInput(name, vpc, gp, c, tags)
	var out *elbv2.CreateTargetGroupOutput
	err = p.calls.Call(ctx, "CreateTargetGroup", func(ctx context.Context) (err error) {
		out, err = p.elb.CreateTargetGroup(ctx, in)
		return err
	})
	if err != nil {
		return nil, providers.WithField(field, err)
	}
	if len(out.TargetGroups) == 0 {
		return nil, providers.Errorf(providers.Transient, "", "CreateTargetGroup returned no group")
	}
	return &taggedGroup{tg: &out.TargetGroups[0], tags: tagMap(in.Tags)}, nil
}

// listenerWant is a listener as EnsureHTTP wants it.
type listenerWant struct {
	port     int32
	protocol types.ProtocolEnum
	action   types.Action
	certs    []string
	policy   string
	// forwards: the listener carries a rule per route.
	forwards bool
}

// ensureListeners brings the HTTP and (with certificates) HTTPS listeners
// and their rules in line, then removes an HTTPS listener of ours that is
// no longer wanted.
func (p *Provider) ensureListeners(ctx context.Context, plan *albPlan, albArn string, groups map[string]string) error {
	spec := plan.spec
	def := fixed404()
	if plan.lb.Default != "" {
		def = forwardWarming(groups[plan.lb.Default], groups[plan.lb.DefaultWarming])
	}
	wants := []listenerWant{{port: httpPort, protocol: types.ProtocolEnumHttp, action: def, forwards: true}}
	if len(spec.CertificateARNs) > 0 {
		if spec.RedirectToHTTPS {
			wants[0] = listenerWant{port: httpPort, protocol: types.ProtocolEnumHttp, action: redirectToHTTPS()}
		}
		wants = append(wants, listenerWant{port: httpsPort, protocol: types.ProtocolEnumHttps, action: def,
			certs: spec.CertificateARNs, policy: spec.SSLPolicy, forwards: true})
	}
	existing, err := p.balancerListeners(ctx, albArn)
	if err != nil {
		return err
	}
	rules := desiredRules(plan.lb, groups)
	for _, w := range wants {
		want := rules
		if !w.forwards {
			want = nil
		}
		have := existing[w.port]
		if have == nil {
			arn, err := p.createListener(ctx, plan.balancerOwner, albArn, w)
			if err != nil {
				return err
			}
			if err := p.syncRules(ctx, plan.lb, arn, want); err != nil {
				return err
			}
			continue
		}
		if !p.listenerIsOurs(have, plan.lb) {
			return providers.Errorf(providers.Invalid, "", "port %d of load balancer %s has a listener podlb did not create; podlb will not take it over", w.port, plan.name)
		}
		// A listener that starts forwarding gets its rules before its
		// default changes (say, from a redirect); one that stops keeps
		// them until its new default is in place.
		arn := aws.ToString(have.l.ListenerArn)
		if w.forwards {
			if err := p.syncRules(ctx, plan.lb, arn, want); err != nil {
				return err
			}
		}
		if err := p.alignListener(ctx, &have.l, w); err != nil {
			return err
		}
		if !w.forwards {
			if err := p.syncRules(ctx, plan.lb, arn, want); err != nil {
				return err
			}
		}
	}
	if https := existing[httpsPort]; https != nil && len(wants) == 1 && p.listenerIsOurs(https, plan.lb) {
		return p.deleteListener(ctx, aws.ToString(https.l.ListenerArn))
	}
	return nil
}

// taggedListener is a listener with its tags.
type taggedListener struct {
	l    types.Listener
	tags map[string]string
}

func (p *Provider) listenerIsOurs(tl *taggedListener, lb *providers.HTTPBalancer) bool {
	return ownedByBalancer(tl.tags, lb.Cluster, lb.Key)
}

// balancerListeners describes the load balancer's listeners and their
// tags, by port.
func (p *Provider) balancerListeners(ctx context.Context, albArn string) (map[int32]*taggedListener, error) {
	var ls []types.Listener
	var marker *string
	for {
		var out *elbv2.DescribeListenersOutput
		err := p.calls.Call(ctx, "DescribeListeners", func(ctx context.Context) (err error) {
			out, err = p.elb.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(albArn), Marker: marker})
			return err
		})
		if err != nil {
			return nil, err
		}
		ls = append(ls, out.Listeners...)
		if aws.ToString(out.NextMarker) == "" {
			break
		}
		marker = out.NextMarker
	}
	arns := make([]string, len(ls))
	for i, l := range ls {
		arns[i] = aws.ToString(l.ListenerArn)
	}
	tags, err := p.tagsOf(ctx, arns)
	if err != nil {
		return nil, err
	}
	out := map[int32]*taggedListener{}
	for _, l := range ls {
		out[aws.ToInt32(l.Port)] = &taggedListener{l: l, tags: tags[aws.ToString(l.ListenerArn)]}
	}
	return out, nil
}

// createListener creates the listener w, tagged as owner's.
func (p *Provider) createListener(ctx context.Context, owner balancerOwner, lbArn string, w listenerWant) (string, error) {
	in := &elbv2.CreateListenerInput{
		LoadBalancerArn: aws.String(lbArn),
		Port:            aws.Int32(w.port),
		Protocol:        w.protocol,
		DefaultActions:  []types.Action{w.action},
		Tags:            tagList(owner.tags()),
	}
	if len(w.certs) > 0 {
		in.Certificates = []types.Certificate{{CertificateArn: aws.String(w.certs[0])}}
	}
	if w.policy != "" {
		in.SslPolicy = aws.String(w.policy)
	}
	var out *elbv2.CreateListenerOutput
	err := p.calls.Call(ctx, "CreateListener", func(ctx context.Context) (err error) {
		out, err = p.elb.CreateListener(ctx, in)
		return err
	})
	if err != nil {
		return "", fieldOfCode(err)
	}
	if len(out.Listeners) == 0 {
		return "", providers.Errorf(providers.Transient, "", "CreateListener returned no listener")
	}
	arn := aws.ToString(out.Listeners[0].ListenerArn)
	return arn, p.alignCertificates(ctx, arn, w.certs)
}

// alignListener changes what differs between podlb's listener l and w.
func (p *Provider) alignListener(ctx context.Context, l *types.Listener, w listenerWant) error {
	in := &elbv2.ModifyListenerInput{ListenerArn: l.ListenerArn}
	differs := false
	if l.Protocol != w.protocol {
		in.Protocol, differs = w.protocol, true
	}
	if len(l.DefaultActions) != 1 || !sameAction(l.DefaultActions[0], w.action) {
		in.DefaultActions, differs = []types.Action{w.action}, true
	}
	if len(w.certs) > 0 && defaultCertificate(l.Certificates) != w.certs[0] {
		in.Certificates, differs = []types.Certificate{{CertificateArn: aws.String(w.certs[0])}}, true
	}
	if w.policy != "" && aws.ToString(l.SslPolicy) != w.policy {
		in.SslPolicy, differs = aws.String(w.policy), true
	}
	if differs {
		err := p.calls.Call(ctx, "ModifyListener", func(ctx context.Context) error {
			_, err := p.elb.ModifyListener(ctx, in)
			return err
		})
		if err != nil {
			return fieldOfCode(err)
		}
	}
	return p.alignCertificates(ctx, aws.ToString(l.ListenerArn), w.certs)
}

func defaultCertificate(cs []types.Certificate) string {
	for _, c := range cs {
		if aws.ToBool(c.IsDefault) || len(cs) == 1 {
			return aws.ToString(c.CertificateArn)
		}
	}
	return ""
}

// alignCertificates makes an HTTPS listener's certificates beyond the
// default exactly certs[1:] (SNI picks among them).
func (p *Provider) alignCertificates(ctx context.Context, listenerArn string, certs []string) error {
	if len(certs) == 0 {
		return nil
	}
	have := map[string]bool{}
	var marker *string
	for {
		var out *elbv2.DescribeListenerCertificatesOutput
		err := p.calls.Call(ctx, "DescribeListenerCertificates", func(ctx context.Context) (err error) {
			out, err = p.elb.DescribeListenerCertificates(ctx, &elbv2.DescribeListenerCertificatesInput{ListenerArn: aws.String(listenerArn), Marker: marker})
			return err
		})
		if err != nil {
			return err
		}
		for _, c := range out.Certificates {
			if !aws.ToBool(c.IsDefault) {
				have[aws.ToString(c.CertificateArn)] = true
			}
		}
		if aws.ToString(out.NextMarker) == "" {
			break
		}
		marker = out.NextMarker
	}
	var add, remove []types.Certificate
	for _, c := range certs[1:] {
		if !have[c] {
			add = append(add, types.Certificate{CertificateArn: aws.String(c)})
		}
	}
	for _, c := range slices.Sorted(maps.Keys(have)) {
		if !slices.Contains(certs[1:], c) {
			remove = append(remove, types.Certificate{CertificateArn: aws.String(c)})
		}
	}
	if len(add) > 0 {
		err := p.calls.Call(ctx, "AddListenerCertificates", func(ctx context.Context) error {
			_, err := p.elb.AddListenerCertificates(ctx, &elbv2.AddListenerCertificatesInput{ListenerArn: aws.String(listenerArn), Certificates: add})
			return err
		})
		if err != nil {
			return fieldOfCode(err)
		}
	}
	if len(remove) > 0 {
		err := p.calls.Call(ctx, "RemoveListenerCertificates", func(ctx context.Context) error {
			_, err := p.elb.RemoveListenerCertificates(ctx, &elbv2.RemoveListenerCertificatesInput{ListenerArn: aws.String(listenerArn), Certificates: remove})
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *Provider) deleteListener(ctx context.Context, arn string) error {
	err := p.calls.Call(ctx, "DeleteListener", func(ctx context.Context) error {
		_, err := p.elb.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(arn)})
		return err
	})
	if providers.ClassOf(err) == providers.NotFound {
		return nil
	}
	return err
}

func forwardAction(tgArn string) types.Action {
	return types.Action{Type: types.ActionTypeEnumForward, TargetGroupArn: aws.String(tgArn)}
}

// forwardWarming forwards to tgArn and, when warming is not empty, names
// warming with weight 0: it gets no request, but the load balancer uses
// it, so its targets are health-checked before a route switches to it (a
// group no listener uses reports unused / Target.NotInUse).
func forwardWarming(tgArn, warming string) types.Action {
	if warming == "" || warming == tgArn {
		return forwardAction(tgArn)
	}
	return types.Action{Type: types.ActionTypeEnumForward, ForwardConfig: &types.ForwardActionConfig{TargetGroups: []types.TargetGroupTuple{
		{TargetGroupArn: aws.String(tgArn), Weight: aws.Int32(1)},
		{TargetGroupArn: aws.String(warming), Weight: aws.Int32(0)},
	}}}
}

// fixed404 answers requests no route matches when there is no default
// backend.
func fixed404() types.Action {
	return types.Action{Type: types.ActionTypeEnumFixedResponse, FixedResponseConfig: &types.FixedResponseActionConfig{
		StatusCode: aws.String("404"), ContentType: aws.String("text/plain"), MessageBody: aws.String("no route for this host and path\n")}}
}

func redirectToHTTPS() types.Action {
	return types.Action{Type: types.ActionTypeEnumRedirect, RedirectConfig: &types.RedirectActionConfig{
		Protocol: aws.String("HTTPS"), Port: aws.String(strconv.Itoa(httpsPort)), StatusCode: types.RedirectActionStatusCodeEnumHttp301}}
}

// forwardWeights are the groups a forward action names with their
// weights (1 when unset, as AWS defaults it); nil for any other action.
func forwardWeights(a types.Action) map[string]int32 {
	if a.Type != types.ActionTypeEnumForward {
		return nil
	}
	if a.ForwardConfig != nil && len(a.ForwardConfig.TargetGroups) > 0 {
		out := map[string]int32{}
		for _, g := range a.ForwardConfig.TargetGroups {
			out[aws.ToString(g.TargetGroupArn)] = aws.ToInt32(cmp.Or(g.Weight, aws.Int32(1)))
		}
		return out
	}
	return map[string]int32{aws.ToString(a.TargetGroupArn): 1}
}

// sameAction compares an action as described with one podlb writes.
func sameAction(have, want types.Action) bool {
	if have.Type != want.Type {
		return false
	}
	switch want.Type {
	case types.ActionTypeEnumForward:
		return maps.Equal(forwardWeights(have), forwardWeights(want))
	case types.ActionTypeEnumFixedResponse:
		h, w := have.FixedResponseConfig, want.FixedResponseConfig
		return h != nil && aws.ToString(h.StatusCode) == aws.ToString(w.StatusCode) &&
			aws.ToString(h.ContentType) == aws.ToString(w.ContentType) && aws.ToString(h.MessageBody) == aws.ToString(w.MessageBody)
	case types.ActionTypeEnumRedirect:
		h, w := have.RedirectConfig, want.RedirectConfig
		return h != nil && aws.ToString(h.Protocol) == aws.ToString(w.Protocol) &&
			aws.ToString(h.Port) == aws.ToString(w.Port) && h.StatusCode == w.StatusCode
	}
	return false
}

// ruleWant is one listener rule a route needs.
type ruleWant struct {
	id       string // TagRoute
	hosts    []string
	paths    []string
	target   string // target group ARN
	warming  string // target group ARN the route is about to switch to
	priority int32
}

// desiredRules gives the rules of lb.Routes in order: a host-header
// condition when the route names a host, and the route's path patterns,
// split over several rules when they exceed AWS's condition values.
func desiredRules(lb *providers.HTTPBalancer, groups map[string]string) []ruleWant {
	var out []ruleWant
	for _, r := range lb.Routes {
		pt := loadbalancers.Prefix
		if r.Exact {
			pt = loadbalancers.Exact
		}
		patterns := loadbalancers.AWSPathPatterns(loadbalancers.Route{Host: r.Host, Path: r.Path, PathType: pt})
		var hosts []string
		if r.Host != "" {
			hosts = []string{r.Host}
		}
		for part, paths := range providers.Batches(patterns, maxRuleValues-len(hosts)) {
			out = append(out, ruleWant{
				id:    nameHash(16, r.Host, r.Path, strconv.FormatBool(r.Exact), strconv.Itoa(part)),
				hosts: hosts, paths: paths, target: groups[r.Backend], warming: groups[r.Warming],
			})
		}
	}
	return out
}

func (w ruleWant) action() types.Action { return forwardWarming(w.target, w.warming) }

func (w ruleWant) conditions() []types.RuleCondition {
	var cs []types.RuleCondition
	if len(w.hosts) > 0 {
		cs = append(cs, types.RuleCondition{Field: aws.String("host-header"), HostHeaderConfig: &types.HostHeaderConditionConfig{Values: w.hosts}})
	}
	return append(cs, types.RuleCondition{Field: aws.String("path-pattern"), PathPatternConfig: &types.PathPatternConditionConfig{Values: w.paths}})
}

// matches reports whether an existing rule already has w's conditions and
// action.
func (w ruleWant) matches(r types.Rule) bool {
	if len(r.Actions) != 1 || !sameAction(r.Actions[0], w.action()) {
		return false
	}
	var hosts, paths []string
	for _, c := range r.Conditions {
		switch aws.ToString(c.Field) {
		case "host-header":
			hosts = conditionValues(c.Values, c.HostHeaderConfig != nil, func() []string { return c.HostHeaderConfig.Values })
		case "path-pattern":
			paths = conditionValues(c.Values, c.PathPatternConfig != nil, func() []string { return c.PathPatternConfig.Values })
		default:
			return false
		}
	}
	return sameSet(hosts, w.hosts) && sameSet(paths, w.paths)
}

// conditionValues reads a condition's values from its config when it has
// one, else from the older Values list.
func conditionValues(values []string, hasConfig bool, config func() []string) []string {
	if hasConfig && len(config()) > 0 {
		return config()
	}
	return values
}

func sameSet(a, b []string) bool {
	a, b = slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b))
	return slices.Equal(a, b)
}

// taggedRule is a listener rule with its priority and tags.
type taggedRule struct {
	r        types.Rule
	priority int32
	tags     map[string]string
}

// listenerRules describes the non-default rules of a listener with their
// tags.
func (p *Provider) listenerRules(ctx context.Context, listenerArn string) ([]taggedRule, error) {
	var rules []types.Rule
	var marker *string
	for {
		var out *elbv2.DescribeRulesOutput
		err := p.calls.Call(ctx, "DescribeRules", func(ctx context.Context) (err error) {
			out, err = p.elb.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listenerArn), Marker: marker})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, r := range out.Rules {
			if !aws.ToBool(r.IsDefault) {
				rules = append(rules, r)
			}
		}
		if aws.ToString(out.NextMarker) == "" {
			break
		}
		marker = out.NextMarker
	}
	arns := make([]string, len(rules))
	for i, r := range rules {
		arns[i] = aws.ToString(r.RuleArn)
	}
	tags, err := p.tagsOf(ctx, arns)
	if err != nil {
		return nil, err
	}
	out := make([]taggedRule, len(rules))
	for i, r := range rules {
		prio, err := strconv.ParseInt(aws.ToString(r.Priority), 10, 32)
		if err != nil {
			return nil, providers.Errorf(providers.Transient, "", "rule %s has priority %q", aws.ToString(r.RuleArn), aws.ToString(r.Priority))
		}
		out[i] = taggedRule{r: r, priority: int32(prio), tags: tags[arns[i]]}
	}
	return out, nil
}

// syncRules makes podlb's rules on a listener exactly want, in want's
// order, by the fewest calls, never leaving a path without a rule: rules
// that changed are modified in place; new rules are created (at their
// final priority when it is free, else behind every other rule so they
// take no traffic early); one SetRulePriorities puts every rule of ours in
// place and parks obsolete ones behind; only then are obsolete rules
// deleted. Rules podlb did not create are never touched and their
// priorities are skipped.
func (p *Provider) syncRules(ctx context.Context, lb *providers.HTTPBalancer, listenerArn string, want []ruleWant) error {
	rules, err := p.listenerRules(ctx, listenerArn)
	if err != nil {
		return err
	}
	ours := map[string]taggedRule{}
	var obsolete []taggedRule
	used := map[int32]bool{}
	foreign := map[int32]bool{}
	top := int32(0)
	for _, r := range rules {
		used[r.priority] = true
		top = max(top, r.priority)
		id := r.tags[TagRoute]
		switch {
		case !ownedByBalancer(r.tags, lb.Cluster, lb.Key) || id == "":
			foreign[r.priority] = true
		case ours[id].r.RuleArn != nil:
			obsolete = append(obsolete, r) // a duplicate of a route's rule
		default:
			ours[id] = r
		}
	}
	wanted := map[string]bool{}
	next := int32(1)
	for i := range want {
		for foreign[next] {
			next++
		}
		want[i].priority = next
		wanted[want[i].id] = true
		top = max(top, next)
		next++
	}
	for _, id := range sortedKeys(ours) {
		if !wanted[id] {
			obsolete = append(obsolete, ours[id])
		}
	}
	slices.SortFunc(obsolete, func(a, b taggedRule) int { return int(a.priority - b.priority) })

	var moves []types.RulePriorityPair
	for _, w := range want {
		have, ok := ours[w.id]
		if ok && !w.matches(have.r) {
			if err := p.modifyRule(ctx, aws.ToString(have.r.RuleArn), w); err != nil {
				return err
			}
		}
		if !ok {
			prio := w.priority
			if used[prio] {
				top++
				prio = top
			}
			arn, err := p.createRule(ctx, lb, listenerArn, w, prio)
			if err != nil {
				return err
			}
			used[prio] = true
			have = taggedRule{r: types.Rule{RuleArn: aws.String(arn)}, priority: prio}
		}
		if have.priority != w.priority {
			moves = append(moves, types.RulePriorityPair{RuleArn: have.r.RuleArn, Priority: aws.Int32(w.priority)})
		}
	}
	final := map[int32]bool{}
	for _, w := range want {
		final[w.priority] = true
	}
	for _, r := range obsolete {
		if final[r.priority] {
			top++
			moves = append(moves, types.RulePriorityPair{RuleArn: r.r.RuleArn, Priority: aws.Int32(top)})
		}
	}
	if len(moves) > 0 {
		err := p.calls.Call(ctx, "SetRulePriorities", func(ctx context.Context) error {
			_, err := p.elb.SetRulePriorities(ctx, &elbv2.SetRulePrioritiesInput{RulePriorities: moves})
			return err
		})
		if err != nil {
			return err
		}
	}
	for _, r := range obsolete {
		if err := p.deleteRule(ctx, aws.ToString(r.r.RuleArn)); err != nil {
			return err
		}
	}
	return nil
}

func (p *Provider) createRule(ctx context.Context, lb *providers.HTTPBalancer, listenerArn string, w ruleWant, prio int32) (string, error) {
	tags := balancerTags(lb.Cluster, lb.Key)
	tags[TagRoute] = w.id
	var out *elbv2.CreateRuleOutput
	err := p.calls.Call(ctx, "CreateRule", func(ctx context.Context) (err error) {
		out, err = p.elb.CreateRule(ctx, &elbv2.CreateRuleInput{
			ListenerArn: aws.String(listenerArn),
			Priority:    aws.Int32(prio),
			Conditions:  w.conditions(),
			Actions:     []types.Action{w.action()},
			Tags:        tagList(tags),
		})
		return err
	})
	if err != nil {
		return "", err
	}
	if len(out.Rules) == 0 {
		return "", providers.Errorf(providers.Transient, "", "CreateRule returned no rule")
	}
	return aws.ToString(out.Rules[0].RuleArn), nil
}

func (p *Provider) modifyRule(ctx context.Context, arn string, w ruleWant) error {
	return p.calls.Call(ctx, "ModifyRule", func(ctx context.Context) error {
		_, err := p.elb.ModifyRule(ctx, &elbv2.ModifyRuleInput{
			RuleArn:    aws.String(arn),
			Conditions: w.conditions(),
			Actions:    []types.Action{w.action()},
		})
		return err
	})
}

func (p *Provider) deleteRule(ctx context.Context, arn string) error {
	err := p.calls.Call(ctx, "DeleteRule", func(ctx context.Context) error {
		_, err := p.elb.DeleteRule(ctx, &elbv2.DeleteRuleInput{RuleArn: aws.String(arn)})
		return err
	})
	if providers.ClassOf(err) == providers.NotFound {
		return nil
	}
	return err
}

// deleteBalancerGroup deletes a group of a balancer; still in use, it is
// a Transient error, as a load balancer's deletion takes a moment to free
// its groups.
func (p *Provider) deleteBalancerGroup(ctx context.Context, arn string) error {
	err := p.calls.Call(ctx, "DeleteTargetGroup", func(ctx context.Context) error {
		_, err := p.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(arn)})
		return err
	})
	var inUse *types.ResourceInUseException
	switch {
	case errors.As(err, &inUse) || codeOf(err) == "ResourceInUse":
		return providers.Errorf(providers.Transient, "", "target group %s is still in use; deleting it again later: %v", displayName(arn), err)
	case providers.ClassOf(err) == providers.NotFound:
		return nil
	}
	p.invalidate(arn)
	return err
}

func (p *Provider) deleteALB(ctx context.Context, arn string) error {
	err := p.calls.Call(ctx, "DeleteLoadBalancer", func(ctx context.Context) error {
		_, err := p.elb.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(arn)})
		return err
	})
	if providers.ClassOf(err) == providers.NotFound {
		return nil
	}
	return err
}

// DeleteHTTP implements providers.HTTPBalancers: podlb's rules, then its
// listeners, the load balancer, then its target groups, each only after
// its tags say it is podlb's for this cluster and key. A listener that
// carries rules podlb did not create stays (with a fixed 404 default, so
// the groups can go) and so does the load balancer, with any group such
// a rule or listener still uses; the *providers.KeptError then names the
// rules and listeners that keep them.
func (p *Provider) DeleteHTTP(ctx context.Context, cluster string, key providers.BalancerKey) error {
	return p.deleteBalancer(ctx, balancerOwner{cluster: cluster, key: key}, BalancerName(cluster, key))
}

// deleteBalancer deletes owner's load balancer of that name with its
// listeners and target groups, as DeleteHTTP says.
func (p *Provider) deleteBalancer(ctx context.Context, owner balancerOwner, name string) error {
	alb, err := p.describeALB(ctx, name)
	if err != nil {
		return err
	}
	var kept []string
	if alb != nil {
		albArn := aws.ToString(alb.LoadBalancerArn)
		tags, err := p.tags(ctx, albArn)
		if err != nil {
			return err
		}
		if owner.owns(tags) {
			if kept, err = p.deleteListeners(ctx, owner, albArn); err != nil {
				return err
			}
			if len(kept) == 0 {
				if err := p.deleteALB(ctx, albArn); err != nil {
					return err
				}
			}
		}
	}
	var inUse []string
	err = p.eachGroupTags(ctx, func(arn string, tags map[string]string) error {
		if !owner.owns(tags) {
			return nil
		}
		err := p.deleteBalancerGroup(ctx, arn)
		if err != nil && providers.ClassOf(err) == providers.Transient {
			inUse = append(inUse, displayName(arn))
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(kept) > 0 {
		// podlb's own rules and listeners are gone, so only what someone
		// else created can still use these groups: they stay too.
		out := []string{fmt.Sprintf("load balancer %s: %s", name, strings.Join(kept, "; "))}
		for _, g := range inUse {
			out = append(out, "target group "+g+", in use by a listener or rule podlb did not create")
		}
		return providers.Kept(out)
	}
	if len(inUse) > 0 {
		return providers.Errorf(providers.Transient, "", "target groups still in use, deleting them again later: %s", strings.Join(inUse, ", "))
	}
	return nil
}

// deleteListeners deletes podlb's rules and listeners of a load balancer
// and says what it had to keep: listeners and rules podlb did not create,
// and podlb's listeners that carry such rules.
func (p *Provider) deleteListeners(ctx context.Context, owner balancerOwner, albArn string) ([]string, error) {
	listeners, err := p.balancerListeners(ctx, albArn)
	if err != nil {
		return nil, err
	}
	var kept []string
	for _, port := range slices.Sorted(maps.Keys(listeners)) {
		tl := listeners[port]
		arn := aws.ToString(tl.l.ListenerArn)
		what := fmt.Sprintf("listener %s:%d", tl.l.Protocol, port)
		if !owner.owns(tl.tags) {
			kept = append(kept, what+" was not created by podlb")
			continue
		}
		rules, err := p.listenerRules(ctx, arn)
		if err != nil {
			return nil, err
		}
		var foreign []string
		for _, r := range rules {
			if !owner.owns(r.tags) {
				foreign = append(foreign, fmt.Sprintf("priority %d: %s", r.priority, aws.ToString(r.r.RuleArn)))
				continue
			}
			if err := p.deleteRule(ctx, aws.ToString(r.r.RuleArn)); err != nil {
				return nil, err
			}
		}
		if len(foreign) == 0 {
			if err := p.deleteListener(ctx, arn); err != nil {
				return nil, err
			}
			continue
		}
		kept = append(kept, fmt.Sprintf("%s carries rules podlb did not create (%s)", what, strings.Join(foreign, ", ")))
		if len(tl.l.DefaultActions) != 1 || !sameAction(tl.l.DefaultActions[0], fixed404()) {
			err := p.calls.Call(ctx, "ModifyListener", func(ctx context.Context) error {
				_, err := p.elb.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(arn), DefaultActions: []types.Action{fixed404()}})
				return err
			})
			if err != nil && providers.ClassOf(err) != providers.NotFound {
				return nil, err
			}
		}
	}
	return kept, nil
}

// tagsOf describes the tags of arns in chunks of 20 (the API's limit), by
// ARN.
func (p *Provider) tagsOf(ctx context.Context, arns []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, chunk := range providers.Batches(arns, 20) {
		var res *elbv2.DescribeTagsOutput
		err := p.calls.Call(ctx, "DescribeTags", func(ctx context.Context) (err error) {
			res, err = p.elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: chunk})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, d := range res.TagDescriptions {
			tags := map[string]string{}
			for _, t := range d.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			out[aws.ToString(d.ResourceArn)] = tags
		}
	}
	return out, nil
}

// addTags adds the annotation's tags a resource lacks or has with another
// value. A tag the annotation no longer names stays: nothing records
// whether it came from the annotation or from someone else.
func (p *Provider) addTags(ctx context.Context, arn string, have, want map[string]string) error {
	add := map[string]string{}
	for k, v := range want {
		if cur, ok := have[k]; !ok || cur != v {
			add[k] = v
		}
	}
	if len(add) == 0 {
		return nil
	}
	err := p.calls.Call(ctx, "AddTags", func(ctx context.Context) error {
		_, err := p.elb.AddTags(ctx, &elbv2.AddTagsInput{ResourceArns: []string{arn}, Tags: tagList(add)})
		return err
	})
	return providers.WithField("tags", err)
}

func tagMap(tags []types.Tag) map[string]string {
	out := make(map[string]string, len(tags))
	for _, t := range tags {
		out[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return out
}

func tagList(tags map[string]string) []types.Tag {
	out := make([]types.Tag, 0, len(tags))
	for _, k := range sortedKeys(tags) {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

// codeOf is the cloud's error code of err, "" when it has none.
func codeOf(err error) string {
	var ce *providers.CloudError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// codeFields name the annotation field behind a cloud refusal of the
// load balancer's settings.
var codeFields = map[string]string{
	"AllocationIdNotFound": "elasticIps",
	"CertificateNotFound":  "certificateArns",
	"TooManyCertificates":  "certificateArns",
	"SSLPolicyNotFound":    "sslPolicy",
	"SubnetNotFound":       "subnets",
	"InvalidSubnet":        "subnets",
	"InvalidSecurityGroup": "securityGroups",
	"InvalidScheme":        "scheme",
}

// fieldOfCode makes a refusal about one annotation field an Invalid error
// naming it.
func fieldOfCode(err error) error {
	if field, ok := codeFields[codeOf(err)]; ok {
		return &providers.Error{Class: providers.Invalid, Field: field, Err: err}
	}
	return err
}

// balancerGroup resolves the group of a load balancer's backend for the
// backend's binding, after its tags say it is podlb's for that balancer in
// this cluster.
func (p *Provider) balancerGroup(ctx context.Context, bg *BalancerGroup) (*types.TargetGroup, error) {
	tg, err := p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{bg.ARN}}, "balancer")
	if err != nil {
		return nil, err
	}
	tags, err := p.tags(ctx, bg.ARN)
	if err != nil {
		return nil, providers.WithField("balancer", err)
	}
	if tags[TagCluster] != p.opts.Cluster || tags[TagBalancer] != bg.Balancer {
		return nil, providers.Errorf(providers.Invalid, "balancer", "target group %s is not tagged as podlb's for load balancer %s of cluster %s", displayName(bg.ARN), bg.Balancer, p.opts.Cluster)
	}
	return tg, nil
}
