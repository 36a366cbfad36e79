package aws

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/podlb/podlb/providers"
)

// Network Load Balancers for Services of type LoadBalancer: one NLB per
// balancer key, one listener per Service port (a port a Service exposes
// for both TCP and UDP is one TCP_UDP listener, a port in tlsPorts a TLS
// listener), each forwarding to a target group of its own whose pods the
// target bindings register.

var _ providers.L4Balancers = (*Provider)(nil)

// NetworkBalancerName is the deterministic name of the NLB podlb
// provisions for a Service's balancer key; its prefix keeps it apart from
// the ALB of an Ingress with the same key.
func NetworkBalancerName(cluster string, key providers.BalancerKey) string {
	return balancerName("pn-", cluster, key)
}

// NetworkGroupName is the deterministic name of the target group of one
// listener of an NLB: "pt-", the Service's readable prefix and a hash of
// cluster, key, backend and group protocol (which AWS cannot change, so a
// new protocol is a new group), within 32 characters.
func NetworkGroupName(cluster string, key providers.BalancerKey, backendID, protocol string) string {
	return "pt-" + namePart(backendService(backendID), 12) + "-" + nameHash(12, cluster, key.Namespace, key.Name, backendID, protocol)
}

// ParseL4Spec implements providers.L4Balancers.
func (p *Provider) ParseL4Spec(raw string) (any, error) {
	s, err := ParseNetworkLoadBalancerSpec(raw)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// nlbListener is one listener EnsureL4 wants.
type nlbListener struct {
	port int32
	// protocol of the listener: TCP, UDP, TCP_UDP or TLS; group is its
	// target group's (TCP behind TLS).
	protocol types.ProtocolEnum
	group    string
	backend  providers.L4Backend
	// serves are the L4Listeners it realises, as L4Result.Refused keys
	// them ("80/TCP").
	serves []string
}

// nlbPlan is what EnsureL4 computed from lb before touching anything.
type nlbPlan struct {
	*lbPlan
	listeners []nlbListener
	refused   map[string]string
}

func listenerKey(port int32, protocol string) string {
	return strconv.Itoa(int(port)) + "/" + protocol
}

// planNLB merges lb's listeners by port and checks them against the
// annotation, so a broken edit fails before anything changes.
func planNLB(lb *providers.L4Balancer) (*nlbPlan, error) {
	spec, err := balancerSpec(lb.Spec)
	if err != nil {
		return nil, err
	}
	owner := balancerOwner{cluster: lb.Cluster, key: lb.Key, typ: networkType}
	plan := &nlbPlan{
		lbPlan:  newLBPlan(owner, types.LoadBalancerTypeEnumNetwork, NetworkBalancerName(lb.Cluster, lb.Key), spec),
		refused: map[string]string{},
	}
	byPort := map[int32]*nlbListener{}
	for _, l := range lb.Listeners {
		key := listenerKey(l.Port, l.Protocol)
		if l.Protocol != "TCP" && l.Protocol != "UDP" {
			plan.refused[key] = fmt.Sprintf("a Network Load Balancer serves TCP and UDP, not %s", l.Protocol)
			continue
		}
		have := byPort[l.Port]
		switch {
		case have == nil:
			byPort[l.Port] = &nlbListener{port: l.Port, protocol: types.ProtocolEnum(l.Protocol), group: l.Protocol, backend: l.Backend, serves: []string{key}}
		case have.backend.ID() == l.Backend.ID() && string(have.protocol) != l.Protocol:
			// One Service port number for TCP and UDP is one backend,
			// one target group: AWS serves both on a TCP_UDP listener.
			have.protocol, have.group = types.ProtocolEnumTcpUdp, "TCP_UDP"
			have.serves = append(have.serves, key)
		default:
			plan.refused[key] = fmt.Sprintf("port %d already forwards %s to %s; a Network Load Balancer has one listener per port, and a TCP_UDP listener only serves one Service port", l.Port, have.protocol, have.backend.ID())
		}
	}
	tls := map[int32]bool{}
	for i, port := range spec.TLSPorts {
		field := fmt.Sprintf("tlsPorts[%d]", i)
		l := byPort[port]
		switch {
		case l == nil:
			return nil, providers.Errorf(providers.Invalid, field, "%d is not a TCP port of the load balancer", port)
		case l.protocol != types.ProtocolEnumTcp:
			return nil, providers.Errorf(providers.Invalid, field, "port %d serves %s; only a TCP port can be TLS", port, l.protocol)
		}
		tls[port] = true
	}
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		l := byPort[port]
		if tls[port] {
			l.protocol = types.ProtocolEnumTls
		}
		plan.listeners = append(plan.listeners, *l)
	}
	return plan, nil
}

