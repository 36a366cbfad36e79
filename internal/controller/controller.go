// Package controller wires podlb's reconcilers into a controller-runtime
// manager: caches with slimmed objects, the Service, binding and gate
// controllers, leader election, metrics and health probes.
package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/podlb/podlb/loadbalancers"
	"github.com/podlb/podlb/providers"
	"github.com/podlb/podlb/readiness"
	"github.com/podlb/podlb/targets"
)

// Options configure a podlb controller.
type Options struct {
	RestConfig  *rest.Config
	ClusterName string
	// Namespace is podlb's own: the ledger and the leader lease live there.
	Namespace      string
	LeaderElection bool
	// LeaderElectionID names the lease; tests running several controllers
	// against one cluster set it apart.
	LeaderElectionID string
	MetricsAddr      string
	ProbeAddr        string
	// Profiling serves net/http/pprof beside the metrics, for heap and
	// CPU profiles of a live controller.
	Profiling bool
	Workers   int
	// WriteSlots is how many target-write passes run at once per cloud.
	WriteSlots int
	// DeregistrationHeadStart is how much longer than it has a
	// deregistration counts as having waited for a write slot; nil is
	// targets.DefaultHeadStart.
	DeregistrationHeadStart *time.Duration
	// HealthReaders is how many health reads run at once.
	HealthReaders int
	Timing        targets.Timing
	Providers     []providers.Provider
	Logger        logr.Logger
	// GateIgnoresUnservedClouds lets pods through that a Service binds
	// only on clouds this controller does not serve (another controller
	// checks those); by default they are held with reason CloudNotServed.
	GateIgnoresUnservedClouds bool
	// SkipNameValidation lets one process start the controller more than
	// once (tests that restart it).
	SkipNameValidation bool
	// SweepInterval is how often what no Service asks for any more is
	// looked for and released; the first sweep runs at start.
	SweepInterval time.Duration
}

// Defaults fills unset options.
func (o *Options) Defaults() {
	if o.Namespace == "" {
		o.Namespace = "podlb-system"
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = "podlb-controller-leader"
	}
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.WriteSlots <= 0 {
		o.WriteSlots = 4
	}
	if o.HealthReaders <= 0 {
		o.HealthReaders = 4
	}
	if o.Timing.Poll <= 0 {
		o.Timing.Poll = time.Second
	}
	if o.Timing.Resync <= 0 {
		o.Timing.Resync = 10 * time.Minute
	}
	if o.Timing.Coalesce <= 0 {
		o.Timing.Coalesce = 200 * time.Millisecond
	}
	if o.Timing.MaxBackoff <= 0 {
		o.Timing.MaxBackoff = 2 * time.Minute
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Minute
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = "0"
	}
	if o.ProbeAddr == "" {
		o.ProbeAddr = "0"
	}
}

// Run starts the controller and blocks until ctx ends.
func Run(ctx context.Context, o Options) error {
	o.Defaults()
	if o.ClusterName == "" {
		return errors.New("a cluster name is required")
	}
	if len(o.Providers) == 0 {
		return errors.New("no cloud provider configured")
	}
	// controller-runtime logs through a process-wide logger, and the
	// manager gives its controllers theirs.
	o.Logger = DeferValues(o.Logger)
	ctrl.SetLogger(o.Logger)
	// Protobuf is smaller to receive and cheaper to decode than JSON, for
	// the initial lists of pods and slices above all.
	cfg := rest.CopyConfig(o.RestConfig)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                        scheme,
		Logger:                        o.Logger,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr, ExtraHandlers: profilingHandlers(o.Profiling)},
		HealthProbeBindAddress:        o.ProbeAddr,
		Cache: cache.Options{
			DefaultTransform: SlimObject,
			ByObject: map[client.Object]cache.ByObject{
				// Pods are stored as CachedPods: a pod read with
				// UnsafeDisableDeepCopy would fail (see CachedPod).
				&corev1.Pod{}:                {Transform: SlimPod},
				&corev1.Node{}:               {Transform: SlimNode},
				&discoveryv1.EndpointSlice{}: {Transform: SlimEndpointSlice},
			},
		},
		Client:     client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.ConfigMap{}}}},
		Controller: ctrlconfig.Controller{SkipNameValidation: &o.SkipNameValidation},
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := Setup(mgr, o); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// profilingHandlers are the runtime profiles of net/http/pprof, when asked
// for: pprof.Index serves every named profile (heap, goroutine, ...) below
// its path, the others need handlers of their own.
func profilingHandlers(on bool) map[string]http.Handler {
	if !on {
		return nil
	}
	return map[string]http.Handler{
		"/debug/pprof/":        http.HandlerFunc(pprof.Index),
		"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
		"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
		"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
		"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
	}
}

