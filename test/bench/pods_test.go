package bench

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/podlb/podlb/targets"
)

// podTimes is what the bench's own informer saw of one pod, stamped with
// the time of observation: pod conditions carry 1 s timestamps, too coarse
// for sub-second figures.
type podTimes struct {
	uid             types.UID
	name, app, node string
	ip              string
	seen            time.Time // first event
	containersReady time.Time // first seen ContainersReady=True
	gateTrue        time.Time // first seen podlb.io/load-balancer-ready=True
	terminating     time.Time // first seen with a deletion timestamp
	gone            time.Time // deleted
}

// podWatch records podTimes for every pod of a namespace.
type podWatch struct {
	factory informers.SharedInformerFactory
	stopCh  chan struct{}

	mu   sync.Mutex
	pods map[types.UID]*podTimes
}

func watchPods(ctx context.Context, client kubernetes.Interface, namespace string) (*podWatch, error) {
	w := &podWatch{stopCh: make(chan struct{}), pods: map[types.UID]*podTimes{}}
	w.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	inf := w.factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj, false) },
		UpdateFunc: func(_, obj any) { w.observe(obj, false) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			w.observe(obj, true)
		},
	})
	if err != nil {
		return nil, err
	}
	w.factory.Start(w.stopCh)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		w.stop()
		return nil, errors.New("pod informer did not sync")
	}
	return w, nil
}

func (w *podWatch) stop() {
	close(w.stopCh)
	w.factory.Shutdown()
}

func (w *podWatch) observe(obj any, deleted bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pods[pod.UID]
	if p == nil {
		p = &podTimes{uid: pod.UID, name: pod.Name, app: pod.Labels["app"], seen: now}
		w.pods[pod.UID] = p
	}
	p.node = pod.Spec.NodeName
	if pod.Status.PodIP != "" {
		p.ip = pod.Status.PodIP
	}
	if c := targets.PodCondition(pod, corev1.ContainersReady); c != nil && c.Status == corev1.ConditionTrue && p.containersReady.IsZero() {
		p.containersReady = now
	}
	if c := targets.PodCondition(pod, targets.GateConditionType); c != nil && c.Status == corev1.ConditionTrue && p.gateTrue.IsZero() {
		p.gateTrue = now
	}
	if pod.DeletionTimestamp != nil && p.terminating.IsZero() {
		p.terminating = now
	}
	if deleted {
		p.gone = now
		if p.terminating.IsZero() {
			p.terminating = now
		}
	}
}

// snapshot copies every record.
func (w *podWatch) snapshot() []podTimes {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]podTimes, 0, len(w.pods))
	for _, p := range w.pods {
		out = append(out, *p)
	}
	return out
}

// live counts pods not terminating, and of those the ones gated True.
func (w *podWatch) live() (live, gated int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.pods {
		if p.terminating.IsZero() {
			live++
			if !p.gateTrue.IsZero() {
				gated++
			}
		}
	}
	return live, gated
}

// present counts pods that exist at all, terminating ones included.
func (w *podWatch) present() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, p := range w.pods {
		if p.gone.IsZero() {
			n++
		}
	}
	return n
}
