// Package health holds the system state, NORMAL or DEGRADED, that decides
// which limit each tier gets.
//
// The state is a small value, State, kept by a Holder. Readers on the request
// path call Holder.Current, which is a single atomic load. Writers call Set (a
// local change, such as an operator's POST) or Merge (a state heard from a
// peer). Merge keeps whichever of two states has the higher (Version, Origin)
// pair, so any set of nodes that has seen the same writes holds the same
// state, whatever order they arrived in.
//
// A Version is a hybrid logical clock stamp (Kulkarni et al., "Logical
// Physical Clocks", 2014): the writer's wall time in milliseconds, with a
// logical counter for writes within one millisecond and for a clock that is
// behind what the writer has seen. So a write comes after every state its
// writer had seen, as with a Lamport clock, and also after every write made
// earlier in real time, within the clocks' skew: a node that restarted, or
// that sat on the small side of a partition, cannot lose a later write to a
// side that merely wrote more often. Merge refuses a state stamped more than
// the allowed clock offset ahead of its own clock, so no stamp can run the
// clock to its end. Carrying the state between nodes is left to package
// cluster.
package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Status is the system state that selects a tier's limit.
type Status uint8

const (
	// Normal means the GPUs have headroom: every tier gets its burst.
	Normal Status = iota
	// Degraded means the system sheds load: free traffic gets its degraded
	// limit and paid tiers keep their SLA limit.
	Degraded
)

