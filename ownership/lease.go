package ownership

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/forward"
)

// Leases: for a key it does not own, a node asks the owner for a share of
// the key's budget that it may then admit on its own, without a round trip
// per request. The owner counts what it grants at once, as taken, so that
// what all nodes admit never exceeds the limit, whatever the deadlines: a
// lease moves hits from one node's count to another's spending, it never
// creates any. What a lease leaves unused is given back to the window it
// was counted in.
const (
	// DefaultLeaseTTL is how long a lease lasts by default. Leases never
	// outlast the window they were counted in.
	DefaultLeaseTTL = time.Second
	// MaxLeaseHits caps what one item may ask for or give back; the owner
	// refuses more.
	MaxLeaseHits = 1 << 20
	// DefaultMaxLeases bounds the leases one node holds at once; past it,
	// checks for keys without a lease are forwarded as before.
	DefaultMaxLeases = 100_000

	// leaseParts: an owner grants at most remaining / (leaseParts × members)
	// at a time, so that the members asking at once cannot take the whole
	// rest between them, and near the limit (remaining < leaseParts ×
	// members) it grants nothing: each check then goes to the owner, and
	// the last hits of a window are decided exactly.
	leaseParts = 2
	// minLease is the shortest lease worth granting: a window about to end
	// gets none.
	minLease = 10 * time.Millisecond
	// firstWant is what a node asks for on a key it has no rate for yet,
	// and the least it asks for.
	firstWant = 8
	// leaseSpan is the part of a lease's time that what a node asks for
	// is meant to last at the rate it spends: renewals (at half the last
	// grant) keep a steady key supplied, and a node whose demand stops
	// holds little that others could have used.
	leaseSpan = 5
	// leaseShards is the number of independently locked shards of the
	// lease table, a power of two.
	leaseShards = 64
)

// lease is what a node holds of one key's budget: hits an owner granted it
// and counted, to admit on its own until they run out or the lease ends:
// when it has not been used for a lease's time (LeaseFor), or when the
// window the hits were counted in ends. Checks take hits with atomic
// operations only; grants merge into it under its table shard's lock, and
// Router.Run's sweep moves its end on while it is in use.
type lease struct {
	id    uint64    // the owner's id for it (forward.Result.LeaseID); 0 in a placeholder
	limit int       // the limit it was granted under: a check under another revokes it
	start time.Time // when the owner's window it was counted in began (the owner's clock)
	reset time.Time // when that window ends (the owner's clock), for decisions
	end   int64     // when that window ends, on this node's clock (Unix nanoseconds, early rather than late)

	left     atomic.Int64 // hits left to admit
	until    atomic.Int64 // when it ends unless used meanwhile, this node's Unix nanoseconds; never past end
	rest     atomic.Int64 // what the owner had left beyond every grant, at the last one
	last     atomic.Int64 // the last grant, for when to renew
	lastAt   atomic.Int64 // when it was asked for, this node's Unix nanoseconds
	lastLeft atomic.Int64 // hits left just after it: the rate is what went since
	seen     atomic.Int64 // hits left at the last sweep: fewer now means it is in use
	told     atomic.Int64 // hits left as last reported to the owner (Item.Left)
	renewing atomic.Bool  // a renewal is in flight
}

// newLease returns the lease of a grant r answering a check sent at sent
// (this node's clock) under limit, in windows of window.
func newLease(r forward.Result, limit int, sent time.Time, window time.Duration) *lease {
	l := &lease{id: r.LeaseID, limit: limit, start: r.ResetAt.Add(-window), reset: r.ResetAt,
		end: sent.Add(r.WindowLeft).UnixNano()}
	l.extend(r, sent)
	l.told.Store(int64(r.Granted)) // what the owner's record says
	return l
}

// extend adds grant r, answering a check sent at sent, to l.
func (l *lease) extend(r forward.Result, sent time.Time) {
	left := l.left.Add(int64(r.Granted))
	l.seen.Store(left)
	l.lastLeft.Store(left)
	l.lastAt.Store(sent.UnixNano())
	l.last.Store(int64(r.Granted))
	l.rest.Store(int64(r.Remaining))
	l.until.Store(min(l.end, max(l.until.Load(), sent.Add(r.LeaseFor).UnixNano())))
}

// report returns, if l's hits left changed since it was last reported to
// the owner, the report to send, and takes it as sent.
func (l *lease) report(key string, window time.Duration) (forward.Item, bool) {
	left := max(0, l.left.Load())
	if l.id == 0 || l.told.Swap(left) == left {
		return forward.Item{}, false
	}
	return forward.Item{Key: key, Limit: l.limit, Window: window, LeaseID: l.id, GiveBackStart: l.start, Left: int(left), Reported: true}, true
}

// keepAlive moves l's end to ttl after n, within its window, if it was used
// since the last call: a lease in use is not cut short, one left idle for
// ttl runs out and its hits go back.
func (l *lease) keepAlive(n int64, ttl time.Duration) {
	left := l.left.Load()
	if left < l.seen.Swap(left) {
		l.until.Store(min(l.end, max(l.until.Load(), n+int64(ttl))))
	}
}

// take admits hits hits at n (Unix nanoseconds) if l has that many left
// and has not ended, and returns how many it has left then. With hits 0 it
// admits if l has not ended and is not spent.
func (l *lease) take(n int64, hits int) (int, bool) {
	if n >= l.until.Load() {
		return 0, false
	}
	h := int64(max(hits, 0))
	for {
		v := l.left.Load()
		if v <= 0 || v < h {
			return 0, false
		}
		if h == 0 || l.left.CompareAndSwap(v, v-h) {
			return int(v - h), true
		}
	}
}

