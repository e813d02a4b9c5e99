package forward

import (
	"context"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// MaxCheckItems is the most items one call to a Peer may carry; a Batcher
// keeps its batches within it, and the owner refuses a larger batch.
const MaxCheckItems = 10_000

// Item is one check to make at a key's owner.
type Item struct {
	// Key is the key whose count is checked. Package ownership's Router
	// sends only keys that pass config.CheckCounterKey: API keys, as the
	// middleware's are, and their counter keys.
	Key string
	// Hits is how many hits to add if they fit: at least 1, or 0 for an
	// item that only asks for a lease or gives one back.
	Hits int
	// Limit is the limit in force for Key now, per window: at least 1.
	Limit int
	// Window is the sender's counting window. The owner refuses an item
	// whose Window differs from its own, since every node must count in the
	// same window.
	Window time.Duration
	// Want asks for a lease: hits the sender would like to admit on its
	// own for a while (see ownership.Owner). 0 asks for none.
	Want int
	// LeaseID names the sender's lease on Key, as the owner's grant named
	// it: with Want, the lease to renew (0: a new one); with GiveBack, the
	// lease whose hits are given back.
	LeaseID uint64
	// GiveBack is how many hits of lease LeaseID went unused and are given
	// back, from the window that began at GiveBackStart (the owner's
	// time), as the lease ends. GiveBackNonce names this give-back: the
	// owner takes back at most what the lease has out, once per nonce, so
	// a give-back sent twice counts once.
	GiveBack      int
	GiveBackStart time.Time
	GiveBackNonce uint64
	// Left, with Reported, is how many hits lease LeaseID, counted in the
	// window that began at GiveBackStart, had left to spend at the sender
	// when it sent the item: a report (the item may carry nothing else) or
	// a renewal's. If the sender fails or restarts, the owner takes what
	// it last said was left off the key's count (see Owner.Members).
	Left     int
	Reported bool
	// From is the sending process, as its call said (package peer takes it
	// from the call's metadata); the owner records it with the leases it
	// grants. Zero if the call did not say: those leases are never credited
	// back.
	From Holder
	// Deadline is when the sender stops waiting for the answer and decides
	// the check itself, on the sender's clock; zero for none. An owner that
	// gets the item later than Deadline plus the cluster's clock offset
	// counts none of its hits and grants nothing (see
	// ownership.Owner.Decide): the sender has decided them already.
	Deadline time.Time
	// AcquireSlot, if not 0, takes a concurrency slot of Key under Limit
	// with this id, the sender's choice, until ReleaseSlot names it or
	// AcquireUntil (the sender's clock) passes. Sent again, the same id
	// takes nothing more. The slot is From's: the owner gives it back if
	// From fails or restarts.
	AcquireSlot  uint64
	AcquireUntil time.Time
	// ReleaseSlot, if not 0, gives back Key's slot with this id.
	ReleaseSlot uint64
	// SlotHolder, with AcquireSlot, hands over a slot from the key's
	// previous owner: the owner holds it for SlotHolder (Owner's holder
	// name), whatever the limit.
	SlotHolder string
	// WantSlots, with AcquireSlot, asks for up to that many slots more, a
	// lease of slots, with the ids that follow AcquireSlot.
	WantSlots int
	// Refund gives back hits counted for Key at the owner in the window
	// that began at GiveBackStart (a cost settled lower than reserved),
	// once per item: a sender sends each refund once.
	Refund int
	// Read asks for Key's state under Limit without counting anything (a
	// check of no cost).
	Read bool
}

// Holder names the sending process of an item: its member name and boot
// id, as its call said. An owner records it with the leases it grants.
type Holder struct {
	Name, Boot string
}

// Result is the owner's answer to one Item: its decision on the item's
// hits, and the lease it granted, if any.
type Result struct {
	bucket.Decision
	// Granted is how many hits the sender may admit on its own, already
	// counted at the owner; 0 when no lease was granted.
	Granted int
	// LeaseFor is how long the lease lasts unused, from the owner's
	// decision; the sender counts it from before it sent the item.
	LeaseFor time.Duration
	// WindowLeft is, with a lease, how long the window it was counted in
	// has left, from the owner's decision: a lease in use lasts until then
	// at most.
	WindowLeft time.Duration
	// LeaseID, with a lease, is its id: the Item's LeaseID when that lease
	// was renewed, else a new one. Give its hits back under it.
	LeaseID uint64
	// Expired reports that the item came after its Deadline (and the
	// clock offset): nothing was counted or granted, though a give-back
	// was taken.
	Expired bool
	// TookBack is, for an item with GiveBack, how many hits the owner took
	// off: at most what the lease had out, 0 for a give-back taken already
	// or a lease it has no record of (granted by another owner, or forged).
	TookBack int
	// Slot is, for an item with AcquireSlot, the slot's id when it was
	// taken, and 0 when Key held Limit slots already; SlotsHeld is how many
	// of Key's slots are held then, the new one included.
	Slot      uint64
	SlotsHeld int
	// GrantedSlots is, for an item with WantSlots, how many slots more
	// were taken for the sender: ids Slot+1 to Slot+GrantedSlots.
	GrantedSlots int
}

// Peer is a node that owns some keys; Check asks it to count a batch of
// items and returns one Result per item, in order. Package peer's Client
// is the Peer that speaks gRPC; tests use fakes.
//
// Check is called from a Batcher's goroutine; ctx bounds how long it waits,
// and when it ends first the error wraps ctx.Err() (errors.Is matches
// context.DeadlineExceeded). An error does not mean nothing was counted: a
// call that timed out may have been decided at the owner all the same. A
// check's hits may then count twice (once there, once in a local
// decision); a give-back sent again is safe, since the owner applies each
// lease's give-back at most once.
type Peer interface {
	Check(ctx context.Context, items []Item) ([]Result, error)
}

// PeerSource looks up the Peer for a member name. Package ownership's
// Router calls Peer from request goroutines, the first time it forwards to
// a member after ownership.NewRouter or Router.Forget; it must be safe for
// concurrent use and must not block (no I/O: connect lazily).
type PeerSource interface {
	// Peer returns the Peer for the member called name, and false if there
	// is none (yet).
	Peer(name string) (Peer, bool)
}
