package targets

import (
	"fmt"
	"sync"

	"github.com/podlb/podlb/providers"
)

// distinctWarnings remembers the last Warning per binding, so a failure
// that persists across retries is one Event, and a new message is news.
type distinctWarnings struct {
	mu   sync.Mutex
	last map[providers.BindingKey]string
}

// novel records msg for k and reports whether it differs from the last.
func (w *distinctWarnings) novel(k providers.BindingKey, msg string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[providers.BindingKey]string{}
	}
	if w.last[k] == msg {
		return false
	}
	w.last[k] = msg
	return true
}

func (w *distinctWarnings) forget(k providers.BindingKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.last, k)
}

// releaseFailedMessage says why a binding's group could not be released
// and, when only a person can fix it, the way out that does not wait for
// the cloud: letting go of the Service, whose group podlb's sweep deletes
// once nothing forwards to it any more.
func releaseFailedMessage(k providers.BindingKey, ref string, err error) string {
	msg := fmt.Sprintf("%s port %d: releasing %s: %v", k.Provider, k.Port, ref, err)
	if providers.IsUserError(err) {
		msg += fmt.Sprintf("; or delete the Service's finalizer %s to leave the group behind (podlb deletes it once nothing uses it)", Finalizer)
	}
	return msg
}
