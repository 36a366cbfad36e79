package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"google.golang.org/api/googleapi"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podlb/podlb/internal/emuclient"
	"github.com/podlb/podlb/loadbalancers"
)

// The Service apps: Services of type LoadBalancer with podlb's class, whose
// Network Load Balancer (AWS) and TCP proxy load balancer (GCP) podlb
// provisions; the traffic goes to the addresses podlb writes to
// status.loadBalancer.ingress.

// serviceLoadBalancers waits for podlb to provision the app's load
// balancer on every enabled cloud, serve its port and write the address
// to the Service's status.
func (s *sandbox) serviceLoadBalancers(ctx context.Context, a *app) (map[string]*loadBalancer, error) {
	return s.waitLoadBalancers(ctx, "Service "+a.name, func(ctx context.Context) (map[string]*loadBalancer, string) {
		svc, err := s.cluster.Client.CoreV1().Services(namespace).Get(ctx, a.name, metav1.GetOptions{})
		if err != nil {
			return nil, err.Error()
		}
		st, err := loadbalancers.ServiceStatusOf(svc)
		if err != nil {
			return nil, "no status yet"
		}
		lbs, last := map[string]*loadBalancer{}, ""
		for _, c := range s.cfg.clouds {
			lb, why, err := s.serviceLoadBalancer(ctx, c, svc, st.Clouds[c])
			if err != nil {
				return nil, err.Error()
			}
			if lb != nil {
				lbs[c] = lb
			} else {
				last = c + ": " + why
			}
		}
		return lbs, last
	})
}

// serviceLoadBalancer is the cloud's load balancer of a Service once its
// address is in status.loadBalancer.ingress and the emulator serves the
// Service's port there; nil and why while it is not.
func (s *sandbox) serviceLoadBalancer(ctx context.Context, cloud string, svc *corev1.Service, cs *loadbalancers.ServiceCloudStatus) (*loadBalancer, string, error) {
	if cs == nil {
		return nil, "no status", nil
	}
	if cs.Error != "" {
		return nil, cs.Error, nil
	}
	port := strconv.Itoa(servicePort)
	b := cs.Ports[port]
	if b == nil {
		return nil, "port " + port + " not bound yet", nil
	}
	lb := &loadBalancer{cloud: cloud}
	switch cloud {
	case "aws":
		hostname := ingressAddress(svc, func(i corev1.LoadBalancerIngress) string { return i.Hostname })
		arn := cs.Details["loadBalancer"]
		if hostname == "" || arn == "" || b.Details["arn"] == "" {
			return nil, "no hostname in status.loadBalancer.ingress yet", nil
		}
		// The hostname is the NLB's DNS name, which resolves nowhere on
		// this machine: the emulator's data path of the load balancer
		// that has it serves its listeners.
		out, err := emuclient.ELBv2Client(s.clouds.aws).DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}})
		if err != nil {
			return nil, "", fmt.Errorf("load balancer %s of Service %s: %w", arn, svc.Name, err)
		}
		if len(out.LoadBalancers) != 1 || aws.ToString(out.LoadBalancers[0].DNSName) != hostname {
			return nil, fmt.Sprintf("status.loadBalancer.ingress hostname %s is not the DNS name of %s", hostname, arn), nil
		}
		lb.name, lb.group, lb.provisioned, lb.published = aws.ToString(out.LoadBalancers[0].LoadBalancerName), b.Details["arn"], arn, hostname
		lb.addr = s.clouds.aws.LoadBalancerAddr(arn, servicePort)
	case "gcp":
		ip := ingressAddress(svc, func(i corev1.LoadBalancerIngress) string { return i.IP })
		rule := path.Base(cs.Details["forwardingRule/"+port])
		if ip == "" || cs.Details["forwardingRule/"+port] == "" || b.Details["backendService"] == "" {
			return nil, "no IP in status.loadBalancer.ingress yet", nil
		}
		// The emulator's forwarding rules listen on the very address
		// they are given.
		addr := net.JoinHostPort(ip, port)
		if got := s.clouds.gcp.ForwardingRuleAddr(rule); got != addr {
			return nil, fmt.Sprintf("forwarding rule %s listens on %q, not on %s", rule, got, addr), nil
		}
		lb.name, lb.group, lb.provisioned, lb.published, lb.addr = rule, path.Base(b.Details["backendService"]), rule, ip, addr
	}
	if lb.addr == "" {
		return nil, "load balancer not serving yet", nil
	}
	return lb, "", nil
}

// ingressAddress is the first non-empty address field of the Service's
// status.loadBalancer.ingress.
func ingressAddress(svc *corev1.Service, field func(corev1.LoadBalancerIngress) string) string {
	for _, i := range svc.Status.LoadBalancer.Ingress {
		if v := field(i); v != "" {
			return v
		}
	}
	return ""
}

