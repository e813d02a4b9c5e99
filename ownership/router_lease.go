package ownership

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tierlimit/tierlimit/forward"
)

// leaseSweep is how often Run ends leases whose time ran out and gives back
// what ended leases left.
const leaseSweep = 100 * time.Millisecond

// giveTimeout bounds one call giving hits back to an owner.
const giveTimeout = time.Second

// giveBack is the unused hits of an ended lease, on their way back to the
// key's owner.
type giveBack struct {
	key   string
	id    uint64 // the lease's id at its owner
	nonce uint64 // this give-back's, the same on every retry
	limit int
	start time.Time // the owner's window the hits were counted in
	hits  int
	since time.Time // first tried; zero until then
}

// giveRetryFor is how long hits of a key this node owns now, and holds no
// count for yet, are given back again: long enough for failure detection
// and the copies to be taken over (about 5 s), or for a hand-off to land.
const giveRetryFor = 15 * time.Second

// queueRenewal hands rn to renewLoop, or, if its queue is full, gives the
// lease's asking token back: a later check asks again.
func (r *Router) queueRenewal(rn renewal) {
	select {
	case r.renewals <- rn:
	default:
		rn.ls.renewing.Store(false)
	}
}

// ended acts on leases the book ended: reports each and queues what it left
// to be given back.
func (r *Router) ended(es ...ending) {
	for _, e := range es {
		r.obs.LeaseEnded(e.why, e.give.hits)
		if e.give.hits > 0 {
			r.queueGive(e.give)
		}
	}
}

// renewal is a lease due for renewal, on its way from the request path to
// renewLoop.
type renewal struct {
	key   string
	ls    *lease
	limit int
	owner string
	want  int
}

// renewQueue bounds the renewals waiting for renewLoop.
const renewQueue = 4096

// renewLoop sends each renewal the request path queues, in a goroutine of
// its own (the request path starts none), until Close. A renewal waits at
// most its forward deadline, and each lease has one in flight at most.
func (r *Router) renewLoop() {
	for {
		select {
		case <-r.stop:
			return
		case rn := <-r.renewals:
			r.renewing.Go(func() { r.renew(rn.key, rn.ls, rn.limit, rn.owner, rn.want) })
		}
	}
}

// renew asks owner for more of key's budget under limit, for lease ls,
// through the owner's Batcher: the request carries no hits, so a check
// waiting on the same batch pays nothing for it.
func (r *Router) renew(key string, ls *lease, limit int, owner string, want int) {
	defer ls.renewing.Store(false)
	l, _ := r.link(owner)
	if l == nil || !l.breaker.Allow(r.clock()) {
		return
	}
	deadline := time.Now().Add(r.timeout(l))
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	sent := r.clock()
	it := forward.Item{Key: key, Limit: limit, Window: r.local.Window(), Want: want, LeaseID: ls.renewalOf(limit), Deadline: deadline}
	if it.LeaseID != 0 { // what the lease has left, as a report would say
		left := max(0, ls.left.Load())
		ls.told.Store(left)
		it.Left, it.Reported, it.GiveBackStart = int(left), true, ls.start
	}
	res, err := l.batcher.Check(ctx, it)
	if err == nil && res.Granted > 0 {
		r.takeGrant(sent, key, limit, res, true)
	}
}

// takeGrant keeps the lease in res, the answer to a check (or a renewal,
// renewal true) for key under limit sent at sent.
func (r *Router) takeGrant(sent time.Time, key string, limit int, res forward.Result, renewal bool) {
	r.obs.LeaseGranted(res.Granted, renewal)
	r.ended(r.book.granted(sent, key, limit, r.ring.Len(), res)...)
}

// drainLease empties ls, a lease no longer in the table, and queues what it
// had left to be given back.
func (r *Router) drainLease(key string, ls *lease, why string) {
	if e := r.book.drain(key, ls, why); e != nil {
		r.ended(*e)
	}
}

// queueGive queues g to be given back by Run and wakes it.
func (r *Router) queueGive(g giveBack) {
	g.nonce = newID()
	r.returning.Add(1)
	r.givesMu.Lock()
	r.gives = append(r.gives, g)
	r.givesMu.Unlock()
	r.wakeRun()
}

// wakeRun wakes Run to send what is queued (give-backs, releases,
// refunds) at once.
func (r *Router) wakeRun() {
	select {
	case r.giveNow <- struct{}{}:
	default:
	}
}

