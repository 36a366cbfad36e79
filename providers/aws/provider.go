package aws

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/podlb/podlb/providers"
)

// Options configure the AWS provider.
type Options struct {
	// Cluster is the --cluster-name, part of ownership tags.
	Cluster string
	Region  string
	// VPCID is the cluster's VPC: groups in another VPC are rejected.
	// Empty accepts any VPC.
	VPCID string
	// ELBv2Endpoint and EC2Endpoint override the service endpoints.
	ELBv2Endpoint string
	EC2Endpoint   string
	// Credentials override the default credential chain.
	Credentials aws.CredentialsProvider
	// BatchSize is the most targets per RegisterTargets or
	// DeregisterTargets call.
	BatchSize int
	// Limits are client-side token buckets per ELBv2/EC2 operation; "*"
	// covers operations not listed.
	Limits map[string]providers.Limit
	// MaxAttempts is the SDK retryer's attempts per call (throttling and
	// 5xx are retried with backoff).
	MaxAttempts int
	// GroupCacheTTL is how long a resolved group is trusted before it is
	// described again (listeners come and go).
	GroupCacheTTL time.Duration

	// clock times the group cache; tests step a fake one rather than
	// sleep through the TTL, so a slow machine cannot expire an entry
	// twice.
	clock clock.PassiveClock
	// httpClient makes the calls; tests record them here.
	httpClient aws.HTTPClient
}

// DefaultLimits stay under ELBv2's per-account buckets (register +
// deregister share 20 burst / 4 per second; Describe* 40 / 10) with room
// for other tools in the same account.
func DefaultLimits() map[string]providers.Limit {
	return map[string]providers.Limit{
		// Load balancers: CreateLoadBalancer and DeleteLoadBalancer share
		// a bucket of 10 refilled at 0.2 per second.
		"CreateLoadBalancer": {QPS: 0.1, Burst: 3},
		"DeleteLoadBalancer": {QPS: 0.1, Burst: 3},
		// Describe* of load balancers, listeners, rules and certificates
		// share the 40 / 10 describe bucket with the target calls above.
		"DescribeLoadBalancers":          {QPS: 2, Burst: 10},
		"DescribeLoadBalancerAttributes": {QPS: 1, Burst: 5},
		"DescribeListeners":              {QPS: 2, Burst: 10},
		"DescribeRules":                  {QPS: 2, Burst: 10},
		"DescribeListenerCertificates":   {QPS: 1, Burst: 5},
		// Every other mutation shares a bucket of 20 refilled at 3 per
		// second; rules change most (a route edit), listeners rarely.
		"CreateRule":                   {QPS: 1, Burst: 10},
		"ModifyRule":                   {QPS: 1, Burst: 10},
		"DeleteRule":                   {QPS: 1, Burst: 10},
		"SetRulePriorities":            {QPS: 0.5, Burst: 5},
		"CreateListener":               {QPS: 0.5, Burst: 5},
		"ModifyListener":               {QPS: 0.5, Burst: 5},
		"DeleteListener":               {QPS: 0.5, Burst: 5},
		"AddListenerCertificates":      {QPS: 0.5, Burst: 5},
		"RemoveListenerCertificates":   {QPS: 0.5, Burst: 5},
		"ModifyLoadBalancerAttributes": {QPS: 0.5, Burst: 5},
		// Target groups and targets.
		// One bucket for RegisterTargets and DeregisterTargets, as ELBv2
		// counts them (see New), as large as the account's (4/s, burst
		// 20): a rollout is bound by it, and two separate buckets of
		// 2/s each would allow as much in a rolling update while halving
		// a scale-up. Tools sharing the account then see throttling,
		// which podlb backs off from quietly; lower it with
		// --aws-rate-limits to leave them room.
		"RegisterTargets":      {QPS: 4, Burst: 20},
		"DescribeTargetHealth": {QPS: 5, Burst: 20},
		// Group and tag look-ups carry 20 groups a call and are renewed
		// twenty at a time, so they are few in steady state (about 15
		// a minute at 1,000 groups); at start-up a thousand groups take
		// 50 of each, which 3/s after a burst of 20 gets through in about
		// ten seconds. With health reads that stays near the account's
		// 10/s for those seconds only.
		"DescribeTargetGroups":          {QPS: 3, Burst: 20},
		"DescribeTargetGroupAttributes": {QPS: 2, Burst: 10},
		"DescribeTags":                  {QPS: 3, Burst: 20},
		"DescribeVpcs":                  {QPS: 1, Burst: 5},
		"CreateTargetGroup":             {QPS: 1, Burst: 5},
		"DeleteTargetGroup":             {QPS: 1, Burst: 5},
		"ModifyTargetGroup":             {QPS: 1, Burst: 5},
		"ModifyTargetGroupAttributes":   {QPS: 1, Burst: 5},
		"*":                             {QPS: 1, Burst: 5},
	}
}

// HoldWrite implements providers.WriteHolder: Apply registers first.
func (p *Provider) HoldWrite(ctx context.Context, plan providers.Plan) (context.Context, error) {
	return p.calls.HoldPlan(ctx, plan, "RegisterTargets", "DeregisterTargets")
}

