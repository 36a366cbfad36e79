package loadbalancers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/targets"
)

// IngressFinalizer holds an Ingress podlb serves until its load balancer
// has let go of it: its backends' targets deregistered and, for the last
// Ingress of a group, the load balancer deleted.
const IngressFinalizer = "podlb.io/load-balancer"

// Cloud is one cloud that provisions HTTP load balancers.
type Cloud = balancingCloud[providers.HTTPBalancers]

// HTTPClouds picks the providers that also provision HTTP load balancers.
func HTTPClouds(provs []providers.Provider) map[string]Cloud {
	return balancingClouds[providers.HTTPBalancers](provs)
}

// IngressReconciler provisions the load balancer of each group of
// Ingresses podlb serves, on every cloud the group asks for, and hands
// its backends to the target machinery as bindings. A request names one
// Ingress; the reconciler works on its whole group (and on the group it
// left, if any).
type IngressReconciler struct {
	Client client.Client
	// Reader reads pods uncached: the cache keeps pods without their
	// readiness probes, which give the health check paths.
	Reader   client.Reader
	Registry *targets.Registry
	Ledger   *targets.Ledger
	Clouds   map[string]Cloud
	Cluster  string
	Recorder record.EventRecorder
	Timing   targets.Timing
	// EnqueueBinding schedules a binding reconcile.
	EnqueueBinding func(providers.BindingKey)
	// SelectionChanged is told which pods' gates may change.
	SelectionChanged func(namespace string, selectors ...labels.Selector)

	book groupBook[ingressGroup]
}

// ingressGroup is what the reconciler keeps of a group of Ingresses
// beyond what every group keeps.
type ingressGroup struct {
	lastGood *HTTPLoadBalancer
	// routed is the model last put in the clouds, switches held (see
	// HoldSwitches); held says what is held.
	routed *HTTPLoadBalancer
	held   []string
}

type ingressGroups = groupReconciler[*networkingv1.Ingress, ingressGroup]

var ingressNames = groupKindNames{kind: "Ingress", plural: "Ingresses", invalidReason: "InvalidIngress", statusMarksServed: true}

func (r *IngressReconciler) groups() *ingressGroups {
	return &ingressGroups{groupDeps: groupDeps{Client: r.Client, Registry: r.Registry, Ledger: r.Ledger, Recorder: r.Recorder, Timing: r.Timing,
		Cluster: r.Cluster, Providers: targetProviders(r.Clouds), EnqueueBinding: r.EnqueueBinding, SelectionChanged: r.SelectionChanged},
		names: ingressNames, kind: r, book: &r.book}
}

// Reconcile implements reconcile.Reconciler.
func (r *IngressReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var all networkingv1.IngressList
	if err := r.Client.List(ctx, &all); err != nil {
		return reconcile.Result{}, err
	}
	var classes networkingv1.IngressClassList
	if err := r.Client.List(ctx, &classes); err != nil {
		return reconcile.Result{}, err
	}
	ings := pointers(all.Items)
	var ing *networkingv1.Ingress
	for _, i := range ings {
		if nameOf(i) == req.NamespacedName {
			ing = i
		}
	}
	served := func(i *networkingv1.Ingress) bool {
		return i.DeletionTimestamp == nil && ServesIngress(i, classes.Items)
	}
	return r.groups().reconcile(ctx, req.NamespacedName, ing, ing != nil, ings, served)
}

// MembersOf lists the Ingresses of the group whose balancer key reads
// balancer, as last reconciled: whose status to write when a backend
// binding's status changes.
func (r *IngressReconciler) MembersOf(balancer string) []types.NamespacedName {
	key, ok := ParseBalancerKey(balancer)
	if !ok {
		return nil
	}
	return r.book.membersOf(key)
}

func (r *IngressReconciler) owner(key providers.BalancerKey) providers.BalancerKey { return key }

func (r *IngressReconciler) deleteBalancer(ctx context.Context, cloud string, key providers.BalancerKey) error {
	return r.Clouds[cloud].Balancers.DeleteHTTP(ctx, r.Cluster, key)
}

func (r *IngressReconciler) forgetSettled(nn types.NamespacedName) { r.Registry.ForgetIngress(nn) }

func (r *IngressReconciler) clearAddress(ing *networkingv1.Ingress) bool {
	return clearAddresses(&ing.Status.LoadBalancer.Ingress)
}

