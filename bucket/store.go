// Package bucket counts hits per key in sliding windows and decides whether
// more hits fit under a limit.
//
// A Store keeps, for every key, how many hits were admitted in the key's
// current window and in the window before it. The limit is not stored: the
// caller passes the limit in force with every Take, so a change of limit
// (NORMAL to DEGRADED and back) applies to the very next hit and loses
// nothing. A hit that is refused is not counted.
//
// Windows are anchored per key at the key's first hit, not at the wall clock,
// so keys do not all reset in the same instant. Within a window the count
// used for a decision is the sliding-window estimate
//
//	used = ceil(previous × (W − elapsed) / W) + current
//
// which weighs the previous window by the part of it that still lies inside
// the last W. A key with no previous window is counted exactly. The Store
// never reads the clock: every call takes now.
package bucket

import (
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default values for Config fields left at zero.
const (
	DefaultShards  = 64
	DefaultMaxKeys = 1_000_000
)

// Config configures a Store. Zero values mean the defaults.
type Config struct {
	// Window is the length of one counting window. Required, > 0.
	Window time.Duration
	// Shards is the number of independently locked shards, rounded up to a
	// power of two. Default 64.
	Shards int
	// MaxKeys caps the number of keys held at once, in the whole store, so
	// memory stays bounded whatever the key churn. Below it no key is ever
	// evicted. At it, a new key makes room: expired keys go first, else the
	// least used of a sample (the key with the fewest hits in its last
	// window), so a flood of new keys pushes out keys that barely started
	// and never one that used up its limit. The cap may be passed by one key
	// per empty shard and by inserts racing on different shards. Default
	// 1,000,000 (about 125 MB with 24-byte keys: BenchmarkStoreMemory).
	MaxKeys int
	// TrackChanges makes the store remember which keys it counted hits for
	// since the last call to Changed, so that their counts can be copied
	// elsewhere (a backup). Off by default; it costs a set insert for the
	// first hit of a key between two calls.
	TrackChanges bool
}

// Decision is the outcome of one Take. It is a plain value.
type Decision struct {
	// Allowed reports whether the hits were admitted and counted.
	Allowed bool
	// Limit is the limit the decision was made against.
	Limit int
	// Remaining is how many more hits fit under Limit right now, never below 0.
	Remaining int
	// ResetAt is the end of the key's current window: from then on the
	// current count becomes the previous one and starts to decay. One
	// window later, ResetAt plus Window, every hit counted so far has
	// decayed: with nothing else counted, the whole limit is free again.
	ResetAt time.Time
	// RetryAt is, for a refused decision, the earliest time at which the same
	// hits would be admitted if nothing else is counted before; zero when
	// Allowed.
	RetryAt time.Time
	// RefillAt is the earliest time at which more than Remaining hits fit
	// under Limit, if nothing else is counted before: when the decaying
	// count first frees another hit. It is zero when Remaining is Limit
	// already. For a single hit refused under a positive limit it equals
	// RetryAt. The count only decays while nothing is counted, so more
	// hits fit at any time from RefillAt on, and before it no more than
	// Remaining do.
	RefillAt time.Time
}

// entry is one key's counts. start is the Unix time in nanoseconds at which
// the key's current window began.
type entry struct {
	start int64
	prev  uint64
	cur   uint64
}

// sampleSize is how many keys a full shard looks at to pick one to evict.
const sampleSize = 16

type shard struct {
	// mu guards m and changed.
	mu      sync.Mutex
	m       map[string]entry
	changed map[string]struct{} // keys counted since Changed; nil unless tracking
	_       [32]byte            // keep neighbouring shards' locks on different cache lines
}

// Store is a sharded in-memory map from key to sliding-window counts. It is
// safe for concurrent use; calls for keys in different shards do not contend.
type Store struct {
	window  int64
	seed    maphash.Seed
	mask    uint64
	maxKeys int64
	shards  []shard
	keys    atomic.Int64 // keys held, in all shards
	evicted atomic.Uint64
}

// New returns an empty Store. It panics if cfg.Window is not positive, which
// is a programming error: the tiers loader rejects such a window first.
func New(cfg Config) *Store {
	if cfg.Window <= 0 {
		panic("bucket: Config.Window must be positive")
	}
	n := cfg.Shards
	if n <= 0 {
		n = DefaultShards
	}
	n = 1 << bits.Len(uint(n-1)) // round up to a power of two
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	s := &Store{
		window:  int64(cfg.Window),
		seed:    maphash.MakeSeed(),
		mask:    uint64(n - 1),
		maxKeys: int64(maxKeys),
		shards:  make([]shard, n),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]entry)
		if cfg.TrackChanges {
			s.shards[i].changed = make(map[string]struct{})
		}
	}
	return s
}

// Window returns the length of one counting window.
func (s *Store) Window() time.Duration { return time.Duration(s.window) }

