package ownership

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
)

// DefaultOverLimitCacheSize is the default bound on the over-limit cache.
const DefaultOverLimitCacheSize = 100_000

const (
	// answerShards is the number of independently locked shards of a
	// refusals cache, a power of two.
	answerShards = 32
	// answerSample is how many entries a full shard looks at to make room.
	answerSample = 16
)

// answers remembers what the owner last said about each key it was asked
// about: that it refused the key until some time, so that a node does not
// ask again in between (get); or how many hits the key had left, so that a
// node deciding locally while the owner cannot be reached does not give the
// key more than that (remaining). It is bounded, sharded, and safe for
// concurrent use. Expired entries are removed when they are looked up, or to
// make room.
type answers struct {
	seed     maphash.Seed
	window   time.Duration // the counting window, to carry a reset forward
	shardCap int           // 0: the cache is off
	shards   [answerShards]answerShard
}

type answerShard struct {
	// mu guards m.
	mu sync.Mutex
	m  map[string]answer
	_  [48]byte // keep neighbouring shards' locks on different cache lines
}

// answer is what the owner said about a key.
type answer struct {
	limit     int       // the limit the owner decided against
	retryAt   time.Time // refused until then; zero if it admitted the key
	resetAt   time.Time
	remaining int // hits left after the decision
}

// until returns when r lapses: when the key's window ends, or, for a
// refusal that lifts later, when it lifts. A refusal that lifted is kept
// until then too: the key had nothing left, and what it frees before its
// window ends is the owner's to decide, not a local decision's.
func (r answer) until() time.Time {
	if r.retryAt.After(r.resetAt) {
		return r.retryAt
	}
	return r.resetAt
}

// newAnswers returns an empty cache holding at most about size entries,
// for counts kept in windows of window; size ≤ 0 makes a cache that holds
// nothing.
func newAnswers(size int, window time.Duration) *answers {
	c := &answers{seed: maphash.MakeSeed(), window: window}
	if size > 0 {
		c.shardCap = max(1, (size+answerShards-1)/answerShards)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]answer)
	}
	return c
}

func (c *answers) shard(key string) *answerShard {
	return &c.shards[maphash.String(c.seed, key)&(answerShards-1)]
}

// get returns the refusal the owner would give a check of hits hits of key
// at now under limit, if one is known. A refusal made against a lower limit
// does not count for a higher one, nor one of more hits than the owner said
// were left for fewer (a cost): the check may fit.
func (c *answers) get(key string, hits, limit int, now time.Time) (bucket.Decision, bool) {
	if c.shardCap == 0 {
		return bucket.Decision{}, false
	}
	sh := c.shard(key)
	sh.mu.Lock()
	r, ok := sh.m[key]
	if ok && !now.Before(r.until()) {
		delete(sh.m, key)
		ok = false
	}
	sh.mu.Unlock()
	if !ok || r.retryAt.IsZero() || !now.Before(r.retryAt) || limit > r.limit || hits <= r.remaining { // a refusal holds until retryAt
		return bucket.Decision{}, false
	}
	reset := r.resetAt
	if !reset.After(now) && c.window > 0 {
		// The key's window ended since the owner answered, yet the decaying
		// previous window still refuses it: it is in the next window now.
		reset = reset.Add((now.Sub(reset)/c.window + 1) * c.window)
	}
	return bucket.Decision{Limit: limit, ResetAt: reset, RetryAt: r.retryAt}, true
}

// remaining returns how many hits the owner last said key had left under
// limit, and the end of the key's window it named, if it said so for this
// limit or a higher one and that window has not ended since: 0 after a
// refusal, until it lifts or the window ends, whichever is later.
func (c *answers) remaining(key string, limit int, now time.Time) (int, time.Time, bool) {
	if c.shardCap == 0 {
		return 0, time.Time{}, false
	}
	sh := c.shard(key)
	sh.mu.Lock()
	r, ok := sh.m[key]
	sh.mu.Unlock()
	if !ok || !now.Before(r.until()) || limit > r.limit {
		return 0, time.Time{}, false
	}
	if !r.retryAt.IsZero() {
		return 0, r.until(), true
	}
	return r.remaining, r.resetAt, true
}

// windowEnd returns the end of the key's window that the owner's last
// answer about key named, if one is kept.
func (c *answers) windowEnd(key string) (time.Time, bool) {
	if c.shardCap == 0 {
		return time.Time{}, false
	}
	sh := c.shard(key)
	sh.mu.Lock()
	r, ok := sh.m[key]
	sh.mu.Unlock()
	return r.resetAt, ok && !r.resetAt.IsZero()
}

// put remembers what the owner said about key under limit, d, at now. It
// keeps nothing for a decision that has lapsed already.
func (c *answers) put(key string, limit int, d bucket.Decision, now time.Time) {
	r := answer{limit: limit, resetAt: d.ResetAt, remaining: d.Remaining}
	if !d.Allowed {
		r.retryAt = d.RetryAt
	}
	if c.shardCap == 0 || !r.until().After(now) {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; ok {
		sh.m[key] = r
		return
	}
	if len(sh.m) >= c.shardCap {
		sh.evict(now)
	}
	sh.m[strings.Clone(key)] = r // do not pin the caller's buffer
}

// evict makes room in a full shard: it drops every expired entry among a
// sample, or else the sampled entry that expires first. sh.mu must be held.
func (sh *answerShard) evict(now time.Time) {
	var (
		soonest   string
		soonestAt time.Time
		have      bool // soonest is set
		seen      int
		freed     bool
	)
	for k, r := range sh.m { // map iteration starts at a random place
		if !now.Before(r.until()) {
			delete(sh.m, k)
			freed = true
		} else if !have || r.until().Before(soonestAt) {
			soonest, soonestAt, have = k, r.until(), true
		}
		seen++
		if seen >= answerSample {
			break
		}
	}
	if !freed && have {
		delete(sh.m, soonest)
	}
}

// clear forgets every entry.
func (c *answers) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// len returns the number of entries held, expired or not.
func (c *answers) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
