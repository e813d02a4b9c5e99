package ownership

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tierlimit/tierlimit/bucket"
	"github.com/tierlimit/tierlimit/forward"
	"github.com/tierlimit/tierlimit/ring"
)

// TestLeaseSteps steps a lease on the asker's side through a fake clock:
// it admits what was granted and no more, asks to be renewed when three
// quarters of its last grant are spent, sizes what it asks for by the rate
// it was spent at, lives on while in use and never past its window.
func TestLeaseSteps(t *testing.T) {
	ttl := time.Second
	sent := routerT0
	window := func(left time.Duration) forward.Result {
		return forward.Result{Decision: bucket.Decision{Allowed: true, Limit: 150, Remaining: 100, ResetAt: sent.Add(routerWindow)},
			Granted: 8, LeaseFor: min(ttl, left), WindowLeft: left}
	}
	l := newLease(window(routerWindow), 150, sent, routerWindow)
	at := func(d time.Duration) int64 { return sent.Add(d).UnixNano() }

	assert.Equal(t, sent, l.start)
	assert.Equal(t, at(routerWindow), l.end)
	assert.Equal(t, firstWant, l.want(at(0), ttl), "no rate yet")
	for i := range 5 {
		left, ok := l.take(at(time.Duration(i)*10*time.Millisecond), 1)
		require.True(t, ok)
		assert.Equal(t, 7-i, left)
		assert.False(t, l.dueForRenewal(left), "after %d of 8", i+1)
	}
	left, ok := l.take(at(50*time.Millisecond), 1)
	require.True(t, ok)
	assert.True(t, l.dueForRenewal(left), "three quarters spent")
	// 6 hits in 100 ms: 60 per second, 12 per fifth of a lease of a second.
	assert.Equal(t, 12, l.want(at(100*time.Millisecond), ttl))
	assert.Equal(t, firstWant, l.want(at(10*time.Second), ttl), "never less than the first ask")

	// A renewal in the same window adds to what is left and moves the end.
	l.extend(forward.Result{Decision: bucket.Decision{Remaining: 60, ResetAt: sent.Add(routerWindow)}, Granted: 40, LeaseFor: ttl,
		WindowLeft: routerWindow - 500*time.Millisecond}, sent.Add(500*time.Millisecond))
	assert.Equal(t, int64(42), l.left.Load())
	assert.Equal(t, at(1500*time.Millisecond), l.until.Load())
	assert.Equal(t, int64(60), l.rest.Load())

	// In use, it lives on; idle, it ends a lease's time after its last use.
	l.keepAlive(at(1400*time.Millisecond), ttl)
	assert.Equal(t, at(1500*time.Millisecond), l.until.Load(), "not used since the renewal")
	_, ok = l.take(at(1450*time.Millisecond), 1)
	require.True(t, ok)
	l.keepAlive(at(1490*time.Millisecond), ttl)
	assert.Equal(t, at(2490*time.Millisecond), l.until.Load(), "used: a lease's time from the sweep")
	l.keepAlive(at(2400*time.Millisecond), ttl)
	assert.Equal(t, at(2490*time.Millisecond), l.until.Load(), "idle since")
	_, ok = l.take(at(2490*time.Millisecond), 1)
	assert.False(t, ok, "taken at its end")
	assert.Equal(t, 41, l.drain())
	assert.Zero(t, l.drain(), "drained twice")

	// Never past its window, however much it is used.
	near := newLease(window(300*time.Millisecond), 150, sent, routerWindow)
	assert.Equal(t, at(300*time.Millisecond), near.until.Load())
	_, ok = near.take(at(100*time.Millisecond), 1)
	require.True(t, ok)
	near.keepAlive(at(200*time.Millisecond), ttl)
	assert.Equal(t, at(300*time.Millisecond), near.until.Load(), "kept alive to the window's end, no further")

	// Spent: no more hits, even before its end.
	one := window(routerWindow)
	one.Granted = 1
	l2 := newLease(one, 20, sent, routerWindow)
	_, ok = l2.take(at(0), 1)
	require.True(t, ok)
	_, ok = l2.take(at(0), 1)
	assert.False(t, ok, "a second hit from a grant of 1")
}