// ec2Calls are the EC2 operations podlb makes. Holding them rather than
// the client keeps the client's type out of Provider's: a type reachable
// from one used as an interface keeps every exported method in a binary
// that uses reflection, and EC2's hundreds of operations are about 19 MB
// of code, resident in every controller.
type ec2Calls struct {
	DescribeVpcs    func(context.Context, *ec2.DescribeVpcsInput, ...func(*ec2.Options)) (*ec2.DescribeVpcsOutput, error)
	DescribeSubnets func(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
}

// Provider implements providers.Provider for ELBv2.
type Provider struct {
	opts  Options
	elb   *elbv2.Client
	ec2   ec2Calls
	calls *providers.Caller

	// Look-ups batched across bindings: many per call at start-up.
	groupsByARN, groupsByName *providers.Batcher[string, types.TargetGroup]
	tagsByARN                 *providers.Batcher[string, map[string]string]

	mu         sync.Mutex
	refreshing sync.Mutex
	groups     map[providers.BindingKey]*cachedGroup
	vpcs       map[string]*vpcNetworks
	vpcReads   singleflight.Group
	vpcTried   map[string]time.Time
	// drains caches each group's deregistration delay, read off the
	// binding's first pass (see drain).
	drains   map[string]int64
	fetching map[string]bool
}

type cachedGroup struct {
	spec    string
	group   *providers.Group
	expires time.Time
	// kind is how the spec names the group (arn, name, create or
	// balancer); seen is a digest of the description it was resolved
	// from, 0 when unknown. Together they let refreshDue renew the entry
	// from a batched description (see there).
	kind string
	seen uint64
}

// New builds the provider. Without explicit credentials it uses the
// standard AWS credential chain (IRSA, Pod Identity, environment).
func New(ctx context.Context, o Options) (*Provider, error) {
	if o.Cluster == "" {
		return nil, errors.New("aws: a cluster name is required")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 200
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.GroupCacheTTL <= 0 {
		o.GroupCacheTTL = 5 * time.Minute
	}
	if o.clock == nil {
		o.clock = clock.RealClock{}
	}
	limits := DefaultLimits()
	for op, l := range o.Limits {
		limits[op] = l
	}
	loadOpts := []func(*config.LoadOptions) error{
		config.WithRegion(o.Region),
		config.WithRetryer(func() aws.Retryer {
			// podlb's own token buckets pace calls; the SDK's retry quota
			// would only turn sustained throttling into hard failures.
			// Throttled calls come back to podlb, which retries them with
			// a token each (Caller.Retry).
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.RateLimiter = ratelimit.None
				so.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(notThrottled)}, so.Retryables...)
			})
		}),
	}
	if o.Credentials != nil {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(o.Credentials))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("aws: loading configuration: %w", err)
	}
	p := &Provider{
		opts:   o,
		calls:  providers.NewCaller("aws", limits, limits["*"], classify),
		groups: map[providers.BindingKey]*cachedGroup{},
		vpcs:   map[string]*vpcNetworks{},
		drains: map[string]int64{},

		vpcTried: map[string]time.Time{},
	}
	p.calls.Retry(o.MaxAttempts, nil)
	// ELBv2 throttles RegisterTargets and DeregisterTargets from one
	// bucket per account; a rollout that only registers (a scale-up) can
	// then use all of podlb's share.
	if _, own := o.Limits["DeregisterTargets"]; !own {
		p.calls.Share("RegisterTargets", "DeregisterTargets")
	}
	hold := func(op string) func(context.Context) (context.Context, error) {
		return func(ctx context.Context) (context.Context, error) { return p.calls.Hold(ctx, op) }
	}
	p.groupsByARN = &providers.Batcher[string, types.TargetGroup]{Max: lookupMax, Call: p.groupLookup(false), Hold: hold("DescribeTargetGroups")}
	p.groupsByName = &providers.Batcher[string, types.TargetGroup]{Max: lookupMax, Call: p.groupLookup(true), Hold: hold("DescribeTargetGroups")}
	p.tagsByARN = &providers.Batcher[string, map[string]string]{Max: lookupMax, Call: func(ctx context.Context, arns []string) (map[string]map[string]string, error) {
		return oneByOneOnNotFound(ctx, arns, p.describeTags)
	}, Hold: hold("DescribeTags")}
	// The configuration's client (with AWS_CA_BUNDLE's roots, say), or a
	// test's, makes the calls, handed bodies of its own (see ownBodies).
	httpClient := func(c aws.HTTPClient) aws.HTTPClient { return ownBodies{cmp.Or(o.httpClient, c)} }
	p.elb = elbv2.NewFromConfig(cfg, func(eo *elbv2.Options) {
		eo.HTTPClient = httpClient(eo.HTTPClient)
		if o.ELBv2Endpoint != "" {
			eo.BaseEndpoint = aws.String(o.ELBv2Endpoint)
		}
	})
	ec2Client := ec2.NewFromConfig(cfg, func(eo *ec2.Options) {
		eo.HTTPClient = httpClient(eo.HTTPClient)
		if o.EC2Endpoint != "" {
			eo.BaseEndpoint = aws.String(o.EC2Endpoint)
		}
	})
	p.ec2 = ec2Calls{DescribeVpcs: ec2Client.DescribeVpcs, DescribeSubnets: ec2Client.DescribeSubnets}
	return p, nil
}

// notThrottled keeps the SDK from retrying a throttled call itself.
func notThrottled(err error) aws.Ternary {
	if (retry.ThrottleErrorCode{Codes: retry.DefaultThrottleErrorCodes}).IsErrorThrottle(err) == aws.TrueTernary {
		return aws.FalseTernary
	}
	return aws.UnknownTernary
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return "aws" }

// AnnotationKey implements providers.Provider.
func (p *Provider) AnnotationKey() string { return AnnotationKey }