// Take admits hits for key at now if they fit under limit, and counts them
// only then. hits ≤ 0 reads the key's state without changing it. A limit ≤ 0
// admits nothing. Take does not allocate except when it first sees a key.
func (s *Store) Take(now time.Time, key string, hits, limit int) Decision {
	n := now.UnixNano()
	h := uint64(max(hits, 0))
	lim := uint64(max(limit, 0))
	sh := &s.shards[s.shardOf(key)]

	sh.mu.Lock()
	e, ok := sh.m[key]
	if !ok {
		if h == 0 {
			sh.mu.Unlock()
			return Decision{Allowed: true, Limit: limit, Remaining: int(lim), ResetAt: time.Unix(0, n+s.window)}
		}
		e = entry{start: n}
	}
	e = s.advance(e, n)
	used := s.used(e, n)
	d := Decision{Limit: limit, ResetAt: time.Unix(0, e.start+s.window)}
	if h > 0 && used+h <= lim {
		e.cur += h
		used += h
		d.Allowed = true
		if ok {
			sh.m[key] = e
			sh.noteChange(key)
		} else {
			s.insert(sh, key, e, n)
		}
	} else if h == 0 {
		d.Allowed = used <= lim
	} else {
		d.RetryAt = time.Unix(0, s.retryAt(e, n, h, lim))
		if ok {
			sh.m[key] = e // keep the advanced window; counts are unchanged
		}
	}
	sh.mu.Unlock()
	if used < lim {
		d.Remaining = int(lim - used)
	}
	if more := uint64(d.Remaining) + 1; more <= lim {
		if more == h && !d.Allowed {
			d.RefillAt = d.RetryAt
		} else {
			d.RefillAt = time.Unix(0, s.retryAt(e, n, more, lim))
		}
	}
	return d
}

// insert adds key, which sh does not hold, with e, making room first if the
// store is full, and notes the change. sh.mu must be held.
func (s *Store) insert(sh *shard, key string, e entry, n int64) {
	if s.keys.Load() >= s.maxKeys {
		s.evict(sh, n)
	}
	key = strings.Clone(key) // do not pin the caller's buffer
	s.keys.Add(1)
	sh.m[key] = e
	sh.noteChange(key)
}

// shardOf returns the index of key's shard.
func (s *Store) shardOf(key string) uint64 { return maphash.String(s.seed, key) & s.mask }

// advance moves e's window forward so that it contains n.
func (s *Store) advance(e entry, n int64) entry {
	if n < e.start {
		return e // the clock stepped back: stay in the current window
	}
	k := (n - e.start) / s.window
	switch {
	case k == 0:
	case k == 1:
		e.prev, e.cur = e.cur, 0
	default:
		e.prev, e.cur = 0, 0
	}
	e.start += k * s.window
	return e
}

// used returns the sliding estimate of hits in the last window at n; e must
// have been advanced to n.
func (s *Store) used(e entry, n int64) uint64 {
	if e.prev == 0 {
		return e.cur
	}
	left := s.window - max(0, n-e.start) // part of the previous window still inside the last W
	return mulDivCeil(e.prev, uint64(left), uint64(s.window)) + e.cur
}

// retryAt returns the earliest time, as Unix nanoseconds, at which h more
// hits fit under lim if nothing else is counted; e must have been advanced
// to n and be refusing h at n. The estimate never grows as time goes on
// with nothing counted, so h hits fit at any time from then on.
func (s *Store) retryAt(e entry, n int64, h, lim uint64) int64 {
	w := uint64(s.window)
	// In the current window the previous count decays: find the first
	// elapsed time at which ceil(prev×(W−el)/W) + cur + h ≤ lim.
	if e.prev > 0 && e.cur+h <= lim {
		el := uint64(0)
		if room := mulDivFloor(lim-e.cur-h, w, e.prev); room < w {
			el = w - room
		}
		return max(n+1, e.start+int64(el))
	}
	// In the next window the current count becomes the previous one.
	if h > lim {
		return e.start + 2*s.window // never fits; point at a fresh window
	}
	if e.cur == 0 {
		return e.start + s.window
	}
	el := uint64(0)
	if room := mulDivFloor(lim-h, w, e.cur); room < w {
		el = w - room
	}
	return e.start + s.window + int64(el)
}

// evict makes room for a new key in sh, the store being full: it drops
// every expired key among a sample of sh, or else the sampled key with the
// fewest hits in its last window. A shard with nothing in it makes no room.
// sh.mu must be held.
func (s *Store) evict(sh *shard, n int64) {
	var (
		least     string
		leastUsed uint64
		seen      int
		freed     bool
	)
	for k, e := range sh.m { // map iteration starts at a random place
		if n-e.start >= 2*s.window {
			delete(sh.m, k)
			s.keys.Add(-1)
			freed = true
		} else if used := s.used(s.advance(e, n), n); seen == 0 || used < leastUsed {
			least, leastUsed = k, used
		}
		seen++
		if seen >= sampleSize {
			break
		}
	}
	if !freed && seen > 0 {
		delete(sh.m, least)
		s.keys.Add(-1)
		s.evicted.Add(1)
	}
}

// Sweep removes every key whose windows have both ended by now and returns
// how many it removed. Call it periodically (about once a window) so idle
// keys do not wait for eviction to be reclaimed. It locks one shard at a time.
func (s *Store) Sweep(now time.Time) int {
	n := now.UnixNano()
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if n-e.start >= 2*s.window {
				delete(sh.m, k)
				s.keys.Add(-1)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	return removed
}

// Len returns the number of keys held, expired or not. It does not lock.
func (s *Store) Len() int { return int(s.keys.Load()) }

// Evicted returns how many live keys were dropped to respect MaxKeys since
// the Store was made. Each such key starts afresh if it is seen again.
func (s *Store) Evicted() uint64 { return s.evicted.Load() }

// mulDivCeil returns ceil(a×b/c) without overflow for c > 0 and a×b/c < 2^64.
func mulDivCeil(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	q, r := bits.Div64(hi, lo, c)
	if r != 0 {
		q++
	}
	return q
}

// mulDivFloor returns floor(a×b/c), saturating at 2^64−1.
func mulDivFloor(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return ^uint64(0)
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}
