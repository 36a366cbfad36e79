package controller

import (
	"context"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// eventCacheSize bounds the recent Events the broadcaster remembers to
// count repeats, combine similar Events and hold back floods. client-go's
// default, 4,096 in each of its three caches, held about 6 MB (a tenth of
// the heap) at 1,000 Services. podlb sends a problem once when it appears,
// not per reconcile, so a repeat the cache has forgotten costs one more
// Event rather than a count.
const eventCacheSize = 256

// newEventRecorder sends podlb's Events through a broadcaster of its own
// with bounded caches, recording to one sink. The manager's recorders are
// not used for this: given a broadcaster, controller-runtime starts a sink
// on it from each of its recorder providers (the cluster's and the leader
// election's), and every sink correlates on its own, so Events combined
// from similar ones would be written twice.
func newEventRecorder(events typedcorev1.EventInterface, scheme *runtime.Scheme, logger logr.Logger) (record.EventRecorder, func()) {
	b := record.NewBroadcasterWithCorrelatorOptions(record.CorrelatorOptions{LRUCacheSize: eventCacheSize})
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events})
	b.StartEventWatcher(func(e *corev1.Event) {
		logger.V(1).Info(e.Message, "type", e.Type, "object", e.InvolvedObject, "reason", e.Reason)
	})
	return b.NewRecorder(scheme, corev1.EventSource{Component: "podlb"}), b.Shutdown
}

// setupEventRecorder makes the recorder of Setup's reconcilers, stopped
// with the manager whether or not it leads.
func setupEventRecorder(mgr manager.Manager, logger logr.Logger) (record.EventRecorder, error) {
	cs, err := typedcorev1.NewForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return nil, err
	}
	recorder, stop := newEventRecorder(cs.Events(""), mgr.GetScheme(), logger.WithName("events"))
	return recorder, mgr.Add(stopWithManager(stop))
}

// stopWithManager runs its function when the manager stops; it runs on
// every replica, not only the leader.
type stopWithManager func()

func (s stopWithManager) Start(ctx context.Context) error {
	<-ctx.Done()
	s()
	return nil
}

func (stopWithManager) NeedLeaderElection() bool { return false }
