package ownership

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/forward"
)

// Defaults of the adaptive forward deadline (RouterConfig.ForwardTimeoutMin
// and ForwardTimeoutMax).
const (
	// DefaultForwardTimeoutMin is the least a forwarded check waits for its
	// owner when the deadline adapts.
	DefaultForwardTimeoutMin = time.Millisecond
	// DefaultForwardTimeoutMax is the most a forwarded check waits for its
	// owner when the deadline adapts, and where it starts before the
	// Router has seen round trips to the owner: with the node's own work,
	// under the 5 ms a check may add to a request (docs/design.md argues
	// the number).
	DefaultForwardTimeoutMax = 4 * time.Millisecond
)

// forward sends it to owner over l and waits for the answer until l's
// deadline or ctx's end, whichever comes first, and feeds the round trip
// to the latency metric and the adaptive deadline.
func (r *Router) forward(ctx context.Context, l *link, owner string, it forward.Item) (forward.Result, error) {
	timeout := r.timeout(l)
	start := time.Now() // the deadline's clock, and the round trip's
	it.Deadline = start.Add(timeout)
	fctx, cancel := context.WithDeadline(ctx, it.Deadline)
	res, err := l.batcher.Check(fctx, it)
	cancel()
	took := time.Since(start)
	r.obs.Forwarded(owner, took, err)
	if l.deadline != nil && (err == nil || errors.Is(err, context.DeadlineExceeded)) {
		l.deadline.Record(took)
		if err != nil && ctx.Err() == nil {
			l.deadline.BackOff(timeout)
		}
	}
	return res, err
}

// timeout returns how long a check forwarded over l may wait.
func (r *Router) timeout(l *link) time.Duration {
	if l.deadline == nil {
		return r.forwardTimeout
	}
	return l.deadline.Timeout()
}

// Deadlines returns the deadline a check forwarded now to each peer the
// Router has forwarded to would get.
func (r *Router) Deadlines() map[string]time.Duration {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]time.Duration, len(r.links))
	for name, l := range r.links {
		out[name] = r.timeout(l)
	}
	return out
}

// rollDeadlines starts a new period of round trips for every peer's
// adaptive deadline. Run calls it every second.
func (r *Router) rollDeadlines() {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, l := range r.links {
		if l.deadline != nil {
			l.deadline.Roll()
		}
	}
}

// link returns the link to the peer called name, making it if needed, or
// nil and the reason there is none.
//
// The PeerSource is asked outside the lock, but a Forget may run between
// the answer and the lock (the member's address changed, and the Client
// the answer holds is released): then the lookup is made again under the
// lock, so that no link is ever made on a Client released before it.
func (r *Router) link(name string) (*link, string) {
	r.mu.RLock()
	l, closed, gen := r.links[name], r.closed, r.forgets
	r.mu.RUnlock()
	switch {
	case l != nil:
		return l, ""
	case closed:
		return nil, FallbackClosed
	}
	p, ok := r.peers.Peer(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, FallbackClosed
	}
	if l = r.links[name]; l != nil {
		return l, ""
	}
	if r.forgets != gen {
		p, ok = r.peers.Peer(name) // a PeerSource does no I/O
	}
	if !ok || p == nil {
		return nil, FallbackNoPeer
	}
	l = &link{breaker: forward.NewBreaker(r.breaker)}
	if r.forwardTimeout == 0 {
		l.deadline = forward.NewDeadline(r.forwardMin, r.forwardMax)
	}
	cfg := r.batch
	cfg.Report = func(err error) { r.report(name, l, err) }
	cfg.Abandoned = func(it forward.Item, res forward.Result, err error, sentAgo time.Duration) {
		r.abandoned(name, it, res, err, sentAgo)
	}
	l.batcher = forward.NewBatcher(p, cfg)
	r.links[name] = l
	return l, ""
}