// ParseSpec implements providers.Provider.
func (p *Provider) ParseSpec(raw json.RawMessage) (providers.Spec, error) {
	s, err := ParseSpec(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ensure implements providers.Provider.
func (p *Provider) Ensure(ctx context.Context, b *providers.Binding) (*providers.Group, error) {
	spec := b.Spec.(*Spec)
	summary := spec.Summary() + "|" + b.Protocol
	p.mu.Lock()
	c := p.groups[b.Key]
	p.mu.Unlock()
	if c != nil && c.spec == summary && c.group.Serving && c.seen != 0 && !p.opts.clock.Now().Before(c.expires) {
		p.refreshDue(ctx, b.Key)
		p.mu.Lock()
		c = p.groups[b.Key]
		p.mu.Unlock()
	}
	// A group no load balancer uses is described again on every look, so
	// the gate notices a new listener promptly.
	if c != nil && c.spec == summary && c.group.Serving && p.opts.clock.Now().Before(c.expires) {
		if c.group.DrainSeconds == 0 {
			if d := p.drain(c.group.Ref); d != 0 {
				g := *c.group
				g.DrainSeconds = d
				withDrain := *c
				withDrain.group = &g
				c = &withDrain
				p.mu.Lock()
				p.groups[b.Key] = c
				p.mu.Unlock()
			}
		}
		return c.group, nil
	}
	var (
		tg      *types.TargetGroup
		err     error
		created bool
		field   string
		tags    func() (map[string]string, error)
	)
	switch {
	case spec.Balancer != nil:
		field = "balancer"
		tg, err = p.balancerGroup(ctx, spec.Balancer)
	case spec.ARN != "":
		field = "arn"
		// The tags are read beside the description, not after it: a
		// binding holds a worker while it waits for both.
		tags = p.tagsAsync(ctx, spec.ARN)
		tg, err = p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{spec.ARN}}, field)
	case spec.Name != "":
		field = "name"
		tg, err = p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{spec.Name}}, field)
	default:
		field = "create"
		tg, created, err = p.ensureOwned(ctx, b, spec.Create)
	}
	if err == nil && spec.Create == nil && spec.Balancer == nil {
		if tags == nil {
			tags = p.tagsAsync(ctx, aws.ToString(tg.TargetGroupArn))
		}
		err = p.refuseOwnedByAnother(tags, tg, field, b.Key)
	}
	if err != nil {
		return nil, err
	}
	if tg.TargetType != types.TargetTypeEnumIp {
		return nil, providers.Errorf(providers.Invalid, field, "target group %s has target type %s; podlb registers pod IPs and needs target type ip", aws.ToString(tg.TargetGroupName), tg.TargetType)
	}
	if p.opts.VPCID != "" && aws.ToString(tg.VpcId) != p.opts.VPCID {
		return nil, providers.Errorf(providers.Invalid, field, "target group %s is in %s, but this cluster runs in %s", aws.ToString(tg.TargetGroupName), aws.ToString(tg.VpcId), p.opts.VPCID)
	}
	if !protocolServes(string(tg.Protocol), b.Protocol) {
		return nil, providers.Errorf(providers.Invalid, field, "target group %s uses protocol %s, which cannot serve Service port %d/%s", aws.ToString(tg.TargetGroupName), tg.Protocol, b.Key.Port, b.Protocol)
	}
	drain := p.drain(aws.ToString(tg.TargetGroupArn))
	p.prefetchNetworks(aws.ToString(tg.VpcId))
	arn := aws.ToString(tg.TargetGroupArn)
	g := &providers.Group{
		Ref:          arn,
		Display:      displayName(arn),
		Owned:        spec.Create != nil || spec.Balancer != nil,
		Created:      created,
		Serving:      len(tg.LoadBalancerArns) > 0,
		DrainSeconds: drain,
		JudgeDelay:   judgeDelay(tg, aws.ToInt32(tg.HealthyThresholdCount), 5),
		FailDelay:    judgeDelay(tg, aws.ToInt32(tg.UnhealthyThresholdCount), 2),
		Status:       map[string]string{"arn": arn, "vpc": aws.ToString(tg.VpcId), "protocol": string(tg.Protocol)},
		Provider:     &groupState{arn: arn, vpc: aws.ToString(tg.VpcId)},
	}
	if !g.Serving {
		g.NotServingWhy = "no load balancer listener or rule forwards to it"
	}
	var seen uint64
	if field != "balancer" && !created {
		seen = groupDigest(tg)
	}
	p.mu.Lock()
	p.groups[b.Key] = &cachedGroup{spec: summary, group: g, expires: p.opts.clock.Now().Add(p.cacheTTL()), kind: field, seen: seen}
	p.mu.Unlock()
	return g, nil
}

// cacheTTL is a group's time in the cache, spread over a fifth of the TTL
// so groups resolved together at start-up do not expire together.
func (p *Provider) cacheTTL() time.Duration {
	return p.opts.GroupCacheTTL + time.Duration(rand.Int64N(int64(p.opts.GroupCacheTTL/5)+1))
}

// groupDigest sums up everything Ensure decides from a description.
func groupDigest(tg *types.TargetGroup) uint64 {
	raw, err := json.Marshal(tg)
	if err != nil {
		return 0
	}
	h := fnv.New64a()
	h.Write(raw)
	return max(h.Sum64(), 1)
}

