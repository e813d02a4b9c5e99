package ownership

import (
	"sync"
	"time"
)

// Slot leases: for a key it does not own, a node asks the owner, with a
// job's slot, for a few slots more that it may then give its next jobs of
// the key without a round trip, and take back from them when they end.
// The owner holds them, as it holds the job's, until the node gives each
// back (or fails), so a lease of slots, like one of hits, moves capacity
// from the owner's table to a node, it never creates any: at no instant do
// more than the limit's jobs run. An owner grants slots only while the key
// has many free (grantSize: at most free / (leaseParts × members)), so a
// small limit (2 jobs) is never leased and each of its jobs asks the owner.
const (
	// MaxSlotLease caps the slots one item asks for beyond its job's.
	MaxSlotLease = 256
	// firstSlotWant is what a node asks for with a job's slot when it
	// holds no lease on the key.
	firstSlotWant = 2
)

// slotLease is what a node holds of one key's slots at its owner: slot ids
// the owner counts as held, free for this node's next jobs, and how many
// of its ids jobs hold now. It ends when unused for a lease's time, when
// the key's limit or owner changes, or when its slots' deadline nears; the
// free ids then go back to the owner, and those in use go back as their
// jobs end. Safe for concurrent use.
type slotLease struct {
	owner string
	limit int
	until time.Time // the ids' deadline at the owner

	mu    sync.Mutex
	free  []uint64
	used  int
	last  time.Time // last taken or given back: idle since
	ended bool
	dry   bool // a job found no free id: ask for more next time
}

// take gives a job one of l's free ids at now, for key's limit, if l is
// the lease for it; held is then how many of l's ids are in use (for the
// decision's Remaining, which is what this node holds).
func (l *slotLease) take(now time.Time, limit int) (id uint64, free int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended || l.limit != limit || !now.Before(l.until) {
		return 0, 0, false
	}
	if len(l.free) == 0 {
		l.dry = true
		return 0, 0, false
	}
	id = l.free[len(l.free)-1]
	l.free = l.free[:len(l.free)-1]
	l.used++
	l.last = now
	return id, len(l.free), true
}

// put gives id back to l's free ids at now, and reports whether l took it:
// false once l has ended (the caller gives id back to the owner).
func (l *slotLease) put(now time.Time, id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.used--
	if l.ended {
		return false
	}
	l.free = append(l.free, id)
	l.last = now
	return true
}

// add adds the ids a grant gave, which follow base.
func (l *slotLease) add(now time.Time, base uint64, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return false
	}
	for i := range n {
		l.free = append(l.free, base+uint64(i)+1)
	}
	l.last = now
	return true
}

// want returns how many slots to ask for with a job's next slot: more when
// the lease ran dry, so that a key whose jobs keep this node busy holds
// about twice what it uses.
func (l *slotLease) want() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.dry {
		return 0
	}
	l.dry = false
	return min(max(firstSlotWant, l.used), MaxSlotLease)
}

// end ends l and returns its free ids, to be given back to the owner; ok
// is false if it had ended already.
func (l *slotLease) end() ([]uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return nil, false
	}
	l.ended = true
	free := l.free
	l.free = nil
	return free, true
}

// idle reports whether l, at now, has had no job for ttl, or its ids'
// deadline is within ttl.
func (l *slotLease) idle(now time.Time, ttl time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return (l.used == 0 && now.Sub(l.last) >= ttl) || !now.Add(ttl).Before(l.until)
}
