// Package health holds the system state, NORMAL or DEGRADED, that decides
// which limit each tier gets.
//
// The state is a small value, State, kept by a Holder. Readers on the request
// path call Holder.Current, which is a single atomic load. Writers call Set (a
// local change, such as an operator's POST) or Merge (a state heard from a
// peer). Every local write bumps a Lamport version; Merge keeps whichever of
// two states has the higher (Version, Origin) pair, so any set of nodes that
// has seen the same writes holds the same state, whatever order they arrived
// in. Carrying the state between nodes is left to package cluster.
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
	// Version is a Lamport clock: each local write sets it one above the
	// highest version the writer has seen.
	Version uint64 `json:"version"`
	// Origin names the node that wrote this version; it breaks ties between
	// two writes with the same Version.
	Origin string `json:"origin"`
	// UpdatedAt is when the origin wrote it, by the origin's clock. It is for
	// people and is not used to order states.
	UpdatedAt time.Time `json:"updated_at"`
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

// Set writes status as a new local version, stamped with now, and tells the
// listeners. If status is already in force nothing changes and the current
// state is returned with changed false, so repeating a POST is harmless.
func (h *Holder) Set(status Status, now time.Time) (s State, changed bool) {
	h.mu.Lock()
	cur := *h.cur.Load()
	if cur.Status == status {
		h.mu.Unlock()
		return cur, false
	}
	s = State{Status: status, Version: cur.Version + 1, Origin: h.origin, UpdatedAt: now.UTC()}
	h.cur.Store(&s)
	h.notify(s)
	h.mu.Unlock()
	return s, true
}

// Merge adopts s if it is Newer than the current state and reports whether
// it did; listeners hear of it only then.
func (h *Holder) Merge(s State) bool {
	if s.Status != Normal && s.Status != Degraded {
		return false
	}
	h.mu.Lock()
	if !s.Newer(*h.cur.Load()) {
		h.mu.Unlock()
		return false
	}
	h.cur.Store(&s)
	h.notify(s)
	h.mu.Unlock()
	return true
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