// refreshDue renews, with one DescribeTargetGroups and one DescribeTags
// call, the cache entries of up to 20 groups that are due (expired, or
// expiring within the spread of the TTL), key's first: each binding
// would otherwise describe its own group when its entry expires, a call
// per binding every TTL. An entry is renewed only when its group's
// description is unchanged and its tags still let the binding use it,
// which is all Ensure would decide from them; any other entry stays
// expired and its binding resolves its group in full. Only one refresh
// runs at a time; those that wait find their entry renewed or due.
func (p *Provider) refreshDue(ctx context.Context, key providers.BindingKey) {
	p.refreshing.Lock()
	defer p.refreshing.Unlock()
	now := p.opts.clock.Now()
	due := map[string][]providers.BindingKey{}
	var arns []string
	p.mu.Lock()
	if c := p.groups[key]; c == nil || now.Before(c.expires) {
		p.mu.Unlock()
		return // renewed by the refresh this one waited for
	}
	type candidate struct {
		key     providers.BindingKey
		arn     string
		expires time.Time
	}
	var cands []candidate
	soon := now.Add(p.opts.GroupCacheTTL / 5)
	for k, c := range p.groups {
		if k != key && c.seen != 0 && c.group.Serving && c.expires.Before(soon) {
			cands = append(cands, candidate{k, c.group.Ref, c.expires})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int { return a.expires.Compare(b.expires) })
	cands = append([]candidate{{key, p.groups[key].group.Ref, now}}, cands...)
	for _, c := range cands {
		if due[c.arn] == nil {
			if len(arns) == lookupMax {
				continue
			}
			arns = append(arns, c.arn)
		}
		due[c.arn] = append(due[c.arn], c.key)
	}
	p.mu.Unlock()

	groups, err := p.groupLookup(false)(ctx, arns)
	if err != nil {
		return
	}
	var found []string
	for _, arn := range arns {
		if _, ok := groups[arn]; ok {
			found = append(found, arn)
		}
	}
	tags := map[string]map[string]string{}
	if len(found) > 0 {
		if tags, err = oneByOneOnNotFound(ctx, found, p.describeTags); err != nil {
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for arn, keys := range due {
		tg, ok := groups[arn]
		digest := groupDigest(&tg)
		for _, k := range keys {
			c := p.groups[k]
			if c == nil || c.group.Ref != arn || !c.expires.Before(soon) {
				continue // resolved in full meanwhile
			}
			renewed := *c
			keep := ok && c.seen == digest && p.notOwnedByAnother(tags[arn], k)
			if c.kind == "create" {
				keep = keep && ownedBy(tags[arn], p.opts.Cluster, k)
			}
			if keep {
				renewed.expires = p.opts.clock.Now().Add(p.cacheTTL())
			} else {
				// Something changed: its binding resolves it in full,
				// without another refresh first.
				renewed.seen = 0
			}
			p.groups[k] = &renewed
		}
	}
}

// judgeDelay is how long the group needs to judge a target that changes:
// threshold (defaultThreshold when the group does not say) times its
// check interval (ELBv2's default 30 s). The healthy threshold judges a
// target that starts answering (ELBv2's default 5), the unhealthy one a
// target that stops (default 2).
func judgeDelay(tg *types.TargetGroup, threshold, defaultThreshold int32) time.Duration {
	interval := aws.ToInt32(tg.HealthCheckIntervalSeconds)
	if interval <= 0 {
		interval = 30
	}
	if threshold <= 0 {
		threshold = defaultThreshold
	}
	return time.Duration(interval*threshold) * time.Second
}

// groupState is what the provider keeps on a Group for its own use.
type groupState struct {
	arn string
	vpc string
}

func displayName(arn string) string {
	if i := strings.Index(arn, ":targetgroup/"); i >= 0 {
		return arn[i+1:]
	}
	return arn
}

// describeGroup describes one target group. Look-ups of one ARN or one
// name are batched with concurrent ones (see providers.Batcher).
func (p *Provider) describeGroup(ctx context.Context, in *elbv2.DescribeTargetGroupsInput, field string) (*types.TargetGroup, error) {
	var (
		tg    types.TargetGroup
		found bool
		err   error
	)
	switch {
	case len(in.TargetGroupArns) == 1 && len(in.Names) == 0:
		tg, found, err = p.groupsByARN.Get(ctx, in.TargetGroupArns[0])
	case len(in.Names) == 1 && len(in.TargetGroupArns) == 0:
		tg, found, err = p.groupsByName.Get(ctx, in.Names[0])
	default:
		var out *elbv2.DescribeTargetGroupsOutput
		if out, err = p.describeTargetGroups(ctx, in); err == nil && len(out.TargetGroups) > 0 {
			tg, found = out.TargetGroups[0], true
		}
	}
	if err != nil {
		return nil, providers.WithField(field, err)
	}
	if !found {
		return nil, providers.Errorf(providers.NotFound, field, "target group not found")
	}
	return &tg, nil
}

func (p *Provider) describeTargetGroups(ctx context.Context, in *elbv2.DescribeTargetGroupsInput) (out *elbv2.DescribeTargetGroupsOutput, err error) {
	err = p.calls.Call(ctx, "DescribeTargetGroups", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeTargetGroups(ctx, in)
		return err
	})
	return out, err
}

// lookupMax is the most ARNs or names per DescribeTargetGroups and
// DescribeTags call.
const lookupMax = 20

// groupLookup describes target groups by ARN or by name, many per call.
// ELBv2 fails the whole call when one of them does not exist, so such a
// batch is asked again one by one.
func (p *Provider) groupLookup(byName bool) func(ctx context.Context, keys []string) (map[string]types.TargetGroup, error) {
	one := func(ctx context.Context, keys []string) (map[string]types.TargetGroup, error) {
		in := &elbv2.DescribeTargetGroupsInput{TargetGroupArns: keys}
		if byName {
			in = &elbv2.DescribeTargetGroupsInput{Names: keys}
		}
		out, err := p.describeTargetGroups(ctx, in)
		if err != nil {
			return nil, err
		}
		res := make(map[string]types.TargetGroup, len(out.TargetGroups))
		for _, tg := range out.TargetGroups {
			k := aws.ToString(tg.TargetGroupArn)
			if byName {
				k = aws.ToString(tg.TargetGroupName)
			}
			res[k] = tg
		}
		return res, nil
	}
	return func(ctx context.Context, keys []string) (map[string]types.TargetGroup, error) {
		return oneByOneOnNotFound(ctx, keys, one)
	}
}

// oneByOneOnNotFound calls call with all keys, and when that fails
// because some key does not exist, with each key alone.
func oneByOneOnNotFound[V any](ctx context.Context, keys []string, call func(context.Context, []string) (map[string]V, error)) (map[string]V, error) {
	res, err := call(ctx, keys)
	if err == nil || len(keys) == 1 || providers.ClassOf(err) != providers.NotFound {
		return res, err
	}
	res = map[string]V{}
	for _, k := range keys {
		got, err := call(ctx, []string{k})
		switch {
		case providers.ClassOf(err) == providers.NotFound:
		case err != nil:
			return nil, err
		default:
			for kk, v := range got {
				res[kk] = v
			}
		}
	}
	return res, nil
}

// ensureOwned finds or creates the group podlb owns for a binding and
// brings its settings in line with the annotation.
func (p *Provider) ensureOwned(ctx context.Context, b *providers.Binding, c *CreateSpec) (*types.TargetGroup, bool, error) {
	if p.opts.VPCID == "" {
		return nil, false, providers.Errorf(providers.Invalid, "create", "creating target groups needs the controller's --aws-vpc-id")
	}
	name := OwnedName(p.opts.Cluster, b.Key)
	tg, err := p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{name}}, "create")
	switch {
	case err == nil:
		tags, err := p.tags(ctx, aws.ToString(tg.TargetGroupArn))
		if err != nil {
			return nil, false, err
		}
		if !ownedBy(tags, p.opts.Cluster, b.Key) {
			return nil, false, providers.Errorf(providers.Invalid, "create", "a target group named %s exists but is not tagged as podlb's for this Service port; podlb will not adopt it", name)
		}
		if err := p.alignSettings(ctx, tg, c, "create"); err != nil {
			return nil, false, err
		}
		return tg, false, nil
	case providers.ClassOf(err) != providers.NotFound:
		return nil, false, err
	}

	in := createInput(name, p.opts.VPCID, bindingPort(b), c, ownerTags(b.Cluster, b.Key))
	var out *elbv2.CreateTargetGroupOutput
	err = p.calls.Call(ctx, "CreateTargetGroup", func(ctx context.Context) (err error) {
		out, err = p.elb.CreateTargetGroup(ctx, in)
		return err
	})
	if err != nil {
		return nil, false, providers.WithField("create", err)
	}
	if len(out.TargetGroups) == 0 {
		return nil, false, providers.Errorf(providers.Transient, "create", "CreateTargetGroup returned no group")
	}
	tg = &out.TargetGroups[0]
	if c.DeregistrationDelaySeconds != nil {
		if err := p.setDrain(ctx, aws.ToString(tg.TargetGroupArn), *c.DeregistrationDelaySeconds, "create"); err != nil {
			return nil, true, err
		}
	}
	return tg, true, nil
}

