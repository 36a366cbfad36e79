package elbv2sim

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Call is one answered API call, as the journal keeps it: enough to
// assert on the order and count of calls a client made.
type Call struct {
	Op string
	// TargetGroupArn is the call's target group, when it names one.
	TargetGroupArn string
	// Targets are the target Ids of RegisterTargets and DeregisterTargets.
	Targets []string
	// AccessKeyID is the key the request was signed with (the SigV4
	// Credential), which tells apart clients sharing the emulator.
	AccessKeyID string
	At          time.Time
}

// journalSize bounds the journal; older calls are dropped.
const journalSize = 100_000

type journal struct {
	mu    sync.Mutex
	calls []Call
}

func (j *journal) add(c Call) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.calls) >= journalSize {
		j.calls = append(j.calls[:0], j.calls[len(j.calls)/2:]...)
	}
	j.calls = append(j.calls, c)
}

// Calls returns the calls answered without error since since, oldest
// first.
func (s *Server) Calls(since time.Time) []Call {
	s.journal.mu.Lock()
	defer s.journal.mu.Unlock()
	var out []Call
	for _, c := range s.journal.calls {
		if !c.At.Before(since) {
			out = append(out, c)
		}
	}
	return out
}

// accessKeyID reads the access key from a SigV4 Authorization header:
// "AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request, ...".
func accessKeyID(r *http.Request) string {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(cred, "/")
	return key
}