// reconcileGroup brings one group's load balancers and bindings in line
// with its members. It returns when to look again (0: at the resync).
func (r *IngressReconciler) reconcileGroup(ctx context.Context, g *ingressGroups, key providers.BalancerKey, members []*networkingv1.Ingress) (time.Duration, error) {
	ctx, st, err := g.begin(ctx, key, members)
	if err != nil {
		return 0, err
	}
	services := r.serviceLookup(ctx)
	model, problems := BuildIngressGroup(key.String(), members, services)
	order := make([]types.NamespacedName, len(model.Members))
	for i, m := range model.Members {
		order[i] = m.Ingress
	}
	clouds, specs, _, specProblems := g.cloudSpecs(st, order, byName(members), func(cloud, raw string) (any, error) {
		return r.Clouds[cloud].Balancers.ParseBalancerSpec(raw)
	})
	// Problems about annotations are not the model's: they hold the
	// Ingress's routes only through the spec kept.
	problems = append(problems, specProblems...)
	broken := map[types.NamespacedName]bool{}
	for _, p := range problems {
		broken[p.Object] = true
	}
	if len(broken) > 0 && st.own.lastGood == nil {
		if held, err := g.heldUntilFixed(ctx, key, st, members, problems); held || err != nil {
			return g.Timing.MaxBackoff, err
		}
	}
	model = KeepLastGood(model, st.own.lastGood, broken)
	st.own.lastGood = model
	// Said like problems, but they break nothing: the routes stand.
	problems = append(problems, unusedTLSSecrets(members)...)
	g.warnProblems(members, problems, "")
	model, st.own.held = HoldSwitches(model, st.own.routed, r.servingOn(key, clouds))
	st.own.routed = model

	first := firstByName(members)
	answered := g.ensureClouds(ctx, st, clouds, specs, func(string) *networkingv1.Ingress { return first },
		func(cloud string, spec any) balancerRequest {
			lb := HTTPBalancerOf(key, r.Cluster, model, spec, r.healthCheckPaths(ctx, model, services))
			return balancerRequest{lb: lb, spec: lb.Spec, ensure: func(ctx context.Context) (*ensured, error) {
				status, specs, err := r.Clouds[cloud].Balancers.EnsureHTTP(ctx, lb)
				if err != nil {
					return nil, err
				}
				return &ensured{status: *status, specs: specs}, nil
			}}
		},
		func(cloud string, e *ensured) (cloudPart, []Problem) {
			return BackendBindings(cloud, r.Cluster, key, model, e.specs), nil
		})
	retry, stop, err := g.putBindings(ctx, key, st, clouds, answered.bound, answered.retry)
	if stop || err != nil {
		return retry, err
	}

	found := FoundServices(members, services)
	names := make([]types.NamespacedName, len(members))
	for i, m := range members {
		names[i] = nameOf(m)
		r.Registry.SetIngressSettled(names[i], targets.IngressSettled{Generation: m.Generation, Services: found[names[i]]})
	}
	return retry, g.finish(ctx, key, st, names, members, problems)
}

// firstByName is the Ingress a cloud's refusal is reported on: the
// first by namespace/name, so it does not move between passes.
func firstByName(members []*networkingv1.Ingress) *networkingv1.Ingress {
	first := members[0]
	for _, m := range members[1:] {
		if nameOf(m).String() < nameOf(first).String() {
			first = m
		}
	}
	return first
}

// unusedTLSSecrets names every spec.tls entry with a secretName: podlb
// does not upload Secrets to the clouds, so such a host is served with the
// certificates the cloud annotations name, if any.
func unusedTLSSecrets(members []*networkingv1.Ingress) []Problem {
	var out []Problem
	for _, m := range members {
		for i, t := range m.Spec.TLS {
			if t.SecretName != "" {
				out = append(out, Problem{Object: nameOf(m), Field: fmt.Sprintf("spec.tls[%d].secretName", i),
					Message: fmt.Sprintf("podlb does not upload Secret %s to the clouds; HTTPS is served with the certificates of the load-balancer annotations (certificateArns, sslCertificates)", t.SecretName)})
			}
		}
	}
	return out
}

// serviceLookup reads Services from the cache.
func (r *IngressReconciler) serviceLookup(ctx context.Context) ServiceLookup {
	return func(namespace, name string) (*corev1.Service, bool) {
		var svc corev1.Service
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &svc); err != nil {
			return nil, false
		}
		return &svc, true
	}
}

// healthCheckPathSample bounds how many pods of a backend are read for
// its health check path: they come from one pod template, bar rollouts.
const healthCheckPathSample = 20

// healthCheckPaths finds, per backend ID, the path the backend's pods'
// readiness probes check on the traffic port.
func (r *IngressReconciler) healthCheckPaths(ctx context.Context, lb *HTTPLoadBalancer, services ServiceLookup) map[string]string {
	out := map[string]string{}
	for _, be := range lb.Backends {
		svc, ok := services(be.Namespace, be.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		var pods corev1.PodList
		if err := r.Reader.List(ctx, &pods, client.InNamespace(be.Namespace), client.MatchingLabels(svc.Spec.Selector), client.Limit(healthCheckPathSample)); err != nil {
			continue
		}
		ptrs := make([]*corev1.Pod, 0, len(pods.Items))
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil {
				ptrs = append(ptrs, &pods.Items[i])
			}
		}
		if path, ok := HealthCheckPath(ptrs, be.TargetPort); ok {
			out[httpBackend(be).ID()] = path
		}
	}
	return out
}