// dueForRenewal reports whether l, with left hits left, should be
// renewed: when three quarters of its last grant are spent, so that a
// steady key's renewal lands before it runs dry.
func (l *lease) dueForRenewal(left int) bool {
	return int64(left) <= l.last.Load()/4
}

// want returns what to ask for at n: what would last a fifth of a lease of
// ttl at the rate l was spent at since its last grant, so that a burst
// does not size the grants that follow it.
func (l *lease) want(n int64, ttl time.Duration) int {
	used := l.lastLeft.Load() - l.left.Load()
	el := n - l.lastAt.Load()
	if used <= 0 || el <= 0 {
		return firstWant
	}
	w := (used*int64(ttl/leaseSpan) + el - 1) / el
	return int(min(max(w, firstWant), MaxLeaseHits))
}

// drain empties l and returns the hits it had left: from then on it admits
// nothing, and whoever drains it gives those hits back.
func (l *lease) drain() int { return int(max(0, l.left.Swap(0))) }

// leases is a node's table of leases by key: sharded, bounded, safe for
// concurrent use.
type leases struct {
	seed   maphash.Seed
	max    int64
	n      atomic.Int64
	shards [leaseShards]leaseShard
}

type leaseShard struct {
	// mu guards m.
	mu sync.RWMutex
	m  map[string]*lease
	_  [40]byte // keep neighbouring shards' locks on different cache lines
}

func newLeases(max int) *leases {
	t := &leases{seed: maphash.MakeSeed(), max: int64(max)}
	for i := range t.shards {
		t.shards[i].m = make(map[string]*lease)
	}
	return t
}

func (t *leases) shard(key string) *leaseShard {
	return &t.shards[maphash.String(t.seed, key)&(leaseShards-1)]
}

// get returns key's lease, or nil.
func (t *leases) get(key string) *lease {
	sh := t.shard(key)
	sh.mu.RLock()
	l := sh.m[key]
	sh.mu.RUnlock()
	return l
}

// grant merges grant r, answering a check for key under limit sent at
// sent, into key's lease if it is the same lease (the owner renewed it:
// same id, limit and window), or
// makes it key's lease. It returns the lease it replaced, if any, for the
// caller to drain and give back; and false if the table is full and r was
// not taken (give its hits back too).
func (t *leases) grant(key string, limit int, r forward.Result, sent time.Time, window time.Duration) (*lease, bool) {
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old := sh.m[key]
	if old != nil && old.id == r.LeaseID && old.limit == limit && old.start.Equal(r.ResetAt.Add(-window)) {
		old.extend(r, sent)
		return nil, true
	}
	if old == nil {
		if t.n.Load() >= t.max {
			return nil, false
		}
		t.n.Add(1)
	}
	l := newLease(r, limit, sent, window)
	if old != nil && old.id == 0 && !old.pending() && old.limit == limit && old.start.Equal(l.start) {
		// Hits the owner counted outside any lease (book.prepaid): the
		// new lease carries them, as given back they would take nothing.
		l.left.Add(int64(old.drain()))
		old = nil // absorbed: it did not end
	}
	sh.m[key] = l
	return old, true
}

// asking returns key's lease, or, if it has none and the table has room,
// a placeholder with nothing granted yet; and whether the caller may ask
// the owner for a lease: it holds the lease's asking token (renewing) and
// must release it once the answer is in. At most one ask per key is in
// flight, so concurrent checks of a new key do not each bring a lease.
func (t *leases) asking(key string, limit int) (*lease, bool) {
	sh := t.shard(key)
	sh.mu.RLock()
	l := sh.m[key]
	sh.mu.RUnlock()
	if l == nil {
		sh.mu.Lock()
		if l = sh.m[key]; l == nil {
			if t.n.Load() >= t.max {
				sh.mu.Unlock()
				return nil, false
			}
			l = &lease{limit: limit}
			sh.m[key] = l
			t.n.Add(1)
		}
		sh.mu.Unlock()
	}
	return l, l.renewing.CompareAndSwap(false, true)
}

// renewalOf returns the id to send with a request for more of l under
// limit: l's, if it was granted under limit, so that the owner adds to it;
// else 0, for a new lease.
func (l *lease) renewalOf(limit int) uint64 {
	if l.limit != limit {
		return 0
	}
	return l.id
}

// pending reports whether l is a placeholder: nothing granted yet.
func (l *lease) pending() bool { return l.last.Load() == 0 }

// remove drops key's lease if it is still l, and reports whether it did.
func (t *leases) remove(key string, l *lease) bool {
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[key] != l {
		return false
	}
	delete(sh.m, key)
	t.n.Add(-1)
	return true
}

// removeIf drops every lease for which drop reports true, and calls gone
// with each, outside the table's locks.
func (t *leases) removeIf(drop func(key string, l *lease) bool, gone func(key string, l *lease)) {
	type kl struct {
		key string
		l   *lease
	}
	var out []kl
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, l := range sh.m {
			if drop(k, l) {
				delete(sh.m, k)
				t.n.Add(-1)
				out = append(out, kl{k, l})
			}
		}
		sh.mu.Unlock()
	}
	for _, e := range out {
		gone(e.key, e.l)
	}
}

// each calls f with every lease in the table, under its shard's read lock.
func (t *leases) each(f func(key string, l *lease)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		for k, l := range sh.m {
			f(k, l)
		}
		sh.mu.RUnlock()
	}
}

// len returns how many leases the table holds.
func (t *leases) len() int { return int(t.n.Load()) }
