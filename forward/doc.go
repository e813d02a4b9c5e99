// Package forward is what a node needs to ask a key's owner over the
// wire, whoever decided that the key goes there: the Item to count and the
// Result that comes back, the Peer that answers them and the PeerSource
// that finds one by member name, and, for each peer, a Batcher, a Breaker
// and an adaptive Deadline. A Peer is a one-method interface (package
// peer's Client speaks gRPC to the owner; tests use fakes), so this package
// imports no gRPC, TLS or protobuf. Rings and routing are package
// ownership's: its Router decides where a check goes, and what to do when
// the owner does not answer.
//
// # Batching without a fixed wait
//
// Checks for one peer go through its Batcher, which keeps at most one call
// in flight. When nothing is in flight, a check is sent at once, alone;
// while a call is in flight, new checks queue, and the moment it returns
// the queue (up to MaxBatch items) goes out as the next call. A quiet
// system therefore pays one round trip per check and never waits for a
// timer, and a busy one pays one round trip per batch, the batch growing
// with the load. A whole-call failure fails every item of it.
//
// # The breaker
//
// Each peer has a Breaker, which counts failed calls to the peer (batches),
// not the checks waiting on them. After Failures failed calls in a row (3
// by default) the peer is skipped for Cooldown (1s); then one probe goes
// through, and its outcome closes the breaker or opens it again. While it
// is open, checks for the peer's keys cost no network time at all.
//
// # The adaptive deadline
//
// A Deadline bounds how long a check forwarded to one peer waits for it:
// twice the p99 of its recent round trips, within a minimum and a maximum,
// moved on once a period, and doubled at once when a check gives up, so a
// busy host is not given up on needlessly and a slow one still is.
package forward