// releaseTimeout bounds the wait for podlb to delete what it provisioned.
const releaseTimeout = time.Minute

// release deletes the Services and Ingresses whose load balancers podlb
// provisioned, waits until podlb let them go (its finalizer) and asks the
// emulators whether any of those load balancers or their target groups,
// backend services or forwarding rules is left. It returns what it
// deleted and what is left.
func (s *sandbox) release(ctx context.Context) (deleted, left []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	type object struct {
		kind, name string
		get        func() error
		lbs        map[string]*loadBalancer
	}
	var objects []object
	for _, a := range s.apps {
		switch a.frontend {
		case frontService:
			services := s.cluster.Client.CoreV1().Services(namespace)
			if err := services.Delete(ctx, a.name, metav1.DeleteOptions{}); err != nil {
				return nil, nil, err
			}
			objects = append(objects, object{"Service", a.name, func() error {
				_, err := services.Get(ctx, a.name, metav1.GetOptions{})
				return err
			}, a.lbs})
		case frontIngress:
			ingresses := s.cluster.Client.NetworkingV1().Ingresses(namespace)
			if err := ingresses.Delete(ctx, a.lbName(), metav1.DeleteOptions{}); err != nil {
				return nil, nil, err
			}
			objects = append(objects, object{"Ingress", a.lbName(), func() error {
				_, err := ingresses.Get(ctx, a.lbName(), metav1.GetOptions{})
				return err
			}, a.lbs})
		}
	}
	for _, o := range objects {
		for {
			err := o.get()
			if apierrors.IsNotFound(err) {
				break
			}
			if err := s.controllerDown(); err != nil {
				return nil, nil, err
			}
			select {
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("podlb did not release %s %s within %v (%v); controller log: %s", o.kind, o.name, releaseTimeout, err, s.controller.LogPath)
			case <-time.After(200 * time.Millisecond):
			}
		}
		deleted = append(deleted, o.kind+" "+o.name)
		for _, c := range sortedKeys(o.lbs) {
			l, err := s.clouds.leftovers(ctx, o.lbs[c])
			if err != nil {
				return nil, nil, err
			}
			left = append(left, l...)
		}
	}
	return deleted, left, nil
}

// leftovers asks the cloud's API for a load balancer podlb provisioned
// and its group, and lists those that still exist.
func (cl *clouds) leftovers(ctx context.Context, lb *loadBalancer) ([]string, error) {
	var left []string
	switch lb.cloud {
	case "aws":
		c := emuclient.ELBv2Client(cl.aws)
		_, err := c.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{lb.provisioned}})
		if gone, err := awsGone[*elbtypes.LoadBalancerNotFoundException](err); err != nil {
			return nil, err
		} else if !gone {
			left = append(left, "aws load balancer "+lb.provisioned)
		}
		_, err = c.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{lb.group}})
		if gone, err := awsGone[*elbtypes.TargetGroupNotFoundException](err); err != nil {
			return nil, err
		} else if !gone {
			left = append(left, "aws target group "+shortARN(lb.group))
		}
	case "gcp":
		g := cl.gcpClients
		_, err := g.ForwardingRules.Get(ctx, &computepb.GetGlobalForwardingRuleRequest{Project: g.Project, ForwardingRule: lb.provisioned})
		if gone, err := gcpGone(err); err != nil {
			return nil, err
		} else if !gone {
			left = append(left, "gcp forwarding rule "+lb.provisioned)
		}
		_, err = g.BackendServices.Get(ctx, &computepb.GetBackendServiceRequest{Project: g.Project, BackendService: lb.group})
		if gone, err := gcpGone(err); err != nil {
			return nil, err
		} else if !gone {
			left = append(left, "gcp backend service "+lb.group)
		}
	}
	return left, nil
}

// awsGone tells a lookup that found nothing (the API's not-found error E)
// from one that found the resource (no error) and from a failed one.
func awsGone[E error](err error) (bool, error) {
	var notFound E
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &notFound):
		return true, nil
	}
	return false, err
}

// gcpGone is awsGone for the Compute API, whose not-found is HTTP 404.
func gcpGone(err error) (bool, error) {
	var gerr *googleapi.Error
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &gerr) && gerr.Code == 404:
		return true, nil
	}
	return false, err
}

// printRelease reports the teardown's cleanup in one line.
func printRelease(deleted, left []string) {
	if len(deleted) == 0 {
		return
	}
	if len(left) > 0 {
		fmt.Printf("LEFT BEHIND after deleting %s: %s\n", strings.Join(deleted, ", "), strings.Join(left, ", "))
		return
	}
	fmt.Printf("deleted %s: podlb removed the load balancers it provisioned, nothing of theirs is left in the emulators\n", strings.Join(deleted, ", "))
}
