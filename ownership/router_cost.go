package ownership

import (
	"context"
	"log/slog"
	"time"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/config"
	"github.com/tierlimit/tierlimit/forward"
)

// A Router is also the api package's Spender: it counts a tier's cost and
// concurrency across the cluster, at each key's owner.
//
// A key's cost is one more count of the key, under its counter key
// (config.CostKey), which the ring places at the key's owner: a cost of n
// is a check of n hits, so everything the Router does for requests holds
// for it (leases, in cost units; the owed hits of local decisions; the
// owners' remembered refusals; partition shares), and everything the
// cluster does with counts (hand-off, backups, state files) moves it with
// the key.
//
// A key's concurrency slots are held at its owner (Owner.Slots), each
// named by its holder: a slot of a member that fails or restarts is given
// back when the owner sees it (Owner.Members). A slot taken while the
// owner cannot be reached is taken here, within this node's share of the
// limit, like a local decision.

// TakeCost reserves cost units of key's cost under limit at now, all or
// nothing; a cost of 0 admits unless the key's cost is known to be over
// its limit.
func (r *Router) TakeCost(ctx context.Context, now time.Time, key string, cost, limit int) bucket.Decision {
	d, _ := r.checkHits(ctx, now, config.CostKey(key), cost, limit)
	return d
}

// SettleCost changes key's cost reserved in the window that ends at reset
// by delta at now: a charge (delta > 0) is counted at once, over the limit
// if need be, and a refund (delta < 0) is given back if it can be (see
// refund).
func (r *Router) SettleCost(_ context.Context, now time.Time, key string, reset time.Time, delta int) {
	switch ck := config.CostKey(key); {
	case delta > 0:
		r.charge(now, ck, delta)
	case delta < 0:
		r.refund(now, ck, reset, -delta)
	}
}

// Refund gives back the one hit of key counted in the window that ends at
// reset (see refund).
func (r *Router) Refund(_ context.Context, now time.Time, key string, reset time.Time) {
	r.refund(now, key, reset, 1)
}

// refund gives back n hits of key that a decision whose window ended at
// reset admitted and nobody spent: to this node's count if it owns key;
// else to the lease this node holds on key in that same window, which
// spends them again or gives them back to the owner when it ends; else to
// the owner, in the background (Run), once: a refund whose call fails is
// not sent again (the owner may have taken it), so its hits stay counted
// until their window ends. A refund never lets a key be admitted more than
// its limit, at worst less.
func (r *Router) refund(now time.Time, key string, reset time.Time, n int) {
	owner, ok := r.ring.Owner(key)
	if !ok || owner == r.self {
		r.local.Give(now, key, reset.Add(-r.local.Window()), n)
		return
	}
	if r.book.leases != nil && r.intoLease(now, key, reset, n) {
		return
	}
	r.givesMu.Lock()
	r.refunds = append(r.refunds, forward.Item{Key: key, Limit: 1, Window: r.local.Window(),
		Refund: n, GiveBackStart: reset.Add(-r.local.Window())})
	r.givesMu.Unlock()
	r.wakeRun()
}

// intoLease adds n hits to the lease this node holds on key, if it is one
// of the window that ends at reset and has not ended, and reports whether
// it did.
func (r *Router) intoLease(now time.Time, key string, reset time.Time, n int) bool {
	ls := r.book.leases.get(key)
	if ls == nil || ls.pending() || !ls.reset.Equal(reset) || now.UnixNano() >= ls.until.Load() {
		return false
	}
	for {
		v := ls.left.Load()
		if v < 0 || v+int64(n) > MaxLeaseHits {
			return false
		}
		if ls.left.CompareAndSwap(v, v+int64(n)) {
			return true
		}
	}
}

// charge counts n hits of key at now whatever its limit says: work done
// beyond its estimate. Where this node owns key, in its count; else from
// the lease it holds on key if that has n left, or else owed to the owner
// (RouterConfig.Owed, handed over by the Keeper).
func (r *Router) charge(now time.Time, key string, n int) {
	if owner, ok := r.ring.Owner(key); !ok || owner == r.self {
		r.local.Add(now, bucket.Count{Key: key, Current: uint64(n)})
		return
	}
	var held *lease
	if r.book.leases != nil {
		if held = r.book.leases.get(key); held != nil {
			if _, ok := held.take(now.UnixNano(), n); ok {
				return
			}
		}
	}
	if r.owed == nil {
		return
	}
	start, _ := r.book.ownerWindow(now, key, held) // zero: the owner's current window
	r.owed.Add(now, bucket.Count{Key: key, Start: start, Current: uint64(n)})
}

