package providers

// Refusal says what a failed call over a batch of targets means.
type Refusal int

const (
	// WholeCall: the call failed for a reason that is not about its
	// targets (throttled, transient, group not found); splitting the batch
	// cannot help.
	WholeCall Refusal = iota
	// SomeTargets: the cloud refuses one or more targets of the batch and
	// applies none of them.
	SomeTargets
	// GroupFull: the group has no room for the batch. Part of it may fit;
	// once a single target does not, no other one will in this pass.
	GroupFull
	// AlreadyApplied: the cloud refuses the batch because some of its
	// targets already are as wanted (attached, or gone), as a retry of a
	// call whose result was lost meets; it applies none of the others.
	// Such a target alone counts as applied.
	AlreadyApplied
)

// Isolator applies batches of targets with an all-or-nothing cloud call
// and, when a call fails because of some of its targets, splits the batch
// in halves down to single targets, so that every target the cloud accepts
// is applied and every refused one is named with its own error.
//
// A batch of n targets with k refused ones costs at most
// 1 + 2·k·⌈log₂ n⌉ calls, fewer because a half whose sibling went through
// whole is known to fail and is split without being sent.
type Isolator struct {
	// Apply makes one call over the targets.
	Apply func(ts []Target) error
	// Judge reads an error Apply returned.
	Judge func(err error) Refusal
	// Refused collects each refused target's error.
	Refused map[TargetKey]error

	// full is the error of the single target the group had no room for.
	full error
}

// Run applies ts. failed, when not nil, is the error a call over exactly ts
// just returned, so that call is not made again. Run returns the error of
// a call that failed as a whole, which stops it; targets already applied
// stay applied.
func (s *Isolator) Run(ts []Target, failed error) error {
	if s.Refused == nil {
		s.Refused = map[TargetKey]error{}
	}
	if len(ts) == 0 {
		return nil
	}
	if s.full != nil {
		// The group is full: what was not tried would be refused the same.
		for _, t := range ts {
			s.Refused[t.Key()] = s.full
		}
		return nil
	}
	err := failed
	if err == nil {
		if err = s.Apply(ts); err == nil {
			return nil
		}
	}
	refusal := s.Judge(err)
	switch {
	case refusal == WholeCall:
		return err
	case len(ts) == 1 && refusal == AlreadyApplied:
		return nil
	case len(ts) == 1:
		s.Refused[ts[0].Key()] = err
		if refusal == GroupFull {
			s.full = err
		}
		return nil
	}
	half := len(ts) / 2
	before := len(s.Refused)
	if err := s.Run(ts[:half], nil); err != nil {
		return err
	}
	// The first half went through whole, so the second holds what the
	// cloud refused: its call would fail as the whole batch's did. Not so
	// when the cause was targets already applied: they go through too.
	var known error
	if len(s.Refused) == before && refusal != AlreadyApplied {
		known = err
	}
	return s.Run(ts[half:], known)
}
