package ownership

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
)

// grantSize returns how many hits an owner grants to a member that wants
// want, when remaining hits are left in the key's window (after the
// member's own hits, if any) and the ring has members members: at most
// remaining / (leaseParts × members), and 0 with fewer than two members.
func grantSize(want, remaining, members int) int {
	if want <= 0 || members < 2 || remaining <= 0 {
		return 0
	}
	return min(want, remaining/(leaseParts*members))
}

// Owner decides, at a key's owner, the items other members send: it counts
// their hits, grants the leases they ask for and takes back what earlier
// leases left unused. peer.Server answers with it. It is safe for
// concurrent use.
type Owner struct {
	store      *bucket.Store
	grants     *grants
	slots      *bucket.Slots
	maxOffset  atomic.Int64 // how far apart the members' clocks may be; see SetMaxClockOffset
	imports    atomic.Pointer[Imports]
	members    func() int
	ttl        time.Duration // ≤ 0: grant no leases
	moved      atomic.Int64  // when the ring last changed, Unix nanoseconds; 0: never
	credited   atomic.Int64  // hits taken back from the leases of members that failed or restarted
	slotsFreed atomic.Int64  // slots given back for members that failed or restarted

	// mu guards alive.
	mu    sync.Mutex
	alive map[string]string // the members at the last Members call: boot id by name
}

// settleTime is how long after a change of members an Owner grants no
// leases: keys it took on may still be on their way to it (a hand-off, and
// its second pass 2 s later), and a grant made from a count that has not
// arrived yet would add to the hits a new owner admits before it does.
const settleTime = 2 * time.Second

// Moved tells the Owner the ring changed at now: for settleTime it decides
// every item's hits as they come and grants nothing.
func (o *Owner) Moved(now time.Time) { o.moved.Store(now.UnixNano()) }

// Settling reports whether, at now, the ring changed too recently for the
// Owner to grant leases.
func (o *Owner) Settling(now time.Time) bool {
	m := o.moved.Load()
	return m != 0 && now.UnixNano()-m < int64(settleTime)
}

// NewOwner returns an Owner counting into store. members returns how many
// members the ring has now (grants are sized by it). ttl is how long a
// lease lasts: 0 means DefaultLeaseTTL, negative grants none. It panics if
// store or members is nil.
func NewOwner(store *bucket.Store, members func() int, ttl time.Duration) *Owner {
	if store == nil || members == nil {
		panic("ownership: NewOwner needs a store and members")
	}
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	o := &Owner{store: store, grants: newGrants(store.Window()), slots: bucket.NewSlots(), members: members, ttl: ttl}
	o.maxOffset.Store(int64(DefaultMaxClockOffset))
	return o
}

// DefaultMaxClockOffset is how far apart an Owner takes the members' clocks
// to be until told otherwise (SetMaxClockOffset).
const DefaultMaxClockOffset = 500 * time.Millisecond

// SetImports makes the Owner hold the keys im says are being imported to
// their share (see Imports). Nil holds none.
func (o *Owner) SetImports(im *Imports) { o.imports.Store(im) }

// SetMaxClockOffset tells the Owner how far apart the members' clocks may
// be: an item that comes later than its Deadline plus d is not counted.
func (o *Owner) SetMaxClockOffset(d time.Duration) { o.maxOffset.Store(int64(max(d, 0))) }

// Slots returns the concurrency slots of the keys this node owns: those
// other members take through it (Item.AcquireSlot) and, for the Router of
// this node, its own.
func (o *Owner) Slots() *bucket.Slots { return o.slots }

// HolderOf names h as the holder of the slots it takes.
func HolderOf(h forward.Holder) string { return h.Name + "\x00" + h.Boot }

// Window returns the counting window of the Owner's store.
func (o *Owner) Window() time.Duration { return o.store.Window() }