// bindingPort is the port and protocol of the group created for a
// binding.
func bindingPort(b *providers.Binding) groupPort {
	port := b.TargetPort
	if port == 0 {
		// A named target port resolves per pod; every target carries its
		// own port, so the group's is only a default.
		port = b.Key.Port
	}
	proto := "TCP"
	if b.Protocol == "UDP" {
		proto = "UDP"
	}
	return groupPort{port: port, protocol: proto}
}

// groupPort is a created group's port and the protocol it gets when the
// annotation names none.
type groupPort struct {
	port     int32
	protocol string
}

// createInput describes a group podlb creates, tagged with owner and the
// annotation's tags.
func createInput(name, vpc string, gp groupPort, c *CreateSpec, owner map[string]string) *elbv2.CreateTargetGroupInput {
	proto := c.Protocol
	if proto == "" {
		proto = gp.protocol
	}
	in := &elbv2.CreateTargetGroupInput{
		Name:       aws.String(name),
		Protocol:   types.ProtocolEnum(proto),
		Port:       aws.Int32(gp.port),
		VpcId:      aws.String(vpc),
		TargetType: types.TargetTypeEnumIp,
	}
	tags := owner
	for k, v := range c.Tags {
		tags[k] = v
	}
	for _, k := range sortedKeys(tags) {
		in.Tags = append(in.Tags, types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	if hc := c.HealthCheck; hc != nil {
		if hc.Protocol != "" {
			in.HealthCheckProtocol = types.ProtocolEnum(hc.Protocol)
		}
		if hc.Port != "" {
			in.HealthCheckPort = aws.String(hc.Port)
		}
		if hc.Path != "" {
			in.HealthCheckPath = aws.String(hc.Path)
		}
		in.HealthCheckIntervalSeconds = hc.IntervalSeconds
		in.HealthCheckTimeoutSeconds = hc.TimeoutSeconds
		in.HealthyThresholdCount = hc.HealthyThreshold
		in.UnhealthyThresholdCount = hc.UnhealthyThreshold
		if hc.Matcher != "" {
			in.Matcher = &types.Matcher{HttpCode: aws.String(hc.Matcher)}
		}
	}
	return in
}

// alignSettings updates an owned group whose health check differs from
// the annotation, whose field c is (errors name field's children). It
// writes nothing when they agree, so steady state costs no mutations.
func (p *Provider) alignSettings(ctx context.Context, tg *types.TargetGroup, c *CreateSpec, field string) error {
	arn := aws.ToString(tg.TargetGroupArn)
	if hc := c.HealthCheck; hc != nil {
		in := &elbv2.ModifyTargetGroupInput{TargetGroupArn: aws.String(arn)}
		differs := false
		if hc.Protocol != "" && string(tg.HealthCheckProtocol) != hc.Protocol {
			in.HealthCheckProtocol, differs = types.ProtocolEnum(hc.Protocol), true
		}
		if hc.Port != "" && aws.ToString(tg.HealthCheckPort) != hc.Port {
			in.HealthCheckPort, differs = aws.String(hc.Port), true
		}
		if hc.Path != "" && aws.ToString(tg.HealthCheckPath) != hc.Path {
			in.HealthCheckPath, differs = aws.String(hc.Path), true
		}
		for _, f := range []struct {
			want *int32
			have *int32
			set  **int32
		}{
			{hc.IntervalSeconds, tg.HealthCheckIntervalSeconds, &in.HealthCheckIntervalSeconds},
			{hc.TimeoutSeconds, tg.HealthCheckTimeoutSeconds, &in.HealthCheckTimeoutSeconds},
			{hc.HealthyThreshold, tg.HealthyThresholdCount, &in.HealthyThresholdCount},
			{hc.UnhealthyThreshold, tg.UnhealthyThresholdCount, &in.UnhealthyThresholdCount},
		} {
			if f.want != nil && aws.ToInt32(f.have) != *f.want {
				*f.set, differs = f.want, true
			}
		}
		if hc.Matcher != "" && (tg.Matcher == nil || aws.ToString(tg.Matcher.HttpCode) != hc.Matcher) {
			in.Matcher, differs = &types.Matcher{HttpCode: aws.String(hc.Matcher)}, true
		}
		if differs {
			err := p.calls.Call(ctx, "ModifyTargetGroup", func(ctx context.Context) error {
				_, err := p.elb.ModifyTargetGroup(ctx, in)
				return err
			})
			if err != nil {
				return providers.WithField(field+".healthCheck", err)
			}
		}
	}
	if c.DeregistrationDelaySeconds != nil {
		cur, err := p.drainSeconds(ctx, arn)
		if err != nil {
			return err
		}
		if cur != int64(*c.DeregistrationDelaySeconds) {
			return p.setDrain(ctx, arn, *c.DeregistrationDelaySeconds, field)
		}
	}
	return nil
}

const drainAttribute = "deregistration_delay.timeout_seconds"

// drain returns the group's deregistration delay when known, and 0 while
// it is read in the background: it only serves the termination-grace
// warning, and reading it on the binding's first pass would cost one
// call per group before any target is registered.
func (p *Provider) drain(arn string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d, ok := p.drains[arn]; ok {
		return d
	}
	if p.fetching == nil {
		p.fetching = map[string]bool{}
	}
	if !p.fetching[arn] {
		p.fetching[arn] = true
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d, err := p.drainSeconds(ctx, arn)
			p.mu.Lock()
			defer p.mu.Unlock()
			delete(p.fetching, arn)
			if err == nil {
				p.drains[arn] = d
			}
		}()
	}
	return 0
}

func (p *Provider) drainSeconds(ctx context.Context, arn string) (int64, error) {
	p.mu.Lock()
	d, ok := p.drains[arn]
	p.mu.Unlock()
	if ok {
		return d, nil
	}
	var out *elbv2.DescribeTargetGroupAttributesOutput
	err := p.calls.Call(ctx, "DescribeTargetGroupAttributes", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
		return err
	})
	if err != nil {
		return 0, err
	}
	d = 300
	for _, a := range out.Attributes {
		if aws.ToString(a.Key) == drainAttribute {
			d, _ = strconv.ParseInt(aws.ToString(a.Value), 10, 64)
		}
	}
	p.mu.Lock()
	p.drains[arn] = d
	p.mu.Unlock()
	return d, nil
}