// fallbackSlot marks, in a heldSlot, a slot taken in the Router's own
// fallback table.
const fallbackSlot = "\x00fallback"

// heldSlot is a slot this node took for one of its jobs: of which key,
// where it is held (the owner's name, this node's, or fallbackSlot), the
// slot lease it came from (or nil), and its deadline.
type heldSlot struct {
	key, where string
	lease      *slotLease
	until      time.Time
}

// Acquire takes one of key's concurrency slots at now if fewer than limit
// are held, until until at the latest, and returns its id (0 when
// refused) and how many of key's slots are held. The slot is taken at
// key's owner; if the owner cannot answer in time, here, within this
// node's share of limit.
func (r *Router) Acquire(ctx context.Context, now time.Time, key string, limit int, until time.Time) (uint64, int) {
	limit = r.shareOf(limit)
	owner, ok := r.ring.Owner(key)
	if !ok || owner == r.self {
		return r.acquireIn(r.slots, r.self, now, key, limit, until)
	}
	want := 0
	if r.book.leases != nil {
		want = firstSlotWant
		if v, ok := r.slotLeases.Load(key); ok {
			sl := v.(*slotLease)
			if sl.owner == owner {
				if id, free, ok := sl.take(now, limit); ok {
					r.slotAt.Store(id, &heldSlot{key: key, where: owner, lease: sl, until: sl.until})
					// What this node knows: all but its free ones may be held.
					return id, limit - free
				}
				if want = sl.want(); want == 0 {
					want = firstSlotWant
				}
			} else {
				r.endSlotLease(key, sl)
			}
		}
	}
	l, _ := r.link(owner)
	if l != nil && l.breaker.Allow(r.clock()) {
		id := newID()
		res, err := r.forward(ctx, l, owner, forward.Item{Key: key, Limit: limit, Window: r.local.Window(),
			AcquireSlot: id, AcquireUntil: until, WantSlots: want})
		if err == nil && !res.Expired {
			if res.Slot != id {
				return 0, res.SlotsHeld
			}
			r.slotAt.Store(id, &heldSlot{key: key, where: owner, until: until})
			if res.GrantedSlots > 0 {
				r.leaseSlots(now, key, owner, limit, until, id, res.GrantedSlots)
			}
			return id, res.SlotsHeld
		}
		// Given up on: the owner may take it yet, and then it is given
		// back there (abandoned).
		r.obs.Fallback(FallbackTimeout)
	}
	return r.acquireIn(r.fallbackSlots, fallbackSlot, now, key, localShare(limit, max(1, r.ring.Len())), until)
}

// acquireIn takes a slot of key in slots, recorded as held at where.
func (r *Router) acquireIn(slots *bucket.Slots, where string, now time.Time, key string, limit int, until time.Time) (uint64, int) {
	id, held := slots.AcquireID(now, key, r.holder, newID(), limit, until)
	if id != 0 {
		r.slotAt.Store(id, &heldSlot{key: key, where: where, until: until})
	}
	return id, held
}

// Release gives back key's slot id where it was taken: here, or at the
// owner that took it; and, if key's owner changed since (the slot handed
// over with the key, HandOffSlots), at its owner now too. A release an
// owner does not answer in time is sent again in the background (Run), so
// that the request that ends never waits longer than a check would.
func (r *Router) Release(ctx context.Context, key string, id uint64) {
	v, ok := r.slotAt.LoadAndDelete(id)
	if !ok {
		return
	}
	h := v.(*heldSlot)
	if h.lease != nil && h.lease.put(r.clock(), id) {
		return
	}
	where := h.where // the lease, if any, ended: the slot goes back to its owner
	switch {
	case where == fallbackSlot:
		r.fallbackSlots.Release(key, id)
		return
	case where == r.self:
		if r.slots.Release(key, id) {
			return
		}
	default:
		r.releaseAt(ctx, where, key, id)
	}
	r.releaseAtOwnerNow(ctx, key, id, where, true)
}

