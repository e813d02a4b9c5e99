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
// side that merely wrote more often. Carrying the state between nodes is
// left to package cluster.
//
// # Clocks that are wrong
//
// That order is only as good as the clocks, so the package assumes a bound
// on how far apart they are, the max offset: the one the caller gives
// Merge (cluster.Config.MaxClockOffset), DefaultMaxOffset until then. A
// stamp further ahead of a node's clock than the max offset was made by a
// clock that was wrong, or was forged, and it does not count at that node:
//
//   - Merge refuses a peer's state so stamped, with ErrTooFarAhead, and
//     takes it if it comes again once the local clock has caught up. It
//     does not clamp the stamp to its clock: clamped by each receiver's
//     clock, one write would carry different versions on different nodes.
//   - A state the node holds that is so stamped (it wrote or took it while
//     its own clock was fast, and the clock has since been set back) ranks
//     below every state within the bound: the next state within it that
//     Merge hears replaces it, even an older one, so the node comes back to
//     the state the other nodes hold, who refused the stamp.
//   - Set stamps a write after the state the node holds only while that
//     state is within the bound; past it, from the clock alone. A node's
//     own stamps are thus never more than the max offset (and a tick)
//     ahead of its clock, and a write made once its clock is right is
//     taken by everyone.
//
// So a node whose clock runs an hour fast holds its own state while it is
// fast (the others refuse its writes, and package cluster counts and logs
// each refusal); once its clock is set right, its next exchange brings it
// back to the cluster's state, its next write wins everywhere, and nothing
// it stamped an hour ahead is left to win over the writes of that hour
// when the hour is up. A write made while the clock was fast is dropped:
// no node with a right clock took it, and its stamp says nothing true
// about when it was made. Among nodes whose clocks are within the bound
// nothing changes: the later write wins, equal versions go to the higher
// Origin, and nodes that heard the same writes hold the same state.
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
	// writer's clock, or one tick after the version of the state it holds
	// if that is later and no more than the max offset ahead of its clock.
	Version uint64 `json:"version"`
	// Origin names the node that wrote this version; it breaks ties between
	// two writes with the same Version.
	Origin string `json:"origin"`
	// UpdatedAt is when the origin wrote it, by the origin's clock. It is for
	// people and is not used to order states.
	UpdatedAt time.Time `json:"updated_at"`
	// Pinned reports whether a person wrote it (an admin POST of a status):
	// the cluster's load control leaves a pinned state alone until a write
	// hands control back. The zero state is not pinned.
	Pinned bool `json:"pinned,omitempty"`
	// Why says, for people, what made the write: at most MaxWhy bytes.
	Why string `json:"why,omitempty"`
}

// MaxWhy bounds State.Why; Write cuts a longer one.
const MaxWhy = 160

// Manual reports whether the automatic switch must leave s alone: a
// person pinned it, or it was written without a why, by a writer that
// knew no automatic switch (a node of an earlier version, or a state
// file it wrote), whose writes were all a person's. The zero state is not
// manual.
func (s State) Manual() bool { return s.Pinned || (s.Version != 0 && s.Why == "") }

// Stamped returns the wall time in s.Version, to the millisecond: when the
// write was made by its writer's clock, or later if the writer's clock was
// behind a state it had seen.
func (s State) Stamped() time.Time {
	return time.UnixMilli(int64(s.Version >> logicalBits)).UTC()
}

// Newer reports whether s wins over o under the merge rule: higher Version
// first, then higher Origin. A state is not newer than itself. It is the
// order among states within the max offset; Merge says how one past it
// ranks.
func (s State) Newer(o State) bool {
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.Origin > o.Origin
}

// TooFarAhead reports whether s is stamped more than maxOffset after now (a
// negative maxOffset is taken as none): at a node whose clock reads now,
// such a state does not count, Merge refuses it, and, held, it ranks below
// every state within the bound (see the package doc).
func (s State) TooFarAhead(now time.Time, maxOffset time.Duration) bool {
	return s.Version > horizon(now, maxOffset)
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

	// mu serialises writers and guards maxOffset and listeners.
	mu        sync.Mutex
	maxOffset time.Duration // the one last given to Merge
	listeners []func(State)
}