// ownerPeer is a Peer that decides with a real Owner at the time its clock
// says, and can be cut off.
type ownerPeer struct {
	owner *Owner
	store *bucket.Store
	now   atomic.Pointer[time.Time] // nil: the real clock
	down  atomic.Bool
	from  forward.Holder // the sender, as a call would say

	mu    sync.Mutex
	items []forward.Item
}

func newOwnerPeer(members int) *ownerPeer {
	store := bucket.New(bucket.Config{Window: routerWindow})
	p := &ownerPeer{store: store, owner: NewOwner(store, func() int { return members }, time.Second)}
	p.set(routerT0)
	return p
}

func (p *ownerPeer) set(t time.Time) { p.now.Store(&t) }

// clock returns the time set, or the real time if none is.
func (p *ownerPeer) clock() time.Time {
	if t := p.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

func (p *ownerPeer) Check(_ context.Context, items []forward.Item) ([]forward.Result, error) {
	if p.down.Load() {
		return nil, errPeerDown
	}
	p.mu.Lock()
	p.items = append(p.items, items...)
	p.mu.Unlock()
	out := make([]forward.Result, len(items))
	for i, it := range items {
		it.From = p.from
		out[i] = p.owner.Decide(p.clock(), it)
	}
	return out, nil
}

func (p *ownerPeer) sent() []forward.Item {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]forward.Item(nil), p.items...)
}

var errPeerDown = context.DeadlineExceeded

// used returns what the owner's store counts for key at now under limit.
func (p *ownerPeer) used(key string, limit int) int {
	return limit - p.store.Take(p.clock(), key, 0, limit).Remaining
}

