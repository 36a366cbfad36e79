package loadbalancers

import (
	"context"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// ServiceFinalizer holds a Service of type LoadBalancer podlb serves
// until its load balancer has let go of it: its listeners' targets
// deregistered and, for the last Service of a group, the load balancer
// deleted. It is the Ingresses' finalizer: one name for "podlb provisions
// a load balancer for this object".
const ServiceFinalizer = IngressFinalizer

// serviceBalancerPrefix keeps the balancers of Services apart from those
// of Ingresses in the registry and the ledger: an Ingress group and a
// Service group may share a name.
const serviceBalancerPrefix = "service:"

// ServiceBalancer is the owner of a Service load balancer's bindings
// (BindingKey.Balancer): "service:" and the balancer key.
func ServiceBalancer(key providers.BalancerKey) string {
	return ServiceBalancerKey(key).String()
}

// IsServiceBalancer reports whether a BindingKey.Balancer is a Service
// load balancer's.
func IsServiceBalancer(balancer string) bool {
	return strings.HasPrefix(balancer, serviceBalancerPrefix)
}

// L4Cloud is one cloud that provisions TCP/UDP load balancers.
type L4Cloud = balancingCloud[providers.L4Balancers]

// L4Clouds picks the providers that also provision TCP/UDP load
// balancers.
func L4Clouds(provs []providers.Provider) map[string]L4Cloud {
	return balancingClouds[providers.L4Balancers](provs)
}

// ServiceReconciler provisions the load balancer of each group of
// Services of type LoadBalancer podlb serves (ServesService), on every
// cloud the group asks for, and hands its listeners' Service ports to
// the target machinery as bindings. A request names one Service; the
// reconciler works on its whole group (and on the group it left, if any).
type ServiceReconciler struct {
	Client   client.Client
	Registry *targets.Registry
	Ledger   *targets.Ledger
	Clouds   map[string]L4Cloud
	Cluster  string
	Recorder record.EventRecorder
	Timing   targets.Timing
	// EnqueueBinding schedules a binding reconcile.
	EnqueueBinding func(providers.BindingKey)
	// SelectionChanged is told which pods' gates may change.
	SelectionChanged func(namespace string, selectors ...labels.Selector)

	book groupBook[serviceGroup]
}

// serviceGroup is what the reconciler keeps of a group of Services
// beyond what every group keeps.
type serviceGroup struct {
	model *ServiceLoadBalancer
}

type serviceGroups = groupReconciler[*corev1.Service, serviceGroup]

var serviceNames = groupKindNames{kind: "Service", plural: "Services", invalidReason: "InvalidLoadBalancer"}

func (r *ServiceReconciler) groups() *serviceGroups {
	return &serviceGroups{groupDeps: groupDeps{Client: r.Client, Registry: r.Registry, Ledger: r.Ledger, Recorder: r.Recorder, Timing: r.Timing,
		Cluster: r.Cluster, Providers: targetProviders(r.Clouds), EnqueueBinding: r.EnqueueBinding, SelectionChanged: r.SelectionChanged},
		names: serviceNames, kind: r, book: &r.book}
}

// Reconcile implements reconcile.Reconciler.
func (r *ServiceReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var svc corev1.Service
	err := r.Client.Get(ctx, req.NamespacedName, &svc)
	if client.IgnoreNotFound(err) != nil {
		return reconcile.Result{}, err
	}
	exists := err == nil
	served := func(s *corev1.Service) bool { return s.DeletionTimestamp == nil && ServesService(s) }
	g := r.groups()
	if _, wasMember := g.previousGroup(req.NamespacedName, &svc, exists); !wasMember && (!exists || !served(&svc) && !controllerutil.ContainsFinalizer(&svc, ServiceFinalizer)) {
		return reconcile.Result{}, nil // not ours, and never was
	}
	var all corev1.ServiceList
	if err := r.Client.List(ctx, &all); err != nil {
		return reconcile.Result{}, err
	}
	return g.reconcile(ctx, req.NamespacedName, &svc, exists, pointers(all.Items), served)
}

// MembersOf lists the Services of the group whose balancer reads
// balancer (ServiceBalancer), as last reconciled: whose status to write
// when a listener binding's status changes.
func (r *ServiceReconciler) MembersOf(balancer string) []types.NamespacedName {
	key, ok := ParseBalancerKey(strings.TrimPrefix(balancer, serviceBalancerPrefix))
	if !ok || !IsServiceBalancer(balancer) {
		return nil
	}
	return r.book.membersOf(key)
}

func (r *ServiceReconciler) owner(key providers.BalancerKey) providers.BalancerKey {
	return ServiceBalancerKey(key)
}

func (r *ServiceReconciler) deleteBalancer(ctx context.Context, cloud string, key providers.BalancerKey) error {
	return r.Clouds[cloud].Balancers.DeleteL4(ctx, r.Cluster, key)
}

func (r *ServiceReconciler) forgetSettled(nn types.NamespacedName) {
	r.Registry.ForgetLoadBalancerService(nn)
}

func (r *ServiceReconciler) clearAddress(svc *corev1.Service) bool {
	return clearAddresses(&svc.Status.LoadBalancer.Ingress)
}

// reconcileGroup brings one group's load balancers and bindings in line
// with its members. It returns when to look again (0: at the resync).
func (r *ServiceReconciler) reconcileGroup(ctx context.Context, g *serviceGroups, key providers.BalancerKey, members []*corev1.Service) (time.Duration, error) {
	ctx, st, err := g.begin(ctx, key, members)
	if err != nil {
		return 0, err
	}
	svcs := byName(members)
	model, problems := BuildServiceGroup(key.String(), members)
	clouds, specs, from, specProblems := g.cloudSpecs(st, model.Members, svcs, func(cloud, raw string) (any, error) {
		return r.Clouds[cloud].Balancers.ParseL4Spec(raw)
	})
	problems = append(problems, specProblems...)
	if len(specs) < len(clouds) && st.own.model == nil {
		held, err := g.heldUntilFixed(ctx, key, st, members, problems)
		if held {
			// The gate waits while nothing is known.
			for _, nn := range model.Members {
				r.Registry.ForgetLoadBalancerService(nn)
			}
		}
		if held || err != nil {
			return g.Timing.MaxBackoff, err
		}
	}
	st.own.model = model

	warnTo := func(cloud string) *corev1.Service {
		if to := svcs[from[cloud]]; to != nil {
			return to
		}
		return members[0]
	}
	answered := g.ensureClouds(ctx, st, clouds, specs, warnTo,
		func(cloud string, spec any) balancerRequest {
			lb := L4BalancerOf(key, r.Cluster, model, spec)
			return balancerRequest{lb: lb, spec: lb.Spec, ensure: func(ctx context.Context) (*ensured, error) {
				res, err := r.Clouds[cloud].Balancers.EnsureL4(ctx, lb)
				if err != nil {
					return nil, err
				}
				return &ensured{status: res.Status, specs: res.Specs, refused: res.Refused}, nil
			}}
		},
		func(cloud string, e *ensured) (cloudPart, []Problem) {
			return ListenerBindings(cloud, r.Cluster, ServiceBalancerKey(key), model, e.specs), refusedProblems(cloud, model, e.refused, svcs)
		})
	problems = append(problems, answered.problems...)
	retry, stop, err := g.putBindings(ctx, key, st, clouds, answered.bound, answered.retry)
	if stop || err != nil {
		return retry, err
	}
	g.warnProblems(members, problems, "")

	for _, m := range members {
		var changed bool
		if answered.complete {
			changed = r.Registry.SetLoadBalancerServiceSettled(nameOf(m), ServiceVersion(m))
		} else {
			// The gate waits: the Service's listeners are not bound yet.
			changed = r.Registry.ForgetLoadBalancerService(nameOf(m))
		}
		if changed && r.SelectionChanged != nil && len(m.Spec.Selector) > 0 {
			r.SelectionChanged(m.Namespace, labels.SelectorFromSet(m.Spec.Selector))
		}
	}
	return retry, g.finish(ctx, key, st, model.Members, members, problems)
}

// ServiceBalancerKey is the balancer key under which the registry and the
// ledger hold a Service load balancer's bindings (ServiceBalancer as its
// name), apart from an Ingress group of the same key.
func ServiceBalancerKey(key providers.BalancerKey) providers.BalancerKey {
	return providers.BalancerKey{Name: serviceBalancerPrefix + key.String()}
}