// EnsureL4 implements providers.L4Balancers. It waits for nothing: a load
// balancer still provisioning is reported with its DNS name. Each listener
// is created, changed or deleted on its own, so one port's edit never
// interrupts another's traffic; a listener whose group protocol changes
// (TCP to TCP_UDP) moves to a new group in one ModifyListener.
func (p *Provider) EnsureL4(ctx context.Context, lb *providers.L4Balancer) (*providers.L4Result, error) {
	plan, err := planNLB(lb)
	if err != nil {
		return nil, err
	}
	nlb, err := p.ensureLoadBalancer(ctx, plan.lbPlan)
	if err != nil {
		return nil, err
	}
	nlbArn := aws.ToString(nlb.LoadBalancerArn)
	if cz := plan.spec.CrossZone; cz != nil {
		if err := p.alignLBAttribute(ctx, nlbArn, crossZoneAttribute, strconv.FormatBool(*cz), "crossZone"); err != nil {
			return nil, err
		}
	}
	existing, err := p.balancerListeners(ctx, nlbArn)
	if err != nil {
		return nil, err
	}
	attached, err := p.ownedAttachedGroups(ctx, nlbArn, plan.balancerOwner)
	if err != nil {
		return nil, err
	}
	byName := map[string]*taggedGroup{}
	for _, g := range attached {
		byName[aws.ToString(g.tg.TargetGroupName)] = g
	}
	res := &providers.L4Result{Specs: map[string]providers.Spec{}, Refused: plan.refused}
	wantPorts := map[int32]bool{}
	wantGroups := map[string]bool{}
	for _, l := range plan.listeners {
		wantPorts[l.port] = true
		have := existing[l.port]
		if have != nil && !plan.owns(have.tags) {
			why := fmt.Sprintf("port %d of load balancer %s is held by listener %s (%s), which podlb did not create and will not change", l.port, plan.name, aws.ToString(have.l.ListenerArn), have.l.Protocol)
			for _, k := range l.serves {
				res.Refused[k] = why
			}
			continue
		}
		arn, err := p.ensureNetworkGroup(ctx, plan, l, aws.ToString(nlb.VpcId), byName)
		if err != nil {
			return nil, err
		}
		wantGroups[arn] = true
		w := listenerWant{port: l.port, protocol: l.protocol, action: forwardAction(arn)}
		if l.protocol == types.ProtocolEnumTls {
			w.certs, w.policy = plan.spec.CertificateARNs, plan.spec.SSLPolicy
		}
		if have == nil {
			_, err = p.createListener(ctx, plan.balancerOwner, nlbArn, w)
		} else {
			err = p.alignListener(ctx, &have.l, w)
		}
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", listenerKey(l.port, string(l.protocol)), err)
		}
		res.Specs[l.backend.ID()] = &Spec{Balancer: &BalancerGroup{ARN: arn, Balancer: lb.Key.String()}}
	}
	for _, port := range slices.Sorted(maps.Keys(existing)) {
		if have := existing[port]; !wantPorts[port] && plan.owns(have.tags) {
			if err := p.deleteListener(ctx, aws.ToString(have.l.ListenerArn)); err != nil {
				return nil, err
			}
		}
	}
	// Only now does no listener of ours forward to a group nobody wants.
	for _, g := range attached {
		if arn := aws.ToString(g.tg.TargetGroupArn); !wantGroups[arn] {
			if err := p.deleteBalancerGroup(ctx, arn); err != nil && providers.ClassOf(err) != providers.Transient {
				return nil, err
			}
		}
	}
	res.Status = providers.BalancerStatus{
		Hostname: aws.ToString(nlb.DNSName),
		Details:  map[string]string{"loadBalancer": nlbArn, "scheme": string(nlb.Scheme)},
	}
	if nlb.State != nil {
		res.Status.Details["state"] = string(nlb.State.Code)
	}
	return res, nil
}