// abandoned takes the fate of item it, whose check gave up before the
// answer: the owner's answer res, or err if there was none; its call was
// sent sentAgo. A lease is counted at the owner all the same: keep it,
// from when the call was sent. Hits were decided here
// meanwhile; if this node admitted one, it is owed to the owner's count,
// where it is now counted already, so it is owed no more; if it refused
// it, the owner counted a hit no client got, and this node may admit it
// (book.prepaid). From then on what is owed for the key may be settled
// (Awaiting). A slot asked of owner, and those it may have leased with
// it, are given back to it: this node took one of its own instead.
func (r *Router) abandoned(owner string, it forward.Item, res forward.Result, err error, sentAgo time.Duration) {
	if it.AcquireSlot != 0 {
		// The job's slot and any the owner leased with it: ids it never
		// took are given back for nothing.
		for i := range uint64(it.WantSlots) + 1 {
			r.queueRelease(owner, it.Key, it.AcquireSlot+i)
		}
		return
	}
	now := r.clock()
	if err == nil && it.Hits > 0 && res.Allowed {
		// Counted at the owner: if this node admitted the check, the hit
		// it owes goes; if it refused it (or sent the owner its hit
		// already), the hit is this node's to admit.
		took := 0
		if r.owed != nil {
			took, _ = r.owed.Give(now, it.Key, now, it.Hits)
		}
		if rest := it.Hits - took; rest > 0 {
			r.ended(r.book.prepaid(now, it.Key, it.Limit, res, rest)...)
		}
	}
	if err == nil && res.Granted > 0 && r.book.leases != nil {
		r.takeGrant(now.Add(-sentAgo), it.Key, it.Limit, res, it.Hits == 0)
	}
	if it.Hits > 0 {
		r.awaiting.done(it.Key)
	}
}

// Awaiting reports whether a check of key this node gave up on may still
// be counted at the owner: its answer has not come, nor has its call
// ended. The hits owed for key must wait (handoff.Config.Hold): sent now,
// they would count twice the hit the answer is about to settle.
func (r *Router) Awaiting(key string) bool { return r.awaiting.holds(key) }

// awaiting counts, per key, the checks given up on whose call has not
// ended. The zero value is empty and ready to use; it is safe for
// concurrent use. It is touched only when a check gives up on its owner.
type awaiting struct {
	mu sync.Mutex
	m  map[string]int
}

func (a *awaiting) add(key string) { a.bump(key, 1) }

// done ends one check of key. It may come before add (the answer raced
// the check's giving up): the count then goes below zero for a moment.
func (a *awaiting) done(key string) { a.bump(key, -1) }

// bump adds d to key's count, dropping it at zero.
func (a *awaiting) bump(key string, d int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[string]int)
	}
	if n := a.m[key] + d; n != 0 {
		a.m[key] = n
	} else {
		delete(a.m, key)
	}
}

func (a *awaiting) holds(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.m[key] > 0
}

// report feeds the outcome of one batch sent to the peer called name to
// its breaker. A batch cut short by Close says nothing about the peer.
func (r *Router) report(name string, l *link, err error) {
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		l.late.Store(0)
	}
	switch {
	case err == nil:
		l.breaker.Success()
		r.contacts.heard(name, r.clock())
	case errors.Is(err, forward.ErrClosed):
	case errors.Is(err, context.DeadlineExceeded) && l.late.Add(1)%lateWeight != 0:
		// A batch that missed its deadline of a few milliseconds says the
		// peer is busy, or the network is: the checks on it were decided
		// here already. Only lateWeight of them in a row count as one
		// failure, so that a busy moment does not send every check for the
		// peer's keys to local decisions for a whole cooldown, while a
		// paused peer (every batch late) is skipped within tens of
		// milliseconds all the same.
	case l.breaker.Failure(r.clock()):
		r.log.Warn("peer failing, skipping it for a while",
			slog.String("peer", name),
			slog.String("cooldown", r.breakerCooldown().String()),
			slog.Any("error", err))
	}
}

// lateWeight is how many batches in a row that missed their deadline count
// as one failure for the breaker (see report).
const lateWeight = 4

// Forget drops what the Router keeps for the peer called name: its
// forward.Batcher is closed (checks in flight to it are decided locally)
// and its forward.Breaker forgotten. Call it when the peer leaves the cluster or its address
// changes; the next check for a key it owns looks it up afresh.
func (r *Router) Forget(name string) {
	r.mu.Lock()
	l := r.links[name]
	delete(r.links, name)
	r.forgets++
	r.mu.Unlock()
	if l != nil {
		l.batcher.Close()
	}
}

// Breakers returns the state at now of the breaker of every peer the
// Router has forwarded to since it was made or the peer was forgotten.
func (r *Router) Breakers(now time.Time) map[string]forward.BreakerState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]forward.BreakerState, len(r.links))
	for name, l := range r.links {
		out[name] = l.breaker.State(now)
	}
	return out
}

// breakerCooldown returns the cooldown the Breakers use.
func (r *Router) breakerCooldown() time.Duration {
	return r.breaker.WithDefaults().Cooldown
}