// RevokeLeases ends every lease this node holds and gives back what they
// had left: for when the limits in force change everywhere at once (a new
// health state), so that no node goes on admitting under the old limit.
func (r *Router) RevokeLeases() {
	if r.book.leases == nil {
		return
	}
	r.endSlotLeases(func(string, *slotLease) bool { return true })
	r.book.leases.removeIf(func(string, *lease) bool { return true },
		func(key string, ls *lease) { r.drainLease(key, ls, LeaseRevoked) })
}

// ReturnLeases ends every lease this node holds and gives back what they
// had left to the owners, waiting for them until ctx ends (at most a second
// per owner): for a node about to stop, so that its leases do not hold the
// other members back until they expire.
func (r *Router) ReturnLeases(ctx context.Context) {
	if r.book.leases != nil {
		r.book.leases.removeIf(func(string, *lease) bool { return true },
			func(key string, ls *lease) { r.drainLease(key, ls, LeaseStopped) })
	}
	r.endSlotLeases(func(string, *slotLease) bool { return true })
	r.give(ctx, time.Now(), nil)
}

// Run keeps the Router's background work going until ctx ends: every
// 100 ms and whenever a lease ends early, it ends leases whose time ran out
// and gives back what ended leases left unused; every PingEvery, it pings
// the members it has not heard from since (see Reachable); every second, it
// moves the adaptive deadlines on to the latest round trips. When ctx ends
// it returns every lease left (ReturnLeases, for at most a second) and
// waits for its pings.
func (r *Router) Run(ctx context.Context) {
	t := time.NewTicker(leaseSweep)
	defer t.Stop()
	defer r.pings.Wait()
	ticks := 0
	var reports []forward.Item
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), giveTimeout)
			r.ReturnLeases(rctx)
			cancel()
			return
		case now := <-t.C:
			if ticks++; ticks%int(time.Second/leaseSweep) == 0 {
				r.rollDeadlines()
			}
			if ticks%int(PingEvery/leaseSweep) == 0 {
				r.ping(ctx, now)
			}
			if r.book.leases != nil {
				reports = r.sweepLeases(time.Now())
				r.sweepSlotLeases(time.Now())
			}
		case <-r.giveNow:
		}
		r.give(ctx, time.Now(), reports)
		reports = nil
	}
}

// sweepLeases ends the leases that ran out of time by now and those of
// keys this node owns now; keeps the ones in use alive (keepAlive): a key
// hit now and then keeps its lease, and its checks pay no round trip,
// without a call to the owner; and returns a report for each lease spent
// since the last one (to its owner: what it has left, should this node
// fail).
//
// An owner that cannot reach this node for long takes it for failed and
// credits back what its leases had left (Owner.Members). This node then
// spends them no more if it is the one cut off: without a majority it
// applies its share, a limit no lease was granted under, so the next check
// of each key revokes its lease. An owner merely paused takes nobody for
// failed.
func (r *Router) sweepLeases(now time.Time) []forward.Item {
	n := now.UnixNano()
	w := r.local.Window()
	var reports []forward.Item
	owns := func(key string) bool {
		owner, ok := r.ring.Owner(key)
		return !ok || owner == r.self
	}
	r.book.leases.removeIf(func(key string, ls *lease) bool {
		if n >= ls.until.Load() || owns(key) {
			return true
		}
		ls.keepAlive(n, r.book.leaseTTL)
		if rep, ok := ls.report(key, w); ok {
			reports = append(reports, rep)
		}
		return false
	}, func(key string, ls *lease) {
		why := LeaseExpired
		if owns(key) {
			why = LeaseMoved
		}
		r.drainLease(key, ls, why)
	})
	return reports
}