func (p *Provider) setDrain(ctx context.Context, arn string, seconds int32, field string) error {
	err := p.calls.Call(ctx, "ModifyTargetGroupAttributes", func(ctx context.Context) error {
		_, err := p.elb.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{
			TargetGroupArn: aws.String(arn),
			Attributes:     []types.TargetGroupAttribute{{Key: aws.String(drainAttribute), Value: aws.String(strconv.Itoa(int(seconds)))}},
		})
		return err
	})
	if err == nil {
		p.mu.Lock()
		p.drains[arn] = int64(seconds)
		p.mu.Unlock()
	}
	return providers.WithField(field+".deregistrationDelaySeconds", err)
}

// tagsAsync starts reading arn's tags and returns the function that waits
// for them.
func (p *Provider) tagsAsync(ctx context.Context, arn string) func() (map[string]string, error) {
	type result struct {
		tags map[string]string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		tags, err := p.tags(ctx, arn)
		ch <- result{tags, err}
	}()
	return func() (map[string]string, error) {
		r := <-ch
		return r.tags, r.err
	}
}

func (p *Provider) tags(ctx context.Context, arn string) (map[string]string, error) {
	tags, found, err := p.tagsByARN.Get(ctx, arn)
	if err != nil {
		return nil, err
	}
	if !found {
		return map[string]string{}, nil
	}
	return tags, nil
}

// describeTags reads the tags of up to 20 resources in one call.
func (p *Provider) describeTags(ctx context.Context, arns []string) (map[string]map[string]string, error) {
	var out *elbv2.DescribeTagsOutput
	err := p.calls.Call(ctx, "DescribeTags", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: arns})
		return err
	})
	if err != nil {
		return nil, err
	}
	res := make(map[string]map[string]string, len(out.TagDescriptions))
	for _, d := range out.TagDescriptions {
		tags := map[string]string{}
		for _, t := range d.Tags {
			tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
		}
		res[aws.ToString(d.ResourceArn)] = tags
	}
	return res, nil
}

// Observe implements providers.Provider with one DescribeTargetHealth
// call for all targets of the group.
func (p *Provider) Observe(ctx context.Context, g *providers.Group) ([]providers.Observed, error) {
	st := g.Provider.(*groupState)
	var out *elbv2.DescribeTargetHealthOutput
	err := p.calls.Call(ctx, "DescribeTargetHealth", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(st.arn)})
		return err
	})
	if err != nil {
		if providers.ClassOf(err) == providers.NotFound {
			p.invalidate(st.arn)
		}
		return nil, err
	}
	obs := make([]providers.Observed, 0, len(out.TargetHealthDescriptions))
	for _, d := range out.TargetHealthDescriptions {
		if d.Target == nil {
			continue
		}
		ip, err := netip.ParseAddr(aws.ToString(d.Target.Id))
		if err != nil {
			continue // not an IP target; never ours
		}
		// The words the cloud repeats are shared: the observation is
		// kept until the next, and a copy per target would be kept
		// with it.
		o := providers.Observed{
			Target: providers.Target{IP: ip, Port: aws.ToInt32(d.Target.Port), Zone: providers.Intern(aws.ToString(d.Target.AvailabilityZone))},
			Group:  g.Display,
		}
		if d.TargetHealth != nil {
			o.CloudState = providers.Intern(string(d.TargetHealth.State))
			o.Reason = providers.Intern(string(d.TargetHealth.Reason))
		}
		o.State = mapState(o.CloudState)
		obs = append(obs, o)
	}
	return obs, nil
}

func mapState(s string) providers.State {
	switch types.TargetHealthStateEnum(s) {
	case types.TargetHealthStateEnumHealthy:
		return providers.Healthy
	case types.TargetHealthStateEnumUnhealthy:
		return providers.Unhealthy
	case types.TargetHealthStateEnumUnused:
		return providers.Unused
	case types.TargetHealthStateEnumUnhealthyDraining:
		// Unhealthy with connection termination off: still registered,
		// only its open connections are left to finish.
		return providers.Unhealthy
	case types.TargetHealthStateEnumDraining:
		return providers.Draining
	}
	// initial, unavailable and anything new: not serving yet.
	return providers.Pending
}

// Apply implements providers.Provider: every register batch first; only
// if none failed as a whole, the deregister batches. A batch the group
// refuses because of some of its targets is split until each refused
// target stands alone (see refusal); those come back as
// *providers.TargetErrors once everything else is applied.
func (p *Provider) Apply(ctx context.Context, g *providers.Group, plan providers.Plan) error {
	st := g.Provider.(*groupState)
	refused := map[providers.TargetKey]error{}
	if len(plan.Register) > 0 {
		nets, err := p.networks(ctx, st.vpc, plan.Register)
		if err != nil {
			return err
		}
		errs := p.isolate(plan.Register, refused, func(ts []providers.Target) error {
			return p.calls.Call(ctx, "RegisterTargets", func(ctx context.Context) error {
				_, err := p.elb.RegisterTargets(ctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(st.arn), Targets: describe(ts, nets)})
				return err
			})
		})
		if len(errs) > 0 {
			return firstClassified(errs, g.Display, "registering")
		}
	}
	errs := p.isolate(plan.Deregister, refused, func(ts []providers.Target) error {
		return p.calls.Call(ctx, "DeregisterTargets", func(ctx context.Context) error {
			_, err := p.elb.DeregisterTargets(ctx, &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(st.arn), Targets: describe(ts, nil)})
			return err
		})
	})
	if len(errs) > 0 {
		return firstClassified(errs, g.Display, "deregistering")
	}
	if len(refused) > 0 {
		return &providers.TargetErrors{Failed: refused}
	}
	return nil
}

