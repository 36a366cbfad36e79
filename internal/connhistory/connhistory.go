// Package connhistory keeps an emulator's latest client connection records
// by client address, so that a test can ask where a failed request went.
package connhistory

// Log keeps the last Max records added, each under its client's address;
// with Max 0 it keeps none. Callers guard it.
type Log[R any] struct {
	Max      int
	order    []entry[R]
	byClient map[string]*R
}

type entry[R any] struct {
	client string
	rec    *R
}

// Add keeps r as client's latest record, forgetting the oldest beyond Max,
// and returns r; nil when no history is kept.
func (l *Log[R]) Add(client string, r *R) *R {
	if l.Max <= 0 {
		return nil
	}
	if l.byClient == nil {
		l.byClient = map[string]*R{}
	}
	if len(l.order) >= l.Max {
		// A client port used again has replaced the entry already.
		if old := l.order[0]; l.byClient[old.client] == old.rec {
			delete(l.byClient, old.client)
		}
		l.order = l.order[1:]
	}
	l.order = append(l.order, entry[R]{client: client, rec: r})
	l.byClient[client] = r
	return r
}

// Get returns client's latest record.
func (l *Log[R]) Get(client string) (*R, bool) {
	r, ok := l.byClient[client]
	return r, ok
}
