package ownership

import (
	"crypto/rand"
	"encoding/binary"
	"github.com/tierlimit/tierlimit/forward"
	"hash/maphash"
	"slices"
	"sync"
	"time"
)

// grants is an owner's record of the leases it granted: for each lease, by
// key and lease id, the window its hits were counted in, how many of them
// have not been given back, how many its holder had left to spend when it
// last said (see credit), who holds it, and the give-backs taken. A give-back names its
// lease and carries a nonce of its own: it takes back at most what the
// lease has out, once, so one whose answer was lost and is sent again takes
// nothing the second time, and a sender that holds no lease (or forges one)
// takes nothing at all. Lease ids are random, so knowing one is knowing the
// grant. A renewal granted while the lease's give-back is on its way (the
// sender ended the lease meanwhile) stays out, to be given back by the
// lease the sender makes of it.
//
// Records live until their window and the next have ended, when nothing
// can be given back to them any more; a shard drops its ended records as
// it takes new ones. It is safe for concurrent use.
type grants struct {
	seed   maphash.Seed
	window time.Duration
	shards [grantShards]grantShard
}

// grantShards is the number of independently locked shards, a power of two.
const grantShards = 32

// grantSweepEvery is how many records a shard takes between two sweeps of
// its ended ones.
const grantSweepEvery = 256

type grantShard struct {
	// mu guards m and adds.
	mu   sync.Mutex
	m    map[grantID]*grant
	adds int
}

type grantID struct {
	key string
	id  uint64
}

type grant struct {
	start  time.Time      // the owner's window the hits were counted in
	out    int            // hits granted and not given back
	left   int            // of out, what the holder had left to spend as last heard: its last report plus the grants since
	holder forward.Holder // who it was granted to; zero if the call did not say
	nonces []uint64       // the give-backs taken
}

func newGrants(window time.Duration) *grants {
	g := &grants{seed: maphash.MakeSeed(), window: window}
	for i := range g.shards {
		g.shards[i].m = make(map[grantID]*grant)
	}
	return g
}

func (g *grants) shard(key string) *grantShard {
	return &g.shards[maphash.String(g.seed, key)&(grantShards-1)]
}

// add records n more hits granted to h on key in the window that began at
// start, to the lease id if it has a record for that window (a renewal),
// or to a new lease; it returns the lease's id.
func (g *grants) add(now time.Time, key string, id uint64, start time.Time, n int, h forward.Holder) uint64 {
	sh := g.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r := sh.m[grantID{key, id}]; id != 0 && r != nil && r.start.Equal(start) {
		r.out += n
		r.left += n
		return id
	}
	if sh.adds++; sh.adds%grantSweepEvery == 0 {
		sh.sweep(now, g.window)
	}
	id = newID()
	sh.m[grantID{key, id}] = &grant{start: start, out: n, left: n, holder: h}
	return id
}

// report records that lease id on key, counted in the window that began at
// start, had left hits left to spend at its holder: what the holder spent
// is spent, and only the rest is credited back if it fails (see credit).
// A report that left a grant made since out only makes that rest smaller,
// never larger than what the lease has out.
func (g *grants) report(key string, id uint64, start time.Time, left int) {
	sh := g.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r := sh.m[grantID{key, id}]; r != nil && r.start.Equal(start) {
		r.left = min(max(left, 0), r.out)
	}
}

// credit is what a lease whose holder is gone had left: to be taken off
// key's count in the window that began at start.
type credit struct {
	key   string
	start time.Time
	hits  int
}

// credit drops the records of the leases whose holder gone reports gone
// (it failed, or restarted and lost them) and returns, for each, what it
// had left when its holder last said: hits counted that nobody will admit.
// What the holder admitted after it last said is not known here; its
// reports come every leaseSweep while it spends, which bounds that.
func (g *grants) credit(gone func(forward.Holder) bool) []credit {
	var out []credit
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		for id, r := range sh.m {
			if r.holder == (forward.Holder{}) || !gone(r.holder) {
				continue
			}
			if n := min(r.left, r.out); n > 0 {
				out = append(out, credit{key: id.key, start: r.start, hits: n})
			}
			delete(sh.m, id)
		}
		sh.mu.Unlock()
	}
	return out
}

// take applies give-back nonce of n hits of lease id on key, counted in
// the window that began at start, and returns how many hits it takes back:
// never more than the lease has out, and 0 for a give-back taken already or
// a lease it has no record of (never granted here).
func (g *grants) take(key string, id uint64, start time.Time, n int, nonce uint64) int {
	if id == 0 || n <= 0 {
		return 0
	}
	sh := g.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.m[grantID{key, id}]
	if r == nil || !r.start.Equal(start) || slices.Contains(r.nonces, nonce) {
		return 0
	}
	took := min(n, r.out)
	r.out -= took
	r.left = max(0, r.left-took)
	r.nonces = append(r.nonces, nonce)
	return took
}

// unspent returns how many hits its leases had left at their holders, as
// they last said.
func (g *grants) unspent() int {
	n := 0
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		for _, r := range sh.m {
			n += min(r.left, r.out)
		}
		sh.mu.Unlock()
	}
	return n
}

// len returns how many leases it keeps a record of.
func (g *grants) len() int {
	n := 0
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// sweep drops the records whose window and the next have ended by now.
// sh.mu must be held.
func (sh *grantShard) sweep(now time.Time, window time.Duration) {
	for id, r := range sh.m {
		if !now.Before(r.start.Add(2 * window)) {
			delete(sh.m, id)
		}
	}
}

// newID returns a random id, never 0: a lease's, or a give-back's nonce.
func newID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24 on)
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}