// String returns "NORMAL" or "DEGRADED".
func (s Status) String() string {
	switch s {
	case Normal:
		return "NORMAL"
	case Degraded:
		return "DEGRADED"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// ErrUnknownStatus is returned by ParseStatus for anything but "NORMAL" or
// "DEGRADED".
var ErrUnknownStatus = errors.New(`status must be "NORMAL" or "DEGRADED"`)

// ParseStatus parses "NORMAL" or "DEGRADED" (exactly, upper case).
func ParseStatus(s string) (Status, error) {
	switch s {
	case "NORMAL":
		return Normal, nil
	case "DEGRADED":
		return Degraded, nil
	}
	return 0, ErrUnknownStatus
}

// MarshalText encodes the status as "NORMAL" or "DEGRADED".
func (s Status) MarshalText() ([]byte, error) {
	if s != Normal && s != Degraded {
		return nil, ErrUnknownStatus
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes "NORMAL" or "DEGRADED".
func (s *Status) UnmarshalText(b []byte) error {
	v, err := ParseStatus(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// State is one version of the system state. The zero value is NORMAL at
// version 0, the state every node starts in.
type State struct {
	Status Status `json:"status"`
	// Version is a hybrid logical clock stamp: the upper 48 bits are the
	// writer's wall time in milliseconds since the Unix epoch (see
	// Stamped), the lower 16 a logical counter. Each local write takes the
	// writer's clock, or one tick after the highest version it has seen if
	// that is later.
	Version uint64 `json:"version"`
	// Origin names the node that wrote this version; it breaks ties between
	// two writes with the same Version.
	Origin string `json:"origin"`
	// UpdatedAt is when the origin wrote it, by the origin's clock. It is for
	// people and is not used to order states.
	UpdatedAt time.Time `json:"updated_at"`
}

// logicalBits is the width of the logical part of a Version.
const logicalBits = 16

// stampAt returns the first Version of the millisecond of t.
func stampAt(t time.Time) uint64 {
	return uint64(max(t.UnixMilli(), 0)) << logicalBits
}

// nextStamp returns the Version of a write at now after prev: now's
// millisecond if it is later than prev, else the tick after prev (which
// moves into the next millisecond once the logical part is full).
func nextStamp(prev uint64, now time.Time) uint64 {
	if pt := stampAt(now); pt > prev {
		return pt
	}
	return prev + 1
}

// Stamped returns the wall time in s.Version, to the millisecond: when the
// write was made by its writer's clock, or later if the writer's clock was
// behind a state it had seen.
func (s State) Stamped() time.Time {
	return time.UnixMilli(int64(s.Version >> logicalBits)).UTC()
}

// Newer reports whether s wins over o under the merge rule: higher Version
// first, then higher Origin. A state is not newer than itself.
func (s State) Newer(o State) bool {
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.Origin > o.Origin
}

// maxEncoded bounds an encoded State so it always fits in a gossip packet
// next to memberlist's own messages.
const maxEncoded = 512

// Encode returns the wire form of s, a short JSON object.
func (s State) Encode() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		// Only an invalid Status can fail, and Holder never stores one.
		panic(fmt.Sprintf("health: encode %+v: %v", s, err))
	}
	return b
}

// Decode parses the wire form written by Encode. It rejects input longer than
// 512 bytes, unknown statuses and trailing data.
func Decode(b []byte) (State, error) {
	if len(b) > maxEncoded {
		return State{}, fmt.Errorf("decode health state: %d bytes, more than %d", len(b), maxEncoded)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("decode health state: %w", err)
	}
	return s, nil
}

// Holder keeps the current State of one node. It is safe for concurrent use;
// Current never blocks.
type Holder struct {
	origin string
	cur    atomic.Pointer[State]

	// mu serialises writers and guards listeners.
	mu        sync.Mutex
	listeners []func(State)
}

// NewHolder returns a Holder at the zero State (NORMAL, version 0) whose local
// writes carry origin, the node's unique name.
func NewHolder(origin string) *Holder {
	h := &Holder{origin: origin}
	h.cur.Store(&State{Status: Normal})
	return h
}

// Current returns the state in force. It is one atomic load and does not
// allocate.
func (h *Holder) Current() State { return *h.cur.Load() }

// Status returns the status in force; see Current.
func (h *Holder) Status() Status { return h.cur.Load().Status }

// Set writes status as a new local version stamped at now, tells the
// listeners, and returns the new state and whether its status differs
// from the one it replaced. It always writes, also when status is in force
// already: an operator's write must win over every earlier one, also one
// this node has not heard of yet (a DEGRADED on the other side of a
// partition, or one from before this node restarted).
func (h *Holder) Set(status Status, now time.Time) (s State, changed bool) {
	h.mu.Lock()
	cur := *h.cur.Load()
	s = State{Status: status, Version: nextStamp(cur.Version, now), Origin: h.origin, UpdatedAt: now.UTC()}
	h.cur.Store(&s)
	h.notify(s)
	h.mu.Unlock()
	return s, cur.Status != status
}

// ErrTooFarAhead is returned by Merge for a state stamped further ahead of
// the local clock than the allowed offset: either its writer's clock is
// wrong, or the state is forged.
var ErrTooFarAhead = errors.New("health: state stamped too far ahead of this node's clock")

// Merge adopts s, a state heard from a peer at now, if it is Newer than the
// current state, and reports whether it did; listeners hear of it only
// then. It refuses, with ErrTooFarAhead, a state stamped more than
// maxOffset after now (it is taken once the local clock has caught up, when
// the state comes again).
func (h *Holder) Merge(s State, now time.Time, maxOffset time.Duration) (bool, error) {
	if s.Status != Normal && s.Status != Degraded {
		return false, nil
	}
	if s.Version > stampAt(now.Add(maxOffset))|(1<<logicalBits-1) {
		return false, fmt.Errorf("%w: stamped %v, %v ahead", ErrTooFarAhead,
			s.Stamped().Format(time.RFC3339Nano), s.Stamped().Sub(now).Round(time.Millisecond))
	}
	h.mu.Lock()
	if !s.Newer(*h.cur.Load()) {
		h.mu.Unlock()
		return false, nil
	}
	h.cur.Store(&s)
	h.notify(s)
	h.mu.Unlock()
	return true, nil
}

// OnChange registers f to be called with every state this Holder adopts,
// from Set or Merge, after the new state is visible to Current. Calls are
// made one at a time, in the order the states were adopted, while the
// Holder's write lock is held: f must not block and must not call Set,
// Merge or OnChange.
func (h *Holder) OnChange(f func(State)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.listeners = append(h.listeners, f)
}

// notify calls the listeners; h.mu must be held.
func (h *Holder) notify(s State) {
	for _, f := range h.listeners {
		f(s)
	}
}