// queueRef hands a controller's queue to code outside the controller
// (registry hooks). Work handed over before the controller starts is kept
// and enqueued when it does: the Service controller may well start first
// and enqueue bindings or gates that no watch event would bring again.
type queueRef[T comparable] struct {
	mu      sync.Mutex
	q       workqueue.TypedRateLimitingInterface[T]
	pending map[T]time.Duration
}

func newQueueRef[T comparable]() *queueRef[T] { return &queueRef[T]{pending: map[T]time.Duration{}} }

func (r *queueRef[T]) source() source.TypedSource[T] {
	return source.TypedFunc[T](func(_ context.Context, q workqueue.TypedRateLimitingInterface[T]) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.q = q
		for item, d := range r.pending {
			q.AddAfter(item, d)
		}
		r.pending = nil
		return nil
	})
}

func (r *queueRef[T]) addAfter(item T, d time.Duration) {
	r.add(item, d, nil)
}

// add enqueues item after d, at priority when the queue has priorities
// (higher first); nil keeps the item's priority.
func (r *queueRef[T]) add(item T, d time.Duration, priority *int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pq, ok := r.q.(priorityqueue.PriorityQueue[T]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{After: d, Priority: priority}, item)
		return
	}
	if r.q != nil {
		r.q.AddAfter(item, d)
		return
	}
	if cur, ok := r.pending[item]; !ok || d < cur {
		r.pending[item] = d
	}
}

// statusCoalesce is how long a Service's status annotation gathers
// changes before it is written.
const statusCoalesce = 5 * time.Second

// Binding queue priorities: a binding a write slot is reserved for goes
// first (the slot waits for it), with one whose deregistrations held for
// settling registrations are due (a terminating pod is still sent
// connections), then bindings a pod waits on that were
// not observed since start, then bindings with a fresh health read (the
// gate path), then everything else.
const (
	wokenPriority      = 20
	waitingPodPriority = 15
	readPriority       = 10
)

// gateNewsPriority ranks a pod in the gate queue whose bindings' state
// changed above the pod's own events.
const gateNewsPriority = 10

// gateNoteRate and gateNoteBurst admit False gate writes. The burst
// writes a small rollout's messages as they come (two or three per pod);
// under a thousand pods turning ready at once, False writes take at most
// a fifth of what the gate client's 50/s gives the writes that open
// gates, and the messages trail.
const (
	gateNoteRate  = 10
	gateNoteBurst = 20
)

// gateWorkers is how many gate reconciles run at once. A reconcile is
// mostly the wait for its status patch; in a rollout of a thousand pods
// four of them could not keep up with the patches the gate client's
// budget allows.
const gateWorkers = 16