// give gives the queued hits back to their keys' owners as the ring says
// now: to this node's own store, or in one call per owner, which carries
// reports (what leases have left) to that owner too. Hits are given back
// again later if the owner could not be reached or did not answer in time,
// until their window ends: the owner takes each lease's hits back at most
// once, so a give-back it applied but whose answer was lost costs nothing
// when sent again. Hits of a key this node owns now and holds no count for
// are given back again for giveRetryFor: the count may be on its way (a
// new owner taking over a failed one's copies). An owner that holds no
// record of the lease (the key moved, or its owner restarted) takes nothing
// back: those hits stay counted until their window ends. Reports are not
// sent again: the next sweep's says more.
func (r *Router) give(ctx context.Context, now time.Time, reports []forward.Item) {
	r.givesMu.Lock()
	gives, releases, refunds := r.gives, r.releases, r.refunds
	r.gives, r.releases, r.refunds = nil, nil, nil
	r.givesMu.Unlock()
	if len(gives) == 0 && len(reports) == 0 && len(releases) == 0 && len(refunds) == 0 {
		return
	}
	w := r.local.Window()
	var again []giveBack
	retry := func(g giveBack, unknown bool) {
		if now.Before(g.start.Add(2*w)) && (!unknown || now.Before(g.since.Add(giveRetryFor))) {
			again = append(again, g)
		}
	}
	type outgoing struct {
		gives    []giveBack
		releases []slotRelease
		items    []forward.Item // one per give, then the reports and releases
	}
	byOwner := make(map[string]*outgoing)
	to := func(owner string) *outgoing {
		o := byOwner[owner]
		if o == nil {
			o = &outgoing{}
			byOwner[owner] = o
		}
		return o
	}
	for _, g := range gives {
		if g.since.IsZero() {
			g.since = now
		}
		if owner, ok := r.ring.Owner(g.key); ok && owner != r.self {
			o := to(owner)
			o.gives = append(o.gives, g)
			o.items = append(o.items, forward.Item{Key: g.key, Limit: g.limit, Window: w, LeaseID: g.id, GiveBack: g.hits, GiveBackStart: g.start, GiveBackNonce: g.nonce})
			continue
		}
		if _, ok := r.local.Give(now, g.key, g.start, g.hits); !ok {
			retry(g, true)
		}
	}
	for _, it := range reports {
		if owner, ok := r.ring.Owner(it.Key); ok && owner != r.self {
			o := to(owner)
			o.items = append(o.items, it)
		}
	}
	for _, rl := range releases {
		if rl.since.IsZero() {
			rl.since = now
		}
		o := to(rl.owner)
		o.releases = append(o.releases, rl)
		o.items = append(o.items, forward.Item{Key: rl.key, Limit: 1, Window: w, ReleaseSlot: rl.id})
	}
	for _, it := range refunds {
		if owner, ok := r.ring.Owner(it.Key); ok && owner != r.self {
			o := to(owner)
			o.items = append(o.items, it)
		} else {
			r.local.Give(now, it.Key, it.GiveBackStart, it.Refund)
		}
	}
	var releaseAgain []slotRelease
	for owner, o := range byOwner {
		if err := r.send(ctx, owner, o.items); err != nil {
			r.log.Debug("could not give leased hits or slots back; will retry", slog.String("peer", owner),
				slog.Int("keys", len(o.gives)), slog.Int("slots", len(o.releases)), slog.Any("error", err))
			for _, g := range o.gives {
				retry(g, false) // taken at most once if some went through
			}
			for _, rl := range o.releases {
				if now.Before(rl.since.Add(releaseRetryFor)) {
					releaseAgain = append(releaseAgain, rl)
				}
			}
		}
	}
	r.givesMu.Lock()
	r.gives = append(r.gives, again...)
	r.releases = append(r.releases, releaseAgain...)
	r.givesMu.Unlock()
	r.returning.Add(int64(len(again) - len(gives)))
}

// send sends items to owner, in calls of MaxCheckItems at most, each
// within giveTimeout, until one fails.
func (r *Router) send(ctx context.Context, owner string, items []forward.Item) error {
	p, ok := r.peers.Peer(owner)
	if !ok || p == nil {
		return errNoPeer
	}
	for len(items) > 0 {
		n := min(len(items), forward.MaxCheckItems)
		cctx, cancel := context.WithTimeout(ctx, giveTimeout)
		_, err := p.Check(cctx, items[:n])
		cancel()
		if err != nil {
			return err
		}
		r.contacts.heard(owner, r.clock())
		items = items[n:]
	}
	return nil
}

// errNoPeer: the PeerSource does not know the owner (yet).
var errNoPeer = errors.New("ownership: no peer for the owner")

// LeaseHits returns how many hits the leases this node holds have left.
func (r *Router) LeaseHits() int {
	if r.book.leases == nil {
		return 0
	}
	n := 0
	r.book.leases.each(func(_ string, ls *lease) { n += int(max(0, ls.left.Load())) })
	return n
}

// Leases returns how many leases this node holds now, and how many ended
// leases' unused hits are still on their way back to their owners.
func (r *Router) Leases() (held, returning int) {
	if r.book.leases == nil {
		return 0, 0
	}
	return r.book.leases.len(), int(r.returning.Load())
}
