package aws

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
)

var _ providers.OwnedLister = (*Provider)(nil)

// tagOwner reads the binding a podlb-created group's tags name, with the
// cluster they name; ok is false for groups podlb did not create.
func tagOwner(tags map[string]string) (cluster string, key providers.BindingKey, ok bool) {
	cluster = tags[TagCluster]
	port, err := strconv.ParseInt(tags[TagPort], 10, 32)
	if cluster == "" || tags[TagNamespace] == "" || tags[TagService] == "" || err != nil {
		return "", providers.BindingKey{}, false
	}
	return cluster, providers.BindingKey{Namespace: tags[TagNamespace], Service: tags[TagService], Provider: "aws", Port: int32(port)}, true
}

// refuseOwnedByAnother rejects a group named by ARN or name that podlb
// created for another Service port (or another cluster): registering into
// it would make two bindings fight over one group, and its owner deletes
// it when that Service goes. The error names the owner.
func (p *Provider) refuseOwnedByAnother(readTags func() (map[string]string, error), tg *types.TargetGroup, field string, key providers.BindingKey) error {
	tags, err := readTags()
	if err != nil {
		return providers.WithField(field, err)
	}
	if p.notOwnedByAnother(tags, key) {
		return nil
	}
	cluster, owner, _ := tagOwner(tags)
	return providers.Errorf(providers.Invalid, field, "target group %s was created by podlb for cluster %s, Service %s/%s port %d; podlb will not register into a group another Service owns: bind that group only there, or use create for a group of this Service's own",
		aws.ToString(tg.TargetGroupName), cluster, owner.Namespace, owner.Service, owner.Port)
}

// notOwnedByAnother reports whether tags leave a group free for key to
// bind: not podlb's, or podlb's for this very binding.
func (p *Provider) notOwnedByAnother(tags map[string]string, key providers.BindingKey) bool {
	cluster, owner, ok := tagOwner(tags)
	return !ok || (cluster == p.opts.Cluster && owner == key)
}

// OwnedGroups implements providers.OwnedLister: every target group tagged
// as podlb's for this cluster.
func (p *Provider) OwnedGroups(ctx context.Context) ([]providers.OwnedGroup, error) {
	var owned []providers.OwnedGroup
	err := p.eachGroupTags(ctx, func(arn string, tags map[string]string) error {
		if cluster, key, ok := tagOwner(tags); ok && cluster == p.opts.Cluster {
			owned = append(owned, providers.OwnedGroup{Key: key, Ref: arn})
		}
		return nil
	})
	return owned, err
}

// eachGroupTags calls fn with every target group of the account and its
// tags, found with paginated DescribeTargetGroups and DescribeTags in
// chunks of 20 ARNs (the API's limit). It stops at fn's first error.
func (p *Provider) eachGroupTags(ctx context.Context, fn func(arn string, tags map[string]string) error) error {
	var arns []string
	var marker *string
	for {
		var out *elbv2.DescribeTargetGroupsOutput
		err := p.calls.Call(ctx, "DescribeTargetGroups", func(ctx context.Context) (err error) {
			out, err = p.elb.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Marker: marker, PageSize: aws.Int32(400)})
			return err
		})
		if err != nil {
			return err
		}
		for _, tg := range out.TargetGroups {
			arns = append(arns, aws.ToString(tg.TargetGroupArn))
		}
		if aws.ToString(out.NextMarker) == "" {
			break
		}
		marker = out.NextMarker
	}
	for _, chunk := range providers.Batches(arns, 20) {
		tags, err := p.tagsOf(ctx, chunk)
		if providers.ClassOf(err) == providers.NotFound {
			// A group of the chunk went in between; its neighbours are
			// looked at next time.
			continue
		}
		if err != nil {
			return err
		}
		for _, arn := range chunk {
			if t, ok := tags[arn]; ok {
				if err := fn(arn, t); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// inUseError explains why an owned group cannot be deleted: which load
// balancers, listeners and rules forward to it. Finding them is best
// effort; without them the message still says what to do.
func (p *Provider) inUseError(ctx context.Context, arn string) error {
	where := ""
	if users := p.forwardersOf(ctx, arn); len(users) > 0 {
		where = " (" + strings.Join(users, "; ") + ")"
	}
	return providers.Errorf(providers.Invalid, "", "%s is still used by a load balancer%s: remove the listener's forward to %s so podlb can delete it", displayName(arn), where, displayName(arn))
}

// forwardersOf describes every listener and rule that forwards to arn, as
// "net/nlb/0123 listener TCP:80 default action".
func (p *Provider) forwardersOf(ctx context.Context, arn string) []string {
	tg, err := p.describeGroup(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{arn}}, "")
	if err != nil {
		return nil
	}
	var out []string
	for _, lbArn := range tg.LoadBalancerArns {
		lb := loadBalancerDisplay(lbArn)
		var listeners *elbv2.DescribeListenersOutput
		err := p.calls.Call(ctx, "DescribeListeners", func(ctx context.Context) (err error) {
			listeners, err = p.elb.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(lbArn)})
			return err
		})
		if err != nil {
			out = append(out, lb)
			continue
		}
		found := false
		for _, l := range listeners.Listeners {
			name := fmt.Sprintf("%s listener %s:%d", lb, l.Protocol, aws.ToInt32(l.Port))
			for _, r := range p.rulesForwardingTo(ctx, aws.ToString(l.ListenerArn), l.DefaultActions, arn) {
				out = append(out, name+" "+r)
				found = true
			}
		}
		if !found {
			out = append(out, lb)
		}
	}
	return out
}

// rulesForwardingTo names the rules of a listener that forward to arn: its
// default action and any rule by priority. Without DescribeRules, the
// listener's default actions are all there is to go by.
func (p *Provider) rulesForwardingTo(ctx context.Context, listenerArn string, defaults []types.Action, arn string) []string {
	var rules *elbv2.DescribeRulesOutput
	err := p.calls.Call(ctx, "DescribeRules", func(ctx context.Context) (err error) {
		rules, err = p.elb.DescribeRules(ctx, &elbv2.DescribeRulesInput{ListenerArn: aws.String(listenerArn)})
		return err
	})
	if err != nil {
		if forwardsTo(defaults, arn) {
			return []string{"default action"}
		}
		return nil
	}
	var out []string
	for _, r := range rules.Rules {
		if !forwardsTo(r.Actions, arn) {
			continue
		}
		if aws.ToBool(r.IsDefault) {
			out = append(out, "default action")
		} else {
			out = append(out, "rule priority "+aws.ToString(r.Priority))
		}
	}
	return out
}

func forwardsTo(actions []types.Action, arn string) bool {
	for _, a := range actions {
		if aws.ToString(a.TargetGroupArn) == arn {
			return true
		}
		if a.ForwardConfig != nil {
			for _, t := range a.ForwardConfig.TargetGroups {
				if aws.ToString(t.TargetGroupArn) == arn {
					return true
				}
			}
		}
	}
	return false
}

// loadBalancerDisplay shortens a load balancer ARN to "net/NAME/ID".
func loadBalancerDisplay(arn string) string {
	if i := strings.Index(arn, ":loadbalancer/"); i >= 0 {
		return arn[i+len(":loadbalancer/"):]
	}
	return arn
}
