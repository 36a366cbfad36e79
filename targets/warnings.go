package targets

import (
	"sync"

	"github.com/podlb/podlb/providers"
)

// distinctWarnings remembers the problem of each kind's last Warning per
// binding, so a problem that persists across retries is one Event, and a
// new problem is news.
type distinctWarnings struct {
	mu   sync.Mutex
	last map[providers.BindingKey]map[string]string // kind -> problem
}

// novel records the binding's problem of this kind and reports whether it
// differs from the last one.
func (w *distinctWarnings) novel(k providers.BindingKey, kind, problem string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[providers.BindingKey]map[string]string{}
	}
	if w.last[k] == nil {
		w.last[k] = map[string]string{}
	}
	if w.last[k][kind] == problem {
		return false
	}
	w.last[k][kind] = problem
	return true
}

// clear makes the next message of this kind news again.
func (w *distinctWarnings) clear(k providers.BindingKey, kind string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last[k], kind)
	// Most bindings have no warning standing: keep no map for them.
	if len(w.last[k]) == 0 {
		delete(w.last, k)
	}
}

// forget drops everything remembered for the binding.
func (w *distinctWarnings) forget(k providers.BindingKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, k)
}