// releaseAtOwnerNow gives key's slot id back at key's owner now too, if
// that is not where, where it was taken: the slot may have moved with the
// key (HandOffSlots, ReannounceSlots). A release given where it is not
// held takes nothing. With wait, a peer is asked at once (releaseAt), else
// in the background.
func (r *Router) releaseAtOwnerNow(ctx context.Context, key string, id uint64, where string, wait bool) {
	switch owner, ok := r.ring.Owner(key); {
	case !ok || owner == where:
	case owner == r.self:
		r.slots.Release(key, id)
	case wait:
		r.releaseAt(ctx, owner, key, id)
	default:
		r.queueRelease(owner, key, id)
	}
}

// releaseAt gives back key's slot id at owner: at once, so that the key's
// next job, wherever it comes, finds the slot free, or else in the
// background.
func (r *Router) releaseAt(ctx context.Context, owner, key string, id uint64) {
	if l, _ := r.link(owner); l != nil && l.breaker.Allow(r.clock()) {
		if _, err := r.forward(ctx, l, owner, forward.Item{Key: key, Limit: 1, Window: r.local.Window(), ReleaseSlot: id}); err == nil {
			return
		}
	}
	r.queueRelease(owner, key, id)
}

// ReannounceSlots tells each key's owner, after the ring changed, of the
// slots this node's jobs hold of the key at another member, its owner
// before: the new owner holds them (under this node's name, whatever the
// limit), and the jobs' ends give them back there. So a key whose owner
// failed, and its slot table with it, has its running jobs counted again
// as soon as the ring drops the failed owner, from the nodes that run
// them; after a graceful move the old owner's hand-off brings the same
// slots, which count once. It returns how many slots it announced.
func (r *Router) ReannounceSlots(ctx context.Context) int {
	type moved struct {
		id       uint64
		old, now *heldSlot
	}
	byOwner := make(map[string][]moved)
	r.slotAt.Range(func(k, v any) bool {
		id, h := k.(uint64), v.(*heldSlot)
		owner, ok := r.ring.Owner(h.key)
		if h.where == fallbackSlot || !ok || owner == h.where {
			return true
		}
		// A slot from a lease of the old owner is a job's slot now: the
		// lease ends (sweepSlotLeases) and gives back what it had free.
		byOwner[owner] = append(byOwner[owner], moved{id, h, &heldSlot{key: h.key, where: owner, until: h.until}})
		return true
	})
	announced := 0
	for owner, ms := range byOwner {
		if owner == r.self {
			for _, m := range ms {
				r.slots.Put(bucket.Slot{Key: m.now.key, ID: m.id, Holder: r.holder, Until: m.now.until})
			}
		} else {
			items := make([]forward.Item, len(ms))
			for i, m := range ms {
				items[i] = forward.Item{Key: m.now.key, Limit: 1, Window: r.local.Window(), AcquireSlot: m.id,
					AcquireUntil: m.now.until, SlotHolder: r.holder}
			}
			if err := r.send(ctx, owner, items); err != nil {
				r.log.Warn("slots not announced to their key's new owner; will try at the next change of members",
					slog.String("peer", owner), slog.Int("slots", len(ms)), slog.Any("error", err))
				continue
			}
		}
		for _, m := range ms {
			if !r.slotAt.CompareAndSwap(m.id, m.old, m.now) {
				// Its job ended meanwhile: give it back where it went.
				if owner == r.self {
					r.slots.Release(m.now.key, m.id)
				} else {
					r.queueRelease(owner, m.now.key, m.id)
				}
			}
		}
		announced += len(ms)
	}
	return announced
}