// Setup adds podlb's controllers to a manager.
func Setup(mgr manager.Manager, o Options) error {
	o.Defaults()
	logger := o.Logger
	sliceInformer, err := mgr.GetCache().GetInformer(context.Background(), &discoveryv1.EndpointSlice{})
	if err != nil {
		return err
	}
	if err := sliceInformer.AddIndexers(targets.SliceIndexers()); err != nil {
		return err
	}
	servicesUnder, err := indexServicesBySelector(context.Background(), mgr.GetCache())
	if err != nil {
		return err
	}
	reg := targets.NewRegistry()
	targets.ReportBindingErrors(reg)
	readiness.ReportWaitingGates(cachedPods(mgr.GetCache()))
	// The ledger is written before every registration: its writes get a
	// Kubernetes client budget of their own, so status annotations and
	// Events never delay a registration.
	ledgerClient, err := ownBudgetClient(mgr)
	if err != nil {
		return err
	}
	ledger := targets.NewLedger(ledgerClient, mgr.GetAPIReader(), o.Namespace)
	recorder, err := setupEventRecorder(mgr, logger)
	if err != nil {
		return err
	}
	provByName := map[string]providers.Provider{}
	var annotationKeys []string
	for _, p := range o.Providers {
		provByName[p.Name()] = p
		annotationKeys = append(annotationKeys, p.AnnotationKey())
	}
	c := mgr.GetClient()

	bindingQ := newQueueRef[providers.BindingKey]()
	serviceQ := newQueueRef[reconcile.Request]()
	gateQ := newQueueRef[reconcile.Request]()

	healthQ := newQueueRef[providers.BindingKey]()

	// Changes go to the binding at once: it gathers what arrives within
	// the coalesce window after its last write itself.
	enqueueBinding := func(k providers.BindingKey) { bindingQ.addAfter(k, 0) }
	// What the registry learns (a read saw a pod healthy, a binding
	// registered it) is what moves gates: it goes ahead of the pod events
	// a rollout floods the gate queue with, most of which change nothing.
	gateNews := gateNewsPriority
	enqueuePods := func(pods []types.NamespacedName) {
		for _, p := range pods {
			gateQ.add(reconcile.Request{NamespacedName: p}, 0, &gateNews)
		}
	}
	reg.PodsChanged = enqueuePods
	reg.BindingErrorChanged = func(e *targets.ServiceEntry) {
		enqueueSelectedPods(context.Background(), c, e.Name.Namespace, []labels.Selector{e.Selector}, gateQ)
	}
	reg.ServiceChanged = func(nn types.NamespacedName) {
		// Status writes are coalesced: counts change often during
		// rollouts, and one write a second per Service would take the
		// whole client budget of a controller with fifty rolling.
		serviceQ.addAfter(reconcile.Request{NamespacedName: nn}, statusCoalesce)
	}

	// Binding controller.
	writes := map[string]*targets.Dispatcher{}
	slotReserved, deregistrationsDue := wokenPriority, wokenPriority
	for name := range provByName {
		d := targets.NewDispatcher(o.WriteSlots, func(k providers.BindingKey) { bindingQ.add(k, 0, &slotReserved) })
		if o.DeregistrationHeadStart != nil {
			d.HeadStart = *o.DeregistrationHeadStart
		}
		writes[name] = d
	}
	br := &targets.BindingReconciler{Client: c, Cached: newCachedReader(mgr.GetCache()), Registry: reg, Ledger: ledger, Providers: provByName, Recorder: recorder, Timing: o.Timing,
		Writes: writes,
		ScheduleRead: func(k providers.BindingKey, after time.Duration, priority int) {
			healthQ.add(k, after, &priority)
		},
		Wake: func(k providers.BindingKey) { bindingQ.add(k, 0, &deregistrationsDue) }}
	bc, err := controller.NewTyped[providers.BindingKey]("binding", mgr, controller.TypedOptions[providers.BindingKey]{
		Reconciler:              br,
		MaxConcurrentReconciles: o.Workers,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[providers.BindingKey](time.Second, o.Timing.MaxBackoff),
	})
	if err != nil {
		return err
	}
	if err := bc.Watch(bindingQ.source()); err != nil {
		return err
	}

	// Health reader: reads groups when the binding reconciler scheduled
	// them and hands each read back to it ahead of other work, so the gate
	// hears of it at once.
	readDone := readPriority
	hr := &targets.HealthReader{Bindings: br, Done: func(k providers.BindingKey) { bindingQ.add(k, 0, &readDone) }}
	hc, err := controller.NewTyped[providers.BindingKey]("health", mgr, controller.TypedOptions[providers.BindingKey]{
		Reconciler:              hr,
		MaxConcurrentReconciles: o.HealthReaders,
	})
	if err != nil {
		return err
	}
	if err := hc.Watch(healthQ.source()); err != nil {
		return err
	}
	// Slice events carry the cache's CachedSlice (see SlimEndpointSlice).
	sliceToBindings := handler.TypedFuncs[client.Object, providers.BindingKey]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			enqueueSliceBindings(reg, e.Object, enqueueBinding)
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			enqueueSliceBindings(reg, e.ObjectNew, enqueueBinding)
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			enqueueSliceBindings(reg, e.Object, enqueueBinding)
		},
	}
	if err := bc.Watch(source.TypedKind(mgr.GetCache(), client.Object(&discoveryv1.EndpointSlice{}), handler.TypedEventHandler[client.Object, providers.BindingKey](sliceToBindings))); err != nil {
		return err
	}
	// Pod events carry the cache's CachedPod (see SlimPod).
	podToBindings := handler.TypedFuncs[client.Object, providers.BindingKey]{
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			var oldBuf, curBuf corev1.Pod
			old, ok1 := podView(e.ObjectOld, &oldBuf)
			cur, ok2 := podView(e.ObjectNew, &curBuf)
			if !ok1 || !ok2 || podChangeMatters(old, cur) {
				enqueuePodBindings(reg, e.ObjectNew, enqueueBinding)
			}
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			enqueuePodBindings(reg, e.Object, enqueueBinding)
		},
	}
	if err := bc.Watch(source.TypedKind(mgr.GetCache(), client.Object(&corev1.Pod{}), handler.TypedEventHandler[client.Object, providers.BindingKey](podToBindings))); err != nil {
		return err
	}
	// nodeZones records the zones with nodes and reports whether it
	// enqueued every binding because they changed.
	nodeZones := func(ctx context.Context) bool {
		var nodes corev1.NodeList
		if err := c.List(ctx, &nodes); err != nil {
			logger.Error(err, "listing nodes")
			return false
		}
		if reg.SetZones(targets.ZonesOf(nodes.Items)) {
			for _, k := range reg.AllBindings() {
				enqueueBinding(k)
			}
			return true
		}
		return false
	}
	nodeHandler := handler.TypedFuncs[*corev1.Node, providers.BindingKey]{
		CreateFunc: func(ctx context.Context, _ event.TypedCreateEvent[*corev1.Node], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			nodeZones(ctx)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[*corev1.Node], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			if targets.NodeInfoOf(e.ObjectOld) != targets.NodeInfoOf(e.ObjectNew) {
				// A node that got its zone, or is being deleted, changes
				// which of its pods are targets even when the set of
				// zones stays the same.
				if !nodeZones(ctx) {
					for _, k := range reg.AllBindings() {
						enqueueBinding(k)
					}
				}
			}
		},
		DeleteFunc: func(ctx context.Context, _ event.TypedDeleteEvent[*corev1.Node], _ workqueue.TypedRateLimitingInterface[providers.BindingKey]) {
			nodeZones(ctx)
		},
	}
	if err := bc.Watch(source.TypedKind(mgr.GetCache(), &corev1.Node{}, handler.TypedEventHandler[*corev1.Node, providers.BindingKey](nodeHandler))); err != nil {
		return err
	}

	// Service controller.
	l4Clouds := loadbalancers.L4Clouds(o.Providers)
	sr := &targets.ServiceReconciler{Client: c, Registry: reg, Ledger: ledger, Providers: o.Providers, Cluster: o.ClusterName,
		Recorder: recorder, Timing: o.Timing, EnqueueBinding: enqueueBinding,
		SelectionChanged: func(namespace string, selectors ...labels.Selector) {
			enqueueSelectedPods(context.Background(), c, namespace, selectors, gateQ)
		}}
	if len(l4Clouds) > 0 {
		sr.ProvisionedLoadBalancer = loadbalancers.ServesService
	}
	err = builder.ControllerManagedBy(mgr).Named("service").
		For(&corev1.Service{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: serviceChangeMatters})).
		WatchesRawSource(serviceQ.source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(sr)
	if err != nil {
		return err
	}

	if err := setupSweeper(mgr, o, reg, ledger); err != nil {
		return err
	}

	// Gate controller. Its pod writes have a Kubernetes client budget of
	// their own, so status annotations and Events never delay a gate;
	// False gates (what a pod waits for) have one apart again, admitted
	// without waiting, so they never delay a gate opening either.
	gateClient, err := ownBudgetClient(mgr)
	if err != nil {
		return err
	}
	noteClient, err := ownBudgetClient(mgr)
	if err != nil {
		return err
	}
	hurried := waitingPodPriority
	gr := &readiness.GateReconciler{Client: gateClient, Registry: reg, Services: servicesUnder, Annotations: annotationKeys, IgnoreUnservedClouds: o.GateIgnoresUnservedClouds,
		Notes: noteClient, NoteBudget: rate.NewLimiter(gateNoteRate, gateNoteBurst),
		Hurry: func(keys []providers.BindingKey) {
			for _, k := range keys {
				bindingQ.add(k, 0, &hurried)
			}
		}}
	if clouds := loadbalancers.HTTPClouds(o.Providers); len(clouds) > 0 {
		gr.Ingresses = c
		ir := &loadbalancers.IngressReconciler{Client: c, Reader: mgr.GetAPIReader(), Registry: reg, Ledger: ledger, Clouds: clouds,
			Cluster: o.ClusterName, Recorder: recorder, Timing: o.Timing, EnqueueBinding: enqueueBinding,
			SelectionChanged: func(namespace string, selectors ...labels.Selector) {
				enqueueSelectedPods(context.Background(), c, namespace, selectors, gateQ)
			}}
		if err := setupIngresses(mgr, reg, ir); err != nil {
			return err
		}
	}
	if len(l4Clouds) > 0 {
		gr.LoadBalancerServices = true
		lr := &loadbalancers.ServiceReconciler{Client: c, Registry: reg, Ledger: ledger, Clouds: l4Clouds,
			Cluster: o.ClusterName, Recorder: recorder, Timing: o.Timing, EnqueueBinding: enqueueBinding,
			SelectionChanged: func(namespace string, selectors ...labels.Selector) {
				enqueueSelectedPods(context.Background(), c, namespace, selectors, gateQ)
			}}
		if err := setupLoadBalancerServices(mgr, reg, lr); err != nil {
			return err
		}
	}
	err = builder.ControllerManagedBy(mgr).Named("gate").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(obj client.Object) bool {
			var buf corev1.Pod
			p, ok := podView(obj, &buf)
			return ok && targets.HasGate(p)
		}))).
		WatchesRawSource(gateQ.source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: gateWorkers}).
		Complete(gr)
	if err != nil {
		return err
	}
	return nil
}

