package bucket

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Slots counts, per key, the jobs that run at once: a concurrency limit.
// A job takes a slot when it is admitted and gives it back when it ends.
// Unlike a Store's counts, slots do not decay with a window: a slot is
// held until it is released, or until its deadline, so that one whose
// release never comes (a client gone, a process that lost track of it)
// does not hold its key's slot for ever. Each slot names its holder, the
// node that admitted the job, so that all the slots of a node that failed
// can be given back at once.
//
// The zero value is not usable; use NewSlots. A Slots is safe for
// concurrent use.
type Slots struct {
	seed   maphash.Seed
	shards [slotShards]slotShard
	nextID atomic.Uint64
}

// slotShards is how many locks the keys are spread over.
const slotShards = 16

type slotShard struct {
	// mu guards m.
	mu sync.Mutex
	// m holds each key's slots, in no order. A key that holds none
	// keeps its slice, so that its next job takes a slot without an
	// allocation, until Sweep forgets it.
	m map[string][]slot
}

// slot is one job's slot.
type slot struct {
	id     uint64
	holder string
	until  int64 // Unix nanoseconds: the slot ends then if not released
}

// NewSlots returns an empty Slots.
func NewSlots() *Slots {
	s := &Slots{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string][]slot)
	}
	return s
}

func (s *Slots) shardOf(key string) *slotShard {
	return &s.shards[maphash.String(s.seed, key)%slotShards]
}

// Acquire takes a slot of key for holder at now, if fewer than limit are
// held, for until at the latest. It returns the slot's id, never 0, and
// how many slots of key are held with it; or, when the key has limit
// slots held already, id 0 and that number. Slots past their deadline are
// not counted.
func (s *Slots) Acquire(now time.Time, key, holder string, limit int, until time.Time) (id uint64, held int) {
	return s.AcquireID(now, key, holder, s.nextID.Add(1), limit, until)
}

// AcquireID is Acquire with the slot's id chosen by the caller (another
// node, which may send the same request again): id must not be 0, and a
// slot of key with that id held already is kept as it is and its id
// returned, so taking it again takes nothing more.
func (s *Slots) AcquireID(now time.Time, key, holder string, id uint64, limit int, until time.Time) (uint64, int) {
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur := live(sh.m[key], now.UnixNano())
	for i := range cur {
		if cur[i].id == id {
			sh.m[key] = cur
			return id, len(cur)
		}
	}
	if id == 0 || len(cur) >= limit {
		sh.m[key] = cur
		return 0, len(cur)
	}
	cur = append(cur, slot{id: id, holder: holder, until: until.UnixNano()})
	sh.m[key] = cur
	return id, len(cur)
}

// Release gives back the slot id of key, and reports whether it was held
// (false: released already, ended at its deadline, or never taken).
func (s *Slots) Release(key string, id uint64) bool {
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	held := sh.m[key]
	for i := range held {
		if held[i].id == id {
			held[i] = held[len(held)-1]
			sh.m[key] = held[:len(held)-1]
			return true
		}
	}
	return false
}

// Held returns how many slots of key are held at now.
func (s *Slots) Held(now time.Time, key string) int {
	sh := s.shardOf(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return liveCount(sh.m[key], now.UnixNano())
}

// liveCount returns how many of held have not passed their deadline at n.
func liveCount(held []slot, n int64) int {
	c := 0
	for _, sl := range held {
		if sl.until > n {
			c++
		}
	}
	return c
}

// Total returns how many slots are held at now, of every key.
func (s *Slots) Total(now time.Time) int {
	n, c := now.UnixNano(), 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, held := range sh.m {
			c += liveCount(held, n)
		}
		sh.mu.Unlock()
	}
	return c
}

// ReleaseHolder gives back every slot holder holds, of every key, and
// returns how many: the holder failed or restarted, and its jobs with it.
func (s *Slots) ReleaseHolder(holder string) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for key, held := range sh.m {
			kept := held[:0]
			for _, sl := range held {
				if sl.holder == holder {
					n++
					continue
				}
				kept = append(kept, sl)
			}
			sh.m[key] = kept
		}
		sh.mu.Unlock()
	}
	return n
}

// Sweep ends every slot past its deadline at now and forgets the keys that
// hold none; it returns how many slots it ended.
func (s *Slots) Sweep(now time.Time) int {
	n, ended := now.UnixNano(), 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for key, held := range sh.m {
			kept := live(held, n)
			ended += len(held) - len(kept)
			if len(kept) == 0 {
				delete(sh.m, key)
				continue
			}
			sh.m[key] = kept
		}
		sh.mu.Unlock()
	}
	return ended
}

// live returns held without the slots past their deadline at n, in place.
func live(held []slot, n int64) []slot {
	kept := held[:0]
	for _, sl := range held {
		if sl.until > n {
			kept = append(kept, sl)
		}
	}
	return kept
}

// Slot is one held slot, as it moves to another Slots (a key's new owner).
type Slot struct {
	Key    string
	ID     uint64
	Holder string
	Until  time.Time
}

// Take removes and returns the slots held at now of every key for which
// keep reports false: keys about to be held elsewhere.
func (s *Slots) Take(now time.Time, keep func(key string) bool) []Slot {
	n := now.UnixNano()
	var out []Slot
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for key, held := range sh.m {
			if keep(key) {
				continue
			}
			for _, sl := range held {
				if sl.until > n {
					out = append(out, Slot{Key: key, ID: sl.id, Holder: sl.holder, Until: time.Unix(0, sl.until)})
				}
			}
			delete(sh.m, key)
		}
		sh.mu.Unlock()
	}
	return out
}

// Put holds sl, whatever its key's limit (it was admitted elsewhere), unless
// a slot of its key with its id is held already.
func (s *Slots) Put(sl Slot) {
	sh := s.shardOf(sl.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	held := sh.m[sl.Key]
	for i := range held {
		if held[i].id == sl.ID {
			return
		}
	}
	sh.m[sl.Key] = append(held, slot{id: sl.ID, holder: sl.Holder, until: sl.Until.UnixNano()})
}