// HandOffSlots hands the slots this node holds for keys it no longer owns
// (the ring changed: a member joined, or this node is leaving) to their
// owners now, each under its holder, and returns how many went. Slots an
// owner could not take stay here, where their releases still come, until
// the next call.
func (r *Router) HandOffSlots(ctx context.Context) int {
	now := time.Now()
	moved := r.slots.Take(now, func(key string) bool {
		owner, ok := r.ring.Owner(key)
		return !ok || owner == r.self
	})
	byOwner := make(map[string][]bucket.Slot)
	for _, sl := range moved {
		owner, _ := r.ring.Owner(sl.Key)
		byOwner[owner] = append(byOwner[owner], sl)
	}
	handed := 0
	for owner, sls := range byOwner {
		items := make([]forward.Item, len(sls))
		for i, sl := range sls {
			items[i] = forward.Item{Key: sl.Key, Limit: 1, Window: r.local.Window(), AcquireSlot: sl.ID,
				AcquireUntil: sl.Until, SlotHolder: sl.Holder}
		}
		if err := r.send(ctx, owner, items); err != nil {
			r.log.Warn("slots not handed over; kept until the next change of members", slog.String("peer", owner),
				slog.Int("slots", len(sls)), slog.Any("error", err))
			for _, sl := range sls {
				r.slots.Put(sl)
			}
			continue
		}
		handed += len(sls)
	}
	return handed
}

// leaseSlots keeps the n slots owner granted with a job's slot id, under
// limit until until, as key's slot lease: added to the lease this node
// holds from owner under limit, or a new one in its place.
func (r *Router) leaseSlots(now time.Time, key, owner string, limit int, until time.Time, id uint64, n int) {
	if v, ok := r.slotLeases.Load(key); ok {
		sl := v.(*slotLease)
		if sl.owner == owner && sl.limit == limit && sl.add(now, id, n) {
			return
		}
		r.endSlotLease(key, sl)
	}
	sl := &slotLease{owner: owner, limit: limit, until: until, last: now}
	sl.add(now, id, n)
	if prev, loaded := r.slotLeases.Swap(key, sl); loaded {
		r.endSlotLease(key, prev.(*slotLease))
	}
}

// endSlotLease ends key's slot lease sl and gives its free slots back to
// its owner; the ones jobs hold go back as the jobs end.
func (r *Router) endSlotLease(key string, sl *slotLease) {
	r.slotLeases.CompareAndDelete(key, sl)
	free, ok := sl.end()
	if !ok {
		return
	}
	for _, id := range free {
		r.queueRelease(sl.owner, key, id)
		r.releaseAtOwnerNow(context.Background(), key, id, sl.owner, false)
	}
}

// endSlotLeases ends the slot leases for which drop reports true, at now.
func (r *Router) endSlotLeases(drop func(key string, sl *slotLease) bool) {
	r.slotLeases.Range(func(k, v any) bool {
		if key, sl := k.(string), v.(*slotLease); drop(key, sl) {
			r.endSlotLease(key, sl)
		}
		return true
	})
}

// sweepSlotLeases ends, at now, the slot leases unused for a lease's time
// or near their slots' deadline, and those of keys whose owner changed.
func (r *Router) sweepSlotLeases(now time.Time) {
	r.endSlotLeases(func(key string, sl *slotLease) bool {
		owner, ok := r.ring.Owner(key)
		return !ok || owner != sl.owner || sl.idle(now, r.book.leaseTTL)
	})
}

// releaseRetryFor is how long a slot's release is sent again to an owner
// that does not answer: past it, the owner has failed (and given back the
// slots of those it cannot reach) or the slot's deadline ends it.
const releaseRetryFor = 10 * time.Second

// slotRelease is a slot on its way back to the owner that took it.
type slotRelease struct {
	owner, key string
	id         uint64
	since      time.Time // first tried; zero until then
}

// queueRelease queues slot id of key to be given back to owner by Run.
func (r *Router) queueRelease(owner, key string, id uint64) {
	r.givesMu.Lock()
	r.releases = append(r.releases, slotRelease{owner: owner, key: key, id: id})
	r.givesMu.Unlock()
	r.wakeRun()
}

// SlotsHeld returns how many concurrency slots this node holds now: of
// keys it owns (its own and other members'), and taken on its own while
// an owner could not be reached.
func (r *Router) SlotsHeld(now time.Time) (owned, fallback int) {
	return r.slots.Total(now), r.fallbackSlots.Total(now)
}

// SweepSlots ends the slots this node took on its own (while an owner
// could not be reached) whose deadline passed by now, and returns how
// many. The slots of keys this node owns are swept with their table.
func (r *Router) SweepSlots(now time.Time) int { return r.fallbackSlots.Sweep(now) }
