// Package loadbalancers is the cloud-agnostic model of the load balancers
// podlb provisions: which Ingresses podlb serves, which clouds each one
// asks for, and, for a group of Ingresses sharing one Application Load
// Balancer, the routes, default backend, TLS hosts and backends the
// clouds realise; and, for Services of type LoadBalancer of class
// LoadBalancerClass (alone or in a group sharing one TCP/UDP load
// balancer), the listeners. Everything here is pure and deterministic: the
// same objects in any order give the same model, so a reconciler can diff
// it against the cloud without spurious changes. IngressReconciler and
// ServiceReconciler realise the models: they are the parts that write (to
// the clouds through providers.HTTPBalancers and providers.L4Balancers, to
// the registry as bindings, and to Ingresses and Services).
//
//	classes := []networkingv1.IngressClass{...}
//	if !loadbalancers.ServesIngress(ing, classes) { return }
//	clouds := loadbalancers.Clouds(ing.Annotations, []string{"aws"})
//	lb, problems := loadbalancers.BuildIngressGroup("shop", ingresses, lookupService)
//	for _, p := range problems { recorder.Event(..., "Warning", ..., p.String()) }
//	priorities := lb.Priorities() // AWS listener rule priorities
//
// Files:
//
//	class.go        which Ingresses are ours (IngressClass, default class, legacy annotation)
//	clouds.go       the per-cloud load-balancer annotations and which clouds an object asks for
//	model.go        HTTPLoadBalancer, Route, Backend, Member, Problem
//	build.go        BuildIngressGroup: Ingresses of one group -> one HTTPLoadBalancer
//	order.go        route evaluation order, rule priorities and group order
//	paths.go        Kubernetes path semantics and their AWS and GCP path forms
//	healthcheck.go  health check paths from readiness probes
//	realise.go      pure steps of realising the model: group keys, what a
//	                cloud is asked for, backend bindings, the last good model
//	group.go        the lifecycle both reconcilers share: the request's
//	                group and the one it left, cloud specs with the last
//	                good kept, ensure on each cloud, bind, tear down in
//	                order, let go
//	group_status.go what both write: deduplicated Warnings, addresses and
//	                podlb.io/status annotations
//	ingress.go      IngressReconciler: an Ingress group's model, kept
//	                routes, switches held and gate
//	ingress_status.go  the Ingress's address and podlb.io/status annotation
//	bind.go         what both reconcilers share: a balancer's backend
//	                bindings put in force and released
//	service_build.go  which Services are ours, their group, and
//	                BuildServiceGroup: Services of one group -> listeners
//	service.go      ServiceReconciler: a Service group's listeners, the
//	                ports a cloud refuses, and gate
//	service_status.go  the Service's address and podlb.io/status annotation
//
// Backends of the model become ordinary target bindings (package
// targets), keyed by their balancer; this package knows no cloud SDK.
package loadbalancers
