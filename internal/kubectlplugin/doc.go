// Package kubectlplugin is `kubectl podlb`, the kubectl plugin that shows
// what podlb does and why, from what podlb writes into the cluster:
//
//	kubectl podlb status svc/web      per cloud and port: group, targets, errors, problems, Warnings
//	kubectl podlb explain pod/web-1   why the pod's gate is what it is, and what it waits for
//	kubectl podlb check -A            preflight: gates, termination, stuck finalizers, RBAC, leader
//
// It reads the Service status only through targets.StatusOf, the gate
// reasons only through the readiness constants and the RBAC only through
// the manifests package, so it never drifts from the controller.
//
// Files: run.go (flags, clients, dispatch), status.go (status and the
// kinds it knows), explain.go, check.go, waiting.go (what a gate reason
// waits for), table.go (tabwriter rendering).
package kubectlplugin