// TestRouterLeases: a node spends a lease without asking the owner, gets it
// renewed off the request path, gives back what is left when the limit
// changes or the lease ends, and never admits more than the owner counts.
func TestRouterLeases(t *testing.T) {
	owner := newOwnerPeer(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	now := routerT0

	// The first check is forwarded and comes back with a lease of 8.
	d := r.Check(t.Context(), now, key, 150)
	require.True(t, d.Allowed)
	assert.Equal(t, 149, d.Remaining, "the lease is this node's to spend")
	assert.Equal(t, 1+firstWant, owner.used(key, 150), "the hit and the grant are counted at the owner")
	require.Len(t, owner.sent(), 1)

	// The next checks come from the lease; three quarters in, a renewal
	// goes out in the background.
	for i := range 6 {
		d := r.Check(t.Context(), now, key, 150)
		require.True(t, d.Allowed, "leased check %d", i)
	}
	require.Eventually(t, func() bool { return len(owner.sent()) == 2 }, time.Second, time.Millisecond, "a renewal")
	renewal := owner.sent()[1]
	assert.Zero(t, renewal.Hits, "a renewal counts no hit")
	assert.Positive(t, renewal.Want)
	require.Eventually(t, func() bool {
		r.events.mu.Lock()
		defer r.events.mu.Unlock()
		return r.events.renewals == 1
	}, time.Second, time.Millisecond, "the renewal's answer taken")
	r.events.mu.Lock()
	assert.Equal(t, 6, r.events.leaseHits)
	assert.Equal(t, 1, r.events.renewals)
	granted := r.events.granted
	r.events.mu.Unlock()
	require.Eventually(t, func() bool { held, _ := r.Leases(); return held == 1 }, time.Second, time.Millisecond)

	// What the node admitted plus what it holds is exactly what the owner
	// counts.
	ls := r.book.leases.get(key)
	require.NotNil(t, ls)
	assert.Equal(t, owner.used(key, 150), 7+int(ls.left.Load()), "owner's count = admitted + held")
	assert.Equal(t, owner.used(key, 150), 1+granted, "hits granted, first and renewed: all the owner counts but the first hit")

	// A new limit (DEGRADED) revokes the lease: its hits go back, and the
	// check goes to the owner.
	held := int(ls.left.Load())
	sends := len(owner.sent())
	d = r.Check(t.Context(), now, key, 100)
	require.True(t, d.Allowed)
	assert.Equal(t, sends+1, len(owner.sent()), "checked at the owner under the new limit")
	r.events.mu.Lock()
	assert.Equal(t, held, r.events.returned[LeaseRevoked])
	r.events.mu.Unlock()
	r.give(t.Context(), now, nil)
	last := owner.sent()[len(owner.sent())-1]
	assert.Equal(t, held, last.GiveBack, "the revoked hits, given back")
	assert.Equal(t, routerT0, last.GiveBackStart)
}

// TestRouterLeaseOutlivesItsOwner: while the owner cannot be reached, a
// node spends the lease it holds until it ends, and only then decides
// locally.
func TestRouterLeaseOutlivesItsOwner(t *testing.T) {
	owner := newOwnerPeer(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, func(cfg *RouterConfig) {
		cfg.ForwardTimeout = 50 * time.Millisecond
	})
	key := keyOwnedBy(t, r.ring, "b")
	require.True(t, r.Check(t.Context(), routerT0, key, 1500).Allowed)
	ls := r.book.leases.get(key)
	require.NotNil(t, ls)
	require.Equal(t, int64(firstWant), ls.left.Load())
	owner.down.Store(true)

	for i := range firstWant {
		assert.True(t, r.Check(t.Context(), routerT0.Add(time.Millisecond), key, 1500).Allowed, "leased check %d", i)
	}
	assert.Empty(t, r.events.reasons(), "no fallback while the lease lasts")
	d := r.Check(t.Context(), routerT0.Add(2*time.Millisecond), key, 1500)
	assert.True(t, d.Allowed)
	assert.Equal(t, 1, len(r.events.reasons()), "decided locally once the lease ran out: %v", r.events.reasons())
}

// TestRouterSweepGivesBackExpiredLeases: a lease that ends with hits left
// gives them back to the window they were counted in; so does one whose
// key this node came to own, into its own store.
func TestRouterSweepGivesBackExpiredLeases(t *testing.T) {
	owner := newOwnerPeer(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	require.True(t, r.Check(t.Context(), routerT0, key, 1500).Allowed)
	assert.Equal(t, 1+firstWant, owner.used(key, 1500))

	r.sweepLeases(routerT0.Add(500 * time.Millisecond))
	held, _ := r.Leases()
	assert.Equal(t, 1, held, "ended early")
	r.sweepLeases(routerT0.Add(2 * time.Second))
	held, returning := r.Leases()
	assert.Zero(t, held)
	assert.Equal(t, 1, returning)
	owner.set(routerT0.Add(2 * time.Second))
	r.give(t.Context(), routerT0.Add(2*time.Second), nil)
	assert.Equal(t, 1, owner.used(key, 1500), "only the admitted hit is left")
	_, returning = r.Leases()
	assert.Zero(t, returning)
	r.events.mu.Lock()
	assert.Equal(t, firstWant, r.events.returned[LeaseExpired])
	r.events.mu.Unlock()
}

// TestRouterSweepKeepsLeasesInUse: the sweep keeps a lease in use alive
// without a call to the owner; one left idle runs out and its hits go back.
func TestRouterSweepKeepsLeasesInUse(t *testing.T) {
	owner := newOwnerPeer(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, nil)
	var used, idle string
	for i := 0; used == "" || idle == ""; i++ {
		if k := "user-" + strconv.Itoa(i); keyOwner(r.ring, k) == "b" {
			if used == "" {
				used = k
			} else {
				idle = k
			}
		}
	}
	for _, k := range []string{used, idle} {
		require.True(t, r.Check(t.Context(), routerT0, k, 1500).Allowed)
	}
	sends := len(owner.sent())
	for _, at := range []time.Duration{700 * time.Millisecond, 1600 * time.Millisecond} {
		require.True(t, r.Check(t.Context(), routerT0.Add(at), used, 1500).Allowed)
		r.sweepLeases(routerT0.Add(at + 50*time.Millisecond))
	}
	assert.NotNil(t, r.book.leases.get(used), "in use: alive past its first second")
	assert.Nil(t, r.book.leases.get(idle), "idle: ran out")
	assert.Len(t, owner.sent(), sends, "no call to the owner to keep a lease alive")
	r.events.mu.Lock()
	assert.Equal(t, firstWant, r.events.returned[LeaseExpired])
	r.events.mu.Unlock()
}

// keyOwner returns the owner rg gives key.
func keyOwner(rg *ring.Ring, key string) string {
	o, _ := rg.Owner(key)
	return o
}

// TestRouterLocalDecisionsAfterALeaseAreBounded: a node whose lease ran
// dry while the owner cannot be reached admits locally its part of what the
// owner had left beyond every grant at the last one (not a whole share of
// the limit, nor a token hit), and tells the truth about it: the Limit of
// each answer is the budget it applies, and Remaining what is left of it.
func TestRouterLocalDecisionsAfterALeaseAreBounded(t *testing.T) {
	owner := newOwnerPeer(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, func(cfg *RouterConfig) {
		cfg.ForwardTimeout = 50 * time.Millisecond
	})
	key := keyOwnedBy(t, r.ring, "b")
	owner.store.Take(routerT0, key, 120, 150) // used elsewhere: 30 left
	d := r.Check(t.Context(), routerT0, key, 150)
	require.True(t, d.Allowed)
	ls := r.book.leases.get(key)
	require.NotNil(t, ls)
	require.Equal(t, int64(4), ls.left.Load(), "29 left: a grant of 29 / (2 × 3)")
	require.Equal(t, int64(25), ls.rest.Load(), "what the owner had left beyond it")
	assert.Equal(t, 29, d.Remaining, "the owner's answer: 25 left there, 4 held here")
	d = r.Check(t.Context(), routerT0, key, 150)
	assert.Equal(t, 3, d.Remaining, "from the lease: what this node holds, no more is promised")
	owner.down.Store(true)

	var got []bucket.Decision
	for range 30 {
		got = append(got, r.Check(t.Context(), routerT0.Add(time.Millisecond), key, 150))
	}
	admitted := 0
	for i, d := range got {
		if !d.Allowed {
			continue
		}
		admitted++
		if i >= 3 {
			assert.Equal(t, 13, d.Limit, "decision %d: the budget applied, ceil(25 / 2)", i)
			assert.Equal(t, 13-(i-2), d.Remaining, "decision %d", i)
		}
	}
	// 3 more from the lease, then ceil(25 / 2) = 13, where a share would
	// be 50.
	assert.Equal(t, 3+13, admitted)
}

// lateAnswers is a Peer whose owner decides every call but whose answers
// to the first calls giving hits back are lost (they come after the
// deadline): the sender sees a timeout for a give-back that was applied.
type lateAnswers struct {
	*ownerPeer
	lose atomic.Int32 // give-back calls whose answer is still to be lost
}

func (p *lateAnswers) Check(ctx context.Context, items []forward.Item) ([]forward.Result, error) {
	res, err := p.ownerPeer.Check(ctx, items)
	if err == nil && items[0].GiveBack > 0 && p.lose.Add(-1) >= 0 {
		return nil, context.DeadlineExceeded
	}
	return res, err
}

// TestRouterGiveBackSentAgainCountsOnce: the hits a lease left unused are
// given back once, however many times the give-back is sent because its
// answer came too late; before the owner kept its grants, each retry took
// them off again, and the key then admitted more than its limit.
func TestRouterGiveBackSentAgainCountsOnce(t *testing.T) {
	owner := &lateAnswers{ownerPeer: newOwnerPeer(3)}
	owner.lose.Store(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	now := routerT0

	require.True(t, r.Check(t.Context(), now, key, 150).Allowed)
	require.Equal(t, 1+firstWant, owner.used(key, 150), "the hit and the lease")
	require.True(t, r.Check(t.Context(), now, key, 150).Allowed, "spent from the lease")

	r.RevokeLeases() // 7 unused hits go back
	for range 5 {
		r.give(t.Context(), now, nil)
	}
	_, returning := r.Leases()
	assert.Zero(t, returning, "given back at last")
	assert.Equal(t, 2, owner.used(key, 150), "the two hits admitted stay counted, the 7 unused are taken off once")
}

// TestRouterLateAnswerSettlesWhatWasOwed: a check that gave up on its owner
// was decided here and, admitted, owed to the owner's count; when the
// owner's answer comes after all and says it counted the hit, the hit is
// owed no more, so it counts once.
func TestRouterLateAnswerSettlesWhatWasOwed(t *testing.T) {
	peer := &batchPeer{delay: 50 * time.Millisecond}
	r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(cfg *RouterConfig) {
		cfg.ForwardTimeout = 5 * time.Millisecond
		cfg.Batch.Timeout = time.Second // the call outlives the check, as with an adaptive deadline below the cap
		cfg.LeaseTTL = -1
	})
	key := keyOwnedBy(t, r.ring, "b")
	d, path := r.CheckPath(t.Context(), time.Now(), key, 10)
	require.Equal(t, PathFallback, path)
	require.True(t, d.Allowed)
	owed := func() int { return 10 - r.owed.Take(time.Now(), key, 0, 10).Remaining }
	require.Equal(t, 1, owed(), "admitted here: owed to the owner")
	assert.Eventually(t, func() bool { return owed() == 0 }, 5*time.Second, time.Millisecond,
		"the owner's late answer counted the hit: it is owed no more")
}

// TestRouterSweepReportsLeases: each sweep reports to the owner what a
// lease spent since the last one has left, and nothing for one left alone.
func TestRouterSweepReportsLeases(t *testing.T) {
	owner := newOwnerPeer(3)
	r := newTestRouter(t, []string{"a", "b", "c"}, peerMap{"b": owner, "c": &batchPeer{}}, nil)
	key := keyOwnedBy(t, r.ring, "b")
	for range 4 { // one to the owner, with the lease; three from it
		require.True(t, r.Check(t.Context(), routerT0, key, 1500).Allowed)
	}
	ls := r.book.leases.get(key)
	require.NotNil(t, ls)
	require.Equal(t, int64(firstWant-3), ls.left.Load())

	reports := r.sweepLeases(routerT0.Add(100 * time.Millisecond))
	require.Len(t, reports, 1)
	assert.Equal(t, forward.Item{Key: key, Limit: 1500, Window: routerWindow, LeaseID: ls.id, GiveBackStart: ls.start, Left: firstWant - 3, Reported: true}, reports[0])
	assert.Empty(t, r.sweepLeases(routerT0.Add(200*time.Millisecond)), "nothing spent since: nothing to report")
	require.True(t, r.Check(t.Context(), routerT0.Add(250*time.Millisecond), key, 1500).Allowed)
	reports = r.sweepLeases(routerT0.Add(300 * time.Millisecond))
	require.Len(t, reports, 1)
	assert.Equal(t, firstWant-4, reports[0].Left)
}

// TestRouterOwedHitWaitsForTheAnswerOfItsCheck: a check that gave up on
// its owner and was admitted here is owed to the owner's count, but the
// owner may count it yet; until the answer comes (or its call ends), the
// key is held (Awaiting) so that the hit is not sent to the owner while
// the answer is on its way, which would count it twice. An answer that
// counted nothing leaves the hit owed, to be sent.
func TestRouterOwedHitWaitsForTheAnswerOfItsCheck(t *testing.T) {
	for _, tt := range []struct {
		name    string
		allowed bool
		owed    int // after the answer
	}{{"counted at the owner", true, 0}, {"refused at the owner", false, 1}} {
		t.Run(tt.name, func(t *testing.T) {
			peer := &batchPeer{delay: 500 * time.Millisecond, answer: func(it forward.Item) bucket.Decision {
				return bucket.Decision{Allowed: tt.allowed, Limit: it.Limit}
			}}
			r := newTestRouter(t, []string{"a", "b"}, peerMap{"b": peer}, func(cfg *RouterConfig) {
				cfg.ForwardTimeout = 5 * time.Millisecond
				cfg.Batch.Timeout = 10 * time.Second // the call outlives the check
				cfg.LeaseTTL = -1
			})
			key := keyOwnedBy(t, r.ring, "b")
			d, path := r.CheckPath(t.Context(), time.Now(), key, 10)
			require.Equal(t, PathFallback, path)
			require.True(t, d.Allowed)
			owed := func() int { return 10 - r.owed.Take(time.Now(), key, 0, 10).Remaining }
			require.Equal(t, 1, owed(), "admitted here: owed to the owner")
			assert.True(t, r.Awaiting(key), "the owner's answer is on its way: the owed hit must wait")
			require.Eventually(t, func() bool { return !r.Awaiting(key) }, 5*time.Second, time.Millisecond,
				"the answer came, but the key is still held")
			assert.Equal(t, tt.owed, owed())
		})
	}
}
