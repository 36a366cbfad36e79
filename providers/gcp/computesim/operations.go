package computesim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/proto"
)

// operation is one long-running mutation. Its effect (apply) runs when it
// completes, so a client that lists resources while an attach is in flight
// does not see the new endpoints yet — as on GCE, where controllers must
// track in-flight operations to avoid attaching twice.
type operation struct {
	pb     *computepb.Operation
	path   string
	method string
	apply  func() *apiError
	fail   *apiError
	done   chan struct{}
	due    time.Time
	seq    uint64
	doneAt time.Time
}

// opScope says where an operation lives: zones/{z}, regions/{r} or global.
type opScope struct {
	project string
	zone    string
	region  string
}

func (sc opScope) path() string {
	switch {
	case sc.zone != "":
		return fmt.Sprintf("projects/%s/zones/%s/operations", sc.project, sc.zone)
	case sc.region != "":
		return fmt.Sprintf("projects/%s/regions/%s/operations", sc.project, sc.region)
	}
	return fmt.Sprintf("projects/%s/global/operations", sc.project)
}

// startOpLocked creates an operation for a validated mutation. With no
// OperationDelay the mutation is applied before the call returns and the
// Operation is DONE; otherwise it stays RUNNING until due. Callers hold s.mu.
func (s *Server) startOpLocked(r *http.Request, sc opScope, opType, targetPath string, targetID uint64, apply func() *apiError) *computepb.Operation {
	name := fmt.Sprintf("operation-%d-%08x-%08x", time.Now().UnixMilli(), rand.Uint32(), rand.Uint32())
	path := sc.path() + "/" + name
	now := nowStamp()
	pb := &computepb.Operation{
		Kind:              proto.String("compute#operation"),
		Id:                proto.Uint64(newID()),
		Name:              proto.String(name),
		OperationType:     proto.String(opType),
		TargetLink:        proto.String(selfLink(targetPath)),
		Status:            computepb.Operation_RUNNING.Enum(),
		User:              proto.String("computesim@podlb.invalid"),
		Progress:          proto.Int32(0),
		InsertTime:        proto.String(now),
		StartTime:         proto.String(now),
		CreationTimestamp: proto.String(now),
		SelfLink:          proto.String(selfLink(path)),
	}
	if targetID != 0 {
		pb.TargetId = proto.Uint64(targetID)
	}
	if sc.zone != "" {
		pb.Zone = proto.String(selfLink(fmt.Sprintf("projects/%s/zones/%s", sc.project, sc.zone)))
	}
	if sc.region != "" {
		pb.Region = proto.String(selfLink(fmt.Sprintf("projects/%s/regions/%s", sc.project, sc.region)))
	}
	op := &operation{
		pb:     pb,
		path:   path,
		method: methodOf(r),
		apply:  apply,
		fail:   s.faults.operationFailure(methodOf(r)),
		done:   make(chan struct{}),
	}
	s.ops[path] = op
	s.pruneOpsLocked()
	if s.opts.OperationDelay <= 0 {
		s.completeOpLocked(op)
	} else {
		op.due = time.Now().Add(s.opts.OperationDelay)
		s.running++
		s.opq.push(op)
	}
	return proto.CloneOf(pb)
}

// admitOperation answers a mutation 403 rateLimitExceeded while max
// operations are in flight, with the message GCE gives for its concurrent
// operation limits (https://cloud.google.com/compute/operations-quota).
func (s *Server) admitOperation(r *http.Request, class string, max int) *apiError {
	if class != "write" || max <= 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running < max {
		return nil
	}
	return &apiError{http.StatusForbidden, "rateLimitExceeded",
		fmt.Sprintf("Quota on concurrent operations exceeded for project %s.", r.PathValue("project"))}
}

// pruneOpsLocked forgets operations that finished long ago, so long runs
// with many mutations keep bounded memory. GCE keeps them for a while too.
func (s *Server) pruneOpsLocked() {
	if len(s.ops) < 20000 {
		return
	}
	cutoff := time.Now().Add(-10 * time.Minute)
	for p, op := range s.ops {
		select {
		case <-op.done:
			if op.doneAt.Before(cutoff) {
				delete(s.ops, p)
			}
		default:
		}
	}
}

