package controller

import (
	"slices"
	"sync"

	"github.com/go-logr/logr"
)

// DeferValues returns l with its WithValues and WithName kept aside until
// a line is written. controller-runtime gives every reconcile a logger of
// its own (the controller, the object, a reconcile id) and podlb adds the
// binding; zap encodes those values into a copy of its encoder at once, a
// thirtieth of the controller's CPU profile at rest, for reconciles that
// write no line. Values are read when the first line is written, so give
// ones that do not change. Levels are decided by l's sink as given: zap's
// do not depend on values or names.
func DeferValues(l logr.Logger) logr.Logger {
	base := l.GetSink()
	if base == nil {
		return l
	}
	// The deferring sink is one more frame between the caller and base.
	if cd, ok := base.(logr.CallDepthLogSink); ok {
		base = cd.WithCallDepth(1)
	}
	return logr.New(&deferredSink{base: base})
}

// deferredOp is one WithName (name set) or WithValues (values set).
type deferredOp struct {
	name   string
	values []any
}

// deferredSink is a sink whose values and names are given to base when
// the first line is written, once.
type deferredSink struct {
	base    logr.LogSink
	pending []deferredOp

	once  sync.Once
	built logr.LogSink
}

// Init does nothing: base was initialised by the logger it came from.
func (s *deferredSink) Init(logr.RuntimeInfo) {}

func (s *deferredSink) Enabled(level int) bool { return s.base.Enabled(level) }

func (s *deferredSink) Info(level int, msg string, keysAndValues ...any) {
	s.sink().Info(level, msg, keysAndValues...)
}

func (s *deferredSink) Error(err error, msg string, keysAndValues ...any) {
	s.sink().Error(err, msg, keysAndValues...)
}

func (s *deferredSink) WithValues(keysAndValues ...any) logr.LogSink {
	if len(keysAndValues) == 0 {
		return s
	}
	return s.with(deferredOp{values: keysAndValues})
}

func (s *deferredSink) WithName(name string) logr.LogSink {
	return s.with(deferredOp{name: name})
}

func (s *deferredSink) WithCallDepth(depth int) logr.LogSink {
	cd, ok := s.base.(logr.CallDepthLogSink)
	if !ok {
		return s
	}
	return &deferredSink{base: cd.WithCallDepth(depth), pending: s.pending}
}

// with derives a sink with op after s's own; Clip makes the append copy,
// as s's pending list may be shared with other derived sinks.
func (s *deferredSink) with(op deferredOp) logr.LogSink {
	return &deferredSink{base: s.base, pending: append(slices.Clip(s.pending), op)}
}

// sink is base with the pending values and names applied, built once.
func (s *deferredSink) sink() logr.LogSink {
	s.once.Do(func() {
		built := s.base
		for _, op := range s.pending {
			if op.values != nil {
				built = built.WithValues(op.values...)
			} else {
				built = built.WithName(op.name)
			}
		}
		s.built = built
	})
	return s.built
}