// isolate sends ts in batches through call, isolating refused targets into
// refused; it returns the errors of calls that failed as a whole. A batch
// failing that way does not stop the next ones, so a pass under sporadic
// errors still makes progress.
func (p *Provider) isolate(ts []providers.Target, refused map[providers.TargetKey]error, call func([]providers.Target) error) []error {
	iso := &providers.Isolator{Apply: call, Judge: refusal, Refused: refused}
	var errs []error
	for _, batch := range providers.Batches(ts, p.opts.BatchSize) {
		if err := iso.Run(batch, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// refusal reads a RegisterTargets or DeregisterTargets error. ELBv2 fails
// the whole call for one bad target: InvalidTarget (not a target of this
// VPC, a publicly routable IP), ValidationError (an IPv6 address in an
// IPv4 group, an IP outside the VPC without AvailabilityZone all, an IP of
// the VPC in no subnet without a zone) and TooManyRegistrationsForTargetId
// (that target is registered too often) are about targets, TooManyTargets
// about the group's room. Anything else, AccessDenied included, is about
// the call.
func refusal(err error) providers.Refusal {
	var ce *providers.CloudError
	if !errors.As(err, &ce) {
		return providers.WholeCall
	}
	switch ce.Code {
	case "InvalidTarget", "ValidationError", "TooManyRegistrationsForTargetId":
		return providers.SomeTargets
	case "TooManyTargets":
		return providers.GroupFull
	}
	return providers.WholeCall
}

// firstClassified keeps the class of the first failed batch and the text
// of all of them.
func firstClassified(errs []error, group, verb string) error {
	rest := ""
	for _, e := range errs[1:] {
		rest += "; " + e.Error()
	}
	// The first error stays in the chain, so its cloud code can be read.
	return providers.Errorf(providers.ClassOf(errs[0]), "", "%s targets of %s: %w%s", verb, group, errs[0], rest)
}

// describe turns targets into ELBv2 target descriptions, with the
// AvailabilityZone ELBv2 documents for ip targets
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_TargetDescription.html):
// none for an IP in a subnet of the group's VPC (its zone is detected),
// the pod's node zone for an IP inside the VPC's CIDRs but in no subnet,
// and "all" for an IP outside the VPC (a peered network, or loopback in
// the sandbox). nets is nil for deregistration, which needs no zone.
func describe(ts []providers.Target, nets *vpcNetworks) []types.TargetDescription {
	out := make([]types.TargetDescription, len(ts))
	for i, t := range ts {
		out[i] = types.TargetDescription{Id: aws.String(t.IP.String()), Port: aws.Int32(t.Port)}
		switch {
		case nets == nil || inAny(t.IP, nets.subnets):
		case !inAny(t.IP, nets.cidrs):
			out[i].AvailabilityZone = aws.String("all")
		case t.Zone != "":
			out[i].AvailabilityZone = aws.String(t.Zone)
		}
		// An IP inside the VPC but in no subnet, on a node of unknown
		// zone, goes without one; ELBv2 refuses that target alone.
	}
	return out
}

func inAny(ip netip.Addr, cidrs []netip.Prefix) bool {
	for _, c := range cidrs {
		if c.Contains(ip) {
			return true
		}
	}
	return false
}

// vpcNetworks are a VPC's CIDR blocks and subnet CIDRs.
type vpcNetworks struct {
	cidrs, subnets []netip.Prefix
	fetched        time.Time
}

// subnetRefreshAfter is how old the cached subnets must be before an IP
// inside the VPC but in none of them makes podlb read them again.
const subnetRefreshAfter = time.Minute

// networks returns the VPC's CIDRs and subnets, read once and kept: they
// change rarely. When one of ts is inside the VPC but in no known subnet
// (a subnet added since), the subnets are read again, at most once a
// minute; a stale answer only costs a refused registration, which is
// retried. Concurrent callers share one read (see readNetworks).
func (p *Provider) networks(ctx context.Context, vpc string, ts []providers.Target) (*vpcNetworks, error) {
	p.mu.Lock()
	n := p.vpcs[vpc]
	if n != nil && time.Since(n.fetched) >= subnetRefreshAfter {
		for _, t := range ts {
			if inAny(t.IP, n.cidrs) && !inAny(t.IP, n.subnets) {
				n = nil
				break
			}
		}
	}
	if n != nil {
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()
	select {
	case r := <-p.readNetworks(vpc):
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*vpcNetworks), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prefetchNetworks starts reading the VPC's networks when a group in it is
// resolved, so that its first registration does not wait for two EC2
// reads. A failed read is not retried here for a minute: the registration
// that needs the networks reads them itself and reports the failure.
func (p *Provider) prefetchNetworks(vpc string) {
	p.mu.Lock()
	skip := vpc == "" || p.vpcs[vpc] != nil || time.Since(p.vpcTried[vpc]) < subnetRefreshAfter
	p.mu.Unlock()
	if !skip {
		p.readNetworks(vpc)
	}
}

// readNetworks joins the VPC's read in flight or starts one, shared by
// whoever needs the networks meanwhile: at a rollout's start every group
// in the VPC registers at once, and DescribeVpcs' small budget would
// otherwise queue them. The read has its own deadline, so a caller giving
// up does not fail the others.
func (p *Provider) readNetworks(vpc string) <-chan singleflight.Result {
	return p.vpcReads.DoChan(vpc, func() (any, error) {
		p.mu.Lock()
		p.vpcTried[vpc] = time.Now()
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var cidrs []netip.Prefix
		var cidrErr error
		var wg sync.WaitGroup
		wg.Go(func() { cidrs, cidrErr = p.vpcCIDRs(ctx, vpc) })
		subnets, err := p.vpcSubnets(ctx, vpc)
		wg.Wait()
		if err = cmp.Or(cidrErr, err); err != nil {
			return nil, err
		}
		n := &vpcNetworks{cidrs: cidrs, subnets: subnets, fetched: time.Now()}
		p.mu.Lock()
		p.vpcs[vpc] = n
		p.mu.Unlock()
		return n, nil
	})
}

// vpcCIDRs reads the VPC's associated CIDR blocks.
func (p *Provider) vpcCIDRs(ctx context.Context, vpc string) ([]netip.Prefix, error) {
	var out *ec2.DescribeVpcsOutput
	err := p.calls.Call(ctx, "DescribeVpcs", func(ctx context.Context) (err error) {
		out, err = p.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{vpc}})
		return err
	})
	if err != nil {
		return nil, err
	}
	cidrs := []netip.Prefix{}
	for _, v := range out.Vpcs {
		for _, a := range v.CidrBlockAssociationSet {
			if a.CidrBlockState != nil && a.CidrBlockState.State != "associated" {
				continue
			}
			if pfx, err := netip.ParsePrefix(aws.ToString(a.CidrBlock)); err == nil {
				cidrs = append(cidrs, pfx)
			}
		}
		if len(v.CidrBlockAssociationSet) == 0 {
			if pfx, err := netip.ParsePrefix(aws.ToString(v.CidrBlock)); err == nil {
				cidrs = append(cidrs, pfx)
			}
		}
	}
	return cidrs, nil
}

// vpcSubnets reads the IPv4 CIDRs of every subnet of the VPC.
func (p *Provider) vpcSubnets(ctx context.Context, vpc string) ([]netip.Prefix, error) {
	found, err := p.describeSubnets(ctx, ec2types.Filter{Name: aws.String("vpc-id"), Values: []string{vpc}})
	var subnets []netip.Prefix
	for _, sn := range found {
		if pfx, err := netip.ParsePrefix(aws.ToString(sn.CidrBlock)); err == nil {
			subnets = append(subnets, pfx)
		}
	}
	return subnets, err
}

// describeSubnets reads every subnet matching filters, page by page in
// one limiter slot. The pages are followed by hand: the SDK's paginator
// needs the client itself, which the provider does not hold (see
// ec2Calls).
func (p *Provider) describeSubnets(ctx context.Context, filters ...ec2types.Filter) ([]ec2types.Subnet, error) {
	var found []ec2types.Subnet
	err := p.calls.Call(ctx, "DescribeSubnets", func(ctx context.Context) error {
		found = found[:0]
		in := &ec2.DescribeSubnetsInput{Filters: filters}
		for {
			out, err := p.ec2.DescribeSubnets(ctx, in)
			if err != nil {
				return err
			}
			found = append(found, out.Subnets...)
			if aws.ToString(out.NextToken) == "" {
				return nil
			}
			in.NextToken = out.NextToken
		}
	})
	return found, err
}

// Release implements providers.Provider.
func (p *Provider) Release(ctx context.Context, key providers.BindingKey, ref string, ours []providers.TargetKey) error {
	p.invalidate(ref)
	tags, err := p.tags(ctx, ref)
	if err != nil {
		if providers.ClassOf(err) == providers.NotFound {
			return nil
		}
		return err
	}
	if len(tags) == 0 {
		// DescribeTags answers unknown ARNs with no description at all.
		if _, err := p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{ref}}, ""); providers.ClassOf(err) == providers.NotFound {
			return nil
		}
	}
	// A load balancer's group goes with the load balancer (DeleteHTTP or
	// a removed backend); its binding only takes its targets out.
	if ownedBy(tags, p.opts.Cluster, key) && tags[TagBalancer] == "" {
		err := p.calls.Call(ctx, "DeleteTargetGroup", func(ctx context.Context) error {
			_, err := p.elb.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(ref)})
			return err
		})
		var inUse *types.ResourceInUseException
		if errors.As(err, &inUse) {
			return p.inUseError(ctx, ref)
		}
		if providers.ClassOf(err) == providers.NotFound {
			return nil
		}
		return err
	}
	if len(ours) == 0 {
		return nil
	}
	targets := make([]providers.Target, len(ours))
	for i, k := range ours {
		targets[i] = providers.Target{IP: k.IP, Port: k.Port}
	}
	providers.SortTargets(targets)
	g := &providers.Group{Ref: ref, Display: displayName(ref), Provider: &groupState{arn: ref}}
	err = p.Apply(ctx, g, providers.Plan{Deregister: targets})
	if _, refused := providers.AsTargetErrors(err); refused || providers.ClassOf(err) == providers.NotFound {
		// A target ELBv2 refuses to deregister (not an IPv4 address of
		// this VPC) cannot be in the group either.
		return nil
	}
	return err
}

