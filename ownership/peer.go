package ownership

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
	// Key is the key whose count is checked. The Router sends only keys that
	// passed config.CheckKey, as the middleware's do.
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
	// own for a while (see Owner). 0 asks for none.
	Want int
	// GiveBack is how many hits of an earlier lease went unused and are
	// given back, from the window that began at GiveBackStart (the owner's
	// time).
	GiveBack      int
	GiveBackStart time.Time
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
	// TookBack is, for an item with GiveBack, how many hits the owner took
	// off, or -1 if it holds no count for the key (yet): the count may be
	// on its way to it, so give them back again later.
	TookBack int
}

// Peer is a node that owns some keys; Check asks it to count a batch of
// items and returns one Result per item, in order. Package peer's Client
// is the Peer that speaks gRPC; tests use fakes.
//
// Check is called from a Batcher's goroutine; ctx bounds how long it waits,
// and when it ends first the error wraps ctx.Err() (errors.Is matches
// context.DeadlineExceeded). An error means none of the items is known to
// have been counted.
type Peer interface {
	Check(ctx context.Context, items []Item) ([]Result, error)
}

// PeerSource looks up the Peer for a member name. The Router calls Peer
// from request goroutines, the first time it forwards to a member after
// NewRouter or Forget; it must be safe for concurrent use and must not
// block (no I/O: connect lazily).
type PeerSource interface {
	// Peer returns the Peer for the member called name, and false if there
	// is none (yet).
	Peer(name string) (Peer, bool)
}
