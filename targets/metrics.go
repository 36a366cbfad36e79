package targets

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	targetsByState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podlb_targets",
		Help: "Targets per binding and state as last observed (healthy, pending, unhealthy, unused, draining).",
	}, []string{"namespace", "service", "port", "provider", "state"})
	desiredTargets = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podlb_desired_targets",
		Help: "Targets podlb wants registered per binding.",
	}, []string{"namespace", "service", "port", "provider"})
	reconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_binding_reconcile_errors_total",
		Help: "Failed binding reconciles by provider and error class.",
	}, []string{"provider", "class"})
	targetsChanged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_target_changes_total",
		Help: "Targets registered and deregistered by provider.",
	}, []string{"provider", "change"})
	registrationLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podlb_registration_latency_seconds",
		Help:    "From a pod's ContainersReady to podlb's registration call succeeding.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"provider"})
	deregistrationLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podlb_deregistration_latency_seconds",
		Help:    "From podlb first planning to deregister a target (its pod terminating or gone) to the deregistration call succeeding.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	}, []string{"provider"})
	deregistrationsLate = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podlb_deregistrations_late_total",
		Help: "Deregistrations of a terminating pod's target that succeeded only after the pod was killed (its deletion timestamp): the load balancer kept sending it connections.",
	}, []string{"provider"})
	podsWithoutGate = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podlb_pods_without_gate",
		Help: "Targets of a binding whose pod lacks the podlb.io/load-balancer-ready readiness gate: their rollouts are not protected.",
	}, []string{"namespace", "service", "port", "provider"})
)

func init() {
	metrics.Registry.MustRegister(targetsByState, desiredTargets, reconcileErrors, targetsChanged, registrationLatency, deregistrationLatency, deregistrationsLate, podsWithoutGate)
}
