// Package ownership gives every key one owner in the cluster and sends each
// check for a key to its owner, so a key has one count across all nodes.
//
// # The ring
//
// Package ring's Ring maps a key to a member name by bounded-load
// consistent hashing; every node must use the same parameters and the same
// member names, or nodes disagree about owners. The Router looks each key's
// owner up in the Ring it is given, which holds names only and is fed by
// whoever watches membership (package tierlimit connects cluster's callback
// to Ring.Set).
//
// # Forwarding
//
// A Router is the request path. For a key this node owns, it counts in the
// local bucket.Store (about a microsecond). For any other key, it asks the
// owner through package forward: a forward.Peer is a one-method interface
// (package peer's Client speaks gRPC to the owner; tests use fakes), looked
// up by name through a forward.PeerSource, and each peer the Router
// forwards to gets a forward.Batcher (at most one call in flight, and no
// fixed wait to fill a batch), a forward.Breaker (a peer whose calls keep
// failing is skipped for a cooldown) and, unless ForwardTimeout fixes the
// deadline, a forward.Deadline that adapts it to the peer's round trips
// (between ForwardTimeoutMin and ForwardTimeoutMax, 1 and 4 ms by
// default). This package imports no gRPC, TLS or protobuf.
//
// # The over-limit cache
//
// When an owner refuses a key until RetryAt, the Router remembers it and
// refuses that key at once until then, without asking: an abusive client
// hammering a refused key costs no forwards. The cache is bounded (100,000
// keys by default), sharded, and expires entries lazily. It is only used
// for a limit no higher than the one refused against, and ClearOverLimit
// empties it when the health state, and so the limits, change. A refusal
// served from the cache may be slightly stale: if the owner's count decays
// early (another window starts), the key waits until RetryAt anyway.
//
// # Falling back to a local share
//
// A check never fails and never waits past ForwardTimeout. When the owner
// times out, errors, is skipped by its breaker or is not known yet, the
// Router decides locally against ceil(limit / members), counted in a
// separate Fallback store so local-only counts never mix with the counts
// this node owns, and it reports a Warn log (at most one per peer per
// second) and an Observer event with the reason.
//
// This costs accuracy, within known bounds. While an owner is unreachable
// from the other n−1 nodes, each of them admits at most ceil(limit/n) of a
// key on top of what the owner itself counts, and no more than its part of
// what the owner last said the key had left, if it asked it lately. A
// forward that reaches the owner after its deadline (and the clock offset)
// is not counted there; one within it may count twice. When the ring
// changes, package handoff's Keeper moves the locally decided counts, and
// every count, to the keys' owners.
//
// # The pure core
//
// What a node knows about the keys it does not own (its leases, the owners'
// last answers, and the budget of a local decision) is the book: every
// rule of the remote path takes the time it decides at and returns what it
// decided; the Router around it does the I/O, the logging and the metrics.
//
// # Moving counts
//
// Package handoff keeps each count with its key's owner as members change:
// a hand-off when they join or leave, and copies every BackupInterval on
// the member that would own a key if its owner failed, where the key's new
// owner starts from when it does fail. Imports holds a key a node has just
// taken over to its share until the hand-off lands.
//
// # Use
//
// Package tierlimit wires this together: each node serves its Local store
// to peers, builds one ring.Ring and one Router, and passes the Router to the
// api middleware as its Checker. On membership changes it calls Ring.Set
// with the live member names and Router.Forget for members that left or
// moved; on a health change or a reload, Router.ClearOverLimit. It closes
// the Router on shutdown.
package ownership
