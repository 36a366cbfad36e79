// Package loadbalancers is the cloud-agnostic model of the load balancers
// podlb provisions: which Ingresses podlb serves, which clouds each one
// asks for, and, for a group of Ingresses sharing one Application Load
// Balancer, the routes, default backend, TLS hosts and backends the
// clouds realise. Everything here is pure and deterministic: the same
// objects in any order give the same model, so a reconciler can diff it
// against the cloud without spurious changes.
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
//	order.go        route evaluation order and rule priorities
//	paths.go        Kubernetes path semantics and their AWS and GCP path forms
//	healthcheck.go  health check paths from readiness probes
//
// Backends of the model later become ordinary target bindings (package
// targets); this package knows no cloud SDK and writes nothing.
package loadbalancers