// setupIngresses runs the Ingress controller, on the leader only like
// the others: Ingresses, the IngressClasses that decide which are
// podlb's, and the Services their backends name. Status changes of a
// balancer's backend bindings come back coalesced, to be written on its
// Ingresses.
func setupIngresses(mgr manager.Manager, reg *targets.Registry, ir *loadbalancers.IngressReconciler) error {
	c := mgr.GetClient()
	statusQ := newQueueRef[reconcile.Request]()
	addBalancerChanged(reg, func(balancer string) {
		for _, nn := range ir.MembersOf(balancer) {
			statusQ.addAfter(reconcile.Request{NamespacedName: nn}, time.Second)
		}
	})
	allIngresses := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		return ingressRequests(ctx, c, "", nil)
	})
	backendOf := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
		return ingressRequests(ctx, c, obj.GetNamespace(), func(ing *networkingv1.Ingress) bool {
			return slices.Contains(loadbalancers.BackendServices(ing), obj.GetName())
		})
	})
	return builder.ControllerManagedBy(mgr).Named("ingress").
		For(&networkingv1.Ingress{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: ingressChangeMatters})).
		Watches(&networkingv1.IngressClass{}, allIngresses).
		Watches(&corev1.Service{}, backendOf, builder.WithPredicates(predicate.Funcs{UpdateFunc: serviceChangeMatters})).
		WatchesRawSource(statusQ.source()).
		// One at a time: groups share state, and provisioning is rare.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(ir)
}