// ensureNetworkGroup finds (among the groups the load balancer uses, else
// by name) or creates the target group of a listener and aligns its
// settings with the annotation; it answers the group's ARN.
func (p *Provider) ensureNetworkGroup(ctx context.Context, plan *nlbPlan, l nlbListener, vpc string, attached map[string]*taggedGroup) (string, error) {
	be := l.backend
	id := be.ID()
	field, c := annotatedBackend(plan.spec, be.Service, be.Port, be.PortName)
	c.Protocol = l.group
	c.Tags = plan.spec.Tags
	name := NetworkGroupName(plan.cluster, plan.key, id, l.group)
	g := attached[name]
	if g == nil {
		var err error
		if g, err = p.findOrCreateBalancerGroup(ctx, plan.balancerOwner, name, id, vpc, groupPort{port: be.Port, protocol: l.group}, c, field); err != nil {
			return "", err
		}
	}
	arn := aws.ToString(g.tg.TargetGroupArn)
	if err := p.addTags(ctx, arn, g.tags, plan.spec.Tags); err != nil {
		return "", err
	}
	if err := p.alignSettings(ctx, g.tg, c, field); err != nil {
		return "", err
	}
	return arn, p.alignProxyProtocol(ctx, arn, plan.spec.ProxyProtocol)
}

const (
	crossZoneAttribute     = "load_balancing.cross_zone.enabled"
	proxyProtocolAttribute = "proxy_protocol_v2.enabled"
)

// alignProxyProtocol turns the group's PROXY v2 header on or off unless
// it already is.
func (p *Provider) alignProxyProtocol(ctx context.Context, arn string, on bool) error {
	var out *elbv2.DescribeTargetGroupAttributesOutput
	err := p.calls.Call(ctx, "DescribeTargetGroupAttributes", func(ctx context.Context) (err error) {
		out, err = p.elb.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
		return err
	})
	if err != nil {
		return err
	}
	want := strconv.FormatBool(on)
	for _, a := range out.Attributes {
		if aws.ToString(a.Key) == proxyProtocolAttribute && aws.ToString(a.Value) == want {
			return nil
		}
	}
	if !on && !slices.ContainsFunc(out.Attributes, func(a types.TargetGroupAttribute) bool { return aws.ToString(a.Key) == proxyProtocolAttribute }) {
		return nil
	}
	err = p.calls.Call(ctx, "ModifyTargetGroupAttributes", func(ctx context.Context) error {
		_, err := p.elb.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{
			TargetGroupArn: aws.String(arn),
			Attributes:     []types.TargetGroupAttribute{{Key: aws.String(proxyProtocolAttribute), Value: aws.String(want)}},
		})
		return err
	})
	return providers.WithField("proxyProtocol", err)
}

// DeleteL4 implements providers.L4Balancers: podlb's listeners, then the
// load balancer, then its target groups, each only after its tags say it
// is podlb's for this cluster's Service balancer of key. A listener podlb
// did not create stays, and so does the load balancer; the error then
// names the listener.
func (p *Provider) DeleteL4(ctx context.Context, cluster string, key providers.BalancerKey) error {
	return p.deleteBalancer(ctx, balancerOwner{cluster: cluster, key: key, typ: networkType}, NetworkBalancerName(cluster, key))
}