// Decide answers it at now. Given-back hits are taken off first (no more
// than the lease they name has out, once per give-back), then the hits counted, then
// a lease granted if one was asked for, the hits (if any) were admitted,
// and the key has room for one: the granted hits are counted at once, in
// the key's current window, and the lease ends with that window at the
// latest.
//
// An item that comes later than its Deadline plus the clock offset is not
// counted: its sender gave up waiting and decided the check itself, so
// counting it here would count a hit twice, or one the client was refused
// (as when this owner was paused and wakes to a queue of checks its peers
// have long answered). Its give-back is still taken.
//
// A slot is given back (ReleaseSlot) before one is taken (AcquireSlot); an
// item that takes a slot does nothing else. A refund is taken off before
// anything is counted; an item that reads (Read) counts nothing. A slot taken is the sender's
// (From), given back when the sender fails or restarts (Members).
func (o *Owner) Decide(now time.Time, it forward.Item) forward.Result {
	if it.ReleaseSlot != 0 {
		o.slots.Release(it.Key, it.ReleaseSlot)
	}
	if it.AcquireSlot != 0 && it.SlotHolder != "" {
		o.slots.Put(bucket.Slot{Key: it.Key, ID: it.AcquireSlot, Holder: it.SlotHolder, Until: it.AcquireUntil})
		return forward.Result{Decision: bucket.Decision{Allowed: true, Limit: it.Limit}, Slot: it.AcquireSlot}
	}
	if it.AcquireSlot != 0 {
		if !it.Deadline.IsZero() && now.After(it.Deadline.Add(time.Duration(o.maxOffset.Load()))) {
			return forward.Result{Expired: true}
		}
		holder := HolderOf(it.From)
		id, held := o.slots.AcquireID(now, it.Key, holder, it.AcquireSlot, it.Limit, it.AcquireUntil)
		granted := 0
		if id != 0 && it.WantSlots > 0 && o.ttl > 0 && !o.Settling(now) {
			// A lease of slots: ids that follow the job's, held for the
			// sender until it gives each back.
			for n := grantSize(min(it.WantSlots, MaxSlotLease), it.Limit-held, o.members()); granted < n; granted++ {
				if got, h := o.slots.AcquireID(now, it.Key, holder, id+uint64(granted)+1, it.Limit, it.AcquireUntil); got == 0 {
					break
				} else {
					held = h
				}
			}
		}
		return forward.Result{Decision: bucket.Decision{Allowed: id != 0, Limit: it.Limit, Remaining: max(0, it.Limit-held)},
			Slot: id, SlotsHeld: held, GrantedSlots: granted}
	}
	if it.Reported && it.LeaseID != 0 {
		o.grants.report(it.Key, it.LeaseID, it.GiveBackStart, it.Left)
	}
	if it.Refund > 0 {
		o.store.Give(now, it.Key, it.GiveBackStart, it.Refund)
	}
	if it.Read {
		return forward.Result{Decision: o.store.Take(now, it.Key, 0, o.imports.Load().Limit(now, it.Key, it.Limit))}
	}
	took := 0
	if it.GiveBack > 0 {
		if n := o.grants.take(it.Key, it.LeaseID, it.GiveBackStart, it.GiveBack, it.GiveBackNonce); n > 0 {
			took, _ = o.store.Give(now, it.Key, it.GiveBackStart, n)
		}
	}
	if it.Hits == 0 && it.Want <= 0 && it.GiveBack <= 0 {
		return forward.Result{} // a report, or a refund, only
	}
	if !it.Deadline.IsZero() && now.After(it.Deadline.Add(time.Duration(o.maxOffset.Load()))) {
		return forward.Result{TookBack: took, Expired: true}
	}
	limit := o.imports.Load().Limit(now, it.Key, it.Limit)
	r := forward.Result{Decision: o.store.Take(now, it.Key, it.Hits, limit), TookBack: took}
	if it.Want <= 0 || o.ttl <= 0 || (it.Hits > 0 && !r.Allowed) {
		return r
	}
	if o.Settling(now) {
		return r
	}
	g := grantSize(it.Want, r.Remaining, o.members())
	lasts := min(o.ttl, r.ResetAt.Sub(now))
	if g == 0 || lasts < minLease {
		return r
	}
	if gd := o.store.Take(now, it.Key, g, limit); gd.Allowed && gd.ResetAt.Equal(r.ResetAt) {
		r.Remaining, r.Granted, r.LeaseFor, r.WindowLeft = gd.Remaining, g, lasts, r.ResetAt.Sub(now)
		r.LeaseID = o.grants.add(now, it.Key, it.LeaseID, r.ResetAt.Add(-o.store.Window()), g, it.From)
	}
	return r
}

// Leases returns how many leases this owner granted that were not given
// back yet and whose window has not ended long ago.
func (o *Owner) Leases() int { return o.grants.len() }

// Members tells the Owner which members are alive at now, with each one's
// boot id. A lease whose holder was alive at the last call and is now gone
// (it failed or left) or has another boot id (it restarted, and lost its
// leases with its memory) will never be spent beyond what its holder last
// said it had left: the Owner takes that off the key's count, so the key
// gets those hits back within its window. The holder's last report is at
// most leaseSweep old while it spends (and a holder cut off from a
// majority applies its share, which revokes its leases), so at most what
// it admitted in its last leaseSweep is admitted twice. A holder the Owner
// did not yet know as alive is never taken for gone. The concurrency slots
// such a member held are given back at once: its jobs died with it.
func (o *Owner) Members(now time.Time, alive map[string]string) {
	o.mu.Lock()
	prev := o.alive
	o.alive = alive
	o.mu.Unlock()
	changed := false
	for name, boot := range prev {
		if alive[name] != boot {
			changed = true
			break
		}
	}
	if !changed {
		return
	}
	for name, boot := range prev {
		if alive[name] != boot {
			o.slotsFreed.Add(int64(o.slots.ReleaseHolder(HolderOf(forward.Holder{Name: name, Boot: boot}))))
		}
	}
	for _, c := range o.grants.credit(func(h forward.Holder) bool {
		boot, known := prev[h.Name]
		return known && boot == h.Boot && alive[h.Name] != h.Boot
	}) {
		if took, ok := o.store.Give(now, c.key, c.start, c.hits); ok {
			o.credited.Add(int64(took))
		}
	}
}

// Unspent returns how many hits of the leases this owner granted their
// holders had left to spend, as they last said.
func (o *Owner) Unspent() int { return o.grants.unspent() }

// Credited returns how many hits the Owner took back from leases whose
// holder failed or restarted (see Members).
func (o *Owner) Credited() int64 { return o.credited.Load() }

// SlotsFreed returns how many concurrency slots the Owner gave back for
// members that failed or restarted (see Members).
func (o *Owner) SlotsFreed() int64 { return o.slotsFreed.Load() }