func (s *Server) completeOpLocked(op *operation) {
	select {
	case <-op.done:
		return
	default:
	}
	err := op.fail
	if err == nil {
		err = op.apply()
	}
	if !op.due.IsZero() {
		s.running--
	}
	pb := op.pb
	pb.Status = computepb.Operation_DONE.Enum()
	pb.Progress = proto.Int32(100)
	pb.EndTime = proto.String(nowStamp())
	if err != nil {
		pb.HttpErrorStatusCode = proto.Int32(int32(err.code))
		pb.HttpErrorMessage = proto.String(strings.ToUpper(http.StatusText(err.code)))
		pb.Error = &computepb.Error{Errors: []*computepb.Errors{{
			Code:    proto.String(operationErrorCode(err)),
			Message: proto.String(err.message),
		}}}
		s.logf("computesim: operation %s (%s) failed: %v", pb.GetName(), op.method, err)
	}
	s.stats.operation(op.method, err != nil)
	op.doneAt = time.Now()
	close(op.done)
}

func opPath(r *http.Request) string {
	return ResourcePath(strings.TrimPrefix(r.URL.Path, "/compute/v1/"))
}

func (s *Server) opGet(r *http.Request) (proto.Message, *apiError) {
	path := opPath(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.ops[path]
	if op == nil {
		return nil, errNotFound(path)
	}
	return proto.CloneOf(op.pb), nil
}

// opWait implements the .../operations/{op}/wait method: it returns when the
// operation is DONE or after about two minutes, whichever comes first.
func (s *Server) opWait(r *http.Request) (proto.Message, *apiError) {
	path := strings.TrimSuffix(opPath(r), "/wait")
	s.mu.Lock()
	op := s.ops[path]
	s.mu.Unlock()
	if op == nil {
		return nil, errNotFound(path)
	}
	t := time.NewTimer(2 * time.Minute)
	defer t.Stop()
	select {
	case <-op.done:
	case <-t.C:
	case <-r.Context().Done():
	case <-s.closeCh:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.CloneOf(op.pb), nil
}

// ---- delayed completion ----

// opQueue completes delayed operations in due order (ties in start order),
// from one goroutine, so mutations apply in the order they were accepted.
type opQueue struct {
	s    *Server
	mu   sync.Mutex
	h    opHeap
	seq  uint64
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

func newOpQueue(s *Server) *opQueue {
	q := &opQueue{s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *opQueue) push(op *operation) {
	q.mu.Lock()
	q.seq++
	op.seq = q.seq
	heap.Push(&q.h, op)
	q.mu.Unlock()
	q.poke()
}

// SetOperationDelay sets how long operations started from now on stay
// RUNNING (d > 0); those running end no later than d from now. Tests hold
// operations with a long delay and let them go with a short one.
func (s *Server) SetOperationDelay(d time.Duration) {
	if d <= 0 {
		d = time.Nanosecond
	}
	s.mu.Lock()
	s.opts.OperationDelay = d
	s.mu.Unlock()
	s.opq.endBy(time.Now().Add(d))
}

// endBy brings every queued operation due after latest forward to it.
func (q *opQueue) endBy(latest time.Time) {
	q.mu.Lock()
	for _, op := range q.h {
		if op.due.After(latest) {
			op.due = latest
		}
	}
	heap.Init(&q.h)
	q.mu.Unlock()
	q.poke()
}

// poke wakes the queue's goroutine to look at what is due again.
func (q *opQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *opQueue) stop() {
	close(q.quit)
	<-q.done
}

func (q *opQueue) run() {
	defer close(q.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var due []*operation
		now := time.Now()
		for len(q.h) > 0 && !q.h[0].due.After(now) {
			due = append(due, heap.Pop(&q.h).(*operation))
		}
		wait := time.Hour
		if len(q.h) > 0 {
			wait = time.Until(q.h[0].due)
		}
		q.mu.Unlock()
		if len(due) > 0 {
			q.s.mu.Lock()
			if !q.s.closing {
				for _, op := range due {
					q.s.completeOpLocked(op)
				}
			}
			q.s.mu.Unlock()
			continue
		}
		timer.Reset(wait)
		select {
		case <-q.quit:
			return
		case <-q.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

type opHeap []*operation

func (h opHeap) Len() int { return len(h) }
func (h opHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].seq < h[j].seq
}
func (h opHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *opHeap) Push(x any)   { *h = append(*h, x.(*operation)) }
func (h *opHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