// setupLoadBalancerServices runs the controller of Services of type
// LoadBalancer, on the leader only like the others. Status changes of a
// balancer's listener bindings come back coalesced, to be written on its
// Services.
func setupLoadBalancerServices(mgr manager.Manager, reg *targets.Registry, lr *loadbalancers.ServiceReconciler) error {
	statusQ := newQueueRef[reconcile.Request]()
	addBalancerChanged(reg, func(balancer string) {
		for _, nn := range lr.MembersOf(balancer) {
			statusQ.addAfter(reconcile.Request{NamespacedName: nn}, time.Second)
		}
	})
	return builder.ControllerManagedBy(mgr).Named("loadbalancer-service").
		For(&corev1.Service{}, builder.WithPredicates(predicate.Funcs{UpdateFunc: loadBalancerServiceChangeMatters})).
		WatchesRawSource(statusQ.source()).
		// One at a time: groups share state, and provisioning is rare.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(lr)
}

// addBalancerChanged adds a listener to the registry's BalancerChanged
// hook: the Ingress and the Service load balancers each pick their own
// balancers' members.
func addBalancerChanged(reg *targets.Registry, f func(string)) {
	prev := reg.BalancerChanged
	reg.BalancerChanged = func(balancer string) {
		if prev != nil {
			prev(balancer)
		}
		f(balancer)
	}
}

// loadBalancerServiceChangeMatters is serviceChangeMatters, plus the type
// and class that make a Service podlb's load balancer.
func loadBalancerServiceChangeMatters(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*corev1.Service)
	n, ok2 := e.ObjectNew.(*corev1.Service)
	if ok1 && ok2 && (o.Spec.Type != n.Spec.Type || !reflect.DeepEqual(o.Spec.LoadBalancerClass, n.Spec.LoadBalancerClass)) {
		return true
	}
	return serviceChangeMatters(e)
}