// NewHolder returns a Holder at the zero State (NORMAL, version 0) whose local
// writes carry origin, the node's unique name. It assumes DefaultMaxOffset
// until Merge is given a max offset.
func NewHolder(origin string) *Holder {
	h := &Holder{origin: origin, maxOffset: DefaultMaxOffset}
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
//
// The version is the tick after the state in force, or now's if that is
// later. When the state in force is stamped more than the max offset
// ahead of now, left by this node's clock before it was set back, the
// version is now's alone: a stamp carried on from there would be refused
// by every node whose clock is right (see the package doc).
func (h *Holder) Set(status Status, now time.Time) (s State, changed bool) {
	return h.Write(Write{Status: status}, now)
}

// Write is what a local write says besides its stamp: the status, whether
// a person pins it, and why it was made.
type Write struct {
	Status Status
	Pinned bool
	Why    string
}

// Write is Set with the write's Pinned and Why: it writes w.Status as a
// new local version stamped at now, and returns the new state and whether
// its status differs from the one it replaced. A Why longer than MaxWhy is
// cut.
func (h *Holder) Write(w Write, now time.Time) (s State, changed bool) {
	s, changed, _ = h.write(w, now, nil)
	return s, changed
}

// WriteIf is Write made only if the state in force is still expect: it
// reports ok false, and writes nothing, when another write or a merge
// came in between (an operator's pin, say, that a decision taken on expect
// must not overwrite).
func (h *Holder) WriteIf(w Write, now time.Time, expect State) (s State, changed, ok bool) {
	return h.write(w, now, &expect)
}

func (h *Holder) write(w Write, now time.Time, expect *State) (s State, changed, ok bool) {
	why := w.Why
	if len(why) > MaxWhy {
		why = why[:MaxWhy]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := *h.cur.Load()
	if expect != nil && cur != *expect {
		return cur, false, false
	}
	prev := cur.Version
	if prev > horizon(now, h.maxOffset) {
		prev = 0
	}
	s = State{Status: w.Status, Version: nextStamp(prev, now), Origin: h.origin, UpdatedAt: now.UTC(), Pinned: w.Pinned, Why: why}
	h.cur.Store(&s)
	h.notify(s)
	return s, cur.Status != w.Status, true
}

// ErrTooFarAhead is returned by Merge for a state stamped further ahead of
// the local clock than the allowed offset: either its writer's clock is
// wrong, or the state is forged.
var ErrTooFarAhead = errors.New("health: state stamped too far ahead of this node's clock")

// Merge adopts s, a state heard from a peer at now, if it is Newer than the
// current state, and reports whether it did; listeners hear of it only
// then. maxOffset is how far apart the cluster's clocks may be; a negative
// one is taken as none, and Set uses the one given last.
//
// Merge refuses, with ErrTooFarAhead, a state stamped more than maxOffset
// after now (it is taken once the local clock has caught up, when the
// state comes again). It adopts s, even if s is not Newer, when the
// current state is the one stamped more than maxOffset after now: this
// node wrote or took it while its clock was fast, and every node whose
// clock is right refuses it (see the package doc).
func (h *Holder) Merge(s State, now time.Time, maxOffset time.Duration) (bool, error) {
	if s.Status != Normal && s.Status != Degraded {
		return false, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.maxOffset = max(maxOffset, 0)
	limit := horizon(now, h.maxOffset)
	if s.Version > limit {
		return false, fmt.Errorf("%w: stamped %v, %v ahead", ErrTooFarAhead,
			s.Stamped().Format(time.RFC3339Nano), s.Stamped().Sub(now).Round(time.Millisecond))
	}
	if cur := *h.cur.Load(); !s.Newer(cur) && cur.Version <= limit {
		return false, nil
	}
	h.cur.Store(&s)
	h.notify(s)
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