func (p *Provider) invalidate(arn string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, c := range p.groups {
		if c.group.Ref == arn {
			delete(p.groups, k)
		}
	}
	delete(p.drains, arn)
}

// classify maps ELBv2 and EC2 error codes to podlb's classes.
func classify(op string, err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return providers.Classify(providers.Transient, "", err)
	}
	err = &providers.CloudError{Op: op, Code: ae.ErrorCode(), Message: ae.ErrorMessage(), Err: err}
	switch ae.ErrorCode() {
	case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "PriorRequestNotComplete":
		return providers.Classify(providers.Throttled, "", err)
	case "TargetGroupNotFound", "LoadBalancerNotFound", "InvalidVpcID.NotFound", "InvalidSubnetID.NotFound", "ListenerNotFound", "RuleNotFound":
		return providers.Classify(providers.NotFound, "", err)
	case "InvalidTarget", "TooManyTargets", "TooManyRegistrationsForTargetId", "ValidationError",
		"InvalidConfigurationRequest", "DuplicateTargetGroupName", "TooManyTags", "TooManyTargetGroups",
		"ResourceInUse", "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "DuplicateTagKeys",
		"InvalidVpcID.Malformed", "InvalidSubnetID.Malformed":
		return providers.Classify(providers.Invalid, "", err)
	case "CertificateNotFound", "SSLPolicyNotFound", "SubnetNotFound", "InvalidSubnet", "InvalidSecurityGroup",
		"InvalidScheme", "DuplicateLoadBalancerName", "DuplicateListener", "UnsupportedProtocol", "IncompatibleProtocols",
		"InvalidLoadBalancerAction", "TargetGroupAssociationLimit", "OperationNotPermitted", "TooManyLoadBalancers",
		"TooManyListeners", "TooManyRules", "TooManyActions", "TooManyCertificates", "TooManyUniqueTargetGroupsPerLoadBalancer":
		// Load balancer settings the cloud refuses until someone changes
		// them. PriorityInUse is a race with another writer: transient.
		return providers.Classify(providers.Invalid, "", err)
	}
	return providers.Classify(providers.Transient, "", err)
}