// ingressRequests lists the Ingresses of a namespace ("" for all) that
// match, as requests.
func ingressRequests(ctx context.Context, c client.Reader, namespace string, match func(*networkingv1.Ingress) bool) []reconcile.Request {
	var list networkingv1.IngressList
	if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		if match == nil || match(&list.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}})
		}
	}
	return out
}

// ingressChangeMatters ignores podlb's own writes on an Ingress: its
// address and its status annotation.
func ingressChangeMatters(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*networkingv1.Ingress)
	n, ok2 := e.ObjectNew.(*networkingv1.Ingress)
	if !ok1 || !ok2 {
		return true
	}
	if o.Generation != n.Generation || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) ||
		!slices.Equal(o.Finalizers, n.Finalizers) || len(o.Annotations) != len(n.Annotations) {
		return true
	}
	for k, v := range n.Annotations {
		if k != targets.AnnotationStatus && o.Annotations[k] != v {
			return true
		}
	}
	return false
}

// ownBudgetClient is a client reading from the manager's cache whose
// writes go through a rate limiter of their own, as large as the
// manager's.
func ownBudgetClient(mgr manager.Manager) (client.Client, error) {
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.RateLimiter = nil
	return client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		Cache: &client.CacheOptions{Reader: mgr.GetCache()}})
}

// setupSweeper runs the sweep of what no Service asks for any more, on
// the leader only.
func setupSweeper(mgr manager.Manager, o Options, reg *targets.Registry, ledger *targets.Ledger) error {
	return mgr.Add(&targets.Sweeper{Reader: mgr.GetAPIReader(), Ledger: ledger, Registry: reg,
		Providers: o.Providers, Cluster: o.ClusterName, Interval: o.SweepInterval})
}

func enqueueSliceBindings(reg *targets.Registry, s client.Object, enqueue func(providers.BindingKey)) {
	svc := s.GetLabels()[discoveryv1.LabelServiceName]
	if svc == "" {
		return
	}
	for _, k := range reg.BindingsOfService(types.NamespacedName{Namespace: s.GetNamespace(), Name: svc}) {
		enqueue(k)
	}
}

func enqueuePodBindings(reg *targets.Registry, p client.Object, enqueue func(providers.BindingKey)) {
	for _, e := range reg.SelectingServices(p.GetNamespace(), p.GetLabels()) {
		for _, k := range e.Bindings {
			enqueue(k)
		}
	}
}

func enqueueSelectedPods(ctx context.Context, c client.Reader, namespace string, selectors []labels.Selector, q *queueRef[reconcile.Request]) {
	seen := map[types.NamespacedName]bool{}
	for _, sel := range selectors {
		if sel == nil {
			continue
		}
		var pods corev1.PodList
		if err := c.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
			continue
		}
		for i := range pods.Items {
			nn := types.NamespacedName{Namespace: namespace, Name: pods.Items[i].Name}
			if !seen[nn] && targets.HasGate(&pods.Items[i]) {
				seen[nn] = true
				q.addAfter(reconcile.Request{NamespacedName: nn}, 0)
			}
		}
	}
}

// podChangeMatters filters pod updates down to what changes a binding's
// desired targets; status writes of the gate itself do not.
func podChangeMatters(old, cur *corev1.Pod) bool {
	if (old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) || old.Status.PodIP != cur.Status.PodIP ||
		old.Spec.NodeName != cur.Spec.NodeName || !labels.Equals(old.Labels, cur.Labels) {
		return true
	}
	for _, c := range cur.Status.Conditions {
		if c.Type == targets.GateConditionType || c.Type == corev1.PodReady {
			// Ready follows the gate; slices report real readiness changes.
			continue
		}
		o := targets.PodCondition(old, c.Type)
		if o == nil || o.Status != c.Status {
			return true
		}
	}
	return false
}

// serviceChangeMatters ignores podlb's own status annotation writes.
func serviceChangeMatters(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*corev1.Service)
	n, ok2 := e.ObjectNew.(*corev1.Service)
	if !ok1 || !ok2 {
		return true
	}
	if !reflect.DeepEqual(o.Spec.Ports, n.Spec.Ports) || !reflect.DeepEqual(o.Spec.Selector, n.Spec.Selector) || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) ||
		len(o.Finalizers) != len(n.Finalizers) || !labels.Equals(o.Labels, n.Labels) {
		return true
	}
	if len(o.Annotations) != len(n.Annotations) {
		return true
	}
	for k, v := range n.Annotations {
		if k != targets.AnnotationStatus && o.Annotations[k] != v {
			return true
		}
	}
	return false
}
