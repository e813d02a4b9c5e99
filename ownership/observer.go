package ownership

import (
	"time"
)

// Reasons a Router decides locally a check for a key it does not own, as
// passed to Observer.Fallback. They are stable: use them as metric labels.
const (
	// FallbackTimeout: the owner did not answer within the deadline.
	FallbackTimeout = "timeout"
	// FallbackError: the call to the owner failed.
	FallbackError = "error"
	// FallbackBreakerOpen: the owner failed repeatedly and is skipped for
	// a while.
	FallbackBreakerOpen = "breaker_open"
	// FallbackNoPeer: the forward.PeerSource does not know the owner (yet).
	FallbackNoPeer = "no_peer"
	// FallbackCanceled: the caller's ctx ended before the owner answered.
	FallbackCanceled = "canceled"
	// FallbackClosed: the Router is closed, or the owner was forgotten
	// while the check was in flight.
	FallbackClosed = "closed"
)

// How a Router decided a check, as CheckPath returns it: an index into
// Paths, whose names are stable metric labels.
const (
	// PathLocal ("local"): this node owns the key and counted it.
	PathLocal = iota
	// PathLease ("lease"): admitted from a lease this node holds, without
	// asking the owner.
	PathLease
	// PathForwarded ("forwarded"): the owner answered a check forwarded to
	// it.
	PathForwarded
	// PathCached ("cached"): refused from the owner's last answer,
	// remembered in the over-limit cache, without asking it.
	PathCached
	// PathFallback ("fallback"): decided locally against a share of the
	// limit because the owner could not be reached; Observer.Fallback
	// says why.
	PathFallback
)

// Paths returns the names of the paths CheckPath reports, by index: local,
// lease, forwarded, cached, fallback.
func (r *Router) Paths() []string {
	return []string{"local", "lease", "forwarded", "cached", "fallback"}
}

// Observer receives events for metrics. The Router calls it from request
// goroutines, once per event; its methods must be safe for concurrent use
// and must not block.
type Observer interface {
	// Forwarded reports a check sent to peer, how long it took until the
	// Router had an answer or gave up, and the error, if any.
	Forwarded(peer string, d time.Duration, err error)
	// Fallback reports a check for a key this node does not own that was
	// decided locally, and why: one of the Fallback… constants.
	Fallback(reason string)
	// OverLimitCacheHit reports a check refused from the over-limit cache,
	// without asking the owner.
	OverLimitCacheHit()
	// LeaseDecision reports a check admitted from a lease, without asking
	// the owner.
	LeaseDecision()
	// LeaseGranted reports a lease, or a renewal of one (renewal true),
	// granted to this node for hits hits.
	LeaseGranted(hits int, renewal bool)
	// LeaseEnded reports a lease that ended, why (one of the Lease…
	// constants), and the hits it left unused, given back to the owner.
	LeaseEnded(why string, unused int)
}

// Why leases end, as passed to Observer.LeaseEnded. They are stable: use
// them as metric labels.
const (
	// LeaseExpired: its time ran out with hits left.
	LeaseExpired = "expired"
	// LeaseRevoked: the limit in force changed (a new health state, a
	// reload, this side's share of a partition).
	LeaseRevoked = "revoked"
	// LeaseStopped: the node is stopping.
	LeaseStopped = "stopped"
	// LeaseMoved: the key is now this node's own.
	LeaseMoved = "moved"
	// LeaseNoRoom: the node holds MaxLeases leases already.
	LeaseNoRoom = "no_room"
)

// nopObserver is the Observer used when none is given.
type nopObserver struct{}

func (nopObserver) Forwarded(string, time.Duration, error) {}
func (nopObserver) Fallback(string)                        {}
func (nopObserver) OverLimitCacheHit()                     {}
func (nopObserver) LeaseDecision()                         {}
func (nopObserver) LeaseGranted(int, bool)                 {}
func (nopObserver) LeaseEnded(string, int)                 {}
